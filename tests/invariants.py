"""The invariants of docs/design.md, checked straight against the database.

Every scenario test ends with ``assert_invariants``. The checks read the tables with
plain SQL, independent of the services they police.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from groupd.store.db import Database
from groupd.store.models import BinEntry


def _rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def assert_invariants(db: Database, *, settled: bool = True) -> None:
    """Raise AssertionError naming the first broken invariant.

    ``settled``: every accepted operation has had time to finish (the scenario waited).
    """
    # 1. every group but a root has a parent of the same tenant and kind, and a path that
    #    extends its parent's; no live group under a deleting one; every object a home.
    broken = _rows(
        db,
        """
        SELECT g.id FROM groups g LEFT JOIN groups p ON p.id = g.parent_id
        WHERE g.parent_id IS NOT NULL AND (
            p.id IS NULL OR p.tenant_id <> g.tenant_id OR p.kind <> g.kind
            OR g.path <> p.path || CAST(g.id AS VARCHAR(20)) || '/'
            OR g.depth <> p.depth + 1
            OR (g.state = 'live' AND p.state <> 'live'))
    """,
    )
    assert not broken, f"invariant 1: groups without a proper live parent: {broken[:10]}"
    roots = _rows(
        db,
        """
        SELECT id FROM groups WHERE parent_id IS NULL
        AND path <> '/' || CAST(id AS VARCHAR(20)) || '/'
    """,
    )
    assert not roots, f"invariant 1: root paths broken: {roots[:10]}"
    homeless = _rows(
        db,
        """
        SELECT o.id FROM objects o LEFT JOIN groups g ON g.id = o.home_group_id
        WHERE g.id IS NULL OR g.tenant_id <> o.tenant_id OR g.kind <> 'static'
    """,
    )
    assert not homeless, f"invariant 1: objects without a static home: {homeless[:10]}"
    # The kept count of users per home (decision 0055) is the count of its users.
    miscounted = _rows(
        db,
        """
        SELECT g.id, c.users, (SELECT count(*) FROM objects o
                               WHERE o.home_group_id = g.id AND o.kind = 'user')
        FROM groups g LEFT JOIN user_counts c
            ON c.home_group_id = g.id AND c.tenant_id = g.tenant_id
        WHERE g.kind = 'static' AND COALESCE(c.users, 0) <> (
            SELECT count(*) FROM objects o WHERE o.home_group_id = g.id AND o.kind = 'user')
    """,
    )
    assert not miscounted, f"kept user counts (home, kept, actual): {miscounted[:10]}"
    # 2. an accepted delete, once finished, leaves nothing of its subtree.
    leftovers = _rows(
        db,
        """
        SELECT g.id, o.uuid FROM groups g JOIN operations o ON o.id = g.operation_id
        WHERE o.state = 'succeeded' AND g.state <> 'deleted'
    """,
    )
    assert not leftovers, f"invariant 2: groups left by finished deletes: {leftovers[:10]}"
    stray = _rows(
        db,
        """
        SELECT g.id FROM groups g LEFT JOIN operations o ON o.id = g.operation_id
        WHERE g.state = 'deleting' AND (o.id IS NULL OR o.state = 'succeeded')
    """,
    )
    assert not stray, f"invariant 2: groups marked deleting without an operation: {stray[:10]}"
    # 3. licence arithmetic: used units are those of the activations, but for the
    #    activations of a subtree in the recycle bin (or being purged from it) whose units
    #    its delete gave back.
    books = _rows(
        db,
        """
        SELECT l.id, l.used_units, l.total_units, COALESCE(SUM(a.units), 0)
        FROM licences l LEFT JOIN (
            SELECT a.licence_id, a.units FROM activations a
            LEFT JOIN objects o ON o.id = a.object_id
            LEFT JOIN groups g ON g.id = o.home_group_id AND g.state <> 'live'
            LEFT JOIN bin_entries b ON b.operation_id = g.operation_id AND b.released
            WHERE b.id IS NULL
        ) a ON a.licence_id = l.id
        GROUP BY l.id, l.used_units, l.total_units
        HAVING l.used_units <> COALESCE(SUM(a.units), 0)
            OR l.used_units < 0 OR l.used_units > l.total_units
    """,
    )
    assert not books, f"invariant 3: licence books do not balance: {books[:10]}"
    # 4. no reference crosses a tenant.
    crossing = _rows(
        db,
        """
        SELECT 'membership', m.group_id FROM memberships m
        JOIN groups g ON g.id = m.group_id JOIN objects o ON o.id = m.object_id
        WHERE g.tenant_id <> m.tenant_id OR o.tenant_id <> m.tenant_id OR g.kind <> 'user'
            OR o.kind <> 'user'
        UNION ALL
        SELECT 'activation', a.id FROM activations a JOIN licences l ON l.id = a.licence_id
        LEFT JOIN objects o ON o.id = a.object_id
        WHERE l.tenant_id <> a.tenant_id OR (o.id IS NOT NULL AND o.tenant_id <> a.tenant_id)
    """,
    )
    assert not crossing, f"invariant 4: references across tenants: {crossing[:10]}"
    # 5. accepted operations complete.
    if settled:
        open_ops = _rows(
            db, "SELECT uuid, state, result_body FROM operations WHERE state <> 'succeeded'"
        )
        assert not open_ops, f"invariant 5: operations not completed: {open_ops[:10]}"
    # 6. the protected built-ins of every tenant are still there.
    missing = _rows(
        db,
        """
        SELECT t.name FROM tenants t WHERE
            (SELECT COUNT(*) FROM groups g WHERE g.tenant_id = t.id AND g.protected
             AND g.state = 'live' AND g.name IN ('All', 'Lost & found', 'Admin')) <> 3
    """,
    )
    assert not missing, f"invariant 6: tenants missing built-in groups: {missing}"
    # 8. events reach only their own tenant's subscribers, none from before a subscription
    #    began, and no subscription with deliveries pending is forgotten by the senders.
    crossing_events = _rows(
        db,
        """
        SELECT d.id FROM webhook_deliveries d
        JOIN webhook_subscriptions s ON s.id = d.subscription_id
        JOIN outbox_events e ON e.id = d.event_id
        WHERE s.tenant_id <> e.tenant_id OR d.tenant_id <> e.tenant_id
            OR e.id <= s.after_event_id
    """,
    )
    assert not crossing_events, (
        f"invariant 8: deliveries to the wrong subscriber: {crossing_events[:10]}"
    )
    forgotten = _rows(
        db,
        """
        SELECT s.id FROM webhook_subscriptions s WHERE s.enabled
        AND EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.subscription_id = s.id AND d.state = 'pending')
        AND NOT EXISTS (SELECT 1 FROM webhook_schedules q
                        WHERE q.subscription_id = s.id AND q.due_at IS NOT NULL)
    """,
    )
    assert not forgotten, f"invariant 8: pending deliveries no sender will try: {forgotten[:10]}"
    # The queue (on SQLite a file of its own) keeps nothing of a subscription that is gone.
    orphans = _rows(
        db,
        """
        SELECT d.id FROM webhook_deliveries d WHERE NOT EXISTS
            (SELECT 1 FROM webhook_subscriptions s WHERE s.id = d.subscription_id)
        UNION ALL
        SELECT q.subscription_id FROM webhook_schedules q WHERE NOT EXISTS
            (SELECT 1 FROM webhook_subscriptions s WHERE s.id = q.subscription_id)
    """,
    )
    assert not orphans, f"invariant 8: queued for subscriptions that are gone: {orphans[:10]}"
    _assert_bin(db)


def _uuid(value: object) -> str:
    # SQLite keeps a uuid's 16 bytes (migration 0007), PostgreSQL its own type.
    return str(uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value)))


def _assert_bin(db: Database) -> None:
    """7. what the recycle bin holds is exactly what its deletes hid.

    Every group ``deleted`` belongs to the entry of the delete that binned it, and every
    entry's root is such a group (or, while the entry is purged, a group its purge
    removes); nothing live hangs under it (invariant 1). The units an entry says its
    activations hold, per licence, are what they hold: what a restore takes again."""
    unowned = _rows(
        db,
        """
        SELECT g.id FROM groups g LEFT JOIN bin_entries b ON b.operation_id = g.operation_id
        WHERE g.state = 'deleted' AND (b.id IS NULL OR b.purging)
        UNION ALL
        SELECT b.group_id FROM bin_entries b JOIN groups g ON g.id = b.group_id
        WHERE g.operation_id <> b.operation_id OR g.tenant_id <> b.tenant_id
            OR g.state <> (CASE WHEN b.purging THEN 'deleting' ELSE 'deleted' END)
    """,
    )
    assert not unowned, f"invariant 7: binned groups and bin entries disagree: {unowned[:10]}"
    held = {
        (int(str(op)), _uuid(licence)): int(str(units))
        for op, licence, units in _rows(
            db,
            """
            SELECT g.operation_id, l.uuid, SUM(a.units) FROM activations a
            JOIN objects o ON o.id = a.object_id JOIN groups g ON g.id = o.home_group_id
            JOIN licences l ON l.id = a.licence_id
            WHERE g.state = 'deleted'
            GROUP BY g.operation_id, l.uuid
        """,
        )
    }
    with db.engine.connect() as connection:
        entries = connection.execute(
            select(BinEntry.operation_id, BinEntry.units, BinEntry.counts).where(
                BinEntry.purging.is_(False)
            )
        ).all()
    recorded: dict[tuple[int, str], int] = {}
    settled: set[int] = set()
    for operation_id, units, counts in entries:
        if not counts:
            continue  # its delete has not run yet
        settled.add(int(operation_id))
        for item in units:
            recorded[(int(operation_id), str(uuid.UUID(item["licenceId"])))] = int(item["units"])
    found = {key: value for key, value in held.items() if key[0] in settled}
    assert found == recorded, f"invariant 7: units held in the bin {found} != {recorded}"
