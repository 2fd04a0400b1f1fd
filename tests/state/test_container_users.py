"""A container's users and groups from its own files (issue 17), read through the real
``openat2(RESOLVE_IN_ROOT)`` on a directory tree laid out as ``/proc/<pid>/root``: symlinks stay
inside the root, FIFOs and oversized files are refused (counted), a uid the tables lack re-reads
a changed file at most every interval, the host's root gives no table. The live comparison with
Falco is ``tests/fields/test_vs_falco.py`` (cases ``container``, ``ctruser``)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from falconet.state import container_users as CU
from falconet.state.container_users import ContainerUsers
from falconet.state.users import UserDB

PW = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/srv/app:/bin/ash\n"


def _proc(tmp_path: Path, pid: int = 42) -> tuple[Path, Path]:
    """tmp/proc/1/root -> host, tmp/proc/<pid>/root -> the container's root (with /etc)."""
    host, ctr = tmp_path / "host", tmp_path / "ctr"
    (host / "etc").mkdir(parents=True)
    (ctr / "etc").mkdir(parents=True)
    (host / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    for p, target in ((1, host), (pid, ctr)):
        d = tmp_path / "proc" / str(p)
        d.mkdir(parents=True)
        (d / "root").symlink_to(target)
    return tmp_path / "proc", ctr


def _cu(proc: Path, **kw) -> tuple[ContainerUsers, Counter]:
    m = SimpleNamespace(enrichment=Counter())
    return ContainerUsers(proc=str(proc), metrics=m, **kw), m.enrichment


def test_reads_the_containers_files_once(tmp_path: Path) -> None:
    proc, ctr = _proc(tmp_path)
    (ctr / "etc" / "passwd").write_text(PW)
    (ctr / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    cu, counts = _cu(proc)
    assert cu.user("c1", 42, 0) == ("root", "/root", "/bin/sh")       # not the host's bash
    assert cu.user("c1", 42, 1000) == ("app", "/srv/app", "/bin/ash")
    assert cu.group("c1", 42, 1000) == "app"
    assert cu.reads == 1 and counts[("core-state", "users_read")] == 1


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    proc, ctr = _proc(tmp_path)
    (ctr / "real").mkdir()
    (ctr / "real" / "passwd").write_text(PW)
    # absolute and escaping links: resolved with the container's root as "/"
    (ctr / "etc" / "passwd").symlink_to("/real/passwd")
    secret = tmp_path / "host" / "etc" / "group"
    secret.write_text("root:x:0:\nhostonly:x:77:\n")
    (ctr / "etc" / "group").symlink_to("../../../../../host/etc/group")
    cu, _ = _cu(proc)
    assert cu.user("c1", 42, 1000) == ("app", "/srv/app", "/bin/ash")
    assert cu.group("c1", 42, 77) is None            # the host's file was never reached
    fd = os.open(ctr, os.O_PATH | os.O_DIRECTORY)
    try:
        assert CU.read_in_root(fd, "/etc/group") == ("", None)
    finally:
        os.close(fd)


def test_fifo_and_oversized_files_are_refused_and_counted(tmp_path: Path) -> None:
    proc, ctr = _proc(tmp_path)
    os.mkfifo(ctr / "etc" / "passwd")                # would block a plain open()
    cu, counts = _cu(proc)
    t0 = time.monotonic()
    assert cu.user("c1", 42, 0) is None
    assert time.monotonic() - t0 < 1.0
    assert cu.errors == 1 and counts[("core-state", "users_unreadable")] == 1
    (ctr / "etc" / "passwd").unlink()
    (ctr / "etc" / "passwd").write_text("x" * (CU.MAX_FILE_BYTES + 1))
    fd = os.open(ctr, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="larger than"):
            CU.read_in_root(fd, "/etc/passwd")
    finally:
        os.close(fd)


def test_unknown_uid_rereads_a_changed_file_after_the_interval(tmp_path: Path) -> None:
    proc, ctr = _proc(tmp_path)
    pw = ctr / "etc" / "passwd"
    pw.write_text(PW)
    cu, _ = _cu(proc, check_interval=3600)
    assert cu.user("c1", 42, 2000) is None
    pw.write_text(PW + "new:x:2000:2000::/home/new:/bin/sh\n")
    assert cu.user("c1", 42, 2000) is None           # within the interval: not re-read
    cu.tables["c1"].next_check = 0.0
    assert cu.user("c1", 42, 2000) == ("new", "/home/new", "/bin/sh")
    assert cu.reads == 2
    cu.tables["c1"].next_check = 0.0
    assert cu.user("c1", 42, 3000) is None and cu.reads == 2   # unchanged: not re-parsed


def test_host_root_and_gone_process_give_no_table(tmp_path: Path) -> None:
    proc, _ = _proc(tmp_path)
    (proc / "7").mkdir()
    (proc / "7" / "root").symlink_to(tmp_path / "host")
    cu, _ = _cu(proc)
    assert cu.user("c2", 7, 0) is None               # libsinsp: not its own root, no entry
    assert cu.user("c3", 99999, 0) is None and cu.errors == 1   # no such process: retried soon
    assert cu.tables["c3"].next_check - time.monotonic() <= CU.RETRY_SECONDS


def test_bounded_and_captured(tmp_path: Path) -> None:
    proc, ctr = _proc(tmp_path)
    (ctr / "etc" / "passwd").write_text(PW)
    cu, _ = _cu(proc, max_containers=2)
    for c in ("a", "b", "c"):
        cu.user(c, 42, 0)
    assert list(cu.tables) == ["b", "c"]
    db = UserDB(str(tmp_path / "none"), str(tmp_path / "none"))
    db.containers = cu
    data = db.dump()
    replay = UserDB(frozen=True)
    replay.containers = ContainerUsers(proc=str(tmp_path / "nothing"))
    replay.load(data)
    assert replay.user_in("c", 1, 1000) == ("app", "/srv/app", "/bin/ash")
    assert replay.user_in("zzz", 1, 0) is None       # frozen: /proc is never read
    assert replay.user_in("", 1, 0) is None          # host table of the capture (empty here)
