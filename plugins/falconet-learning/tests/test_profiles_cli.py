"""``falconet profiles ...`` and ``learn suggest --profile`` through the real CLI on a database a
real engine wrote (replay of a synthetic capture)."""

from __future__ import annotations

import json
from pathlib import Path

from falconet.cli import main
from learning_helpers import T0, Cap, S, run_replay

NOTICE_RULE = """\
- rule: Test notice on wget
  desc: wget ran
  condition: evt.type = execve and proc.name = wget
  output: wget ran (proc.exepath=%proc.exepath proc.pname=%proc.pname)
  priority: NOTICE
"""


def _learned(tmp: Path) -> Path:
    cap = tmp / "c.fcap"
    c = Cap(cap)
    c.spawn(T0, 1, 500, "/usr/sbin/cron")
    c.spawn(T0 + S, 500, 600, "/usr/bin/wget")
    c.spawn(T0 + 2 * S, 500, 601, "/usr/bin/wget")
    c.close()
    rules = tmp / "notice.yaml"
    rules.write_text(NOTICE_RULE)
    state = tmp / "state"
    run_replay(tmp, cap, state, rules=[str(rules)])
    return state


def test_list_show_export_import_reset(tmp_path: Path, capsys) -> None:
    state = _learned(tmp_path)
    assert main(["profiles", "list", "--json", "--state-dir", str(state)]) == 0
    rows = {r["identity"]: r for r in json.loads(capsys.readouterr().out)}
    cron = rows["host:/usr/sbin/cron"]
    assert cron["state"] == "learning" and cron["entries"] == 2
    assert main(["profiles", "show", cron["id"], "--state-dir", str(state)]) == 0
    shown = capsys.readouterr().out
    assert '"/usr/sbin/cron -> /usr/bin/wget"' in shown
    # alerts seen while learning: a host exec's belong to the parent's profile
    assert "Test notice on wget x2" in shown
    export = tmp_path / "p.jsonl"
    assert main(["profiles", "export", "--output", str(export), "--state-dir", str(state)]) == 0
    fresh = tmp_path / "fresh"
    assert main(["profiles", "import", str(export), "--state-dir", str(fresh)]) == 0
    assert "imported" in capsys.readouterr().out
    again = tmp_path / "p2.jsonl"
    assert main(["profiles", "export", "--output", str(again), "--state-dir", str(fresh)]) == 0
    assert again.read_text() == export.read_text()
    assert main(["profiles", "reset", cron["id"][:6], "--state-dir", str(fresh)]) == 0
    assert main(["profiles", "list", "--json", "--state-dir", str(fresh)]) == 0
    out = capsys.readouterr().out
    assert "host:/usr/sbin/cron" not in out.split("reset: it learns again")[-1]


def test_import_reports_bad_lines_and_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"falconet_profiles": 1}\n{"profile": "x"}\nnot json\n')
    assert main(["profiles", "import", str(bad), "--state-dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: a profile line needs" in err and f"{bad}:3: not JSON" in err
    assert main(["profiles", "list", "--json", "--state-dir", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_import_reports_json_the_parser_cannot_build(tmp_path: Path, capsys) -> None:
    """An integer longer than int() converts (a ValueError that is not a JSONDecodeError) and
    nesting deeper than the recursion limit are bad lines too, not a traceback."""
    bad = tmp_path / "deep.jsonl"
    bad.write_text('{"falconet_profiles": 1}\n{"profile": ' + "1" * 5000 + "}\n" + "[" * 60000 + "\n")
    assert main(["profiles", "import", str(bad), "--state-dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: not JSON (Exceeds the limit" in err and f"{bad}:3: not JSON" in err


def test_show_unknown_profile(tmp_path: Path, capsys) -> None:
    assert main(["profiles", "show", "nope", "--state-dir", str(tmp_path / "s")]) == 1
    assert "no profile 'nope'" in capsys.readouterr().err


def test_suggest_from_a_profile(tmp_path: Path, capsys) -> None:
    state = _learned(tmp_path)
    attacks = tmp_path / "a.fcap"
    c = Cap(attacks)
    c.spawn(T0, 1, 500, "/usr/sbin/cron")
    c.spawn(T0 + S, 500, 700, "/usr/bin/curl")
    c.close()
    rules = tmp_path / "notice.yaml"
    conf = tmp_path / "falconet.yaml"
    conf.write_text("{}\n")
    out = tmp_path / "s.yaml"
    pid = next(r for r in _rows(state) if r["identity"] == "host:/usr/sbin/cron")["id"]
    capsys.readouterr()
    rc = main(["learn", "suggest", "-c", str(conf), "-r", str(rules), "--profile", pid,
               "--attacks", str(attacks), "--output", str(out), "--json",
               "--state-dir", str(state)])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0, report
    assert [(e["rule"], e["values"], e["suppressed"]) for e in report["exceptions"]] == [
        ("Test notice on wget", {"proc.exepath": "/usr/bin/wget", "proc.pname": "cron"}, 2)]


def _rows(state: Path) -> list[dict]:
    from falconet_learning.store import ProfileStore

    st = ProfileStore(state)
    try:
        return st.profiles()
    finally:
        st.close()


def test_import_bounds_line_length(tmp_path: Path, capsys) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text('{"falconet_profiles": 1}\n' + "x" * 200_000 + "\n")
    assert main(["profiles", "import", str(big), "--state-dir", str(tmp_path / "s")]) == 1
    assert f"{big}:2: line longer than 65536 characters" in capsys.readouterr().err


def test_non_utf8_identities_and_keys_are_stored_and_exported_exactly(tmp_path: Path) -> None:
    """Paths and names with bytes that are not UTF-8 (surrogate escapes, as /proc and captures
    hold them) are stored, read back and exported exactly; SQLite's strict UTF-8 text used to
    make the writer fail at shutdown and lose the batch."""
    from falconet_learning.store import ProfileStore

    ident = "host:/opt/\udcff\udcfeEVIL"
    key = "/tmp/\udcffx"
    st = ProfileStore(tmp_path / "a")
    try:
        st.write_batch([{"id": "p1", "identity": ident, "state": "learning", "created_ns": 1,
                         "ready_ns": 0, "events": 1, "full": 0}],
                       [("p1", "proc", key, 1), ("p1", "proc", key, 2)])
        [p] = st.load()
        assert p.identity == ident
        assert st.entries("p1")["proc"] == [key]             # one entry: the key deduplicates
        lines = list(st.export_lines())
        for ln in lines:
            ln.encode("utf-8")                                 # valid UTF-8, printable as is
    finally:
        st.close()
    st2 = ProfileStore(tmp_path / "b")
    try:
        assert st2.import_lines(lines) == 1
        [q] = st2.load()
        assert q.identity == ident and st2.entries(q.id)["proc"] == [key]
    finally:
        st2.close()
