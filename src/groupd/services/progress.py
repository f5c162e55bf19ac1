"""An operation's progress: what it has removed so far, and what it removes in all.

Stored on the operation row as a JSON record (``to_record``), read back with
``from_record``; the renderers turn it into each surface's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNTED_KINDS = ("devices", "users", "memberships", "activations")
KINDS = ("groups", *COUNTED_KINDS)


@dataclass(slots=True)
class Tally:
    """Rows of one kind: removed so far, and the total (None until it is counted)."""

    done: int = 0
    total: int | None = None


@dataclass(slots=True)
class Progress:
    """What a delete has done. A chunk adds to it and stores it in its own transaction,
    so the figures always match the rows gone (decision 0004)."""

    groups: Tally = field(default_factory=Tally)
    devices: Tally = field(default_factory=Tally)
    users: Tally = field(default_factory=Tally)
    memberships: Tally = field(default_factory=Tally)
    activations: Tally = field(default_factory=Tally)
    units_released: int = 0
    # Released units per licence (its key): what the delete's events tell (decision 0060).
    units_by_licence: dict[int, int] = field(default_factory=dict)
    units_kept_consumed: int = 0
    chunks: int = 0
    # Live groups found under the subtree after phase 1 and taken along.
    adopted: int = 0

    def tally(self, kind: str) -> Tally:
        tally: Tally = getattr(self, kind)
        return tally

    @property
    def totals_known(self) -> bool:
        return self.devices.total is not None

    def record_totals(self, totals: dict[str, int]) -> None:
        for kind, total in totals.items():
            self.tally(kind).total = total

    def close(self) -> None:
        """At the end: what was removed is the total of any kind not counted before."""
        for kind in KINDS:
            tally = self.tally(kind)
            if tally.total is None:
                tally.total = tally.done

    def to_record(self) -> dict[str, Any]:
        return {
            **{
                kind: {"done": self.tally(kind).done, "total": self.tally(kind).total}
                for kind in KINDS
            },
            "unitsReleased": self.units_released,
            "unitsByLicence": {str(key): units for key, units in self.units_by_licence.items()},
            "unitsKeptConsumed": self.units_kept_consumed,
            "chunks": self.chunks,
            "adopted": self.adopted,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Progress:
        """The progress stored by ``to_record``; a kind missing from it (an operation
        accepted by an earlier version) counts from zero, its total unknown."""
        record = record or {}
        progress = cls(
            units_released=int(record.get("unitsReleased", 0)),
            units_by_licence={
                int(key): int(units) for key, units in (record.get("unitsByLicence") or {}).items()
            },
            units_kept_consumed=int(record.get("unitsKeptConsumed", 0)),
            chunks=int(record.get("chunks", 0)),
            adopted=int(record.get("adopted", 0)),
        )
        for kind in KINDS:
            entry = record.get(kind) or {}
            total = entry.get("total")
            setattr(
                progress,
                kind,
                Tally(int(entry.get("done", 0)), None if total is None else int(total)),
            )
        return progress
