"""Hide credentials in URLs before they reach logs, metrics, events or the UI (DESIGN 7)."""

from __future__ import annotations

import re

MASK = "***"

# Query parameter names whose values are secrets (compared case-insensitively).
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "access_token",
        "key",
        "api_key",
        "apikey",
        "auth",
        "secret",
        "signature",
        "sig",
        # Presigned and OAuth-style URLs (an HTTP snapshot source may be one).
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "client_secret",
        "access_key",
        "secret_key",
        "private_token",
        "session_token",
    }
)

# scheme://userinfo@ — the userinfo runs to the last '@' before the path, so an unescaped '@'
# inside a password is still hidden.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
# The same with an unescaped '/', '?' or '#' in the password (`user:p#ss@host`): then the part
# before that character has a ':' and an '@' follows later. Such a URL is ambiguous (it also
# reads as host:port/path@...), so everything up to the last '@' is hidden: a host shown too
# little beats a password shown.
_USERINFO_LOOSE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@]*:[^/?#@]*[/?#].*)@"
)
_PARAM = re.compile(r"(?P<lead>^|[&;])(?P<name>[^=&;]*)=(?P<value>[^&;]*)")


def redact_url(url: str) -> str:
    """Return `url` with user, password and secret query values replaced by `***`.

    Never raises: a string that is not a URL (a plain path) comes back unchanged."""
    masked = _USERINFO.sub(_mask_userinfo, url, count=1)
    url = masked if masked != url else _USERINFO_LOOSE.sub(_mask_userinfo, url, count=1)
    query_start = url.find("?")
    if query_start < 0:
        return url
    fragment_start = url.find("#", query_start)
    end = len(url) if fragment_start < 0 else fragment_start
    query = _PARAM.sub(_mask_param, url[query_start + 1 : end])
    return url[: query_start + 1] + query + url[end:]


def _mask_userinfo(m: re.Match[str]) -> str:
    userinfo = m.group("userinfo")
    if not userinfo:
        return m.group(0)
    masked = f"{MASK}:{MASK}" if ":" in userinfo else MASK
    return f"{m.group('scheme')}{masked}@"


def _mask_param(m: re.Match[str]) -> str:
    if m.group("name").strip().lower() not in SECRET_PARAMS:
        return m.group(0)
    return f"{m.group('lead')}{m.group('name')}={MASK}"
