"""The kernel filter's numbers (no kernel): clause bits, access classes, trie entries, I/O
needles, and the I/O record decoding."""

from __future__ import annotations

import struct

from falconet.collector import kfilter_maps, program
from falconet.collector.decoder import HDR, RecordDecoder
from falconet.kfilter import Clause, FilterPlan, IoFilter, TypeFilter

READ = Clause(any_path=False, exact=frozenset({"/etc/shadow"}), prefixes=frozenset({"/etc/ssh/"}),
              need_read=True, need_write=False, need_success=True)
WRITE = Clause(any_path=False, exact=frozenset(), prefixes=frozenset({"/etc/", "/"}),
               need_read=False, need_write=True, need_success=True)
ANY_FAILED = Clause(any_path=True, exact=frozenset(), prefixes=frozenset(), need_read=False,
                    need_write=False, need_success=False)
CFG = struct.Struct("<II8QQQQQ")


def _tables(*clauses: Clause, close: bool = True) -> kfilter_maps.KernelTables:
    plan = FilterPlan({"openat": TypeFilter("openat", clauses)}, {}, close)
    return kfilter_maps.tables(plan, {"openat": 7}, 3)


def test_each_access_class_lists_the_clauses_it_can_satisfy():
    t = _tables(READ, WRITE)
    enabled, track, *live, anypath, _suffix, _relpass, _named = CFG.unpack(t.cfg[7])
    assert (enabled, track, anypath) == (1, 1, 0)
    rd, wr, ok = 1, 2, 4
    assert live[0] == 0 and live[rd] == 0             # failed opens: nothing can match
    assert live[ok | rd] == 0b01 and live[ok | wr] == 0b10 and live[ok | rd | wr] == 0b11


def test_exact_names_end_in_nul_and_longer_entries_carry_their_prefixes_bits():
    t = _tables(READ, WRITE)
    assert t.trie[b"/etc/shadow\0"] == 0b11           # exact (READ) and below /etc/, / (WRITE)
    assert t.trie[b"/etc/ssh/"] == 0b11
    assert t.trie[b"/"] == 0b10 and t.trie[b"/etc/"] == 0b10


def test_any_path_clauses_and_close_tracking():
    t = _tables(READ, ANY_FAILED)
    *_, anypath, _suffix, _relpass, _named = CFG.unpack(t.cfg[7])
    assert anypath == 0b10
    assert CFG.unpack(t.cfg[3])[:2] == (0, 1)         # close: not filtered itself, tracks fds
    assert 3 not in _tables(READ, close=False).cfg


def test_too_many_clauses_leave_the_type_unfiltered():
    many = tuple(Clause(False, frozenset({f"/x{i}"}), frozenset(), False, False, True)
                 for i in range(kfilter_maps.MAX_CLAUSES + 1))
    t = _tables(*many)
    assert "openat" in t.skipped and 7 not in t.cfg


def test_io_needles_are_packed_as_masked_words():
    plan = FilterPlan({}, {}, False, io={"write": IoFilter("write", True, (b"mining.s", b"GET"))})
    t = kfilter_maps.tables(plan, {"write": 9}, None)
    v = kfilter_maps._IO.unpack(t.io[9])
    enabled, sockets, n = v[0], v[1], v[2]
    lits, masks, lens = v[4:8], v[8:12], v[12:16]
    assert (enabled, sockets, n) == (1, 1, 2)
    assert lits[0] == int.from_bytes(b"mining.s", "little") and masks[0] == 2**64 - 1
    assert lits[1] == int.from_bytes(b"GET", "little") and masks[1] == 0xFFFFFF
    assert lens[:2] == (8, 3)


def test_io_records_decode_the_address_and_the_data():
    dec = RecordDecoder(path_len=512, argv_len=4096, env_len=0)
    sa = struct.pack("<HH4s8x", 2, 0x5000, bytes([127, 0, 0, 1]))     # 127.0.0.1:80
    data = b'{"method":"mining.subscribe"}\xff'
    hdr = HDR.pack(1_000, 42, len(data), 100, 99, program.EVENT_IDS["sendto"], len(sa), len(data),
                   0, 3, 0, 64, 0, 0, 0xC0001, 1)
    e = dec.decode(memoryview(hdr + sa + data), 0)
    assert e.type == "sendto" and e.args["fd"] == 3 and e.args["size"] == 64
    assert e.args["data"] == data and e.args["dport"] == 80
    assert e.args["ftype"] == 0xC0001


def test_evt_buffer_and_its_text():
    from falconet.state.fields.evt import data_text  # noqa: PLC0415
    assert data_text(b"ab\x00\xffc\n") == "ab..c."
    assert data_text("ab\udcffc") == "ab.c"


def test_suffixes_go_reversed_into_their_own_trie():
    c = Clause(any_path=False, exact=frozenset(), prefixes=frozenset(), need_read=False,
               need_write=True, need_success=True,
               suffixes=frozenset({"/release_agent", "_history", "sh_history"}))
    t = _tables(READ, c)
    *_, suffix, _relpass, _named = CFG.unpack(t.cfg[7])
    assert suffix == 0b10
    assert t.rtrie[b"tnega_esaeler/"] == 0b10
    assert t.rtrie[b"yrotsih_hs"] == 0b10 and t.rtrie[b"yrotsih_"] == 0b10


def test_relative_opens_ancestor_keys_suffix_tails_and_relpass():
    """The directory verdict's keys: "A/" + NUL for each directory above a name or prefix
    (with the bits of the shorter prefixes folded in), each suffix's "/"-tails reversed with a
    NUL, and the clauses with a relative name (relpass)."""
    sfx = Clause(any_path=False, exact=frozenset(), prefixes=frozenset(), need_read=False,
                 need_write=False, need_success=False, suffixes=frozenset({"/.ssh/id_rsa"}))
    rel = Clause(any_path=False, exact=frozenset({"shadow"}), prefixes=frozenset(),
                 need_read=False, need_write=False, need_success=False)
    t = _tables(READ, WRITE, sfx, rel)
    assert t.relative
    assert t.trie[b"/etc/\0"] == 0b11                 # /etc/shadow, /etc/ssh/ below; "/etc/"
    assert t.trie[b"/etc/ssh/\0"] == 0b11             # the prefix itself, and "/", "/etc/"
    assert b"/\0" not in t.trie                       # the root never gets a verdict
    assert t.rtrie[b"asr_di/\0"] == 0b100             # "/id_rsa" completes the suffix
    assert t.rtrie[b"asr_di/hss./"] == 0b100          # the suffix itself (absolute paths)
    *_, suffix, relpass, _named = CFG.unpack(t.cfg[7])
    assert (suffix, relpass) == (0b100, 0b1000)


def test_relative_filtering_off_when_the_ancestors_do_not_fit(monkeypatch):
    from falconet import kfilter
    monkeypatch.setattr(kfilter, "TRIE_ENTRIES", 3)
    t = _tables(READ, WRITE)
    assert not t.relative and not any(k.endswith(b"/\0") for k in t.trie)


def test_process_names_go_into_kf_names_with_their_clause_bits():
    """proc.name terms: ``named`` has the bits of the clauses with one, kf_names each name's 16
    comm bytes (NUL-padded) with the bits of the clauses listing it; a name of 16 bytes or
    more is never a comm: no entry (its clause bit is still named: such a process is unknown
    to no clause, it meets none)."""
    a = Clause(any_path=False, exact=frozenset({"/etc/shadow"}), prefixes=frozenset(),
               need_read=True, need_write=False, need_success=False,
               names=frozenset({"sh", "bash"}))
    b = Clause(any_path=True, exact=frozenset(), prefixes=frozenset(), need_read=False,
               need_write=True, need_success=False,
               names=frozenset({"bash", "a-name-of-16-bytes"}))
    t = _tables(a, b, READ)
    assert t.names == {b"sh".ljust(16, b"\0"): 0b01, b"bash".ljust(16, b"\0"): 0b11}
    *_, named = CFG.unpack(t.cfg[7])
    assert named == 0b011
