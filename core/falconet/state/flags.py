"""Text forms of raw syscall values, as Falco renders them: open flags (``O_RDWR|O_CREAT``), clone
flags, socket domains, ptrace requests, capabilities (``CAP_SYS_ADMIN CAP_NET_RAW``), errno names.

All tables are built at import time; renderers are plain functions over dict lookups. Values are
the raw Linux (x86_64) numbers the collector reports (Falco encodes its own ``PPM_*`` bits; the
*names* are the same, so ``evt.arg.flags contains O_TRUNC`` works unchanged).
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable

# ------------------------------------------------------------------------------------ open(2)
O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0, 0o1, 0o2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_DIRECTORY = 0o200000
O_TMPFILE = 0o20000000 | O_DIRECTORY
O_CLOEXEC = 0o2000000
#: Linux open(2) bits -> the PPM_O_* bits Falco's driver reports (open_flags_to_scap): only
#: these exist there, so O_NOFOLLOW, O_NOATIME, O_PATH, O_NOCTTY and O_ASYNC are never shown.
#: O_SYNC is tested as ``flags & O_SYNC``, so O_DSYNC alone also sets it (Falco 0.44.1 shows
#: ``O_SYNC|...|O_DSYNC`` for an O_DSYNC open).
_PPM_BITS: tuple[tuple[int, int], ...] = (
    (0o100, 1 << 2), (0o2000, 1 << 3), (0o10000, 1 << 4), (0o200, 1 << 5), (0o4000, 1 << 6),
    (0o4010000, 1 << 7), (0o1000, 1 << 8), (0o40000, 1 << 9), (0o200000, 1 << 10),
    (0o100000, 1 << 11), (0o2000000, 1 << 12),
)
_PPM_ACC = {O_RDONLY: 1, O_WRONLY: 2, O_RDWR: 3, 3: 3}
_PPM_TMPFILE = 1 << 13
_PPM_F_CREATED = 1 << 14
#: ``ftype`` bit 2: the open created its file (the kernel's FMODE_CREATED, bpf open_created)
FTYPE_CREATED = 1 << 2
#: O_F_CREATED as the renderers take it: a mark above Linux's 32 open(2) bits (open_flags of
#: ``flags | O_F_CREATED``), set from ``ftype`` when an argument is rendered, never by a caller
O_F_CREATED = 1 << 32
#: ``ftype`` bits 3 and 20: the opened file is on an overlayfs upper / lower layer (bpf
#: open_ftype, as Falco's driver); rendered as FD_UPPER_LAYER / FD_LOWER_LAYER through the marks
#: below, like O_F_CREATED
FTYPE_UPPER = 1 << 3
FTYPE_LOWER = 1 << 20
FD_UPPER_LAYER = 1 << 33
FD_LOWER_LAYER = 1 << 34
_PPM_FD_UPPER = 1 << 15
_PPM_FD_LOWER = 1 << 16
#: libsinsp's file_flags table, in its order: a flag is printed when all its bits are still set,
#: then its bits are cleared (so O_RDWR is not also O_WRONLY|O_RDONLY)
_PPM_NAMES: tuple[tuple[str, int], ...] = (
    ("O_LARGEFILE", 1 << 11), ("O_DIRECTORY", 1 << 10), ("O_DIRECT", 1 << 9),
    ("O_TRUNC", 1 << 8), ("O_SYNC", 1 << 7), ("O_NONBLOCK", 1 << 6), ("O_EXCL", 1 << 5),
    ("O_DSYNC", 1 << 4), ("O_APPEND", 1 << 3), ("O_CREAT", 1 << 2), ("O_RDWR", 3),
    ("O_WRONLY", 2), ("O_RDONLY", 1), ("O_CLOEXEC", 1 << 12), ("O_TMPFILE", _PPM_TMPFILE),
    ("O_F_CREATED", _PPM_F_CREATED), ("FD_UPPER_LAYER", _PPM_FD_UPPER),
    ("FD_LOWER_LAYER", _PPM_FD_LOWER),
)


def _memo(fn: Callable[[int], str]) -> Callable[[int], str]:
    """Cache a renderer's results: a host uses few distinct flag values, and rendering one costs
    a loop over the table."""
    cache: dict[int, str] = {}

    def render(v: int, _c: dict[int, str] = cache, _fn: Callable[[int], str] = fn) -> str:
        s = _c.get(v)
        if s is None:
            s = _fn(v)
            if len(_c) < 4096:
                _c[v] = s
        return s
    render.__doc__ = fn.__doc__
    return render


@_memo
def open_flags(v: int) -> str:
    """Falco's text of open flags, e.g. ``O_TRUNC|O_CREAT|O_WRONLY|O_CLOEXEC``: the Linux bits
    mapped to Falco's, named in libsinsp's table order (tests/fields/test_vs_falco.py)."""
    ppm = _PPM_ACC[v & O_ACCMODE]
    for bit, p in _PPM_BITS:
        if v & bit:
            ppm |= p
    if v & O_TMPFILE == O_TMPFILE:
        ppm |= _PPM_TMPFILE
    if v & O_F_CREATED:
        ppm |= _PPM_F_CREATED
    if v & FD_UPPER_LAYER:
        ppm |= _PPM_FD_UPPER
    if v & FD_LOWER_LAYER:
        ppm |= _PPM_FD_LOWER
    names = []
    for name, bits in _PPM_NAMES:
        if ppm & bits == bits:
            names.append(name)
            ppm &= ~bits
    return "|".join(names)


def is_open_read(flags: int) -> bool:
    return flags & O_ACCMODE in (O_RDONLY, O_RDWR) and not flags & 0o10000000   # not O_PATH


def is_open_write(flags: int) -> bool:
    return flags & O_ACCMODE in (O_WRONLY, O_RDWR) or bool(flags & O_TRUNC)


def _bits(table: tuple[tuple[int, str], ...], zero: str = "") -> Callable[[int], str]:
    """A renderer for a plain bit-flag table; leftover unknown bits are shown in hex."""
    def render(v: int, _t: tuple[tuple[int, str], ...] = table, _zero: str = zero) -> str:
        if v == 0:
            return _zero
        names, rest = [], v
        for bit, name in _t:
            if v & bit == bit:
                names.append(name)
                rest &= ~bit
        if rest:
            names.append(hex(rest))
        return "|".join(names)
    return _memo(render)


def _enum(table: dict[int, str]) -> Callable[[int], str]:
    def render(v: int, _t: dict[int, str] = table) -> str:
        return _t.get(v, str(v))
    return render


# ------------------------------------------------------------------------------------ clone(2)
CLONE_VM, CLONE_FS, CLONE_FILES = 0x100, 0x200, 0x400
CLONE_PARENT, CLONE_THREAD = 0x8000, 0x10000
CLONE_NEWPID = 0x20000000
CLONE_BITS = (
    (0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"), (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"), (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"), (0x400000, "CLONE_DETACHED"), (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"), (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"), (0x80000000, "CLONE_IO"),
)
clone_flags = _bits(CLONE_BITS, "0")


def _clone_flags(v: int) -> str:
    """clone(2) flags; the low byte is the exit signal and is not a flag."""
    return clone_flags(v & ~0xFF) if v & ~0xFF else "0"


# ------------------------------------------------------------------------------------ sockets
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
_AF = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
       9: "AF_X25", 10: "AF_INET6", 15: "AF_KEY", 16: "AF_NETLINK", 17: "AF_PACKET",
       29: "AF_CAN", 31: "AF_BLUETOOTH", 38: "AF_ALG", 40: "AF_VSOCK", 44: "AF_XDP"}
socket_family = _enum(_AF)
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
               5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}


def socket_type(v: int) -> str:
    names = [_SOCK_TYPES.get(v & 0xF, str(v & 0xF))]
    if v & 0o4000:
        names.append("SOCK_NONBLOCK")
    if v & 0o2000000:
        names.append("SOCK_CLOEXEC")
    return "|".join(names)


# ------------------------------------------------------------------------------------ misc
_PTRACE = {0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
           4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
           8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
           14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH",
           17: "PTRACE_DETACH", 24: "PTRACE_SYSCALL", 0x4200: "PTRACE_SETOPTIONS",
           0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO", 0x4203: "PTRACE_SETSIGINFO",
           0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE",
           0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN"}
ptrace_request = _enum(_PTRACE)
memfd_flags = _bits(((1, "MFD_CLOEXEC"), (2, "MFD_ALLOW_SEALING"), (4, "MFD_HUGETLB"),
                     (8, "MFD_NOEXEC_SEAL"), (16, "MFD_EXEC")), "0")
at_flags = _bits(((0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"),
                  (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
                  (0x1000, "AT_EMPTY_PATH")), "0")
cloexec_flags = _bits(((0o2000000, "O_CLOEXEC"), (0o4000, "O_NONBLOCK")), "0")
mount_flags = _bits(((1, "MS_RDONLY"), (2, "MS_NOSUID"), (4, "MS_NODEV"), (8, "MS_NOEXEC"),
                     (16, "MS_SYNCHRONOUS"), (32, "MS_REMOUNT"), (64, "MS_MANDLOCK"),
                     (128, "MS_DIRSYNC"), (1024, "MS_NOATIME"), (2048, "MS_NODIRATIME"),
                     (4096, "MS_BIND"), (8192, "MS_MOVE"), (16384, "MS_REC"),
                     (1 << 16, "MS_UNBINDABLE"), (1 << 17, "MS_PRIVATE"), (1 << 18, "MS_SLAVE"),
                     (1 << 19, "MS_SHARED")), "0")
umount_flags = _bits(((1, "MNT_FORCE"), (2, "MNT_DETACH"), (4, "MNT_EXPIRE"),
                      (8, "UMOUNT_NOFOLLOW")), "0")
rename_flags = _bits(((1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")), "0")
resolve_flags = _bits(((1, "RESOLVE_NO_XDEV"), (2, "RESOLVE_NO_MAGICLINKS"),
                       (4, "RESOLVE_NO_SYMLINKS"), (8, "RESOLVE_BENEATH"),
                       (16, "RESOLVE_IN_ROOT"), (32, "RESOLVE_CACHED")), "0")
_PRCTL = {1: "PR_SET_PDEATHSIG", 4: "PR_SET_DUMPABLE", 8: "PR_SET_KEEPCAPS", 15: "PR_SET_NAME",
          16: "PR_GET_NAME", 22: "PR_SET_SECCOMP", 36: "PR_SET_CHILD_SUBREAPER",
          38: "PR_SET_NO_NEW_PRIVS", 47: "PR_CAP_AMBIENT"}
prctl_option = _enum(_PRCTL)
_BPF_CMDS = {0: "BPF_MAP_CREATE", 1: "BPF_MAP_LOOKUP_ELEM", 2: "BPF_MAP_UPDATE_ELEM",
             5: "BPF_PROG_LOAD", 6: "BPF_OBJ_PIN", 7: "BPF_OBJ_GET", 8: "BPF_PROG_ATTACH",
             28: "BPF_LINK_CREATE"}
bpf_cmd = _enum(_BPF_CMDS)
#: fcntl commands by Linux number, with libscap's names (its fcntl_commands table)
_FCNTL_CMDS = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
               5: "F_GETLK", 6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN",
               10: "F_SETSIG", 11: "F_GETSIG", 15: "F_SETOWN_EX", 16: "F_GETOWN_EX",
               36: "F_OFD_GETLK", 37: "F_OFD_SETLK", 38: "F_OFD_SETLKW", 1024: "F_SETLEASE",
               1025: "F_GETLEASE", 1026: "F_NOTIFY", 1029: "F_CANCELLK",
               1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ"}
fcntl_cmd = _enum(_FCNTL_CMDS)

#: execve's ``flags`` parameter in Falco (PPM_EXE_*), synthesised from the exe flags we track
EXE_WRITABLE, EXE_UPPER_LAYER, EXE_FROM_MEMFD, EXE_LOWER_LAYER = 1, 2, 4, 8
exe_flags = _bits(((1, "EXE_WRITABLE"), (2, "EXE_UPPER_LAYER"), (4, "EXE_FROM_MEMFD"),
                   (8, "EXE_LOWER_LAYER")), "0")


def file_mode(v: int) -> str:
    return f"0{v:o}"


#: libs' chmod_mode table, in its order (the driver's PPM_S_* bits are the POSIX ones)
_CHMOD_MODE = ((0o1, "S_IXOTH"), (0o2, "S_IWOTH"), (0o4, "S_IROTH"), (0o10, "S_IXGRP"),
               (0o20, "S_IWGRP"), (0o40, "S_IRGRP"), (0o100, "S_IXUSR"), (0o200, "S_IWUSR"),
               (0o400, "S_IRUSR"), (0o1000, "S_ISVTX"), (0o2000, "S_ISGID"), (0o4000, "S_ISUID"))


def chmod_mode(v: int) -> str:
    """chmod/fchmod/fchmodat's ``mode`` (libs PT_MODE): evt.arg.mode is libs' resolved string,
    the names of the set bits in table order (``S_IROTH|S_IRGRP|S_IWUSR|S_IRUSR|S_ISUID`` for
    04644; rules test ``evt.arg.mode contains S_ISUID``), the octal number when none is set
    (``0``; sinsp_evt::get_param_as_str, case PT_MODE)."""
    names = "|".join(n for bit, n in _CHMOD_MODE if v & bit)
    return names or (f"0{v:o}" if v else "0")


# ------------------------------------------------------------------------------------ capabilities
CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
_CAP_CACHE: dict[int, str] = {}


def caps(mask: int) -> str:
    """``CAP_CHOWN CAP_DAC_OVERRIDE ...`` (space separated, Falco's form). Cached per mask: a host
    has only a handful of distinct capability sets."""
    s = _CAP_CACHE.get(mask)
    if s is None:
        s = " ".join(n for i, n in enumerate(CAP_NAMES) if mask >> i & 1)
        if len(_CAP_CACHE) < 4096:
            _CAP_CACHE[mask] = s
    return s


# ------------------------------------------------------------------------------------ errno
_ERRNO: dict[int, str] = dict(_errno.errorcode)
_ERRNO.setdefault(512, "ERESTARTSYS")
_ERRNO.setdefault(115, "EINPROGRESS")


def res_str(res: int) -> str:
    """Falco's ``evt.res``: ``SUCCESS`` or the errno name (``ENOENT``)."""
    if res >= 0:
        return "SUCCESS"
    return _ERRNO.get(-res, str(res))


# ------------------------------------------------------------------------------------ per-event
#: renderer for ``(event type, arg name)``; ``(None, name)`` applies to every event type
_OPENS = ("open", "openat", "openat2", "creat", "open_by_handle_at")
RENDERERS: dict[tuple[str | None, str], Callable[[int], str]] = {}
for _t in _OPENS:
    RENDERERS[(_t, "flags")] = open_flags
    RENDERERS[(_t, "mode")] = file_mode
for _t in ("clone", "clone3", "fork", "vfork", "unshare"):
    RENDERERS[(_t, "flags")] = _clone_flags
for _t in ("dup3", "accept4", "pipe2", "eventfd2", "inotify_init1", "signalfd4", "epoll_create1"):
    RENDERERS[(_t, "flags")] = cloexec_flags
for _t in ("linkat", "unlinkat", "execveat", "fchmodat", "fchownat"):
    RENDERERS[(_t, "flags")] = at_flags
for _t in ("mkdir", "mkdirat"):
    RENDERERS[(_t, "mode")] = file_mode
for _t in ("chmod", "fchmod", "fchmodat"):
    RENDERERS[(_t, "mode")] = chmod_mode
RENDERERS.update({
    ("memfd_create", "flags"): memfd_flags,
    ("mount", "flags"): mount_flags,
    ("umount2", "flags"): umount_flags,
    ("renameat2", "flags"): rename_flags,
    ("openat2", "resolve"): resolve_flags,
    ("setns", "nstype"): _clone_flags,
    ("socket", "domain"): socket_family,
    ("socket", "type"): socket_type,
    ("ptrace", "request"): ptrace_request,
    ("prctl", "option"): prctl_option,
    ("bpf", "cmd"): bpf_cmd,
    ("fcntl", "cmd"): fcntl_cmd,
    ("socketpair", "domain"): socket_family,
    ("socketpair", "type"): socket_type,
    ("execve", "flags"): exe_flags,
    ("execveat", "flags"): at_flags,
    (None, "family"): socket_family,
    (None, "cap_effective"): caps,
    (None, "cap_permitted"): caps,
    (None, "cap_inheritable"): caps,
})
