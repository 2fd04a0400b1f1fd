"""User/group name cache (mtime reload, replay freeze) and flag/errno/capability rendering."""

from __future__ import annotations

import os
from pathlib import Path

from falconet.state import flags as F
from falconet.state.users import UserDB


def test_userdb_reads_and_reloads_on_mtime_change(tmp_path: Path) -> None:
    pw, gr = tmp_path / "passwd", tmp_path / "group"
    pw.write_text("root:x:0:0:root:/root:/bin/bash\n# comment\nbroken-line\n"
                  "alice:x:1000:1000::/home/alice:/bin/zsh\n")
    gr.write_text("root:x:0:\nstaff:x:50:\n")
    db = UserDB(str(pw), str(gr), check_interval=0.0)
    assert db.name(0) == "root" and db.user(1000) == ("alice", "/home/alice", "/bin/zsh")
    assert db.group(50) == "staff" and db.name(4242) is None
    pw.write_text("root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n")
    st = pw.stat()
    os.utime(pw, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert db.refresh() is True and db.name(1000) == "bob"
    assert db.refresh() is False                 # unchanged mtime: not re-read


def test_userdb_check_interval_limits_stats(tmp_path: Path) -> None:
    pw, gr = tmp_path / "passwd", tmp_path / "group"
    pw.write_text("root:x:0:0:root:/root:/bin/bash\n")
    gr.write_text("")
    db = UserDB(str(pw), str(gr), check_interval=3600)
    pw.write_text("root:x:0:0:root:/root:/bin/bash\nnew:x:7:7::/:/bin/sh\n")
    assert db.name(7) is None                    # not checked again within the interval
    assert db.refresh(force=True) and db.name(7) == "new"


def test_userdb_dump_load_freezes(tmp_path: Path) -> None:
    db = UserDB()
    data = db.dump()
    frozen = UserDB(str(tmp_path / "none"), str(tmp_path / "none"))
    frozen.load(data)
    assert frozen.frozen and frozen.name(0) == db.name(0) == "root"
    assert frozen.refresh(force=True) is False


def test_open_flags() -> None:
    assert F.open_flags(0) == "O_RDONLY"
    # libsinsp's table order, Falco's bits only (Falco 0.44.1 output, tests/fields/test_vs_falco.py)
    assert F.open_flags(0o1101) == "O_TRUNC|O_CREAT|O_WRONLY"
    assert F.open_flags(0o2 | 0o100 | F.O_CLOEXEC) == "O_CREAT|O_RDWR|O_CLOEXEC"
    assert F.open_flags(0o4010000) == "O_SYNC|O_DSYNC|O_RDONLY"
    assert F.open_flags(0o10000 | 0o400000) == "O_SYNC|O_DSYNC|O_RDONLY"   # O_NOFOLLOW: not Falco's
    assert F.is_open_read(0) and not F.is_open_write(0)
    assert F.is_open_read(2) and F.is_open_write(2)
    assert F.is_open_write(0o1000)               # O_TRUNC writes even with O_RDONLY


def test_other_renderers() -> None:
    assert F.res_str(0) == "SUCCESS" and F.res_str(5) == "SUCCESS"
    assert F.res_str(-2) == "ENOENT" and F.res_str(-115) == "EINPROGRESS" and F.res_str(-13) == "EACCES"
    assert F.caps((1 << 21) | (1 << 1)) == "CAP_DAC_OVERRIDE CAP_SYS_ADMIN"
    assert F.caps(0) == ""
    assert F.RENDERERS[("ptrace", "request")](16) == "PTRACE_ATTACH"
    assert F.RENDERERS[("ptrace", "request")](0x4206) == "PTRACE_SEIZE"
    assert F.RENDERERS[("socket", "domain")](17) == "AF_PACKET"
    assert F.RENDERERS[("socket", "type")](1 | 0o2000000) == "SOCK_STREAM|SOCK_CLOEXEC"
    assert F.RENDERERS[("clone", "flags")](0x1200011) == "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID"
    assert F.RENDERERS[("linkat", "flags")](0x400) == "AT_SYMLINK_FOLLOW"
    assert F.RENDERERS[("memfd_create", "flags")](0x3 | 0x40) == "MFD_CLOEXEC|MFD_ALLOW_SEALING|0x40"


def test_chmod_mode_is_libs_resolved_string() -> None:
    # libs PT_MODE: evt.arg.mode of chmod/fchmod/fchmodat is the bit names in chmod_mode's
    # table order; the incubating rule "Set Setuid or Setgid bit" tests contains "S_ISUID"
    r = F.RENDERERS[("fchmodat", "mode")]
    assert r(0o4644) == "S_IROTH|S_IRGRP|S_IWUSR|S_IRUSR|S_ISUID"
    assert r(0o755) == "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR"
    assert r(0o2000) == "S_ISGID"
    assert r(0) == "0"                                   # nothing resolved: %#o of the value
    assert F.RENDERERS[("chmod", "mode")] is r and F.RENDERERS[("fchmod", "mode")] is r
    assert F.RENDERERS[("openat", "mode")](0o644) == "0644"   # open's mode stays octal (PF_OCT)
