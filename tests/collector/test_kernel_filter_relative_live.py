"""Relative opens in the real kernel, with the filter derived from Falco's stable rules: a
file opened relative to the fd of a directory no rule path reaches, or to such a cwd, is
dropped (and its close) until an exec replaces the cwd's verdict, while
``openat(dirfd of /etc, "shadow")`` and ``chdir("/etc"); open("shadow")`` still reach
userspace and raise "Read sensitive file untrusted" there (the engine's real state and rules,
fed what the kernel emitted)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import FALCO_RULES, need, need_bcc

pytestmark = [pytest.mark.root, pytest.mark.ebpf]

RULE = "Read sensitive file untrusted"
TRAVERSAL = "Directory traversal monitored file read"
PROBE = textwrap.dedent(r"""
    import ctypes, os, sys
    ctypes.CDLL(None).prctl(15, b"kfprobe", 0, 0, 0)      # PR_SET_NAME: python is a trusted name
    os.close(os.open("/etc/shadow", os.O_RDONLY))                 # the control: absolute
    etc = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    os.close(os.open("shadow", os.O_RDONLY, dir_fd=etc))          # /etc/shadow: emitted
    lib = os.open("/usr/lib", os.O_RDONLY | os.O_DIRECTORY)
    sub = os.open("os-release", os.O_RDONLY, dir_fd=lib)          # below /usr/lib: dropped
    os.close(sub)                                                 # ... and its close
    os.close(os.open("../../etc/shadow", os.O_RDONLY, dir_fd=lib))  # "..": emitted
    os.close(lib)
    etc2 = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)          # lib's number, now /etc
    os.close(os.open("shadow", os.O_RDONLY, dir_fd=etc2))         # emitted
    os.chdir("/etc")
    os.close(os.open("shadow", os.O_RDONLY))                      # cwd-relative: emitted
    os.chdir("/usr/lib")
    os.close(os.open("os-release", os.O_RDONLY))                  # cwd /usr/lib: dropped
    print(etc, lib, etc2, sub, flush=True)
    # after an exec the state's cwd comes from /proc: the same open is emitted
    os.execv(sys.executable, [sys.executable, "-c",
                              "import os; os.close(os.open('os-release', os.O_RDONLY))"])
""")


@pytest.fixture(scope="module")
def run():
    need_bcc()
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.app import App  # noqa: PLC0415
    from falconet.config import load_config  # noqa: PLC0415
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    app = App(load_config(None, ["plugins.learning.enabled=false"]))
    app.load_plugins()
    app.load_ruleset([str(FALCO_RULES)])
    plan = app.kernel_filter_plan()
    rules = app.ruleset

    def parser(e) -> None:
        for _name, fn in app.parsers:
            fn(e)
    m = EngineMetrics()
    from falconet.state.proc_bootstrap import bootstrap  # noqa: PLC0415
    c = LiveCollector({"openat", "open", "close", "dup2", "execve", "chdir", "fchdir", "clone",
                       "procfork", "prctl"}, metrics=m, kernel_filter=plan)
    try:
        bootstrap(app.ctx.state)        # the probe's ancestors, as the engine knows them
        p = subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        fds = [int(x) for x in out.split()]
        c.wait_for(lambda e: e.type == "procexit" and e.pid == p.pid, what="the probe's exit")
        c.source.poll_stats()
        yield c, m, parser, rules, p.pid, fds
    finally:
        c.close()


def test_relative_open_under_an_inert_directory_is_filtered(run):
    c, m, _parser, _rules, pid, (etc, lib, etc2, _sub) = run
    mine = c.matching(lambda e: e.pid == pid and e.type in ("openat", "close"))
    opens = [(e.args.get("dirfd"), e.args["name"]) for e in mine if e.type == "openat"]
    assert (-100, "/usr/lib") in opens and (-100, "/etc") in opens
    assert (lib, "os-release") not in opens, opens
    assert (etc, "shadow") in opens and (lib, "../../etc/shadow") in opens
    assert (etc2, "shadow") in opens and (-100, "shadow") in opens
    # the cwd's verdict: dropped under chdir("/usr/lib"), emitted once the exec replaced it
    evs = c.matching(lambda e: e.pid == pid and e.type in ("openat", "execve"))
    rel = [i for i, e in enumerate(evs) if e.type == "openat" and
           (e.args.get("dirfd"), e.args["name"]) == (-100, "os-release")]
    execs = [i for i, e in enumerate(evs) if e.type == "execve" and e.res == 0]
    assert len(rel) == 1 and rel[0] > execs[-1], (rel, execs)
    assert m.kernel_filtered.get(("openat", "path"), 0) >= 2
    assert m.kernel_filtered.get(("close", "untracked_fd"), 0) >= 1


def test_the_sensitive_relative_opens_still_raise_the_stable_rule(run):
    c, _m, parser, rules, pid, (etc, lib, etc2, _sub) = run
    hits = []
    for i, e in enumerate(list(c.events)):    # the whole machine, in order, as the pipeline
        e.num = i + 1                           # numbers them (never_true is evt.num = 0)
        parser(e)
        if e.pid == pid and e.type == "openat" and e.args["name"].endswith("shadow"):
            hits.append((e.args.get("dirfd"), e.fdinfo.name if e.fdinfo else None,
                         [a.rule for a in rules.match(e)]))
    assert [(d, n) for d, n, _ in hits] == [(-100, "/etc/shadow"), (etc, "/etc/shadow"),
                                            (lib, "/etc/shadow"), (etc2, "/etc/shadow"),
                                            (-100, "/etc/shadow")]
    # rule_matching "first": the ".." open raises the traversal rule, listed first
    assert [names for _d, _n, names in hits] == [[RULE], [RULE], [TRAVERSAL], [RULE], [RULE]]
