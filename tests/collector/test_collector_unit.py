"""Fast tests of the collector's userspace parts: schema, program builder, decoder, BTF, config."""

from __future__ import annotations

import socket
import struct

import pytest
from falconet import syscalls
from falconet.collector import btf, program
from falconet.collector.decoder import HDR, RecordDecoder, parse_sockaddr
from falconet.collector.source import CollectorConfig, EbpfSource, choose_events

ADDR_KEYS = {"family", "sip", "sport", "dip", "dport", "path", "tuple"}


# ------------------------------------------------------------------------------- schema
def test_every_event_is_a_known_syscall_or_process_event():
    for name in syscalls.EVENTS:
        assert name in syscalls.SYSCALL_NUMBERS or name in syscalls.NON_SYSCALL_EVENTS, name
        assert syscalls.is_known_event_type(name)
    assert syscalls.SYSCALL_NUMBERS["openat"] == 257 and syscalls.SYSCALL_NUMBERS["execve"] == 59
    assert len(syscalls.SYSCALL_NUMBERS) > 350
    assert not syscalls.is_known_event_type("opnat")


def test_decoder_table_produces_exactly_the_schema_params():
    """The contract with the state parser: what the decoder fills is what syscalls.py says."""
    for name, schema in syscalls.EVENTS.items():
        if name in syscalls.NON_SYSCALL_EVENTS:
            continue
        spec = program.SPECS[name]
        if spec.kind in ("clone", "exec"):
            continue            # special decoders, checked on real records below
        keys = {"cgroup_id", "cpu"}
        for item in spec.decode.split():
            key, _, src = item.partition("=")
            if key not in program.LOCAL_KEYS:      # folded into sip/sport by the decoder
                keys |= ADDR_KEYS if src in ("dst", "peer", "local") else {key}
        assert keys == set(schema.param_names), name


def test_base_set_and_fd_partners_follow_the_rules():
    sel = syscalls.selected_events({"openat"})
    assert {"openat", "close", "execve", "clone", "procfork", "procexit", "chdir"} <= sel
    assert "connect" not in sel and "socket" not in sel
    net = syscalls.selected_events({"connect"})
    assert {"socket", "bind", "close"} <= net
    assert syscalls.selected_events(None) == frozenset(syscalls.EVENTS)
    assert syscalls.unsupported({"openat", "read", "container"}) == {"container"}


def test_choose_events_uses_ruleset_types_and_config():
    class RS:
        def event_types(self, source):
            assert source == "syscall"
            return {"ptrace"}
    chosen = choose_events(ruleset=RS())
    assert "ptrace" in chosen and "openat" not in chosen
    assert "unlink" in choose_events(ruleset=RS(), cfg=CollectorConfig(syscalls=["unlink"]))
    assert choose_events(ruleset=RS(), cfg=CollectorConfig(all_syscalls=True)) == frozenset(
        syscalls.EVENTS)


# ------------------------------------------------------------------------------- program
def test_program_has_handlers_only_for_selected_syscalls():
    built = program.build(syscalls.selected_events({"openat"}), self_tgid=1234, offsets={})
    assert "int exit_openat(void *ctx)" in built.text
    assert "exit_connect" not in built.text and "exit_unlinkat" not in built.text
    nrs = {nr for nr, _fn in built.dispatch}
    assert syscalls.SYSCALL_NUMBERS["openat"] in nrs
    assert syscalls.SYSCALL_NUMBERS["connect"] not in nrs
    assert "-DSELF_TGID=1234" in built.cflags and "-DWANT_PROCFORK" in built.cflags


def test_open_handlers_share_one_kernel_filter_tail_program():
    """The opens' kernel-filter decision is one tail program (falconet_kf_open, verified once),
    loaded only when an open handler calls it; without the walk's offsets, no path walk."""
    built = program.build(syscalls.selected_events({"openat"}), self_tgid=1, offsets={})
    assert built.tails == [("kf_progs", 0, "falconet_kf_open")] and not built.resolve_paths
    assert program.build(syscalls.selected_events({"execve"}), self_tgid=1, offsets={}).tails == []


def test_program_rejects_sizes_that_are_not_powers_of_two():
    with pytest.raises(ValueError, match="ring_buffer_pages must be a power of two"):
        program.build({"openat"}, self_tgid=1, offsets={}, ring_buffer_pages=3)


# ------------------------------------------------------------------------------- decoder
def _record(name: str, res: int, words: tuple[int, ...], strings: list[bytes]) -> bytes:
    lens = [len(s) for s in strings] + [0] * (3 - len(strings))
    hdr = HDR.pack(1_000, 42, res, 100, 99, program.EVENT_IDS[name], *lens, *words, 1)
    return hdr + b"".join(strings)


def test_decoder_reads_packed_strings_and_signed_words():
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=0)
    raw = _record("renameat", 0, ((-100) & (2**64 - 1), 0, 5, 0, 0, 0),
                  [b"old/name\0", b"/new/\xffname\0"])
    e = dec.decode(memoryview(raw), 0)
    assert (e.type, e.tid, e.pid, e.res) == ("renameat", 100, 99, 0)
    assert e.args["olddirfd"] == -100 and e.args["newdirfd"] == 5
    assert e.args["oldpath"] == "old/name"
    # undecodable bytes kept as surrogate escapes, exactly as /proc is read (not lost)
    assert e.args["newpath"] == "/new/\udcffname"
    assert e.args["newpath"].encode("utf-8", "surrogateescape") == b"/new/\xffname"
    assert e.args["cgroup_id"] == 42
    assert e.ts == 1_000 + dec.boot_offset


def test_decoder_sets_fd_from_res_for_fd_returning_calls():
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=0)
    raw = _record("openat", 7, ((-100) & (2**64 - 1), 0, 0o2101, 0o644, 0, 0), [b"/etc/x\0"])
    e = dec.decode(memoryview(raw), 0)
    assert e.args == {"fd": 7, "dirfd": -100, "name": "/etc/x", "flags": 0o2101, "mode": 0o644,
                      "ftype": 0, "cgroup_id": 42, "cpu": 1}


@pytest.mark.parametrize("name, res, words, strings", [
    ("openat", 7, ((-100) & (2**64 - 1), 0, 0o2101, 0o644, 0, 0), [b"/etc/\xffx\0"]),
    ("openat", -2, (3, 0, 0, 0, 0, 0), [b"\0"]),
    ("open", 3, (0, 0o101, 0o600, 0, 0, 0), [b"rel/path\0"]),
    ("close", -9, ((-1) & (2**64 - 1), 0, 0, 0, 0, 0), []),
])
def test_hand_written_hot_decoders_match_the_spec_driven_decoder(name, res, words, strings):
    """open/openat/close have hand-written decoders for speed; they must give exactly what the
    generic, SPECS-driven decoder gives (same values, same key order, same Event fields)."""
    from falconet.collector.decoder import _make_generic  # noqa: PLC0415
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=0)
    raw = memoryview(b"\0" * 8 + _record(name, res, words, strings))
    generic = _make_generic(name, program.SPECS[name], dec.boot_offset, hot=False)
    fast, slow = dec.decode(raw, 8), generic(raw, 8)
    assert dec.table[program.EVENT_IDS[name]] is not generic
    assert list(fast.args.items()) == list(slow.args.items())
    assert (fast.source, fast.type, fast.ts, fast.tid, fast.pid, fast.res) == \
        (slow.source, slow.type, slow.ts, slow.tid, slow.pid, slow.res)


def test_decoder_exec_record():
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=4096)
    words = [0] * program.N_EXEC_WORDS
    words[0:3] = [1000, 1001, 1002]
    words[7] = 4294967295
    words[14] = 1
    head = HDR.pack(5, 42, 0, 999999, 999999, program.EVENT_IDS["execve"], 8, 12, 8,
                    0, 0, 0, 0, 0, 0, 1)
    raw = (head + struct.pack(f"<{program.N_EXEC_WORDS}Q", *words) + b"ls\0".ljust(16, b"\0")
           + b"/bin/ls\0" + b"ls\0-la\0/tmp\0" + b"A=1\0B=2\0")
    e = dec.decode(memoryview(raw), 0)
    assert e.args["filename"] == "/bin/ls" and e.args["argv"] == ["ls", "-la", "/tmp"]
    assert e.args["env"] == ["A=1", "B=2"] and e.args["comm"] == "ls"
    assert (e.args["uid"], e.args["gid"], e.args["euid"]) == (1000, 1001, 1002)
    assert e.args["loginuid"] == 4294967295 and e.args["ppid"] == 1
    assert e.args["exepath"] == "/bin/ls"      # pid 999999 has no /proc entry: falls back


def test_parse_sockaddr_families():
    v4 = struct.pack("<H", 2) + struct.pack(">H", 8080) + socket.inet_aton("10.1.2.3") + b"\0" * 8
    assert parse_sockaddr(v4) == (2, "10.1.2.3", 8080, "")
    v6 = (struct.pack("<H", 10) + struct.pack(">H", 443) + b"\0" * 4
          + socket.inet_pton(socket.AF_INET6, "::1") + b"\0" * 4)
    assert parse_sockaddr(v6) == (10, "::1", 443, "")
    assert parse_sockaddr(struct.pack("<H", 1) + b"/run/x.sock\0") == (1, "", 0, "/run/x.sock")
    assert parse_sockaddr(struct.pack("<H", 1) + b"\0abstract\0") == (1, "", 0, "@abstract")
    assert parse_sockaddr(b"") == (0, "", 0, "")


# ------------------------------------------------------------------------------- BTF
def test_btf_rejects_garbage():
    with pytest.raises(btf.BTFError, match="magic"):
        btf.BTF(b"\0" * 64)


def test_btf_resolves_kernel_offsets():
    from pathlib import Path  # noqa: PLC0415

    from conftest import need  # noqa: PLC0415
    need(Path(btf.VMLINUX).exists(), "the kernel has no BTF (/sys/kernel/btf/vmlinux)")
    b = btf.BTF.load()
    offs = btf.kernel_offsets(b)
    for k in ("OFF_TASK_TGID", "OFF_TASK_CRED", "OFF_CRED_CAP_EFF", "OFF_MM_ARG_START",
              "OFF_PID_NUMBERS", "SIZE_UPID"):
        assert k in offs, k
    assert offs["OFF_TASK_TGID"] == offs["OFF_TASK_PID"] + 4     # adjacent pid_t fields
    assert b.struct_size("upid") == offs["SIZE_UPID"] > 0
    with pytest.raises(btf.BTFError):
        b.offset("task_struct", "no_such_member")


# ------------------------------------------------------------------------------- config/plugin
def test_config_errors_name_the_key():
    with pytest.raises(ValueError) as e:
        CollectorConfig.from_dict({"ring_buffer_pages": 3, "bogus": 1, "syscalls": ["nope"]})
    msg = str(e.value)
    assert "collector.ring_buffer_pages: expected a power of two" in msg
    assert "unknown key 'bogus'" in msg and "nope" in msg
    c = CollectorConfig.from_dict({"ring_buffer_pages": 64, "drop_alert_priority": "debug"})
    assert c.ring_buffer_pages == 64 and c.drop_alert_priority.name == "DEBUG"


def test_plugin_contributes_the_ebpf_source():
    from falconet.api import PluginConfigError  # noqa: PLC0415
    from falconet.collector import plugin  # noqa: PLC0415
    from falconet.plugin_config import configure_by_hand  # noqa: PLC0415

    class Ctx:
        config = {"collector": {"ring_buffer_pages": 512}}
    p = plugin.EbpfPlugin()          # one instance per engine
    configure_by_hand(p, "ebpf", {}, Ctx())
    (src,) = p.falconet_event_sources(Ctx())
    assert isinstance(src, EbpfSource)
    assert (src.name, src.source, src.live) == ("ebpf", "syscall", True)
    assert src.config.ring_buffer_pages == 512
    Ctx.config = {"collector": {"path_len": 100}}
    with pytest.raises(PluginConfigError, match="path_len"):
        configure_by_hand(p, "ebpf", {}, Ctx())
    Ctx.config = {}
    configure_by_hand(p, "ebpf", {}, Ctx())


# ------------------------------------------------------------------------------- errors
def test_missing_prerequisites_say_what_and_how(monkeypatch):
    from falconet.collector import bccloader  # noqa: PLC0415
    monkeypatch.setattr(bccloader.os, "geteuid", lambda: 1000)
    with pytest.raises(bccloader.CollectorUnavailable, match="needs root"):
        bccloader.check_prerequisites()
    monkeypatch.setattr(bccloader.os, "geteuid", lambda: 0)
    monkeypatch.setattr(bccloader.platform, "release", lambda: "0.0.0-no-such-kernel")
    with pytest.raises(bccloader.CollectorUnavailable) as e:
        bccloader.check_prerequisites()
    assert "kernel headers for 0.0.0-no-such-kernel are missing" in str(e.value)
    assert "make run" in str(e.value)


# ------------------------------------------------------------------------------- ring buffer
def test_ring_pending_walks_committed_records_skips_discarded_stops_at_busy():
    """The consumer walk on the kernel's ring layout (consumer page, producer page, data), laid
    out in a memfd: committed records come back in order, a discarded one is skipped, a busy
    (still being written) one stops the walk, and release() publishes the position."""
    import mmap  # noqa: PLC0415
    import os  # noqa: PLC0415

    from falconet.collector.ringbuf import BUSY, DISCARD, RingBuffer  # noqa: PLC0415
    page, size = mmap.PAGESIZE, 1 << 14
    fd = os.memfd_create("ring-test")
    try:
        os.ftruncate(fd, 2 * page + 2 * size)
        recs = [(5, 0), (12, DISCARD), (16, 0), (3, BUSY), (8, 0)]
        pos, starts = 0, []
        for length, flag in recs:
            os.pwrite(fd, struct.pack("<II", length | flag, 0) + b"r" * length, 2 * page + pos)
            starts.append(pos)
            pos += (8 + length + 7) & ~7
        os.pwrite(fd, struct.pack("<Q", pos), page)                  # producer position
        ring = RingBuffer(fd, size)
        try:
            offsets, cons = ring.pending()
            assert offsets == [page + starts[0] + 8, page + starts[2] + 8]
            assert cons == starts[3]                                  # stopped at the busy one
            assert ring.available() == pos                            # nothing released yet
            ring.release(cons)
            assert ring.available() == pos - cons
            assert ring.pending(max_records=1)[0] == []               # still busy
        finally:
            ring.close()
    finally:
        os.close(fd)


def _real_ruleset(text: str):
    from falconet.app import App
    from falconet.config import load_config
    from falconet.rules import load_rules_text
    app = App(load_config(None, []))
    app.load_plugins()
    res = load_rules_text(text, app.ctx.fields, plugin_versions=app.plugin_versions,
                          sources=app.event_sources)
    assert res.ok, [str(e) for e in res.errors]
    return res.ruleset


_ENV_RULE = """- rule: r
  desc: d
  condition: {cond}
  output: {out}
  priority: INFO
"""


@pytest.mark.parametrize("cond, out, reads", [
    # the incubating rule "Program run with disallowed http proxy env" reads it in its condition
    ("evt.type = execve and proc.env icontains HTTP_PROXY", "o", True),
    ("evt.type = execve and proc.env[HTTP_PROXY] exists", "o", True),
    ("evt.type = execve and proc.name = curl", "env=%proc.env", True),
    ("evt.type = execve and proc.name = curl", "o %proc.cmdline", False),
])
def test_env_is_copied_only_when_a_rule_reads_proc_env(cond: str, out: str, reads: bool) -> None:
    from falconet.collector.source import rules_read_env
    rs = _real_ruleset(_ENV_RULE.format(cond=cond, out=out))
    assert rules_read_env(rs) is reads


# ------------------------------------------------------------------------------- evt.cpu
@pytest.mark.parametrize("resolve", [False, True])
def test_every_decoder_reads_the_cpu_from_the_header(resolve):
    """The header's last field (struct hdr_t ``cpu``) reaches ``args["cpu"]`` whatever decoder
    a type has (hot, generic, clone, exec, procfork/procexit, resolved opens, io_uring)."""
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=4096, resolve_paths=resolve)
    tail = b"\0" * (program.EXEC_S0_OFF + 64)
    iou_ids = set(program.IOU_IDS.values())
    seen = set()
    for eid, fn in dec.table.items():
        for cpu in (0, 3, 255):
            raw = HDR.pack(1_000, 42, -1, 99_999_999, 99_999_999, eid, 0, 0, 0, *([0] * 6), cpu)
            e = fn(memoryview(raw + tail), 0)
            assert e.args["cpu"] == cpu, (e.type, cpu)
            assert e.args["cgroup_id"] == 42 and e.pid == 99_999_999, e.type
        seen.add((e.type, eid in iou_ids))
    assert {("openat", False), ("close", False), ("execve", False), ("clone", False),
            ("procfork", False), ("procexit", False), ("renameat", False),
            ("openat", True)} <= seen


class _Counters:
    """The kernel counter array's sums, as the test sets them."""

    def __init__(self) -> None:
        self.vals = [0] * program.N_COUNTERS

    def sums(self) -> list[int]:
        return list(self.vals)


def test_each_kernel_loss_is_one_drop_with_its_cause() -> None:
    """An exec whose enter the args map could not hold is lost at its exit: counted once (as
    kernel_args_map_full, not also as kernel_no_enter); exits without an enter that no full map
    explains are kernel_no_enter; losses before a ring write have their own causes; all of them
    are in kernel_drops and the summary's drops, and unread values are not drops."""
    from falconet.collector.source import EbpfSource  # noqa: PLC0415
    from falconet.metrics import EngineMetrics  # noqa: PLC0415
    src = EbpfSource()
    m = EngineMetrics()
    c = _Counters()
    src.bpf, src.counters, src._metrics = True, c, m
    v = c.vals
    v[program.C_EVENTS] = 100
    v[program.C_DROP_BASE + 3] = 7                 # open: ring full
    v[program.C_ARGS_FULL] = 2                     # two enters did not fit ...
    src.poll_stats()                               # ... their exits have not happened yet
    assert m.kernel_drops == 7 and "kernel_args_map_full" not in m.drops
    v[program.C_NO_ENTER] = 3                      # their two exits, and one exec in flight
    v[program.C_LOST_SCRATCH] = 1
    v[program.C_LOST_REGS] = 4
    v[program.C_LOST_IOU] = 5
    v[program.C_USER_READ] = 6
    v[program.C_EXEC_FN_FULL] = 8
    src.poll_stats()
    assert dict(m.drops) == {"kernel_open": 7, "kernel_args_map_full": 2,
                             "kernel_no_enter": 1, "kernel_scratch_unavailable": 1,
                             "kernel_regs_unreadable": 4, "kernel_io_uring_lost": 5}
    assert m.kernel_drops == sum(m.drops.values()) == src.stats.drops == 20
    assert m.kernel_events == 100 + 13                 # the pre-ring losses never reached C_EVENTS
    assert dict(m.kernel_degraded) == {"user_read": 6, "exec_filename": 8}
    v[program.C_NO_ENTER] = 4                      # a later exit without enter: nothing explains it
    src.poll_stats()
    assert m.drops["kernel_no_enter"] == 2 and m.drops["kernel_args_map_full"] == 2
