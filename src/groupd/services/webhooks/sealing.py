"""Subscription secrets: made here, shown once, kept so they can sign.

A signature needs the secret itself (HMAC), so it cannot be stored as a hash the way
tokens are. With ``GROUPD_WEBHOOK_SECRET_KEYS`` set, it is sealed with Fernet
(``cryptography``) before it reaches the database: a dump or a backup alone does not
reveal it (docs/security.md).
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from groupd.errors import Unavailable

PREFIX = "whsec_"
_SEALED = "fernet:"
_PLAIN = "plain:"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _keys(keys: str) -> MultiFernet | None:
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    return MultiFernet([Fernet(part) for part in parts]) if parts else None


def seal(secret: str, keys: str) -> str:
    """What the database keeps of ``secret``."""
    fernet = _keys(keys)
    if fernet is None:
        return _PLAIN + secret
    return _SEALED + fernet.encrypt(secret.encode()).decode()


def unseal(stored: str, keys: str) -> str:
    """The secret back from what the database keeps."""
    if stored.startswith(_PLAIN):
        return stored[len(_PLAIN) :]
    fernet = _keys(keys)
    if fernet is None:
        raise Unavailable("a webhook secret is sealed but GROUPD_WEBHOOK_SECRET_KEYS is empty")
    try:
        return fernet.decrypt(stored[len(_SEALED) :].encode()).decode()
    except InvalidToken:
        raise Unavailable(
            "a webhook secret was sealed with a key GROUPD_WEBHOOK_SECRET_KEYS no longer has"
        ) from None
