"""Grafana dashboards and provisioning: structure, datasource uids, variables, and every PromQL
expression parses (promql-parser)."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from bundle_support import (
    COMPOSE,
    DASHBOARD_JSON,
    DASHBOARDS,
    PROVISIONING,
    all_panels,
    dashboard_queries,
    grafana_alert_queries,
    load_dashboards,
    logql_labels,
    prometheus_rule_exprs,
    substitute,
    used_variables,
)
from conftest import need

try:
    import promql_parser
except ImportError:          # checked per test with need(): a failure in CI, a skip elsewhere
    promql_parser = None


def need_promql_parser() -> None:
    need(promql_parser is not None, "promql-parser (test extra) is not installed")

GRAFANA_GLOBALS = {"__rate_interval", "__interval", "__range", "__auto", "__interval_ms", "__range_s",
                   "__all", "__value", "__data", "__field", "__series", "__name", "__org", "__user",
                   "__dashboard", "__from", "__to", "__timeFilter"}


def provisioned_datasource_uids() -> set[str]:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "falconet.yaml").read_text())
    return {d["uid"] for d in doc["datasources"]}


def test_dashboards_are_generated_and_up_to_date() -> None:
    """The JSON files are the output of dashboards/generate.py (edit the script, not the JSON)."""
    r = subprocess.run([sys.executable, str(DASHBOARDS / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in DASHBOARD_JSON.glob("*.json")} == {
        "falconet-overview.json", "falconet-alerts.json", "falconet-engine-health.json"}


def test_dashboard_structure() -> None:
    uids = set()
    for name, d in load_dashboards().items():
        assert "__inputs" not in d, f"{name}: __inputs only works for UI import, not provisioning"
        assert d["uid"] and len(d["uid"]) <= 40 and d["uid"] not in uids, name
        uids.add(d["uid"])
        assert d.get("id") is None, f"{name}: provisioned dashboards must not fix a database id"
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
        ids = [p["id"] for p in all_panels(d)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in all_panels(d):
            where = f"{name} / {p.get('title')}"
            g = p["gridPos"]
            assert 0 < g["w"] <= 24 and 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, where
            if p["type"] == "row":
                continue
            assert p.get("description", "").strip(), f"{where}: every panel needs a description"
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), f"{where}: targets need unique refIds"


def test_panels_do_not_overlap() -> None:
    for name, d in load_dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for p in all_panels(d):
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def _datasource_refs(obj: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(obj, dict):
        ds = obj.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            out.append(ds)
        for v in obj.values():
            out.extend(_datasource_refs(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_datasource_refs(v))
    return out


def test_every_datasource_uid_is_provisioned() -> None:
    uids = provisioned_datasource_uids()
    assert {"prometheus", "loki", "tempo"} <= uids
    for name, d in load_dashboards().items():
        for ds in _datasource_refs(d):
            if ds["uid"] == "-- Grafana --":
                continue
            assert ds["uid"] in uids, f"{name}: datasource uid {ds['uid']!r} is not provisioned"
            assert "${" not in ds["uid"] and "DS_" not in ds["uid"], name


def test_every_variable_is_defined_and_the_common_ones_exist() -> None:
    for name, d in load_dashboards().items():
        defined = {v["name"] for v in d["templating"]["list"]}
        assert {"host", "namespace", "priority"} <= defined, name
        for q in dashboard_queries():
            if not q.where.startswith(name):
                continue
            missing = used_variables(q.text) - defined - GRAFANA_GLOBALS
            assert not missing, f"{q.where}: undefined variable(s) {missing}"
        # variables may use variables defined before them (chained), never after
        for i, v in enumerate(d["templating"]["list"]):
            q = v.get("query")
            text = q.get("query", "") if isinstance(q, dict) else str(q or "")
            earlier = {x["name"] for x in d["templating"]["list"][:i]}
            if v["type"] == "query":
                assert used_variables(text) <= earlier | GRAFANA_GLOBALS, f"{name}: variable {v['name']}"


def test_every_promql_expression_parses() -> None:
    need_promql_parser()
    queries = [q for q in dashboard_queries() if q.kind == "prometheus"]
    queries += prometheus_rule_exprs()
    queries += [q for q in grafana_alert_queries() if q.kind == "prometheus"]
    assert len(queries) > 40
    for q in queries:
        text = q.text
        lv = re.match(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", text, re.S)
        if lv:
            text = lv.group(1)
        try:
            promql_parser.parse(substitute(text))
        except ValueError as e:
            pytest.fail(f"{q.where}: PromQL does not parse: {e}\n{text}")


def test_promql_parser_rejects_bad_syntax() -> None:
    """The check above is only worth something if the parser rejects garbage."""
    need_promql_parser()
    with pytest.raises(ValueError):
        promql_parser.parse('sum by (rule (rate(falconet_alerts_total[5m]))')


def test_metric_names_are_documented() -> None:
    """Every metric a dashboard or rule uses is in docs/metrics.md (the engine's contract)."""
    doc = (DASHBOARDS.parent / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`((?:falconet|falcosecurity)_[a-z_]+)`", doc))
    documented |= {n for m in list(documented) for n in (m.replace("_total", ""),)}
    used: set[str] = set()
    texts = [q.text for q in dashboard_queries() if q.kind == "prometheus"]
    texts += [q.text for q in prometheus_rule_exprs()] + [q.text for q in grafana_alert_queries()]
    for t in texts:
        used |= set(re.findall(r"\b((?:falconet|falcosecurity)_[a-z_]+)\b", t))
    for name in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in documented or base in documented or f"{base}_total" in documented or \
            name.replace("_total", "") in documented, f"{name} is not in docs/metrics.md"


def test_logql_queries_are_well_formed() -> None:
    for q in [*dashboard_queries(), *grafana_alert_queries()]:
        if q.kind != "loki":
            continue
        text = q.text
        assert text.count("{") == text.count("}") and text.count("(") == text.count(")"), q.where
        assert '{service_name="falconet"' in text, f"{q.where}: must select Falconet's stream"
        assert logql_labels(text), q.where


def test_datasource_provisioning_links_logs_and_traces() -> None:
    raw = (PROVISIONING / "datasources" / "falconet.yaml").read_text()
    doc = yaml.safe_load(raw)
    assert doc["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert len(by_uid) == len(doc["datasources"]), "duplicate datasource uids"
    derived = by_uid["loki"]["jsonData"]["derivedFields"]
    assert any(f["datasourceUid"] == "tempo" and f["matcherType"] == "label"
               and f["matcherRegex"] == "trace_id" for f in derived), "Loki -> Tempo link on trace_id"
    t2l = by_uid["tempo"]["jsonData"]["tracesToLogsV2"]
    assert t2l["datasourceUid"] == "loki"
    assert "trace_id" in t2l["query"]
    assert {"key": "service.name", "value": "service_name"} in t2l["tags"]
    # provisioning interpolates $VAR: Grafana's own ${__...} must be written $${__...}
    assert not re.search(r"(?<!\$)\$\{__", raw), "unescaped ${__...} in datasource provisioning"


def test_dashboard_provider_matches_compose_mount() -> None:
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "falconet.yaml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load(COMPOSE.read_text())
    graf = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in graf["volumes"] if v.startswith("./")}
    assert mounts.get(path) == "./dashboards/grafana"
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/falconet-overview.json" and (DASHBOARD_JSON / "falconet-overview.json").exists()


def test_grafana_alerting_provisioning() -> None:
    uids = provisioned_datasource_uids() | {"__expr__"}
    alert_names = {q.extra["rule"].get("alert") for q in prometheus_rule_exprs()} - {None}
    titles, contact_points, receivers_used = set(), set(), set()
    for f in sorted((PROVISIONING / "alerting").glob("*.yaml")):
        raw = f.read_text()
        # "$labels" unescaped would be replaced by an (empty) environment variable
        assert not re.search(r"(?<!\$)\$labels", raw), f"{f.name}: write $$labels in provisioning"
        doc = yaml.safe_load(raw)
        assert doc["apiVersion"] == 1
        for g in doc.get("groups", []):
            for r in g["rules"]:
                refs = [d["refId"] for d in r["data"]]
                assert r["condition"] in refs, f"{r['title']}: condition is not a refId"
                assert len(refs) == len(set(refs))
                for d in r["data"]:
                    assert d["datasourceUid"] in uids, f"{r['title']}: unknown {d['datasourceUid']}"
                    if d["datasourceUid"] == "__expr__":
                        assert d["model"]["expression"] in refs
                assert r["uid"] and len(r["uid"]) <= 40
                titles.add(r["title"])
        for cp in doc.get("contactPoints", []):
            contact_points.add(cp["name"])
        for pol in doc.get("policies", []):
            stack = [pol]
            while stack:
                p = stack.pop()
                receivers_used.add(p["receiver"])
                stack.extend(p.get("routes", []))
    # FalconetAbsent's Grafana twin is FalconetEngineDown's noDataState: Alerting
    assert alert_names - {"FalconetAbsent"} <= titles, f"no Grafana twin: {alert_names - titles}"
    assert receivers_used <= contact_points, f"undefined contact points: {receivers_used - contact_points}"
