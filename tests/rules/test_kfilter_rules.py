"""The kernel filter derived from real rule sets: Falco's stable rules (found through
falconet.upstream; skipped with the reason outside CI when absent) and Falconet's default
rules, through the engine as `falconet run` builds it."""

from __future__ import annotations

import pytest
from conftest import FALCO_RULES, REPO, need
from falconet.app import App
from falconet.config import load_config
from falconet.kfilter import open_passes
from kfhelp import open_event

NO_LEARNING = ["plugins.learning.enabled=false"]


def engine(overrides: list[str], rules: list[str]) -> App:
    app = App(load_config(None, overrides))
    app.load_plugins()
    app.load_ruleset(rules)
    return app


@pytest.fixture(scope="module")
def stable() -> App:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    return engine(NO_LEARNING, [str(FALCO_RULES)])


def test_stable_rules_filter_opens(stable: App) -> None:
    plan = stable.kernel_filter_plan()
    assert set(plan.types) == {"open", "openat", "openat2", "creat"}, plan.unfiltered
    assert plan.unfiltered == {} and plan.filter_close
    tf = plan.types["openat"]
    # Read sensitive file untrusted: reads of /etc/shadow pass, of a library drop
    assert open_passes(tf, "/etc/shadow", 0, 3, False) is None
    assert open_passes(tf, "/etc/sudoers.d/x", 0, 3, False) is None
    assert open_passes(tf, "/usr/lib/x.so", 0, 3, False) == "path"
    assert open_passes(tf, "/usr/lib/x.so", 0o2000000, 3, False) == "path"     # O_CLOEXEC
    # writes: Clear Log Activities (below /var/log, or names ending in a log's name),
    # release_agent (fd.filename = release_agent: a suffix, wherever cgroupfs is mounted)
    assert open_passes(tf, "/var/log/syslog", 0o1, 3, False) is None
    assert open_passes(tf, "/tmp/cgrp/release_agent", 0o1, 3, False) is None
    assert open_passes(tf, "/usr/lib/x.so", 0o1, 3, False) == "path"
    # failed opens (Directory traversal ... or open_file_failed): only irregular paths
    assert open_passes(tf, "/etc/nothere", 0, -2, False) == "path"
    assert open_passes(tf, "/etc/../etc/shadow", 0, -2, False) is None
    assert open_passes(tf, "x/../../etc/shadow", 0, -2, False) is None
    assert open_passes(tf, "/usr/lib", 0, 3, True) is None                     # directory
    # no stable rule is on creat: only directories
    assert plan.types["creat"].clauses == ()
    text = "\n".join(plan.describe())
    assert "= /etc/shadow" in text and "close: closes of fds whose open was filtered" in text
    # relative opens: decided against their dirfd's directory verdict
    assert open_passes(tf, "x.py", 0, 3, False, below="/usr/lib") == "path"
    assert open_passes(tf, "shadow", 0, 3, False, below="/etc") is None
    assert open_passes(tf, "../etc/shadow", 0, 3, False, below="/usr/lib") is None
    assert open_passes(tf, "x.py", 0, 3, False) is None                         # no verdict
    assert open_passes(tf, "x.bin", 0o1, 3, False, below="/usr/lib") == "path"
    assert open_passes(tf, "syslog", 0o1, 3, False, below="/usr/lib") is None     # a suffix
    assert open_passes(tf, "release_agent", 0o1, 3, False, below="/usr/lib") is None  # suffix
    assert open_passes(tf, "a/b/auth.log", 0o1, 3, False, below="/srv") is None


def test_stable_rules_fd_tracker_directory_verdicts(stable: App) -> None:
    """What tar does (every file opened relative to its directory's fd), and the cases that
    must still pass: a sensitive name under /etc's fd, `..`, a reused or duplicated dirfd."""
    from falconet.kfilter import FdTracker  # noqa: PLC0415
    tr = FdTracker(stable.kernel_filter_plan())
    assert tr.relative

    def op(name: str, res: int, dirfd: int = -100, is_dir: bool = False) -> str | None:
        e = open_event("openat", name, 0o4000, res, is_dir=is_dir)
        e.args["dirfd"] = dirfd
        return tr.verdict(e)
    assert op("/usr/lib/python3", 3, is_dir=True) is None
    assert op("json", 4, 3, is_dir=True) is None                        # inherits /usr/lib/python3's
    assert op("__init__.py", 5, 4) == "path"
    assert tr.verdict(_close(5)) == "untracked_fd"
    assert op("../../../etc/shadow", 5, 4) is None                      # not plain: passes
    assert op("./x.py", 6, 4) is None
    assert op("/etc", 7, is_dir=True) is None
    assert op("shadow", 8, 7) is None                                   # /etc/shadow
    assert op("hostname", 9, 7) is None             # below /etc: rule paths are (conservative)
    assert op("sudoers.d", 10, 7, is_dir=True) is None
    assert op("x", 11, 10) is None                                      # /etc/sudoers.d/x
    assert tr.verdict(_close(4)) is None
    assert op("__init__.py", 4, 4) is None                              # closed: no verdict
    assert op("/etc", 4, is_dir=True) is None                           # fd 4 reused by /etc
    assert op("shadow", 12, 4) is None
    tr.verdict(_ev("dup2", {"oldfd": 3, "newfd": 7}, 7))                # 7 replaced
    assert op("x.py", 13, 7) is None
    tr.verdict(_ev("procexit", {}, 0))
    assert not tr.dirs and op("x.py", 14, 3) is None


def _ev(t: str, args: dict, res: int):
    from falconet.events import Event  # noqa: PLC0415
    return Event("syscall", t, 1, 100, 100, args, res)


def _close(fd: int):
    return _ev("close", {"fd": fd}, 0)


def test_the_learning_plugin_keeps_opens_whole_only_when_it_learns_files() -> None:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    app = engine([], [str(FALCO_RULES)])
    need("learning" in app.host.info, "falconet-learning is not installed")
    # by default the plugin learns no file access: its rules (connect/listen with socket
    # checks) leave opens to the filter
    assert "openat" in app.kernel_filter_plan().types
    app = engine(["plugins.learning.files=true"], [str(FALCO_RULES)])
    plan = app.kernel_filter_plan()
    assert plan.types == {}
    assert plan.unfiltered["openat"] == "needed by plugin learning"
    # profiles that never learn need no opens (the file rule's profile.* is opaque: off)
    app = engine(["plugins.learning.files=true", "plugins.learning.learning_seconds=0",
                  "plugins.learning.learning_events=0", "load_plugin_rules=false"],
                 [str(FALCO_RULES)])
    assert "openat" in app.kernel_filter_plan().types


def test_kernel_filter_off_in_the_configuration(stable: App) -> None:
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    app = engine([*NO_LEARNING, "collector.kernel_filter=false"], [str(FALCO_RULES)])
    assert app.kernel_filter_plan() is None
    assert app.kernel_filter_plan(force=True) == stable.kernel_filter_plan()


def test_default_rules(tmp_path) -> None:
    """The default rules: reads pass for the credential files only, by the requested or by
    the resolved path (the rules see both: falconet.rules.views); writes pass below /etc, the
    binary and log directories and for the shell histories; other writes, other reads, failed
    opens and O_PATH drop. Setuid or Setgid Bit Set shows fd.name of an fchmod fd in its
    output only: the state reads an unknown fd back from /proc, so it does not turn the filter
    off; the io_uring rule matches no open of the syscall path."""
    rules = str(REPO / "rules")
    plan = engine(NO_LEARNING, [rules]).kernel_filter_plan()
    tf = plan.types["openat"]
    assert open_passes(tf, "/usr/lib/x.so", 0, 3, False) == "path"                # a read
    assert open_passes(tf, "/etc/shadow", 0, 3, False) is None
    assert open_passes(tf, "/tmp/l", 0, 3, False, "/etc/shadow") is None     # a symlink
    assert open_passes(tf, "/tmp/l/id_rsa", 0, 3, False, "/root/.ssh/id_rsa") is None
    assert open_passes(tf, "/home/u/.bash_history", 0o1001, 3, False) is None    # O_TRUNC
    assert open_passes(tf, "/etc/passwd", 0o1, 3, False) is None
    assert open_passes(tf, "/tmp/x", 0o1, 3, False) == "path"
    assert open_passes(tf, "/usr/lib/x.so", 0, -2, False) == "failed"
    assert open_passes(tf, "/usr/lib/x.so", 0o10000000, 3, False) == "flags"
    assert plan.filter_close and plan.unfiltered == {}
