"""SCIM 2.0 (RFC 7643, 7644) at ``/scim/v2``: identity providers provision users and user
groups. A translator: ``scim2-models`` parses and renders, the provisioning services do
the work."""

from groupd.api.scim.routes import endpoints

__all__ = ["endpoints"]
