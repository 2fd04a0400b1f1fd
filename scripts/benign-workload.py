#!/usr/bin/env python3
"""A benign workload for the false-positive budget: ordinary admin and developer activity that
Falconet's default rules must not flag at Warning or above.

What it does (all offline, all on loopback, everything removed afterwards):
  1. package installs: builds a small .deb locally (dpkg-deb) and installs/removes it with dpkg on
     the host (its postinst writes below /etc, as real packages do), and installs it with dpkg
     inside a runc container (busybox dpkg);
  2. builds and tests a small Python project: venv, pip wheel + install from the local wheel
     (--no-index), unittest;
  3. git: init, commit, branch, merge, log, diff, gc;
  4. a local web server (python http.server on 127.0.0.1) under 300 requests of load;
  5. cron-like jobs: a job script run periodically by a scheduler loop (sh, date, df, ps);
  6. log rotation: a log below /var/log written, rotated (mv, gzip), recreated, pruned;
  7. a C build: gcc compiles and runs a small program;
  8. a short-lived application container (runc) running its entrypoint.

Usage:
  scripts/benign-workload.py                 # run the workload
  scripts/benign-workload.py --check [--json] # start `falconet run` (default rules), run the
                                              # workload, report the alerts it raised; exit 1 if
                                              # any is Warning or above
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run under the repository's virtualenv (falconet and its dependencies live there, and the engine
# is started as its `falconet` script), so `sudo scripts/benign-workload.py --check` works as the
# README says whatever python3 is first on PATH.
_VENV = REPO / ".venv"
if (_VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != _VENV.resolve():
    os.execv(str(_VENV / "bin" / "python"), [str(_VENV / "bin" / "python"), __file__, *sys.argv[1:]])
sys.path.insert(0, str(REPO / "core"))

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "LANG": "C.UTF-8", "GIT_AUTHOR_NAME": "Benign", "GIT_AUTHOR_EMAIL": "benign@localhost",
       "GIT_COMMITTER_NAME": "Benign", "GIT_COMMITTER_EMAIL": "benign@localhost",
       "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(argv: list[str], cwd: str | Path | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, cwd=cwd, env=ENV, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc {p.returncode}: {(p.stderr or p.stdout)[-500:]}")
    return p


def step(name: str):
    def deco(fn):
        fn.step_name = name
        return fn
    return deco


# ---------------------------------------------------------------------------------- packages
def build_deb(work: Path) -> Path:
    root = work / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc/falconet-benign").mkdir(parents=True)
    (root / "usr/share/doc/falconet-benign/README").write_text("benign test package\n")
    (root / "DEBIAN/control").write_text(
        "Package: falconet-benign\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Falconet <dev@localhost>\nDescription: benign workload test package\n")
    post = root / "DEBIAN/postinst"
    post.write_text("#!/bin/sh\nset -e\necho 'enabled=1' > /etc/falconet-benign.conf\n")
    post.chmod(0o755)
    postrm = root / "DEBIAN/postrm"
    postrm.write_text("#!/bin/sh\nset -e\nrm -f /etc/falconet-benign.conf\n")
    postrm.chmod(0o755)
    deb = work / "falconet-benign_1.0_all.deb"
    run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)])
    return deb


@step("package install and removal with dpkg (host)")
def packages_host(work: Path) -> None:
    if shutil.which("dpkg") is None:
        print("  (no dpkg on this host: skipped)")
        return
    deb = build_deb(work)
    run(["dpkg", "-i", str(deb)])
    run(["dpkg", "-s", "falconet-benign"])
    run(["dpkg", "-L", "falconet-benign"])
    run(["dpkg", "--purge", "falconet-benign"])


@contextlib.contextmanager
def runc_container() -> Iterator[Any]:
    """A started runc container (falconet.simulate RuncContext), stopped on exit; None, with a
    note, where runc cannot run here (the workload goes on without it)."""
    from falconet.simulate.contexts import ContextUnavailable, RuncContext  # noqa: PLC0415

    ctx = RuncContext()
    try:
        ctx.start()
    except (ContextUnavailable, RuntimeError) as e:
        print(f"  (no runc container: {e})")
        yield None
        return
    try:
        yield ctx
    finally:
        ctx.stop()


@step("package install with dpkg in a runc container")
def packages_container(work: Path) -> None:
    deb = work / "falconet-benign_1.0_all.deb"
    if not deb.exists():
        deb = build_deb(work)
    with runc_container() as ctx:
        if ctx is None:
            return
        # hand the package to the container through its writable upper layer
        shutil.copy(deb, ctx.bundle / "merged" / "tmp" / deb.name)
        ctx.exec(["mkdir", "-p", "/var/lib/dpkg/info", "/usr/share/doc"])
        ctx.exec(["dpkg", "-i", f"/tmp/{deb.name}"])
        ctx.exec(["dpkg", "-l"])
        ctx.exec(["rm", "-f", f"/tmp/{deb.name}"])


# ---------------------------------------------------------------------------- python project
@step("build and test a small Python project (venv, local wheel, unittest)")
def python_project(work: Path) -> None:
    proj = work / "proj"
    (proj / "src/benign_calc").mkdir(parents=True)
    (proj / "tests").mkdir()
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "benign-calc"\nversion = "0.1"\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n')
    (proj / "src/benign_calc/__init__.py").write_text(
        "def add(a, b):\n    return a + b\n")
    (proj / "tests/test_calc.py").write_text(
        "import unittest\nfrom benign_calc import add\n\n"
        "class T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n")
    # build with this interpreter's setuptools/wheel (offline), install into a fresh venv
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(work / "dist"), str(proj)], timeout=180)
    wheel = next((work / "dist").glob("*.whl"))
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = str(venv / "bin/python")
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-index", str(wheel)])
    run([py, "-m", "unittest", "discover", "-s", str(proj / "tests")], cwd=proj)
    run([sys.executable, "-m", "pip", "--python", py, "list"])


# ------------------------------------------------------------------------------------- git
@step("git operations")
def git_ops(work: Path) -> None:
    if shutil.which("git") is None:
        print("  (no git: skipped)")
        return
    repo = work / "repo"
    repo.mkdir()
    run(["git", "init", "-q", "-b", "main"], cwd=repo)
    for i in range(3):
        (repo / f"file{i}.txt").write_text(f"line {i}\n")
        run(["git", "add", "."], cwd=repo)
        run(["git", "commit", "-q", "-m", f"commit {i}"], cwd=repo)
    run(["git", "checkout", "-q", "-b", "feature"], cwd=repo)
    (repo / "feature.txt").write_text("feature\n")
    run(["git", "add", "."], cwd=repo)
    run(["git", "commit", "-q", "-m", "feature"], cwd=repo)
    run(["git", "checkout", "-q", "main"], cwd=repo)
    run(["git", "merge", "-q", "--no-edit", "feature"], cwd=repo)
    run(["git", "log", "--oneline"], cwd=repo)
    run(["git", "diff", "HEAD~1"], cwd=repo)
    run(["git", "status"], cwd=repo)
    run(["git", "clone", "-q", str(repo), str(work / "clone")])
    run(["git", "gc", "-q"], cwd=repo)


# ---------------------------------------------------------------------------------- web
@step("local web server under load (127.0.0.1)")
def web_server(work: Path) -> None:
    site = work / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>benign</h1>\n")
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(site), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    # a separate server process too, as an operator would run it
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", str(site), "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        for _ in range(300):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as r:
                r.read()
    finally:
        srv.shutdown()
        proc.terminate()
        proc.wait(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


# --------------------------------------------------------------------------------- cron
@step("cron-like periodic jobs")
def cron_jobs(work: Path) -> None:
    job = work / "job.sh"
    job.write_text("#!/bin/sh\ndate >> \"$1\"\ndf -h / >> \"$1\"\nps -e | wc -l >> \"$1\"\n"
                   "find \"$2\" -name '*.txt' | wc -l >> \"$1\"\n")
    job.chmod(0o755)
    log = work / "job.log"
    for _ in range(3):
        run([str(job), str(log), str(work)])
        time.sleep(0.2)


# ---------------------------------------------------------------------------- log rotation
@step("log rotation below /var/log")
def log_rotation(work: Path) -> None:
    d = Path("/var/log/falconet-benign")
    d.mkdir(parents=True, exist_ok=True)
    try:
        log = d / "app.log"
        for rotation in range(3):
            with open(log, "a") as f:
                for i in range(200):
                    f.write(f"request {rotation}-{i} ok\n")
            for n in range(2, 0, -1):          # app.log.1.gz -> app.log.2.gz
                src = d / f"app.log.{n}.gz"
                if src.exists():
                    src.rename(d / f"app.log.{n + 1}.gz")
            log.rename(d / "app.log.1")
            run(["gzip", "-f", str(d / "app.log.1")])
            log.touch()
        for old in d.glob("app.log.[3-9].gz"):
            old.unlink()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------- build
@step("C build with gcc")
def c_build(work: Path) -> None:
    if shutil.which("gcc") is None:
        print("  (no gcc: skipped)")
        return
    src = work / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("hello");return 0;}\n')
    run(["gcc", "-O2", "-o", str(work / "hello"), str(src)])
    run([str(work / "hello")])
    run(["tar", "czf", str(work / "src.tgz"), "-C", str(work), "hello.c"])


@step("application container running its entrypoint (runc)")
def app_container(work: Path) -> None:
    with runc_container() as ctx:
        if ctx is None:
            return
        ctx.exec(["ls", "/"])
        ctx.exec(["cat", "/etc/passwd"])
        ctx.exec(["touch", "/tmp/app.pid"])
        ctx.exec(["wc", "-l", "/etc/group"])


STEPS = [packages_host, packages_container, python_project, git_ops, web_server, cron_jobs,
         log_rotation, c_build, app_container]


def run_workload(verbose: bool = True) -> list[str]:
    """Run every step; return the names of steps that failed (a failed step is reported, the
    others still run)."""
    failed = []
    with tempfile.TemporaryDirectory(prefix="falconet-benign-") as tmp:
        for fn in STEPS:
            work = Path(tmp) / fn.__name__
            work.mkdir()
            t0 = time.monotonic()
            try:
                fn(work)
                status = "ok"
            except Exception as e:  # noqa: BLE001 - report and go on with the next step
                failed.append(fn.step_name)
                status = f"FAILED: {e}"
            if verbose:
                print(f"[{time.monotonic() - t0:5.1f}s] {fn.step_name}: {status}", flush=True,
                      file=sys.stderr)
    return failed


def check(as_json: bool) -> int:
    """Run the workload under a live engine with the default rules and report its alerts."""
    from falconet.priorities import Priority  # noqa: PLC0415
    from falconet.simulate.live import LiveEngine  # noqa: PLC0415
    from falconet.simulate.runner import host_canary  # noqa: PLC0415

    # every alert carries the pid and ancestor pids of its process, so alerts are attributed to
    # this workload (our descendants) and not to whatever else runs on the machine
    engine = LiveEngine(extra_args=["-o", "append_output=[{extra_fields: [proc.pid, proc.apid]}]"])
    me = os.getpid()

    def ours(a) -> bool:
        f = a.output_fields
        return f.get("proc.pid") == me or me in (f.get("proc.apid") or ())

    engine.start()
    try:
        engine.wait_ready(90, canary=host_canary)
        time.sleep(0.5)
        t0 = time.time_ns()
        failed = run_workload(verbose=not as_json)
        t1 = time.time_ns()
        time.sleep(1.0)   # late alerts
        in_window = [a for a in engine.snapshot() if t0 <= a.time_ns <= t1]
    finally:
        engine.stop()
    alerts = [a for a in in_window if ours(a)]
    background = [a for a in in_window if not ours(a)]
    high = [a for a in alerts if a.priority <= Priority.WARNING]
    low = [a for a in alerts if a.priority > Priority.WARNING]
    by_rule = _count(low)
    report = {"warning_or_higher": len(high), "lower_priority": len(low),
              "lower_by_rule": by_rule, "failed_steps": failed,
              "duration_s": round((t1 - t0) / 1e9, 1),
              "background_alerts_not_from_workload": len(background),
              "background_by_rule": _count(background),
              "warning_or_higher_alerts": [a.raw.get("output", a.output) for a in high]}
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(f"alerts at Warning or above: {len(high)}; lower priority: {len(low)} "
              f"{by_rule}; failed steps: {failed or 'none'}")
        for a in high:
            print(f"  {a.raw.get('output', a.output)}")
    return 1 if high or failed else 0


def _count(alerts: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in alerts:
        key = f"{a.rule} ({a.priority.label})"
        out[key] = out.get(key, 0) + 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="run under a live engine (default rules) and report the alerts")
    ap.add_argument("--json", action="store_true", help="JSON report (with --check)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("benign-workload: needs root (dpkg, /var/log, containers)", file=sys.stderr)
        return 2
    if args.check:
        return check(args.json)
    return 1 if run_workload() else 0


if __name__ == "__main__":
    sys.exit(main())
