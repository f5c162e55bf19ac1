"""A list of integer keys bound as one parameter, however long it is.

``column.in_(ids)`` binds one parameter per id, and SQLAlchemy writes the statement's
SQL again at every execution (an "expanding" ``IN``). A statement run hundreds of times
with the same few hundred ids (the steps of a delete's chunk) then spends more time in
Python than in the database. ``in_keys`` keeps the SQL fixed, so the statement can be a
``Prepared`` one: SQLite reads the keys from a JSON array (``json_each``), PostgreSQL
from an array (``= ANY``). Both probe the column's index once per key, as for ``IN``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, Text, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine


class KeyList(TypeDecorator[list[int]]):
    """Integer keys as one value: a JSON array on SQLite, a bigint array on PostgreSQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(BigInteger()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Iterable[int] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        keys = [int(key) for key in value]
        return keys if dialect.name == "postgresql" else json.dumps(keys)


class InKeys(ColumnElement[bool]):
    """``column`` is one of the keys bound to ``keys`` (a ``KeyList`` parameter)."""

    inherit_cache = True
    # A condition in itself: SQLite (no boolean type) must not get "= 1" after it, which
    # would hide the column from the index.
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("keys", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], keys: BindParameter[Any]) -> None:
        self.column = column
        self.keys = keys


def in_keys(column: Any, name: str) -> InKeys:
    """``column IN (the keys given as parameter name)``, with one bound parameter."""
    return InKeys(column, bindparam(name, type_=KeyList()))


@compiles(InKeys, "sqlite")
def _in_keys_on_sqlite(element: InKeys, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    keys = compiler.process(element.keys, **kw)
    return f"{column} IN (SELECT value FROM json_each({keys}))"


@compiles(InKeys, "postgresql")
def _in_keys_on_postgresql(element: InKeys, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    keys = compiler.process(element.keys, **kw)
    return f"{column} = ANY ({keys})"
