"""Secrets kept out of what gets printed: passwords inside URLs and DSNs, and secret settings.

Settings, broker URLs and server URLs end up in logs, progress lines and tracebacks; each of their
printed forms goes through here, so a password is never shown, whatever holds it.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "***"
# libpq key=value connection strings: `host=db password=s3cret dbname=fleet`.
_DSN_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`; everything else unchanged."""
    if "://" not in url:
        return _DSN_PASSWORD.sub(rf"\g<1>{MASK}", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK  # unparseable: it may hold anything, show nothing
    if password is None:
        return _DSN_PASSWORD.sub(rf"\g<1>{MASK}", url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def redact_secret(value: str) -> str:
    """`***` for a set secret, the empty string for an unset one (so "unset" still shows)."""
    return MASK if value else ""
