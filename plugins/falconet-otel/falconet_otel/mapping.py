"""Alert → OpenTelemetry data: severity, attributes (semantic conventions) and deterministic ids.

Everything that can be decided once is decided at import time (the field → attribute table); the
per-alert work is one pass over ``output_fields`` plus a few dict lookups.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert
from falconet.priorities import Priority
from opentelemetry._logs import SeverityNumber

#: Event name on every log record (the top-level LogRecord field, not the deprecated attribute).
EVENT_NAME = "falco.alert"

#: Falco priorities are syslog levels: OTel logs data model, appendix B (syslog mapping).
SEVERITY: dict[Priority, SeverityNumber] = {
    Priority.EMERGENCY: SeverityNumber.FATAL,
    Priority.ALERT: SeverityNumber.ERROR3,
    Priority.CRITICAL: SeverityNumber.ERROR2,
    Priority.ERROR: SeverityNumber.ERROR,
    Priority.WARNING: SeverityNumber.WARN,
    Priority.NOTICE: SeverityNumber.INFO2,
    Priority.INFORMATIONAL: SeverityNumber.INFO,
    Priority.DEBUG: SeverityNumber.DEBUG,
}

_UUID_NS = uuid.UUID("6f1c3b1e-2d0a-5b7c-9e3f-4a5b6c7d8e9f")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _list(v: Any) -> list[str] | None:
    return None if v in (None, "") else [str(v)]


def _path(v: Any) -> str | None:
    s = _str(v)
    return s if s and s.startswith("/") else None


def _transport(v: Any) -> str | None:
    s = _str(v)
    return s.lower() if s else None


#: Falco output field → (semconv attribute, converter). Converters return None to skip.
SEMCONV: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "proc.pid": ("process.pid", _int),
    "proc.ppid": ("process.parent_pid", _int),
    "proc.vpid": ("process.vpid", _int),
    "proc.name": ("process.executable.name", _str),
    "proc.exepath": ("process.executable.path", _path),
    "proc.exe": ("process.executable.path", _path),
    "proc.cmdline": ("process.command_line", _str),
    "proc.cwd": ("process.working_directory", _str),
    "user.name": ("process.user.name", _str),
    "user.uid": ("process.user.id", _int),
    "container.id": ("container.id", _str),
    "container.name": ("container.name", _str),
    "container.image.repository": ("container.image.name", _str),
    "container.image.tag": ("container.image.tags", _list),
    "k8s.pod.name": ("k8s.pod.name", _str),
    "k8s.ns.name": ("k8s.namespace.name", _str),
    "k8s.pod.uid": ("k8s.pod.uid", _str),
    "fd.name": ("file.path", _path),
    "fd.filename": ("file.name", _str),
    "fd.directory": ("file.directory", _str),
    "fd.sip": ("server.address", _str),
    "fd.sport": ("server.port", _int),
    "fd.cip": ("client.address", _str),
    "fd.cport": ("client.port", _int),
    "fd.l4proto": ("network.transport", _transport),
}

#: semconv ``user.*`` mirrors of the process owner (the brief asks for ``user.*`` as well)
USER_MIRROR = {"process.user.name": "user.name", "process.user.id": "user.id"}

#: socket fds have ``fd.name`` like ``10.0.0.1:5000->10.0.0.2:80``: never a file path
_NOT_FILE_TYPES = frozenset({"ipv4", "ipv6", "unix", "pipe", "event", "signalfd", "inotify", "netlink"})


def attr_value(v: Any) -> Any:
    """An OTel attribute value: str/bool/int/float or a homogeneous list of them; None to skip."""
    if v is None:
        return None
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [str(x) for x in v if x is not None]
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")     # shown as \xNN by the wire encoder
    return str(v)


@functools.lru_cache(maxsize=10000)
def rule_uuid(rule: str) -> str:
    """``security_rule.uuid``: a stable UUIDv5 of the rule name (memoised: a pure function of
    the name, and rules are few; not engine state)."""
    return str(uuid.uuid5(_UUID_NS, rule))


def rule_category(tags: list[str], source: str) -> str:
    """``security_rule.category``: the first MITRE tactic tag, else the event source."""
    for t in tags:
        if t.startswith("mitre_"):
            return t
    return source


def workload_key(alert: Alert, fields: dict[str, Any] | None = None) -> str:
    """The key whose alerts share a trace: ``pod:<ns>/<name>``, else ``container:<id>``, else
    ``host:<hostname>`` (container id ``host`` means a host process)."""
    f = alert.output_fields if fields is None else fields
    ext = alert.extra.get("container")
    if not isinstance(ext, dict):
        ext = {}
    pod = f.get("k8s.pod.name") or ext.get("k8s.pod.name") or ext.get("pod_name")
    if pod:
        ns = f.get("k8s.ns.name") or ext.get("k8s.ns.name") or ext.get("pod_namespace") or ""
        return f"pod:{ns}/{pod}"
    cid = f.get("container.id") or ext.get("container.id") or ext.get("id")
    if cid and cid != "host":
        return f"container:{cid}"
    return f"host:{alert.hostname}"


def _digest(text: str, size: int) -> int:
    n = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).digest(),
                       "big")
    return n or 1          # 0 is the invalid id in OTel


def trace_id_for(key: str) -> int:
    """128-bit trace id of a workload key (deterministic: the same workload, the same trace)."""
    return _digest("falconet-trace|" + key, 16)


def process_span_id(key: str, pid: Any, start_ts: Any) -> int:
    """64-bit span id of one process (pid + start time) inside a workload."""
    return _digest(f"falconet-proc|{key}|{pid}|{start_ts}", 8)


def alert_span_id(key: str, pid: Any, start_ts: Any, time_ns: int, rule: str, seq: int) -> int:
    """64-bit span id of the triggering process's span for one alert (unique per alert)."""
    return _digest(f"falconet-alert|{key}|{pid}|{start_ts}|{time_ns}|{rule}|{seq}", 8)


#: what an aggregation summary carries, as top-level attributes too
AGGREGATION_FIELDS = ("falconet.count", "falconet.first_time", "falconet.last_time")
#: alert sequence numbers: part of each alert span id (two alerts of one process at the same
#: nanosecond still get distinct spans)
_ALERT_SEQ = itertools.count(1)
#: where an alert keeps its span ids once computed (``Alert.extra``)
SPAN_IDS_KEY = "otel.span_ids"


def alert_span_ids(alert: Alert) -> tuple[int, int]:
    """``(trace id, span id)`` of the alert's span, computed once per alert and kept in
    ``alert.extra``: the OTel sink and other plugins (the response plugin's action spans are
    children of it) agree whichever worker thread asks first."""
    ids = alert.extra.get(SPAN_IDS_KEY)
    if ids is None:
        key = workload_key(alert)
        me = alert.lineage[0] if alert.lineage else {
            "pid": alert.output_fields.get("proc.pid")}
        ids = (trace_id_for(key), alert_span_id(key, me.get("pid"), me.get("start_ts"),
                                                alert.time_ns, alert.rule, next(_ALERT_SEQ)))
        ids = alert.extra.setdefault(SPAN_IDS_KEY, ids)     # atomic: the first one wins
    return ids


def alert_attributes(alert: Alert) -> dict[str, Any]:
    """Attributes of the log record (and of the span event): security_rule.*, falco.*, semconv
    workload attributes and every output field under ``falco.output_fields.<field>``."""
    attrs: dict[str, Any] = {
        "security_rule.name": alert.rule,
        "security_rule.category": rule_category(alert.tags, alert.source),
        "security_rule.uuid": rule_uuid(alert.rule),
        "falco.rule": alert.rule,
        "falco.priority": alert.priority.label,
        "falco.source": alert.source,
        "falco.tags": list(alert.tags),
        "falco.hostname": alert.hostname,
    }
    if alert.desc:
        attrs["security_rule.description"] = alert.desc
    if alert.ruleset:
        attrs["security_rule.ruleset.name"] = alert.ruleset
    if alert.uuid:
        # the alert's id: the same on every delivery retry, so receivers can drop duplicates
        attrs["falconet.alert.uuid"] = alert.uuid
    fields = alert.output_fields
    if "falconet.count" in fields:      # an aggregation summary (docs/outputs.md)
        for k in AGGREGATION_FIELDS:
            if fields.get(k) is not None:
                attrs[k] = fields[k]
    fd_type = fields.get("fd.type")
    for name, value in fields.items():
        v = attr_value(value)
        if v is None:
            continue
        attrs["falco.output_fields." + name] = v
        sem = SEMCONV.get(name)
        if sem is None:
            continue
        if name == "fd.name" and fd_type in _NOT_FILE_TYPES:
            continue
        key, conv = sem
        cv = conv(value)
        if cv is not None and key not in attrs:
            attrs[key] = cv
    _from_extra(alert, attrs)
    _from_lineage(alert, attrs)
    for src, dst in USER_MIRROR.items():
        if src in attrs:
            attrs[dst] = attrs[src]
    return attrs


def _from_extra(alert: Alert, attrs: dict[str, Any]) -> None:
    """Container plugin metadata attached to the alert (``extra["container"]``), if any."""
    c = alert.extra.get("container")
    if not isinstance(c, dict):
        return
    for src, dst in (("id", "container.id"), ("name", "container.name"),
                     ("image", "container.image.name"), ("pod_name", "k8s.pod.name"),
                     ("pod_namespace", "k8s.namespace.name"), ("pod_uid", "k8s.pod.uid")):
        v = c.get(src)
        if v and dst not in attrs:
            attrs[dst] = str(v)


def _from_lineage(alert: Alert, attrs: dict[str, Any]) -> None:
    """Process attributes from ``alert.lineage`` when the rule's output did not carry them."""
    lin = alert.lineage
    if not lin:
        return
    me = lin[0]
    for src, dst, conv in (("pid", "process.pid", _int), ("name", "process.executable.name", _str),
                           ("exepath", "process.executable.path", _path),
                           ("cmdline", "process.command_line", _str)):
        if dst not in attrs:
            v = conv(me.get(src))
            if v is not None:
                attrs[dst] = v
    if "process.parent_pid" not in attrs and len(lin) > 1:
        ppid = _int(lin[1].get("pid"))
        if ppid is not None:
            attrs["process.parent_pid"] = ppid


def process_attributes(proc: dict[str, Any]) -> dict[str, Any]:
    """Span attributes of one lineage entry."""
    attrs: dict[str, Any] = {}
    for src, dst, conv in (("pid", "process.pid", _int), ("name", "process.executable.name", _str),
                           ("exepath", "process.executable.path", _path),
                           ("cmdline", "process.command_line", _str)):
        v = conv(proc.get(src))
        if v is not None:
            attrs[dst] = v
    return attrs
