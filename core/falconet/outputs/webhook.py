"""HTTP webhook output: POSTs each alert as Falco JSON (what falcosidekick's ``/`` accepts).

Standard library only (urllib). Retries connection errors, timeouts, 429 and 5xx with exponential
backoff; other 4xx answers are final. The engine puts the sink behind its own bounded queue, so a
slow endpoint costs counted drops, never a stalled event loop.

Redirects are never followed: a 3xx answer is a failure (not retried) naming where it pointed,
so an alert is never counted as delivered to an endpoint that did not take it, and credentials
(URL userinfo, ``headers``) never travel to another origin. URLs in messages are redacted
(:mod:`falconet.redact`).
"""

from __future__ import annotations

import base64
import http.client
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from falconet import __version__
from falconet.alerts import Alert
from falconet.delivery import PayloadRejected
from falconet.encoding import utf8
from falconet.priorities import Priority
from falconet.redact import redact_text, redact_url, register_header_secrets, register_url_secrets


class WebhookError(RuntimeError):
    pass


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """``http://user:pw@host/`` → (``http://host/``, ``Basic ...``). urllib would take
    ``user:pw@host`` for the host name, and the URL appears in error messages and logs, where
    the password must not."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    cred = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
    auth = "Basic " + base64.b64encode(cred.encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), auth


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Every 3xx surfaces as an ``HTTPError`` instead of a new request to its ``Location``."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


class WebhookSink:
    def __init__(self, name: str, url: str, fmt: Callable[[Alert], str], *,
                 min_priority: Priority = Priority.DEBUG, retries: int = 3, timeout: float = 5.0,
                 backoff: float = 0.2, queue_size: int = 1000,
                 headers: dict[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {redact_url(url)!r}")
        self.name = name
        register_url_secrets(url)
        register_header_secrets(headers or {})
        self.url, auth = _split_userinfo(url)
        #: the URL as messages show it (no userinfo, query values masked)
        self.shown_url = redact_url(self.url)
        self.min_priority = min_priority
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.queue_size = queue_size
        self._fmt = fmt
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": f"falconet/{__version__}", **(headers or {})}
        if auth and not any(k.lower() == "authorization" for k in self.headers):
            self.headers["Authorization"] = auth
        self.attempts = 0
        self.last_error = ""
        self._conn: http.client.HTTPConnection | None = None
        self._path = "/"
        # no proxies from the environment: alerts go where the config says; no redirects
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   _RefuseRedirects())

    def start(self) -> None:
        pass

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        with self._opener.open(req, timeout=self.timeout) as resp:
            resp.read()

    def send(self, alert: Alert) -> None:
        body = utf8(self._fmt(alert))
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                self._post(body)
                return
            except urllib.error.HTTPError as e:
                e.close()
                if 300 <= e.code < 400:
                    where = e.headers.get("Location") if e.headers is not None else None
                    to = f" to {redact_url(urllib.parse.urljoin(self.url, where))}" if where else ""
                    raise WebhookError(f"{self.shown_url}: HTTP {e.code} redirect{to} refused "
                                       "(webhooks never follow redirects; not delivered, not "
                                       "retried)") from None
                last = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    raise WebhookError(f"{self.shown_url}: {last} (not retried)") from None
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                last = redact_text(str(getattr(e, "reason", e)))
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise WebhookError(f"{self.shown_url}: {last} after {self.retries + 1} attempts")

    # ------------------------------------------------------------------ spool contract
    #: the engine may keep alerts this sink cannot deliver in its on-disk spool
    #: (``falconet.delivery.worker``); it then calls ``encode``/``deliver`` instead of ``send``
    spool = True

    def encode(self, alert: Alert) -> bytes:
        return utf8(self._fmt(alert))

    def deliver(self, payloads: Sequence[bytes]) -> int:
        """POST each payload once, in order, over one kept-alive connection; returns how many
        were accepted (2xx). A refusal a retry cannot change (4xx other than 408/429, or a
        redirect: alerts go only where the config says) raises ``PayloadRejected``; the spool
        retries the rest with backoff, so there is no retry loop here."""
        for i, body in enumerate(payloads):
            self.attempts += 1
            try:
                status = self._post_keepalive(body)
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                self.last_error = redact_text(f"{self.shown_url}: {type(e).__name__}: {e}")
                return i
            if 200 <= status < 300:
                continue
            self.last_error = f"{self.shown_url}: HTTP {status}"
            if status in (408, 429) or status >= 500:
                return i
            if 300 <= status < 400:
                raise PayloadRejected(i, f"{self.last_error} redirect refused (webhooks never "
                                         "follow redirects; not retried)")
            raise PayloadRejected(i, self.last_error + " (not retried)")
        return len(payloads)

    def _post_keepalive(self, body: bytes) -> int:
        if self._conn is not None:
            try:
                return self._post_on_connection(body)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the receiver closed the idle kept-alive connection: once more on a new one
                self._drop_connection()
        return self._post_on_connection(body)

    def _post_on_connection(self, body: bytes) -> int:
        conn = self._conn
        if conn is None:
            u = urllib.parse.urlsplit(self.url)
            if u.scheme == "https":
                conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443,
                                                   timeout=self.timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(u.hostname or "", u.port or 80,
                                                  timeout=self.timeout)
            self._conn = conn
            self._path = urllib.parse.urlunsplit(("", "", u.path or "/", u.query, ""))
        conn.request("POST", self._path, body=body, headers=self.headers)
        resp = conn.getresponse()
        resp.read()
        if resp.will_close:
            self._drop_connection()
        return resp.status

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._drop_connection()
