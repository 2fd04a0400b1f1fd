"""The target of a policy, resolved from an alert (process, container, pod), and the field tokens
the alert must carry for that (added to ``load_rules(capture_fields=...)``)."""

from __future__ import annotations

from typing import Any

from falconet.alerts import Alert

from falconet_response.actions.base import Target

#: what resolving a target reads; captured into ``Alert.match_fields`` for every rule
TARGET_FIELDS = ("proc.pid", "proc.vpgid", "container.full_id", "container.id", "container.type",
                 "k8s.ns.name", "k8s.pod.name", "k8s.pod.uid")

_NONE = (None, "", "host", "<NA>")


def field_value(alert: Alert, token: str) -> Any:
    """A token's value: captured at render time, else the output field."""
    mf = getattr(alert, "match_fields", None) or {}
    if token in mf:
        return mf[token]
    return alert.output_fields.get(token)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    try:
        n = int(v)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _text(v: Any) -> str | None:
    return None if v in _NONE else str(v)


def resolve_target(alert: Alert) -> Target:
    pid = _int(field_value(alert, "proc.pid"))
    start_ts = None
    lineage = alert.lineage or []
    if lineage and _int(lineage[0].get("pid")) == pid:
        start_ts = _int(lineage[0].get("start_ts"))
    cid = _text(field_value(alert, "container.full_id")) or _text(field_value(alert, "container.id"))
    runtime = _text(field_value(alert, "container.type")) if cid else None
    ns = _text(field_value(alert, "k8s.ns.name"))
    pod = _text(field_value(alert, "k8s.pod.name"))
    uid = _text(field_value(alert, "k8s.pod.uid"))
    if uid:
        key = f"pod:{uid}"
    elif cid:
        key = f"container:{cid}"
    elif pid is not None:
        key = f"pid:{pid}:{start_ts}"
    else:
        key = f"alert:{alert.rule}"
    return Target(pid, start_ts, cid, runtime, ns, pod, uid, key)


def target_dict(t: Target) -> dict[str, Any]:
    """For the audit log (no secrets in a target)."""
    return {k: v for k, v in vars(t).items() if v is not None}
