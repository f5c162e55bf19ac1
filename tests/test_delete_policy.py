"""The delete's guards by caller: one policy (``services/deletion/policy.py``).

The standard policy (every surface but SCIM) refuses protected groups, linked entities and
user groups with active members; an identity provider's refuses the first two only.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.clock import system_clock
from groupd.errors import DeleteRefused
from groupd.services import deletion
from groupd.services.common import system_actor
from groupd.store.db import Database, transaction
from helpers import create, user, wait_operation

pytestmark = pytest.mark.usefixtures("check_invariants")


def team_with_active_member(client: TestClient, tenant: TenantFixture) -> tuple[str, str]:
    h = tenant.admin.headers
    team = create(client, h, "/api/v1/groups", {"name": "Team", "kind": "user"})["id"]
    person = user(client, h, tenant.root_id, "alice", status="active")["id"]
    added = client.put(f"/api/v1/groups/{team}/members/{person}", headers=h)
    assert added.status_code == 201, added.text
    return team, person


def request(
    db: Database, tenant: TenantFixture, group_id: str, policy: deletion.DeletePolicy, **kw: Any
) -> deletion.DeletePlan:
    with transaction(db) as uow:
        return deletion.request_delete(
            uow,
            actor=system_actor(tenant.id),
            group_id=group_id,
            release_units=False,
            policy=policy,
            now=system_clock(),
            **kw,
        )


def rules(error: pytest.ExceptionInfo[DeleteRefused]) -> set[str]:
    return {blocker.rule for blocker in error.value.extra["blockers"]}


def test_the_standard_policy_refuses_a_user_group_with_active_members(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    team, _ = team_with_active_member(client, acme)
    with pytest.raises(DeleteRefused) as refused:
        request(db, acme, team, deletion.STANDARD)
    assert rules(refused) == {"active_members"}
    # The default is the standard policy.
    with pytest.raises(DeleteRefused), transaction(db) as uow:
        deletion.request_delete(
            uow,
            actor=system_actor(acme.id),
            group_id=team,
            release_units=False,
            now=system_clock(),
        )
    dry = request(db, acme, team, deletion.STANDARD, dry_run=True)
    assert [b.rule for b in dry.impact.blockers] == ["active_members"]


def test_an_identity_provider_deletes_a_user_group_whatever_its_members(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    team, person = team_with_active_member(client, acme)
    dry = request(db, acme, team, deletion.IDENTITY_PROVIDER, dry_run=True)
    assert dry.impact.blockers == [] and dry.impact.memberships == 1
    plan = request(db, acme, team, deletion.IDENTITY_PROVIDER)
    assert plan.operation_uuid is not None
    h = acme.admin.headers
    assert wait_operation(client, h, str(plan.operation_uuid))["state"] == "succeeded"
    assert client.get(f"/api/v1/groups/{team}", headers=h).status_code == 404
    # The member stays, active, with no membership left.
    person_now = client.get(f"/api/v1/objects/{person}", headers=h).json()
    assert person_now["status"] == "active"
    assert client.get(f"/api/v1/objects/{person}/memberships", headers=h).json()["items"] == []


def test_an_identity_provider_still_meets_the_protected_and_linked_guards(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    with pytest.raises(DeleteRefused) as protected:
        request(db, acme, acme.admin_group_id, deletion.IDENTITY_PROVIDER)
    assert rules(protected) == {"protected_group"}
    h = acme.admin.headers
    parent = create(client, h, "/api/v1/groups", {"name": "Site", "parentId": acme.root_id})
    create(
        client,
        h,
        "/api/v1/groups",
        {
            "name": "Customer",
            "parentId": parent["id"],
            "linkedEntity": {"type": "CUSTOMER", "ref": "c-1"},
        },
    )
    with pytest.raises(DeleteRefused) as linked:
        request(db, acme, parent["id"], deletion.IDENTITY_PROVIDER)
    assert rules(linked) == {"linked_entity"}
