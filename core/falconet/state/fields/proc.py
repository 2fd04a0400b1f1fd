"""``proc.*`` and ``thread.*``: the event's thread and process from the thread table (ancestors
through the parent links, ``proc.aname[N]``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falconet.events import Event
from falconet.fields.registry import ArgKind, Extractor, FieldDef
from falconet.state import flags as F
from falconet.state.fields.common import T
from falconet.state.fields.common import simple_field as _f
from falconet.state.tables import StateTables, ThreadInfo

SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash", "fish", "busybox"})


def _cmdline(t: ThreadInfo) -> str:
    return t.comm + " " + " ".join(t.args) if t.args else t.comm


def proc_fields(tables: StateTables, users: Any) -> list[FieldDef]:
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
                    out: list[Any] = []
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

    def leader_name(m: ThreadInfo, key: str) -> str:
        """libsinsp's proc.sname/proc.vpgid.name: outside a pid namespace the process whose pid
        is the id (``key``: sid, vpgid); else (or when that one is gone) the highest *ancestor*
        still with the same id, and the empty string when there is none. Falco 0.44.1 prints
        "" for a container's init (sid 1, vpgid 1: its parent, the shim, is in another session)
        and "sh" for that init's child: the process itself is not a candidate."""
        v = getattr(m, key)
        if v and m.vpid in (0, m.pid):
            leader = threads.get(v)
            if leader is not None and (key != "sid" or leader.sid == v):
                return main(leader).comm
        best: ThreadInfo | None = None
        for p in tables.ancestors(m):
            if getattr(p, key) != v:
                break
            best = p
        return best.comm if best is not None else ""

    def sname(evt: Event) -> str | None:
        t = evt.thread
        return None if t is None else leader_name(main(t), "sid")

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
        # Falco's value ends with '/' (sinsp_threadinfo::set_cwd appends it): stable's
        # "Execution from /dev/shm" tests `proc.cwd startswith "/dev/shm/"`
        t = evt.thread
        if t is None:
            return None
        c = main(t).cwd
        return c if not c or c.endswith("/") else c + "/"

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
            return ""           # libsinsp's get_env: an unset variable is the empty string
        return one

    def ctime_duration(evt: Event) -> int | None:
        t = evt.thread
        if t is None or not t.exe_ino_ctime or not t.start_ts:
            return None
        return max(0, t.start_ts - t.exe_ino_ctime)

    def vpgid_name(evt: Event) -> str | None:
        t = evt.thread
        return None if t is None else leader_name(main(t), "vpgid")

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
        _f("proc.pid.ts", T.ABSTIME, "Start of process as epoch timestamp in nanoseconds.",
           lambda e: None if e.thread is None else (main(e.thread).start_ts or None)),
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
           "session (proc.sid == proc.vpid: both as seen from its pid namespace).",
           lambda e: None if e.thread is None
           else main(e.thread).sid == (main(e.thread).vpid or e.thread.pid)),
        _f("proc.vpgid", T.INT64, "The process group id of the process generating the event, as "
           "seen from its current PID namespace.",
           lambda e: None if e.thread is None else main(e.thread).vpgid),
        _f("proc.vpgid.name", T.STRING, "The name of the process group leader of the process "
           "generating the event.", vpgid_name, cache=C),
        _f("proc.is_vpgid_leader", T.BOOL, "'true' if this process is the leader of the process "
           "group (proc.vpgid == proc.pid).",
           lambda e: None if e.thread is None else
           main(e.thread).vpgid == (main(e.thread).vpid or e.thread.pid)),
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
        # libsinsp computes these on PPME_PROCINFO_E events only (CPU time since the thread's
        # previous procinfo event; sinsp_filter_check_thread::extract_thread_cpu) and returns
        # nothing on any other event. Falco's modern eBPF probe emits no procinfo event, and
        # neither does Falconet, so on every event they are missing, as Falco prints them
        # (<NA>; tests/fields/test_vs_falco.py). Not the CPU number: that is evt.cpu.
        _f("thread.cpu", T.DOUBLE, "The CPU consumed by the thread in the last second (procinfo "
           "events only, which no syscall source emits: always missing, as in Falco).",
           _no_procinfo),
        _f("thread.cpu.user", T.DOUBLE, "The user CPU consumed by the thread in the last second "
           "(procinfo events only: always missing, as in Falco).", _no_procinfo),
        _f("thread.cpu.system", T.DOUBLE, "The system CPU consumed by the thread in the last "
           "second (procinfo events only: always missing, as in Falco).", _no_procinfo),
    ]


def _no_procinfo(_evt: Event) -> None:
    return None


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
