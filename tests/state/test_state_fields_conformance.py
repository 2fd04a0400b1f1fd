"""Falco fields that need no new kernel data (issue 17): values as libsinsp defines them."""

from __future__ import annotations

from falconet.rules import load_rules_text
from state_helpers import SEC, MiniEngine


def _engine() -> MiniEngine:
    m = MiniEngine()
    m.add(tid=1, ptid=0, comm="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd",
          cwd="/", sid=1, vpid=1)
    m.add(tid=150, ptid=1, comm="bash", exe="-bash", exepath="/usr/bin/bash", cwd="/dev/shm",
          sid=150, vpid=150, start_ts=m.ts - 60 * SEC)
    return m


def test_evt_count_is_io_and_syscall_type() -> None:
    m = _engine()
    o = m.evt("openat", 150, 3, fd=3, dirfd=-100, name="/etc/hosts", flags=0)
    assert m.field(o, "evt.count") == 1
    # libsinsp: evt.is_io* are false (not missing) for events that do not read or write an fd
    assert (m.field(o, "evt.is_io"), m.field(o, "evt.is_io_read"),
            m.field(o, "evt.is_io_write")) == (False, False, False)
    assert m.field(o, "syscall.type") == "openat"
    assert m.field(o, "evt.plugininfo") is None          # not a plugin event
    w = m.evt("write", 150, 5, fd=3, size=5)
    assert (m.field(w, "evt.is_io"), m.field(w, "evt.is_io_read"),
            m.field(w, "evt.is_io_write")) == (True, False, True)
    r = m.evt("recvfrom", 150, 5, fd=3, size=5)
    assert (m.field(r, "evt.is_io"), m.field(r, "evt.is_io_read")) == (True, True)
    x = m.evt("procexit", 150, None, status=0)
    assert m.field(x, "syscall.type") is None            # internal event, not a system call
    assert m.field(x, "evt.type") == "procexit"


def test_proc_pid_ts_and_cwd_format() -> None:
    m = _engine()
    o = m.evt("openat", 150, 3, fd=3, dirfd=-100, name="/etc/hosts", flags=0)
    assert m.field(o, "proc.pid.ts") == m.tables.get(150).start_ts
    # Falco: proc.cwd ends with '/' ("/dev/shm/"); the root stays "/"
    assert m.field(o, "proc.cwd") == "/dev/shm/"
    s = m.evt("openat", 1, 3, fd=3, dirfd=-100, name="/etc/hosts", flags=0)
    assert m.field(s, "proc.cwd") == "/"


def test_new_fields_load_in_rules() -> None:
    res = load_rules_text("""
- rule: r
  desc: d
  condition: evt.type = openat and evt.is_io = false and evt.count = 1 and syscall.type = openat
             and proc.pid.ts > 0 and not evt.plugininfo exists and not evt.is_io_read = true
             and not evt.is_io_write = true
  output: o %proc.pid.ts %syscall.type
  priority: INFO
""", MiniEngine().registry)
    assert res.ok, [str(e) for e in res.errors]
