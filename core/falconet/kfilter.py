"""The kernel filter of open events: the plan derived from the rules, and its decision procedure.

The eBPF collector drops, in the kernel, open events no loaded rule can match and no state
needs; :mod:`falconet.rules.kfilter` derives the :class:`FilterPlan` from the rules (a
*necessary* condition of every rule on each open type), this module holds what both sides
share: the plan, the decision (:func:`open_passes`, which the BPF program implements
byte for byte) and :class:`FdTracker`, the userspace emulation of the kernel's fd tracking
(``falconet replay --kernel-filter`` applies both to a capture: the soundness replay).

The decision, for one open-family event (``open``, ``openat``, ``openat2``, ``creat``) of a
filtered type with filter ``tf``:

1. ``read = is_open_read(flags)``, ``write = is_open_write(flags)`` exactly as
   :mod:`falconet.state.flags` computes ``evt.is_open_read``/``evt.is_open_write``
   (``creat`` is ``O_WRONLY|O_CREAT|O_TRUNC``; ``openat2``'s flags are ``how.flags``);
   ``ok = res >= 0``.
2. ``ok and is_dir`` → pass: a directory's fd may be a ``dirfd`` or an ``fchdir`` target, which
   the state needs whatever the rules say.
3. The *live* clauses are those whose ``need_read``/``need_write``/``need_success`` the event
   satisfies. None live → drop, reason ``failed`` if some clause would be live were the call
   successful, else ``flags``. 3b. Of those, a clause with a ``proc.name`` term (``names``)
   stays live only when the process's exec-time name, as the kernel recorded it at its last
   successful ``execve`` (``kf_exec``), is one of them, or is unknown; none left → drop,
   reason ``process``.
4. A live clause with ``any_path``, or :func:`irregular_path` (the raw path may differ from
   ``fd.name``: relative, ``dirfd``-based, not normalised, too long for the kernel's key) →
   pass. A relative raw path (to a ``dirfd`` or the cwd) passes unless it is
   :func:`plain_relative` and its directory has a verdict (``below``, :class:`FdTracker`); then
   it passes iff a live clause :func:`clause_relpass`, :func:`clause_below` ``below`` or
   :func:`clause_rel_suffix` (a drop goes on to 6).
5. Else pass iff the raw path is one of the live clauses' ``exact`` names, starts with one of
   their ``prefixes`` or ends with one of their ``suffixes``;
6. else, for a successful open whose kernel path (``resolved``, the path walk of the new fd)
   is known, pass iff that path is irregular or passes step 5; else drop, reason ``path``.
   (The rules see the resolved path too: :mod:`falconet.rules.views`.)

Why it is sound: each clause set over-approximates every rule on the type, so an event
dropped at 3 or 5 fails every rule's necessary condition; for a regular path
(``not irregular_path(raw)``) the state's ``fd.name`` *is* the raw path (it is absolute and
already normal), so the test on the raw bytes is the test on ``fd.name``; the resolved-path
view's ``fd.name`` *is* the kernel's path, tested the same way at 6, and the clauses'
``fd.resolved_name`` sets are tested on both paths (a superset of the resolved one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})
#: paths of this many bytes or more are irregular (always pass): the kernel's key length
KEY_LEN = 255
#: entries of the kernel's path tries (``kf_paths``, ``kf_rpaths`` in bpf/falconet.bpf.c)
TRIE_ENTRIES = 16384
RTRIE_ENTRIES = 1024
AT_FDCWD = -100
#: ``ftype`` (see :func:`event_is_dir`) of a directory the kernel identified
_FTYPE_DIR = 3

#: drop reasons of :func:`open_passes` and :class:`FdTracker` (the labels of the metric
#: ``falconet_kernel_filtered_events_total{type,reason}``)
REASON_FAILED = "failed"
REASON_FLAGS = "flags"
REASON_PATH = "path"
REASON_UNTRACKED_FD = "untracked_fd"
REASON_NOT_SOCKET = "not_socket"
REASON_CONTENT = "content"
#: the process's name (``proc.name``, the exec-time comm) is in no live clause's names
REASON_PROCESS = "process"
#: a new task's own return from clone/fork (res 0): no rule reads that type, and the state
#: learns the child from ``procfork`` (and the parent's return), never from this one
REASON_CHILD = "child"
REASONS = (REASON_FAILED, REASON_FLAGS, REASON_PATH, REASON_UNTRACKED_FD, REASON_NOT_SOCKET,
           REASON_CONTENT, REASON_PROCESS, REASON_CHILD)
#: bytes of the kernel's comm (TASK_COMM_LEN, NUL included): a longer name is never a comm
COMM_LEN = 16

#: the syscalls that make a task; each returns twice, 0 in the child
CLONE_TYPES = frozenset({"clone", "clone3", "fork", "vfork"})

#: the I/O calls the collector traces with a data snapshot (``evt.buffer``)
IO_TYPES = frozenset({"read", "write", "pread64", "pwrite64", "readv", "writev", "sendto",
                      "recvfrom", "sendmsg", "recvmsg"})
#: I/O calls the state parser learns from (a UDP socket's addresses): never filtered by their
#: data, only by their fd type (the kernel scans no needles in their handlers)
IO_STATE_TYPES = frozenset({"sendto", "recvfrom", "sendmsg", "recvmsg"})
#: needles the kernel can look for in one event type's data, and the bytes of each it compares
MAX_NEEDLES = 4
NEEDLE_LEN = 8

# open(2) flag bits, as falconet.state.flags has them (the bottom layer imports no state; a
# test checks the two agree)
_O_ACCMODE = 0o3
_O_RDONLY, _O_WRONLY, _O_RDWR = 0, 0o1, 0o2
_O_TRUNC = 0o1000
_O_PATH = 0o10000000
#: what creat(2) opens with (the state parser's flags for it)
CREAT_FLAGS = 0o1101            # O_WRONLY|O_CREAT|O_TRUNC


def is_open_read(flags: int) -> bool:
    """``evt.is_open_read``: read access, and not ``O_PATH``."""
    return flags & _O_ACCMODE in (_O_RDONLY, _O_RDWR) and not flags & _O_PATH


def is_open_write(flags: int) -> bool:
    """``evt.is_open_write``: write access or ``O_TRUNC``."""
    return flags & _O_ACCMODE in (_O_WRONLY, _O_RDWR) or bool(flags & _O_TRUNC)


@dataclass(frozen=True, slots=True)
class Clause:
    """One conjunction; the event type passes if ANY of its clauses holds."""

    any_path: bool                  # no constraint on the path
    exact: frozenset[str]           # fd.name must equal one of these (absolute)
    prefixes: frozenset[str]        # or start with one of these
    need_read: bool                 # evt.is_open_read must be true
    need_write: bool                # evt.is_open_write must be true
    need_success: bool              # evt.res >= 0 (fd.num >= 0, evt.rawres >= 0, ...)
    #: or end with one of these (``fd.filename = x`` is the suffix ``/x``; ``endswith``)
    suffixes: frozenset[str] = frozenset()
    #: ``proc.name`` must be one of these (``None``: any process)
    names: frozenset[str] | None = None

    def describe(self) -> str:
        needs = [w for w, on in (("read", self.need_read), ("write", self.need_write),
                                 ("success", self.need_success)) if on]
        cond = " and ".join(needs) if needs else "any flags"
        if self.names is not None:
            shown = ", ".join(sorted(self.names)[:6]) + (
                f", ... ({len(self.names)} in all)" if len(self.names) > 6 else "")
            cond += f", proc.name in ({shown})"
        if self.any_path:
            return f"{cond}, any path"
        parts = [f"= {p}" for p in sorted(self.exact)] + \
            [f"startswith {p}" for p in sorted(self.prefixes)] + \
            [f"endswith {p}" for p in sorted(self.suffixes)]
        if not parts:
            return f"{cond}, irregular paths only"
        shown = ", ".join(parts[:6]) + (f", ... ({len(parts)} in all)" if len(parts) > 6 else "")
        return f"{cond}, path {shown}"


@dataclass(frozen=True)
class TypeFilter:
    """The filter of one event type: ``clauses == ()`` means no rule can match (only the state
    needs this type: directories pass, everything else drops)."""

    event_type: str
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class IoFilter:
    """The filter of one I/O event type (:data:`IO_TYPES`): every rule on it needs a socket fd
    (``sockets_only``), and/or its data snapshot to contain one of ``needles`` (``()``: any
    data). A needle is the first :data:`NEEDLE_LEN` bytes of an ``evt.buffer contains``
    literal: containing the literal implies containing its start."""

    event_type: str
    sockets_only: bool
    needles: tuple[bytes, ...]

    def describe(self) -> str:
        parts = ["socket fds only"] if self.sockets_only else []
        if self.needles:
            parts.append("data containing " + " or ".join(repr(n.decode("latin-1"))
                                                           for n in self.needles))
        return " and ".join(parts) or "unfiltered"


@dataclass(frozen=True)
class FilterPlan:
    """What the kernel filters, derived from the rules at load time."""

    types: dict[str, TypeFilter]            # filtered event types (a subset of OPEN_TYPES)
    unfiltered: dict[str, str]              # traced open-family type -> why it is not filtered
    filter_close: bool                      # closes of fds whose open was filtered may be dropped
    #: notes for ``rules list`` (e.g. which rule made open filtering impossible)
    notes: tuple[str, ...] = field(default=())
    #: filtered I/O event types (a subset of IO_TYPES)
    io: dict[str, IoFilter] = field(default_factory=dict)
    #: clone types (of :data:`CLONE_TYPES`) whose child-side return (res 0) is dropped: no
    #: rule or plugin reads the type (the parent's return always passes)
    child_clones: frozenset[str] = frozenset()

    def describe(self) -> list[str]:
        """Lines for ``falconet rules list``: each open type's filter, or why it has none."""
        out = []
        for t in sorted(OPEN_TYPES | set(self.types) | set(self.unfiltered)):
            tf = self.types.get(t)
            if tf is not None:
                if not tf.clauses:
                    out.append(f"{t}: no rule matches it: only directory opens pass")
                    continue
                out.append(f"{t}: passes if (directory) or any of:")
                out.extend(f"  - {c.describe()}" for c in tf.clauses)
            elif t in self.unfiltered:
                out.append(f"{t}: unfiltered: {self.unfiltered[t]}")
        out.extend(f"{t}: the child's return (res 0) is dropped: no rule or plugin reads {t}"
                   for t in sorted(self.child_clones))
        if self.types:
            out.append("relative opens: " + (
                "decided by the directory verdict of their dirfd or of the cwd"
                if relative_filtering(self) else "pass (the path keys do not fit the kernel's "
                "tries)"))
        out.append("close: " + ("closes of fds whose open was filtered are dropped"
                                if self.filter_close else "unfiltered"))
        out.extend(f"{t}: passes if {f.describe()}" for t, f in sorted(self.io.items()))
        out.extend(self.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``rules list --json`` shows it."""
        return {
            "types": {t: [{"any_path": c.any_path, "exact": sorted(c.exact),
                           "prefixes": sorted(c.prefixes), "suffixes": sorted(c.suffixes),
                           "need_read": c.need_read,
                           "need_write": c.need_write, "need_success": c.need_success,
                           "proc_names": None if c.names is None else sorted(c.names)}
                          for c in tf.clauses] for t, tf in sorted(self.types.items())},
            "unfiltered": dict(sorted(self.unfiltered.items())),
            "filter_close": self.filter_close,
            "relative_opens": bool(self.types) and relative_filtering(self),
            "io": {t: {"sockets_only": f.sockets_only,
                       "needles": [n.decode("latin-1") for n in f.needles]}
                   for t, f in sorted(self.io.items())},
            "child_clones": sorted(self.child_clones),
        }


def irregular_path(raw: str) -> bool:
    """True = the raw path may differ from ``fd.name`` after normalisation: it always passes.

    Relative (``dirfd``/cwd-based), at least :data:`KEY_LEN` bytes, with ``//``, a ``.`` or
    ``..`` component, a trailing ``/``, or ``../`` anywhere (``a../b``: the derivation reads
    ``fd.nameraw contains "../"`` as "irregular paths only"). A dot that starts a name
    (``/root/.ssh``) is regular: normalisation changes only ``.``/``..`` components and ``//``.
    ``kf_irregular`` in ``bpf/falconet.bpf.c`` is the same test on the bytes."""
    if (not raw.startswith("/") or len(raw.encode("utf-8", "surrogateescape")) >= KEY_LEN
            or "//" in raw or "../" in raw or (raw.endswith("/") and raw != "/")):
        return True
    return "/." in raw and any(c in (".", "..") for c in raw.split("/"))


def kernel_path_irregular(path: str) -> bool:
    """:func:`irregular_path` for a path of the kernel's walk (absolute, no ``//``, no ``.`` or
    ``..`` component): at least :data:`KEY_LEN` bytes, or ``../`` in it (a name ending in
    ``..``). ``falconet_kpath_kf`` in ``bpf/falconet.bpf.c`` tests exactly this."""
    return len(path.encode("utf-8", "surrogateescape")) >= KEY_LEN or "../" in path


def _path_hits(clauses: list[Clause], path: str) -> bool:
    """Whether the kernel's ``path`` passes one of ``clauses`` (irregular, or in their
    names/prefixes/suffixes)."""
    if kernel_path_irregular(path):
        return True
    return any(c.any_path or path in c.exact or (c.prefixes and path.startswith(tuple(c.prefixes)))
               or (c.suffixes and path.endswith(tuple(c.suffixes))) for c in clauses)


def plain_relative(rel: str) -> bool:
    """A relative name the kernel can place below its directory: ``dir + "/" + rel`` is
    already normal (not empty, not absolute, no ``//``, no ``.``/``..`` component, no
    ``../`` anywhere, no trailing ``/``, under :data:`KEY_LEN` bytes with the ``/``), so the
    state's ``fd.name`` is exactly that join and lies strictly below ``dir``."""
    return bool(rel) and rel[0] != "/" and not irregular_path("/" + rel)


def clause_relpass(c: Clause) -> bool:
    """A clause with an exact name or prefix that is not absolute (``fd.nameraw = x``,
    ``fd.name startswith x`` with a relative ``x``): relative opens always pass it (the raw
    name, or a name userspace could not resolve, is compared as is)."""
    return any(e[:1] != "/" for e in c.exact) or any(p[:1] != "/" for p in c.prefixes)


def clause_below(c: Clause, d: str) -> bool:
    """Whether a path strictly below the directory ``d`` (absolute, regular, not ``/``) can be
    one of ``c``'s exact names or start with one of its prefixes. The kernel: ``kf_paths``
    looked up with ``d + "/"`` and a NUL (prefixes of it, and the :func:`ancestor_keys`)."""
    b = d + "/"
    return (any(e.startswith(b) for e in c.exact)
            or any(p and (p.startswith(b) or b.startswith(p)) for p in c.prefixes))


def clause_rel_suffix(c: Clause, rel: str) -> bool:
    """Whether ``dir + "/" + rel`` can end with one of ``c``'s suffixes, whatever ``dir``:
    the suffix ends ``"/" + rel``, or ``"/" + rel`` ends a suffix (then the suffix's part
    before it must end ``dir``: unknown to the kernel, so it passes)."""
    q = "/" + rel
    return any(x and (q.endswith(x) or x.endswith(q)) for x in c.suffixes)


def ancestor_keys(c: Clause) -> set[str]:
    """``A/`` for every directory ``A`` (not ``/``) that has one of ``c``'s exact names or
    prefixes strictly below it: stored NUL-terminated in ``kf_paths``, where the directory
    verdict's lookup of ``D/`` + NUL finds them (a regular path never ends in ``/``, so the
    file lookups never do)."""
    out: set[str] = set()
    for x in (*c.exact, *c.prefixes):
        i = x.find("/", 1)
        while i > 0:
            out.add(x[:i + 1])
            i = x.find("/", i + 1)
    return out


def suffix_tails(c: Clause) -> set[str]:
    """The tails ``x[i:]`` (``i > 0``, ``x[i] == "/"``) of ``c``'s suffixes: a relative name
    ``rel`` with ``"/" + rel`` among them may complete the suffix below some directory.
    Stored reversed and NUL-terminated in ``kf_rpaths``."""
    out: set[str] = set()
    for x in c.suffixes:
        i = x.find("/", 1)
        while i > 0:
            out.add(x[i:])
            i = x.find("/", i + 1)
    return out


def comm_matches(c: Clause, comm: str | None) -> bool:
    """Whether a process whose exec-time comm is ``comm`` (``None``: unknown to the kernel)
    can meet ``c``'s ``proc.name`` term (``kf_names`` in the kernel: the comm's 16 bytes)."""
    return c.names is None or comm is None or comm in c.names


def open_passes(tf: TypeFilter, raw: str, flags: int, res: int, is_dir: bool,
                resolved: str = "", below: str | None = None,
                comm: str | None = None) -> str | None:
    """``None`` = the event passes to userspace; else why it is dropped: ``failed``, ``flags``
    or ``path`` (see the module's docstring: the kernel decides exactly this way).
    ``resolved``: the kernel's path of the opened file ("" unknown): a successful open whose
    requested path fails the live clauses still passes when that path passes them (step 6).
    ``below``: for a relative ``raw``, the directory its ``dirfd``'s verdict was computed for
    (the directory itself or an ancestor, see :class:`FdTracker`); ``None``: none, it passes.
    ``comm``: the process's name at its last exec as the kernel recorded it (``None``:
    unknown, every ``proc.name`` term holds): a clause whose names lack it is not live (step
    3b; none left: ``process``)."""
    ok = res >= 0
    if ok and is_dir:
        return None
    read = is_open_read(flags)
    write = is_open_write(flags)
    live = False                # some clause's needs are met
    flags_live = False          # some clause's flags and success are met (its name may not be)
    failed_only = False         # some clause's flags are met, its success is not
    irregular: bool | None = None
    live_cs: list[Clause] = []
    relative = raw[:1] != "/"
    for c in tf.clauses:
        if (c.need_read and not read) or (c.need_write and not write):
            continue
        if c.need_success and not ok:
            failed_only = True
            continue
        flags_live = True
        if not comm_matches(c, comm):
            continue
        live = True
        live_cs.append(c)
        if c.any_path or raw in c.exact:
            return None
        if irregular is None:
            irregular = (below is None or not plain_relative(raw)) if relative \
                else irregular_path(raw)
            if irregular:
                return None
        if relative:
            if (clause_relpass(c) or clause_below(c, below or "/")
                    or clause_rel_suffix(c, raw)):
                return None
            continue
        if c.prefixes and raw.startswith(tuple(c.prefixes)):
            return None
        if c.suffixes and raw.endswith(tuple(c.suffixes)):
            return None
    if not flags_live:
        return REASON_FAILED if failed_only else REASON_FLAGS
    if not live:
        return REASON_PROCESS
    if resolved and ok and _path_hits(live_cs, resolved):
        return None
    return REASON_PATH


# ------------------------------------------------------------------------------ events
def event_open_flags(evt: Any) -> int:
    """The open flags of an open-family event, as the state parser reads them (``creat``:
    ``O_WRONLY|O_CREAT|O_TRUNC`` when it carries none)."""
    f = evt.args.get("flags")
    if f is None:
        return CREAT_FLAGS if evt.type == "creat" else 0
    return int(f)


def event_is_dir(evt: Any) -> bool:
    """Whether the opened file is a directory, from the hidden arg ``ftype`` the collector
    reads off the new fd's inode (bit 0: known, bit 1: a directory). Unknown (no ``ftype``:
    captures recorded before the collector reported it, or the kernel could not read it)
    counts as a directory, so the event passes, as in the kernel."""
    v = evt.args.get("ftype")
    if not isinstance(v, int) or not v & 1:
        return True
    return bool(v & 2)


def event_is_socket(evt: Any) -> bool | None:
    """Whether an I/O event's fd is a socket, from ``ftype`` (``None``: unknown)."""
    v = evt.args.get("ftype")
    if not isinstance(v, int) or not v & 1:
        return None
    return (v >> 4) & 0o170000 == 0o140000


def io_passes(f: IoFilter, is_socket: bool | None, data: bytes) -> str | None:
    """``None`` = the I/O event passes; else ``not_socket`` or ``content`` (``kf_io_early`` /
    ``kf_io_drop`` in the kernel). An unknown fd type passes the socket test."""
    if f.sockets_only and is_socket is False:
        return REASON_NOT_SOCKET
    if f.needles and f.event_type not in IO_STATE_TYPES and not any(n in data
                                                                    for n in f.needles):
        return REASON_CONTENT
    return None


def io_event_passes(f: IoFilter, evt: Any) -> str | None:
    """:func:`io_passes` for an event (its ``data`` arg, bytes or surrogate-escaped text)."""
    data = evt.args.get("data", b"")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    elif not isinstance(data, bytes):
        data = b""
    return io_passes(f, event_is_socket(evt), data)


def open_event_passes(tf: TypeFilter, evt: Any, below: str | None = None,
                      comm: str | None = None) -> str | None:
    """:func:`open_passes` for an :class:`~falconet.events.Event` (``name``, ``flags``,
    ``res``); an event without a return value passes."""
    res = evt.res
    if res is None:
        return None
    raw = evt.args.get("name")
    if not isinstance(raw, str):
        return None
    resolved = evt.args.get("resolved")
    return open_passes(tf, raw, event_open_flags(evt), int(res), event_is_dir(evt),
                       resolved if isinstance(resolved, str) else "", below, comm)


def event_dirfd(evt: Any) -> int:
    """The ``dirfd`` of an open (``open``/``creat``: ``AT_FDCWD``, -100)."""
    d = evt.args.get("dirfd")
    return int(d) if isinstance(d, int) else AT_FDCWD


def _key_len(x: str) -> int:
    return len(x.encode("utf-8", "surrogateescape"))


def relative_filtering(plan: FilterPlan) -> bool:
    """Whether the kernel keeps directory verdicts for ``plan`` (relative opens filtered):
    the path keys with the :func:`ancestor_keys` fit ``kf_paths`` (:data:`TRIE_ENTRIES`),
    the suffixes with their :func:`suffix_tails` fit ``kf_rpaths`` (:data:`RTRIE_ENTRIES`).
    Else every relative open passes, as before. The key rules are ``kfilter_maps.tables``'."""
    keys: set[str] = set()
    rkeys: set[str] = set()
    for tf in plan.types.values():
        for c in tf.clauses:
            if c.any_path:
                continue
            keys.update(e + "\0" for e in c.exact if _key_len(e) + 1 <= KEY_LEN)
            keys.update(p for p in c.prefixes if p and _key_len(p) < KEY_LEN)
            keys.update(a + "\0" for a in ancestor_keys(c) if _key_len(a) + 1 <= KEY_LEN)
            rkeys.update(x for x in c.suffixes if x and _key_len(x) < KEY_LEN)
            rkeys.update(t + "\0" for t in suffix_tails(c) if _key_len(t) + 1 <= KEY_LEN)
    return len(keys) <= TRIE_ENTRIES and len(rkeys) <= RTRIE_ENTRIES


#: event types whose successful result (``res``) is a new fd userspace learns about: a
#: filtered open's fd number is tracked again once one of these reuses it
FD_RESULT_TYPES = frozenset({"socket", "accept", "accept4", "dup", "dup2", "dup3",
                             "memfd_create", "userfaultfd", "eventfd", "eventfd2", "signalfd",
                             "signalfd4", "epoll_create", "epoll_create1", "inotify_init",
                             "inotify_init1", "io_uring_setup", "open_by_handle_at",
                             "timerfd_create", "pidfd_open", "pidfd_getfd"})
#: fd-consuming calls whose unknown fd the live state reads back from ``/proc/<pid>/fd``
#: (``falconet.state.parser``; kept in the event's hidden ``fdpath`` arg): a rule that reads
#: their fd only in its output does not turn open filtering off
RECOVERED_FD_TYPES = frozenset({"fchmod", "fchown", "finit_module", "setns"})
#: events that start a process (``child_pid``; a thread when ``child_tid`` differs)
_NEW_PROCESS_TYPES = frozenset({"procfork", "clone", "clone3", "fork", "vfork"})
#: io_uring operations whose result is a new plain fd (``dup3``: a fixed file installed)
_IOU_NEW_FD_TYPES = frozenset({"openat", "openat2", "socket", "accept4"})
#: event types that create two fds, in the args ``fd1`` and ``fd2``
FD_PAIR_TYPES = frozenset({"pipe", "pipe2", "socketpair"})
#: fcntl's F_DUPFD and F_DUPFD_CLOEXEC: the result is a new fd
_FCNTL_DUPFD = frozenset({0, 1030})


class FdTracker:
    """The kernel's fd tracking, emulated for replay.

    A filtered successful open puts ``(pid, fd)`` in the *untracked* set (userspace never
    learns that fd). An unfiltered successful open, a successful :data:`FD_RESULT_TYPES` call
    (``dup2``/``dup3``: ``newfd`` is the result), ``fcntl(F_DUPFD*)``, or a
    :data:`FD_PAIR_TYPES` call takes the fd number out of it. With ``plan.filter_close``, a
    ``close`` of an untracked fd is dropped (reason ``untracked_fd``) and the fd leaves the
    set; a ``procexit`` of the thread-group leader, or the start of a new process with that
    pid (``procfork``/``clone``... ``child_pid``), forgets that pid's fds. ``pid`` is the
    thread group id (threads share an fd table); a forked child's inherited fds are tracked
    (their closes pass: conservative).

    Directory verdicts (when :func:`relative_filtering`): a successful open of a directory
    (``ftype`` known, a directory) by an absolute regular path other than ``/`` records that
    path for its ``(pid, fd)`` (the kernel: the clause bits that may match below it); opened by
    a :func:`plain_relative` name relative to a ``dirfd`` with a verdict, it inherits that
    verdict; any other successful open, a ``close``, a new fd of :data:`FD_RESULT_TYPES`,
    ``io_uring`` closes and new fds remove it; so do the leader's exit and a new process with
    that pid (the kernel checks the leader's start time). A relative open is then decided
    against its ``dirfd``'s verdict (:func:`open_passes`' ``below``). The cwd has one too: a
    successful ``chdir`` computes it as a directory open does (relative to the cwd's), an
    ``fchdir`` takes its fd's, a successful ``execve`` drops it (the state then takes the
    cwd from ``/proc``), as do the leader's exit and a new process with that pid; cwd-relative
    opens (``AT_FDCWD``) are decided against it."""

    __slots__ = ("plan", "untracked", "filtered", "names", "dirs", "cwds", "relative", "comms")

    def __init__(self, plan: FilterPlan, counts: dict[tuple[str, str], int] | None = None
                 ) -> None:
        self.plan = plan
        self.untracked: set[tuple[int, int]] = set()
        #: the path of each dropped successful open still untracked: what the live state reads
        #: back from /proc for a RECOVERED_FD_TYPES call on it (the replay gives the same)
        self.names: dict[tuple[int, int], str] = {}
        #: (event type, reason) -> events dropped (``EngineMetrics.kernel_filtered`` when given)
        self.filtered: dict[tuple[str, str], int] = counts if counts is not None else {}
        #: (pid, fd) -> (the directory whose verdict the fd has (kf_dirs in the kernel), the
        #: fd's own path as the state names it)
        self.dirs: dict[tuple[int, int], tuple[str, str]] = {}
        #: pid -> the cwd's verdict, likewise (kf_cwds in the kernel)
        self.cwds: dict[int, tuple[str, str]] = {}
        self.relative = relative_filtering(plan)
        #: pid -> the comm of its last successful execve (kf_exec in the kernel): what the
        #: clauses' proc.name terms are tested on (unknown: they hold)
        self.comms: dict[int, str] = {}

    def verdict(self, evt: Any) -> str | None:
        """``None`` = ``evt`` reaches userspace; else the reason the kernel drops it (and the
        drop is counted in :attr:`filtered`). Updates the tracked fds either way."""
        t = evt.type
        if evt.source != "syscall":
            return None
        res = evt.res
        if evt.args.get("via") == "io_uring":
            # io_uring events never pass the kernel filter's handlers; the completion program
            # only forgets directory verdicts (a closed fd, a new plain fd)
            if self.dirs:
                plain = "slot" not in evt.args
                if t == "close" and plain:
                    self.dirs.pop((evt.pid, evt.args.get("fd")), None)
                elif res is not None and res >= 0 and (
                        t == "dup3" or (plain and t in _IOU_NEW_FD_TYPES)):
                    self.dirs.pop((evt.pid, res), None)
            return None
        if t in OPEN_TYPES:
            tf = self.plan.types.get(t)
            why = None
            below = self._base(evt.pid, event_dirfd(evt))
            if tf is not None:
                why = open_event_passes(tf, evt, below[0] if below else None,
                                        self.comms.get(evt.pid) if self.comms else None)
            if res is not None and res >= 0:
                key = (evt.pid, res)
                if self.relative:
                    self._dir_verdict(evt, key)
                if why is None:
                    self.untracked.discard(key)
                    self.names.pop(key, None)
                else:
                    self.untracked.add(key)
                    name = evt.args.get("name")
                    if isinstance(name, str):
                        if name[:1] != "/" and below:           # what the state resolves
                            name = below[1] + "/" + name
                        self.names[key] = name
            return self._count(t, why)
        if t in IO_TYPES:
            fio = self.plan.io.get(t)
            return self._count(t, io_event_passes(fio, evt)) if fio is not None else None
        if t == "close":
            fd = evt.args.get("fd")
            key = (evt.pid, fd)
            if self.dirs:
                self.dirs.pop(key, None)
            if self.plan.filter_close and key in self.untracked:
                self.untracked.discard(key)
                self.names.pop(key, None)
                return self._count(t, REASON_UNTRACKED_FD)
            return None
        if t in ("chdir", "fchdir", "execve", "execveat"):
            if t != "chdir" and t != "fchdir" and res == 0:
                comm = evt.args.get("comm")     # what emit_exec records (an empty one: none)
                if isinstance(comm, str) and comm:
                    self.comms[evt.pid] = comm
                else:
                    self.comms.pop(evt.pid, None)
            if self.relative and (res is None or res >= 0):
                self._cwd_verdict(evt)
            return None
        if t == "procexit":
            if evt.pid == evt.tid and (self.untracked or self.dirs or self.cwds or self.comms):
                self._forget(evt.pid)
            return None
        if t in RECOVERED_FD_TYPES:
            key = (evt.pid, evt.args.get("fd"))
            if key in self.untracked and "fdpath" not in evt.args and key in self.names:
                evt.args["fdpath"] = self.names[key]     # what the live state reads back
            return None
        if t in _NEW_PROCESS_TYPES:
            # a new process (not a thread): a stale entry of a reused pid must not drop the
            # closes of the fds it inherited (the kernel compares the leader's start time)
            child = evt.args.get("child_pid")
            if child and child == evt.args.get("child_tid", child) and (
                    self.untracked or self.dirs or self.cwds or self.comms):
                self._forget(child)
            if res == 0 and t in self.plan.child_clones:
                return self._count(t, REASON_CHILD)       # emit_clone's kf_cfg check
            return None
        if res is None or res < 0 or not (self.untracked or self.dirs):
            return None
        if t in FD_RESULT_TYPES or (t == "fcntl" and evt.args.get("cmd") in _FCNTL_DUPFD):
            new: tuple[Any, ...] = (res,)           # kf_new_fd / kf_fd_reused (emit_fcntl)
        elif t in FD_PAIR_TYPES:
            new = (evt.args.get("fd1"), evt.args.get("fd2"))    # kf_fd_reused (emit_fdpair)
        else:
            return None
        for fd in new:
            if fd is not None:
                self.untracked.discard((evt.pid, fd))
                self.names.pop((evt.pid, fd), None)
                self.dirs.pop((evt.pid, fd), None)
        return None

    def _base(self, pid: int, dirfd: int) -> tuple[str, str] | None:
        """The verdict a name relative to ``dirfd`` is decided by (the cwd's for AT_FDCWD)."""
        if dirfd == AT_FDCWD:
            return self.cwds.get(pid) if self.cwds else None
        return self.dirs.get((pid, dirfd)) if dirfd >= 0 and self.dirs else None

    def _path_verdict(self, pid: int, raw: Any, dirfd: int) -> tuple[str, str] | None:
        """The verdict of the directory ``raw`` names (``kf_path_mask``)."""
        if not isinstance(raw, str):
            return None
        if raw[:1] == "/":
            return (raw, raw) if raw != "/" and not irregular_path(raw) else None
        if not plain_relative(raw):
            return None
        parent = self._base(pid, dirfd)
        return (parent[0], parent[1] + "/" + raw) if parent is not None else None

    def _cwd_verdict(self, evt: Any) -> None:
        """``kf_cwd_after`` (chdir, fchdir) and the exec image check (execve)."""
        d: tuple[str, str] | None = None
        if evt.type == "chdir":
            d = self._path_verdict(evt.pid, evt.args.get("path"), AT_FDCWD)
        elif evt.type == "fchdir":
            fd = evt.args.get("fd")
            d = self._base(evt.pid, fd) if isinstance(fd, int) and fd >= 0 else None
        elif evt.res is None or evt.res != 0:
            return                                  # a failed execve changes nothing
        if d is None:
            self.cwds.pop(evt.pid, None)
        else:
            self.cwds[evt.pid] = d

    def _dir_verdict(self, evt: Any, key: tuple[int, int]) -> None:
        """The new fd's directory verdict (``kf_dir_after`` in the kernel)."""
        ftype = evt.args.get("ftype")
        d: tuple[str, str] | None = None
        if isinstance(ftype, int) and ftype & _FTYPE_DIR == _FTYPE_DIR:
            d = self._path_verdict(evt.pid, evt.args.get("name"), event_dirfd(evt))
        if d is None:
            self.dirs.pop(key, None)
        else:
            self.dirs[key] = d

    def _forget(self, pid: int) -> None:
        self.untracked = {k for k in self.untracked if k[0] != pid}
        self.names = {k: v for k, v in self.names.items() if k[0] != pid}
        if self.dirs:
            self.dirs = {k: v for k, v in self.dirs.items() if k[0] != pid}
        self.cwds.pop(pid, None)
        self.comms.pop(pid, None)

    def _count(self, t: str, why: str | None) -> str | None:
        if why is not None:
            key = (t, why)
            self.filtered[key] = self.filtered.get(key, 0) + 1
        return why

    def apply(self, events: Iterable[Any]) -> Iterable[Any]:
        """The events that reach userspace (``None`` idle markers pass through)."""
        verdict = self.verdict
        for evt in events:
            if evt is None or verdict(evt) is None:
                yield evt
