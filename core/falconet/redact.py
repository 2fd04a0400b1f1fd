"""Secrets out of every message: the one redaction helper of log lines and errors.

Configuration carries credentials (a webhook URL's ``user:password@``, ``?token=`` query
parameters, ``Authorization`` and API-key headers, OTLP exporter headers). Whatever the engine
prints about an output or a configuration problem goes through :func:`redact_text` (free text:
URLs found in it are redacted, and so is every secret :func:`register_secret` was told about)
or the specific helpers below. The mask is :data:`MASK`.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

MASK = "***"

#: header values shown as they are: they never carry credentials
PUBLIC_HEADERS = frozenset({"content-type", "content-encoding", "accept", "user-agent",
                            "content-length"})

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
#: ``Authorization: Bearer x``, ``authorization=Basic x``, ``'Authorization': 'Bearer x'``
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: shorter values are not registered (they would mask ordinary words such as "true")
_MIN_SECRET_LEN = 8
#: a ``-o key.path=value`` whose path has a component ending like this shows no value
_SECRET_KEYS = ("headers", "url", "endpoint", "password", "passwd", "token", "secret", "auth",
                "authorization", "api_key", "apikey", "credentials")


def register_secret(value: str | None) -> None:
    """Remember a secret (a header value, a URL password) so that :func:`redact_text` masks it
    wherever it appears, e.g. echoed back in a library's error message."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets.add(value)


def register_url_secrets(url: str) -> None:
    """Register the password and query values of ``url``."""
    try:
        parts = urllib.parse.urlsplit(url)
        register_secret(parts.password and urllib.parse.unquote(parts.password))
        register_secret(parts.password)
        for _k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            register_secret(v)
    except ValueError:
        pass


def register_header_secrets(headers: Mapping[str, Any]) -> None:
    for k, v in headers.items():
        if str(k).lower() not in PUBLIC_HEADERS and isinstance(v, str):
            register_secret(v)
            # "Bearer abc": the token alone may be echoed too
            register_secret(v.partition(" ")[2] if " " in v else None)


def redact_url(url: str) -> str:
    """``https://user:pw@host/p?token=abc`` → ``https://***@host/p?token=***`` (every query
    value masked: a parameter's name does not say whether it is a secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        query = "&".join(f"{p.partition('=')[0]}={MASK}" if "=" in p else MASK
                         for p in query.split("&"))
    fragment = MASK if parts.fragment else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Header values masked, except :data:`PUBLIC_HEADERS`."""
    return {k: v if str(k).lower() in PUBLIC_HEADERS else MASK for k, v in headers.items()}


def _names_secret(key: str) -> bool:
    """``key`` (a dotted path's last part) names a setting whose value is a credential."""
    last = key.rpartition(".")[2].strip().lower()
    return last.endswith(_SECRET_KEYS) and not last.endswith(("url", "endpoint"))


def redact_value(value: Any, key: str = "") -> Any:
    """A configuration value fit for an error message: URLs in strings redacted, ``headers``
    mappings masked, containers walked; under a key that names a credential (``headers``,
    ``token``, ``password``...) a value of any other type is masked whole (headers written as
    one string, a token in a list)."""
    if isinstance(value, Mapping):
        if key.lower().endswith("headers"):
            return redact_headers(value)
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if value is not None and not isinstance(value, bool) and _names_secret(key):
        return MASK
    if isinstance(value, list | tuple):
        return [redact_value(v, key) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_override(text: str) -> str:
    """A ``-o key.path=value`` override for a message: the value masked when the key names a
    secret-bearing setting (``outputs.webhook.headers...``, ``...url``, ``...token``)."""
    key, sep, _value = text.partition("=")
    parts = [p.strip().lower() for p in key.split(".")]
    if sep and any(p.endswith(_SECRET_KEYS) for p in parts):
        return f"{key}={MASK}"
    return redact_text(text)


def redact_text(text: str) -> str:
    """Free text with every URL redacted, ``Bearer``/``Basic`` credentials and every registered
    secret masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group()), text)
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    if _secrets:
        with _secrets_lock:
            secrets = sorted(_secrets, key=len, reverse=True)
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
    return text
