"""The rules engine inside the real engine: real field registry (core fields + container plugin),
real state parser, Falco's stable rules, events as the collector produces them."""

from __future__ import annotations

import pytest
from conftest import FALCO_RULES, need
from falconet.events import Event

T0 = 1_739_178_940_000_000_000


@pytest.fixture(scope="module")
def engine():
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.app import App
    from falconet.config import load_config
    from falconet.pipeline import Pipeline
    from falconet.rules import load_rules

    app = App(load_config(None, []), source_name="replay")
    app.load_plugins()
    need("proc.name" in app.ctx.fields.fields and "container.id" in app.ctx.fields.fields,
         "core fields or the container plugin are not installed")
    res = load_rules([FALCO_RULES], app.ctx.fields, plugin_versions=app.plugin_versions,
                     sources=app.event_sources, hostname="node-1",
                     append_output=[{"suggested_output": True}])
    assert res.ok, [str(e) for e in res.errors]
    pipe = Pipeline(res.ruleset, app.parsers, [], app.metrics, state=app.ctx.state)
    return pipe, app


def _exec(pid: int, comm: str, path: str, argv: list[str], ts: int, uid: int = 0) -> Event:
    return Event("syscall", "execve", ts, pid, pid, {
        "filename": path, "argv": argv, "cwd": "/root", "exepath": path, "comm": comm,
        "uid": uid, "gid": 0, "loginuid": 1000, "tty": 0, "sid": pid, "pgid": pid,
        "cap_effective": 0, "exe_ino": 1, "exe_from_memfd": False, "exe_upper_layer": False,
        "cgroup_id": 0}, res=0)


def test_sensitive_file_read_through_the_real_engine(engine) -> None:
    pipe, app = engine
    alerts = []
    alerts += pipe.process(_exec(4100, "sshd", "/usr/sbin/sshd", ["sshd"], T0))
    alerts += pipe.process(Event("syscall", "procfork", T0 + 1, 4100, 4100,
                                 {"child_tid": 4200, "child_pid": 4200, "parent_tid": 4100,
                                  "parent_pid": 4100}))
    alerts += pipe.process(_exec(4200, "bash", "/usr/bin/bash", ["bash", "-i"], T0 + 2))
    alerts += pipe.process(Event("syscall", "procfork", T0 + 3, 4200, 4200,
                                 {"child_tid": 4300, "child_pid": 4300, "parent_tid": 4200,
                                  "parent_pid": 4200}))
    alerts += pipe.process(_exec(4300, "cat", "/usr/bin/cat", ["cat", "/etc/shadow"], T0 + 4))
    assert [a.rule for a in alerts] == []
    ev = Event("syscall", "openat", T0 + 5, 4300, 4300,
               {"fd": 3, "dirfd": -100, "name": "/etc/shadow", "flags": 0, "mode": 0,
                "cgroup_id": 0}, res=3)
    [a] = pipe.process(ev)
    assert a.rule == "Read sensitive file untrusted" and a.hostname == "node-1"
    assert a.output.startswith("Sensitive file opened for reading by non-trusted program | "
                               "file=/etc/shadow")
    assert "process=cat" in a.output and "parent=bash" in a.output
    assert "container_id=host" in a.output
    assert a.output_fields["fd.name"] == "/etc/shadow"
    assert a.output_fields["proc.aname[2]"] == "sshd"
    assert a.output_fields["evt.time"] == T0 + 5
    assert a.lineage and a.lineage[0]["name"] == "cat"
    # a benign file is no alert; the same read by a trusted program neither
    benign = Event("syscall", "openat", T0 + 6, 4300, 4300,
                   {"fd": 4, "dirfd": -100, "name": "/etc/hosts", "flags": 0, "mode": 0,
                    "cgroup_id": 0}, res=4)
    assert pipe.process(benign) == []


NEW_SYNTAX_RULES = """
- list: shell_dirs
  items: [/usr/bin/, /bin/]
- rule: Shell by regex, list modifier and multivalue transformers
  desc: d
  condition: >
    evt.type = execve and proc.exepath regex '(/usr)?/bin/(ba|z|da)sh'
    and proc.exepath startswith oneof shell_dirs
    and concat(proc.name, "@", proc.pname) = "bash@sshd"
    and join("/", (proc.name, user.uid)) = "bash/0"
  output: shell %concat(proc.name, " <- ", proc.pname) (%proc.exepath)
  priority: WARNING
"""


def test_new_syntax_through_the_real_engine(engine, tmp_path) -> None:
    """RE2 ``regex``, ``startswith oneof <list>``, ``concat``/``join`` with the real field
    registry and state parser, as ``falconet run`` loads a rules file."""
    _, app = engine
    from falconet.pipeline import Pipeline
    from falconet.rules import load_rules

    f = tmp_path / "new.yaml"
    f.write_text(NEW_SYNTAX_RULES)
    res = load_rules([f], app.ctx.fields, plugin_versions=app.plugin_versions,
                     sources=app.event_sources, append_output=[])
    assert res.ok, [str(e) for e in res.errors]
    pipe = Pipeline(res.ruleset, app.parsers, [], app.metrics, state=app.ctx.state)
    assert pipe.process(_exec(5100, "sshd", "/usr/sbin/sshd", ["sshd"], T0)) == []
    pipe.process(Event("syscall", "procfork", T0 + 1, 5100, 5100,
                       {"child_tid": 5200, "child_pid": 5200, "parent_tid": 5100,
                        "parent_pid": 5100}))
    [a] = pipe.process(_exec(5200, "bash", "/usr/bin/bash", ["bash"], T0 + 2))
    assert a.output == "shell bash <- sshd (/usr/bin/bash)"
    pipe.process(Event("syscall", "procfork", T0 + 3, 5200, 5200,
                       {"child_tid": 5300, "child_pid": 5300, "parent_tid": 5200,
                        "parent_pid": 5200}))
    # fish is not matched by the regex; bash under bash fails concat(...) = "bash@sshd"
    assert pipe.process(_exec(5300, "fish", "/usr/bin/fish", ["fish"], T0 + 4)) == []
    assert pipe.process(_exec(5300, "bash", "/usr/bin/bash", ["bash"], T0 + 5)) == []
    assert res.ruleset.eval_errors == {}
