"""``falconet learn suggest`` on synthetic captures through the real CLI, rules engine and
replay: exceptions for the benign alerts, proven by replay; a suggestion that would hide an
attack is dropped and reported; Warning+ alerts are never excepted."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import yaml
from falconet.cli import main
from learning_helpers import T0, Cap, S

RULES = """\
- rule: Test write below etc
  desc: a file below /etc opened for writing
  condition: evt.type = openat and evt.is_open_write = true and fd.name startswith /etc/
  output: write below etc (fd.name=%fd.name proc.exepath=%proc.exepath proc.pname=%proc.pname)
  priority: NOTICE
- rule: Test shadow read
  desc: /etc/shadow read
  condition: evt.type = openat and fd.name = /etc/shadow
  output: shadow (fd.name=%fd.name proc.exepath=%proc.exepath)
  priority: WARNING
"""
W = 0o1101   # O_WRONLY|O_CREAT|O_TRUNC


def _captures(tmp: Path) -> tuple[Path, Path]:
    benign, attacks = tmp / "benign.fcap", tmp / "attacks.fcap"
    c = Cap(benign)
    c.spawn(T0, 1, 400, "/bin/sh")
    c.spawn(T0 + S, 400, 500, "/usr/bin/dpkg")
    c.open(T0 + S + 10, 500, "/etc/dpkg.conf", W)
    c.open(T0 + S + 20, 500, "/etc/dpkg.conf", W)
    c.spawn(T0 + 2 * S, 400, 501, "/usr/bin/apt")
    c.open(T0 + 2 * S + 10, 501, "/etc/apt.conf", W)
    c.open(T0 + 2 * S + 20, 501, "/etc/shadow")              # Warning: never excepted
    c.close()
    c = Cap(attacks)
    c.spawn(T0, 1, 400, "/bin/sh")
    c.spawn(T0 + S, 400, 600, "/usr/bin/dpkg")               # the attack looks like dpkg did
    c.open(T0 + S + 10, 600, "/etc/dpkg.conf", W)
    c.spawn(T0 + 2 * S, 400, 601, "/usr/bin/tee")
    c.open(T0 + 2 * S + 10, 601, "/etc/cron.d/evil", W)
    c.close()
    return benign, attacks


def test_suggest_writes_proven_exceptions(tmp_path: Path, capsys) -> None:
    benign, attacks = _captures(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    conf = tmp_path / "falconet.yaml"
    conf.write_text("{}\n")
    out = tmp_path / "learned.yaml"
    rc = main(["learn", "suggest", "-c", str(conf), "-r", str(rules), "--capture", str(benign),
               "--attacks", str(attacks), "--output", str(out), "--json",
               "--state-dir", str(tmp_path / "state")])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0, report
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    # apt's write is excepted; dpkg's identical-to-an-attack evidence is dropped and reported
    assert [(e["rule"], e["values"]["proc.exepath"], e["suppressed"])
            for e in report["exceptions"]] == [("Test write below etc", "/usr/bin/apt", 1)]
    assert [(d["values"]["proc.exepath"], d["reason"]) for d in report["dropped"]] == [
        ("/usr/bin/dpkg", "matches an alert of the attack capture")]
    assert report["attack_alerts_baseline"] == report["attack_alerts_with_exceptions"] == 2
    assert report["learning_alerts_excepted_before"] == 1
    assert report["learning_alerts_excepted_after"] == 0
    assert report["warning_or_above_not_excepted"] == {"Test shadow read": 1}
    # Falco's format: the rule, its exceptions, override append; a comment per value
    text = out.read_text()
    assert "# suppressed 1 alert(s) on the learning data" in text
    [item] = yaml.safe_load(text)
    assert item["rule"] == "Test write below etc"
    assert item["override"] == {"exceptions": "append"}
    [exc] = item["exceptions"]
    assert exc["fields"] == ["proc.exepath", "proc.pname", "fd.name"]
    assert exc["comps"] == ["=", "=", "="]
    assert exc["values"] == [["/usr/bin/apt", "sh", "/etc/apt.conf"]]


def test_suggest_errors_are_clear(tmp_path: Path, capsys) -> None:
    rc = main(["learn", "suggest", "--capture", str(tmp_path / "nope.fcap"), "--attacks",
               str(tmp_path / "nope2.fcap"), "--output", str(tmp_path / "o.yaml"),
               "--state-dir", str(tmp_path / "s")])
    assert rc == 1
    assert "nope.fcap: no such capture file" in capsys.readouterr().err
    assert not (tmp_path / "o.yaml").exists()


def test_an_alert_of_a_container_without_a_known_image_is_never_excepted() -> None:
    """A plain runc container has no image: an exception could only name its process and parent,
    which every such container shares (the default suite's package-manager attack was hidden
    this way when the attack capture's parent name differed), so it is dropped and reported."""
    from types import SimpleNamespace

    from falconet.priorities import Priority
    from falconet_learning import suggest as sg

    alert = SimpleNamespace(output_fields={"container.id": "253c6d6f6b38", "proc.pname": "runc"},
                            lineage=[{"exepath": "/usr/bin/dpkg", "name": "dpkg"},
                                     {"name": "runc"}])
    ev = sg.evidence(alert)
    cands, _ = sg.candidates_from([("Package Manager Run in Container", Priority.NOTICE, ev,
                                    "sample", 1)], Priority.WARNING)
    [c] = cands
    assert c.dropped == sg.NO_IMAGE_REASON and c not in sg.Suggestion(cands).kept
    # with a known image the same evidence is narrowed to it and kept
    alert.output_fields["container.image.repository"] = "docker.io/library/debian"
    [c2], _ = sg.candidates_from([("Package Manager Run in Container", Priority.NOTICE,
                                   sg.evidence(alert), "sample", 1)], Priority.WARNING)
    assert not c2.dropped and ("container.image.repository", "docker.io/library/debian") in c2.values
