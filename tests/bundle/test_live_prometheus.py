"""Every Prometheus query of the dashboards returns data from a real Prometheus that scraped a real
``falconet replay`` (a capture with alerts of several priorities and a malformed line, which is a
counted drop), the alert rules evaluate there, and FalconetCriticalAlert fires.

One module-scoped run (a few seconds): Prometheus scrapes every 200 ms while the replay runs, so
rates are non-zero; queries are evaluated at a time when the engine was still being scraped.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_support import (
    PROM_RULES,
    OtlpHttpReceiver,
    Query,
    dashboard_queries,
    env_without_otel,
    grafana_alert_queries,
    prometheus_rule_exprs,
    split_label_values,
    substitute,
    wait_for,
)
from conftest import free_port, need_binary, stop_process
from prometheus_server import Prometheus

pytestmark = pytest.mark.prometheus

HOSTNAME = "bundle-e2e-host"
CYCLES = 30000                    # x 3 events, paced at REPLAY_RATE: 3 s, i.e. 20+ scrapes
REPLAY_RATE = 30000               # events/s: a replay is otherwise done between two scrapes
EXPECTED_EVENTS = 3 * CYCLES
#: macros for the test: the whole run fits in 1 minute; rate windows span several 100 ms scrapes
MACROS = {"__rate_interval": "1s", "__interval": "1s", "__range": "1m", "__auto": "1s"}

RULES = """
- rule: Bundle Shadow Read
  desc: a process read /etc/shadow
  condition: evt.type = openat and fd.name = /etc/shadow
  output: "Shadow file opened (file=%fd.name proc=%proc.name pid=%proc.pid)"
  priority: CRITICAL
  tags: [filesystem, mitre_credential_access, T1003]
- rule: Bundle Tmp Open
  desc: a file under /tmp was opened
  condition: evt.type = openat and fd.name = /tmp/x1
  output: "Tmp file opened (file=%fd.name proc=%proc.name)"
  priority: WARNING
  tags: [filesystem]
- rule: Bundle Exec
  desc: a program ran
  condition: evt.type = execve and proc.name = ls
  output: "Program executed (proc=%proc.name exe=%proc.exepath)"
  priority: NOTICE
  tags: [process]
"""


def write_capture(path: Path) -> None:
    """CYCLES x (execve, openat, close), one malformed line (a counted drop)."""
    ts = 1_764_300_000_000_000_000
    lines = [json.dumps({"falconet_capture": 1, "host": HOSTNAME, "kernel": "6.18", "start_ns": ts,
                         "engine_version": "0.1.0"})]
    for i in range(CYCLES):
        pid = 100 + i % 5
        prog = "ls" if i % 50 == 0 else "cat"
        name = "/etc/shadow" if i % 200 == 0 else f"/tmp/x{i % 20}"
        for typ, args, res in (
                ("execve", {"filename": f"/bin/{prog}", "argv": [prog], "cwd": "/", "uid": 0}, 0),
                ("openat", {"fd": 3, "name": name, "flags": 0}, 3),
                ("close", {"fd": 3}, 0)):
            ts += 1000
            lines.append(json.dumps({"k": "evt", "src": "syscall", "type": typ, "ts": ts, "tid": pid,
                                     "pid": pid, "args": args, "res": res}))
        if i == 10:
            lines.append('{"k": "evt", "src": "syscall", "type": truncated')
    path.write_text("\n".join(lines) + "\n")


class Run:
    """The scraped replay: Prometheus, the engine, the variables' values and the query time."""

    def __init__(self, prom: Prometheus, otlp: OtlpHttpReceiver, start: float, end: float,
                 variables: dict[str, str]) -> None:
        self.prom, self.otlp, self.start, self.end, self.variables = prom, otlp, start, end, variables

    def query(self, q: Query) -> list[dict[str, Any]]:
        text = substitute(q.text, self.variables, MACROS)
        if q.instant:
            data = self.prom.api("query", query=text, time=f"{self.end:.3f}")
        else:
            data = self.prom.api("query_range", query=text, start=f"{self.start:.3f}",
                                 end=f"{self.end:.3f}", step="0.2")
        return data["result"]


def _values(result: list[dict[str, Any]]) -> list[float]:
    out = []
    for series in result:
        pairs = series.get("values") or ([series["value"]] if "value" in series else [])
        out.extend(float(v) for _, v in pairs)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    prometheus_bin = need_binary("prometheus")
    falconet_bin = str(Path(sys.executable).parent / "falconet")
    tmp = tmp_path_factory.mktemp("bundle-e2e")
    port = free_port()
    # first: Prometheus applies its first target list ~5 s after start (discovery updates are
    # throttled); the capture is written meanwhile
    prom = Prometheus(prometheus_bin, tmp, [f"127.0.0.1:{port}"], scrape_interval="100ms",
                      rule_files=[PROM_RULES])
    capture, rules, config = tmp / "run.fcap", tmp / "rules.yaml", tmp / "falconet.yaml"
    write_capture(capture)
    rules.write_text(RULES)
    otlp = OtlpHttpReceiver()
    config.write_text(yaml.safe_dump({"outputs": {"stdout": {"enabled": True}},
                                      "plugins": {"otel": {"endpoint": otlp.url}}}))
    wait_for(lambda: any(t.get("lastScrape", "").startswith("2") or t.get("health") != "unknown"
                         for t in prom.api("targets")["activeTargets"]), 30,
             "Prometheus to start scraping the (not yet started) engine")
    env = {**env_without_otel(), "FALCONET_HOSTNAME": HOSTNAME}
    env.pop("FALCONET_CONFIG", None)
    start = time.time()
    log = open(tmp / "falconet.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([falconet_bin, "replay", str(capture), "-c", str(config), "-r", str(rules),
                             "--metrics-port", str(port), "--linger", "60", "--no-progress",
                             "--rate", str(REPLAY_RATE)],
                            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, env=env)
    try:
        def scraped_everything() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"falconet replay exited early ({proc.returncode}): "
                                     f"{(tmp / 'falconet.log').read_text()[-2000:]}")
            now = time.time()
            r = prom.api("query", query="sum(falconet_events_total)", time=f"{now:.3f}")["result"]
            return r and float(r[0]["value"][1]) == EXPECTED_EVENTS
        wait_for(scraped_everything, 60, f"Prometheus to scrape {EXPECTED_EVENTS} replayed events")
        # a few more scrapes of the final values (windows ending at `end` hold 2+ samples of them)
        time.sleep(0.5)
        end = time.time()
        hosts = prom.api("series", **{"match[]": "falcosecurity_evt_hostname_info",
                                      "start": f"{start:.3f}", "end": f"{end:.3f}"})
        host_values = sorted({s["hostname"] for s in hosts})
        instances = sorted({s["instance"] for s in hosts if s["hostname"] == HOSTNAME})
        assert host_values == [HOSTNAME] and instances == [f"127.0.0.1:{port}"], hosts
        # Grafana's All of the hidden instance variable: a regex of the selected host's targets,
        # escaped for a PromQL string literal as Grafana does
        regex = "(" + "|".join(re.escape(i) for i in instances) + ")"
        variables = {"host": HOSTNAME, "instance": regex.replace("\\", "\\\\")}
        yield Run(prom, otlp, start, end, variables)
    finally:
        stop_process(proc, 15)
        log.close()
        prom.stop()
        otlp.stop()


PROM_PANEL_QUERIES = [q for q in dashboard_queries() if q.kind == "prometheus" and "panel" in q.extra]


@pytest.mark.parametrize("q", PROM_PANEL_QUERIES, ids=[q.where for q in PROM_PANEL_QUERIES])
def test_every_prometheus_panel_has_data(run: Run, q: Query) -> None:
    result = run.query(q)
    assert result, f"{q.where}: no data\n{substitute(q.text, run.variables, MACROS)}"
    finite = [v for v in _values(result) if math.isfinite(v)]
    assert finite, f"{q.where}: only NaN/Inf values"


def _panel(title: str) -> list[Query]:
    qs = [q for q in PROM_PANEL_QUERIES if q.extra["panel"]["title"] == title]
    assert qs, title
    return qs


def test_panels_show_what_the_replay_did(run: Run) -> None:
    """Not just "some data": the numbers of the replay."""
    [crit] = _panel("Critical or worse alerts")
    assert max(_values(run.query(crit))) == pytest.approx(CYCLES / 200, rel=0.25)   # increase() extrapolates
    [by_prio] = _panel("Alert rate by priority")
    series = {s["metric"]["priority"]: max(_values([s])) for s in run.query(by_prio)}
    assert set(series) == {"Critical", "Warning", "Notice"} and min(series.values()) > 0
    [types] = _panel("Events per second by type")
    assert {s["metric"]["type"] for s in run.query(types)} == {"execve", "openat", "close"}
    drops = _panel("Drops by cause")[0]
    assert {s["metric"]["cause"] for s in run.query(drops)} >= {"capture_malformed"}
    [top] = _panel("Top rules")
    assert {s["metric"]["rule"] for s in run.query(top)} == {"Bundle Shadow Read", "Bundle Tmp Open",
                                                              "Bundle Exec"}
    p50, p99, mean = _panel("Rule evaluation latency")
    for q in (p99, mean):
        assert 0 < max(v for v in _values(run.query(q)) if math.isfinite(v)) < 1
    [reload_ok] = _panel("Rules reload")
    assert _values(run.query(reload_ok)) == [1.0]


def test_variables_resolve(run: Run) -> None:
    for q in dashboard_queries():
        if q.kind != "prometheus" or "variable" not in q.extra:
            continue
        selector, label = split_label_values(q.text)
        series = run.prom.api("series", **{"match[]": substitute(selector, run.variables, MACROS),
                                           "start": f"{run.start:.3f}", "end": f"{run.end:.3f}"})
        assert {s.get(label) for s in series} - {None}, f"{q.where}: no values"


def test_alert_rules_evaluate_and_the_critical_alert_fires(run: Run) -> None:
    grafana_rules = [q for q in grafana_alert_queries() if q.kind == "prometheus"]
    for q in [*prometheus_rule_exprs(), *grafana_rules]:
        run.prom.api("query", query=q.text, time=f"{run.end:.3f}")     # raises on any error

    def critical_firing() -> list[Any]:
        alerts = run.prom.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "FalconetCriticalAlert"
                and a["state"] == "firing"]
    [alert] = wait_for(critical_firing, 15, "FalconetCriticalAlert to fire")
    assert alert["labels"]["rule"] == "Bundle Shadow Read" and alert["labels"]["priority"] == "Critical"
    groups = run.prom.api("rules")["groups"]
    # "unknown" = not evaluated yet (the recording group runs every 30 s); never "err"
    health = {r["name"]: (r["health"], r.get("lastError")) for g in groups for r in g["rules"]}
    assert all(h in ("ok", "unknown") and not err for h, err in health.values()), health
    assert health["FalconetCriticalAlert"][0] == "ok"


def test_the_replay_exported_its_alerts_over_otlp(run: Run) -> None:
    """The same run feeds the OTel plugin: the Loki panels' data source is real too."""
    records = wait_for(lambda: [r for _, _, r in run.otlp.log_records() if r.severity_text == "Critical"],
                       15, "Critical alert records at the OTLP receiver")
    assert records[0].severity_number >= 18
