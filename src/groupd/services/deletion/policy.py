"""Which guards a delete meets, by who asks for it: one policy (invariant 6, decision 0054).

Protected groups and groups linked to an entity are refused for every caller. A user
group with active members is refused for people and scripts, who may not know it is in
use; an identity provider is the source of truth for membership (SCIM), so its delete
of a user group goes through whatever members it has.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeletePolicy:
    """The guards one kind of caller meets."""

    name: str
    refuse_active_members: bool
    # No field turns off the protected and linked guards: they hold for every caller.


# Every surface's default: the native API, the vendor dialects, the CLI, the console.
STANDARD = DeletePolicy("standard", refuse_active_members=True)
# A provider's delete over SCIM: the members are its own to end.
IDENTITY_PROVIDER = DeletePolicy("identity_provider", refuse_active_members=False)
