"""Oracle Advanced Authentication's policy-group API (``/oaa-policy/group/v1``)."""

from groupd.api.oaa.groups import endpoints

__all__ = ["endpoints"]
