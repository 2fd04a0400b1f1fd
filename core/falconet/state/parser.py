"""The core state parser: runs on every syscall event before rules, keeps the tables current.

For each event it attaches ``evt.thread`` (creating an entry when an unknown tid shows up: from
``/proc`` in live mode, a minimal entry in replay) and ``evt.fdinfo`` (the fd the event refers to),
and applies the event's effect on process and fd state:

- ``procfork``/``clone``/``fork``/``vfork``/``clone3``: create the child. Parent = ``parent_pid`` of
  ``procfork`` (the reliable source; ``CLONE_PARENT`` is honoured when the clone exit shows it).
  The child inherits everything; a new process gets a *copy* of the fd table unless CLONE_FILES
  (then it shares it); a thread always shares its process's table.
- ``execve``/``execveat``: replace the image (comm, exe, args, exepath, ids, caps, tty, sid, exe
  flags, ...); close-on-exec fds go away; a changed cgroup id clears ``container_id``.
- ``procexit``: the process is marked dead and kept for a grace period (``dead_grace_ns`` of *event*
  time, at most ``max_dead`` entries) so its children's ancestor chain survives a parent that exits
  first; then it is reclaimed. Reclaim is driven by event timestamps, so replay behaves as live.
- fds: open/openat/openat2/creat/memfd_create/socket/connect/accept/accept4/bind/listen/dup*/close/
  sendto/recvfrom/sendmsg, fcntl(F_DUPFD*), pipe/pipe2/socketpair, pidfd_open/pidfd_getfd and the
  anonymous-inode fds (eventfd, epoll, inotify, signalfd, timerfd, userfaultfd, io_uring), and
  cwd/ids: chdir/fchdir/set*id/capset.

Handlers are looked up once per event in a dict built at construction: per-event cost is one dict
get plus the handler.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import Any

from falconet.events import SYSCALL_SOURCE, Event
from falconet.kfilter import RECOVERED_FD_TYPES
from falconet.state import flags as F
from falconet.state.overlay import is_upper_layer
from falconet.state.proc_bootstrap import (
    SockAddr,
    boot_time_ns,
    clone_thread,
    exe_writable,
    read_thread,
    socket_addr,
    thread_of,
)
from falconet.state.tables import FdInfo, StateTables, ThreadInfo, thread_to_dict

AT_FDCWD = -100
_UNSET = 4294967295
_EINPROGRESS = -115
#: per-event cache key telling ``fd.name_changed`` that this event renamed its fd
NAME_CHANGED_KEY = "_state.fd_name_changed"
#: ``ThreadInfo.extra`` key of a name set by prctl(PR_SET_NAME) (``thread.comm``)
THREAD_COMM_KEY = "_state.thread_comm"
PR_SET_NAME = 15
#: ``ThreadInfo.extra`` key (main thread) of the io_uring fixed-file slots, by ring
IOU_SLOTS_KEY = "_state.io_uring_slots"

Handler = Callable[[Event, ThreadInfo], None]


def _uid(v: Any) -> int | None:
    """A uid/gid argument: ``None`` when absent or ``-1``/UINT32_MAX (unchanged in set*id)."""
    if v is None:
        return None
    v = int(v)
    return None if v in (-1, _UNSET) else v


class StateParser:
    """Callable ``parse(evt)``; one per engine. ``live`` allows reading ``/proc`` (never in replay).

    Counters (also mirrored into :class:`falconet.metrics.EngineMetrics` when given):
    ``proc_lookups`` / ``proc_misses`` (unknown tids looked up in /proc), ``synthesized``
    (minimal entries made without /proc), ``evictions`` (entries dropped by the table cap).
    """

    def __init__(self, tables: StateTables, *, live: bool = False, metrics: Any = None,
                 users: Any = None, proc: str = "/proc",
                 emit_state: Callable[[str, Any], None] | None = None,
                 plugin_name: str = "core-state") -> None:
        self.tables = tables
        self.live = live
        self.metrics = metrics
        self.users = users
        self.proc = proc
        self.emit_state = emit_state
        self.plugin_name = plugin_name
        self.proc_lookups = 0
        self.proc_misses = 0
        self.synthesized = 0
        self.evictions = 0
        self._btime: int | None = None
        h: dict[str, Handler] = {}
        h["procfork"] = self._on_procfork
        for n in ("clone", "clone3", "fork", "vfork"):
            h[n] = self._on_clone
        h["execve"] = h["execveat"] = self._on_execve
        h["procexit"] = self._on_procexit
        for n in ("open", "openat", "openat2", "creat", "open_by_handle_at"):
            h[n] = self._on_open
        h["memfd_create"] = self._on_memfd
        h["socket"] = self._on_socket
        h["connect"] = self._on_connect
        h["accept"] = h["accept4"] = self._on_accept
        h["bind"] = self._on_bind
        h["listen"] = self._on_listen
        h["sendto"] = h["sendmsg"] = self._on_sendto
        h["recvfrom"] = h["recvmsg"] = self._on_recvfrom
        h["dup"] = h["dup2"] = h["dup3"] = self._on_dup
        h["fcntl"] = self._on_fcntl
        h["close"] = self._on_close
        h["chdir"] = self._on_chdir
        h["fchdir"] = self._on_fchdir
        h["setuid"] = h["setreuid"] = h["setresuid"] = self._on_set_ids("uid", "euid")
        h["setgid"] = h["setregid"] = h["setresgid"] = self._on_set_ids("gid", "egid")
        h["capset"] = self._on_capset
        h["prctl"] = self._on_prctl
        h["userfaultfd"] = self._on_newfd("u")
        for n in ("eventfd", "eventfd2"):
            h[n] = self._on_newfd("e")
        for n in ("signalfd", "signalfd4"):
            h[n] = self._on_newfd("s")
        for n in ("epoll_create", "epoll_create1"):
            h[n] = self._on_newfd("l")
        for n in ("inotify_init", "inotify_init1"):
            h[n] = self._on_newfd("i")
        h["io_uring_setup"] = self._on_newfd("r")
        h["timerfd_create"] = self._on_newfd("t")
        h["pipe"] = h["pipe2"] = self._on_pipe
        h["socketpair"] = self._on_socketpair
        h["pidfd_open"] = self._on_pidfd_open
        h["pidfd_getfd"] = self._on_pidfd_getfd
        self.handlers = h
        # bound once: the tables' dict is never replaced (clear() empties it in place)
        self._thread_get = tables.threads.get
        self._handler_get = h.get

    # ------------------------------------------------------------------------------ entry point
    def __call__(self, evt: Event) -> None:
        if evt.source != SYSCALL_SOURCE or not evt.tid:
            return
        t = self._thread_get(evt.tid)
        if t is None:
            if evt.type == "procexit":
                return
            t = self._unknown(evt)
        evt.thread = t
        h = self._handler_get(evt.type)
        if h is not None:
            h(evt, t)
        else:
            fd = evt.args.get("fd")
            if fd is not None:
                f = t.fds.get(fd)
                if f is None and evt.type in RECOVERED_FD_TYPES:
                    f = self._recover_fd(evt, t, fd)
                evt.fdinfo = f

    parse = __call__

    def _recover_fd(self, evt: Event, t: ThreadInfo, fd: Any) -> FdInfo | None:
        """An fd-consuming call (``fchmod``...) on an fd we never saw open (the kernel filter
        dropped its open, or it predates the engine): live, its path from
        ``/proc/<pid>/fd/<fd>`` while the process still holds it, written into the event's
        hidden ``fdpath`` arg so a recording replays with the same value."""
        name = evt.args.get("fdpath")
        if name is None:
            if not self.live or not isinstance(fd, int) or fd < 0:
                return None
            try:
                name = os.readlink(f"{self.proc}/{evt.pid}/fd/{fd}")
            except OSError:
                return None
            evt.args["fdpath"] = name
        if not isinstance(name, str) or not name.startswith("/"):
            return None                 # socket:[..], pipe:[..], anon_inode:..: not a file
        f = FdInfo(fd, "f", name, nameraw=name)
        t.fds[fd] = f
        return f

    # ------------------------------------------------------------------------------ unknown tids
    def _add(self, t: ThreadInfo) -> None:
        n = self.tables.add(t)
        if n:
            self.evictions += n
            if self.metrics is not None:
                self.metrics.drop("state_evicted", n)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.enrichment[(self.plugin_name, result)] += 1

    def _unknown(self, evt: Event) -> ThreadInfo:
        """An event from a tid we don't know: same process known → a thread copy; else /proc
        (live) or a minimal entry (replay)."""
        tid, pid = evt.tid, evt.pid or evt.tid
        threads = self.tables.threads
        main = threads.get(pid) if pid != tid else None
        t: ThreadInfo | None = None
        if main is not None:
            t = clone_thread(main, tid)
            t.start_ts = evt.ts
        elif self.live:
            self.proc_lookups += 1
            if self._btime is None:
                self._btime = boot_time_ns(self.proc)
            t = read_thread(pid, proc=self.proc, btime_ns=self._btime)
            if t is not None and tid != pid:
                self._add(t)
                main, t = t, (thread_of(t, tid, proc=self.proc, btime_ns=self._btime)
                              or clone_thread(t, tid))
            if t is None:
                self.proc_misses += 1
                self._count("miss")
            else:
                self._count("hit")
                if self.emit_state is not None:
                    recs = [thread_to_dict(x) for x in ((main, t) if main is not None else (t,))]
                    self.emit_state(self.plugin_name, {"threads": recs})
        if t is None:
            self.synthesized += 1
            if not self.live:
                self._count("miss")          # replay: a thread the capture's snapshot lacked
            t = ThreadInfo(tid=tid, pid=pid, start_ts=evt.ts)
            a = evt.args
            if "cgroup_id" in a:
                t.cgroup_id = a["cgroup_id"]
            if main is not None:
                t.fds = main.fds
        cg = evt.args.get("cgroup_id")
        if cg and not t.cgroup_id:
            t.cgroup_id = cg
        self._add(t)
        return t

    # ------------------------------------------------------------------------------ processes
    def _new_child(self, parent: ThreadInfo, ctid: int, cpid: int, ts: int, flags: int,
                   parent_pid: int | None, comm: str | None) -> ThreadInfo:
        tables = self.tables
        pm = tables.main(parent)
        if ctid != cpid:                     # a new thread of an existing process
            owner = tables.threads.get(cpid) or pm
            c = clone_thread(owner, ctid, cpid)
            c.fds = owner.fds
        else:
            c = clone_thread(pm, ctid, cpid)
            pp = tables.threads.get(parent_pid) if parent_pid else None
            c.ptid = pm.ptid if flags & F.CLONE_PARENT else (pp.pid if pp is not None else pm.pid)
            if not flags & F.CLONE_FILES:
                c.fds = dict(pm.fds)
            if pm.vpid == pm.pid:
                c.vpid = cpid
            elif flags & F.CLONE_NEWPID:
                c.vpid = 1
            else:
                c.vpid = 0                   # learnt at exec (execve carries vpid)
            if flags & F.CLONE_NEWPID:
                c.pidns_init_start_ts = ts
        c.start_ts = ts
        if comm and not c.comm:
            c.comm = comm
        elif comm and comm != c.comm:
            # the parent renamed itself (prctl PR_SET_NAME) before forking: the exec-time name
            # stays proc.name (issue 19), the kernel's current one is thread.comm
            c.extra[THREAD_COMM_KEY] = comm
        c.env = pm.env
        self._add(c)
        return c

    def _on_procfork(self, evt: Event, t: ThreadInfo) -> None:
        a = evt.args
        ctid = a.get("child_tid")
        if not ctid:
            return
        cpid = a.get("child_pid") or ctid
        old = self.tables.threads.get(ctid)
        if old is not None and not old.dead and old.start_ts >= evt.ts:
            return                           # already created (by an earlier event of the child)
        c = self._new_child(t, ctid, cpid, evt.ts, 0, a.get("parent_pid"), a.get("child_comm"))
        cg = a.get("cgroup_id")
        if cg:
            c.cgroup_id = cg

    def _on_clone(self, evt: Event, t: ThreadInfo) -> None:
        res = evt.res
        if res is None or res <= 0:          # failed, or the child's own return (0)
            return
        a = evt.args
        flags = int(a.get("flags") or 0)
        ctid = a.get("child_tid") or res
        cpid = a.get("child_pid") or (t.pid if flags & F.CLONE_THREAD else ctid)
        c = self.tables.threads.get(ctid)
        if c is None or c.dead:
            c = self._new_child(t, ctid, cpid, evt.ts, flags, t.pid, None)
        elif ctid == cpid:                   # procfork made it without the flags: apply them now
            pm = self.tables.main(t)
            if flags & F.CLONE_FILES:
                c.fds = pm.fds
            if flags & F.CLONE_PARENT:
                c.ptid = pm.ptid
            if flags & F.CLONE_NEWPID:
                c.vpid, c.pidns_init_start_ts = 1, c.start_ts

    def _on_execve(self, evt: Event, t: ThreadInfo) -> None:
        if evt.res is not None and evt.res < 0:
            return
        a = evt.args
        if t.tid != t.pid:                   # exec from a non-leader thread: it becomes the leader
            m = self.tables.threads.get(t.pid)
            if m is not None:
                self.tables.remove(t.tid)
                evt.thread = t = m
        argv = a.get("argv")
        if isinstance(argv, str):
            argv = argv.split("\0") if "\0" in argv else argv.split(" ")
        argv = list(argv or ())
        filename = a.get("filename") or ""
        t.exe = a.get("exe") or (argv[0] if argv else filename)
        t.args = argv[1:]
        if "cwd" in a and a["cwd"]:
            t.cwd = a["cwd"]
        exepath = a.get("exepath") or a.get("trusted_exepath") or ""
        if not exepath and filename:
            exepath = self._resolve(filename, a.get("dirfd", AT_FDCWD), t)
        t.exepath = exepath
        comm = a.get("comm")
        t.comm = comm if comm else posixpath.basename(filename or exepath)[:15]
        v = _uid(a.get("uid"))
        if v is not None:
            t.uid = v
            t.euid = v
        v = _uid(a.get("euid"))
        if v is not None:
            t.euid = v
        v = _uid(a.get("gid"))
        if v is not None:
            t.gid = v
            t.egid = v
        v = _uid(a.get("egid"))
        if v is not None:
            t.egid = v
        if "loginuid" in a:
            lu = int(a["loginuid"])
            t.loginuid = -1 if lu in (-1, _UNSET) else lu
        for key, attr in (("tty", "tty"), ("sid", "sid"), ("vpid", "vpid"),
                          ("cap_effective", "cap_effective"), ("cap_permitted", "cap_permitted"),
                          ("cap_inheritable", "cap_inheritable"), ("exe_ino", "exe_ino"),
                          ("exe_ino_ctime", "exe_ino_ctime"), ("exe_ino_mtime", "exe_ino_mtime")):
            if key in a:
                setattr(t, attr, a[key])
        # proc.vpgid is the group as seen from the process's pid namespace (Falco: 1 for a
        # container's init); "pgid" (the host's number) only for records that lack it
        pg = a.get("vpgid", a.get("pgid"))
        if pg is not None:
            t.vpgid = pg
        if "env" in a and a["env"] is not None:
            t.env = list(a["env"])
        t.exe_from_memfd = bool(a.get("exe_from_memfd")) or exepath.startswith("/memfd:")
        if self.live:
            self._exec_facts(t, a)
        t.exe_upper_layer = bool(a.get("exe_upper_layer", False))
        t.exe_writable = bool(a.get("exe_writable", False))
        # Falco's EXE_LOWER_LAYER: on overlayfs but not in the upper layer (when the collector says)
        lower = bool(a.get("exe_lower_layer")) or (bool(a.get("exe_on_overlay")) and not t.exe_upper_layer)
        if lower:
            t.extra["exe_lower_layer"] = True
        else:
            t.extra.pop("exe_lower_layer", None)
        t.extra.pop(THREAD_COMM_KEY, None)   # exec names the task anew
        ppid = a.get("ppid")
        if ppid:
            # the kernel's real parent at exec: right even when we missed the fork, and it is the
            # reaper when the original parent exited (Falco re-parents the same way)
            t.ptid = ppid
        cg = a.get("cgroup_id")
        if cg is not None and cg != t.cgroup_id:
            if t.cgroup_id:
                t.container_id = ""          # moved to another cgroup: let the container plugin re-resolve
            t.cgroup_id = cg
        # exec unshares the fd table and closes close-on-exec fds
        t.fds = {n: f for n, f in t.fds.items() if not f.flags & F.O_CLOEXEC}
        users = self.users
        if users is not None:
            users.refresh()

    def _exec_facts(self, t: ThreadInfo, a: dict[str, Any]) -> None:
        """Live only, once per exec: what the collector did not report about the new image (exe
        inode times, writability, overlay upper layer), from /proc. Written into the event's
        args so that a recording replays with the same values without /proc."""
        need_stat = not all(k in a for k in ("exe_ino", "exe_ino_ctime", "exe_ino_mtime",
                                             "exe_writable"))
        if need_stat:
            try:
                st = os.stat(f"{self.proc}/{t.pid}/exe")
            except OSError:
                st = None
            if st is not None:
                a.setdefault("exe_ino", st.st_ino)
                a.setdefault("exe_ino_ctime", st.st_ctime_ns)
                a.setdefault("exe_ino_mtime", st.st_mtime_ns)
                a.setdefault("exe_writable", exe_writable(st, t.euid, t.egid, t.cap_effective))
                t.exe_ino, t.exe_ino_ctime, t.exe_ino_mtime = (a["exe_ino"], a["exe_ino_ctime"],
                                                               a["exe_ino_mtime"])
        if "exe_upper_layer" not in a and t.exepath and not t.exe_from_memfd:
            a["exe_upper_layer"] = is_upper_layer(t.pid, t.exepath, self.proc)

    def _on_procexit(self, evt: Event, t: ThreadInfo) -> None:
        tables = self.tables
        tables.mark_dead(t, evt.ts)
        if tables.dead:
            tables.reclaim(evt.ts)

    # ------------------------------------------------------------------------------ paths
    def _resolve(self, path: str, dirfd: Any, t: ThreadInfo) -> str:
        """Absolute, normalised path: relative paths against the cwd or ``dirfd``'s directory."""
        if not path:
            return path
        if path[0] != "/":
            if dirfd is None or dirfd == AT_FDCWD:
                base = self.tables.main(t).cwd
            else:
                d = t.fds.get(dirfd)
                base = d.name if d is not None else ""
            if not base:
                return path
            path = base + "/" + path
        if "/." in path or "//" in path or path.endswith("/"):
            path = posixpath.normpath(path)
            if path.startswith("//"):
                path = path[1:]
        return path

    # ------------------------------------------------------------------------------ files
    def _on_open(self, evt: Event, t: ThreadInfo) -> None:
        a = evt.args
        if "slot" in a:                      # io_uring into a fixed-file slot (no fd)
            self._iou_slot(evt, t)
            return
        raw = a.get("name") or a.get("path") or ""      # open_by_handle_at: path (Falco's name)
        if raw[:1] == "/" and "/." not in raw and "//" not in raw:
            path = raw                       # the common case: already absolute and clean
        else:
            path = self._resolve(raw, a.get("dirfd", AT_FDCWD), t)
        flags = a.get("flags")
        if flags is None:
            flags = _CREAT_FLAGS if evt.type == "creat" else 0
        fd = evt.res
        if fd is None:
            fd = a.get("fd", -1)
        # O_TMPFILE includes the O_DIRECTORY bit but creates a file
        f = FdInfo(fd if fd >= 0 else -1, "d" if flags & _DIR_MASK == F.O_DIRECTORY else "f",
                   path, raw, flags)
        if "ino" in a:
            f.ino = a["ino"]
            f.dev = a.get("dev", 0)
        # issue 19: the kernel's path of the opened file (open_by_handle_at: its only path)
        resolved = a.get("resolved") or (raw if evt.type == "open_by_handle_at" else "")
        if resolved:
            f.resolved = resolved
        if fd >= 0:
            t.fds[fd] = f
        evt.fdinfo = f

    def _on_memfd(self, evt: Event, t: ThreadInfo) -> None:
        res = evt.res
        if res is None or res < 0:
            return
        name = "/memfd:" + str(evt.args.get("name", ""))
        f = t.fds[res] = FdInfo(res, "m", name, name, int(evt.args.get("flags") or 0))
        evt.fdinfo = f

    def _on_newfd(self, typechar: str) -> Handler:
        names = {"e": "<eventfd>", "s": "<signalfd>", "l": "<epoll>", "i": "<inotify>",
                 "r": "<io_uring>", "u": "<userfaultfd>", "t": "<timerfd>"}

        def handler(evt: Event, t: ThreadInfo, _tc: str = typechar, _n: str = names[typechar]) -> None:
            res = evt.res
            if res is not None and res >= 0:
                evt.fdinfo = t.fds[res] = FdInfo(res, _tc, _n)
        return handler

    def _on_pipe(self, evt: Event, t: ThreadInfo) -> None:
        a = evt.args
        if evt.res is not None and evt.res < 0:
            return
        ino = a.get("ino", 0)
        cloexec = int(a.get("flags") or 0) & F.O_CLOEXEC          # pipe2(O_CLOEXEC)
        first = None
        for key in ("fd1", "fd2"):
            fd = a.get(key)
            if fd is not None and fd >= 0:
                f = t.fds[fd] = FdInfo(fd, "p", f"pipe:[{ino}]" if ino else "", flags=cloexec,
                                       ino=ino)
                first = first or f
        evt.fdinfo = first

    def _on_socketpair(self, evt: Event, t: ThreadInfo) -> None:
        """Two connected sockets (AF_UNIX: Falco's SCAP_FD_UNIX_SOCK for both; its driver's
        socket addresses are kernel pointers, not kept)."""
        a = evt.args
        if evt.res is not None and evt.res < 0:
            return
        typ = int(a.get("type") or 0)
        tc = _SOCK_TYPECHAR.get(a.get("domain", F.AF_UNIX), "o")
        cloexec = F.O_CLOEXEC if typ & F.O_CLOEXEC else 0          # SOCK_CLOEXEC
        fd1, fd2 = a.get("fd1"), a.get("fd2")
        if fd1 is None or fd1 < 0 or fd1 == fd2:
            return
        evt.fdinfo = t.fds[fd1] = FdInfo(fd1, tc, "", flags=cloexec, connected=True)
        if fd2 is not None and fd2 >= 0:
            t.fds[fd2] = FdInfo(fd2, tc, "", flags=cloexec, connected=True)

    def _on_pidfd_open(self, evt: Event, t: ThreadInfo) -> None:
        res = evt.res
        if res is None or res < 0:
            return
        pid = int(evt.args.get("pid") or 0)
        cloexec = F.O_CLOEXEC             # a pidfd is always close-on-exec (pidfd_open(2))
        evt.fdinfo = t.fds[res] = FdInfo(res, "P", "anon_inode:[pidfd]", flags=cloexec, pid=pid)

    def _on_pidfd_getfd(self, evt: Event, t: ThreadInfo) -> None:
        """A copy of another process's fd (``target_fd`` of the process ``pid_fd`` names), as
        libsinsp's parse_pidfd_getfd_exit: the entry is copied from that process's table; the
        new fd is always close-on-exec (pidfd_getfd(2)). An unknown source leaves the number
        without an entry (a stale one would name the wrong file)."""
        res = evt.res
        if res is None or res < 0:
            return
        a = evt.args
        pidfd = t.fds.get(int(a.get("pid_fd", -1)))
        src = None
        if pidfd is not None and pidfd.typechar == "P" and pidfd.pid:
            owner = self.tables.threads.get(pidfd.pid)
            src = owner.fds.get(int(a.get("target_fd", -1))) if owner is not None else None
        if src is None:
            t.fds.pop(res, None)
            evt.fdinfo = None
            return
        evt.fdinfo = t.fds[res] = self._copy_fd(src, res, F.O_CLOEXEC)

    @staticmethod
    def _copy_fd(old: FdInfo, num: int, cloexec: int) -> FdInfo:
        """A new fd ``num`` for ``old``'s open file: every field but the number and the
        close-on-exec bit, which belongs to the fd, not the file."""
        return FdInfo(num, old.typechar, old.name, old.nameraw,
                      (old.flags & ~F.O_CLOEXEC) | (cloexec & F.O_CLOEXEC), old.l4proto,
                      old.sip, old.sport, old.dip, old.dport, old.is_server, old.connected,
                      old.ino, old.dev, old.resolved, old.pid)

    def _on_dup(self, evt: Event, t: ThreadInfo) -> None:
        a = evt.args
        if "slot" in a:                      # io_uring FIXED_FD_INSTALL: a new fd for a slot
            self._iou_slot(evt, t)
            return
        res = evt.res
        oldfd = a.get("oldfd", a.get("fd"))
        old = t.fds.get(oldfd) if oldfd is not None else None
        if res is None or res < 0:
            evt.fdinfo = old
            return
        if old is None:
            evt.fdinfo = t.fds.get(res)
            return
        evt.fdinfo = t.fds[res] = self._copy_fd(old, res, int(a.get("flags") or 0))

    def _on_fcntl(self, evt: Event, t: ThreadInfo) -> None:
        """F_DUPFD / F_DUPFD_CLOEXEC: the lowest free fd >= arg gets ``fd``'s file, as dup does
        (libsinsp parse_fcntl_exit adds it the same way); the other commands change no fd."""
        a = evt.args
        fd = a.get("fd")
        old = t.fds.get(fd) if fd is not None else None
        cmd = a.get("cmd")
        res = evt.res
        if cmd not in (F_DUPFD, F_DUPFD_CLOEXEC) or res is None or res < 0:
            evt.fdinfo = old
            return
        if old is None:                      # a copy of an fd we never saw: res names it now
            t.fds.pop(res, None)
            evt.fdinfo = None
            return
        evt.fdinfo = t.fds[res] = self._copy_fd(old, res,
                                                F.O_CLOEXEC if cmd == F_DUPFD_CLOEXEC else 0)

    def _on_close(self, evt: Event, t: ThreadInfo) -> None:
        if "slot" in evt.args:               # io_uring close of a fixed-file slot
            self._iou_slot(evt, t)
            return
        fd = evt.args.get("fd")
        res = evt.res
        if fd is None:
            evt.fdinfo = None
        elif res is None or res >= 0:
            evt.fdinfo = t.fds.pop(fd, None)
        else:
            evt.fdinfo = t.fds.get(fd)

    def _on_chdir(self, evt: Event, t: ThreadInfo) -> None:
        if evt.res is not None and evt.res < 0:
            return
        path = evt.args.get("path")
        if path:
            m = self.tables.main(t)
            m.cwd = t.cwd = self._resolve(path, AT_FDCWD, t)

    def _on_fchdir(self, evt: Event, t: ThreadInfo) -> None:
        fd = evt.args.get("fd")
        f = t.fds.get(fd) if fd is not None else None
        evt.fdinfo = f
        if f is not None and (evt.res is None or evt.res >= 0):
            m = self.tables.main(t)
            m.cwd = t.cwd = f.name

    # ------------------------------------------------------------------------------ io_uring
    def _iou_slots(self, t: ThreadInfo, ring: Any) -> dict[int, FdInfo]:
        """The fixed-file table of one io_uring ring of ``t``'s process (``extra`` of the main
        thread, keyed by the ring): the files io_uring operations put in slots rather than in
        the fd table."""
        m = self.tables.main(t)
        rings = m.extra.get(IOU_SLOTS_KEY)
        if rings is None:
            rings = m.extra[IOU_SLOTS_KEY] = {}
        slots = rings.get(ring)
        if slots is None:
            slots = rings[ring] = {}
        return slots

    def _iou_slot(self, evt: Event, t: ThreadInfo) -> None:
        """An io_uring operation on a fixed-file slot (``evt.arg.slot``; the decoder set ``fd``
        to -1): the slot's entry is an :class:`FdInfo` whose ``num`` is the slot index, kept out
        of the fd table; ``FIXED_FD_INSTALL`` (reported as ``dup3``) copies it to the new fd."""
        a = evt.args
        slot = int(a["slot"])
        slots = self._iou_slots(t, a.get("ring", 0))
        ok = evt.res is None or evt.res >= 0
        typ = evt.type
        if typ in ("openat", "openat2"):
            raw = a.get("name") or ""
            path = self._resolve(raw, a.get("dirfd", AT_FDCWD), t)
            flags = int(a.get("flags") or 0)
            f = FdInfo(slot, "d" if flags & _DIR_MASK == F.O_DIRECTORY else "f", path, raw, flags)
            if ok:
                slots[slot] = f
            evt.fdinfo = f
        elif typ == "socket":
            dom = a.get("domain", 0)
            typ_ = int(a.get("type") or 0) & 0xF
            tc = _SOCK_TYPECHAR.get(dom, "o")
            l4 = ("icmp" if a.get("proto", 0) in (1, 58) else _L4.get(typ_, "")) if tc in "46" else ""
            f = FdInfo(slot, tc, "", l4proto=l4)
            if ok:
                slots[slot] = f
            evt.fdinfo = f
        elif typ == "connect":
            fam = a.get("family") or 0
            known = slots.get(slot)
            if known is None:
                known = slots[slot] = FdInfo(slot, _SOCK_TYPECHAR.get(fam, "o"), "",
                                             l4proto="tcp" if fam in (F.AF_INET, F.AF_INET6)
                                             else "")
            f = known
            evt.fdinfo = f
            if not ok and evt.res != _EINPROGRESS:
                return
            if fam == F.AF_UNIX or f.typechar == "u":
                self._rename(evt, f, a.get("path") or f.name)
            else:
                f.dip, f.dport = a.get("dip") or "", a.get("dport") or 0
                self._rename(evt, f, f"{f.sip}:{f.sport}->{f.dip}:{f.dport}")
            f.connected = True
        elif typ in ("accept", "accept4"):
            fam = a.get("family") or 0
            tc = _SOCK_TYPECHAR.get(fam, "o")
            cip, cport = a.get("sip") or "", a.get("sport") or 0
            name = (a.get("path") or "") if tc == "u" else f"{cip}:{cport}->:0"
            f = FdInfo(slot, tc, name,
                       l4proto="tcp" if tc in "46" else "", sip=cip, sport=cport,
                       is_server=True, connected=True)
            if ok:
                slots[slot] = f
            evt.fdinfo = f
        elif typ == "close":
            evt.fdinfo = slots.pop(slot, None) if ok else slots.get(slot)
        elif typ in ("dup", "dup2", "dup3"):
            old = slots.get(slot)
            res = evt.res
            if res is None or res < 0:
                evt.fdinfo = old
                return
            if old is None:                  # a slot filled by io_uring_register: unknown file
                t.fds.pop(res, None)
                evt.fdinfo = None
                return
            new = self._copy_fd(old, res, int(a.get("flags") or 0))
            if new.typechar in "46" and new.dip and not new.sip:
                # the socket is an fd now: its local side from /proc (live), as for connect
                sa = self._kernel_view(evt, res, _FAMILY[new.typechar], new.l4proto)
                if sa is not None and sa.lport:
                    new.sip, new.sport = sa.lip, sa.lport
                    new.name = f"{new.sip}:{new.sport}->{new.dip}:{new.dport}"
            evt.fdinfo = t.fds[res] = new

    # ------------------------------------------------------------------------------ ids, caps
    @staticmethod
    def _on_set_ids(real: str, effective: str) -> Handler:
        """The handler of the set*uid (``"uid", "euid"``) or set*gid (``"gid", "egid"``) family:
        ``setuid(uid)`` sets both ids; ``setre*``/``setres*`` name the real (``r`` + ``real``)
        and effective ids; -1 leaves an id unchanged."""
        real_arg = "r" + real

        def handler(evt: Event, t: ThreadInfo) -> None:
            if evt.res is not None and evt.res < 0:
                return
            a = evt.args
            r = _uid(a.get(real_arg, a.get(real)))
            e = _uid(a.get(effective, a.get(real)))
            if r is not None:
                setattr(t, real, r)
            if e is not None:
                setattr(t, effective, e)
        return handler

    def _on_prctl(self, evt: Event, t: ThreadInfo) -> None:
        """``PR_SET_NAME`` renames the thread (task->comm). As in Falco, ``proc.name`` keeps the
        name of the exec; the new one is kept for ``thread.comm`` (issue 19)."""
        a = evt.args
        if a.get("option") == PR_SET_NAME and (evt.res is None or evt.res >= 0):
            t.extra[THREAD_COMM_KEY] = str(a.get("arg2_str") or "")

    def _on_capset(self, evt: Event, t: ThreadInfo) -> None:
        if evt.res is not None and evt.res < 0:
            return
        a = evt.args
        for k in ("cap_effective", "cap_permitted", "cap_inheritable"):
            if k in a:
                setattr(t, k, a[k])

    # ------------------------------------------------------------------------------ sockets
    def _on_socket(self, evt: Event, t: ThreadInfo) -> None:
        res = evt.res
        if res is None or res < 0:
            return
        a = evt.args
        if "slot" in a:
            self._iou_slot(evt, t)
            return
        dom = a.get("domain", 0)
        typ = int(a.get("type") or 0) & 0xF
        proto = a.get("proto", 0)
        tc = _SOCK_TYPECHAR.get(dom, "o")
        l4 = ""
        if tc in "46":
            l4 = "icmp" if proto in (1, 58) else _L4.get(typ, "")
        evt.fdinfo = t.fds[res] = FdInfo(res, tc, "", l4proto=l4,
                                         flags=F.O_CLOEXEC if int(a.get("type") or 0) & F.O_CLOEXEC else 0)

    def _sock(self, t: ThreadInfo, fd: Any, family: Any) -> FdInfo | None:
        """The fd entry of a socket, created if we missed its ``socket`` call."""
        if fd is None or fd < 0:
            return None
        f = t.fds.get(fd)
        if f is None:
            f = t.fds[fd] = FdInfo(fd, _SOCK_TYPECHAR.get(family, "o"), "",
                                   l4proto="tcp" if family in (F.AF_INET, F.AF_INET6) else "")
        elif family in _SOCK_TYPECHAR and f.typechar == "o":
            f.typechar = _SOCK_TYPECHAR[family]
        return f

    def _rename(self, evt: Event, f: FdInfo, name: str) -> None:
        if f.name != name:
            if f.name:
                evt.cache[NAME_CHANGED_KEY] = True
            f.name = name

    def _kernel_view(self, evt: Event, fd: int, family: int, l4proto: str) -> SockAddr | None:
        """Live only: the socket's addresses from /proc (the collector reports the side the
        syscall names; the other side is the kernel's business). Once per connect/accept."""
        if not self.live or family not in (F.AF_INET, F.AF_INET6):
            return None
        return socket_addr(evt.pid or evt.tid, fd, family, l4proto, self.proc)

    def _on_connect(self, evt: Event, t: ThreadInfo) -> None:
        """Collector convention: ``dip``/``dport`` = the server the call names; ``sip``/``sport``
        = our (client) side when known. Unknown local sides are filled from /proc when live and
        written back into the event, so a recording carries them to replay."""
        a = evt.args
        if "slot" in a:
            self._iou_slot(evt, t)
            return
        fam = a.get("family")
        fd = a.get("fd")
        f = self._sock(t, fd, fam)
        evt.fdinfo = f
        res = evt.res
        if f is None or (res is not None and res < 0 and res != _EINPROGRESS):
            return
        if fam == F.AF_UNIX or f.typechar == "u":
            self._rename(evt, f, a.get("path") or f.name)
            f.connected = True
            return
        dip, dport = a.get("dip") or "", a.get("dport") or 0
        if not dip and not dport:
            return
        sip, sport = a.get("sip") or "", a.get("sport") or 0
        if not sip:
            sa = self._kernel_view(evt, f.num, fam or _FAMILY.get(f.typechar, 0), f.l4proto)
            if sa is not None and sa.lport:
                sip, sport = sa.lip, sa.lport
                a["sip"], a["sport"] = sip, sport
                a["tuple"] = f"{sip}:{sport}->{dip}:{dport}"
            elif not f.is_server and f.dip and not f.connected:
                sip, sport = f.dip, f.dport  # bound before connect: that is our local side
        f.sip, f.sport, f.dip, f.dport = sip, sport, dip, dport
        f.is_server = False
        f.connected = True
        self._rename(evt, f, f"{sip}:{sport}->{dip}:{dport}")

    def _on_accept(self, evt: Event, t: ThreadInfo) -> None:
        """Collector convention: ``sip``/``sport`` = the peer (client), ``dip``/``dport`` = our
        (server) side when known; else from /proc (live) or the listening socket's address."""
        res = evt.res
        a = evt.args
        if "slot" in a:
            self._iou_slot(evt, t)
            return
        listenfd = a.get("listenfd")
        lst = t.fds.get(listenfd) if listenfd is not None else None
        if res is None or res < 0:
            evt.fdinfo = lst
            return
        fam = a.get("family") or 0
        tc = _SOCK_TYPECHAR.get(fam) or (lst.typechar if lst is not None else "o")
        if tc == "u":
            f = FdInfo(res, "u", a.get("path") or (lst.name if lst is not None else ""),
                       is_server=True, connected=True)
            evt.fdinfo = t.fds[res] = f
            return
        l4 = lst.l4proto if lst is not None and lst.l4proto else "tcp"
        cip, cport = a.get("sip") or "", a.get("sport") or 0
        sip, sport = a.get("dip") or "", a.get("dport") or 0
        if not sip or not cip:
            sa = self._kernel_view(evt, res, fam or _FAMILY.get(tc, 0), l4)
            if sa is not None:
                if tc == "o":
                    tc = "6" if sa.family == F.AF_INET6 else "4"
                sip, sport = sip or sa.lip, sport or sa.lport
                cip, cport = cip or sa.rip, cport or sa.rport
                a["sip"], a["sport"], a["dip"], a["dport"] = cip, cport, sip, sport
                a["family"] = sa.family
                a["tuple"] = f"{cip}:{cport}->{sip}:{sport}"
        if not sip and lst is not None:
            sip, sport = lst.dip, lst.dport
        f = FdInfo(res, tc, f"{cip}:{cport}->{sip}:{sport}", l4proto=l4, sip=cip, sport=cport,
                   dip=sip, dport=sport, is_server=True, connected=True)
        evt.fdinfo = t.fds[res] = f

    def _on_bind(self, evt: Event, t: ThreadInfo) -> None:
        a = evt.args
        fam = a.get("family")
        f = self._sock(t, a.get("fd"), fam)
        evt.fdinfo = f
        if f is None or (evt.res is not None and evt.res < 0):
            return
        if fam == F.AF_UNIX or f.typechar == "u":
            self._rename(evt, f, a.get("path") or "")
            return
        ip, port = a.get("dip") or a.get("sip") or "", a.get("dport") or a.get("sport") or 0
        f.dip, f.dport = ip, port
        self._rename(evt, f, f"{ip}:{port}")

    def _on_listen(self, evt: Event, t: ThreadInfo) -> None:
        fd = evt.args.get("fd")
        f = t.fds.get(fd) if fd is not None else None
        evt.fdinfo = f
        if f is not None and (evt.res is None or evt.res >= 0):
            f.is_server = True

    def _on_sendto(self, evt: Event, t: ThreadInfo) -> None:
        """A datagram to an explicit address names the fd ``local->peer`` (UDP)."""
        a = evt.args
        f = self._sock(t, a.get("fd"), a.get("family"))
        evt.fdinfo = f
        dip = a.get("dip")
        if f is None or not dip or f.connected and f.l4proto == "tcp":
            return
        sip, sport = a.get("sip") or f.sip, a.get("sport") or f.sport
        if not sip and f.dip and not f.is_server and not f.connected:
            sip, sport = f.dip, f.dport      # bound: our local address
        f.sip, f.sport, f.dip, f.dport = sip, sport, dip, a.get("dport") or 0
        f.is_server = False
        self._rename(evt, f, f"{sip}:{sport}->{dip}:{f.dport}")

    def _on_recvfrom(self, evt: Event, t: ThreadInfo) -> None:
        """A datagram from an address (``sip``/``sport`` = the sender, the client): we are the
        server, on the address the socket was bound to."""
        a = evt.args
        f = self._sock(t, a.get("fd"), a.get("family"))
        evt.fdinfo = f
        peer = a.get("sip")
        if f is None or not peer or f.connected and f.l4proto == "tcp":
            return
        lip = a.get("dip") or (f.dip if f.is_server or not f.sip else f.sip)
        lport = a.get("dport") or (f.dport if f.is_server or not f.sip else f.sport)
        f.sip, f.sport, f.dip, f.dport = peer, a.get("sport") or 0, lip, lport
        f.is_server = True
        self._rename(evt, f, f"{peer}:{f.sport}->{lip}:{lport}")


_CREAT_FLAGS = 0o1101                   # creat(2) = O_WRONLY|O_CREAT|O_TRUNC
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030      # fcntl commands (Linux numbers: evt.rawarg.cmd)
_DIR_MASK = F.O_TMPFILE                 # O_DIRECTORY | __O_TMPFILE
_SOCK_TYPECHAR = {F.AF_INET: "4", F.AF_INET6: "6", F.AF_UNIX: "u", F.AF_NETLINK: "n"}
_FAMILY = {"4": F.AF_INET, "6": F.AF_INET6, "u": F.AF_UNIX}
_L4 = {F.SOCK_STREAM: "tcp", F.SOCK_DGRAM: "udp", F.SOCK_RAW: "raw"}
