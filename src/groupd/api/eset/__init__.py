"""ESET Connect wire compatibility: the vendor's paths, parameters, codes and bodies,
translated onto the same services as the native API (see docs/compat/eset.md)."""

from __future__ import annotations

from groupd.api.eset import devices, groups, oauth
from groupd.api.http import Endpoint


def endpoints() -> list[Endpoint]:
    """Every ESET endpoint; app.py discovers this module by name."""
    return [*oauth.endpoints(), *groups.endpoints(), *devices.endpoints()]
