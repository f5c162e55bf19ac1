"""The one domain error hierarchy. Services raise these; each API surface maps them once."""

from __future__ import annotations

from typing import Any


class GroupdError(Exception):
    """Base of every error a client can cause. ``code`` is stable and machine-readable."""

    code = "error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = extra


class InvalidInput(GroupdError):
    """The request is malformed or a value does not fit its type."""

    code = "invalid_input"


class NotFound(GroupdError):
    """No such resource in the caller's tenant (other tenants' ids land here too)."""

    code = "not_found"


class Conflict(GroupdError):
    """The request clashes with the current state (a taken name, a move under itself)."""

    code = "conflict"


class DeleteRefused(Conflict):
    """A delete guard refused; ``extra['blockers']`` lists the groups and the rule."""

    code = "delete_refused"


class RestoreConflict(Conflict):
    """A restore cannot bring its subtree back; ``extra['conflicts']`` names every reason
    (``parent_gone``, ``name_taken``, ``units_unavailable``) at once."""

    code = "restore_conflict"


class InsufficientUnits(Conflict):
    """A licence has fewer free units than an activation asks for."""

    code = "insufficient_units"


class PreconditionFailed(GroupdError):
    """``If-Match`` named a version the resource no longer has."""

    code = "precondition_failed"


class AuthenticationFailed(GroupdError):
    """Missing, wrong, expired or revoked credentials."""

    code = "unauthenticated"


class AccountLocked(AuthenticationFailed):
    """Too many failed logins: the account waits out a cool-down."""

    code = "account_locked"


class PermissionDenied(GroupdError):
    """Authenticated, but the role does not allow the action."""

    code = "permission_denied"


class RateLimited(GroupdError):
    """Too many requests for this credential and address."""

    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(GroupdError):
    """The service cannot do this now and changed nothing: maintenance mode, a busy or
    unreachable database, a spent time budget. The client may try again later."""

    code = "maintenance"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class NotAcceptable(InvalidInput):
    code = "not_acceptable"


class ValuesDoNotFit(InvalidInput):
    """Values that do not parse as the valueType of the group they are for. Bad input
    to a vendor face that names the type in the same call; the native API, where the
    type is the group's state, answers it as a conflict with that state."""

    code = "values_do_not_fit"
