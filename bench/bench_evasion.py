#!/usr/bin/env python3
"""The evasion suite (suites/evasion.yaml) side by side: upstream Falco 0.44.1 with its stable
rules vs Falconet with the same unmodified stable file plus its default rules; and what seeing
through evasion costs in the kernel (issue 19).

Detection: every case of the suite runs once against each engine (one engine at a time, same
machine, same actions). Falconet passes a case when the case's expected rule fires. Falco can
only raise stable rules, so a case counts as caught by Falco when the stable rule whose intent
covers it (``INTENT`` below; the suite's rule when it is a stable one) fires; a case no stable
rule covers is reported ``no stable rule`` (missed).

Cost (Falconet only, from the kernel's BPF run-time stats, as bench_collector_kernel.py):
``io_uring``: ns per run of the io_uring_submit_req and io_uring_complete programs under an
io_uring OPENAT+CLOSE loop (one event per operation); ``path resolution``: ns per sys_exit run
under an open+close loop with ``resolve_paths`` off and on (the difference is the dentry walk of
each open, tail call included).

Needs root, bcc, runc (scripts/setup.d/50-runtimes.sh) and ../shared/falco-bin. Prints JSON.

usage: bench/bench_evasion.py [--skip-falco] [--skip-cost] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))
sys.path.insert(0, str(REPO / "bench"))

import _engines as E  # noqa: E402
from falconet.simulate.live import LiveEngine  # noqa: E402
from falconet.simulate.runner import host_canary, run_suite  # noqa: E402
from falconet.simulate.suite import load_suite  # noqa: E402
from falconet.upstream import falco_rules_path  # noqa: E402

FALCO_RUN = REPO.parent / "shared" / "falco-bin" / "run.sh"
SUITE = REPO / "suites" / "evasion.yaml"
#: suite case -> the stable rule whose intent covers it (None: no stable rule does)
INTENT: dict[str, str | None] = {
    "io_uring open in a container": None,
    "io_uring socket + connect in a container": None,
    "io_uring reverse shell on the host": None,          # the stable rule is container-only
    "plain write below /etc in a container": None,      # not in the stable file
    "file written elsewhere and moved into /etc (rename)": None,
    "file moved into /etc in a container": None,
    "file moved into /etc through io_uring (RENAMEAT)": None,
    "file hard-linked into /usr/bin in a container": None,
}
READ_INTENT = "Read sensitive file untrusted"


def _own_cgroup_ids() -> frozenset[str]:
    """12-character prefixes of the hex names in this process's cgroup paths."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return frozenset()
    return frozenset(m[:12] for m in re.findall(r"[0-9a-f]{32,64}", text))


_OWN_CGROUP_IDS = _own_cgroup_ids()


class FalcoEngine(LiveEngine):
    """Upstream Falco through ../shared/falco-bin/run.sh, alerts as JSON on stdout."""

    @property
    def argv(self) -> list[str]:
        argv = [str(FALCO_RUN)]
        for r in self.rules:
            argv += ["-r", r]
        return argv + ["-o", "json_output=true", "-o", "stdout_output.enabled=true",
                       "-o", "json_include_output_fields_property=true"]

    def parse(self, line: str, received_ns: int):  # noqa: ANN201
        """Falco's container plugin takes a hex cgroup name of a host process (this machine
        runs everything in ``memory:/process_api/<32 hex>``) for a container id: such an id,
        the one of this very process, is the host (Falconet's plugin needs a runtime's
        cgroup layout)."""
        a = super().parse(line, received_ns)
        if a is not None and a.output_fields.get("container.id") in _OWN_CGROUP_IDS:
            a.output_fields["container.id"] = "host"
        return a

    def wait_ready(self, timeout: float = 60.0, canary=None) -> None:  # noqa: ANN001
        # Falco prints no "attached" line we can rely on: the canary alert is the signal
        deadline = time.monotonic() + timeout
        token = "falco-canary"
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"falco exited:\n{self.stderr_tail}")
            host_canary(token)
            if self.wait_for(lambda a: token in a.output, time.monotonic() + 1.0) is not None:
                self.ready_reason = "canary alert received"
                return
        raise RuntimeError(f"falco not ready within {timeout:.0f}s:\n{self.stderr_tail}")


def _intent(case_name: str, rule: str | None, stable: set[str]) -> str | None:
    if case_name in INTENT:
        return INTENT[case_name]
    if rule in stable:
        return rule
    return READ_INTENT        # the sensitive-read variants: the stable rule is the read rule


def detection(only: list[str] | None, skip_falco: bool) -> dict:
    import yaml  # noqa: PLC0415

    stable_file = str(falco_rules_path())
    stable = {d["rule"] for d in yaml.safe_load(Path(stable_file).read_text()) if "rule" in d}
    suite = load_suite(SUITE)
    rules = [str((SUITE.parent / r).resolve()) if not os.path.isabs(r) else r for r in suite.rules]
    out: dict[str, dict] = {c.name: {"where": c.where, "action": c.action,
                                     "falconet_rule": None if c.expect.nothing else c.expect.rule}
                            for c in suite.select(only)}
    eng = LiveEngine(rules)
    eng.start()
    try:
        eng.wait_ready(90, canary=host_canary)
        rep = run_suite(suite, eng, only=only)
    finally:
        eng.stop()
    for r in rep.results:
        out[r.case.name]["falconet"] = r.status == "pass"
        if r.status != "pass":
            out[r.case.name]["falconet_reason"] = r.reason
    # Falco's view, emulated: the same stable file on Falconet with the issue-19 visibility off
    # (no io_uring tracing, no kernel path resolution). Measured, and kept beside Falco's own
    # column because Falco's modern probe may not load on a given kernel.
    cases, intents = _stable_cases(suite, stable, out, only)
    fsuite = dataclasses.replace(suite, cases=cases)
    beng = LiveEngine([stable_file], extra_args=["-o", "collector.io_uring=false",
                                                 "-o", "collector.resolve_paths=false"])
    beng.start()
    try:
        beng.wait_ready(90, canary=host_canary)
        brep = run_suite(fsuite, beng)
    finally:
        beng.stop()
    for r in brep.results:
        out[r.case.name]["stable_without_issue19"] = r.status == "pass"
    for name in intents:
        out[name].setdefault("stable_without_issue19", False)
    falco_error = None
    falco_shim = None
    if not skip_falco and FALCO_RUN.exists():
        # as bench/_engines.py: on this kernel Falco's modern_ebpf probe is rejected by the
        # verifier unless the LD_PRELOAD shim (bench/c/falco_sigdeliver_shim.c) is in
        work = E.temp_dir("falconet-evasion-")
        shim = E.build_c(E.C_DIR / "falco_sigdeliver_shim.c", work, shared=True)
        falco_shim = str(E.C_DIR / "falco_sigdeliver_shim.c")
        feng = FalcoEngine([stable_file], env={"LD_PRELOAD": str(shim)})
        feng.start()
        try:
            feng.wait_ready(90)
            frep = run_suite(fsuite, feng)
        except RuntimeError as e:
            falco_error = str(e)[-1500:]
            frep = None
        finally:
            feng.stop()
            E.remove_tree(work)
        for r in frep.results if frep is not None else ():
            out[r.case.name]["falco"] = r.status == "pass"
            if r.status != "pass":
                out[r.case.name]["falco_reason"] = r.reason
        if frep is not None:
            for name in intents:
                out[name].setdefault("falco", False)
    engines = ("falco", "stable_without_issue19", "falconet")
    caught = {e: sorted(n for n, v in out.items() if v.get(e)) for e in engines}
    return {"cases": out, "caught": {e: len(v) for e, v in caught.items()},
            "total": len(out), "falco_error": falco_error, "falco_shim": falco_shim,
            "only_falconet": sorted(n for n, v in out.items()
                                    if v.get("falconet") and not v.get("falco")
                                    and not v.get("stable_without_issue19"))}


def _stable_cases(suite, stable: set[str], out: dict, only: list[str] | None):  # noqa: ANN001, ANN202
    """The suite's cases with each expected rule replaced by the stable rule of its intent;
    cases no stable rule covers are left out (recorded as missed in ``out``)."""
    cases, none = [], []
    for c in suite.select(only):
        if c.expect.nothing:
            cases.append(c)
            continue
        rule = _intent(c.name, c.expect.rule, stable)
        out[c.name]["stable_rule"] = rule
        if rule is None:
            out[c.name]["falco"] = out[c.name]["stable_without_issue19"] = False
            out[c.name]["falco_reason"] = "no stable rule"
            none.append(c.name)
            continue
        cases.append(dataclasses.replace(
            c, expect=dataclasses.replace(c.expect, rule=rule, output_fields={})))
    return cases, none


# ------------------------------------------------------------------------------ cost
def _read_shadow_plan():  # noqa: ANN202
    from falconet.kfilter import Clause, FilterPlan, TypeFilter  # noqa: PLC0415
    c = Clause(any_path=False, exact=frozenset({"/etc/shadow"}), prefixes=frozenset(),
               need_read=True, need_write=False, need_success=True)
    return FilterPlan(types={t: TypeFilter(t, (c,)) for t in ("open", "openat", "openat2",
                                                              "creat")},
                      unfiltered={}, filter_close=True)


READ_SHADOW_PLAN = _read_shadow_plan()
IOU_LOOP = r"""
import sys
sys.path.insert(0, {payload_dir!r})
import payload
r = payload.IoUring()
path = r.buf(b"/etc/hostname")
n = {n}
for _ in range(n):
    fd = r.op(payload.IORING_OP_OPENAT, fd=payload.AT_FDCWD, addr=path)
    r.op(payload.IORING_OP_CLOSE, fd=fd)
"""


def cost() -> dict:
    import bench_collector_kernel as K  # noqa: PLC0415
    from falconet.collector.btf import BTF  # noqa: PLC0415
    from falconet.collector.source import CollectorConfig, EbpfSource  # noqa: PLC0415

    b = BTF.load()
    offs = {k: b.offset("bpf_prog_info", k) for k in ("name", "run_time_ns", "run_cnt")}
    offs["size"] = b.struct_size("bpf_prog_info")
    events = frozenset({"openat", "open", "close", "execve", "execveat", "clone", "clone3", "fork",
                        "vfork", "procfork", "procexit", "chdir", "fchdir", "setuid", "setgid",
                        "setreuid", "setregid", "setresuid", "setresgid"})
    stats_fd = K.enable_stats()

    def with_collector(cfg: CollectorConfig, fn, plan=None):  # noqa: ANN001, ANN202
        src = EbpfSource(cfg)
        old = set(K.prog_stats(offs))
        src.start(events, None, plan)
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                for ring in src.rings.rings:
                    for _ in ring.records(1 << 16):
                        pass
                time.sleep(0.001)
        th = threading.Thread(target=drain, daemon=True)
        th.start()
        try:
            ids = K.new_ids(offs, old)
            time.sleep(0.3)
            res = fn(ids)
            src.poll_stats()
            res["kernel_drops"] = src.read_counters().drops
            return res
        finally:
            stop.set()
            th.join(2)
            src.close()

    def open_loop(ids: set[int]) -> dict:
        per = []
        for _ in range(3):
            b0 = K.ours(offs, ids, "falconet_sys_ex")
            K.run_workload("traced")
            b1 = K.ours(offs, ids, "falconet_sys_ex")
            per.append((b1[0] - b0[0]) / max(b1[1] - b0[1], 1))
        per.sort()
        return {"sys_exit_ns_per_run_open_close_mix": round(per[1], 1)}

    def iou_loop(ids: set[int]) -> dict:
        n = 20_000
        code = IOU_LOOP.format(payload_dir=str(REPO / "core" / "falconet" / "simulate"), n=n)
        res: dict = {}
        b0 = {p: K.ours(offs, ids, p) for p in ("falconet_iou_su", "falconet_iou_co")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        res["loop_wall_s"] = round(time.perf_counter() - t0, 3)
        for p in ("falconet_iou_su", "falconet_iou_co"):
            t, c = K.ours(offs, ids, p)
            dt, dc = t - b0[p][0], c - b0[p][1]
            res[p] = {"ns_per_run": round(dt / max(dc, 1), 1), "runs": dc}
        res["ns_per_io_uring_event"] = round(sum(res[p]["ns_per_run"] for p in (
            "falconet_iou_su", "falconet_iou_co")), 1)
        return res

    try:
        out = {
            "path_resolution_off": with_collector(CollectorConfig(resolve_paths=False), open_loop),
            "path_resolution_on": with_collector(CollectorConfig(resolve_paths=True), open_loop),
            "io_uring": with_collector(CollectorConfig(), iou_loop),
            # the kernel filter on, the loop's opens in no clause (as the stable rules' reads of
            # /etc/hostname): with resolution on, each is walked before it is dropped (step 6)
            "filtered_resolution_off": with_collector(CollectorConfig(resolve_paths=False),
                                                      open_loop, READ_SHADOW_PLAN),
            "filtered_resolution_on": with_collector(CollectorConfig(resolve_paths=True),
                                                     open_loop, READ_SHADOW_PLAN),
        }
        t = "sys_exit_ns_per_run_open_close_mix"
        # half the runs of the mix are opens: the walk's cost per open is twice the difference
        out["path_resolution_ns_per_open"] = round(
            2 * (out["path_resolution_on"][t] - out["path_resolution_off"][t]), 1)
        out["path_resolution_ns_per_filtered_open"] = round(
            2 * (out["filtered_resolution_on"][t] - out["filtered_resolution_off"][t]), 1)
        return out
    finally:
        os.close(stats_fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-falco", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"bench": "evasion", "error": "needs root (eBPF)"}))
        return 2
    result: dict = {"bench": "evasion", "loadavg": round(os.getloadavg()[0], 2)}
    result["detection"] = detection(args.only, args.skip_falco)
    if not args.skip_cost:
        result["cost"] = cost()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
