"""Operations have one owner: ``groupd.services.operations``. The faces under ``api/``
translate a request into a call of it and its answer into a response; none of them
claims, leases, finishes, collects or waits on an operation by a rule of its own.

A walk of every api module's syntax tree (as the audit guard in test_audit_trail.py
does) finds the ways such a rule shows: the ``Operation`` row itself, the lifecycle
functions only workers and services call, the columns only the rules read, time
arithmetic on an operation's times, and polling loops.
"""

from __future__ import annotations

import ast
from pathlib import Path

import groupd

# What only a worker or a service may call (the faces call get_operation,
# list_operations, wait_for_operation, record_answer, collect and resume).
LIFECYCLE = {
    "accept",
    "claim",
    "renew_lease",
    "held_by",
    "unfinished",
    "save_progress",
    "succeed",
    "release",
    "fail",
    "purge_expired",
    "mark_collected",
    "run_delete_chunk",
    "record_totals",
}
# Columns that hold the rules' state: no face reads them.
RULE_FIELDS = {"collected_at", "first_pending_at", "lease_until", "claimed_by", "attempts"}
# An operation's times: a face renders them, it does no arithmetic on them.
TIMES = {"created_at", "started_at", "finished_at", "expires_at", *RULE_FIELDS}


def operation_rules(source: str) -> list[str]:
    """Where a module holds an operation rule (empty when it only translates)."""
    tree = ast.parse(source)
    operations_names: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "groupd.store.models":
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name in ("Operation", "*")
            ]
        elif isinstance(node, ast.ImportFrom) and node.module in (
            "groupd.services",
            "groupd.services.deletion",
        ):
            operations_names.update(
                a.asname or a.name for a in node.names if a.name in ("operations", "deletion")
            )
        elif isinstance(node, ast.ImportFrom) and node.module in (
            "groupd.services.operations",
            "groupd.services.deletion.purge",
            "groupd.services.deletion.totals",
        ):
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name in LIFECYCLE or a.name == "*"
            ]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("groupd.services.operations"):
                    operations_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = ast.unparse(node.value)
            if node.attr in LIFECYCLE and owner in operations_names:
                found.append(f"line {node.lineno}: calls {ast.unparse(node)}")
            elif node.attr in RULE_FIELDS:
                found.append(f"line {node.lineno}: reads {ast.unparse(node)}")
        elif isinstance(node, ast.BinOp | ast.Compare):
            touched = {sub.attr for sub in ast.walk(node) if isinstance(sub, ast.Attribute)} & TIMES
            if touched:
                found.append(f"line {node.lineno}: computes with {', '.join(sorted(touched))}")
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("sleep")
            and operations_names
        ):
            found.append(f"line {node.lineno}: polls ({ast.unparse(node.func)})")
    return found


def test_no_api_module_holds_an_operation_rule() -> None:
    api = Path(groupd.__file__).parent / "api"
    offenders = []
    for path in sorted(api.rglob("*.py")):
        offenders += [
            f"{path.relative_to(api)} {where}" for where in operation_rules(path.read_text())
        ]
    assert not offenders


def test_the_guard_catches_each_kind_of_rule() -> None:
    for source in (
        "from groupd.store.models import Operation",
        "from groupd.services import operations\noperations.mark_collected(uow)",
        "from groupd.services import operations as ops\nops.release(uow)",
        "from groupd.services.operations import claim",
        "import groupd.services.operations\ngroupd.services.operations.fail(uow)",
        "if view.collected_at is not None: pass",
        "kept = view.finished_at + timedelta(seconds=60)",
        "late = now >= view.created_at",
        "from groupd.services import operations\nawait asyncio.sleep(0.1)",
        "from groupd.services import deletion\ndeletion.run_delete_chunk(uow)",
    ):
        assert operation_rules(source), source
    # and a face that only translates passes
    assert not operation_rules(
        "from groupd.services import operations\n"
        "view = operations.get_operation(uow, actor=a, operation_id=i, now=n)\n"
        "body = render(view.finished_at)\n"
    )
