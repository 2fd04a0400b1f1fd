"""A small stand-in field registry for fast unit tests and the rules benchmark: every field the
upstream stable rules use, with simple extractors over hand-built events.

Events carry a ``ThreadInfo`` (``evt.thread``) whose ``extra["ancestors"]`` is the list of
ancestor ThreadInfos (parent first), ``extra["container"]`` a dict of container metadata and
``extra["caps"]`` the rendered effective capabilities; ``evt.fdinfo`` is an ``FdInfo``.
The real extractors live in ``falconet.state.fields`` and the container plugin.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from falconet.events import Event
from falconet.fields.registry import ArgKind, FieldDef, FieldRegistry, FieldType
from falconet.state.tables import FdInfo, ThreadInfo

T = FieldType
OPEN_TYPES = frozenset({"open", "openat", "openat2"})


def _thr(fn):
    def get(e: Event) -> Any:
        t = e.thread
        return None if t is None else fn(t)
    return get


def _fd(fn):
    def get(e: Event) -> Any:
        f = e.fdinfo
        return None if f is None else fn(f)
    return get


def _anc(t: ThreadInfo, n: int) -> ThreadInfo | None:
    if n == 0:
        return t
    a = t.extra.get("ancestors", [])
    return a[n - 1] if n - 1 < len(a) else None


def _cmdline(t: ThreadInfo) -> str:
    return " ".join([t.comm, *t.args])


def _ancestor_field(fn):
    """proc.aname-style: [N] = N-th ancestor (0 = self); no index = tuple of all ancestors."""
    def make(arg: str | None):
        if arg is None:
            def all_(e: Event) -> Any:
                t = e.thread
                if t is None:
                    return None
                return tuple(fn(a) for a in t.extra.get("ancestors", []))
            return all_
        n = int(arg)

        def one(e: Event) -> Any:
            t = e.thread
            a = None if t is None else _anc(t, n)
            return None if a is None else fn(a)
        return one
    return make


def _parent(fn):
    def get(e: Event) -> Any:
        t = e.thread
        p = None if t is None else _anc(t, 1)
        return None if p is None else fn(p)
    return get


def _container(key: str):
    def get(e: Event) -> Any:
        t = e.thread
        if t is None:
            return None
        c = t.extra.get("container")
        if c is None:
            return "host" if key == "id" else None
        return c.get(key)
    return get


def _evt_arg(arg: str | None):
    if arg is not None and arg.lstrip("-").isdigit():
        i = int(arg)

        def by_index(e: Event) -> Any:
            vals = list(e.args.values())
            return str(vals[i]) if 0 <= i < len(vals) else None
        return by_index

    def by_name(e: Event) -> Any:
        v = e.args.get(arg)
        return None if v is None else str(v)
    return by_name


def _res(e: Event) -> Any:
    if e.res is None:
        return None
    return "SUCCESS" if e.res >= 0 else errno.errorcode.get(-e.res, str(e.res))


def _open_mode(write: bool):
    def get(e: Event) -> Any:
        if e.type not in OPEN_TYPES:
            return False
        raw = e.args.get("flags_raw", e.args.get("flags", 0))
        acc = (raw if isinstance(raw, int) else 0) & 3
        return acc in (1, 2) if write else acc in (0, 2)
    return get


def _f(name: str, type: FieldType, getter=None, *, make=None, **kw: Any) -> FieldDef:
    mk = make if make is not None else (lambda _arg, _g=getter: _g)
    return FieldDef(name, type, name, mk, **kw)


def stub_fields() -> list[FieldDef]:
    anc = {"arg": ArgKind.OPTIONAL, "arg_is_index": True, "ancestor": True, "no_transformer": True}
    cont = {"provider": "container"}
    return [
        _f("evt.type", T.STRING, lambda e: e.type, cache=False),
        _f("evt.num", T.UINT64, lambda e: e.num, cache=False),
        _f("evt.time", T.ABSTIME, lambda e: e.ts, cache=False),
        _f("evt.dir", T.STRING, lambda e: "<", cache=False),
        _f("evt.res", T.STRING, _res),
        _f("evt.rawres", T.INT64, lambda e: e.res, cache=False),
        _f("evt.args", T.STRING, lambda e: " ".join(f"{k}={v}" for k, v in e.args.items())),
        _f("evt.arg", T.STRING, make=_evt_arg, arg=ArgKind.REQUIRED, dotted_arg=True),
        _f("evt.buffer", T.BYTEBUF, lambda e: e.args.get("data")),
        _f("evt.is_open_read", T.BOOL, _open_mode(False)),
        _f("evt.is_open_write", T.BOOL, _open_mode(True)),
        _f("proc.name", T.STRING, _thr(lambda t: t.comm)),
        _f("proc.pid", T.INT64, _thr(lambda t: t.pid)),
        _f("proc.exe", T.STRING, _thr(lambda t: t.exe)),
        _f("proc.exepath", T.PATH, _thr(lambda t: t.exepath)),
        _f("proc.args", T.STRING, _thr(lambda t: " ".join(t.args))),
        _f("proc.cmdline", T.STRING, _thr(_cmdline)),
        _f("proc.cwd", T.PATH, _thr(lambda t: t.cwd)),
        _f("proc.tty", T.UINT32, _thr(lambda t: t.tty)),
        _f("proc.duration", T.RELTIME, lambda e: None if e.thread is None
           else e.ts - e.thread.start_ts),
        _f("proc.sname", T.STRING, _thr(lambda t: t.extra.get("sname", t.comm))),
        _f("proc.is_exe_from_memfd", T.BOOL, _thr(lambda t: t.exe_from_memfd)),
        _f("proc.is_exe_upper_layer", T.BOOL, _thr(lambda t: t.exe_upper_layer)),
        _f("proc.exe_ino.ctime", T.ABSTIME, _thr(lambda t: t.exe_ino_ctime)),
        _f("proc.exe_ino.mtime", T.ABSTIME, _thr(lambda t: t.exe_ino_mtime)),
        _f("proc.exe_ino.ctime_duration_proc_start", T.ABSTIME,
           _thr(lambda t: t.start_ts - t.exe_ino_ctime)),
        _f("proc.pname", T.STRING, _parent(lambda t: t.comm)),
        _f("proc.pcmdline", T.STRING, _parent(_cmdline)),
        _f("proc.pexe", T.STRING, _parent(lambda t: t.exe)),
        _f("proc.pexepath", T.PATH, _parent(lambda t: t.exepath)),
        _f("proc.aname", T.STRING, make=_ancestor_field(lambda t: t.comm), **anc),
        _f("proc.aexepath", T.PATH, make=_ancestor_field(lambda t: t.exepath), **anc),
        _f("proc.acmdline", T.STRING, make=_ancestor_field(_cmdline), **anc),
        _f("proc.apid", T.INT64, make=_ancestor_field(lambda t: t.pid), **anc),
        _f("thread.cap_effective", T.STRING, _thr(lambda t: t.extra.get("caps", ""))),
        _f("user.name", T.STRING, _thr(lambda t: t.extra.get("user", "root" if t.uid == 0
                                                             else f"u{t.uid}"))),
        _f("user.uid", T.UINT32, _thr(lambda t: t.uid)),
        _f("user.loginuid", T.INT64, _thr(lambda t: t.loginuid)),
        _f("user.loginname", T.STRING, _thr(lambda t: t.extra.get("loginname"))),
        _f("group.gid", T.UINT32, _thr(lambda t: t.gid)),
        _f("group.name", T.STRING, _thr(lambda t: "root" if t.gid == 0 else f"g{t.gid}")),
        _f("fd.name", T.PATH, _fd(lambda f: f.name)),
        _f("fd.nameraw", T.PATH, _fd(lambda f: f.nameraw or f.name)),
        _f("fd.typechar", T.STRING, _fd(lambda f: f.typechar)),
        _f("fd.type", T.STRING, _fd(lambda f: {"f": "file", "d": "directory", "4": "ipv4",
                                              "6": "ipv6", "u": "unix"}.get(f.typechar))),
        _f("fd.directory", T.PATH, _fd(lambda f: os.path.dirname(f.name) if f.typechar in "fd"
                                       else None)),
        _f("fd.filename", T.STRING, _fd(lambda f: os.path.basename(f.name) if f.typechar in "fd"
                                        else None)),
        _f("fd.num", T.INT64, _fd(lambda f: f.num)),
        _f("fd.l4proto", T.STRING, _fd(lambda f: f.l4proto or None)),
        _f("fd.lport", T.PORT, _fd(lambda f: f.sport if not f.is_server else f.dport)),
        _f("fd.rport", T.PORT, _fd(lambda f: f.dport if not f.is_server else f.sport)),
        _f("fd.sport", T.PORT, _fd(lambda f: f.dport or None)),
        _f("fd.sip", T.IPADDR, _fd(lambda f: f.dip or None)),
        _f("fd.ip", T.IPADDR, _fd(lambda f: f.dip or None)),
        _f("fd.net", T.IPNET, _fd(lambda f: f.dip or None)),
        _f("fd.snet", T.IPNET, _fd(lambda f: f.dip or None)),
        _f("fd.sip.name", T.STRING, _fd(lambda f: None)),
        _f("fd.connected", T.BOOL, _fd(lambda f: f.connected)),
        _f("fd.name_changed", T.BOOL, _fd(lambda f: False)),
        _f("fd.types", T.STRING, _thr(lambda t: tuple(sorted({f.typechar for f in t.fds.values()}))),
           is_list=True),
        _f("container.id", T.STRING, _container("id"), suggested=True, **cont),
        _f("container.name", T.STRING, _container("name"), suggested=True, **cont),
        _f("container.image.repository", T.STRING, _container("repository"), suggested=True,
           **cont),
        _f("container.image.tag", T.STRING, _container("tag"), suggested=True, **cont),
        _f("container.privileged", T.BOOL, _container("privileged"), **cont),
        _f("container.start_ts", T.ABSTIME, _container("start_ts"), **cont),
        _f("k8s.pod.name", T.STRING, _container("pod"), suggested=True, **cont),
        _f("k8s.ns.name", T.STRING, _container("ns"), suggested=True, **cont),
    ]


def stub_registry() -> FieldRegistry:
    reg = FieldRegistry()
    reg.register_all(stub_fields())
    return reg


def proc(comm: str, exepath: str = "", args: list[str] | None = None, *, pid: int = 100,
         uid: int = 0, tty: int = 0, **kw: Any) -> ThreadInfo:
    t = ThreadInfo(tid=pid, pid=pid, comm=comm, exe=kw.pop("exe", comm),
                   exepath=exepath or f"/usr/bin/{comm}", args=list(args or []), uid=uid,
                   tty=tty, **{k: v for k, v in kw.items() if k in ThreadInfo.__slots__})
    for k in ("ancestors", "container", "caps", "user", "loginname", "sname"):
        if k in kw:
            t.extra[k] = kw[k]
    return t


def event(etype: str, thread: ThreadInfo | None = None, *, fd: FdInfo | None = None,
          args: dict[str, Any] | None = None, res: int | None = 0, ts: int = 1_700_000_000 * 10**9,
          source: str = "syscall", num: int = 1) -> Event:
    e = Event(source, etype, ts, tid=thread.tid if thread else 0, pid=thread.pid if thread else 0,
              args=dict(args or {}), res=res)
    e.thread = thread
    e.fdinfo = fd
    e.num = num
    return e
