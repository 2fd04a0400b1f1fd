"""Hot reload of the rules: the pipeline's swap between two events, the reloader thread (SIGHUP
requests, file watching), App.reload_rules with the real rule engine, and a live `falconet run`
reloaded with SIGHUP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from conftest import REPO, free_port, need_bcc, stop_process, wait_for
from core_fakes import FakeRuleset, ListSink, evt
from falconet.app import App
from falconet.config import load_config
from falconet.events import Event
from falconet.pipeline import Pipeline
from falconet.priorities import Priority
from falconet.reload import RulesReloader, fingerprint


def named(rule: str) -> FakeRuleset:
    return FakeRuleset([(rule, Priority.WARNING, lambda e: True)])


# ----------------------------------------------------------------------------- pipeline swap
def test_swap_happens_between_two_events_and_no_event_is_lost() -> None:
    sink = ListSink()
    parsed: list[str] = []
    p = Pipeline(named("old"), parsers=[("count", lambda e: parsed.append(e.args["name"]))],
                 sinks=[sink])
    new = named("new")
    swapped_on: list[tuple[int, str]] = []

    def events():
        for i in range(6):
            if i == 3:
                # requested mid-stream (as the reloader thread does): takes effect before event 4
                p.swap_ruleset(new, lambda rs: swapped_on.append(
                    (len(parsed), threading.current_thread().name)))
            yield evt(name=str(i))

    n = p.run(events())
    p.close()
    assert n == 6
    assert [a.rule for a in sink.alerts] == ["old"] * 3 + ["new"] * 3
    assert swapped_on == [(3, threading.current_thread().name)]   # on the loop's thread
    assert p.ruleset is new


def test_swap_during_an_idle_tick_and_stop_still_wins() -> None:
    sink = ListSink()
    p = Pipeline(named("old"), sinks=[sink])

    def events():
        yield evt()
        p.swap_ruleset(named("new"))
        yield None                         # idle: the swap happens here, no event processed
        assert p.ruleset.rules[0][0] == "new"
        yield evt()
        p.request_stop()
        p.swap_ruleset(named("never"))
        yield evt()                        # not processed: stop wins over a pending swap

    assert p.run(events()) == 2
    p.close()
    assert [a.rule for a in sink.alerts] == ["old", "new"]


def test_swap_outside_the_loop_applies_on_the_next_process_call() -> None:
    p = Pipeline(named("old"))
    p.swap_ruleset(named("new"))
    assert [a.rule for a in p.process(evt())] == ["new"]


def test_swapped_ruleset_counts_its_errors_in_the_engine_metrics() -> None:
    class Counting(FakeRuleset):
        metrics = None

    p = Pipeline(named("old"))
    rs = Counting([])
    p.swap_ruleset(rs)
    p.process(evt())
    assert rs.metrics is p.metrics


# ----------------------------------------------------------------------------- reloader thread
def test_reloader_reloads_on_request_and_on_file_change(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("a")
    d = tmp_path / "rules.d"
    d.mkdir()
    reasons: list[str] = []
    r = RulesReloader(lambda why: reasons.append(why) or True, lambda: [str(f), str(d)],
                      interval=0.02, settle=0.02)
    r.start()
    try:
        r.request("SIGHUP")
        assert wait_for(lambda: reasons == ["SIGHUP"])
        f.write_text("a longer content")
        assert wait_for(lambda: len(reasons) == 2)
        assert reasons[1] == f"{f} changed"
        (d / "new.yaml").write_text("x")                  # a file added to a rules directory
        assert wait_for(lambda: len(reasons) == 3)
        time.sleep(0.1)                                   # nothing changed: no more reloads
        assert len(reasons) == 3
    finally:
        r.stop()
    assert not r._thread.is_alive()


def _switches(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[2])


def test_reloader_sleeps_on_inotify_and_follows_a_configmap_swap(tmp_path: Path) -> None:
    """No polling: with an hour between metadata polls, a change is still seen at once (inotify),
    including the way a Kubernetes ConfigMap updates its files (a new ``..data`` directory swapped
    in by renaming a symlink), and an idle reloader never wakes."""
    mount = tmp_path / "configmap"
    mount.mkdir()
    (mount / "..v1").mkdir()
    (mount / "..v1" / "rules.yaml").write_text("v1")
    (mount / "..data").symlink_to("..v1")
    (mount / "rules.yaml").symlink_to("..data/rules.yaml")
    reasons: list[str] = []
    r = RulesReloader(lambda why: reasons.append(why) or True, lambda: [str(mount / "rules.yaml")],
                      interval=3600, settle=0.02)
    r.start()
    try:
        assert r._dirs is not None and r._dirs_complete, "inotify watches every directory"
        tid = r._thread.native_id
        assert tid is not None
        before = _switches(tid)
        time.sleep(2.5)      # a 1 s poll (the old default) wakes twice here; its start-up once
        assert _switches(tid) - before <= 1
        (mount / "..v2").mkdir()
        (mount / "..v2" / "rules.yaml").write_text("v2, longer")
        (mount / "..data_tmp").symlink_to("..v2")
        os.rename(mount / "..data_tmp", mount / "..data")            # the atomic swap
        assert wait_for(lambda: len(reasons) == 1)
        assert reasons == [f"{mount / 'rules.yaml'} changed"]
    finally:
        r.stop()
    assert not r._thread.is_alive()


def test_a_request_while_a_change_settles_is_not_left_for_the_backstop(tmp_path: Path) -> None:
    """A SIGHUP that arrives while a file change settles spends its wakeup there; the reloader
    must still serve it next, not after the once-a-minute backstop."""
    f = tmp_path / "r.yaml"
    f.write_text("a")
    reasons: list[str] = []
    r = RulesReloader(lambda why: reasons.append(why) or True, lambda: [str(f)],
                      interval=3600, settle=0.05)
    settle = r._settle
    asked: list[bool] = []

    def settle_with_a_request() -> None:
        if not asked:
            asked.append(True)
            r.request("SIGHUP")          # arrives mid-settle
        settle()
    r._settle = settle_with_a_request    # type: ignore[method-assign]
    r.start()
    try:
        f.write_text("a longer content")
        assert wait_for(lambda: len(reasons) == 2, timeout=10), reasons
        assert reasons == [f"{f} changed", "SIGHUP"]
    finally:
        r.stop()


def test_reloader_survives_a_failing_reload_and_watching_can_be_off(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("a")
    calls: list[str] = []

    def boom(why: str) -> bool:
        calls.append(why)
        raise RuntimeError("bad")

    r = RulesReloader(boom, None)                          # watch_rules_files: false
    r.start()
    try:
        f.write_text("changed")
        r.request("SIGHUP")
        assert wait_for(lambda: r.reloads == 1)
        r.request("SIGHUP")
        assert wait_for(lambda: r.reloads == 2)
    finally:
        r.stop()
    assert calls == ["SIGHUP", "SIGHUP"]


def test_fingerprint_sees_replaced_and_missing_files(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("a")
    before = fingerprint([str(f)])
    g = tmp_path / "tmp.yaml"
    g.write_text("b")
    os.replace(g, f)                                       # how editors save
    assert fingerprint([str(f)]) != before
    f.unlink()
    assert fingerprint([str(f)])[0][1] == -1


# ----------------------------------------------------------------------------- App.reload_rules
RULE = """\
- rule: {name}
  desc: test
  condition: evt.type = {etype}
  output: "{name} %evt.type"
  priority: WARNING
  tags: [{tag}]
"""


def _app(tmp_path: Path, rules: Path) -> App:
    cfg = load_config(None, ["outputs.stdout.enabled=false", "append_output=[]"])
    app = App(cfg, source_name="replay", entry_points=False,
              builtins=[("core-state", "falconet.state.plugin"), ("replay", "falconet.capture")])
    app.load_ruleset([str(rules)])
    app.build_pipeline()
    return app


def test_app_reload_keeps_old_rules_on_errors_and_swaps_good_ones(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE.format(name="Old rule", etype="unlinkat", tag="old"))
    app = _app(tmp_path, rules)
    m = app.metrics
    assert app.pipeline is not None
    old = app.ruleset
    first_ts = m.last_reload_ts

    rules.write_text(RULE.format(name="Broken", etype="unlinkat", tag="x")
                     + "  condition: evt.type = (\n")
    assert app.reload_rules("SIGHUP", wait=0) is False
    err = capsys.readouterr().err
    assert "rules reload (SIGHUP) failed, the previous rules stay active" in err
    assert re.search(rf"{re.escape(str(rules))}:\d+:\d+: error", err), err
    assert m.last_reload_ok is False and m.reload_failures == 1
    assert app.ruleset is old and m.last_reload_ts == first_ts
    alerts = app.pipeline.process(Event("syscall", "unlinkat", 1, 1, 1, {}, 0))
    assert [a.rule for a in alerts] == ["Old rule"]

    rules.write_text(RULE.format(name="Old rule", etype="unlinkat", tag="old")
                     + RULE.format(name="New rule", etype="mkdirat", tag="new"))
    assert app.reload_rules("SIGHUP", wait=0) is True          # queued: the loop is not running
    alerts = app.pipeline.process(Event("syscall", "mkdirat", 2, 1, 1, {}, 0))
    assert [a.rule for a in alerts] == ["New rule"]
    assert app.ruleset is not old
    assert m.last_reload_ok is True and m.reload_failures == 1
    assert m.last_reload_ts > first_ts
    assert m.rules_loaded == {"syscall": 2}
    assert m.rule_tags["New rule"] == ["new"]


def test_app_reload_of_a_deleted_rules_file_is_a_counted_failure(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE.format(name="Old rule", etype="unlinkat", tag="old"))
    app = _app(tmp_path, rules)
    rules.unlink()
    assert app.reload_rules("x changed", wait=0) is False
    assert "rules file not found" in capsys.readouterr().err
    assert app.metrics.reload_failures == 1 and not app.metrics.last_reload_ok


def test_default_rules_directory_is_watched_so_a_new_file_reloads(tmp_path: Path,
                                                                  monkeypatch) -> None:
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "a.yaml").write_text(RULE.format(name="A", etype="unlinkat", tag="a"))
    monkeypatch.setenv("FALCONET_RULES_DIR", str(rules_dir))
    cfg = load_config(None, ["outputs.stdout.enabled=false", "append_output=[]"])
    app = App(cfg, source_name="replay", entry_points=False,
              builtins=[("core-state", "falconet.state.plugin"), ("replay", "falconet.capture")])
    app.load_ruleset(None)
    watched = app.watched_rules_paths()
    assert str(rules_dir) in watched and str(rules_dir / "a.yaml") in watched
    before = fingerprint(watched)
    (rules_dir / "b.yaml").write_text(RULE.format(name="B", etype="mkdirat", tag="b"))
    assert fingerprint(watched) != before          # the directory entry sees the new file


def test_config_watch_rules_files_defaults_on_and_is_validated(tmp_path: Path) -> None:
    assert load_config(None, [])["watch_rules_files"] is True
    assert load_config(None, ["watch_rules_files=false"])["watch_rules_files"] is False
    p = tmp_path / "f.yaml"
    p.write_text("watch_rules_files: sometimes\n")
    try:
        load_config(str(p), [])
    except Exception as e:  # noqa: BLE001
        assert "f.yaml:1:" in str(e) and "expected true or false" in str(e)
    else:
        raise AssertionError("a non-boolean watch_rules_files was accepted")


# ----------------------------------------------------------------------------- live
LIVE_RULE = """\
- rule: {name}
  desc: test
  condition: evt.type in (open, openat, openat2) and fd.name = {path} and proc.name = cat
  output: "{name} file=%fd.name"
  priority: WARNING
  tags: [test]
"""


def _live_engine(rules: Path, *args: str) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    """``falconet run -r RULES ARGS...``, with its stdout and stderr lines collected as they come
    (reader threads: the pipes never fill up and block the engine)."""
    # only RULES: the rule counts below must not include rules installed plugins ship
    eng = subprocess.Popen([sys.executable, "-m", "falconet", "run", "-r", str(rules),
                            "-o", "load_plugin_rules=false", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out: list[str] = []
    err: list[str] = []
    for stream, sink in ((eng.stdout, out), (eng.stderr, err)):
        threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")),
                         daemon=True).start()
    return eng, out, err


def _metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        m = re.search(rf"^{name}\s+(\S+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else None


def test_live_run_reloads_on_sighup_and_keeps_old_rules_on_errors(tmp_path: Path) -> None:
    need_bcc()
    target = tmp_path / "reload-target"
    target.write_text("x\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULE.format(name="Shadow read", path="/etc/shadow"))
    port = free_port()
    eng, out, err = _live_engine(rules, "--metrics-port", str(port), "--duration", "120",
                                 "-o", "watch_rules_files=false", "-o", "append_output=[]")

    def said(text: str) -> bool:
        return any(text in line for line in err)

    def alerted(rule: str) -> bool:
        subprocess.run(["cat", str(target)], stdout=subprocess.DEVNULL, check=True)
        return any(rule in line for line in out)

    try:
        assert wait_for(lambda: said("falconet: watching") or eng.poll() is not None, 90, 0.1)
        assert eng.poll() is None, "".join(err)

        rules.write_text(LIVE_RULE.format(name="Shadow read", path="/etc/shadow")
                         + LIVE_RULE.format(name="Target read", path=target))
        eng.send_signal(signal.SIGHUP)
        assert wait_for(lambda: said("rules reloaded (SIGHUP): 2 rules"), 20), "".join(err)
        assert wait_for(lambda: alerted("Target read"), 20, 0.2), "no alert from the new rule"
        assert _metric(port, "falconet_rules_reload_success") == 1

        rules.write_text("- rule: Broken\n  condition: evt.type = (\n")
        eng.send_signal(signal.SIGHUP)
        assert wait_for(lambda: said("failed, the previous rules stay active"), 20), "".join(err)
        assert wait_for(lambda: _metric(port, "falconet_rules_reload_success") == 0, 5)
        assert _metric(port, "falconet_rules_reload_failures_total") == 1
        n = sum("Target read" in line for line in out)
        assert wait_for(lambda: alerted("Target read") and
                        sum("Target read" in line for line in out) > n, 20, 0.2), \
            "the old rules stopped alerting after a failed reload"
        assert eng.poll() is None
    finally:
        stop_process(eng, 30)
    assert eng.returncode == 0, "".join(err)
    assert not said("Traceback")


def test_live_run_reloads_a_changed_rules_file_and_warns_about_untraced_syscalls(
        tmp_path: Path) -> None:
    need_bcc()
    target = tmp_path / "watch-target"
    target.write_text("x\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULE.format(name="Shadow read", path="/etc/shadow"))
    eng, out, err = _live_engine(rules, "--no-metrics", "--duration", "120", "-o", "append_output=[]")

    def said(text: str) -> bool:
        return any(text in line for line in err)

    def alerted() -> bool:
        subprocess.run(["cat", str(target)], stdout=subprocess.DEVNULL, check=True)
        return any("Watched read" in line for line in out)

    try:
        assert wait_for(lambda: said("falconet: watching") or eng.poll() is not None, 90, 0.1)
        assert eng.poll() is None, "".join(err)
        # no signal: watch_rules_files (default true) notices the new content
        rules.write_text(LIVE_RULE.format(name="Watched read", path=target) + """\
- rule: Outbound connect
  desc: needs connect, which the collector did not attach at start
  condition: evt.type = connect and proc.name = nosuchproc
  output: "connect %fd.name"
  priority: NOTICE
""")
        assert wait_for(lambda: said(f"rules reloaded ({rules} changed): 2 rules"), 20), \
            "".join(err)
        assert said("does not trace (restart falconet to trace them): bind, connect, socket")
        assert wait_for(alerted, 20, 0.2), "no alert from the reloaded file"
    finally:
        stop_process(eng, 30)
    assert eng.returncode == 0, "".join(err)


def _catches_sighup(pid: int) -> bool:
    """True once the process has a SIGHUP handler (bit 0 of SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & 1)
    except OSError:
        pass
    return False


def test_sighup_while_the_engine_starts_does_not_kill_it_and_reloads_once_running(
        tmp_path: Path) -> None:
    """`systemctl reload` during start-up (rules load, BPF compile) must not kill the engine
    (SIGHUP's default action); the reload is done once it runs."""
    need_bcc()
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULE.format(name="Shadow read", path="/etc/shadow"))
    eng, _out, err = _live_engine(rules, "--metrics-port", str(free_port()), "--duration", "60",
                                  "-o", "watch_rules_files=false", "-o", "append_output=[]")

    def said(text: str) -> bool:
        return any(text in line for line in err)

    try:
        assert wait_for(lambda: _catches_sighup(eng.pid) or eng.poll() is not None, 30)
        sent = 0
        while not said("falconet: watching") and eng.poll() is None and sent < 2000:
            eng.send_signal(signal.SIGHUP)        # keep hitting the start-up phase
            sent += 1
            time.sleep(0.01)
        assert eng.poll() is None, f"the engine died of a SIGHUP during start-up: {''.join(err)}"
        assert said("falconet: watching"), "".join(err)
        assert sent > 0, "no SIGHUP handler during start-up (only once the engine watched)"
        assert wait_for(lambda: said("rules reloaded (SIGHUP)"), 20), "".join(err)
    finally:
        stop_process(eng, 30)
    assert eng.returncode == 0, "".join(err)
