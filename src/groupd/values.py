"""Validation and normalisation of names and typed policy values.

Everything stored passes through here first, so a stored value always parses as its type.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from groupd.errors import InvalidInput

NAME_MAX = 255
DESCRIPTION_MAX = 2000
VALUE_MAX = 1024
# Control, format (zero-width, bidi overrides), surrogate, private-use and unassigned.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_USER_ID = re.compile(r"[^\s]{1,255}")
_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,127}")


def _clean_text(value: str, *, field: str, max_length: int, allow_newlines: bool = False) -> str:
    text = unicodedata.normalize("NFC", value)
    for char in text:
        if allow_newlines and char in "\n\t":
            continue
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            raise InvalidInput(
                f"{field} contains a forbidden character U+{ord(char):04X}", field=field
            )
    if len(text) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    return text


def clean_name(value: str, *, field: str = "name") -> str:
    """A display name: 1-255 characters, no control or invisible characters, trimmed."""
    text = _clean_text(value, field=field, max_length=NAME_MAX)
    if text != text.strip():
        raise InvalidInput(f"{field} must not start or end with whitespace", field=field)
    if not text:
        raise InvalidInput(f"{field} must not be empty", field=field)
    return text


def clean_description(value: str | None, *, field: str = "description") -> str:
    """Free text up to 2000 characters; newlines and tabs allowed, other controls not."""
    if value is None:
        return ""
    return _clean_text(value, field=field, max_length=DESCRIPTION_MAX, allow_newlines=True)


def parse_ip(value: str) -> str:
    """An IPv4 or IPv6 address in its canonical (compressed) form."""
    text = value.strip()
    if "%" in text:
        raise InvalidInput(f"'{value}' is not an IP address (zone ids are not allowed)")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidInput(f"'{value}' is not an IP address") from None


def parse_ip_range(value: str) -> str:
    """An IP range: ``first-last`` (same family, first <= last) or CIDR without host bits.

    Canonical forms: ``10.0.0.1-10.0.0.255`` and ``10.0.0.0/24`` (addresses compressed).
    """
    text = value.strip()
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
        except ValueError:
            raise InvalidInput(f"'{value}' is not an IP range (first-last)") from None
        if "%" in text:
            raise InvalidInput(f"'{value}' is not an IP range (zone ids are not allowed)")
        if first.version != last.version:
            raise InvalidInput(f"'{value}' mixes IPv4 and IPv6")
        if first > last:  # type: ignore[operator]  # same version checked above
            raise InvalidInput(f"'{value}' ends before it starts")
        return f"{first}-{last}"
    if "/" in text:
        try:
            return str(ipaddress.ip_network(text, strict=True))
        except ValueError as error:
            raise InvalidInput(f"'{value}' is not a CIDR network: {error}") from None
    raise InvalidInput(f"'{value}' is not an IP range (use first-last or CIDR)")


def parse_user_id(value: str) -> str:
    text = _clean_text(value, field="value", max_length=NAME_MAX)
    if not _USER_ID.fullmatch(text):
        raise InvalidInput(f"'{value}' is not a user id (1-255 characters, no whitespace)")
    return text


def parse_action(value: str) -> str:
    if not _ACTION.fullmatch(value):
        raise InvalidInput(
            f"'{value}' is not an action (a letter, then letters, digits, '_', '.', ':', '-')"
        )
    return value


def parse_string(value: str) -> str:
    text = _clean_text(value, field="value", max_length=VALUE_MAX)
    if not text:
        raise InvalidInput("an empty string is not a value")
    return text


PARSERS = {
    "user_id": parse_user_id,
    "string": parse_string,
    "action": parse_action,
    "ip": parse_ip,
    "ip_range": parse_ip_range,
}


def parse_values(value_type: str, values: list[str]) -> list[str]:
    """Each value parsed and normalised for ``value_type``; duplicates dropped, order kept."""
    try:
        parser = PARSERS[value_type]
    except KeyError:
        raise InvalidInput(
            f"valueType must be one of {', '.join(PARSERS)}", field="valueType"
        ) from None
    seen: dict[str, None] = {}
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidInput(f"value {raw!r} is not a string", field="values")
        seen.setdefault(parser(raw), None)
    return list(seen)
