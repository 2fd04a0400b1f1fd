"""The plugin's hooks (entry point ``response`` in group ``falconet``; plugin-wide settings in
``plugins.response``, policies in the top-level ``responses:`` list; docs/response.md).

Start order: ``falconet_configure`` (settings) → ``falconet_response_actions`` (first-party,
Kubernetes and notification actions) / ``falconet_event_parsers`` (the capture window, only
when a policy captures) / ``falconet_alert_sinks`` (the policy engine) →
``falconet_alert_fields`` (policies compiled against the full field registry; the tokens they
read are captured by every rule) → ``falconet_start`` (audit log, pidfile, SIGHUP re-arm,
OTel spans)."""

from __future__ import annotations

import logging
import os
from typing import Any

from falconet.alertmatch import MatchError, compile_match
from falconet.api import PluginConfigError, hookimpl

from falconet_response import cli
from falconet_response.actions.capture import CaptureAction, EventRing
from falconet_response.actions.cgroup import FreezeAction, UnfreezeAction
from falconet_response.actions.netns import IsolateNetworkAction
from falconet_response.actions.process import KillAction
from falconet_response.actions.runtime import RuntimeAction
from falconet_response.audit import AuditError, AuditLog, open_private, secure_dir
from falconet_response.engine import ResponseEngine, Scheduler, Settings
from falconet_response.policy import PolicyError, compile_policies
from falconet_response.safety import Protection
from falconet_response.settings import ResponseSettings, parse_settings
from falconet_response.target import TARGET_FIELDS
from falconet_response.telemetry import OTEL_EXTRA, ResponseCollector, span_emitter

log = logging.getLogger("falconet.response")


class _State:
    """What the hooks share during one engine run."""

    def __init__(self) -> None:
        self.settings = ResponseSettings()
        self.scheduler = Scheduler()
        self.ring: EventRing | None = None
        self.protection = Protection()
        self.engine: ResponseEngine | None = None
        self.configured = False
        self.pidfile: str | None = None


_state = _State()


def _policies_cfg(engine: Any) -> list[Any]:
    cfg = getattr(engine, "config", None) or {}
    return list(cfg.get("responses") or [])


def _uses(engine: Any, action: str) -> bool:
    return any(isinstance(p, dict) and any(isinstance(a, dict) and a.get("action") == action
                                           for a in p.get("actions") or [])
               for p in _policies_cfg(engine))


@hookimpl
def falconet_configure(config: dict[str, Any], engine: Any) -> None:
    _state.__init__()
    _state.settings = parse_settings(config)
    _state.configured = True


def _settings(engine: Any) -> ResponseSettings:
    if not _state.configured:
        falconet_configure({}, engine)
    return _state.settings


def first_party_actions(s: ResponseSettings, ring: EventRing | None, scheduler: Scheduler,
                        protection: Protection) -> list[Any]:
    freeze = FreezeAction()
    acts: list[Any] = [KillAction(protection.pid_protected), freeze, UnfreezeAction(freeze),
                       RuntimeAction("pause", s.runtime), RuntimeAction("stop", s.runtime),
                       IsolateNetworkAction()]
    # without a policy that captures there is no event window (no parser): listed anyway
    acts.append(CaptureAction(ring, s.capture_dir, scheduler.call_later))
    return acts


def family_actions(s: ResponseSettings) -> list[Any]:
    """The Kubernetes, Slack and webhook families (``plugins.response.k8s`` / ``.notify``),
    when their modules are installed."""
    out: list[Any] = []
    try:
        from falconet_response.actions.k8s import k8s_actions  # noqa: PLC0415
    except ImportError:
        k8s_actions = None  # type: ignore[assignment]
    try:
        from falconet_response.actions.notify import notify_actions  # noqa: PLC0415
    except ImportError:
        notify_actions = None  # type: ignore[assignment]
    if k8s_actions is not None:
        out += k8s_actions(s.k8s, log)
    if notify_actions is not None:
        out += notify_actions(s.notify, log)
    return out


@hookimpl
def falconet_response_actions(engine: Any) -> list[Any] | None:
    s = _settings(engine)
    if _uses(engine, "capture") and _state.ring is None:
        _state.ring = EventRing(s.capture_buffer_events)
    try:
        fam = family_actions(s)
    except ValueError as e:           # ActionParamError of a family's settings
        raise PluginConfigError(str(e)) from None
    return first_party_actions(s, _state.ring, _state.scheduler, _state.protection) + fam


@hookimpl
def falconet_event_parsers(engine: Any) -> list[Any] | None:
    """The capture window: one deque append per event, only when a policy captures."""
    if _state.ring is None and _uses(engine, "capture"):
        _state.ring = EventRing(_settings(engine).capture_buffer_events)
    return [_state.ring.parse] if _state.ring is not None else None


@hookimpl
def falconet_alert_sinks(engine: Any) -> list[Any] | None:
    if not _policies_cfg(engine):
        return None
    s = _settings(engine)
    _state.engine = ResponseEngine(
        [], audit=AuditLog(s.audit_log), protection=_state.protection,
        settings=Settings(s.breaker, s.failure_log_seconds), scheduler=_state.scheduler,
        hostname=getattr(engine, "hostname", "") or "")
    return [_state.engine]


@hookimpl
def falconet_alert_fields(engine: Any) -> list[str] | None:
    items = _policies_cfg(engine)
    if not items:
        return None
    s = _settings(engine)
    actions = dict(getattr(engine, "extras", {}).get("falconet.response_actions") or {})
    registry = engine.fields
    try:
        policies = compile_policies(items, registry, actions, where="responses")
    except PolicyError as e:
        raise PluginConfigError("\n".join(e.problems)) from None
    tokens = set(TARGET_FIELDS)
    if s.protected:
        try:
            prot = compile_match({"condition": s.protected}, registry,
                                 where="plugins.response.protected")
        except MatchError as e:
            raise PluginConfigError("\n".join(
                p.replace("match.condition", "plugins.response.protected") for p in e.problems)
            ) from None
        _state.protection.condition = prot
        tokens |= prot.fields
    for p in policies:
        tokens |= p.fields
    eng = _state.engine
    if eng is None:
        return None
    eng.set_policies(policies)
    engine.extras["falconet.responses"] = eng
    return sorted(tokens)


def _write_pidfile(path: str) -> None:
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


@hookimpl
def falconet_start(engine: Any) -> None:
    eng = _state.engine
    if eng is None:
        return
    extras = getattr(engine, "extras", {})
    eng.inject_alert = extras.get("falconet.inject_alert")
    otel = extras.get(OTEL_EXTRA)
    if otel is not None and hasattr(otel, "span_ids"):
        eng.spans = span_emitter(otel)
    extras.setdefault("falconet.on_sighup", []).append(_on_sighup)
    s = _state.settings
    try:
        secure_dir(s.state)
        eng.audit.open()
        _write_pidfile(s.pidfile)
        _state.pidfile = s.pidfile
        if _state.ring is not None:
            secure_dir(s.capture_dir)
    except (OSError, AuditError) as e:
        # the audit trail is part of the safety model: no audit log, no actions
        raise PluginConfigError(f"plugins.response: {e}") from None
    n = len(eng.policies)
    modes = sum(1 for p in eng.policies if p.dry_run)
    log.info("response: %d policies (%d dry-run), audit log %s", n, modes, s.audit_log)


def _on_sighup() -> None:
    """In the signal handler: re-arming is a few dict operations and an audit line."""
    eng = _state.engine
    if eng is not None:
        eng.rearm(by="SIGHUP")


@hookimpl
def falconet_stop(engine: Any) -> None:
    if _state.pidfile:
        try:
            os.unlink(_state.pidfile)
        except OSError:
            pass
        _state.pidfile = None


@hookimpl
def falconet_metrics(registry: Any, engine: Any) -> None:
    registry.register(ResponseCollector(lambda: _state.engine))


@hookimpl
def falconet_commands() -> list[Any]:
    return [cli]
