"""A real Prometheus (Debian's ``prometheus`` package) for tests, shared by tests/metrics and
tests/bundle: its own config and data directory, listening on 127.0.0.1, scraping the given
targets. The constructor returns once Prometheus is ready; ``stop()`` ends it by PID."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from conftest import free_port, stop_process


class Prometheus:
    def __init__(self, binary: str, workdir: Path, scrape_targets: list[str], *,
                 scrape_interval: str = "250ms", rule_files: list[Path] | None = None,
                 job: str = "falconet", ready_timeout: float = 20) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        cfg = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s",
                          "scrape_timeout": scrape_interval},
               "rule_files": [str(p) for p in rule_files or []],
               "scrape_configs": [{"job_name": job, "static_configs": [{"targets": scrape_targets}]}]}
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after {timeout}s: {self.logs()}")
            time.sleep(0.1)

    def api(self, path: str, **params: Any) -> Any:
        """``GET /api/v1/<path>``'s ``data``; an AssertionError with Prometheus' reason if it
        rejects the request."""
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
            raise AssertionError(f"Prometheus rejected {params}: {body.get('error', e)}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now."""
        return self.api("query", query=expr)["result"]

    def wait_query(self, expr: str, cond: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 20) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``cond(result)`` holds; returns the result."""
        deadline = time.monotonic() + timeout
        res: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            res = self.query(expr)
            if cond(res):
                return res
            time.sleep(0.25)
        raise AssertionError(f"{expr}: condition not met, last result {res}")

    def logs(self) -> str:
        """The end of Prometheus' log, for failure messages."""
        self.log.flush()
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
