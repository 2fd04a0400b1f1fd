"""fd.cip.name / fd.sip.name / fd.lip.name / fd.rip.name: names of rule conditions resolved in the
background (falconet.state.dns), compared as Falco's ``compare_domain`` does.

Fast tests use a fake lookup; the real C-library resolver is exercised through the hosts file,
and the upstream stable rule "Contact K8S API Server From Container" is matched through the real
engine registry (core fields + container plugin) and the real state parser.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from conftest import FALCO_RULES, need
from falconet.events import Event
from falconet.fields.core_fields import core_field_defs
from falconet.fields.registry import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.rules import load_rules, load_rules_text
from falconet.state.dns import DomainResolver, NameNotFound, system_resolve
from falconet.state.tables import FdInfo, ThreadInfo

K8S = "kubernetes.default.svc.cluster.local"


class FakeDNS:
    """A lookup table; ``errors`` holds names whose lookup fails (temporary failure)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.errors: set[str] = set()
        self.calls: list[str] = []

    def __call__(self, name: str) -> Iterable[str]:
        self.calls.append(name)
        if name in self.errors:
            raise OSError(f"temporary failure resolving {name}")
        if name not in self.table:
            raise NameNotFound(name)
        return self.table[name]


def engine(table: dict[str, list[str]], **kw: Any) -> tuple[DomainResolver, FieldRegistry, FakeDNS]:
    fake = FakeDNS(table)
    dns = DomainResolver(kw.pop("metrics", None), resolve=fake, autostart=False, **kw)
    reg = FieldRegistry()
    reg.register_all(core_field_defs(dns=dns, hostname="h"))
    return dns, reg, fake


def rules(reg: FieldRegistry, *conds: str, output: str = "name=%fd.sip.name") -> Any:
    text = "".join(f"- rule: r{i}\n  desc: d\n  condition: '{c}'\n  output: '{output}'\n"
                   f"  priority: warning\n" for i, c in enumerate(conds))
    res = load_rules_text(text, reg, append_output=[], rule_matching="all")
    assert res.ok, [str(e) for e in res.errors]
    return res.ruleset


def connect(dip: str, sip: str = "10.1.0.5", *, typechar: str = "4", server: bool = False) -> Event:
    e = Event("syscall", "connect", 1, 7, 7, {}, 0)
    e.thread = ThreadInfo(tid=7, pid=7)
    e.fdinfo = FdInfo(3, typechar, f"{sip}:40000->{dip}:443", sip=sip, sport=40000, dip=dip,
                      dport=443, is_server=server, connected=True)
    return e


def fired(rs: Any, evt: Event) -> list[str]:
    evt.cache.clear()
    return sorted(a.rule for a in rs.match(evt))


# ------------------------------------------------------------------------------ semantics
def test_equal_is_true_for_any_resolved_address_and_only_once_resolved() -> None:
    dns, reg, _ = engine({"api.example": ["10.0.0.1", "10.0.0.2"]})
    rs = rules(reg, 'evt.type=connect and fd.sip.name = "api.example"')
    assert set(dns.entries) == {"api.example"}          # collected at load time
    assert fired(rs, connect("10.0.0.2")) == []           # not resolved yet: no match, no wait
    dns.refresh_due()
    assert fired(rs, connect("10.0.0.1")) == ["r0"]
    assert fired(rs, connect("10.0.0.2")) == ["r0"]
    assert fired(rs, connect("10.0.0.3")) == []
    # names compare case-insensitively, without the root dot
    rs2 = rules(reg, 'fd.sip.name = "API.Example."')
    assert fired(rs2, connect("10.0.0.1")) == ["r0"]


def test_not_equal_and_in_and_missing_values() -> None:
    dns, reg, _ = engine({"a.example": ["10.0.0.1"], "b.example": ["10.0.0.2"]})
    rs = rules(reg, 'evt.type=connect and fd.sip.name != "a.example"',
               'evt.type=connect and fd.sip.name in (a.example, b.example, c.example)')
    dns.refresh_due()
    assert fired(rs, connect("10.0.0.1")) == ["r1"]
    assert fired(rs, connect("10.0.0.2")) == ["r0", "r1"]
    assert fired(rs, connect("10.0.0.9")) == ["r0"]
    # not an IP socket: no value, so even != is false (Falco's compare_domain)
    unix = connect("10.0.0.9")
    unix.fdinfo = FdInfo(3, "u", "/run/x.sock")
    assert fired(rs, unix) == []
    nofd = connect("10.0.0.9")
    nofd.fdinfo = None
    assert fired(rs, nofd) == []


def test_ipv6_and_ipv4_mapped_addresses_from_the_real_resolver_shape() -> None:
    dns, reg, _ = engine({"v6.example": ["fd00::1", "fe80::1%eth0"]})
    rs = rules(reg, 'fd.sip.name = "v6.example"')
    dns.refresh_due()
    assert fired(rs, connect("fd00::1", "fd00::2", typechar="6")) == ["r0"]
    assert fired(rs, connect("fe80::1", "fd00::2", typechar="6")) == ["r0"]   # scope dropped


def test_client_local_and_remote_sides() -> None:
    dns, reg, _ = engine({"client.example": ["10.1.0.5"], "server.example": ["10.0.0.1"]})
    rs = rules(reg, 'fd.cip.name = "client.example"', 'fd.lip.name = "client.example"',
               'fd.rip.name = "server.example"', 'fd.sip.name = "server.example"')
    dns.refresh_due()
    assert fired(rs, connect("10.0.0.1")) == ["r0", "r1", "r2", "r3"]
    # the accepting side: local is the server address, remote the client
    acc = connect("10.0.0.1", server=True)
    rs2 = rules(reg, 'fd.lip.name = "server.example"', 'fd.rip.name = "client.example"')
    assert fired(rs2, acc) == ["r0", "r1"]


def test_extraction_gives_the_smallest_tracked_name_and_other_operators_use_it() -> None:
    dns, reg, _ = engine({"b.example": ["10.0.0.1"], "a.example": ["10.0.0.1"]})
    rs = rules(reg, 'fd.sip.name in (b.example, a.example) and fd.sip.name startswith "a."',
               'fd.sip.name exists', output="name=%fd.sip.name")
    e = connect("10.0.0.1")
    assert reg.resolve("fd.sip.name").extract(e) is None      # nothing resolved: missing
    dns.refresh_due()
    assert reg.resolve("fd.sip.name").extract(e) == "a.example"
    assert reg.resolve("fd.cip.name").extract(e) is None      # 10.1.0.5 is no tracked name's
    e.cache.clear()
    alerts = rs.match(e)
    assert sorted(a.rule for a in alerts) == ["r0", "r1"]
    assert alerts[0].output == "name=a.example"


def test_unsupported_shapes_fall_back_to_the_extracted_name() -> None:
    # glob/contains/transformers compare the extracted name, like Falco's compare on a value
    dns, reg, _ = engine({"api.example": ["10.0.0.1"]})
    rs = rules(reg, 'fd.sip.name = "api.example"', 'fd.sip.name glob "api.*"',
               'toupper(fd.sip.name) = "API.EXAMPLE"')
    dns.refresh_due()
    assert fired(rs, connect("10.0.0.1")) == ["r0", "r1", "r2"]


# ------------------------------------------------------------------------------ refresh
def test_refresh_backoff_failures_and_metrics() -> None:
    m = EngineMetrics()
    dns, _, fake = engine({"api.example": ["10.0.0.1"]}, metrics=m, refresh_seconds=10,
                          max_refresh_seconds=40, retry_seconds=1)
    e = dns.register("api.example")
    t = 1000.0
    assert dns.refresh_due(t) == 10
    assert e.addrs == {"10.0.0.1"} and e.state == "hit"
    # the same answer: the interval doubles up to the bound
    for want in (20, 40, 40):
        t = e.due
        dns.refresh_due(t)
        assert e.interval == want
    # a temporary failure keeps the addresses, retries soon, then backs off
    fake.errors.add("api.example")
    t = e.due
    dns.refresh_due(t)
    assert e.state == "error" and e.addrs == {"10.0.0.1"} and e.interval == 1
    t = e.due
    dns.refresh_due(t)
    assert e.interval == 2
    # a changed answer: new addresses at once, base interval again
    fake.errors.clear()
    fake.table["api.example"] = ["10.0.0.7"]
    t = e.due
    dns.refresh_due(t)
    assert e.addrs == {"10.0.0.7"} and e.interval == 10 and dns.name_of("10.0.0.7") == "api.example"
    assert dns.name_of("10.0.0.1") is None
    # the name disappears: no address (a "miss"), not an error
    del fake.table["api.example"]
    t = e.due
    dns.refresh_due(t)
    assert e.addrs == frozenset() and e.state == "miss"
    assert m.enrichment[("dns", "hit")] == 5
    assert m.enrichment[("dns", "error")] == 2
    assert m.enrichment[("dns", "miss")] == 1
    assert m.gauges["dns_names"]() == {"tracked": 1.0, "resolved": 0.0}
    # nothing due: no lookup
    n = len(fake.calls)
    dns.refresh_due(t + 0.5)
    assert len(fake.calls) == n


def test_thread_resolves_in_the_background_and_never_blocks_matching() -> None:
    gate = threading.Event()

    def slow(name: str) -> list[str]:
        gate.wait(10)
        return ["10.0.0.1"]
    dns = DomainResolver(resolve=slow)            # autostart: the thread starts on register
    reg = FieldRegistry()
    reg.register_all(core_field_defs(dns=dns, hostname="h"))
    try:
        rs = rules(reg, 'fd.sip.name = "api.example"')
        assert dns.running
        t0 = time.perf_counter()
        assert fired(rs, connect("10.0.0.1")) == []       # lookup in flight: no match, no wait
        assert time.perf_counter() - t0 < 0.05
        gate.set()
        assert dns.wait_resolved(5)
        assert fired(rs, connect("10.0.0.1")) == ["r0"]
    finally:
        gate.set()
        dns.stop()
    assert not dns.running


def test_new_names_of_a_reload_are_resolved_promptly() -> None:
    fake = FakeDNS({"a.example": ["10.0.0.1"], "b.example": ["10.0.0.2"]})
    dns = DomainResolver(resolve=fake, refresh_seconds=300, max_refresh_seconds=300)
    try:
        dns.register("a.example")
        assert dns.wait_resolved(5)
        dns.register("b.example")                 # the thread sleeps 300 s: register wakes it
        assert dns.wait_resolved(5)
        assert dns.name_of("10.0.0.2") == "b.example"
    finally:
        dns.stop()


def test_an_answered_name_is_already_in_the_reverse_maps() -> None:
    """``wait_resolved`` (a replay's start) returns once no name is pending: by then every
    answered name must be visible to every check, ``in (a, b)`` and ``%fd.sip.name`` (reverse
    maps) as much as ``= a`` (the entry). Observed from inside the next lookup of the round,
    which is where a waiting replay could start matching."""
    seen: list[tuple[str, str | None, bool]] = []
    fake = FakeDNS({"a.example": ["10.0.0.1"], "b.example": ["10.0.0.2"]})

    def lookup(name: str) -> Iterable[str]:
        if name == "b.example":
            a = dns.entries["a.example"]
            seen.append((a.state, dns.name_of("10.0.0.1"),
                         "a.example" in dns.all_names_by_addr.get("10.0.0.1", ())))
        return fake(name)
    dns = DomainResolver(resolve=lookup, autostart=False)
    dns.register("a.example")
    dns.register("b.example")
    dns.refresh_due()
    assert seen == [("hit", "a.example", True)]


def test_resolver_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        DomainResolver(refresh_seconds=10, max_refresh_seconds=5)
    from falconet.api import PluginConfigError
    from falconet.state.plugin import validate_config
    with pytest.raises(PluginConfigError, match="dns_refresh_seconds"):
        validate_config({"dns_refresh_seconds": 400})
    with pytest.raises(PluginConfigError, match="dns_max_refresh_seconds"):
        validate_config({"dns_max_refresh_seconds": "x"})
    # 0 turns the replay's start-up wait off; other intervals must stay positive
    assert validate_config({"dns_startup_wait_seconds": 0})["dns_startup_wait_seconds"] == 0
    with pytest.raises(PluginConfigError, match=r"dns_startup_wait_seconds: expected a number >= 0"):
        validate_config({"dns_startup_wait_seconds": -1})
    with pytest.raises(PluginConfigError, match="dns_refresh_seconds: expected a positive number"):
        validate_config({"dns_refresh_seconds": 0})


def test_listing_registry_never_resolves() -> None:
    """``falconet fields`` and stand-alone registries: names are collected, never looked up."""
    before = {t.ident for t in threading.enumerate() if t.name == "falconet-dns"}
    reg = FieldRegistry()
    reg.register_all(core_field_defs(hostname="h"))
    rules(reg, 'fd.sip.name = "api.example"')
    after = {t.ident for t in threading.enumerate() if t.name == "falconet-dns"}
    assert after == before


# ------------------------------------------------------------------------------ real resolver
def test_system_resolver_reads_the_hosts_file() -> None:
    addrs = system_resolve("localhost")
    assert "127.0.0.1" in addrs or "::1" in addrs
    if "127.0.0.1" in addrs:
        assert "::ffff:127.0.0.1" in addrs
    with pytest.raises(NameNotFound):
        system_resolve("no-such-name.invalid")


def test_engine_resolver_with_the_real_lookup_matches_localhost() -> None:
    m = EngineMetrics()
    dns = DomainResolver(m)
    reg = FieldRegistry()
    reg.register_all(core_field_defs(dns=dns, hostname="h"))
    try:
        rs = rules(reg, 'fd.sip.name = "localhost"', 'fd.sip.name = "no-such-name.invalid"')
        assert dns.wait_resolved(10)
        assert fired(rs, connect("127.0.0.1", "127.0.0.1")) == ["r0"]
        assert m.enrichment[("dns", "hit")] == 1 and m.enrichment[("dns", "miss")] == 1
    finally:
        dns.stop()


# ------------------------------------------------------------------------------ Falco stable rule
def test_contact_k8s_api_server_from_container_with_the_real_registry() -> None:
    """The upstream stable rule, unmodified, through the engine's real registry (core fields +
    container plugin) and the real state parser: a container's socket() + connect() to an address
    the engine resolves kubernetes.default.svc.cluster.local to."""
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.app import App
    from falconet.config import load_config
    app = App(load_config(None, []))
    app.load_plugins()
    need("container.id" in app.ctx.fields.fields, "the container plugin is not installed")
    st = app.host.pm.get_plugin("core-state").state
    fake = FakeDNS({K8S: ["10.96.0.1"]})
    st.dns._resolve, st.dns.autostart = fake, False
    res = load_rules([FALCO_RULES], app.ctx.fields, plugin_versions=app.plugin_versions,
                     sources=app.event_sources)
    assert res.ok, [str(e) for e in res.errors]
    assert set(st.dns.entries) == {K8S}
    st.dns.refresh_due()
    cid = "ab" * 32
    st.tables.add(ThreadInfo(tid=4242, pid=4242, comm="curl", exe="curl", exepath="/usr/bin/curl",
                             container_id=cid))
    n = 0

    def evt(etype: str, res_: int, **args: Any) -> Event:
        nonlocal n
        n += 1
        e = Event("syscall", etype, 1_700_000_000_000_000_000 + n, 4242, 4242, args, res_)
        e.num = n
        st.parser(e)
        return e

    evt("socket", 5, fd=5, domain=socket.AF_INET, type=socket.SOCK_STREAM, proto=0)
    hit = evt("connect", 0, fd=5, family=socket.AF_INET, sip="172.17.0.2", sport=51000,
              dip="10.96.0.1", dport=443)
    alerts = [a for a in res.ruleset.match(hit) if a.rule == "Contact K8S API Server From Container"]
    assert len(alerts) == 1, [a.rule for a in res.ruleset.match(hit)]
    assert "connection=172.17.0.2:51000->10.96.0.1:443" in alerts[0].output
    evt("socket", 6, fd=6, domain=socket.AF_INET, type=socket.SOCK_STREAM, proto=0)
    miss = evt("connect", 0, fd=6, family=socket.AF_INET, sip="172.17.0.2", sport=51001,
               dip="10.96.0.2", dport=443)
    assert not [a for a in res.ruleset.match(miss)
                if a.rule == "Contact K8S API Server From Container"]


# ------------------------------------------------------------------------------ core-state wiring
def test_core_state_resolves_from_engine_start_and_a_replay_waits_for_the_answers() -> None:
    from falconet.api import EngineContext
    from falconet.state import plugin as P
    from falconet.state.tables import StateTables
    ctx = EngineContext(hostname="h1", fields=FieldRegistry(), metrics=EngineMetrics(),
                        state=StateTables())
    from falconet.plugin_config import configure_by_hand
    plugin = P.CoreStatePlugin()          # one instance per engine
    configure_by_hand(plugin, "core-state", {"dns_refresh_seconds": 5}, ctx)
    ctx.fields.register_all(plugin.falconet_fields(ctx))
    st = plugin.state
    st.dns._resolve = FakeDNS({"api.example": ["10.0.0.1"]})
    assert st.dns.refresh_seconds == 5
    rs = rules(ctx.fields, 'fd.sip.name = "api.example"')
    assert not st.dns.running                     # loading rules alone resolves nothing
    ctx.extras["falconet.live"] = False
    try:
        plugin.falconet_start(ctx)                # replay: bounded wait for the first answers
        assert st.dns.running and st.dns.entries["api.example"].state == "hit"
        assert fired(rs, connect("10.0.0.1")) == ["r0"]
        assert ctx.metrics.enrichment[("dns", "hit")] == 1
        # a hot reload adds a name: resolved without a restart
        st.dns._resolve.table["new.example"] = ["10.0.0.5"]
        rs2 = rules(ctx.fields, 'fd.sip.name = "new.example"')
        assert st.dns.wait_resolved(5)
        assert fired(rs2, connect("10.0.0.5")) == ["r0"]
    finally:
        plugin.falconet_stop(ctx)
    assert not st.dns.running
