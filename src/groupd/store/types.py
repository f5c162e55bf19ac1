"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CHAR, BigInteger, DateTime, Integer, String, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import JSON, TypeDecorator, UserDefinedType

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias); PostgreSQL gets bigint.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")

# Materialized paths are compared byte-wise, so a subtree is one index range scan.
# PostgreSQL's default (linguistic) collations would ignore the separators: force "C".
PathString = String().with_variant(String(collation="C"), "postgresql")

JSONDocument = JSON().with_variant(JSONB(), "postgresql")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class _EpochMicroseconds(UserDefinedType[int]):
    """How SQLite keeps a ``UTCDateTime``: microseconds since 1970 as an INTEGER, in
    columns still declared ``DATETIME`` (migration 0001; SQLite keeps an integer as an
    integer there). The driver's values pass through unchanged."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "DATETIME"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases.

    PostgreSQL has ``timestamptz``. On SQLite, SQLAlchemy's ``DateTime`` writes 26
    characters of text; since migration 0008 groupd keeps an integer of microseconds
    since 1970 instead: 7 or 8 bytes, no parsing on the way out, the same order
    (docs/decisions/0002-sqlite-uuids-and-times-as-bytes-and-integers.md).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return _EpochMicroseconds()
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if dialect.name == "sqlite":
            return (value - EPOCH) // MICROSECOND
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return EPOCH + int(value) * MICROSECOND
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def text_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        """The driver's value straight to the APIs' text (ISO 8601, ``Z``), as
        ``process_result_value`` and then ``isoformat`` would give it."""
        if dialect.name == "sqlite":
            return _micros_text

        def process(value: Any) -> str | None:
            if value is None:
                return None
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")  # type: ignore[no-any-return]

        return process


MICROS_PER_DAY = 86_400_000_000
_DATES: dict[int, str] = {}  # days since 1970 -> "YYYY-MM-DD", for ``_micros_text``


def _micros_text(value: Any) -> str | None:
    """Microseconds since 1970 as ``datetime.isoformat`` writes the UTC moment, with ``Z``:
    the date looked up by its day, the time of day in integer arithmetic (a quarter of
    what making and formatting a ``datetime`` costs)."""
    if value is None:
        return None
    day, rest = divmod(int(value), MICROS_PER_DAY)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= 10_000:
            _DATES.clear()
        date = _DATES[day] = (EPOCH + timedelta(days=day)).date().isoformat()
    seconds, micro = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if micro:
        return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}Z"
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"


class UuidKey(TypeDecorator[uuid.UUID]):
    """A uuid: PostgreSQL's own type; on SQLite its 16 bytes, as a BLOB.

    SQLAlchemy's ``Uuid`` stores 32 hex characters on SQLite. The 16 bytes make each
    uuid column and index entry half as wide, so a delete writes fewer pages
    (docs/decisions/0002-sqlite-uuids-and-times-as-bytes-and-integers.md). The columns
    keep the ``CHAR(32)`` their migrations declared: SQLite keeps a BLOB as a BLOB in any
    column (migration 0007 converted the values).
    Blobs sort as their hex spelling does, so an order by uuid is unchanged.
    """

    impl = Uuid
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            # The declared type as before; a CHAR takes and returns the driver's bytes.
            return dialect.type_descriptor(CHAR(32))
        return dialect.type_descriptor(Uuid())

    def process_bind_param(self, value: uuid.UUID | str | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return (value if isinstance(value, uuid.UUID) else uuid.UUID(value)).bytes

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or dialect.name != "sqlite":
            return value  # type: ignore[no-any-return]
        return uuid.UUID(bytes=bytes(value))

    def text_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        """The driver's value straight to its canonical text (``str(uuid)``), without
        making a ``UUID`` on SQLite."""
        if dialect.name != "sqlite":
            return lambda value: None if value is None else str(value)

        def process(value: Any) -> str | None:
            if value is None:
                return None
            h = bytes(value).hex()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

        return process
