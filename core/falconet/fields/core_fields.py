"""The core field families: ``evt.*``, ``proc.*``, ``thread.*``, ``user.*``, ``group.*``, ``fd.*``.

Every field is a :class:`FieldDef` whose ``make_extractor(arg)`` is called once per field token at
rule-load time and returns a small closure ``extract(evt) -> value | None``. Everything that can be
decided at load time (the ancestor index, the argument name, the renderer of a flag argument, the
tables and user database) is bound into the closure then; the closures themselves do attribute
reads and dict lookups only. ``None`` means the value is unknown (the comparison is false).

Values come from ``evt.thread`` / ``evt.fdinfo``, attached by :mod:`falconet.state.parser`.
Descriptions follow Falco's ``falco --list``. ``docs/fields.md`` is generated from this module
(``python -m falconet.fields.core_fields > docs/fields.md``).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterable
from typing import Any

from falconet.events import INTERNAL_SOURCE, SYSCALL_SOURCE, Event
from falconet.fields.registry import ArgKind, Extractor, FieldDef, FieldType
from falconet.state import flags as F
from falconet.state.dns import DomainResolver, domain_check
from falconet.state.parser import NAME_CHANGED_KEY
from falconet.state.tables import FdInfo, StateTables, ThreadInfo

T = FieldType


class AllSources(frozenset):
    """A ``sources`` set that contains every source (Falco's generic ``evt.*`` fields apply to
    plugin sources too). Iteration and intersection see the named sources only, so a plugin
    that re-declares ``evt.type`` for ``syscall`` still conflicts."""

    def __contains__(self, item: object) -> bool:
        return True


ANY_SOURCE = AllSources({SYSCALL_SOURCE, INTERNAL_SOURCE})
_SYSCALL = frozenset({SYSCALL_SOURCE})

FD_TYPES = {"f": "file", "d": "directory", "4": "ipv4", "6": "ipv6", "u": "unix", "p": "pipe",
            "e": "event", "s": "signalfd", "l": "eventpoll", "i": "inotify", "b": "bpf",
            "r": "io_uring", "m": "memfd", "n": "netlink", "t": "timerfd", "o": "unknown"}
SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash", "fish", "busybox"})
_OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat", "open_by_handle_at"})
#: argument names whose value is an fd (rendered ``<f>/etc/passwd`` like Falco)
_FD_ARGS = frozenset({"fd", "oldfd", "newfd", "listenfd", "dirfd", "olddirfd", "newdirfd",
                      "linkdirfd", "olddir", "newdir"})
#: collector bookkeeping, not Falco parameters: left out of ``evt.args``
_HIDDEN_ARGS = frozenset({"cgroup_id", "env"})


# ---------------------------------------------------------------------------------- helpers
def _const(fn: Extractor) -> Callable[[str | None], Extractor]:
    """``make_extractor`` for a field without argument."""
    return lambda _arg, _fn=fn: _fn


def _f(name: str, type: FieldType, desc: str, fn: Extractor, *, cache: bool = False,
       sources: frozenset[str] = _SYSCALL, **kw: Any) -> FieldDef:
    return FieldDef(name, type, desc, _const(fn), cache=cache, sources=sources, **kw)


def _local_time_formatter(fmt: str) -> Callable[[int], str]:
    """``ts`` (ns) -> ``"<fmt in local time>.<ns>"``. Keeps the (second, text) of the last
    rendered second: consecutive events share it, and strftime is slow."""
    last: tuple[int, str] = (-1, "")

    def render(ts: int) -> str:
        nonlocal last
        s, ns = divmod(ts, 1_000_000_000)
        cached = last
        if cached[0] != s:
            cached = last = (s, time.strftime(fmt, time.localtime(s)))
        return f"{cached[1]}.{ns:09d}"
    return render


_time_str = _local_time_formatter("%H:%M:%S")
_datetime_str = _local_time_formatter("%Y-%m-%d %H:%M:%S")


def _iso8601(ts: int) -> str:
    s, ns = divmod(ts, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ns:09d}Z"


def _cmdline(t: ThreadInfo) -> str:
    return t.comm + " " + " ".join(t.args) if t.args else t.comm


# ---------------------------------------------------------------------------------- evt.arg
class ArgRenderer:
    """Renders event arguments as Falco does: flags by name, fds as ``<f>/path``, errno names."""

    def __init__(self, tables: StateTables) -> None:
        self.tables = tables
        self._by_key: dict[tuple[str, str], Callable[[Any], str] | None] = {}

    def renderer(self, etype: str, name: str) -> Callable[[Any], str] | None:
        key = (etype, name)
        try:
            return self._by_key[key]
        except KeyError:
            r = F.RENDERERS.get(key) or F.RENDERERS.get((None, name))
            self._by_key[key] = r
            return r

    def fd_text(self, evt: Event, v: int) -> str:
        if v == -100:
            return "AT_FDCWD"
        if v < 0:
            return F.res_str(v)
        f = evt.fdinfo
        if f is None or f.num != v:
            t = evt.thread
            f = t.fds.get(v) if t is not None else None
        return f"<{f.typechar}>{f.name}" if f is not None else str(v)

    def text(self, evt: Event, name: str, v: Any) -> str | None:
        """The resolved text of one argument (``evt.arg.<name>``)."""
        tv = type(v)
        if tv is str:
            return v
        if v is None:
            return None
        if tv is bool:
            return "true" if v else "false"
        if tv is int:
            if name in _FD_ARGS:
                return self.fd_text(evt, v)
            r = self.renderer(evt.type, name)
            return r(v) if r is not None else str(v)
        if isinstance(v, (list, tuple)):
            return " ".join(str(x) for x in v)
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        return str(v)

    def pair_text(self, evt: Event, name: str, v: Any) -> str:
        """``name=value`` as ``evt.args`` shows it: ``flags=577(O_WRONLY|O_CREAT|O_TRUNC)``."""
        if isinstance(v, int) and not isinstance(v, bool):
            if name in _FD_ARGS or self.renderer(evt.type, name) is not None:
                text = self.text(evt, name, v)
                if text != str(v):
                    return f"{name}={v}({text})"
            return f"{name}={v}"
        return f"{name}={self.text(evt, name, v)}"


def _exe_flags(t: ThreadInfo) -> int:
    v = 0
    if t.exe_writable:
        v |= F.EXE_WRITABLE
    if t.exe_upper_layer:
        v |= F.EXE_UPPER_LAYER
    elif t.extra.get("exe_lower_layer"):
        v |= F.EXE_LOWER_LAYER
    if t.exe_from_memfd:
        v |= F.EXE_FROM_MEMFD
    return v


def _evt_arg_factory(r: ArgRenderer, raw: bool) -> Callable[[str | None], Extractor]:
    def make(arg: str | None) -> Extractor:
        if arg is None or arg == "":
            raise ValueError("an argument name or number is required, e.g. evt.arg.flags or evt.arg[0]")
        if arg.lstrip("-").isdigit():
            idx = int(arg)
            if idx < 0:
                raise ValueError(f"argument index must be >= 0, got {idx}")

            def by_index(evt: Event) -> Any:
                a = evt.args
                if idx >= len(a):
                    return None
                name = list(a)[idx]
                v = a[name]
                return v if raw else r.text(evt, name, v)
            return by_index
        name = arg

        if raw:
            def rawarg(evt: Event) -> Any:
                v = evt.args.get(name)
                if v is None and name == "res":
                    return evt.res
                return v
            return rawarg

        def by_name(evt: Event, _m: object = object()) -> Any:
            a = evt.args
            v = a.get(name, _m)
            if v is _m:
                if name == "res":
                    return None if evt.res is None else F.res_str(evt.res)
                if name == "flags" and evt.type in ("execve", "execveat") and evt.thread is not None:
                    return F.exe_flags(_exe_flags(evt.thread))      # Falco's execve exe flags
                return None
            return r.text(evt, name, v)
        return by_name
    return make


def _evt_args(r: ArgRenderer) -> Extractor:
    def ex(evt: Event) -> str:
        parts = []
        a = evt.args
        if evt.res is not None and a.get("fd") != evt.res:     # fd-returning calls show it as fd
            res = evt.res
            parts.append(f"res={res}" if res >= 0 else f"res={res}({F.res_str(res)})")
        for k, v in a.items():
            if k not in _HIDDEN_ARGS:
                parts.append(r.pair_text(evt, k, v))
        return " ".join(parts)
    return ex


def _open_flags(evt: Event) -> int | None:
    if evt.type not in _OPEN_TYPES:
        return None
    f = evt.args.get("flags")
    if f is None:
        return 0o1101 if evt.type == "creat" else 0
    return f


def _is_open_read(evt: Event) -> bool:
    f = _open_flags(evt)
    return f is not None and F.is_open_read(f)


def _is_open_write(evt: Event) -> bool:
    f = _open_flags(evt)
    return f is not None and F.is_open_write(f)


def _is_open_exec(evt: Event) -> bool:
    f = _open_flags(evt)
    return f is not None and bool(f & F.O_CREAT) and bool(int(evt.args.get("mode") or 0) & 0o111)


def _evt_fields(r: ArgRenderer, hostname: str | None) -> list[FieldDef]:
    host = hostname
    if host is None:
        import socket  # noqa: PLC0415 - only when the engine gave no hostname

        host = socket.gethostname()
    A = ANY_SOURCE
    return [
        _f("evt.num", T.UINT64, "event number.", lambda e: e.num, sources=A),
        _f("evt.type", T.STRING, "The name of the event (e.g. 'open').", lambda e: e.type, sources=A),
        _f("evt.source", T.STRING, "the name of the source that produced the event.",
           lambda e: e.source, sources=A),
        _f("evt.hostname", T.STRING, "The hostname of the underlying host.",
           lambda e, _h=host: _h, sources=A),
        _f("evt.time", T.STRING, "event timestamp as a time string that includes the nanosecond "
           "part (local time).", lambda e: _time_str(e.ts), cache=True, sources=A),
        _f("evt.time.s", T.STRING, "event timestamp as a time string with no nanoseconds.",
           lambda e: time.strftime("%H:%M:%S", time.localtime(e.ts // 1_000_000_000)),
           cache=True, sources=A),
        _f("evt.time.iso8601", T.STRING, "event timestamp in ISO 8601 format, including "
           "nanoseconds and time zone offset (in UTC).", lambda e: _iso8601(e.ts), cache=True,
           sources=A),
        _f("evt.datetime", T.STRING, "event timestamp as a time string that includes the date.",
           lambda e: _datetime_str(e.ts), cache=True, sources=A),
        _f("evt.datetime.s", T.STRING, "event timestamp as a datetime string with no nanoseconds.",
           lambda e: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts // 1_000_000_000)),
           cache=True, sources=A),
        _f("evt.rawtime", T.ABSTIME, "absolute event timestamp, i.e. nanoseconds from epoch.",
           lambda e: e.ts, sources=A),
        _f("evt.rawtime.s", T.ABSTIME, "integer part of the event timestamp (e.g. seconds since "
           "epoch).", lambda e: e.ts // 1_000_000_000, sources=A),
        _f("evt.rawtime.ns", T.ABSTIME, "fractional part of the absolute event timestamp.",
           lambda e: e.ts % 1_000_000_000, sources=A),
        _f("evt.dir", T.STRING, "event direction: always '<' (exit events only; deprecated in "
           "Falco 0.42).", lambda e: "<"),
        _f("evt.res", T.STRING, "event return value, as a string. If the event failed, the result "
           "is an error code string (e.g. 'ENOENT'), otherwise the result is the string 'SUCCESS'.",
           lambda e: None if e.res is None else F.res_str(e.res)),
        _f("evt.rawres", T.INT64, "event return value, as a number (e.g. -2). Useful for range "
           "comparisons.", lambda e: e.res),
        _f("evt.failed", T.BOOL, "'true' for events that returned an error status.",
           lambda e: e.res is not None and e.res < 0),
        FieldDef("evt.arg", T.STRING, "one of the event arguments specified by name or by number. "
                 "Flags, fds and return codes are converted into a text representation "
                 "(flags=O_RDWR|O_CREAT, fd=<f>/etc/passwd, res=ENOENT). E.g. 'evt.arg.fd' or "
                 "'evt.arg[0]' (numbers count the event's parameters in order).",
                 _evt_arg_factory(r, raw=False), arg=ArgKind.REQUIRED, dotted_arg=True, cache=True),
        FieldDef("evt.rawarg", T.INT64, "one of the event arguments specified by name, as its raw "
                 "value (the Linux number for flags, e.g. evt.rawarg.flags). String arguments are "
                 "returned unchanged.", _evt_arg_factory(r, raw=True), arg=ArgKind.REQUIRED,
                 dotted_arg=True),
        _f("evt.args", T.STRING, "all the event arguments, aggregated into a single string.",
           _evt_args(r), cache=True),
        _f("evt.is_open_read", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at events "
           "where the path was opened for reading", _is_open_read),
        _f("evt.is_open_write", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at events "
           "where the path was opened for writing", _is_open_write),
        _f("evt.is_open_exec", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at or creat "
           "events where a file is created with execute permissions", _is_open_exec),
    ]


# ---------------------------------------------------------------------------------- proc.*
def _proc_fields(tables: StateTables, users: Any) -> list[FieldDef]:
    threads = tables.threads

    def main(t: ThreadInfo) -> ThreadInfo:
        return t if t.tid == t.pid else threads.get(t.pid, t)

    def parent(t: ThreadInfo) -> ThreadInfo | None:
        p = threads.get(main(t).ptid)
        return None if p is None else main(p)

    def attr(name: str) -> Extractor:
        def ex(evt: Event) -> Any:
            t = evt.thread
            return None if t is None else getattr(t, name)
        return ex

    def of_parent(fn: Callable[[ThreadInfo], Any]) -> Extractor:
        def ex(evt: Event) -> Any:
            t = evt.thread
            if t is None:
                return None
            p = parent(t)
            return None if p is None else fn(p)
        return ex

    def ancestor(fn: Callable[[ThreadInfo], Any]) -> Callable[[str | None], Extractor]:
        def make(arg: str | None) -> Extractor:
            if arg is None:
                def all_ancestors(evt: Event) -> tuple[Any, ...] | None:
                    """Parent first, at most 64, stops at a loop or an unknown parent."""
                    t = evt.thread
                    if t is None:
                        return None
                    get = threads.get
                    m = t if t.tid == t.pid else get(t.pid, t)
                    seen = {m.pid}
                    out = []
                    p = get(m.ptid)
                    while p is not None and len(out) < 64:
                        if p.tid != p.pid:
                            p = get(p.pid, p)
                        if p.pid in seen:
                            break
                        seen.add(p.pid)
                        out.append(fn(p))
                        p = get(p.ptid)
                    return tuple(out)
                return all_ancestors
            n = int(arg)
            if n < 0:
                raise ValueError(f"the ancestor index must be >= 0, got {n}")

            def nth(evt: Event) -> Any:
                t = evt.thread
                if t is None:
                    return None
                get = threads.get
                p = t if t.tid == t.pid else get(t.pid, t)
                seen = {p.pid}
                for _ in range(n):
                    p = get(p.ptid)
                    if p is None:
                        return None
                    if p.tid != p.pid:
                        p = get(p.pid, p)
                    if p.pid in seen:
                        return None
                    seen.add(p.pid)
                return fn(p)
            return nth
        return make

    def duration(evt: Event) -> int | None:
        t = evt.thread
        return None if t is None or not t.start_ts else max(0, evt.ts - t.start_ts)

    def sname(evt: Event) -> str | None:
        """Name of the session leader: pid == sid, else the eldest ancestor with the same sid."""
        t = evt.thread
        if t is None:
            return None
        m = main(t)
        leader = threads.get(m.sid) if m.sid else None
        if leader is not None and leader.sid == m.sid:
            return leader.comm
        best = m
        for p in tables.ancestors(m):
            if p.sid != m.sid:
                break
            best = p
        return best.comm

    def loginshellid(evt: Event) -> int | None:
        t = evt.thread
        if t is None:
            return None
        m = main(t)
        found = m.pid if m.comm in SHELLS else None
        for p in tables.ancestors(m):
            if p.comm in SHELLS:
                found = p.pid
        return found

    def cwd(evt: Event) -> str | None:
        t = evt.thread
        return None if t is None else main(t).cwd

    def env_factory(arg: str | None) -> Extractor:
        if arg is None:
            def all_env(evt: Event) -> str | None:
                t = evt.thread
                return None if t is None else " ".join(main(t).env)
            return all_env
        prefix = arg + "="

        def one(evt: Event) -> str | None:
            t = evt.thread
            if t is None:
                return None
            for kv in main(t).env:
                if kv.startswith(prefix):
                    return kv[len(prefix):]
            return None
        return one

    def ctime_duration(evt: Event) -> int | None:
        t = evt.thread
        if t is None or not t.exe_ino_ctime or not t.start_ts:
            return None
        return max(0, t.start_ts - t.exe_ino_ctime)

    def vpgid_name(evt: Event) -> str | None:
        t = evt.thread
        if t is None:
            return None
        m = main(t)
        for p in (m, *tables.ancestors(m)):
            if p.pid == m.vpgid:
                return p.comm
        return None

    def nz(name: str) -> Extractor:
        """An attribute that is unknown when 0 (inode numbers, times)."""
        def ex(evt: Event) -> Any:
            t = evt.thread
            return (getattr(t, name) or None) if t is not None else None
        return ex

    name, args_ = attr("comm"), (lambda e: None if e.thread is None else " ".join(e.thread.args))
    C = True
    return [
        _f("proc.name", T.STRING, "The process name (truncated after 16 characters) generating "
           "the event (task->comm).", name),
        _f("proc.exe", T.STRING, "The first command-line argument (i.e., argv[0]), typically the "
           "executable name or a custom string as specified by the user.", attr("exe")),
        _f("proc.exepath", T.PATH, "The full executable path of a process, resolving to the "
           "canonical path for symlinks.", attr("exepath")),
        _f("proc.args", T.STRING, "The arguments passed on the command line when starting the "
           "process generating the event excluding argv[0].", args_, cache=C),
        _f("proc.cmdline", T.STRING, "The concatenation of `proc.name + proc.args` when starting "
           "the process generating the event.",
           lambda e: None if e.thread is None else _cmdline(e.thread), cache=C),
        _f("proc.pid", T.INT64, "The id of the process generating the event.",
           lambda e: None if e.thread is None else e.thread.pid),
        _f("proc.vpid", T.INT64, "The id of the process generating the event as seen from its "
           "current PID namespace.", nz("vpid")),
        _f("proc.ppid", T.INT64, "The pid of the parent of the process generating the event.",
           lambda e: None if e.thread is None else main(e.thread).ptid),
        _f("proc.pname", T.STRING, "The proc.name of the parent process.",
           of_parent(lambda p: p.comm), cache=C),
        _f("proc.pexe", T.STRING, "The proc.exe (argv[0]) of the parent process.",
           of_parent(lambda p: p.exe), cache=C),
        _f("proc.pexepath", T.PATH, "The proc.exepath (full executable path) of the parent process.",
           of_parent(lambda p: p.exepath), cache=C),
        _f("proc.pcmdline", T.STRING, "The proc.cmdline (full command line (proc.name + "
           "proc.args)) of the parent process.", of_parent(_cmdline), cache=C),
        _f("proc.pvpid", T.INT64, "The id of the parent process as seen from its PID namespace.",
           of_parent(lambda p: p.vpid or None), cache=C),
        FieldDef("proc.aname", T.STRING, "The proc.name for a specific process ancestor: "
                 "proc.aname[0] is the process itself, [1] its parent, [2] the grandparent... "
                 "Without an index, true if any ancestor (parent first) matches.",
                 ancestor(lambda p: p.comm), arg=ArgKind.OPTIONAL, arg_is_index=True, ancestor=True),
        FieldDef("proc.aexe", T.STRING, "The proc.exe (argv[0]) for a specific process ancestor "
                 "(index as proc.aname).", ancestor(lambda p: p.exe), arg=ArgKind.OPTIONAL,
                 arg_is_index=True, ancestor=True),
        FieldDef("proc.aexepath", T.PATH, "The proc.exepath for a specific process ancestor "
                 "(index as proc.aname).", ancestor(lambda p: p.exepath), arg=ArgKind.OPTIONAL,
                 arg_is_index=True, ancestor=True),
        FieldDef("proc.acmdline", T.STRING, "The proc.cmdline for a specific process ancestor "
                 "(index as proc.aname).", ancestor(_cmdline), arg=ArgKind.OPTIONAL,
                 arg_is_index=True, ancestor=True),
        FieldDef("proc.apid", T.INT64, "The pid for a specific process ancestor (index as "
                 "proc.aname).", ancestor(lambda p: p.pid), arg=ArgKind.OPTIONAL,
                 arg_is_index=True, ancestor=True),
        _f("proc.sid", T.INT64, "The session id of the process generating the event.",
           lambda e: None if e.thread is None else main(e.thread).sid),
        _f("proc.sname", T.STRING, "The name of the current process's session leader. This is "
           "either the process with pid=proc.sid or the eldest ancestor that has the same sid as "
           "the current process.", sname, cache=C),
        _f("proc.is_sid_leader", T.BOOL, "'true' if this process is the leader of the process "
           "session (proc.sid == proc.pid).",
           lambda e: None if e.thread is None else main(e.thread).sid == e.thread.pid),
        _f("proc.vpgid", T.INT64, "The process group id of the process generating the event, as "
           "seen from its current PID namespace.",
           lambda e: None if e.thread is None else main(e.thread).vpgid),
        _f("proc.vpgid.name", T.STRING, "The name of the process group leader of the process "
           "generating the event.", vpgid_name, cache=C),
        _f("proc.is_vpgid_leader", T.BOOL, "'true' if this process is the leader of the process "
           "group (proc.vpgid == proc.pid).",
           lambda e: None if e.thread is None else main(e.thread).vpgid == e.thread.pid),
        _f("proc.tty", T.UINT32, "The controlling terminal of the process. 0 for processes "
           "without a terminal.", attr("tty")),
        _f("proc.cwd", T.PATH, "The current working directory of the event.", cwd),
        _f("proc.duration", T.RELTIME, "Number of nanoseconds since the process started.", duration),
        _f("proc.loginshellid", T.INT64, "The pid of the oldest shell among the ancestors of the "
           "current process, if there is one.", loginshellid, cache=C),
        FieldDef("proc.env", T.STRING, "The environment variables of the process generating the "
                 "event as a concatenated string 'ENV_NAME=value ENV_NAME1=value1'; "
                 "proc.env[ENV_NAME] gives the value of one variable.", env_factory,
                 arg=ArgKind.OPTIONAL, cache=True),
        _f("proc.is_exe_writable", T.BOOL, "'true' if this process' executable file is writable by "
           "the same user that spawned the process.", attr("exe_writable")),
        _f("proc.is_exe_upper_layer", T.BOOL, "'true' if this process' executable file is in upper "
           "layer in overlayfs.", attr("exe_upper_layer")),
        _f("proc.is_exe_from_memfd", T.BOOL, "'true' if the executable file of the current process "
           "is an anonymous file created using memfd_create() and is being executed by referencing "
           "its file descriptor (fd).", attr("exe_from_memfd")),
        _f("proc.exe_ino", T.UINT64, "The inode number of the executable file on disk.",
           nz("exe_ino")),
        _f("proc.exe_ino.ctime", T.ABSTIME, "Last status change time of executable file "
           "(inode->ctime) as epoch timestamp in nanoseconds.", nz("exe_ino_ctime")),
        _f("proc.exe_ino.mtime", T.ABSTIME, "Last modification time of executable file "
           "(inode->mtime) as epoch timestamp in nanoseconds.", nz("exe_ino_mtime")),
        _f("proc.exe_ino.ctime_duration_proc_start", T.ABSTIME, "Number of nanoseconds between "
           "modifying status of executable image and spawning a new process using the changed "
           "executable image.", ctime_duration),
        _f("proc.pidns_init_start_ts", T.UINT64, "The start of the PID namespace (its init "
           "process) as epoch timestamp in nanoseconds.", nz("pidns_init_start_ts")),
        _f("proc.fdopencount", T.UINT64, "Number of open FDs for the process.",
           lambda e: None if e.thread is None else len(e.thread.fds)),
        # thread.*
        _f("thread.tid", T.INT64, "The id of the thread generating the event.",
           lambda e: None if e.thread is None else e.thread.tid),
        _f("thread.vtid", T.INT64, "The id of the thread generating the event as seen from its "
           "current PID namespace.", _vtid),
        _f("thread.ismain", T.BOOL, "'true' if the thread generating the event is the main one in "
           "the process.", lambda e: None if e.thread is None else e.thread.tid == e.thread.pid),
        _f("thread.cap_effective", T.STRING, "The effective capabilities set (e.g. "
           "'CAP_CHOWN CAP_SYS_ADMIN').",
           lambda e: None if e.thread is None else F.caps(e.thread.cap_effective)),
        _f("thread.cap_permitted", T.STRING, "The permitted capabilities set.",
           lambda e: None if e.thread is None else F.caps(e.thread.cap_permitted)),
        _f("thread.cap_inheritable", T.STRING, "The inheritable capabilities set.",
           lambda e: None if e.thread is None else F.caps(e.thread.cap_inheritable)),
    ]


def _vtid(evt: Event) -> int | None:
    t = evt.thread
    if t is None:
        return None
    v = t.extra.get("vtid")
    if v is not None:
        return v
    if t.tid == t.pid:
        return t.vpid or None
    return t.tid if t.vpid == t.pid else None


# ---------------------------------------------------------------------------------- user/group
def _user_fields(users: Any) -> list[FieldDef]:
    def uname(evt: Event) -> str | None:
        t = evt.thread
        return None if t is None else users.name(t.euid)

    def loginname(evt: Event) -> str | None:
        t = evt.thread
        if t is None or t.loginuid < 0:
            return None
        return users.name(t.loginuid)

    def entry(i: int) -> Extractor:
        def ex(evt: Event) -> str | None:
            t = evt.thread
            if t is None:
                return None
            u = users.user(t.euid)
            return None if u is None else u[i]
        return ex

    def gname(evt: Event) -> str | None:
        t = evt.thread
        return None if t is None else users.group(t.egid)

    return [
        _f("user.uid", T.UINT32, "user ID (the effective uid).",
           lambda e: None if e.thread is None else e.thread.euid),
        _f("user.name", T.STRING, "user name (resolved against the host's /etc/passwd).", uname,
           cache=True),
        _f("user.homedir", T.PATH, "home directory of the user.", entry(1), cache=True),
        _f("user.shell", T.STRING, "user's shell.", entry(2), cache=True),
        _f("user.loginuid", T.INT64, "audit user id (auid); -1 when unset (UINT32_MAX).",
           lambda e: None if e.thread is None else e.thread.loginuid),
        _f("user.loginname", T.STRING, "audit user name (auid).", loginname, cache=True),
        _f("group.gid", T.UINT32, "group ID (the effective gid).",
           lambda e: None if e.thread is None else e.thread.egid),
        _f("group.name", T.STRING, "group name (resolved against the host's /etc/group).", gname,
           cache=True),
    ]


# ---------------------------------------------------------------------------------- fd.*
def _fd_fields(tables: StateTables, dns: DomainResolver) -> list[FieldDef]:
    def fd(fn: Callable[[FdInfo], Any]) -> Extractor:
        def ex(evt: Event) -> Any:
            f = evt.fdinfo
            return None if f is None else fn(f)
        return ex

    def net(fn: Callable[[FdInfo], Any]) -> Extractor:
        """Only for IPv4/IPv6 sockets; ``None`` otherwise or when the value is not known."""
        def ex(evt: Event) -> Any:
            f = evt.fdinfo
            if f is None or f.typechar not in "46":
                return None
            v = fn(f)
            return v if v not in ("", None) else None
        return ex

    def local(f: FdInfo) -> tuple[str, int]:
        return (f.dip, f.dport) if f.is_server else (f.sip, f.sport)

    def remote(f: FdInfo) -> tuple[str, int]:
        return (f.sip, f.sport) if f.is_server else (f.dip, f.dport)

    def both(fn: Callable[[FdInfo], tuple[Any, Any]]) -> Callable[[str | None], Extractor]:
        """Existential over client and server (fd.ip, fd.net, fd.port): a tuple of the known values."""
        def make(_arg: str | None) -> Extractor:
            def ex(evt: Event) -> tuple[Any, ...] | None:
                f = evt.fdinfo
                if f is None or f.typechar not in "46":
                    return None
                vals = tuple(v for v in fn(f) if v not in ("", None, 0))
                return vals or None
            return ex
        return make

    def directory(f: FdInfo) -> str | None:
        if f.typechar == "d":
            return f.name
        if f.typechar == "f" and f.name:
            return posixpath.dirname(f.name) or "/"
        return None

    def filename(f: FdInfo) -> str | None:
        if f.typechar != "f" or not f.name:
            return None
        return posixpath.basename(f.name)

    def types_factory(arg: str | None) -> Extractor:
        if arg is None:
            def all_types(evt: Event) -> tuple[str, ...] | None:
                t = evt.thread
                if t is None:
                    return None
                seen: dict[str, None] = {}
                for f in t.fds.values():
                    seen[FD_TYPES.get(f.typechar, "unknown")] = None
                return tuple(seen)
            return all_types
        n = int(arg)

        def one(evt: Event) -> tuple[str, ...] | None:
            t = evt.thread
            f = t.fds.get(n) if t is not None else None
            return None if f is None else (FD_TYPES.get(f.typechar, "unknown"),)
        return one

    def sockfamily(f: FdInfo) -> str | None:
        tc = f.typechar
        return "ip" if tc in "46" else ("unix" if tc == "u" else None)

    ips = frozenset({SYSCALL_SOURCE})
    return [
        _f("fd.num", T.INT64, "the unique number identifying the file descriptor (-1 for a failed "
           "open).", fd(lambda f: f.num)),
        _f("fd.type", T.STRING, "type of FD. Can be 'file', 'directory', 'ipv4', 'ipv6', 'unix', "
           "'pipe', 'event', 'signalfd', 'eventpoll', 'inotify', 'memfd', 'netlink', 'bpf', "
           "'io_uring', 'timerfd' or 'unknown'.", fd(lambda f: FD_TYPES.get(f.typechar, "unknown"))),
        _f("fd.typechar", T.STRING, "type of FD as a single character. Can be 'f' for file, 4 for "
           "IPv4 socket, 6 for IPv6 socket, 'u' for unix socket, p for pipe, 'e' for eventfd, 's' "
           "for signalfd, 'l' for eventpoll, 'i' for inotify, 'b' for bpf, 'r' for io_uring, 'm' "
           "for memfd, 'n' for netlink, 'd' for directory, 'o' for unknown.", fd(lambda f: f.typechar)),
        _f("fd.name", T.PATH, "FD full name. If the fd is a file, this field contains the full "
           "path. If the FD is a socket, this field contain the connection tuple "
           "(client_ip:port->server_ip:port).", fd(lambda f: f.name)),
        _f("fd.nameraw", T.PATH, "FD full name raw. Just like fd.name, but only used if fd is a "
           "file path: the path as the syscall gave it, not made absolute.",
           fd(lambda f: f.nameraw or f.name)),
        _f("fd.directory", T.PATH, "If the fd is a file, the directory that contains it.",
           fd(directory), cache=True),
        _f("fd.filename", T.STRING, "If the fd is a file, the filename without the path.",
           fd(filename), cache=True),
        _f("fd.ino", T.UINT64, "inode number of the referenced file.", fd(lambda f: f.ino or None)),
        _f("fd.dev", T.UINT32, "device number (containing the referenced file).",
           fd(lambda f: f.dev or None)),
        _f("fd.sockfamily", T.STRING, "the socket family for socket events. Can be 'ip' or 'unix'.",
           fd(sockfamily)),
        _f("fd.l4proto", T.STRING, "the IP protocol of a socket. Can be 'tcp', 'udp', 'icmp' or "
           "'raw'.", net(lambda f: f.l4proto)),
        _f("fd.is_server", T.BOOL, "'true' if the process owning this FD is the server endpoint in "
           "the connection.", fd(lambda f: f.is_server if f.typechar in "46u" else None)),
        _f("fd.connected", T.BOOL, "for TCP/UDP FDs, 'true' if the socket is connected.",
           fd(lambda f: f.connected if f.typechar in "46u" else None)),
        _f("fd.name_changed", T.BOOL, "True when an event changes the name of an fd used by this "
           "event. This can occur in some cases such as udp connections where the connection "
           "tuple changes.", lambda e: bool(e.cache.get(NAME_CHANGED_KEY, False))),
        _f("fd.cip", T.IPADDR, "client IP address.", net(lambda f: f.sip)),
        _f("fd.sip", T.IPADDR, "server IP address.", net(lambda f: f.dip)),
        _f("fd.lip", T.IPADDR, "local IP address.", net(lambda f: local(f)[0])),
        _f("fd.rip", T.IPADDR, "remote IP address.", net(lambda f: remote(f)[0])),
        _f("fd.cport", T.PORT, "for TCP/UDP FDs, the client port.", net(lambda f: f.sport or None)),
        _f("fd.sport", T.PORT, "for TCP/UDP FDs, server port.", net(lambda f: f.dport or None)),
        _f("fd.lport", T.PORT, "for TCP/UDP FDs, the local port.", net(lambda f: local(f)[1] or None)),
        _f("fd.rport", T.PORT, "for TCP/UDP FDs, the remote port.",
           net(lambda f: remote(f)[1] or None)),
        _f("fd.cnet", T.IPNET, "matches the client IP network of the fd.", net(lambda f: f.sip)),
        _f("fd.snet", T.IPNET, "matches the server IP network of the fd.", net(lambda f: f.dip)),
        _f("fd.lnet", T.IPNET, "matches the local IP network of the fd.", net(lambda f: local(f)[0])),
        _f("fd.rnet", T.IPNET, "matches the remote IP network of the fd.",
           net(lambda f: remote(f)[0])),
        FieldDef("fd.ip", T.IPADDR, "matches the ip address (client or server) of the fd: true if "
                 "either matches.", both(lambda f: (f.sip, f.dip)), ancestor=True, sources=ips),
        FieldDef("fd.net", T.IPNET, "matches the IP network (client or server) of the fd: true if "
                 "either matches.", both(lambda f: (f.sip, f.dip)), ancestor=True, sources=ips),
        FieldDef("fd.port", T.PORT, "matches the port (client or server) of the fd: true if either "
                 "matches.", both(lambda f: (f.sport, f.dport)), ancestor=True, sources=ips),
        *_domain_fields(dns, local, remote),
        FieldDef("fd.types", T.STRING, "List of FD types in use by the process. fd.types[N] gives "
                 "the type of fd N (e.g. fd.types[0] for stdin).", types_factory,
                 arg=ArgKind.OPTIONAL, arg_is_index=True, is_list=True, cache=True),
    ]


_DOMAIN_NOTE = (" No reverse DNS (as Falco): the engine resolves, in the background, the names "
                "conditions compare it with; '=', '!=' and 'in' test the address against their "
                "addresses. Extracted: the tracked name resolving to the address, if any.")


def _domain_fields(dns: DomainResolver, local: Callable[[FdInfo], tuple[str, int]],
                   remote: Callable[[FdInfo], tuple[str, int]]) -> list[FieldDef]:
    """``fd.cip.name``, ``fd.sip.name``, ``fd.lip.name``, ``fd.rip.name`` (see
    :mod:`falconet.state.dns`)."""
    def address(side: Callable[[FdInfo], str]) -> Extractor:
        def ex(evt: Event) -> str | None:
            f = evt.fdinfo
            if f is None or f.typechar not in "46":
                return None
            return side(f) or None
        return ex

    def field(name: str, what: str, side: Callable[[FdInfo], str]) -> FieldDef:
        addr = address(side)
        name_of = dns.name_of

        def extract(evt: Event) -> str | None:
            return name_of(addr(evt))

        def check(_arg: str | None, op: str, values: list[str]) -> Callable[[Event], bool] | None:
            return domain_check(dns, addr, op, values)
        return FieldDef(name, T.STRING, f"Domain name associated with the {what} IP address."
                        + _DOMAIN_NOTE, _const(extract), cache=False, compile_check=check)

    return [field("fd.cip.name", "client", lambda f: f.sip),
            field("fd.sip.name", "server", lambda f: f.dip),
            field("fd.lip.name", "local", lambda f: local(f)[0]),
            field("fd.rip.name", "remote", lambda f: remote(f)[0])]


# ---------------------------------------------------------------------------------- entry point
def core_field_defs(tables: StateTables | None = None, users: Any = None,
                    hostname: str | None = None, dns: DomainResolver | None = None
                    ) -> list[FieldDef]:
    """Every core field, bound to ``tables`` (the engine's state), ``users`` (a
    :class:`falconet.state.users.UserDB`) and ``dns`` (the engine's resolver of the names in
    ``fd.*ip.name`` conditions). Without them, fresh empty ones are used (listing, validating:
    that resolver never starts a thread, so those names never match)."""
    if tables is None:
        tables = StateTables()
    if users is None:
        from falconet.state.users import UserDB  # noqa: PLC0415

        users = UserDB(frozen=True)
    if dns is None:
        dns = DomainResolver(autostart=False)
    r = ArgRenderer(tables)
    return [*_evt_fields(r, hostname), *_proc_fields(tables, users), *_user_fields(users),
            *_fd_fields(tables, dns)]


def markdown_table(defs: Iterable[FieldDef]) -> str:
    """``docs/fields.md`` body: one table row per field."""
    rows = ["| field | type | argument | description |", "|---|---|---|---|"]
    for d in sorted(defs, key=lambda d: d.name):
        if d.arg is ArgKind.NONE:
            arg = ""
        else:
            form = "[N]" if d.arg_is_index else ("[name] or .name" if d.dotted_arg else "[name]")
            arg = form + (" (optional)" if d.arg is ArgKind.OPTIONAL else " (required)")
        kind = d.type.value + (" (list)" if d.is_list else "")
        rows.append(f"| `{d.name}` | {kind} | {arg} | {d.desc.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":   # pragma: no cover - regenerates docs/fields.md
    print(markdown_table(core_field_defs(hostname="host")))
