"""schemathesis over ``/openapi.json``: every operation, then call sequences along links.

The app runs in process (ASGI) with its phase-2 worker, on SQLite and on PostgreSQL, with
an admin Bearer token of the ``acme`` tenant. Each operation gets positive and negative
cases; path parameters and id-like body fields are drawn now and then from the ids of a
small seeded directory, so cases reach real groups, objects, licences, activations and
operations instead of stopping at 404. Then the stateful machine schemathesis infers from
the document (links from answers to the operations that take their ids) runs a bounded
number of scenarios.

What must hold: no 5xx, every answer's status, media type, headers and body as the
document says, and the invariants once every accepted delete has finished. Run with
``GROUPD_FUZZ_SEED=<n>`` to explore other cases; ``GROUPD_FUZZ_EXAMPLES=<n>`` for more.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.api.openapi import build_openapi
from groupd.clock import system_clock
from groupd.services import accounts
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from helpers import build_tree, create, devices, licence, user
from invariants import assert_invariants

SEED = int(os.environ.get("GROUPD_FUZZ_SEED", "20240611"))
POSITIVE_EXAMPLES = int(os.environ.get("GROUPD_FUZZ_EXAMPLES", "8"))
NEGATIVE_EXAMPLES = max(POSITIVE_EXAMPLES // 2, 1)
STATEFUL_SCENARIOS = 2 * POSITIVE_EXAMPLES
STATEFUL_STEPS = 8
PAGE_TOKENS = ("cursor", "pageToken")
PRECONDITION_FAILURE = "type.googleapis.com/google.rpc.PreconditionFailure"
# AppViewX's documented refusals of a delete by the group's state (its seed page).
APPVIEWX_STATE_CODES = frozenset({"RBAC_US_019", "RBAC_US_015"})


def refused_by_state(response: Any, case: schemathesis.Case) -> bool:
    """A refusal that comes from the directory's state, not from the request's data, in
    a form the schema cannot foresee: 412 for an ``If-Match`` naming another version
    (like a 404 for an id that names nothing), and the vendors' own statuses for a state
    that refuses (ESET files a guard or a protected group under 400 with a
    google.rpc.PreconditionFailure, as its seed does; AppViewX's seed names its codes)."""
    if (
        response.status_code == 412
        and case.headers
        and ({"If-Match", "If-None-Match"} & set(case.headers))
    ):
        return True
    if response.status_code not in (400, 405):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    details = body.get("details")
    if isinstance(details, list) and any(
        isinstance(d, dict) and d.get("@type") == PRECONDITION_FAILURE for d in details
    ):
        return True
    return body.get("appStatusCode") in APPVIEWX_STATE_CODES


# Operations held out of positive-data acceptance while the document does not yet state
# what the server takes (every other check holds them). None: SCIM's requests are
# stated since decision 0059.
POSITIVE_DATA_PENDING = re.compile(r"(?!)")


def positive_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis's positive-data acceptance: a request the document allows is not
    refused as bad input; state refusals (``refused_by_state``) excepted."""
    if refused_by_state(response, case) or POSITIVE_DATA_PENDING.match(case.path):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]


# "No 5xx, no answer that breaks the schema, no request the document allows refused as
# bad input": the document states what the server enforces (docs/decisions/0022).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_accepted,
]
# A Bearer token revoked by ``POST /api/v1/auth/revoke`` must not be the one every other
# case uses: that operation gets a fresh token per call.
REVOKES_OWN_TOKEN = re.compile(r"/revoke$")


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Short waits: a generated ``wait`` is at most 2 s, and deletes answer 202 soon.
    return make_settings(database_url, delete_wait_seconds=0.5, delete_max_wait_seconds=2.0)


@dataclass
class Directory:
    """Ids of a small seeded directory, by what they name."""

    pools: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, *ids: str) -> None:
        self.pools.setdefault(kind, []).extend(ids)

    def pool_for(self, name: str, path: str = "") -> list[str]:
        """Ids that fit a parameter called ``name`` (at ``path``, for path parameters)."""
        lowered = name.lower()
        if lowered == "id" and path:
            # The collection the id follows names it: /licenses/{id}, /groups/{id}, ...
            before = path.split("{" + name + "}")[0].rstrip("/").rsplit("/", 1)[-1].lower()
            lowered = before + "id"
        for word, kind in (
            ("activation", "activation"),
            ("licen", "licence"),
            ("operation", "operation"),
            ("member", "user"),
            ("object", "object"),
            ("device", "object"),
            ("user", "user"),
            ("parent", "group"),
            ("home", "static"),
            ("group", "group"),
        ):
            if word in lowered:
                return self.pools.get(kind, [])
        return [i for ids in self.pools.values() for i in ids]


def seed_directory(client: TestClient, tenant: TenantFixture) -> Directory:
    h = tenant.admin.headers
    found = Directory()
    tree = build_tree(client, h, tenant.root_id, fanout=2, depth=2, prefix="fz")
    found.add("static", tenant.root_id, tenant.lost_and_found_id, *tree)
    found.add("group", tenant.root_id, tenant.lost_and_found_id, *tree)
    seats = licence(client, h, "Fuzz Seats", 1000)
    found.add("licence", seats["id"])
    devs = devices(client, h, tree[-1], 3, product="Fuzz Seats")
    people = [user(client, h, tree[-2], f"fuzz{i}", status="inactive") for i in range(2)]
    found.add("object", *[d["id"] for d in devs], *[p["id"] for p in people])
    found.add("user", *[p["id"] for p in people])
    team = create(client, h, "/api/v1/groups", {"name": "Fuzz team", "kind": "user"})
    found.add("group", team["id"], tenant.admin_group_id)
    for person in people:
        assert (
            client.put(f"/api/v1/groups/{team['id']}/members/{person['id']}", headers=h).status_code
            == 201
        )
    activations = client.get(f"/api/v1/licenses/{seats['id']}/activations", headers=h).json()[
        "items"
    ]
    found.add("activation", *[a["id"] for a in activations])
    doomed = create(
        client, h, "/api/v1/groups", {"name": "Fuzz doomed", "parentId": tenant.root_id}
    )
    gone = client.delete(f"/api/v1/groups/{doomed['id']}", params={"wait": "2"}, headers=h)
    assert gone.status_code == 200, gone.text
    found.add("operation", gone.json()["id"])
    return found


def mint(db: Database, username: str, kind: str = "api") -> str:
    with transaction(db) as uow:
        account = accounts.get_account(uow, username=username)
        credential = accounts.issue_credential(
            uow, account=account, kind=kind, ttl_seconds=3600, now=system_clock()
        )
    return credential.secret


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)  # page tokens the server answered with

    def record(self, label: str, status: int) -> None:
        self.cases[label] += 1
        self.statuses[status] += 1

    def fail(self, label: str, error: BaseException) -> None:
        # The first failure of each operation, with schemathesis's curl reproduction.
        self.failures.setdefault(label, str(error)[:3000])


def aim_at_directory(data: st.DataObject, case: schemathesis.Case, found: Directory) -> None:
    """Now and then swap generated ids for real ones, so cases get past the 404."""
    for name in list(case.path_parameters):
        pool = found.pool_for(name, case.path)
        if pool and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(pool), label=name)
    if isinstance(case.body, dict | list):
        _aim_body(data, case.body, found)


def _aim_body(data: st.DataObject, value: Any, found: Directory) -> None:
    items: list[tuple[Any, Any]] = (
        list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    )
    for key, item in items:
        if isinstance(item, dict | list):
            _aim_body(data, item, found)
        elif isinstance(key, str) and isinstance(item, str) and key.lower().endswith("id"):
            if not data.draw(st.booleans(), label=f"real {key}"):
                continue
            if key == "id":  # a client-chosen id for something new
                value[key] = str(uuid.UUID(int=data.draw(st.integers(1, 2**120)), version=4))
            elif pool := found.pool_for(key):
                value[key] = data.draw(st.sampled_from(pool), label=key)


@dataclass
class Credentials:
    """The ``acme`` admin's: a Bearer token first; HTTP Basic, then a login session (the
    AppViewX header) when a surface refuses the one before."""

    db: Database
    tenant: TenantFixture
    session: str = ""

    def tried_in_turn(self, label: str) -> Iterator[dict[str, str]]:
        if REVOKES_OWN_TOKEN.search(label):
            yield {"Authorization": f"Bearer {mint(self.db, self.tenant.admin.username)}"}
        else:
            yield self.tenant.admin.headers
        yield self.tenant.admin.basic
        if not self.session:
            self.session = mint(self.db, self.tenant.admin.username, kind="session")
        yield {"sessionId": self.session}


def call_with_credentials(
    case: schemathesis.Case, credentials: Credentials, tally: Tally, label: str, checks: list[Any]
) -> Any:
    """Send the case with each credential in turn until one is not refused with 401.

    Every answer is checked; the last one is returned.
    """
    response = None
    if case.meta is not None and case.meta.generation.mode.is_positive and case.query:
        # A page token is opaque: the only valid ones are those the server issued.
        for name in PAGE_TOKENS:
            if name in case.query and case.query[name] not in tally.issued:
                del case.query[name]
    for headers in credentials.tried_in_turn(label):
        response = case.call(headers=headers)
        tally.record(label, response.status_code)
        remember_page_tokens(response, tally)
        try:
            case.validate_response(response, checks=checks)
        except BaseException as error:  # FailureGroup is an exception group
            tally.fail(label, error)
        if response.status_code != 401:
            break
    return response


def remember_page_tokens(response: Any, tally: Tally) -> None:
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict):
        for name in ("nextCursor", "nextPageToken"):
            if isinstance(body.get(name), str):
                tally.issued.add(body[name])


def settle(db: Database, timeout: float = 30.0) -> None:
    """Wait for the worker to finish every accepted delete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as connection:
            open_ops = connection.execute(
                text("SELECT COUNT(*) FROM operations WHERE state IN ('accepted', 'running')")
            ).scalar_one()
        if not open_ops:
            return
        time.sleep(0.05)
    raise AssertionError("accepted deletes did not finish within 30 s")


@pytest.fixture
def fuzz_app(context: AppContext) -> Iterator[Any]:
    # The worker is started here, not by the app's lifespan: schemathesis keeps an ASGI
    # app's lifespan open for the rest of the process, and the worker must stop with the
    # test's database.
    app = create_app(context=context, start_worker=False)
    context.worker.start()
    try:
        yield app
    finally:
        context.worker.stop()


def run_operations(
    schema: Any,
    found: Directory,
    credentials: Credentials,
    tally: Tally,
    checks: list[Any],
    prefix: str = "",
) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            fuzz_operation(
                operation,
                mode,
                examples,
                found,
                credentials,
                tally,
                checks,
                prefix + operation.label,
            )


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    found: Directory,
    credentials: Credentials,
    tally: Tally,
    checks: list[Any],
    label: str,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: schemathesis.Case, data: st.DataObject) -> None:
        aim_at_directory(data, case, found)
        call_with_credentials(case, credentials, tally, label, checks)

    try:
        exercise()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to negate: the operation takes no parameters and no body.
        assert mode is GenerationMode.NEGATIVE, f"{label}: no positive case could be made"


def run_stateful(schema: Any, credentials: Credentials, tally: Tally) -> None:
    machine = schema.as_state_machine()

    class Scenarios(machine):  # type: ignore[misc, valid-type]
        def call(self, case: schemathesis.Case, **kwargs: Any) -> Any:
            return call_with_credentials(
                case, credentials, tally, f"stateful {case.operation.label}", CHECKS
            )

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            pass  # done in ``call``, which saw every answer

    # Which rules are valid depends on the bundles, filled from the server's answers, and
    # the directory is not reset between scenarios: when Hypothesis replays a known prefix
    # and finds other rules valid it stops the exploration. The answers already seen were
    # checked in ``call``; the caller asserts there were some.
    with contextlib.suppress(hypothesis.errors.FlakyStrategyDefinition):
        Scenarios.run(
            settings=hypothesis.settings(
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=STATEFUL_STEPS,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )


def undocumented_schema(app: Any) -> Any:
    """The routes left out of /openapi.json (dialects whose error forms it cannot state),
    described as if they were in it, so they are fuzzed too: for 5xx only."""
    hidden = [replace(e, document=True) for e in app.state.endpoints if not e.document]
    if not hidden:
        return None
    schema = schemathesis.openapi.from_dict(build_openapi(hidden))
    schema.app = app
    return schema


@pytest.mark.slow  # every operation fuzzed, then stateful scenarios: minutes
def test_openapi_document_holds_for_every_operation(
    fuzz_app: Any, acme: TenantFixture, db: Database, request: pytest.FixtureRequest
) -> None:
    found = seed_directory(TestClient(fuzz_app), acme)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    hidden = undocumented_schema(fuzz_app)
    credentials = Credentials(db, acme)
    tally = Tally()
    started = time.monotonic()
    run_operations(schema, found, credentials, tally, CHECKS)
    run_stateful(schema, credentials, tally)
    if hidden is not None:
        run_operations(hidden, found, credentials, tally, [not_a_server_error], "hidden ")
    settle(db)
    elapsed = time.monotonic() - started

    def count(kind: str) -> tuple[int, int]:
        labels = (
            [k for k in tally.cases if k.startswith(kind)]
            if kind
            else [k for k in tally.cases if not k.startswith(("stateful ", "hidden "))]
        )
        return len(labels), sum(tally.cases[k] for k in labels)

    documented, hidden_ops, stateful = count(""), count("hidden "), count("stateful ")
    print(
        f"\nschemathesis [{request.node.callspec.id}]: {documented[0]} documented operations, "
        f"{documented[1]} calls; {stateful[1]} stateful calls over {stateful[0]} operations; "
        f"{hidden_ops[0]} undocumented operations, {hidden_ops[1]} calls (5xx only); "
        f"{elapsed:.1f} s; statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert not tally.failures, "\n\n".join(
        f"== {label}\n{text}" for label, text in sorted(tally.failures.items())
    )
    assert documented[0] == len(list(schema.get_all_operations()))
    assert stateful[1] >= STATEFUL_SCENARIOS, "the stateful phase stopped before it began"
    assert all(status < 500 for status in tally.statuses), tally.statuses
    assert_invariants(db)


def test_delete_dry_run_answer_is_documented(
    fuzz_app: Any, acme: TenantFixture, db: Database
) -> None:
    # Random cases rarely reach a real group with dryRun=true and a valid wait: pinned here.
    group = create(
        TestClient(fuzz_app),
        acme.admin.headers,
        "/api/v1/groups",
        {"name": "Preview", "parentId": acme.root_id},
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    case = schema["/api/v1/groups/{id}"]["DELETE"].Case(
        path_parameters={"id": group["id"]}, query={"dryRun": "true"}
    )
    response = case.call(headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=CHECKS)
    assert_invariants(db)
