"""OTel Collector configs: structure (no otelcol binary here; `otelcol-contrib validate` is the
real check, see docs/observability.md), pipelines wired to defined components, processor order,
the Critical routing, and the Kubernetes ConfigMaps carrying exactly these files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_support import COLLECTOR_CONFIGS, K8S, REPO

#: component types shipped in otelcol-contrib 0.159 that these configs may use
KNOWN_TYPES = {
    "receivers": {"otlp", "prometheus"},
    "processors": {"memory_limiter", "batch", "resource", "attributes", "transform", "filter",
                   "groupbyattrs", "resourcedetection", "k8sattributes"},
    "exporters": {"otlp_http", "otlp_grpc", "otlphttp", "otlp", "debug", "prometheus",
                  "prometheusremotewrite"},
    "connectors": {"routing", "count", "forward"},
    "extensions": {"health_check", "pprof", "zpages"},
}
SIGNALS = {"logs", "traces", "metrics"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def ctype(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_pipelines_reference_defined_components(path: Path) -> None:
    cfg = load(path)
    assert set(cfg) <= {"receivers", "processors", "exporters", "connectors", "extensions", "service"}
    for section, types in KNOWN_TYPES.items():
        for cid in cfg.get(section) or {}:
            assert ctype(cid) in types, f"{path.name}: unknown {section[:-1]} type {cid}"
    connectors = set(cfg.get("connectors") or {})
    pipelines = cfg["service"]["pipelines"]
    used: dict[str, set[str]] = {k: set() for k in ("receivers", "processors", "exporters", "connectors")}
    as_exporter, as_receiver = set(), set()
    for pid, p in pipelines.items():
        assert ctype(pid) in SIGNALS, f"{path.name}: pipeline id {pid}"
        assert p.get("receivers") and p.get("exporters"), f"{path.name}: {pid} needs receivers and exporters"
        for r in p["receivers"]:
            if r in connectors:
                as_receiver.add(r)
                used["connectors"].add(r)
            else:
                assert r in cfg["receivers"], f"{path.name}: {pid} uses undefined receiver {r}"
                used["receivers"].add(r)
        for x in p.get("processors", []):
            assert x in cfg["processors"], f"{path.name}: {pid} uses undefined processor {x}"
            used["processors"].add(x)
        for e in p["exporters"]:
            if e in connectors:
                as_exporter.add(e)
                used["connectors"].add(e)
            else:
                assert e in cfg["exporters"], f"{path.name}: {pid} uses undefined exporter {e}"
                used["exporters"].add(e)
    for section in used:
        unused = set(cfg.get(section) or {}) - used[section]
        assert not unused, f"{path.name}: {section} defined but never used: {unused}"
    assert as_exporter == as_receiver == connectors, "a connector must end one pipeline and start another"
    for ext in cfg["service"].get("extensions", []):
        assert ext in cfg["extensions"]


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_memory_limiter_first_and_batch_last(path: Path) -> None:
    cfg = load(path)
    connectors = set(cfg.get("connectors") or {})
    for pid, p in cfg["service"]["pipelines"].items():
        procs = p.get("processors", [])
        fed_by_receiver = any(r not in connectors for r in p["receivers"])
        feeds_exporter = any(e not in connectors for e in p["exporters"])
        if fed_by_receiver:
            assert procs and ctype(procs[0]) == "memory_limiter", f"{path.name}: {pid}: memory_limiter first"
        if feeds_exporter:
            assert procs and ctype(procs[-1]) == "batch", f"{path.name}: {pid}: batch last"
        assert [ctype(x) for x in procs].count("memory_limiter") <= 1


def test_gateway_routes_critical_alerts_and_exports_to_the_backends() -> None:
    cfg = load(REPO / "otel-collector" / "config.yaml")
    exporters = cfg["exporters"]
    assert exporters["otlp_http/loki"]["endpoint"].endswith("http://loki:3100/otlp}")
    assert "tempo:4317" in exporters["otlp_grpc/tempo"]["endpoint"]
    assert "/api/v1/otlp" in exporters["otlp_http/prometheus"]["endpoint"]
    assert exporters["otlp_http/escalation"]["encoding"] == "json"   # what alert_relay.py accepts
    routing = cfg["connectors"]["routing/severity"]
    [route] = routing["table"]
    # Critical = ERROR2 (18), Alert = ERROR3 (19), Emergency = FATAL (21): the OTel plugin's mapping
    assert route["context"] == "log"
    assert route["condition"].replace(" ", "") == "severity_number>=SEVERITY_NUMBER_ERROR2"
    pipes = cfg["service"]["pipelines"]
    assert set(route["pipelines"]) == {"logs/loki", "logs/escalation"}
    assert routing["default_pipelines"] == ["logs/loki"]
    assert "otlp_http/escalation" in pipes["logs/escalation"]["exporters"]
    assert pipes["logs/loki"]["exporters"] == ["otlp_http/loki"]
    assert pipes["traces"]["exporters"] == ["otlp_grpc/tempo"]


def test_severity_threshold_matches_the_otel_plugin() -> None:
    """The routing threshold (ERROR2 = 18) is exactly the severity of Falco's Critical priority in
    the OTel plugin, and everything more severe is above it, everything less severe below."""
    import falconet_otel.mapping as mapping  # noqa: PLC0415
    from falconet.priorities import Priority  # noqa: PLC0415
    for prio, sev in mapping.SEVERITY.items():
        assert (sev.value >= 18) == (prio <= Priority.CRITICAL), prio


def test_agent_forwards_everything_to_the_gateway() -> None:
    cfg = load(REPO / "otel-collector" / "agent.yaml")
    for pid, p in cfg["service"]["pipelines"].items():
        assert p["exporters"] == ["otlp_grpc/gateway"], pid
        assert "resource/node" in p["processors"], pid
    assert {ctype(p) for p in cfg["service"]["pipelines"]} == SIGNALS


def test_groupbyattrs_keys_are_loki_index_labels() -> None:
    """The workload attributes moved to the resource are the ones Loki indexes by default."""
    from bundle_support import LOKI_DEFAULT_INDEX_LABELS  # noqa: PLC0415
    cfg = load(REPO / "otel-collector" / "config.yaml")
    keys = cfg["processors"]["groupbyattrs/workload"]["keys"]
    assert set(keys) <= LOKI_DEFAULT_INDEX_LABELS


@pytest.mark.parametrize(("configmap", "source"), [("otel-agent-config.yaml", "agent.yaml"),
                                                    ("otel-gateway-config.yaml", "config.yaml")])
def test_kubernetes_configmaps_carry_the_collector_configs(configmap: str, source: str) -> None:
    cm = yaml.safe_load((K8S / configmap).read_text())
    assert yaml.safe_load(cm["data"]["config.yaml"]) == load(REPO / "otel-collector" / source), \
        f"{configmap} is out of date with otel-collector/{source}"
