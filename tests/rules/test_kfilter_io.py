"""The kernel filter of I/O events: derived from the rules (sockets only, data needles), the
decision (falconet.kfilter.io_passes), and soundness against the real engine: an I/O event a
rule matches always passes."""

from __future__ import annotations

import pytest
from falconet.events import Event
from falconet.kfilter import FdTracker, IoFilter, io_passes
from kfhelp import Engine, rule

E = Engine()
SOCK = (0o140000 << 4) | 1         # ftype of a socket fd
FILE = (0o100000 << 4) | 1


def io(cond: str, t: str = "write") -> IoFilter | None:
    return E.plan(rule(cond)).io.get(t)


def test_a_rule_on_tcp_data_filters_by_socket_and_needle():
    f = io("evt.type in (write, sendto) and fd.l4proto = tcp and "
           "(evt.buffer contains mining.subscribe or evt.buffer contains mining.authorize)")
    assert f == IoFilter("write", True, (b"mining.a", b"mining.s"))
    # sendto teaches the state a UDP socket's tuple: never dropped for its data
    assert E.plan(rule("evt.type = sendto and fd.l4proto = tcp and evt.buffer contains x")
                  ).io["sendto"] == IoFilter("sendto", True, ())


@pytest.mark.parametrize("cond", [
    "evt.type = write and evt.arg.data contains x",          # rendered text, not the bytes
    "evt.type = write and not evt.buffer contains x",
    "evt.type = write and (evt.buffer contains x or proc.name = y)",
    "evt.type = write and proc.name = y",
])
def test_what_cannot_be_derived_leaves_the_type_unfiltered(cond):
    assert io(cond) is None


def test_a_shorter_needle_covers_longer_ones_and_too_many_needles_mean_any_data():
    f = io("evt.type = write and fd.typechar = 4 and (evt.buffer contains mining. "
           "or evt.buffer contains mining.subscribe)")
    assert f is not None and f.needles == (b"mining.",)
    many = " or ".join(f"evt.buffer contains n{i}" for i in range(5))
    f = io(f"evt.type = write and fd.typechar = 4 and ({many})")
    assert f == IoFilter("write", True, ())
    assert io(f"evt.type = write and ({many})") is None


def test_rules_on_every_type_or_plugins_keep_io_whole():
    assert E.plan(rule("evt.type = write and fd.typechar = 4") + rule("proc.name = x", name="a")
                  ).io == {}
    assert E.plan(rule("evt.type = write and fd.typechar = 4"),
                  unfiltered_types={"write": "p"}).io == {}


def test_the_decision():
    f = IoFilter("write", True, (b"mining.",))
    assert io_passes(f, False, b"mining.subscribe") == "not_socket"
    assert io_passes(f, None, b"mining.subscribe") is None          # unknown fd type passes
    assert io_passes(f, True, b"GET / HTTP/1.1") == "content"
    assert io_passes(f, True, b'{"method": "mining.subscribe"}') is None


def _write(data: bytes, ftype: int, pid: int = 7) -> Event:
    return Event("syscall", "write", 1, pid, pid, {"fd": 5, "size": len(data), "data": data,
                                                   "ftype": ftype}, len(data))


def test_soundness_on_the_real_engine():
    """Every write the compiled rule matches passes the derived filter (the real parser and
    fields; sockets made by real socket events)."""
    text = rule("evt.type = write and fd.l4proto = tcp and evt.rawres > 0 and "
                "(evt.buffer contains mining.subscribe or evt.buffer contains mining.authorize)")
    rs = E.load(text)
    plan = E.plan(text)
    tracker = FdTracker(plan)
    sock = Event("syscall", "socket", 1, 7, 7, {"fd": 5, "domain": 2, "type": 1, "proto": 0}, 5)
    E.parser(sock)
    payloads = [b'{"id":1,"method":"mining.subscribe"}', b"GET /", b"mining.authorize",
                b"x" * 40 + b"mining.subscribe", b""]
    for data in payloads:
        for ftype in (SOCK, FILE, 0):
            e = _write(data, ftype)
            E.parser(e)
            matched = any(r.check(e) for r in rs.rules_for("syscall", "write"))
            verdict = tracker.verdict(_write(data, ftype))
            if matched and ftype != FILE:
                assert verdict is None, (data, ftype)
