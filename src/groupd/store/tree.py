"""Materialized-path arithmetic. A subtree is one index range scan, never a walk."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_

from groupd.store.models import Group


def child_path(parent_path: str | None, group_id: int) -> str:
    """The path of a group with id ``group_id`` under a parent at ``parent_path``."""
    return f"{parent_path or '/'}{group_id}/"


def subtree_bounds(path: str) -> tuple[str, str]:
    """``[low, high)`` such that every path of the subtree rooted at ``path`` is inside.

    Paths end with ``/``; ``'0'`` is the character after ``'/'``, so replacing the final
    separator with ``0`` gives the first string past every descendant.
    """
    return path, path[:-1] + "0"


def in_subtree(path: str, *, tenant_id: int) -> ColumnElement[bool]:
    """Filter on ``groups`` selecting the subtree rooted at ``path`` (the root included)."""
    low, high = subtree_bounds(path)
    return and_(Group.tenant_id == tenant_id, Group.path >= low, Group.path < high)


def ancestor_ids(path: str) -> list[int]:
    """The ids along ``path``, root first, the group itself last."""
    return [int(part) for part in path.strip("/").split("/")]
