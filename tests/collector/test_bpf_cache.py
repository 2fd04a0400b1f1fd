"""The compiled-BPF cache (``falconet.collector.bpfcache``): the key, the entry format and its
checks, the safe directory; live (root): a second start loads the cached program without
compiling and sees the same events, a corrupt entry falls back to compiling, a changed program
text misses."""

from __future__ import annotations

import errno
import logging
import os
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import need_bcc
from falconet.collector import bpfcache, bpfsyscall
from falconet.collector.bpfcache import SENTINEL, CacheError, Entry

KEY_ARGS = {"btf": "b", "release": "r", "kversion": "v", "bcc": "0.26", "falconet": "1.0",
            "toolchain": ["/usr/src/linux-headers-6.1", ["/usr/lib/libbcc.so.0", 1, 2]]}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


EXIT = _insn(0x95)


def _ld_imm64(dst: int, value: int, src: int = 0) -> bytes:
    return (_insn(0x18, dst, src, imm=value & 0xFFFFFFFF)
            + _insn(0, imm=(value >> 32) & 0xFFFFFFFF))


# ------------------------------------------------------------------------------- the key
def test_key_is_stable_and_changes_with_every_input():
    base = bpfcache.cache_key("int f;", ["-DA=1"], **KEY_ARGS)
    assert base == bpfcache.cache_key("int f;", ["-DA=1"], **KEY_ARGS)
    assert len(base) == 64
    variants = [bpfcache.cache_key("int g;", ["-DA=1"], **KEY_ARGS),
                bpfcache.cache_key("int f;", ["-DA=2"], **KEY_ARGS)]
    for k in KEY_ARGS:
        variants.append(bpfcache.cache_key("int f;", ["-DA=1"], **{**KEY_ARGS, k: "other"}))
    assert base not in variants and len(set(variants)) == len(variants)


def test_toolchain_id_names_the_headers_and_libbcc():
    tc = bpfcache.toolchain_id()
    assert isinstance(tc[0], str)
    assert all(len(item) == 3 for item in tc[1:])


def test_key_ignores_the_engine_pid():
    """SELF_TGID is compiled as a sentinel and patched at load: two starts share one entry."""
    a, tgid_a = bpfcache.compile_cflags(["-DSELF_TGID=123", "-DX=1"])
    b, tgid_b = bpfcache.compile_cflags(["-DSELF_TGID=456", "-DX=1"])
    assert a == b == [f"-DSELF_TGID={SENTINEL}", "-DX=1"]
    assert (tgid_a, tgid_b) == (123, 456)
    assert bpfcache.compile_cflags(["-DX=1"]) == (["-DX=1"], None)


def test_bcc_version_is_read_without_importing_bcc():
    v = bpfcache.bcc_version()
    assert v and isinstance(v, str)


# ------------------------------------------------------------------------------- scanning
def test_scan_records_map_references_and_self_tgid_sites():
    prog = (_ld_imm64(1, 7, src=bpfcache.PSEUDO_MAP_FD)        # map fd 7 -> index 1
            + _insn(0x15, 0, imm=SENTINEL)                       # if r0 == SELF_TGID
            + _ld_imm64(2, SENTINEL)                             # r2 = SELF_TGID
            + _ld_imm64(3, SENTINEL << 32)                       # r3 = SELF_TGID << 32
            + EXIT)
    out, relocs, sites = bpfcache.scan("f", prog, {9: 0, 7: 1})
    assert relocs == [(0, 1)]
    assert sites == [2, 3, 6]
    assert struct.unpack_from("<i", out, 4)[0] == 1          # the fd became the map index


@pytest.mark.parametrize("bad", [
    _insn(0x15, imm=SENTINEL + 1),                    # `< SELF_TGID + 1`: folded, unpatchable
    _insn(0x15, imm=-SENTINEL),
    _ld_imm64(1, (SENTINEL << 32) | 5),
    _ld_imm64(1, 0, src=2),                           # map value pointer (global data)
    _insn(0x85, src=2, imm=1),                        # kfunc call
    _ld_imm64(1, 99, src=bpfcache.PSEUDO_MAP_FD),     # unknown map fd
])
def test_scan_refuses_what_a_load_could_not_reproduce(bad):
    with pytest.raises(CacheError):
        bpfcache.scan("f", _insn(0x15, imm=SENTINEL) + bad + EXIT, {7: 0})


def test_patching_puts_back_the_fds_and_the_tgid():
    prog = _ld_imm64(1, 0, src=bpfcache.PSEUDO_MAP_FD) + _insn(0x15, imm=SENTINEL) + EXIT
    e = _entry(progs={"f": prog}, relocs={"f": [(0, 0)]}, sites={"f": [2]})
    out = bpfcache._patched(e, "f", [42], 4321)
    assert struct.unpack_from("<i", out, 4)[0] == 42 and out[1] >> 4 == 1
    assert struct.unpack_from("<i", out, 2 * 8 + 4)[0] == 4321


# ------------------------------------------------------------------------------- the entry
def _entry(key: str = "k" * 64, progs=None, relocs=None, sites=None) -> Entry:
    return Entry(key, "GPL", 0, [bpfsyscall.MapSpec("counters", 6, 4, 8, 16, 0)],
                 progs or {"f": _insn(0x15, imm=SENTINEL) + EXIT},
                 relocs or {"f": []}, sites or {"f": [0]})


def test_entry_round_trip():
    e = _entry()
    assert Entry.from_json(e.to_json(), e.key) == e


@pytest.mark.parametrize("damage", [
    lambda b: b[:len(b) // 2],                                 # truncated
    lambda b: b.replace(b'"GPL"', b'"BSD"'),                   # edited: digest mismatch
    lambda b: b"not json",
    lambda b: b'{"digest": "x", "body": 5}',
])
def test_a_damaged_entry_is_refused(damage):
    e = _entry()
    with pytest.raises(CacheError):
        Entry.from_json(damage(e.to_json()), e.key)


def test_an_entry_of_another_key_is_refused():
    e = _entry()
    with pytest.raises(CacheError, match="key"):
        Entry.from_json(e.to_json(), "0" * 64)


def test_out_of_range_sites_are_refused():
    e = _entry(relocs={"f": [(9, 0)]})
    with pytest.raises(CacheError, match="relocation"):
        Entry.from_json(e.to_json(), e.key)


# ------------------------------------------------------------------------------- the directory
def test_write_read_modes_and_atomicity(tmp_path):
    d = tmp_path / "cache"
    e = _entry()
    assert bpfcache.read(e.key, str(d)) is None
    bpfcache.write(e, str(d))
    assert (d.stat().st_mode & 0o777) == 0o700
    f = d / f"{e.key}.json"
    assert (f.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in d.iterdir()] == [f.name]          # no temp file left
    assert bpfcache.read(e.key, str(d)) == e


def test_corrupt_file_is_reported_and_removed(tmp_path):
    e = _entry()
    bpfcache.write(e, str(tmp_path))
    f = tmp_path / f"{e.key}.json"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CacheError):
        bpfcache.read(e.key, str(tmp_path))
    assert not f.exists()


def test_symlinks_are_never_followed(tmp_path):
    e = _entry()
    target = tmp_path / "elsewhere.json"
    target.write_bytes(e.to_json())
    target.chmod(0o600)
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    (d / f"{e.key}.json").symlink_to(target)
    with pytest.raises(CacheError, match="symlink"):
        bpfcache.read(e.key, str(d))
    assert target.exists()                           # the link is removed, not its target
    link_dir = tmp_path / "linkdir"
    link_dir.symlink_to(d)
    with pytest.raises(CacheError, match="symlink"):
        bpfcache.read(e.key, str(link_dir))


def test_a_directory_others_can_write_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(CacheError, match="writable"):
        bpfcache.write(_entry(), str(d))


def test_old_entries_are_pruned(tmp_path):
    for i in range(bpfcache.MAX_ENTRIES + 3):
        e = _entry(key=f"{i:064d}")
        bpfcache.write(e, str(tmp_path))
        os.utime(tmp_path / f"{e.key}.json", (1000 + i, 1000 + i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == bpfcache.MAX_ENTRIES
    assert f"{0:064d}.json" not in names


def test_uncacheable_marker(tmp_path):
    assert not bpfcache.is_marked_uncacheable("k" * 64, str(tmp_path))
    bpfcache.mark_uncacheable("k" * 64, "why", str(tmp_path))
    assert bpfcache.is_marked_uncacheable("k" * 64, str(tmp_path))
    assert not bpfcache.is_marked_uncacheable("j" * 64, str(tmp_path))


def test_clear(tmp_path):
    bpfcache.write(_entry(), str(tmp_path))
    bpfcache.mark_uncacheable("j" * 64, "why", str(tmp_path))
    assert bpfcache.clear(str(tmp_path)) == 2
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- live
def _start(cache_dir: Path, monkeypatch, **cfg):
    from falconet.collector.source import CollectorConfig  # noqa: PLC0415
    from live_collector import LiveCollector  # noqa: PLC0415
    monkeypatch.setenv("FALCONET_BPF_CACHE_DIR", str(cache_dir))
    bpfcache.STATS.clear()
    return LiveCollector({"openat"}, CollectorConfig(ring_buffer_pages=64, **cfg))


def _sees_open(c, tmp_path: Path, tag: str) -> None:
    """A child's open of a fresh file is seen; the engine's own open is not (the SELF_TGID
    patched into the loaded program is this process's)."""
    f = tmp_path / f"probe-{tag}"
    f.write_text("x")
    open(f).close()                                            # noqa: SIM115 - our own open
    subprocess.run(["cat", str(f)], check=True, capture_output=True)
    e = c.wait_for(lambda e: e.type == "openat" and e.args["name"] == str(f), what=f"open {tag}")
    assert e.pid != os.getpid() and e.res >= 0
    assert c.matching(lambda e: e.pid == os.getpid()) == []


@pytest.mark.root
@pytest.mark.ebpf
def test_second_start_hits_the_cache_and_sees_the_same_events(tmp_path, monkeypatch):
    need_bcc()
    cache = tmp_path / "cache"
    c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["miss"] == 1 and bpfcache.STATS["stored"] == 1
        _sees_open(c, tmp_path, "first")
        first = (set(c.source.attached), set(c.source.dispatched))
    finally:
        c.close()
    entries = [p for p in cache.iterdir() if not p.name.startswith("offsets-")]
    assert len(entries) == 1 and (entries[0].stat().st_mode & 0o777) == 0o600
    c = _start(cache, monkeypatch)
    try:
        assert dict(bpfcache.STATS) == {"hit": 1}
        _sees_open(c, tmp_path, "second")
        assert (set(c.source.attached), set(c.source.dispatched)) == first
    finally:
        c.close()
    # nothing is left attached once closed: a third collector still starts from the cache
    c = _start(cache, monkeypatch)
    c.close()
    assert bpfcache.STATS["hit"] == 1


@pytest.mark.root
@pytest.mark.ebpf
def test_corrupt_entry_falls_back_to_compiling(tmp_path, monkeypatch, caplog):
    need_bcc()
    cache = tmp_path / "cache"
    _start(cache, monkeypatch).close()
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith("offsets-")]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x55
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="falconet.collector"):
        c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["corrupt"] == 1 and bpfcache.STATS["miss"] == 1
        assert any("BPF cache: ignoring entry" in r.getMessage() for r in caplog.records)
        _sees_open(c, tmp_path, "recompiled")
    finally:
        c.close()
    assert Entry.from_json(entry.read_bytes(), entry.stem)        # stored again, sound


@pytest.mark.root
@pytest.mark.ebpf
def test_changed_program_text_misses(tmp_path, monkeypatch):
    need_bcc()
    from falconet.collector import program  # noqa: PLC0415
    cache = tmp_path / "cache"
    _start(cache, monkeypatch).close()
    changed = tmp_path / "falconet.bpf.c"
    changed.write_text(program.bpf_source_path().read_text() + "\n// changed\n")
    monkeypatch.setenv("FALCONET_BPF_SOURCE", str(changed))
    c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["miss"] == 1 and not bpfcache.STATS["hit"]
        _sees_open(c, tmp_path, "changed")
    finally:
        c.close()
    assert len([p for p in cache.iterdir() if not p.name.startswith("offsets-")]) == 2


@pytest.mark.root
@pytest.mark.ebpf
def test_cache_off_uses_the_bcc_loader(tmp_path, monkeypatch):
    need_bcc()
    cache = tmp_path / "cache"
    c = _start(cache, monkeypatch, bpf_cache=False)
    try:
        assert not bpfcache.STATS and not cache.exists()
        _sees_open(c, tmp_path, "nocache")
    finally:
        c.close()


@pytest.mark.root
@pytest.mark.ebpf
def test_an_entry_that_does_not_load_is_dropped_and_compiled_again(tmp_path, monkeypatch,
                                                                    caplog):
    need_bcc()
    cache = tmp_path / "cache"
    _start(cache, monkeypatch).close()
    real = bpfcache.load_entry
    calls = []

    def fail_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(22, "rejected (simulated)")
        return real(*a, **k)
    monkeypatch.setattr(bpfcache, "load_entry", fail_once)
    with caplog.at_level(logging.WARNING, logger="falconet.collector"):
        c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["load_failed"] == 1 and bpfcache.STATS["miss"] == 1
        assert any("did not load" in r.getMessage() for r in caplog.records)
        _sees_open(c, tmp_path, "reloaded")
    finally:
        c.close()


@pytest.mark.root
@pytest.mark.ebpf
def test_an_uncacheable_program_is_loaded_by_bcc(tmp_path, monkeypatch):
    need_bcc()
    from falconet.collector import bpfproc  # noqa: PLC0415

    def uncacheable(*_a, **_k):
        raise CacheError("a constant next to SELF_TGID (simulated)")
    monkeypatch.setattr(bpfproc, "compile_in_child", uncacheable)
    cache = tmp_path / "cache"
    c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["uncacheable"] == 1 and not bpfcache.STATS["stored"]
        _sees_open(c, tmp_path, "bcc")
    finally:
        c.close()
    # remembered: the next start compiles once (with bcc), not twice
    (marker,) = [p for p in cache.iterdir() if p.suffix == ".nocache"]
    assert "simulated" in marker.read_text() and (marker.stat().st_mode & 0o777) == 0o600
    monkeypatch.setattr(bpfproc, "compile_in_child", lambda *a, **k: pytest.fail("compiled"))
    c = _start(cache, monkeypatch)
    try:
        assert dict(bpfcache.STATS) == {"uncacheable": 1}
        _sees_open(c, tmp_path, "bcc-again")
    finally:
        c.close()


@pytest.mark.root
@pytest.mark.ebpf
def test_an_unusable_cache_directory_only_costs_the_compile(tmp_path, monkeypatch):
    need_bcc()
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    c = _start(d, monkeypatch)
    try:
        assert bpfcache.STATS["dir_error"] == 1 and not bpfcache.STATS["stored"]
        _sees_open(c, tmp_path, "nodir")
    finally:
        c.close()
    assert list(d.iterdir()) == []


def test_prog_load_retries_when_the_verifier_is_interrupted(monkeypatch):
    calls = []

    def fake(cmd, attr):
        calls.append(attr.log_level)
        if len(calls) < 3:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return 7
    monkeypatch.setattr(bpfsyscall, "_sys_bpf", fake)
    assert bpfsyscall.prog_load("f", bpfsyscall.BPF_PROG_TYPE_RAW_TRACEPOINT, EXIT) == 7
    assert calls == [0, 0, 0]          # retried as libbpf does, without asking for the log


@pytest.mark.root
@pytest.mark.ebpf
@pytest.mark.parametrize(("err", "marked"), [(errno.EAGAIN, False), (errno.EACCES, True)])
def test_only_a_rejection_marks_a_fresh_program_uncacheable(tmp_path, monkeypatch, err, marked):
    need_bcc()

    def fail(*_a, **_k):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(bpfcache, "load_entry", fail)
    cache = tmp_path / "cache"
    c = _start(cache, monkeypatch)
    try:
        assert bpfcache.STATS["miss"] == 1 and bpfcache.STATS["load_failed"] == 1
        _sees_open(c, tmp_path, f"fallback-{err}")         # bcc loaded it
    finally:
        c.close()
    assert any(p.suffix == ".nocache" for p in cache.iterdir()) is marked
