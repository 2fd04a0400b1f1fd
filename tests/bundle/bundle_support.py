"""Helpers for the observability bundle tests: the bundle's files, the queries in them, and real
local servers (Prometheus, Alertmanager, an OTLP/HTTP receiver) bound to 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import otlp_receivers
import yaml
from conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
DASHBOARD_JSON = DASHBOARDS / "grafana"
PROVISIONING = DASHBOARDS / "provisioning"
PROM_RULES = DASHBOARDS / "prometheus" / "falconet.rules.yml"
PROM_RULES_TEST = DASHBOARDS / "prometheus" / "falconet.rules.test.yml"
COLLECTOR_CONFIGS = [REPO / "otel-collector" / "config.yaml", REPO / "otel-collector" / "agent.yaml"]
K8S = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "docker-compose.yml"

#: Grafana's global variables, replaced by something PromQL/LogQL accept
GRAFANA_MACROS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__auto": "1m",
                  "__interval_ms": "60000", "__range_s": "3600"}
_VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    return wait_until(cond, timeout, what, interval)


# ------------------------------------------------------------------------------------ dashboards
def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_JSON.glob("*.json"))}


def all_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])          # collapsed rows keep their panels inside


@dataclass
class Query:
    """One query of a dashboard panel, a variable or an alert rule."""

    where: str                 # "falconet-overview.json / Alert rate by rule / A"
    kind: str                  # prometheus | loki | tempo
    text: str
    instant: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def dashboard_queries() -> list[Query]:
    out = []
    for name, dash in load_dashboards().items():
        for p in all_panels(dash):
            for t in p.get("targets", []):
                kind = (t.get("datasource") or p.get("datasource") or {}).get("type", "")
                text = t.get("expr") if kind in ("prometheus", "loki") else t.get("query")
                instant = bool(t.get("instant")) or t.get("queryType") == "instant"
                out.append(Query(f"{name} / {p.get('title')} / {t.get('refId')}", kind, text or "", instant,
                                 {"panel": p}))
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v.get("query")
                text = q.get("query") if isinstance(q, dict) else q
                out.append(Query(f"{name} / variable {v['name']}", v["datasource"]["type"], text, True,
                                 {"variable": v}))
    return out


def used_variables(text: str) -> set[str]:
    return {a or b for a, b in _VAR.findall(text)}


def substitute(text: str, values: dict[str, str] | None = None, macros: dict[str, str] | None = None) -> str:
    """Replace Grafana macros and dashboard variables (default: ``.*``, i.e. "All")."""
    values = values or {}
    macros = {**GRAFANA_MACROS, **(macros or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in macros:
            return macros[name]
        return values.get(name, ".*")
    return _VAR.sub(repl, text)


_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)


def split_label_values(text: str) -> tuple[str, str] | None:
    """``label_values(<selector>, <label>)`` → (selector, label)."""
    m = _LABEL_VALUES.match(text)
    return (m.group(1).strip(), m.group(2)) if m else None


# ------------------------------------------------------------------------------------ LogQL / TraceQL
_LOGQL_STRING = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_LOGQL_SELECTOR = re.compile(r"\{([^{}]*)\}")
_LOGQL_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*(" + _LOGQL_STRING + ")")
_LOGQL_FILTER = re.compile(r"\|\s*(\w+)\s*(=~|!~|!=|==|=|>=|<=|>|<)\s*(" + _LOGQL_STRING + r"|[\d.]+)")
_LOGQL_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def logql_labels(expr: str) -> set[str]:
    """Every label name a LogQL query depends on: stream selector matchers, label filters,
    ``by (...)`` groupings. (Enough of LogQL for the bundle's queries; not a full parser.)"""
    names: set[str] = set()
    for sel in _LOGQL_SELECTOR.findall(expr):
        names.update(m[0] for m in _LOGQL_MATCHER.findall(sel))
    names.update(m[0] for m in _LOGQL_FILTER.findall(expr))
    for grp in _LOGQL_GROUPING.findall(expr):
        names.update(x.strip() for x in grp.split(",") if x.strip())
    return names


def logql_stream_selectors(expr: str) -> list[dict[str, str]]:
    out = []
    for sel in _LOGQL_SELECTOR.findall(expr):
        out.append({m[0]: m[2][1:-1] for m in _LOGQL_MATCHER.findall(sel) if m[1] == "="})
    return out


_TRACEQL_ATTR = re.compile(r"\b(resource|span|event)\.([\w.]+)\s*(?:=~|!~|!=|=|>=|<=|>|<)")


def traceql_attributes(query: str) -> set[tuple[str, str]]:
    """(scope, attribute) pairs a TraceQL query filters on, e.g. ``("span", "falco.priority")``."""
    return set(_TRACEQL_ATTR.findall(query))


#: resource attributes Loki 3 turns into index labels by default (Loki docs, OTLP ingestion)
LOKI_DEFAULT_INDEX_LABELS = {
    "service.name", "service.namespace", "service.instance.id", "deployment.environment",
    "deployment.environment.name", "cloud.region", "cloud.availability_zone", "k8s.cluster.name",
    "k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "container.name",
    "k8s.replicaset.name", "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name",
    "k8s.cronjob.name", "k8s.job.name",
}


def loki_name(attr: str) -> str:
    """Loki's normalisation of an OTLP attribute name (dots and other characters → ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attr)


def loki_view(resource: dict[str, Any], attributes: dict[str, Any], *, severity_text: str,
              severity_number: int, trace_id: str, span_id: str, scope: str,
              moved_to_resource: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(index labels, structured metadata) Loki stores for one OTLP log record, after the
    collector's ``groupbyattrs`` moved ``moved_to_resource`` attributes onto the resource."""
    resource = dict(resource)
    attributes = dict(attributes)
    for key in moved_to_resource:
        if key in attributes:
            resource[key] = attributes.pop(key)
    index = {loki_name(k): str(v) for k, v in resource.items() if k in LOKI_DEFAULT_INDEX_LABELS}
    meta = {loki_name(k): str(v) for k, v in resource.items() if k not in LOKI_DEFAULT_INDEX_LABELS}
    for k, v in attributes.items():
        meta[loki_name(k)] = json.dumps(v) if isinstance(v, list) else str(v)
    meta.update({"severity_text": severity_text, "severity_number": str(severity_number),
                 "scope_name": scope})
    if trace_id:
        meta["trace_id"], meta["span_id"] = trace_id, span_id
    return index, meta


# ------------------------------------------------------------------------------------ YAML files
def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def prometheus_rule_exprs() -> list[Query]:
    out = []
    for g in yaml.safe_load(PROM_RULES.read_text())["groups"]:
        for r in g["rules"]:
            out.append(Query(f"falconet.rules.yml / {r.get('alert') or r.get('record')}", "prometheus",
                             r["expr"], True, {"rule": r}))
    return out


def grafana_alert_queries() -> list[Query]:
    out = []
    for f in sorted((PROVISIONING / "alerting").glob("*.yaml")):
        for g in (yaml.safe_load(f.read_text()) or {}).get("groups", []):
            for r in g["rules"]:
                for d in r["data"]:
                    if d["datasourceUid"] in ("prometheus", "loki"):
                        out.append(Query(f"{f.name} / {r['title']} / {d['refId']}", d["datasourceUid"],
                                         d["model"]["expr"], True, {"rule": r}))
    return out


# ------------------------------------------------------------------------------------ real servers
class OtlpHttpReceiver(otlp_receivers.OtlpHttpReceiver):
    """The shared OTLP/HTTP receiver (tests/otlp_receivers.py), started on a free port, with the
    tuple views the bundle tests use."""

    def __init__(self) -> None:
        super().__init__()
        self.start()
        self.url = self.endpoint

    def log_records(self) -> list[tuple[dict[str, Any], str, Any]]:
        """(resource attributes, scope name, LogRecord protobuf) of everything received."""
        return [(r.resource, r.scope, r.record) for r in list(self.logs)]

    def span_records(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, Span protobuf) of everything received."""
        return [(r.resource, r.record) for r in list(self.spans)]


def pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def pb_attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: pb_value(kv.value) for kv in kvs}


def http_json(url: str, payload: Any = None, *, method: str | None = None, timeout: float = 5,
              content_type: str = "application/json") -> tuple[int, Any]:
    if payload is None or isinstance(payload, bytes):
        data = payload
    else:
        data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, _json_or_text(r.read())
    except urllib.error.HTTPError as e:
        return e.code, _json_or_text(e.read())


def _json_or_text(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def env_without_otel() -> dict[str, str]:
    """The environment minus OTEL_* settings (tests choose their own endpoints)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
