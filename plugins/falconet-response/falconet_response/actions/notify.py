"""Notification actions: ``slack`` (an incoming-webhook message shaped like falcosidekick's) and
``webhook`` (the Falco JSON alert POSTed to any URL: AWS Lambda function URLs, Knative services,
OpenFaaS functions, falcosidekick itself).

Both POST with the standard library, bounded: a per-request ``timeout``, ``retries`` only for
connection errors, timeouts, 429 and 5xx, no redirect followed (a 3xx is a failure: a webhook that
redirects would send the alert where the config does not say), no proxy from the environment.
Secrets (the Slack webhook URL, a secret function URL, header tokens) come from env vars or files
named in the params (:mod:`.secret_source`); the normalised params hold only those names, and every
error text is redacted (the URL shows as its source, ``URL from $SLACK_WEBHOOK``, or for a plain
``url`` as ``scheme://host:port``).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from falconet import __version__
from falconet.alerts import Alert
from falconet.outputs.format import format_json
from falconet.outputs.webhook import _split_userinfo

from . import slack_format
from .base import Action, ActionParamError, Outcome, Target
from .params import at, check_known, number
from .secret_source import SecretError, SecretRef, redact, secret_ref

DEFAULT_SLACK_ENV = "FALCONET_SLACK_WEBHOOK_URL"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: headers the action owns (framing, routing and the body's type)
_RESERVED_HEADERS = {"content-length", "content-type", "host", "transfer-encoding", "connection"}
MAX_ANSWER = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None          # urllib then raises HTTPError(3xx) instead of following


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


@dataclass(frozen=True)
class Endpoint:
    """Where to POST: a literal URL or a secret one (read at each use)."""

    url: str | None = None
    secret: SecretRef | None = None

    def shown(self) -> str:
        """How errors name it: never the secret, never a path or query."""
        if self.secret is not None:
            return f"URL from {self.secret.describe()}"
        p = urllib.parse.urlsplit(self.url or "")
        return f"{p.scheme}://{p.hostname}" + (f":{p.port}" if p.port else "")

    def resolve(self) -> str:
        url = self.secret.read() if self.secret is not None else str(self.url)
        p = urllib.parse.urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise SecretError(f"the {self.shown()} is not an http:// or https:// URL")
        return url


def _check_url(url: Any, what: str) -> str:
    if not isinstance(url, str):
        raise ActionParamError(f"{at(what)}url must be a string")
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ActionParamError(f"{at(what)}url must be an http:// or https:// URL with a host")
    return url


def post_json(endpoint: Endpoint, body: bytes, headers: Mapping[str, str], timeout: float,
              retries: int, backoff: float = 0.2) -> Outcome:
    """POST ``body``; ``done`` on a 2xx, else ``failed`` with a redacted reason."""
    try:
        url = endpoint.resolve()
    except SecretError as e:
        return Outcome("failed", str(e))
    url, auth = _split_userinfo(url)
    hdrs = {"Content-Type": "application/json", "User-Agent": f"falconet/{__version__}",
            **headers}
    if auth and not any(k.lower() == "authorization" for k in hdrs):
        hdrs["Authorization"] = auth
    p = urllib.parse.urlsplit(url)
    secrets = [url, p.netloc, p.path, p.query, *hdrs.values()] if endpoint.secret else \
        [p.path, p.query, *headers.values()]
    secrets = [s for s in secrets if s not in ("/", "application/json")]
    last, delay, attempts = "", backoff, 0
    for attempt in range(retries + 1):
        attempts += 1
        try:
            req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
            with _OPENER.open(req, timeout=timeout) as resp:
                resp.read(MAX_ANSWER)
                return Outcome("done", f"POST {endpoint.shown()}: HTTP {resp.status}")
        except urllib.error.HTTPError as e:
            answer = _short_answer(e)
            e.close()
            last = f"HTTP {e.code}" + (f" {answer}" if answer else "")
            if 300 <= e.code < 400:
                last = f"HTTP {e.code} redirect (not followed)"
                break
            if e.code != 429 and e.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException,
                ValueError) as e:
            reason = getattr(e, "reason", e)
            last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
        if attempt < retries:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return Outcome("failed", redact(f"POST {endpoint.shown()}: {last}{tries}", secrets)[:300])


def _short_answer(e: urllib.error.HTTPError) -> str:
    """The first printable bytes of an error answer (Slack says ``invalid_payload``, etc.)."""
    try:
        text = e.read(200).decode("utf-8", "replace").strip().splitlines()
    except Exception:  # noqa: BLE001 - the status alone is enough
        return ""
    first = text[0][:80] if text else ""
    return first if first.isprintable() else ""


# ---------------------------------------------------------------------- shared param checks
def _text(params: Mapping[str, Any], key: str, what: str) -> str | None:
    v = params.get(key)
    if v is not None and (not isinstance(v, str) or not v.isprintable()):
        raise ActionParamError(f"{at(what)}{key} must be a single-line string")
    return v


def _ref(params: Mapping[str, Any], env_key: str, file_key: str, what: str) -> SecretRef | None:
    try:
        ref = secret_ref(params, env_key, file_key)
        if ref is not None:
            ref.read()                   # a missing secret is a load-time error
    except (ValueError, SecretError) as e:
        raise ActionParamError(f"{at(what)}{e}") from None
    return ref


def _with_defaults(defaults: Mapping[str, Any], params: Mapping[str, Any],
                   source_keys: tuple[str, ...]) -> dict[str, Any]:
    """Policy params over the family's defaults; a URL source in the params replaces the
    default's source as a whole (never both an env var and a file)."""
    merged = dict(defaults)
    if any(k in params for k in source_keys):
        for k in source_keys:
            merged.pop(k, None)
    merged.update(params)
    return merged


# ---------------------------------------------------------------------- slack
class SlackAction:
    """``slack``: one message per alert to a Slack incoming webhook."""

    name = "slack"
    reversible = False
    _SOURCES = ("webhook_url_env", "webhook_url_file")

    def __init__(self, defaults: Mapping[str, Any], log: logging.Logger) -> None:
        self.defaults = dict(defaults)
        self.log = log

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        what = ""                        # the policy compiler names the action
        known = {*self._SOURCES, "channel", "username", "icon_url", "footer", "output_format",
                 "message", "timeout", "retries"}
        check_known(params, known, what)
        p = _with_defaults(self.defaults, params, self._SOURCES)
        check_known(p, known, "plugins.response.notify.slack")
        ref = _ref(p, *self._SOURCES, what) or _ref({"webhook_url_env": DEFAULT_SLACK_ENV},
                                                     *self._SOURCES, what)
        assert ref is not None
        fmt = p.get("output_format", "all")
        if fmt not in slack_format.OUTPUT_FORMATS:
            raise ActionParamError(f"{at(what)}output_format must be one of "
                                   f"{', '.join(slack_format.OUTPUT_FORMATS)}, got {fmt!r}")
        out: dict[str, Any] = {**ref.to_params(*self._SOURCES), "output_format": fmt,
                               "timeout": float(number(p, "timeout", 5.0, 0.1, 60, what)),
                               "retries": number(p, "retries", 1, 0, 5, what, integer=True),
                               "username": _text(p, "username", what) or "Falconet"}
        for key in ("channel", "icon_url", "footer", "message"):
            v = _text(p, key, what)
            if v:
                out[key] = v
        if "message" in out:
            try:
                slack_format.check_message(out["message"])
            except ValueError as e:
                raise ActionParamError(f"{at(what)}message: {e}") from None
        return out

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        ref = secret_ref(params, *self._SOURCES)
        body = json.dumps(slack_format.slack_payload(alert, params), ensure_ascii=False)
        return post_json(Endpoint(secret=ref), body.encode("utf-8"), {}, params["timeout"],
                         params["retries"])

    def undo(self, data: dict[str, Any]) -> Outcome:
        return Outcome("failed", "a sent Slack message cannot be undone")


# ---------------------------------------------------------------------- webhook
class WebhookAction:
    """``webhook``: the Falco JSON alert (what the core JSON output writes) POSTed to a URL."""

    name = "webhook"
    reversible = False
    _SOURCES = ("url", "url_env", "url_file")

    def __init__(self, defaults: Mapping[str, Any], log: logging.Logger) -> None:
        self.defaults = dict(defaults)
        self.log = log

    def _headers(self, p: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("headers", "headers_env", "headers_file"):
            v = p.get(key) or {}
            if not isinstance(v, Mapping):
                raise ActionParamError(f"{key} must be a mapping of header: value")
            for name, val in v.items():
                if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                    raise ActionParamError(f"{key}: {name!r} is not a header name")
                if name.lower() in _RESERVED_HEADERS:
                    raise ActionParamError(f"{key}: {name} is set by the action")
                if not isinstance(val, str) or not val.isprintable():
                    raise ActionParamError(f"{key}: {name} must be a single-line "
                                           "string")
                if key != "headers":
                    src = "env" if key == "headers_env" else "file"
                    _ref({src: val}, "env", "file", f"{key}: {name}")
            out[key] = dict(v)
        return out

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        what = ""                        # the policy compiler names the action
        known = {*self._SOURCES, "headers", "headers_env", "headers_file", "timeout", "retries"}
        check_known(params, known, what)
        p = _with_defaults(self.defaults, params, self._SOURCES)
        check_known(p, known, "plugins.response.notify.webhook")
        given = [k for k in self._SOURCES if p.get(k) is not None]
        if len(given) != 1:
            raise ActionParamError(f"{at(what)}give exactly one of url, url_env, url_file"
                                   + (f" (got {', '.join(given)})" if given else ""))
        out: dict[str, Any] = {}
        if given[0] == "url":
            out["url"] = _check_url(p["url"], what)
        else:
            ref = _ref(p, "url_env", "url_file", what)
            assert ref is not None
            out.update(ref.to_params("url_env", "url_file"))
        out.update(self._headers(p))
        out["timeout"] = float(number(p, "timeout", 5.0, 0.1, 60, what))
        out["retries"] = number(p, "retries", 1, 0, 5, what, integer=True)
        return out

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        endpoint = Endpoint(url=params["url"]) if params.get("url") else \
            Endpoint(secret=secret_ref(params, "url_env", "url_file"))
        headers = dict(params.get("headers") or {})
        for key, src in (("headers_env", "env"), ("headers_file", "file")):
            for name, where in (params.get(key) or {}).items():
                ref = SecretRef(**{src: where})
                try:
                    value = ref.read()
                except SecretError as e:
                    return Outcome("failed", f"header {name}: {e}")
                if not value.isprintable():
                    return Outcome("failed", f"header {name} from {ref.describe()} is not a "
                                             "single-line value")
                headers[name] = value
        body = format_json(alert).encode("utf-8")
        return post_json(endpoint, body, headers, params["timeout"], params["retries"])

    def undo(self, data: dict[str, Any]) -> Outcome:
        return Outcome("failed", "a delivered webhook cannot be undone")


def _family_defaults(cfg: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    section = (cfg or {}).get(key) or {}
    if not isinstance(section, Mapping):
        raise ActionParamError(f"plugins.response.notify.{key} must be a mapping")
    return section


def notify_actions(cfg: dict[str, Any] | None, log: logging.Logger) -> list[Action]:
    """``slack`` and ``webhook``; ``cfg`` is ``plugins.response.notify``: ``slack:`` and
    ``webhook:`` hold defaults for the actions' params (a team-wide Slack webhook, say)."""
    if cfg is not None and not isinstance(cfg, Mapping):
        raise ActionParamError("plugins.response.notify must be a mapping")
    unknown = sorted(set(cfg or {}) - {"slack", "webhook"})
    if unknown:
        raise ActionParamError(f"plugins.response.notify: unknown setting(s) "
                               f"{', '.join(map(str, unknown))} (known: slack, webhook)")
    return [SlackAction(_family_defaults(cfg, "slack"), log),
            WebhookAction(_family_defaults(cfg, "webhook"), log)]
