# ruff: noqa: E501  (dashboard definitions: long PromQL/LogQL strings and descriptions read better unwrapped)
"""Generate Falconet's Grafana dashboards (``dashboards/grafana/*.json``) from the definitions below.

Dashboards as code: the JSON files are committed (Grafana provisions them as they are), and
``tests/bundle`` checks they are up to date with this script. Edit here, then run::

    .venv/bin/python dashboards/generate.py

Datasources are referenced by the fixed uids provisioned in
``dashboards/provisioning/datasources/falconet.yaml`` (``prometheus``, ``loki``, ``tempo``); no
``__inputs`` (those only work for manual import in the UI).

Variables shared by every dashboard:

* ``host``: hostnames from ``falcosecurity_evt_hostname_info``; Loki and Tempo filter on the OTel
  resource attribute ``host.name`` (Loki: ``host_name``).
* ``instance`` (hidden): the Prometheus targets of the selected hosts, so metric panels filter on
  ``instance`` without joins. Its "All" expands to the targets of the selected hosts only.
* ``namespace``: Kubernetes namespaces of alerting workloads (a Loki index label, see the
  collector's ``groupbyattrs/workload``). Metrics carry no namespace label by design (bounded
  cardinality, see docs/metrics.md), so it filters the log and trace panels.
* ``priority``: Falco priorities (string label ``priority`` of ``falconet_alerts_total``; OTel
  ``severity_text``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "grafana"

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
TEMPO = {"type": "tempo", "uid": "tempo"}

PRIORITIES = ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"]
CRITICAL_OR_WORSE = "Critical|Alert|Emergency"

#: every alert log record of Falconet (resource service.name, an index label in Loki)
LOKI_STREAM = '{service_name="falconet"}'
#: the filters every Loki query applies (structured metadata and index labels alike)
LOKI_FILTERS = '| severity_text=~"$priority" | k8s_namespace_name=~"$namespace" | host_name=~"$host"'
I = 'instance=~"$instance"'  # short on purpose: it is in every PromQL selector
#: drops per second by cause, and OTLP records per second by signal and result (two dashboards)
DROPS_BY_CAUSE = f"sum by (cause) (rate(falconet_drops_total{{{I}}}[$__rate_interval]))"
OTLP_RECORDS = f"sum by (signal, result) (rate(falconet_otel_records_total{{{I}}}[$__rate_interval]))"


# ------------------------------------------------------------------------------------ variables
def _query_var(name: str, label: str, ds: dict[str, str], query: str, *, hide: int = 0,
               all_value: str | None = ".*", description: str = "") -> dict[str, Any]:
    var: dict[str, Any] = {
        "type": "query", "name": name, "label": label, "datasource": ds,
        "definition": query, "query": {"query": query, "refId": f"{name}-var"} if ds is PROM
        else query,
        "refresh": 2, "multi": True, "includeAll": True, "hide": hide, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [],
        "description": description,
    }
    if all_value is not None:
        var["allValue"] = all_value
    return var


HOST_VAR = _query_var("host", "Host", PROM, "label_values(falcosecurity_evt_hostname_info, hostname)",
                      description="Engine hosts (falcosecurity_evt_hostname_info).")
INSTANCE_VAR = _query_var(
    "instance", "Instance", PROM, 'label_values(falcosecurity_evt_hostname_info{hostname=~"$host"}, instance)',
    hide=2, all_value=None,
    description="Hidden: the Prometheus targets of the selected hosts (All = those targets only).")
NAMESPACE_VAR = _query_var(
    "namespace", "Namespace", LOKI, f"label_values({LOKI_STREAM}, k8s_namespace_name)",
    description="Kubernetes namespace of the alerting workload (logs and traces only: metrics have "
                "no namespace label, to keep their cardinality bounded).")
PRIORITY_VAR = {
    "type": "custom", "name": "priority", "label": "Priority", "query": ",".join(PRIORITIES),
    "multi": True, "includeAll": True, "allValue": ".*", "hide": 0,
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    "options": [{"selected": False, "text": p, "value": p} for p in PRIORITIES],
    "description": "Falco priority of the rule that fired.",
}
RULE_VAR = _query_var("rule", "Rule", PROM, "label_values(falconet_alerts_total, rule)",
                      description="Detection rules that fired at least once.")
CONTAINER_VAR = {
    "type": "textbox", "name": "container", "label": "Container (regex)", "query": ".*",
    "current": {"text": ".*", "value": ".*"}, "hide": 0,
    "description": "Regular expression on the container name (container_name).",
}
COMMON_VARS = [HOST_VAR, INSTANCE_VAR, NAMESPACE_VAR, PRIORITY_VAR]


# ------------------------------------------------------------------------------------ panels
def per_output(counter: str) -> str:
    """Rate of an output counter by output, 0 for outputs that never failed/dropped: the engine
    creates those series on the first failure, so without the fallback a healthy output shows
    "No data" instead of 0. The outputs are the ones that delivered something."""
    sent = f"sum by (output) (rate(falconet_output_sent_total{{{I}}}[$__rate_interval]))"
    return f"sum by (output) (rate({counter}{{{I}}}[$__rate_interval])) or ({sent} * 0)"


def or_zero(expr: str) -> str:
    """``expr``, or a single 0 when its series do not exist yet (e.g. no enrichment lookup happened:
    container metadata is looked up live, never during a replay). Shows 0 instead of "No data"."""
    return f"({expr}) or on() vector(0)"


def prom(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend or "__auto",
            "range": not instant, "instant": instant, "editorMode": "code"}


def loki(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": LOKI, "expr": expr, "legendFormat": legend,
            "queryType": "instant" if instant else "range", "editorMode": "code"}


def tempo(query: str, ref: str = "A", limit: int = 50) -> dict[str, Any]:
    return {"refId": ref, "datasource": TEMPO, "queryType": "traceql", "query": query,
            "limit": limit, "tableType": "traces"}


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *, w: int = 12,
          h: int = 8, unit: str = "", options: dict[str, Any] | None = None,
          field_defaults: dict[str, Any] | None = None, overrides: list[Any] | None = None,
          transformations: list[Any] | None = None) -> dict[str, Any]:
    ds = targets[0]["datasource"]
    defaults: dict[str, Any] = dict(field_defaults or {})
    if unit:
        defaults["unit"] = unit
    p: dict[str, Any] = {
        "type": kind, "title": title, "description": description, "datasource": ds,
        "targets": targets, "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def timeseries(title: str, description: str, targets: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    kw.setdefault("options", {"legend": {"displayMode": "table", "placement": "right",
                                         "calcs": ["max", "lastNotNull"]},
                              "tooltip": {"mode": "multi", "sort": "desc"}})
    kw.setdefault("field_defaults", {"custom": {"drawStyle": "line", "fillOpacity": 10,
                                                "showPoints": "never"}})
    return panel("timeseries", title, description, targets, **kw)


def stat(title: str, description: str, target: dict[str, Any], *, w: int = 6, h: int = 4,
         unit: str = "short", thresholds: list[tuple[str, float | None]] | None = None,
         mappings: list[Any] | None = None) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    return panel("stat", title, description, [target], w=w, h=h, unit=unit,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "background", "graphMode": "area", "textMode": "auto"},
                 field_defaults={"thresholds": {"mode": "absolute", "steps": steps},
                                 "mappings": mappings or [], "noValue": "0"})


def table(title: str, description: str, target: dict[str, Any], *, w: int = 12, h: int = 9,
          rename: dict[str, str] | None = None, sort_by: str = "Value") -> dict[str, Any]:
    if target["datasource"] is PROM:
        target = {**target, "format": "table"}          # one row per series, labels as columns
        transformations: list[Any] = []
    else:                                              # Loki: one frame per series -> one table
        transformations = [{"id": "labelsToFields", "options": {}}, {"id": "merge", "options": {}}]
    transformations.append({"id": "organize", "options": {
        "excludeByName": {"Time": True}, "renameByName": rename or {}}})
    transformations.append({"id": "sortBy", "options": {"sort": [{"field": sort_by, "desc": True}]}})
    return panel("table", title, description, [target], w=w, h=h,
                 options={"showHeader": True, "cellHeight": "sm"}, transformations=transformations)


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at 24 columns; number them 1..n (stable ids)."""
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        p["id"] = pid
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]], links: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "id": None,
        "tags": ["falconet", "security", "runtime"], "timezone": "browser", "editable": True,
        "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": links,
        "panels": layout(panels),
    }


def _link(title: str, uid: str) -> dict[str, Any]:
    return {"title": title, "type": "link", "url": f"/d/{uid}", "includeVars": True,
            "keepTime": True, "icon": "dashboard", "targetBlank": False}


LINKS = [_link("Overview", "falconet-overview"), _link("Alerts explorer", "falconet-alerts"),
         _link("Engine health", "falconet-engine-health")]


# ------------------------------------------------------------------------------------ overview
def overview() -> dict[str, Any]:
    alerts = f'falconet_alerts_total{{{I}, priority=~"$priority"}}'
    panels = [
        row("Alerts"),
        stat("Critical or worse alerts", "Alerts of priority Critical, Alert or Emergency in the selected "
             "time range (falconet_alerts_total). Anything above 0 deserves a look: open the Alerts explorer.",
             prom(f'sum(increase(falconet_alerts_total{{{I}, priority=~"{CRITICAL_OR_WORSE}"}}[$__range]))',
                  instant=True),
             thresholds=[("green", None), ("red", 1)]),
        stat("Alerts", "All alerts of the selected priorities in the time range.",
             prom(f"sum(increase({alerts}[$__range]))", instant=True),
             thresholds=[("green", None), ("orange", 1)]),
        stat("Engines up", "Falconet engines Prometheus scrapes successfully (up{job=\"falconet\"}).",
             prom(f'sum(up{{job="falconet", {I}}})', instant=True),
             thresholds=[("red", None), ("green", 1)]),
        stat("Events per second", "Events the engines process per second, all sources "
             "(falconet_events_total).",
             prom(f"sum(rate(falconet_events_total{{{I}}}[$__rate_interval]))"), unit="ops"),
        timeseries("Alert rate by priority", "Alerts per second by Falco priority (falconet_alerts_total, "
                   "string priority label).",
                   [prom(f"sum by (priority) (rate({alerts}[$__rate_interval]))", "{{priority}}")], unit="ops",
                   overrides=[_color_override(p, c) for p, c in (("Critical", "red"), ("Alert", "dark-red"),
                              ("Emergency", "purple"), ("Error", "orange"), ("Warning", "yellow"),
                              ("Notice", "blue"), ("Informational", "green"), ("Debug", "gray"))]),
        timeseries("Alert rate by rule", "Alerts per second by detection rule.",
                   [prom(f"sum by (rule) (rate({alerts}[$__rate_interval]))", "{{rule}}")], unit="ops"),
        table("Top rules", "The 10 rules that fired most in the time range, with their priority.",
              prom(f"topk(10, sum by (rule, priority) (increase({alerts}[$__range])))", instant=True),
              rename={"rule": "Rule", "priority": "Priority", "Value": "Alerts"}, sort_by="Alerts"),
        table("Top workloads (from logs)", "The 10 workloads (namespace, pod, container) with the most "
              "alerts in the time range, counted from the alert log records in Loki. Host processes "
              "have empty workload columns.",
              loki(f"topk(10, sum by (k8s_namespace_name, k8s_pod_name, container_name) "
                   f"(count_over_time({LOKI_STREAM} {LOKI_FILTERS} [$__range])))", instant=True),
              rename={"k8s_namespace_name": "Namespace", "k8s_pod_name": "Pod",
                      "container_name": "Container", "Value": "Alerts"}, sort_by="Alerts"),
        row("Engine"),
        timeseries("Events per second by type", "Events processed per second by source and event type "
                   "(falconet_events_total).",
                   [prom(f"sum by (source, type) (rate(falconet_events_total{{{I}}}[$__rate_interval]))",
                         "{{source}} {{type}}")], unit="ops", w=12),
        timeseries("Drops by cause", "Events or alerts the engine could not handle, per second, by cause "
                   "(falconet_drops_total): kernel_buffer, decode_error, capture_malformed, "
                   "output_queue_full... Every drop is counted; any non-zero value means missed data.",
                   [prom(DROPS_BY_CAUSE, "{{cause}}")],
                   unit="ops", w=12),
        timeseries("Rule evaluation latency", "Time to evaluate all rules of an event's type, sampled per "
                   "event (falconet_rule_eval_seconds): 50th and 99th percentile, and the mean.",
                   [prom(f"histogram_quantile(0.5, sum by (le) (rate(falconet_rule_eval_seconds_bucket{{{I}}}"
                         f"[$__rate_interval])))", "p50"),
                    prom(f"histogram_quantile(0.99, sum by (le) (rate(falconet_rule_eval_seconds_bucket{{{I}}}"
                         f"[$__rate_interval])))", "p99", ref="B"),
                    prom(f"sum(rate(falconet_rule_eval_seconds_sum{{{I}}}[$__rate_interval])) / "
                         f"sum(rate(falconet_rule_eval_seconds_count{{{I}}}[$__rate_interval]))", "mean",
                         ref="C")], unit="s", w=8),
        timeseries("Exporter health", "Alerts delivered, failed and dropped per second by output "
                   "(falconet_output_sent_total, falconet_output_failures_total, falconet_output_drops_total), "
                   "and OTLP records the OTel output exported, failed or dropped per signal "
                   "(falconet_otel_records_total). Failures retry; drops are lost alerts.",
                   [prom(f"sum by (output) (rate(falconet_output_sent_total{{{I}}}[$__rate_interval]))",
                         "{{output}} sent"),
                    prom(per_output("falconet_output_failures_total"), "{{output}} failed", ref="B"),
                    prom(per_output("falconet_output_drops_total"), "{{output}} dropped", ref="C"),
                    prom(OTLP_RECORDS,
                         "otlp {{signal}} {{result}}", ref="D")],
                   unit="ops", w=8),
        timeseries("Engine CPU and memory", "CPU used by the engine process in cores "
                   "(rate of falconet_cpu_seconds_total), and its resident memory "
                   "(falconet_resident_memory_bytes, right axis).",
                   [prom(f"rate(falconet_cpu_seconds_total{{{I}}}[$__rate_interval])", "CPU {{instance}}"),
                    prom(f"falconet_resident_memory_bytes{{{I}}}", "RSS {{instance}}", ref="B")],
                   unit="percentunit", w=8,
                   overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"}, "properties": [
                       {"id": "unit", "value": "bytes"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
    ]
    return dashboard("falconet-overview", "Falconet / Overview",
                     "What Falconet detected and how the engine is doing.", panels, COMMON_VARS, LINKS)


def _color_override(name: str, color: str) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


# ------------------------------------------------------------------------------------ alerts explorer
def alerts_explorer() -> dict[str, Any]:
    filters = f'{LOKI_FILTERS} | security_rule_name=~"$rule" | container_name=~"$container"'
    panels = [
        timeseries("Alerts over time by priority", "Alert log records per interval by priority "
                   "(severity_text), from Loki, with every filter of this dashboard applied.",
                   [loki(f"sum by (severity_text) (count_over_time({LOKI_STREAM} {filters} [$__interval]))",
                         "{{severity_text}}")], w=16, h=7,
                   field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80, "stacking":
                                              {"mode": "normal"}}}),
        stat("Critical or worse", "Alert records of priority Critical or worse (severity_number >= 18, "
             "i.e. ERROR2) in the time range, with this dashboard's filters.",
             loki(f"sum(count_over_time({LOKI_STREAM} {filters} | severity_number >= 18 [$__range]))",
                  instant=True), w=8, h=7, thresholds=[("green", None), ("red", 1)]),
        panel("logs", "Alerts", "Every alert as the engine rendered it (the log body is the Falco output). "
              "Expand a line for its attributes: rule (security_rule_name), priority, process, container, "
              "pod. The trace_id field links to the alert's process tree in Tempo.",
              [loki(f"{LOKI_STREAM} {filters}")], w=24, h=14,
              options={"showTime": True, "wrapLogMessage": True, "enableLogDetails": True,
                       "sortOrder": "Descending", "prettifyLogMessage": False, "dedupStrategy": "none"}),
        table("Alerts by rule and workload", "Alert counts in the time range per rule, priority and workload.",
              loki(f"sum by (security_rule_name, severity_text, k8s_namespace_name, k8s_pod_name, "
                   f"container_name) (count_over_time({LOKI_STREAM} {filters} [$__range]))", instant=True),
              rename={"security_rule_name": "Rule", "severity_text": "Priority",
                      "k8s_namespace_name": "Namespace", "k8s_pod_name": "Pod",
                      "container_name": "Container", "Value": "Alerts"}, sort_by="Alerts", w=12, h=10),
        panel("table", "Alert traces", "Traces of the alerting workloads in Tempo: one trace per pod, "
              "container or host, with a span per process of the alert's lineage. Click a trace id to "
              "open it; from a span, 'Logs for this span' goes back to its alert records in Loki.",
              [tempo('{resource.service.name="falconet" && resource.host.name=~"$host" && '
                     'span.falco.priority=~"$priority" && span.security_rule.name=~"$rule"}')],
              w=12, h=10),
    ]
    variables = [*COMMON_VARS, RULE_VAR, CONTAINER_VAR]
    return dashboard("falconet-alerts", "Falconet / Alerts explorer",
                     "Falconet alert records (Loki) filtered by priority, rule, namespace and container, "
                     "linked to their traces (Tempo).", panels, variables, LINKS)


# ------------------------------------------------------------------------------------ engine health
def engine_health() -> dict[str, Any]:
    reload_map = [{"type": "value", "options": {
        "0": {"text": "FAILED", "color": "red", "index": 0},
        "1": {"text": "OK", "color": "green", "index": 1}}}]
    panels = [
        row("Drops"),
        timeseries("Drops by cause", "Drops per second by cause (falconet_drops_total). kernel_* : the "
                   "kernel ring buffer or a kernel-side category overflowed; decode_error / "
                   "capture_malformed: unreadable input; parser_error / rule_error: a bad event or rule; "
                   "output_queue_full: an output could not keep up.",
                   [prom(DROPS_BY_CAUSE, "{{cause}}")],
                   unit="ops", w=12),
        table("Drops in time range", "Total drops per cause and instance in the selected time range.",
              prom(f"sum by (instance, cause) (increase(falconet_drops_total{{{I}}}[$__range]))", instant=True),
              rename={"instance": "Instance", "cause": "Cause", "Value": "Drops"}, sort_by="Drops", w=6),
        timeseries("Kernel events and drops", "Events the kernel side produced and dropped per second "
                   "(Falco-compatible falcosecurity_scap_n_evts_total / falcosecurity_scap_n_drops_total).",
                   [prom(f"sum by (instance) (rate(falcosecurity_scap_n_evts_total{{{I}}}[$__rate_interval]))",
                         "events {{instance}}"),
                    prom(f"sum by (instance) (rate(falcosecurity_scap_n_drops_total{{{I}}}[$__rate_interval]))",
                         "drops {{instance}}", ref="B")], unit="ops", w=6),
        row("Outputs"),
        timeseries("Output queue depth", "Alerts waiting in each output's queue (falconet_output_queue_depth), "
                   "and OTLP records waiting in the OTel exporter's queue (falconet_otel_queue_depth). "
                   "A queue that keeps growing means the output is slower than the alert rate.",
                   [prom(f"sum by (output) (falconet_output_queue_depth{{{I}}})", "{{output}}"),
                    prom(f"sum by (signal) (falconet_otel_queue_depth{{{I}}})", "otlp {{signal}}", ref="B")],
                   w=8),
        timeseries("Output failures and drops", "Delivery failures and alerts lost because a queue was full, "
                   "per second (falconet_output_failures_total, falconet_output_drops_total, "
                   "falcosecurity_falco_outputs_queue_num_drops_total).",
                   [prom(per_output("falconet_output_failures_total"), "{{output}} failed"),
                    prom(per_output("falconet_output_drops_total"), "{{output}} dropped", ref="B"),
                    prom(f"sum(rate(falcosecurity_falco_outputs_queue_num_drops_total{{{I}}}[$__rate_interval]))",
                         "queue drops (all outputs)", ref="C")], unit="ops", w=8),
        timeseries("OTLP export", "Records (alert logs and spans) the OTel output sent to the collector, "
                   "failed to send (collector down, slow or rejecting; alert FalconetOtlpExportFailing) "
                   "or dropped (export queue full), per second (falconet_otel_records_total). Only when "
                   "the OTel output is configured.",
                   [prom(OTLP_RECORDS,
                         "{{signal}} {{result}}")], unit="ops", w=8),
        row("Enrichment and state"),
        timeseries("Enrichment lookups by result", "Container and Kubernetes metadata lookups per second by "
                   "plugin and result (falconet_enrichment_lookups_total: hit, miss, error, timeout).",
                   [prom(or_zero(f"sum by (plugin, result) (rate(falconet_enrichment_lookups_total{{{I}}}"
                                 f"[$__rate_interval]))"), "{{plugin}} {{result}}")], unit="ops", w=8),
        timeseries("Enrichment miss ratio", "Share of lookups that missed, failed or timed out, by plugin. "
                   "A high ratio means alerts lack container or pod names (alert: FalconetMetadataMissesHigh).",
                   [prom(or_zero(f'sum by (plugin) (rate(falconet_enrichment_lookups_total{{{I}, '
                                 f'result=~"miss|error|timeout"}}[$__rate_interval])) / sum by (plugin) '
                                 f'(rate(falconet_enrichment_lookups_total{{{I}}}[$__rate_interval]))'),
                         "{{plugin}}")],
                   unit="percentunit", w=8),
        timeseries("Enrichment lookup latency (p99)", "99th percentile of metadata lookup time by plugin "
                   "(falconet_enrichment_lookup_seconds).",
                   [prom(or_zero(f"histogram_quantile(0.99, sum by (plugin, le) (rate(falconet_enrichment_lookup_"
                                 f"seconds_bucket{{{I}}}[$__rate_interval])))"), "{{plugin}}")], unit="s", w=8),
        timeseries("State table sizes", "Entries in the engine's state tables (falconet_state_table_entries): "
                   "threads, file descriptors, containers. Steady growth can mean missed exit events.",
                   [prom(f"sum by (table) (falconet_state_table_entries{{{I}}})", "{{table}}")], w=12),
        timeseries("Plugin errors", "Exceptions raised by plugin hooks per second "
                   "(falconet_plugin_errors_total); 0 when no plugin ever failed.",
                   [prom(or_zero(f"sum by (plugin, hook) (rate(falconet_plugin_errors_total{{{I}}}"
                                 f"[$__rate_interval]))"), "{{plugin}} {{hook}}")], unit="ops", w=12),
        row("Rules"),
        stat("Rules reload", "Result of the last rules (re)load (falconet_rules_reload_success): OK or FAILED. "
             "On failure the engine keeps the previous rules.",
             prom(f"min(falconet_rules_reload_success{{{I}}})", instant=True),
             thresholds=[("red", None), ("green", 1)], mappings=reload_map, w=6),
        stat("Last rules load", "When the rules were last (re)loaded "
             "(falconet_rules_last_reload_timestamp_seconds).",
             prom(f"max(falconet_rules_last_reload_timestamp_seconds{{{I}}}) * 1000", instant=True),
             unit="dateTimeFromNow", w=6),
        stat("Rules loaded", "Rules loaded, all sources (falconet_rules_loaded).",
             prom(f"sum(falconet_rules_loaded{{{I}}})", instant=True), w=6),
        table("Versions", "Engine version per instance (falconet_build_info).",
              prom(f"count by (instance, version) (falconet_build_info{{{I}}})", instant=True),
              rename={"instance": "Instance", "version": "Version", "Value": "Count"}, sort_by="Count", w=6,
              h=4),
    ]
    return dashboard("falconet-engine-health", "Falconet / Engine health",
                     "Drops, queues, enrichment, state tables and rules of the Falconet engines.", panels,
                     COMMON_VARS, LINKS)


DASHBOARDS = {
    "falconet-overview.json": overview,
    "falconet-alerts.json": alerts_explorer,
    "falconet-engine-health.json": engine_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
