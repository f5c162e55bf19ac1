"""Provisioning's own refusals, apart from the filters' parser so that a face can map them
without importing it."""

from __future__ import annotations

from groupd.errors import InvalidInput


class InvalidFilter(InvalidInput):
    """A filter names an attribute or an operator this server cannot compare."""

    code = "invalid_filter"
