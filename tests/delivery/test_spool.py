"""The on-disk spool against real SQLite files: order, restart, bounds (counted), file safety."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest
from falconet.delivery.spool import Spool, spool_path
from falconet.delivery.statedir import StateDirError


def make(tmp_path, **kw):
    drops: list[tuple[str, int]] = []
    kw.setdefault("max_bytes", 1 << 30)
    kw.setdefault("max_age", 3600.0)
    sp = Spool(spool_path(tmp_path / "state", "webhook"), on_drop=lambda c, n: drops.append((c, n)),
               **kw).open()
    return sp, drops


def test_fifo_order_ack_and_gauges(tmp_path):
    sp, _ = make(tmp_path)
    sp.put([b"a1", b"b22", b"c333"])
    assert (sp.depth, sp.bytes) == (3, 9)
    rows = sp.peek(2)
    assert [p for _, p in rows] == [b"a1", b"b22"]
    sp.ack(rows[0][0])
    assert [p for _, p in sp.peek(10)] == [b"b22", b"c333"]
    assert (sp.depth, sp.bytes) == (2, 7)
    sp.ack(sp.peek(10)[-1][0])
    assert (sp.depth, sp.bytes, sp.oldest_ts) == (0, 0, None)
    sp.close()


def test_rows_survive_close_and_reopen_in_order_wal_mode(tmp_path):
    sp, _ = make(tmp_path)
    sp.put([f"alert-{i}".encode() for i in range(100)])
    sp.ack(sp.peek(10)[-1][0])
    # no close(): what a kill -9 leaves (the WAL holds the commits)
    path = sp.path
    sp._lock_fd and os.close(sp._lock_fd)
    sp._lock_fd = None
    again = Spool(path, max_bytes=1 << 30, max_age=3600).open()
    assert again.depth == 90
    assert [p for _, p in again.peek(3)] == [b"alert-10", b"alert-11", b"alert-12"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # sequence numbers keep growing after a restart: new rows go behind the old ones
    again.put([b"new"])
    assert again.peek(100)[-1][1] == b"new"
    again.close()


def test_byte_bound_drops_oldest_and_counts_each(tmp_path):
    sp, drops = make(tmp_path, max_bytes=100)
    sp.put([b"x" * 10 for _ in range(10)])          # exactly 100: nothing dropped
    assert drops == []
    sp.put([b"y" * 10, b"z" * 10])                  # 120: the two oldest go
    assert drops == [("spool_full", 2)]
    assert sp.depth == 10 and sp.bytes == 100
    assert [p for _, p in sp.peek(100)][-2:] == [b"y" * 10, b"z" * 10]
    assert sp.dropped == {"spool_full": 2}


def test_age_bound_drops_expired_and_counts_each(tmp_path):
    sp, drops = make(tmp_path, max_age=60)
    sp.put([b"old1", b"old2"], now=1000.0)
    sp.put([b"new"], now=1050.0)
    sp.enforce_bounds(now=1070.0)                    # old rows are 70 s old
    assert drops == [("spool_expired", 2)]
    assert [p for _, p in sp.peek(10)] == [b"new"]
    assert sp.oldest_age(now=1070.0) == pytest.approx(20.0)


def test_directory_0700_files_0600(tmp_path):
    sp, _ = make(tmp_path)
    sp.put([b"a"])
    assert stat.S_IMODE(os.stat(sp.path.parent).st_mode) == 0o700
    for f in sp.path.parent.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    sp.close()


def test_symlinked_database_or_directory_is_refused(tmp_path):
    target = tmp_path / "elsewhere.db"
    target.write_bytes(b"")
    d = tmp_path / "state" / "spool"
    d.mkdir(parents=True, mode=0o700)
    (d / "webhook.db").symlink_to(target)
    with pytest.raises(StateDirError, match="symlink"):
        Spool(d / "webhook.db", max_bytes=10, max_age=10).open()
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (tmp_path / "s2").mkdir(mode=0o700)
    (tmp_path / "s2" / "spool").symlink_to(other)
    with pytest.raises(StateDirError, match="symlinks are refused"):
        Spool(tmp_path / "s2" / "spool" / "webhook.db", max_bytes=10, max_age=10).open()


def test_group_writable_directory_is_refused(tmp_path):
    d = tmp_path / "state" / "spool"
    d.mkdir(parents=True)
    os.chmod(d, 0o777)
    with pytest.raises(StateDirError, match="writable by group or others"):
        Spool(d / "webhook.db", max_bytes=10, max_age=10).open()


def test_second_process_on_the_same_spool_is_refused(tmp_path):
    sp, _ = make(tmp_path)
    with pytest.raises(StateDirError, match="in use by another falconet"):
        Spool(sp.path, max_bytes=10, max_age=10).open()
    sp.close()
    Spool(sp.path, max_bytes=10, max_age=10).open().close()


def test_damaged_database_is_moved_aside_and_a_fresh_one_starts(tmp_path):
    p = spool_path(tmp_path / "state", "webhook")
    p.parent.mkdir(parents=True, mode=0o700)
    p.write_bytes(b"this is not a sqlite database" * 100)
    os.chmod(p, 0o600)
    sp = Spool(p, max_bytes=10, max_age=10).open()
    assert sp.depth == 0
    assert any(f.name.startswith("webhook.db.corrupt-") for f in p.parent.iterdir())
    sp.close()


def test_output_names_are_made_safe_for_file_names(tmp_path):
    assert spool_path(tmp_path, "../../etc/passwd").parent == tmp_path / "spool"
    assert spool_path(tmp_path, "response:slack").name == "response_slack.db"


def test_bounds_never_drop_the_batch_being_delivered(tmp_path):
    sp, drops = make(tmp_path, max_bytes=30)
    sp.put([b"a" * 10, b"b" * 10, b"c" * 10])
    rows = sp.peek(2)                                 # a and b are in flight
    sp.protect_upto = rows[-1][0]
    sp.put([b"d" * 10])                               # 40 > 30: c goes, not a or b
    assert drops == [("spool_full", 1)]
    assert [p for _, p in sp.peek(10)] == [b"a" * 10, b"b" * 10, b"d" * 10]
    sp.enforce_bounds(now=10**12)                     # everything expired but the batch
    assert [p for _, p in sp.peek(10)] == [b"a" * 10, b"b" * 10]
    sp.ack(rows[-1][0])
    assert sp.depth == 0 and sp.bytes == 0
