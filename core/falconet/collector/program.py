"""Builds the BPF program for a chosen set of event types, and describes its record layouts.

``bpf/falconet.bpf.c`` holds the helpers (save args at enter, emit one ring-buffer record at exit);
this module appends one enter/exit handler pair per selected syscall, so only what the rules (plus
the state base set) need is compiled and attached. The same table tells the decoder
(:mod:`falconet.collector.decoder`) how to turn each record back into Falco-named args.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from falconet import syscalls

#: where the BPF C source is: a checkout's ``bpf/`` (editable installs, tests), then the copy a
#: wheel installs as data (``<prefix>/share/falconet/bpf``, see pyproject.toml), then the
#: distribution-wide locations a package would use
BPF_SOURCE_CANDIDATES = (
    Path(__file__).resolve().parents[3] / "bpf" / "falconet.bpf.c",
    Path(sys.prefix) / "share" / "falconet" / "bpf" / "falconet.bpf.c",
    Path("/usr/local/share/falconet/bpf/falconet.bpf.c"),
    Path("/usr/share/falconet/bpf/falconet.bpf.c"),
)


def bpf_source_path() -> Path:
    """The BPF C source to compile: ``$FALCONET_BPF_SOURCE``, else the first of
    :data:`BPF_SOURCE_CANDIDATES` that exists. Raises ``FileNotFoundError`` naming every place
    looked at."""
    env = os.environ.get("FALCONET_BPF_SOURCE")
    candidates = (Path(env),) if env else BPF_SOURCE_CANDIDATES
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError("the BPF program source falconet.bpf.c is not installed (looked in "
                            + ", ".join(map(str, candidates)) + "); reinstall falconet")


TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

#: the largest I/O data snapshot (``collector.snaplen``): the kernel filter scans it for needles
MAX_SNAPLEN = 1024

#: kernel counter slots (``counters`` per-CPU array in the BPF program)
C_EVENTS, C_DROP_BASE, C_ARGS_FULL, C_NO_ENTER, C_USER_READ, C_KERNEL_READ = 0, 1, 9, 10, 11, 12
#: a lifecycle copy for another worker lost (ring full); worker_of full (collector.workers > 1)
C_BCAST_DROP, C_WORKER_FULL = 13, 14
#: events lost before any ring write: a per-CPU scratch/job slot missing, the syscall's pt_regs
#: unreadable, an io_uring operation without a scratch or pending slot (each a drop); an exec
#: emitted without its filename (exec_fn full: degraded, not a drop)
C_LOST_SCRATCH, C_LOST_REGS, C_LOST_IOU, C_EXEC_FN_FULL = 15, 16, 17, 18
#: hdr_t.id bit of a lifecycle copy in a ring of a worker that does not own its process
FOREIGN_ID = 0x8000
#: the value of worker_of that marks the engine's own worker processes (not traced)
WORKER_SKIP = 0xFFFFFFFF
#: ``collector.partition``, the keys a live run's records are routed by; the index is the
#: program's ``-DPARTITION_KEY`` (``owner_of`` in bpf/falconet.bpf.c, falconet.workers.partition)
PARTITION_KEYS = ("lineage", "tgid", "cgroup")
N_COUNTERS = 20

# record layout constants (must match struct hdr_t / rec_exec in the C source)
HDR_SIZE = 96
HDR_A_OFF = 40                  # the six argument words a[0..5]; cpu follows them
N_EXEC_WORDS = 24
EXEC_COMM_OFF = HDR_SIZE + 8 * N_EXEC_WORDS
EXEC_S0_OFF = EXEC_COMM_OFF + 16


@dataclass(frozen=True, slots=True)
class Spec:
    """How one syscall is captured and decoded.

    ``enter``/``exit`` are C call templates (``{id}``, ``{cat}``, ``{n}`` substituted). ``decode``
    is a list of ``param=source`` items: ``res`` (the return value), ``s0``/``s1``/``s2`` (record
    strings), ``u32:i``/``i32:i``/``u64:i``/``i64:i`` (saved word ``i``), ``addr:dst|peer|local``
    (the sockaddr in the record, see docs/collector.md).
    """

    nargs: int
    exit: str
    decode: str
    kind: str = "base"             # record layout: base, str, sock, exec
    enter: str = "save_args(ctx, {id}, {n})"
    tracepoint: str = ""           # tracepoint suffix when it differs from the name


def _str1(i: int) -> str:
    return f"emit_str1(ctx, {{id}}, {{cat}}, {i})"


def _str2(i: int, j: int) -> str:
    return f"emit_str2(ctx, {{id}}, {{cat}}, {i}, {j})"


_BASE = "emit_base(ctx, {id}, {cat})"


def _newfd(call: str) -> str:
    """``call``, then forget the kernel filter's memory of the new fd (see kf_new_fd)."""
    return f"({call}, kf_new_fd(ctx, 0))"


_NEWFD = _newfd(_BASE)


def _io(mode: int) -> str:
    """emit_io: 0 read, 1 write, 2 readv, 3 writev, 4 sendto, 5 recvfrom, 6 sendmsg, 7 recvmsg."""
    return f"emit_io(ctx, {{id}}, {mode})"


#: the socket's local address (bpf sock_local; connect: a[3..5], accept: a[1], a[2], a[4]), which
#: the decoder folds into the tuple (connect: ``sip``/``sport``, accept: ``dip``/``dport``)
LOCAL_KEYS = ("local0", "local1", "local2")


def _sock(ptr: int, ln: int, mode: int, local: int = 0) -> str:
    return f"emit_sock(ctx, {{id}}, {{cat}}, {ptr}, {ln}, {mode}, {local})"


#: capture/decode table; every syscall of ``syscalls.EVENTS`` (except procfork/procexit)
SPECS: dict[str, Spec] = {
    "clone": Spec(5, "emit_clone(ctx, {id}, 0)", "", kind="clone"),
    "clone3": Spec(2, "emit_clone(ctx, {id}, 1)", "", kind="clone"),
    "fork": Spec(0, "emit_clone(ctx, {id}, 2)", "", kind="clone"),
    "vfork": Spec(0, "emit_clone(ctx, {id}, 2)", "", kind="clone"),
    "execve": Spec(3, "emit_exec(ctx, {id})", "", kind="exec",
                   enter="save_exec(ctx, {id}, {n}, 0)"),
    "execveat": Spec(5, "emit_exec(ctx, {id})", "dirfd=i32:0 flags=u32:4", kind="exec",
                     enter="save_exec(ctx, {id}, {n}, 1)"),
    # the kernel filter's cwd verdict (kf_cwd_after) follows both
    "chdir": Spec(1, "emit_chdir(ctx, {id}, {cat})", "path=s0", kind="str"),
    "fchdir": Spec(1, "(" + _BASE + ", kf_fchdir_after(ctx, 0))", "fd=i32:0"),
    "chroot": Spec(1, _str1(0), "path=s0", kind="str"),
    "setuid": Spec(1, _BASE, "uid=u32:0"),
    "setgid": Spec(1, _BASE, "gid=u32:0"),
    "setreuid": Spec(2, _BASE, "ruid=u32:0 euid=u32:1"),
    "setregid": Spec(2, _BASE, "rgid=u32:0 egid=u32:1"),
    "setresuid": Spec(3, _BASE, "ruid=u32:0 euid=u32:1 suid=u32:2"),
    "setresgid": Spec(3, _BASE, "rgid=u32:0 egid=u32:1 sgid=u32:2"),
    "capset": Spec(2, "emit_creds(ctx, {id}, {cat})",
                   "cap_effective=u64:0 cap_permitted=u64:1 cap_inheritable=u64:2"),
    "prctl": Spec(5, "emit_prctl(ctx, {id})", "option=i32:0 arg2_str=s0 arg2_int=i64:1",
                  kind="str"),
    "ptrace": Spec(4, _BASE, "request=i64:0 pid=i32:1 addr=u64:2 data=u64:3"),
    "setns": Spec(2, _BASE, "fd=i32:0 nstype=u32:1"),
    "unshare": Spec(1, _BASE, "flags=u32:0"),
    # ftype (hidden arg): 0 unknown, 1 known and not a directory, 3 a directory (kf_open_drop)
    "open": Spec(3, "emit_open(ctx, {id}, 0, 1)",
                 "fd=res name=s0 flags=u32:1 mode=u32:2 ftype=u32:5", kind="str"),
    "openat": Spec(4, "emit_open(ctx, {id}, 1, 2)",
                   "fd=res dirfd=i32:0 name=s0 flags=u32:2 mode=u32:3 ftype=u32:5", kind="str"),
    "openat2": Spec(4, "emit_openat2(ctx, {id})",
                    "fd=res dirfd=i32:0 name=s0 flags=u64:2 mode=u64:3 resolve=u64:4 ftype=u32:5",
                    kind="str"),
    "creat": Spec(2, "emit_open(ctx, {id}, 0, -1)", "fd=res name=s0 mode=u32:1 ftype=u32:5",
                  kind="str"),
    "memfd_create": Spec(2, _newfd(_str1(0)), "fd=res name=s0 flags=u32:1", kind="str"),
    "close": Spec(1, "emit_close(ctx, {id})", "fd=i32:0"),
    "dup": Spec(1, _NEWFD, "fd=res oldfd=i32:0"),
    "dup2": Spec(2, _NEWFD, "fd=res oldfd=i32:0 newfd=i32:1"),
    "dup3": Spec(3, _NEWFD, "fd=res oldfd=i32:0 newfd=i32:1 flags=u32:2"),
    "unlink": Spec(1, _str1(0), "path=s0", kind="str"),
    "unlinkat": Spec(3, _str1(1), "dirfd=i32:0 name=s0 flags=u32:2", kind="str"),
    "rename": Spec(2, _str2(0, 1), "oldpath=s0 newpath=s1", kind="str"),
    "renameat": Spec(4, _str2(1, 3), "olddirfd=i32:0 oldpath=s0 newdirfd=i32:2 newpath=s1",
                     kind="str"),
    "renameat2": Spec(5, _str2(1, 3),
                      "olddirfd=i32:0 oldpath=s0 newdirfd=i32:2 newpath=s1 flags=u32:4",
                      kind="str"),
    "mkdir": Spec(2, _str1(0), "path=s0 mode=u32:1", kind="str"),
    "mkdirat": Spec(3, _str1(1), "dirfd=i32:0 path=s0 mode=u32:2", kind="str"),
    "chmod": Spec(2, _str1(0), "filename=s0 mode=u32:1", kind="str"),
    "fchmod": Spec(2, _BASE, "fd=i32:0 mode=u32:1"),
    "fchmodat": Spec(3, _str1(1), "dirfd=i32:0 filename=s0 mode=u32:2", kind="str"),
    "link": Spec(2, _str2(0, 1), "oldpath=s0 newpath=s1", kind="str"),
    "linkat": Spec(5, _str2(1, 3), "olddir=i32:0 oldpath=s0 newdir=i32:2 newpath=s1 flags=u32:4",
                   kind="str"),
    "symlink": Spec(2, _str2(0, 1), "target=s0 linkpath=s1", kind="str"),
    "symlinkat": Spec(3, _str2(0, 2), "target=s0 linkdirfd=i32:1 linkpath=s1", kind="str"),
    "mount": Spec(5, "emit_str3(ctx, {id}, {cat}, 0, 1, 2)", "dev=s0 dir=s1 type=s2 flags=u64:3",
                  kind="str"),
    "umount2": Spec(2, _str1(0), "name=s0 flags=u32:1", kind="str", tracepoint="umount"),
    "init_module": Spec(3, _str1(2), "length=u64:1 uargs=s0", kind="str"),
    "finit_module": Spec(3, _str1(1), "fd=i32:0 uargs=s0 flags=u32:2", kind="str"),
    "bpf": Spec(3, _BASE, "cmd=i32:0 fd=res"),
    "userfaultfd": Spec(1, _NEWFD, "fd=res flags=u32:0"),
    # fcntl: {all_fcntl} = 0 emits only F_DUPFD/F_DUPFD_CLOEXEC (bpf emit_fcntl); the new fd is
    # the result
    "fcntl": Spec(3, "emit_fcntl(ctx, {id}, {all_fcntl})", "fd=i32:0 cmd=i32:1"),
    # the two fds in words 4 and 5, a pipe's inode in word 2 (bpf emit_fdpair)
    "pipe": Spec(1, "emit_fdpair(ctx, {id}, {cat}, 0, 2)", "fd1=i32:4 fd2=i32:5 ino=u64:2"),
    "pipe2": Spec(2, "emit_fdpair(ctx, {id}, {cat}, 0, 2)",
                  "fd1=i32:4 fd2=i32:5 ino=u64:2 flags=u32:1"),
    "socketpair": Spec(4, "emit_fdpair(ctx, {id}, {cat}, 3, -1)",
                       "fd1=i32:4 fd2=i32:5 domain=i32:0 type=i32:1 proto=i32:2"),
    "pidfd_open": Spec(2, _NEWFD, "fd=res pid=i32:0 flags=u32:1"),
    "pidfd_getfd": Spec(3, _NEWFD, "fd=res pid_fd=i32:0 target_fd=i32:1 flags=u32:2"),
    "eventfd": Spec(1, _NEWFD, "fd=res initval=u64:0"),
    "eventfd2": Spec(2, _NEWFD, "fd=res initval=u64:0 flags=u32:1"),
    "epoll_create": Spec(1, _NEWFD, "fd=res size=i32:0"),
    "epoll_create1": Spec(1, _NEWFD, "fd=res flags=u32:0"),
    "inotify_init": Spec(0, _NEWFD, "fd=res"),
    "inotify_init1": Spec(1, _NEWFD, "fd=res flags=u32:0"),
    "signalfd": Spec(3, _NEWFD, "fd=res"),
    "signalfd4": Spec(4, _NEWFD, "fd=res flags=u32:3"),
    "timerfd_create": Spec(2, _NEWFD, "fd=res clockid=i32:0 flags=u32:1"),
    "socket": Spec(3, _NEWFD, "fd=res domain=i32:0 type=i32:1 proto=i32:2"),
    # local0..2: the socket's local address from the kernel (bpf sock_local), for the tuple
    "connect": Spec(3, _sock(1, 2, 0, 1),
                    "fd=i32:0 addr=dst local0=u64:3 local1=u64:4 local2=u64:5", kind="sock"),
    "accept": Spec(3, _newfd(_sock(1, 2, 1, 2)),
                   "fd=res listenfd=i32:0 addr=peer local0=u64:1 local1=u64:2 local2=u64:4",
                   kind="sock"),
    "accept4": Spec(4, _newfd(_sock(1, 2, 1, 2)), "fd=res listenfd=i32:0 flags=u32:3 addr=peer "
                    "local0=u64:1 local1=u64:2 local2=u64:4",
                    kind="sock"),
    "bind": Spec(3, _sock(1, 2, 0), "fd=i32:0 addr=local", kind="sock"),
    "listen": Spec(2, _BASE, "fd=i32:0 backlog=i32:1"),
    # I/O with a data snapshot (collector.snaplen bytes, s1; the sockaddr, if any, is s0):
    # traced only when a rule names them, as Falco drops them unless asked
    "read": Spec(3, _io(0), "fd=i32:0 size=u64:2 data=b1 ftype=u32:5", kind="io"),
    "write": Spec(3, _io(1), "fd=i32:0 size=u64:2 data=b1 ftype=u32:5", kind="io"),
    "pread64": Spec(4, _io(0), "fd=i32:0 size=u64:2 pos=u64:3 data=b1 ftype=u32:5", kind="io"),
    "pwrite64": Spec(4, _io(1), "fd=i32:0 size=u64:2 pos=u64:3 data=b1 ftype=u32:5", kind="io"),
    "readv": Spec(3, _io(2), "fd=i32:0 size=res data=b1 ftype=u32:5", kind="io"),
    "writev": Spec(3, _io(3), "fd=i32:0 size=res data=b1 ftype=u32:5", kind="io"),
    "sendto": Spec(6, _io(4), "fd=i32:0 size=u64:2 addr=dst data=b1 ftype=u32:5", kind="io"),
    "recvfrom": Spec(6, _io(5), "fd=i32:0 size=u64:2 addr=peer data=b1 ftype=u32:5", kind="io"),
    "sendmsg": Spec(3, _io(6), "fd=i32:0 size=res addr=dst data=b1 ftype=u32:5", kind="io"),
    "recvmsg": Spec(3, _io(7), "fd=i32:0 size=res addr=peer data=b1 ftype=u32:5", kind="io"),
}

SPECS["open_by_handle_at"] = Spec(3, "emit_open_kpath(ctx, {id}, {cat}, 0, 2, 2)",
                                 "fd=res mountfd=i32:0 path=s0 flags=u32:2", kind="str")


#: the events whose handlers tail-call falconet_kf_open (emit_open, emit_openat2,
#: emit_open_kpath)
_KF_OPEN_EVENTS = frozenset({"open", "openat", "openat2", "creat", "open_by_handle_at"})


def _open_kpath(name_i: int, kind: int, flags_i: int = -1) -> str:
    """``flags_i``: the argument holding the open flags (-1: creat's implied ones; openat2's
    come from its ``open_how``), for the kernel filter."""
    return f"emit_open_kpath(ctx, {{id}}, {{cat}}, {name_i}, {kind}, {flags_i})"


#: the opens with the kernel's path of the opened file (``resolved``, the record's s1), used
#: instead of their :data:`SPECS` entry when ``resolve_paths`` is on (issue 19)
RESOLVED_OPENS: dict[str, Spec] = {
    "open": Spec(3, _open_kpath(0, 0, 1),
                 "fd=res name=s0 resolved=s1 flags=u32:1 mode=u32:2 ftype=u32:5", kind="str"),
    "openat": Spec(4, _open_kpath(1, 0, 2),
                   "fd=res dirfd=i32:0 name=s0 resolved=s1 flags=u32:2 mode=u32:3 ftype=u32:5",
                   kind="str"),
    "openat2": Spec(4, _open_kpath(1, 1),
                    "fd=res dirfd=i32:0 name=s0 resolved=s1 flags=u64:2 mode=u64:3 "
                    "resolve=u64:4 ftype=u32:5", kind="str"),
    "creat": Spec(2, _open_kpath(0, 0, -1), "fd=res name=s0 resolved=s1 mode=u32:1 ftype=u32:5",
                  kind="str"),
}


def spec_of(name: str, resolve_paths: bool) -> Spec:
    """The capture/decode entry of ``name`` for a program built with ``resolve_paths``."""
    return (RESOLVED_OPENS.get(name) if resolve_paths else None) or SPECS[name]


#: event ids: stable order of syscalls.EVENTS (id 0 is unused)
EVENT_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(syscalls.EVENTS)}
ID_NAMES: dict[int, str] = {i: n for n, i in EVENT_IDS.items()}

#: io_uring records (issue 19; the ``io_uring`` section of the C source): record name -> the
#: event type it is reported as. Each record has the layout of that type's syscall record
#: (decoded with its :data:`SPECS` entry) plus word 5 = fixed slot + 1 (low 32 bits, 0 = a plain
#: fd) and the ring (high 32 bits). ``IORING_OP_FIXED_FD_INSTALL`` is reported as ``dup3`` from
#: the slot (``oldfd`` -1), the nearest syscall: it gives a process a new fd for an existing file.
IOU_EVENTS: dict[str, str] = {
    "iou_openat": "openat", "iou_openat2": "openat2", "iou_socket": "socket",
    "iou_connect": "connect", "iou_accept4": "accept4", "iou_close": "close",
    "iou_fixed_fd_install": "dup3", "iou_renameat2": "renameat2", "iou_linkat": "linkat",
}
#: ids of the io_uring records, after every syscall id (the header's id is a u16)
IOU_IDS: dict[str, int] = {name: 200 + i for i, name in enumerate(IOU_EVENTS)}
IOU_TRACEPOINTS = ("io_uring_submit_req", "io_uring_complete")
#: tracepoint fields the io_uring programs read, by macro: (tracepoint, field)
IOU_TP_FIELDS = {
    "IOU_TP_SUBMIT_REQ": ("io_uring_submit_req", "req"),
    "IOU_TP_SUBMIT_OPCODE": ("io_uring_submit_req", "opcode"),
    "IOU_TP_SUBMIT_FLAGS": ("io_uring_submit_req", "flags"),
    "IOU_TP_COMPLETE_REQ": ("io_uring_complete", "req"),
    "IOU_TP_COMPLETE_RES": ("io_uring_complete", "res"),
}


def tracepoint_fields(root: str, group: str, name: str) -> dict[str, int]:
    """``field -> offset`` from a tracepoint's ``format`` file (empty if it cannot be read)."""
    out: dict[str, int] = {}
    try:
        with open(f"{root}/events/{group}/{name}/format") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = [p.strip() for p in line.strip().split(";")]
        if not parts[0].startswith("field:") or len(parts) < 2:
            continue
        decl = parts[0][len("field:"):].split()
        if decl and parts[1].startswith("offset:"):
            out[decl[-1].split("[")[0]] = int(parts[1][len("offset:"):])
    return out


#: io_uring record -> the opcode macro the BPF program filters on (IOU_WANT_<op>)
IOU_OPCODES = {
    "iou_openat": "OPENAT", "iou_openat2": "OPENAT2", "iou_socket": "SOCKET",
    "iou_connect": "CONNECT", "iou_accept4": "ACCEPT", "iou_close": "CLOSE",
    "iou_fixed_fd_install": "FIXED_FD_INSTALL", "iou_renameat2": "RENAMEAT",
    "iou_linkat": "LINKAT",
}


def iouring_cflags(root: str | None, offsets: dict[str, int],
                   events: frozenset[str] | set[str] | None = None) -> list[str] | None:
    """Compiler flags of the io_uring programs for the traced ``events`` (``None``: all), or
    ``None`` when none of them has an io_uring opcode, or the kernel lacks the tracepoints, a
    field of them, or a BTF offset they need (io_uring is then not traced)."""
    from falconet.collector.btf import IOURING_OFFSETS  # noqa: PLC0415 - one small table

    wanted = [op for rec, op in IOU_OPCODES.items()
              if events is None or IOU_EVENTS[rec] in events]
    if not wanted or root is None or any(k not in offsets for k in IOURING_OFFSETS):
        return None
    fields = {tp: tracepoint_fields(root, "io_uring", tp) for tp in IOU_TRACEPOINTS}
    flags = ["-DWANT_IOURING"]
    for macro, (tp, fld) in IOU_TP_FIELDS.items():
        if fld not in fields[tp]:
            return None
        flags.append(f"-D{macro}={fields[tp][fld]}")
    flags += [f"-DEV_{n}={i}" for n, i in IOU_IDS.items()]
    flags += [f"-DIOU_WANT_{op}" for op in wanted]
    return flags


def tracefs_root() -> str | None:
    for root in TRACEFS:
        if os.path.isdir(os.path.join(root, "events", "syscalls")):
            return root
    return None


def tracepoint_name(name: str) -> str:
    spec = SPECS.get(name)
    return (spec.tracepoint if spec and spec.tracepoint else name)


def available(name: str, root: str | None = None) -> bool:
    """True if the kernel has the tracepoints this event needs."""
    if name in syscalls.NON_SYSCALL_EVENTS:
        return True
    root = root or tracefs_root()
    if root is None:
        return False
    tp = tracepoint_name(name)
    return (os.path.isdir(f"{root}/events/syscalls/sys_enter_{tp}")
            and os.path.isdir(f"{root}/events/syscalls/sys_exit_{tp}"))


@dataclass
class BuiltProgram:
    """C text, compiler flags and the tracepoints to attach for one event selection."""

    text: str
    cflags: list[str]
    attach: list[tuple[str, str, str]] = field(default_factory=list)   # (kind, tp, fn)
    #: (syscall nr, exit handler fn) installed in the exit_progs tail-call table
    dispatch: list[tuple[int, str]] = field(default_factory=list)
    events: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()
    #: io_uring submissions/completions are traced (issue 19)
    io_uring: bool = False
    #: (prog array, index, fn) filled besides the dispatch table: the kernel path walk (issue 19)
    tails: list[tuple[str, int, str]] = field(default_factory=list)
    #: opens carry the kernel's path of the opened file (:data:`RESOLVED_OPENS`)
    resolve_paths: bool = False


def rings_code(n: int, workers: int = 1, broadcast: frozenset[int] = frozenset()) -> str:
    """C for ``n`` ring buffers per worker (``workers`` groups of them), the choice of ring (the
    worker's group, then the CPU's ring in it), and the wakeup policy (bcc rewrites map calls
    only in plain code, so each ring gets its own call sites: a switch, not an array of maps).
    ``broadcast``: the event ids written to every worker (``is_bcast``, with ``workers`` > 1).

    Records are committed without waking the consumer (``BPF_RB_NO_WAKEUP``), which polls every
    few milliseconds; every 256th record of a CPU forces a wakeup, so a burst is picked up at
    once. Adaptive wakeups cost an irq_work (often an IPI) each time the consumer had caught up,
    which it mostly has: measured +1.8 us per traced syscall with them.
    """
    total = n * workers
    decl = "".join(f"BPF_RINGBUF_OUTPUT(events{i}, RINGBUF_PAGES);\n" for i in range(total))
    pick = "w * RINGS_PER_WORKER + ring_cpu()"
    res = "".join(f"    case {i}: return events{i}.ringbuf_reserve(size);\n"
                  for i in range(1, total))
    out = "".join(f"    case {i}: return events{i}.ringbuf_output(buf, size, fl);\n"
                  for i in range(1, total))
    cases = "".join(f"    case {i}:\n" for i in sorted(broadcast))
    bcast = ("static __always_inline int is_bcast(u32 id) {\n    switch (id) {\n" + cases
             + "        return 1;\n    default:\n        return 0;\n    }\n}\n"
             if workers > 1 and broadcast else
             "static __always_inline int is_bcast(u32 id) { return 0; }\n")
    return (decl
            + f"#define RINGS_PER_WORKER {n}\n"
            + "static __always_inline u32 ring_cpu(void) {\n"
            + "    u32 c = bpf_get_smp_processor_id() / CPUS_PER_RING;\n"
            + "    return c < RINGS_PER_WORKER ? c : RINGS_PER_WORKER - 1;\n}\n"
            + "static __always_inline void *ring_reserve(u32 w, u32 size) {\n"
            + f"    switch ({pick}) {{\n{res}    default: return events0.ringbuf_reserve(size);\n"
            + "    }\n}\n"
            + "static __always_inline long ring_output(u32 w, void *buf, u32 size, u64 fl) {\n"
            + f"    switch ({pick}) {{\n{out}"
            + "    default: return events0.ringbuf_output(buf, size, fl);\n    }\n}\n"
            + bcast)


def build(events: frozenset[str] | set[str], *, self_tgid: int, offsets: dict[str, int],
          rings: int = 1, cpus_per_ring: int = 1, ring_buffer_pages: int = 2048,
          path_len: int = 512, argv_len: int = 4096,
          env_len: int = 0, args_map_size: int = 32768, snaplen: int = 80,
          io_uring: bool = True, resolve_paths: bool = False, workers: int = 1,
          partition: str = "lineage", all_fcntl: bool = True) -> BuiltProgram:
    """Generate the program for ``events`` (names from :data:`syscalls.EVENTS`). ``rings``:
    ring buffers per worker (one per CPU group); ``workers``: the worker processes of a live
    run (collector.workers), each reading its own ``rings``; ``partition``: the key they are
    routed by (:data:`PARTITION_KEYS`). ``all_fcntl``: every fcntl is emitted (a rule names
    it), else only F_DUPFD/F_DUPFD_CLOEXEC (the fd tables need those).

    Events whose tracepoints the kernel lacks are left out and listed in ``unavailable``.
    """
    for v, what in ((ring_buffer_pages, "ring_buffer_pages"), (path_len, "path_len"),
                    (argv_len, "argv_len")):
        if v <= 0 or v & (v - 1):
            raise ValueError(f"collector.{what} must be a power of two (got {v})")
    if env_len and env_len & (env_len - 1):
        raise ValueError(f"collector.env_len must be 0 or a power of two (got {env_len})")
    root = tracefs_root()
    chosen = {e for e in events if e in syscalls.EVENTS}
    unavailable = frozenset(e for e in chosen if not available(e, root))
    chosen -= unavailable
    cflags = [f"-DSELF_TGID={self_tgid}", f"-DRINGBUF_PAGES={ring_buffer_pages}",
              f"-DCPUS_PER_RING={cpus_per_ring}", f"-DNR_RINGS={rings * workers}",
              f"-DNR_WORKERS={workers}",
              f"-DPATH_LEN={path_len}", f"-DARGV_LEN={argv_len}", f"-DENV_LEN={env_len}",
              f"-DARGS_MAP_SIZE={args_map_size}", f"-DSNAPLEN={snaplen}",
              f"-DSNAP_MASK={(1 << max(snaplen, 8).bit_length()) - 1}"]
    if workers > 1:       # one worker's program has no routing (and keeps its cache key)
        cflags.append(f"-DPARTITION_KEY={PARTITION_KEYS.index(partition)}")
    if not 0 < snaplen <= MAX_SNAPLEN:
        raise ValueError(f"collector.snaplen must be between 1 and {MAX_SNAPLEN} (got {snaplen})")
    biggest = EXEC_S0_OFF + path_len + argv_len + env_len + 3 * path_len
    max_rec = 1 << (2 * biggest - 1).bit_length()      # power of two >= 2 * largest record
    cflags.append(f"-DMAX_REC={max_rec}")
    cflags += [f"-D{k}={v}" for k, v in sorted(offsets.items())]
    cflags += [f"-DEV_{n}={i}" for n, i in EVENT_IDS.items()]
    bcast = frozenset(EVENT_IDS[e] for e in syscalls.LIFECYCLE if e in EVENT_IDS)
    lines = [bpf_source_path().read_text().replace("// @RINGS@",
                                                  rings_code(rings, workers, bcast))]
    attach: list[tuple[str, str, str]] = []
    dispatch: list[tuple[int, str]] = []
    cats = {c: i for i, c in enumerate(syscalls.CATEGORIES)}
    for name in sorted(chosen):
        if name == "procfork":
            cflags.append("-DWANT_PROCFORK")
            attach.append(("auto", "sched_process_fork", "raw_tracepoint__sched_process_fork"))
            continue
        if name == "procexit":
            cflags.append("-DWANT_PROCEXIT")
            attach.append(("tp", "sched:sched_process_exit", "falconet_procexit"))
            continue
        spec = spec_of(name, resolve_paths)
        sub = {"id": EVENT_IDS[name], "cat": cats[syscalls.EVENTS[name].category],
               "n": spec.nargs, "all_fcntl": int(all_fcntl)}
        if spec.kind == "exec":       # exec alone needs an enter program (see the C source)
            lines.append(f"int enter_{name}(void *ctx) {{ return {spec.enter.format(**sub)}; }}")
            attach.append(("tp", f"syscalls:sys_enter_{tracepoint_name(name)}", f"enter_{name}"))
        lines.append(f"int exit_{name}(void *ctx) {{ return {spec.exit.format(**sub)}; }}")
        dispatch.append((syscalls.SYSCALL_NUMBERS[name], f"exit_{name}"))
    iou = iouring_cflags(root, offsets, chosen) if io_uring and dispatch else None
    if iou is not None:
        cflags += iou
        attach += [("tp", "io_uring:io_uring_submit_req", "falconet_iou_submit"),
                   ("tp", "io_uring:io_uring_complete", "falconet_iou_complete")]
    if dispatch:
        # attached last by the loader, once every other program is loaded (see bpfproc.py)
        attach.append(("raw", "sys_exit", "falconet_sys_exit"))
    from falconet.collector.btf import KPATH_OFFSETS  # noqa: PLC0415 - one small table

    # [1]: the kernel filter's decision on the kernel's path of an open (bpf: falconet_kpath_kf)
    tails = ([("kpath_progs", 0, "falconet_kpath"), ("kpath_progs", 1, "falconet_kpath_kf")]
             if dispatch and all(k in offsets for k in KPATH_OFFSETS) else [])
    kpath = bool(tails)
    if dispatch and chosen & _KF_OPEN_EVENTS:
        # every open handler's kernel-filter decision, verified once (bpf: falconet_kf_open)
        tails.append(("kf_progs", 0, "falconet_kf_open"))
    return BuiltProgram("\n".join(lines) + "\n", cflags, attach, dispatch, frozenset(chosen),
                        unavailable, io_uring=iou is not None, tails=tails,
                        resolve_paths=resolve_paths and kpath)
