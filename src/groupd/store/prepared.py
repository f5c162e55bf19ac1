"""Hot statements, compiled once per dialect and run straight on the DB-API cursor.

SQLAlchemy spends several times more CPU per statement on its execution machinery (the
compiled cache lookup, the execution context, events, the result object) than the same
SQL costs on the driver's cursor (decision 0003). On the paths every request takes (the
token check, a get, an audit append) that is most of a request. A ``Prepared``
statement keeps SQLAlchemy for what it does well, writing the SQL from a Core
statement and converting values with the columns' own types (their bind and result
processors), and skips the rest: it runs in the unit of work's
transaction on the connection's DB-API cursor, with the unit's deadline, and turns driver
errors into SQLAlchemy's exceptions as a Core execution would.

Only plain statements qualify: no expanding ``IN``, no Python-side column defaults (give
every value), no ORM entities. A statement that cannot be prepared fails when it is
first compiled, which the tests do for every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

if TYPE_CHECKING:
    from groupd.store.db import UnitOfWork

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bound parameters, in the order the SQL takes them
    fixed: dict[str, Any]  # values written into the statement (``state == 'live'``)
    binds: tuple[Processor | None, ...]
    results: tuple[Processor | None, ...]
    positional: bool


class Prepared:
    """A Core statement ready to run on a unit of work's raw connection."""

    # Every prepared statement made, so the tests can compile each on both databases.
    made: ClassVar[list[Prepared]] = []

    def __init__(
        self,
        statement: ClauseElement,
        *,
        column_keys: Sequence[str] | None = None,
        as_text: bool = False,
    ):
        """``as_text``: the columns whose type offers a ``text_processor`` (uuids,
        timestamps) come out as the text the APIs write, not as Python objects to be
        formatted again (a hot read that goes straight out, decision 0075)."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self.as_text = as_text
        self._by_dialect: dict[str, _Compiled] = {}
        Prepared.made.append(self)

    def compiled_for(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        sql = compiled.string
        if "POSTCOMPILE" in sql:
            raise TypeError("a Prepared statement cannot hold an expanding IN")
        binds = compiled.binds  # type: ignore[attr-defined]
        positional = bool(compiled.positiontup)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup if positional else binds)  # type: ignore[attr-defined]
        fixed = {name: binds[name].value for name in names if binds[name].value is not None}
        bind_processors = tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
        result_processors: tuple[Processor | None, ...] = ()
        selected = getattr(self.statement, "selected_columns", None)
        if selected is not None:
            result_processors = tuple(
                self._result_processor(column.type, dialect) for column in selected
            )
        return _Compiled(sql, names, fixed, bind_processors, result_processors, positional)

    def _result_processor(self, kind: Any, dialect: Dialect) -> Processor | None:
        text = getattr(kind, "text_processor", None) if self.as_text else None
        if text is not None:
            return text(dialect)  # type: ignore[no-any-return]
        return kind.dialect_impl(dialect).result_processor(dialect, None)  # type: ignore[no-any-return]

    # execution -----------------------------------------------------------------------
    @staticmethod
    def _arguments(compiled: _Compiled, params: dict[str, Any]) -> Any:
        values = []
        for name, process in zip(compiled.names, compiled.binds, strict=True):
            if name in params:
                value = params[name]
            elif name in compiled.fixed:
                value = compiled.fixed[name]
            else:  # a column default, say: prepared statements take every value given
                raise TypeError(f"the prepared statement needs a value for '{name}'")
            values.append(process(value) if process is not None else value)
        if compiled.positional:
            return values
        return dict(zip(compiled.names, values, strict=True))

    def _run(self, uow: UnitOfWork, params: dict[str, Any]) -> Any:
        compiled = self.compiled_for(uow.dialect)
        arguments = self._arguments(compiled, params)
        return self._send(uow, compiled, arguments, many=False, shown=arguments), compiled

    @staticmethod
    def _send(
        uow: UnitOfWork, compiled: _Compiled, arguments: Any, *, many: bool, shown: Any
    ) -> Any:
        """The statement on the unit's DB-API cursor (``executemany`` when ``many``); the
        cursor, or the driver's error as SQLAlchemy's (``shown``: the parameters named)."""
        cursor = uow.raw_cursor()
        for watch in uow.db.statement_watchers:
            watch(compiled.sql)
        try:
            if many:
                cursor.executemany(compiled.sql, arguments)
            else:
                cursor.execute(compiled.sql, arguments)
        except uow.dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise uow.translate_error(error, compiled.sql, shown) from error
        except BaseException:
            cursor.close()
            raise
        return cursor

    def _fetch(self, uow: UnitOfWork, params: dict[str, Any], one: bool) -> Any:
        """Run and fetch (SQLite runs much of a statement while fetching its rows, where
        the deadline can stop it too); the rows and the compiled form."""
        cursor, compiled = self._run(uow, params)
        try:
            rows = cursor.fetchone() if one else cursor.fetchall()
        except uow.dialect.loaded_dbapi.Error as error:
            raise uow.translate_error(error, compiled.sql, params) from error
        finally:
            cursor.close()
        return rows, compiled

    def all(self, uow: UnitOfWork, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        rows, compiled = self._fetch(uow, params, one=False)
        return [_convert(row, compiled.results) for row in rows]

    def column(self, uow: UnitOfWork, params: dict[str, Any]) -> list[Any]:
        """The first column of every row, as a list."""
        rows, compiled = self._fetch(uow, params, one=False)
        processor = compiled.results[0] if compiled.results else None
        if processor is None:
            return [row[0] for row in rows]
        return [processor(row[0]) for row in rows]

    def one_or_none(self, uow: UnitOfWork, params: dict[str, Any]) -> tuple[Any, ...] | None:
        row, compiled = self._fetch(uow, params, one=True)
        return None if row is None else _convert(row, compiled.results)

    def execute(self, uow: UnitOfWork, params: dict[str, Any]) -> int:
        """Run a statement that returns no rows; its row count."""
        cursor, _ = self._run(uow, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute_many(self, uow: UnitOfWork, rows: Sequence[dict[str, Any]]) -> None:
        """Run a statement that returns no rows once for each of ``rows``, in one call
        of the driver (a bulk insert without SQLAlchemy's per-row execution context)."""
        if not rows:
            return
        compiled = self.compiled_for(uow.dialect)
        arguments = [self._arguments(compiled, params) for params in rows]
        self._send(uow, compiled, arguments, many=True, shown=arguments[0]).close()


def _convert(row: Sequence[Any], processors: tuple[Processor | None, ...]) -> tuple[Any, ...]:
    if not processors:  # a text() statement: the driver's values as they come
        return tuple(row)
    values = list(row)
    for index, process in enumerate(processors):
        if process is not None:
            values[index] = process(values[index])
    return tuple(values)


def wrap_driver_error(
    error: Exception, statement: str, params: Any, dialect: Dialect, *, invalidated: bool
) -> Exception:
    """A driver's exception as SQLAlchemy would raise it (``IntegrityError``,
    ``OperationalError``...), so callers handle both paths alike."""
    dbapi = dialect.loaded_dbapi
    if not isinstance(error, dbapi.Error):
        return error
    return DBAPIError.instance(
        statement,
        params,
        error,
        dbapi.Error,
        connection_invalidated=invalidated,
        dialect=dialect,
    )
