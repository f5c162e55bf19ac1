"""One login service: every password login calls ``services.login.check_password``,
which counts a failure in a unit of work of its own. No face commits to keep a count,
and none reads the account's failure columns or checks a hash itself."""

from __future__ import annotations

import ast
from pathlib import Path

import groupd

# The boundary that owns the request's unit of work (it commits it).
BOUNDARY = "http.py"
RULE_NAMES = {"failed_logins", "locked_until", "verify_hash", "equalise_hash_cost"}


def login_rules(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".commit"):
            found.append(f"line {node.lineno}: commits ({ast.unparse(node.func)})")
        elif isinstance(node, ast.Attribute) and node.attr in RULE_NAMES:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == "groupd.store.models":
            found += [
                f"line {node.lineno}: imports {a.name}" for a in node.names if a.name == "Account"
            ]
    return found


def test_no_face_keeps_a_login_rule() -> None:
    api = Path(groupd.__file__).parent / "api"
    offenders = []
    for path in sorted(api.rglob("*.py")):
        if path.relative_to(api).as_posix() == BOUNDARY:
            continue
        offenders += [f"{path.relative_to(api)} {where}" for where in login_rules(path.read_text())]
    assert not offenders
    auth = (api / "auth.py").read_text()
    assert "login.check_password(" in auth, "the faces' password login calls the service"


def test_the_guard_catches_each_kind_of_rule() -> None:
    for source in (
        "req.uow.commit()",
        "if account.failed_logins > 3: pass",
        "accounts.verify_hash(h, p)",
        "from groupd.store.models import Account",
    ):
        assert login_rules(source), source
    assert not login_rules("account = password_login(req, username, password)")
