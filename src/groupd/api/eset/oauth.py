"""``POST /oauth/token``: ESET Connect's password and refresh-token grants."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.auth import password_login
from groupd.api.eset import schemas as s
from groupd.api.eset.surface import DOCUMENTED, ESET_TOKEN
from groupd.api.http import ApiRequest, Endpoint, json_response
from groupd.errors import InvalidInput
from groupd.services import accounts

GRANTS = ("password", "refresh_token")


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise InvalidInput(f"form field '{name}' is required", field=name)
    return value


def issue_token(req: ApiRequest) -> Response:
    form = req.form()
    grant = _required(form, "grant_type")
    settings = req.ctx.settings
    if grant == "password":
        username, password = _required(form, "username"), _required(form, "password")
        account = password_login(req, username, password)
        pair = accounts.issue_token_pair(
            req.uow,
            account=account,
            now=req.now,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
    elif grant == "refresh_token":
        pair = accounts.refresh_tokens(
            req.uow,
            refresh_token=_required(form, "refresh_token"),
            now=req.now,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
    else:
        raise InvalidInput(
            f"grant_type must be one of {', '.join(GRANTS)}, not '{grant}'",
            field="grant_type",
            code="unsupported_grant_type",
        )
    return json_response(
        s.EsetToken(
            access_token=pair.access.secret,
            refresh_token=pair.refresh.secret,
            token_type="Bearer",
            expires_in=pair.access.expires_in,
        ),
        headers={"Cache-Control": "no-store"},
    )


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "POST",
            "/oauth/token",
            issue_token,
            ESET_TOKEN,
            role=None,
            write=True,
            summary="ESET: password or refresh-token grant (form-encoded)",
            response=s.EsetToken,
            tags=["eset"],
            document=DOCUMENTED,
            json_body=False,
            form=s.TOKEN_FORM,
            errors=(400, 415),
        ),
    ]
