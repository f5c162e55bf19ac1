"""AppViewX user groups, wire-compatible: sessions, service tokens, gwsource, appStatusCode."""

from groupd.api.appviewx.routes import endpoints

__all__ = ["endpoints"]
