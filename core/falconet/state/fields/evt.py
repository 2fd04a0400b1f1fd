"""``evt.*``: the event itself (number, type, time, return value) and its arguments rendered as Falco
renders them (flags by name, fds as ``<f>/path`` from the fd table of the event's thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from falconet.events import Event
from falconet.fields.registry import ArgKind, Extractor, FieldDef
from falconet.state import flags as F
from falconet.state.fields.common import ANY_SOURCE, T
from falconet.state.fields.common import simple_field as _f
from falconet.state.tables import StateTables, ThreadInfo

_OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat", "open_by_handle_at"})
#: argument names whose value is an fd (rendered ``<f>/etc/passwd`` like Falco)
_FD_ARGS = frozenset({"fd", "oldfd", "newfd", "listenfd", "dirfd", "olddirfd", "newdirfd",
                      "linkdirfd", "olddir", "newdir"})
#: libsinsp's EF_READS_FROM_FD / EF_WRITES_TO_FD event flags (``evt.is_io*``)
_IO_READ_TYPES = frozenset({"read", "pread64", "readv", "preadv", "preadv2", "recvfrom",
                            "recvmsg", "recvmmsg"})
_IO_WRITE_TYPES = frozenset({"write", "pwrite64", "writev", "pwritev", "pwritev2", "sendto",
                             "sendmsg", "sendmmsg"})
#: event types that are not system calls (libsinsp's internal/scheduler/metaevents):
#: ``syscall.type`` is unset for them
_NOT_SYSCALLS = frozenset({"procexit", "procfork", "procinfo", "switch", "signaldeliver",
                           "container", "pluginevent", "drop", "notification", "meta",
                           "scapevent", "sysdigevent", "infra", "k8s", "mesos", "tracer",
                           "cpu_hotplug", "page_fault", "asyncevent", "security"})
#: the letter libsinsp adds to an IP socket's type in a rendered fd argument (<4t>, <6u>)
_L4_CHAR = {"tcp": "t", "udp": "u", "icmp": "i", "raw": "r"}
#: collector bookkeeping, not Falco parameters: left out of ``evt.args``
_HIDDEN_ARGS = frozenset({"cgroup_id", "cpu", "env", "ftype", "fdpath", "ring"})


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
        if f is None:
            return str(v)
        # libsinsp adds the L4 protocol's letter to IP sockets: <4t>, <6u>
        return f"<{f.typechar}{_L4_CHAR.get(f.l4proto, '')}>{f.name}" if f.typechar in "46" else \
            f"<{f.typechar}>{f.name}"

    def text(self, evt: Event, name: str, v: Any) -> str | None:
        """The resolved text of one argument (``evt.arg.<name>``)."""
        tv = type(v)
        if name == "data" and (tv is bytes or tv is str):
            return data_text(v)
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
            if r is None:
                return str(v)
            if name == "flags" and evt.type in _OPEN_TYPES:
                ft = int(evt.args.get("ftype") or 0)
                if ft & F.FTYPE_CREATED:
                    v |= F.O_F_CREATED              # the open created its file (open_flags)
                if ft & F.FTYPE_UPPER:
                    v |= F.FD_UPPER_LAYER           # on an overlayfs upper layer
                elif ft & F.FTYPE_LOWER:
                    v |= F.FD_LOWER_LAYER
            return r(v)
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


def _evt_buffer(evt: Event) -> bytes | None:
    """The I/O data snapshot; a replayed capture holds it as text with surrogate escapes."""
    v = evt.args.get("data")
    if v is None or type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    return None


def data_text(v: bytes | str) -> str:
    """An I/O buffer as Falco prints it (``print_format: normal``): printable ASCII as is,
    every other byte as ``.``."""
    b = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
    return b.decode("latin-1").translate(_DATA_TEXT)


_DATA_TEXT = {i: (i if 32 <= i < 127 else ord(".")) for i in range(256)}


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


def evt_fields(r: ArgRenderer, hostname: str | None) -> list[FieldDef]:
    host = hostname
    if host is None:
        import socket  # noqa: PLC0415 - only when the engine gave no hostname

        host = socket.gethostname()
    A = ANY_SOURCE
    this_host: str = host       # mypy keeps the narrowing here, not in a default below

    def hostname_of(e: Event, _h: str = this_host) -> str:
        return _h
    return [
        _f("evt.num", T.UINT64, "event number.", lambda e: e.num, sources=A),
        _f("evt.type", T.STRING, "The name of the event (e.g. 'open').", lambda e: e.type, sources=A),
        _f("evt.source", T.STRING, "the name of the source that produced the event.",
           lambda e: e.source, sources=A),
        _f("evt.hostname", T.STRING, "The hostname of the underlying host.",
           hostname_of, sources=A),
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
        # the collector's record header (bpf_get_smp_processor_id at the syscall's exit);
        # missing in captures recorded before it existed
        _f("evt.cpu", T.INT64, "number of the CPU where this event happened.",
           lambda e: e.args.get("cpu")),
        _f("evt.args", T.STRING, "all the event arguments, aggregated into a single string.",
           _evt_args(r), cache=True),
        _f("evt.count", T.UINT32, "This filter field always returns 1.", lambda e: 1,
           sources=A),
        _f("evt.buffer", T.BYTEBUF, "the binary data buffer for events that have one, like "
           "read(), recvfrom(), etc. Use this field in filters with 'contains' to search into "
           "I/O data buffers (the first collector.snaplen bytes, 80 by default, as Falco's).",
           _evt_buffer),
        _f("evt.is_io", T.BOOL, "'true' for events that read or write to FDs, like read(), "
           "send, recvfrom, etc.", lambda e: e.type in _IO_READ_TYPES or e.type in _IO_WRITE_TYPES),
        _f("evt.is_io_read", T.BOOL, "'true' for events that read from FDs, like read(), recv(), "
           "recvfrom(), etc.", lambda e: e.type in _IO_READ_TYPES),
        _f("evt.is_io_write", T.BOOL, "'true' for events that write to FDs, like write(), "
           "send(), etc.", lambda e: e.type in _IO_WRITE_TYPES),
        _f("syscall.type", T.STRING, "For system call events, the name of the system call (e.g. "
           "'open'). Unset for other events (e.g. switch or internal events).",
           lambda e: None if e.type in _NOT_SYSCALLS else e.type),
        # plugin events carry no plugin-rendered summary here: the value is always missing
        _f("evt.plugininfo", T.STRING, "if the event is from a plugin, a summary of the event as "
           "formatted by the plugin.", lambda e: None, sources=A),
        _f("evt.is_open_read", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at events "
           "where the path was opened for reading", _is_open_read),
        _f("evt.is_open_write", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at events "
           "where the path was opened for writing", _is_open_write),
        _f("evt.is_open_exec", T.BOOL, "'true' for open/openat/openat2/open_by_handle_at or creat "
           "events where a file is created with execute permissions", _is_open_exec),
        # Falconet (issue 19): operations submitted through io_uring are reported as the syscall
        # event they stand for, with the argument via=io_uring (docs/evasion.md)
        _f("evt.is_io_uring", T.BOOL, "'true' for events of operations submitted through "
           "io_uring (e.g. IORING_OP_OPENAT reported as openat, evt.arg.via=io_uring) rather than "
           "made by a system call.", lambda e: e.args.get("via") == "io_uring"),
    ]
