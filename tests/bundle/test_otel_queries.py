"""The Loki and Tempo queries of the dashboards, Grafana alert rules and datasource links use
labels and attributes the OTel output really emits: records exported by the falconet-otel plugin
over OTLP/HTTP to a local receiver, mapped the way Loki 3's native OTLP ingestion stores them
(after the collector's groupbyattrs)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from bundle_support import (
    PROVISIONING,
    REPO,
    dashboard_queries,
    grafana_alert_queries,
    logql_labels,
    logql_stream_selectors,
    loki_view,
    split_label_values,
    traceql_attributes,
)
from otel_records import HOST, Exported, export_sample_alerts


@pytest.fixture(scope="module")
def exported() -> Exported:
    return export_sample_alerts()


@pytest.fixture(scope="module")
def loki_records(exported: Exported) -> list[tuple[dict[str, str], dict[str, str], Any]]:
    """(index labels, structured metadata, LogRecord) per exported record, as Loki stores them."""
    cfg = yaml.safe_load((REPO / "otel-collector" / "config.yaml").read_text())
    moved = cfg["processors"]["groupbyattrs/workload"]["keys"]
    out = []
    for res, scope, rec in exported.logs:
        from bundle_support import pb_attributes  # noqa: PLC0415
        index, meta = loki_view(res, pb_attributes(rec.attributes), severity_text=rec.severity_text,
                                severity_number=rec.severity_number, trace_id=rec.trace_id.hex(),
                                span_id=rec.span_id.hex(), scope=scope, moved_to_resource=moved)
        out.append((index, meta, rec))
    return out


def loki_queries() -> list[tuple[str, str]]:
    qs = [(q.where, q.text) for q in dashboard_queries() if q.kind == "loki"]
    qs += [(q.where, q.text) for q in grafana_alert_queries() if q.kind == "loki"]
    return qs


def test_every_loki_label_is_emitted(loki_records: list[Any]) -> None:
    available: set[str] = set()
    for index, meta, _ in loki_records:
        available |= set(index) | set(meta)
    queries = loki_queries()
    assert len(queries) >= 6
    for where, text in queries:
        lv = split_label_values(text)
        if lv:
            selector, label = lv
            # label_values() asks Loki's label API: only index labels are listed there
            assert any(label in index for index, _, _ in loki_records), f"{where}: {label} not indexed"
            text = selector
        missing = logql_labels(text) - available
        assert not missing, f"{where}: the OTel output has no {sorted(missing)} (has {sorted(available)})"


def test_stream_selectors_match_every_record(loki_records: list[Any]) -> None:
    """Stream selectors can only use index labels, and must select all of Falconet's records."""
    for where, text in loki_queries():
        for sel in logql_stream_selectors(text):
            for index, _, rec in loki_records:
                for k, v in sel.items():
                    assert index.get(k) == v, f"{where}: {rec.body.string_value!r} has {k}={index.get(k)}"


def test_severity_filter_separates_critical_or_worse(loki_records: list[Any]) -> None:
    by_priority = {meta["severity_text"]: int(meta["severity_number"]) for _, meta, _ in loki_records}
    assert by_priority["Critical"] >= 18 > by_priority["Warning"] > by_priority["Notice"]
    priorities = {"Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"}
    assert set(by_priority) <= priorities    # the $priority variable's values are severity_text values


def test_workload_labels_for_the_namespace_and_container_filters(loki_records: list[Any]) -> None:
    k8s = next(r for r in loki_records if r[1]["severity_text"] == "Critical")
    index, meta, _ = k8s
    assert index["k8s_namespace_name"] == "shop" and index["k8s_pod_name"] == "web-0"
    assert index["container_name"] == "web" and index["service_name"] == "falconet"
    assert meta["security_rule_name"] == "Read Shadow File" and meta["host_name"] == HOST
    host = next(r for r in loki_records if r[1]["severity_text"] == "Notice")
    assert "k8s_namespace_name" not in host[0]       # host events: empty label, matched by ".*"


def test_log_records_link_to_exported_spans(exported: Exported, loki_records: list[Any]) -> None:
    """The derived field (Loki → Tempo) uses trace_id; it must lead to a span that was exported,
    and tracesToLogsV2 (Tempo → Loki) finds the record back by service_name and trace_id."""
    spans = {(s.trace_id.hex(), s.span_id.hex()): (res, s) for res, s in exported.spans}
    ds = yaml.safe_load((PROVISIONING / "datasources" / "falconet.yaml").read_text())
    tempo = next(d for d in ds["datasources"] if d["uid"] == "tempo")
    tags = {t["key"]: t["value"] for t in tempo["jsonData"]["tracesToLogsV2"]["tags"]}
    for index, meta, _ in loki_records:
        assert (meta["trace_id"], meta["span_id"]) in spans, "log record's span was not exported"
        res, _span = spans[(meta["trace_id"], meta["span_id"])]
        for attr, label in tags.items():
            assert index[label] == str(res[attr])


def test_tempo_queries_use_emitted_attributes(exported: Exported) -> None:
    from bundle_support import pb_attributes  # noqa: PLC0415
    resource_attrs: set[str] = set()
    span_attrs: set[str] = set()
    for res, span in exported.spans:
        resource_attrs |= set(res)
        span_attrs |= set(pb_attributes(span.attributes))
    tempo = [q for q in dashboard_queries() if q.kind == "tempo"]
    assert tempo
    for q in tempo:
        for scope, attr in traceql_attributes(q.text):
            have = resource_attrs if scope == "resource" else span_attrs
            assert attr in have, f"{q.where}: spans have no {scope}.{attr} (have {sorted(have)})"
    alert_spans = [pb_attributes(s.attributes) for _, s in exported.spans]
    assert any(a.get("falco.priority") == "Critical" and a.get("security_rule.name") == "Read Shadow File"
               for a in alert_spans)
