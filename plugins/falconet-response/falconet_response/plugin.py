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


def _policies_cfg(engine: Any) -> list[Any]:
    cfg = getattr(engine, "config", None) or {}
    return list(cfg.get("responses") or [])


def _uses(engine: Any, action: str) -> bool:
    return any(isinstance(p, dict) and any(isinstance(a, dict) and a.get("action") == action
                                           for a in p.get("actions") or [])
               for p in _policies_cfg(engine))


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


def _write_pidfile(path: str) -> None:
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


class ResponsePlugin:
    """One engine's response plugin (the host makes one instance per engine run)."""

    def __init__(self) -> None:
        self.settings = ResponseSettings()
        self.scheduler = Scheduler()
        self.ring: EventRing | None = None
        self.protection = Protection()
        self.engine: ResponseEngine | None = None
        self.configured = False
        self.pidfile: str | None = None

    def _settings(self, engine: Any) -> ResponseSettings:
        if not self.configured:
            self.falconet_configure({}, engine)
        return self.settings

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: Any) -> None:
        self.settings = parse_settings(config)
        self.configured = True

    @hookimpl
    def falconet_response_actions(self, engine: Any) -> list[Any] | None:
        s = self._settings(engine)
        if _uses(engine, "capture") and self.ring is None:
            self.ring = EventRing(s.capture_buffer_events)
        try:
            fam = family_actions(s)
        except ValueError as e:           # ActionParamError of a family's settings
            raise PluginConfigError(str(e)) from None
        return first_party_actions(s, self.ring, self.scheduler, self.protection) + fam

    @hookimpl
    def falconet_event_parsers(self, engine: Any) -> list[Any] | None:
        """The capture window: one deque append per event, only when a policy captures."""
        if self.ring is None and _uses(engine, "capture"):
            self.ring = EventRing(self._settings(engine).capture_buffer_events)
        return [self.ring.parse] if self.ring is not None else None

    @hookimpl
    def falconet_alert_sinks(self, engine: Any) -> list[Any] | None:
        if not _policies_cfg(engine):
            return None
        s = self._settings(engine)
        self.engine = ResponseEngine(
            [], audit=AuditLog(s.audit_log), protection=self.protection,
            settings=Settings(s.breaker, s.failure_log_seconds), scheduler=self.scheduler,
            hostname=getattr(engine, "hostname", "") or "")
        return [self.engine]

    @hookimpl
    def falconet_alert_fields(self, engine: Any) -> list[str] | None:
        items = _policies_cfg(engine)
        if not items:
            return None
        s = self._settings(engine)
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
                    p.replace("match.condition", "plugins.response.protected")
                    for p in e.problems)) from None
            self.protection.condition = prot
            tokens |= prot.fields
        for p in policies:
            tokens |= p.fields
        if self.engine is None:
            return None
        self.engine.set_policies(policies)
        engine.extras["falconet.responses"] = self.engine
        return sorted(tokens)

    @hookimpl
    def falconet_start(self, engine: Any) -> None:
        eng = self.engine
        if eng is None:
            return
        extras = getattr(engine, "extras", {})
        eng.inject_alert = extras.get("falconet.inject_alert")
        otel = extras.get(OTEL_EXTRA)
        if otel is not None and hasattr(otel, "span_ids"):
            eng.spans = span_emitter(otel)
        extras.setdefault("falconet.on_sighup", []).append(self._on_sighup)
        s = self.settings
        try:
            secure_dir(s.state)
            eng.audit.open()
            _write_pidfile(s.pidfile)
            self.pidfile = s.pidfile
            if self.ring is not None:
                secure_dir(s.capture_dir)
        except (OSError, AuditError) as e:
            # the audit trail is part of the safety model: no audit log, no actions
            raise PluginConfigError(f"plugins.response: {e}") from None
        n = len(eng.policies)
        shadow = sum(1 for p in eng.policies if p.dry_run)
        log.info("response: %d policies (%d dry-run), audit log %s", n, shadow, s.audit_log)

    def _on_sighup(self) -> None:
        """In the signal handler: re-arming is a few dict operations and an audit line."""
        if self.engine is not None:
            self.engine.rearm(by="SIGHUP")

    @hookimpl
    def falconet_stop(self, engine: Any) -> None:
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass
            self.pidfile = None

    @hookimpl
    def falconet_metrics(self, registry: Any, engine: Any) -> None:
        registry.register(ResponseCollector(lambda: self.engine))

    @hookimpl
    def falconet_commands(self) -> list[Any]:
        return [cli]


#: the host makes one instance of this class per engine
FALCONET_PLUGIN = ResponsePlugin
