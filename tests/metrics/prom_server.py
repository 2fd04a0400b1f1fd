"""A real Prometheus (the Debian package) for tests: its own temp config and data dir, listening
on 127.0.0.1, scraping given targets every second. Stopped by PID."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        cfg = workdir / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}\n"
            "scrape_configs:\n"
            "  - job_name: falconet\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n")
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.logs()}")
            try:
                if urllib.request.urlopen(self.url + "/-/ready", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready: {self.logs()}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": expr})
        body = json.load(urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_query(self, expr: str, cond, timeout: float = 20) -> list[dict[str, Any]]:
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
        self.log.flush()
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
