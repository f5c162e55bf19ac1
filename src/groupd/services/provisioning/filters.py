"""SCIM filters (RFC 7644 §3.4.2.2), parsed by ``scim2-models``, as SQL conditions.

A filter becomes one WHERE clause over the tenant's rows: never a scan in Python. Each
resource names the attributes it can filter on; any other attribute is refused with
``invalidFilter`` (decision 0051). Strings that are not ``caseExact`` compare folded
to lower case on both sides; ``userName eq`` then finds its row through the index on
``lower(login_name)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from scim2_models.path.visitor import FilterVisitor
from sqlalchemy import and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from groupd.services.provisioning.errors import InvalidFilter
from groupd.store.models import DirectoryObject, Group, Membership

Condition = ColumnElement[bool]
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@dataclass(frozen=True, slots=True)
class Attribute:
    """How one SCIM attribute compares in SQL."""

    build: Callable[[CompareOperator, Any], Condition]
    present: Callable[[], Condition]


def _login() -> Attribute:
    # Said outright (every user has one), so that the partial index on lower(login_name)
    # applies.
    text = _text(DirectoryObject.login_name, case_exact=False)
    has_login = DirectoryObject.login_name.is_not(None)
    return Attribute(lambda op, value: and_(has_login, text.build(op, value)), text.present)


def _text(column: Any, *, case_exact: bool) -> Attribute:
    def build(op: CompareOperator, value: Any) -> Condition:
        if not isinstance(value, str):
            raise InvalidFilter(f"'{op.value}' compares this attribute with a string")
        left = column if case_exact else func.lower(column)
        right = value if case_exact else value.lower()
        if op is CompareOperator.eq:
            return left == right
        if op is CompareOperator.ne:
            return or_(left != right, column.is_(None))
        if op is CompareOperator.co:
            return left.contains(right, autoescape=True)
        if op is CompareOperator.sw:
            return left.startswith(right, autoescape=True)
        if op is CompareOperator.ew:
            return left.endswith(right, autoescape=True)
        ordering = {
            CompareOperator.gt: left > right,
            CompareOperator.ge: left >= right,
            CompareOperator.lt: left < right,
            CompareOperator.le: left <= right,
        }
        return ordering[op]

    return Attribute(build, lambda: and_(column.is_not(None), column != ""))


def _uuid(column: Any) -> Attribute:
    def build(op: CompareOperator, value: Any) -> Condition:
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise InvalidFilter("an id compares with eq or ne only")
        try:
            key = uuid.UUID(str(value))
        except ValueError:
            # No row has an id that is not a uuid.
            return false() if op is CompareOperator.eq else true()
        matched: Condition = column == key if op is CompareOperator.eq else column != key
        return matched

    return Attribute(build, lambda: true())


def _active() -> Attribute:
    def build(op: CompareOperator, value: Any) -> Condition:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # Entra's string booleans
        if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
            raise InvalidFilter("active compares with eq or ne and true or false")
        wanted = value if op is CompareOperator.eq else not value
        return DirectoryObject.status == ("active" if wanted else "inactive")

    return Attribute(build, lambda: true())


def _emails() -> Attribute:
    # ``email_keys`` holds the values folded, each framed by newlines ("\na\nb\n").
    keys = DirectoryObject.email_keys

    def build(op: CompareOperator, value: Any) -> Condition:
        if not isinstance(value, str):
            raise InvalidFilter("emails.value compares with a string")
        folded = value.lower()
        if op in (CompareOperator.eq, CompareOperator.ne):
            found = keys.contains(f"\n{folded}\n", autoescape=True)
            return found if op is CompareOperator.eq else or_(not_(found), keys.is_(None))
        if op is CompareOperator.co:
            return keys.contains(folded, autoescape=True)
        if op is CompareOperator.sw:
            return keys.contains(f"\n{folded}", autoescape=True)
        if op is CompareOperator.ew:
            return keys.contains(f"{folded}\n", autoescape=True)
        raise InvalidFilter(f"emails.value cannot be compared with '{op.value}'")

    return Attribute(build, lambda: keys.is_not(None))


def _members() -> Attribute:
    def build(op: CompareOperator, value: Any) -> Condition:
        if op is not CompareOperator.eq:
            raise InvalidFilter("members.value compares with eq only")
        try:
            key = uuid.UUID(str(value))
        except ValueError:
            return false()
        return exists(
            select(Membership.group_id)
            .join(DirectoryObject, DirectoryObject.id == Membership.object_id)
            .where(Membership.group_id == Group.id, DirectoryObject.uuid == key)
        )

    return Attribute(
        build,
        lambda: exists(select(Membership.group_id).where(Membership.group_id == Group.id)),
    )


USER_ATTRIBUTES: dict[str, Attribute] = {
    "id": _uuid(DirectoryObject.uuid),
    "username": _login(),
    "externalid": _text(DirectoryObject.external_id, case_exact=True),
    "displayname": _text(DirectoryObject.display_name, case_exact=False),
    "active": _active(),
    "emails": _emails(),
    "emails.value": _emails(),
}
GROUP_ATTRIBUTES: dict[str, Attribute] = {
    "id": _uuid(Group.uuid),
    "displayname": _text(Group.name, case_exact=False),
    "externalid": _text(Group.external_id, case_exact=True),
    "members": _members(),
    "members.value": _members(),
}


class _ToSql(FilterVisitor[Condition]):
    def __init__(self, attributes: dict[str, Attribute], schema: str) -> None:
        self.attributes = attributes
        self.schema = schema

    def _attribute(self, path: AttrPath, prefix: str = "") -> Attribute:
        if path.uri is not None and path.uri.lower() != self.schema.lower():
            raise InvalidFilter(f"cannot filter on '{path}'")
        name = f"{prefix}{path.attr}" + (f".{path.sub_attr}" if path.sub_attr else "")
        found = self.attributes.get(name.lower())
        if found is None:
            supported = ", ".join(sorted(self.attributes))
            raise InvalidFilter(f"cannot filter on '{name}'; filters compare {supported}")
        return found

    def visit_comparison(self, node: Comparison) -> Condition:
        return self._attribute(node.attr_path).build(node.op, node.value)

    def visit_present(self, node: Present) -> Condition:
        return self._attribute(node.attr_path).present()

    def visit_not(self, node: Not) -> Condition:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> Condition:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op is LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> Condition:
        # ``emails[value eq "x"]``: the sub-attribute filter of one multi-valued attribute.
        inner = node.val_filter
        if isinstance(inner, Comparison) and inner.attr_path.sub_attr is None:
            path = AttrPath(node.attr_path.attr, inner.attr_path.attr)
            return self._attribute(path).build(inner.op, inner.value)
        raise InvalidFilter(f"cannot filter on '{node}'")


def user_condition(node: FilterNode) -> Condition:
    """The SQL condition over ``objects`` that a SCIM filter on Users is."""
    return _ToSql(USER_ATTRIBUTES, CORE_USER).visit(node)


def group_condition(node: FilterNode) -> Condition:
    """The SQL condition over ``groups`` that a SCIM filter on Groups is."""
    return _ToSql(GROUP_ATTRIBUTES, CORE_GROUP).visit(node)
