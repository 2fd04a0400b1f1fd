"""Fields that see through evasion (issue 19, docs/evasion.md): the identity of a process by its
executable rather than its name, the path a file syscall really reached, and paths of rename/link
resolved like Falco's ``fs.path.*``.

- ``proc.exe_mismatch``: the exec-time name (``proc.name``) or argv[0] (``proc.exe``) is not the
  executable's file name (``proc.exepath``, which the eBPF collector takes from the kernel's
  ``mm->exe_file``). True for ``exec -a`` and renamed copies' argv[0], but also for scripts (the
  executable is the interpreter) and multi-call binaries (busybox): a signal to combine with
  others, not a verdict.
- ``thread.comm``: the thread's current name: the one ``prctl(PR_SET_NAME)`` set, else
  ``proc.name``.
- ``fd.resolved_name``: the path the kernel opened (dentry/mount walk of the opened file,
  relative to the process's root), when the collector resolved it; ``fd.name`` keeps Falco's
  meaning (the path as requested, made absolute).
- ``fs.path.name``/``fs.path.source``/``fs.path.target``: Falco's fields: the paths a file syscall
  operates on, made absolute against the cwd or the dirfd.
"""

from __future__ import annotations

import posixpath
from typing import Any

from falconet.events import Event
from falconet.fields.registry import Extractor, FieldDef
from falconet.state.fields.common import T
from falconet.state.fields.common import simple_field as _f
from falconet.state.parser import AT_FDCWD, THREAD_COMM_KEY
from falconet.state.tables import StateTables, ThreadInfo

#: (path arg, dirfd arg) of the single path of a file syscall (fs.path.name)
_NAME_ARGS: dict[str, tuple[str, str]] = {
    "open": ("name", ""), "openat": ("name", "dirfd"), "openat2": ("name", "dirfd"),
    "creat": ("name", ""), "unlink": ("path", ""), "unlinkat": ("name", "dirfd"),
    "mkdir": ("path", ""), "mkdirat": ("path", "dirfd"), "rmdir": ("path", ""),
    "chmod": ("filename", ""), "fchmodat": ("filename", "dirfd"), "chdir": ("path", ""),
}
#: (source arg, source dirfd, target arg, target dirfd) of two-path syscalls
_PAIR_ARGS: dict[str, tuple[str, str, str, str]] = {
    "rename": ("oldpath", "", "newpath", ""),
    "renameat": ("oldpath", "olddirfd", "newpath", "newdirfd"),
    "renameat2": ("oldpath", "olddirfd", "newpath", "newdirfd"),
    "link": ("oldpath", "", "newpath", ""),
    "linkat": ("oldpath", "olddir", "newpath", "newdir"),
    # a symlink's source is its target text (not resolved against anything: Falco keeps it)
    "symlink": ("target", "-", "linkpath", ""),
    "symlinkat": ("target", "-", "linkpath", "linkdirfd"),
}


def _resolve(tables: StateTables, t: ThreadInfo | None, path: Any, dirfd: Any) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    if path[0] != "/":
        if t is None:
            return None
        if dirfd is None or dirfd == AT_FDCWD:
            base = tables.main(t).cwd
        else:
            d = t.fds.get(dirfd)
            base = d.name if d is not None else ""
        if not base:
            return None
        path = base + "/" + path
    p: str = posixpath.normpath(str(path))
    return p[1:] if p.startswith("//") else p


def evasion_fields(tables: StateTables) -> list[FieldDef]:
    def one(evt: Event) -> str | None:
        spec = _NAME_ARGS.get(evt.type)
        if spec is None:
            return None
        a = evt.args
        return _resolve(tables, evt.thread, a.get(spec[0]),
                        a.get(spec[1]) if spec[1] else None)

    def pair(which: int) -> Extractor:
        def ex(evt: Event) -> str | None:
            spec = _PAIR_ARGS.get(evt.type)
            if spec is None:
                return None
            a = evt.args
            path, dfd = spec[2 * which], spec[2 * which + 1]
            v = a.get(path)
            if dfd == "-":
                return v if isinstance(v, str) and v else None
            return _resolve(tables, evt.thread, v, a.get(dfd) if dfd else None)
        return ex

    def mismatch(evt: Event) -> bool | None:
        t = evt.thread
        if t is None or not t.exepath or t.exepath.startswith(("memfd:", "/memfd:")):
            return None
        base = posixpath.basename(t.exepath)
        argv0 = posixpath.basename(t.exe or "").lstrip("-")
        return (bool(t.comm) and t.comm != base[:15]) or (bool(argv0) and argv0 != base)

    def thread_comm(evt: Event) -> str | None:
        t = evt.thread
        if t is None:
            return None
        name = t.extra.get(THREAD_COMM_KEY)
        return str(name) if name else t.comm

    def resolved(evt: Event) -> str | None:
        f = evt.fdinfo
        return f.resolved or None if f is not None else None

    return [
        _f("proc.exe_mismatch", T.BOOL, "Falconet: 'true' if the process name (proc.name) or "
           "argv[0] (proc.exe) is not the file name of the executable (proc.exepath, from the "
           "kernel's exe_file): exec -a, renamed copies, but also scripts and multi-call "
           "binaries (docs/evasion.md).", mismatch),
        _f("thread.comm", T.STRING, "Falconet: the thread's current name (task->comm): the one "
           "prctl(PR_SET_NAME) set, else proc.name (which keeps the exec-time name, as Falco).",
           thread_comm),
        _f("fd.resolved_name", T.PATH, "Falconet: the path of the opened file as the kernel "
           "resolved it (symlinks, /proc/self/root, open_by_handle_at, bind mounts), relative to "
           "the process's root; unset when not resolved. fd.name keeps the path as requested.",
           resolved),
        _f("fs.path.name", T.PATH, "For any event type that deals with a filesystem path, the "
           "path the file syscall is operating on. This path is always fully resolved, "
           "prepending the thread cwd when needed.", one),
        _f("fs.path.source", T.PATH, "For any event type that deals with a filesystem path, and "
           "specifically for a source and target like mv, cp, etc, the source path the file "
           "syscall is operating on. This path is always fully resolved, prepending the thread "
           "cwd when needed.", pair(0)),
        _f("fs.path.target", T.PATH, "For any event type that deals with a filesystem path, and "
           "specifically for a source and target like mv, cp, etc, the target path the file "
           "syscall is operating on. This path is always fully resolved, prepending the thread "
           "cwd when needed.", pair(1)),
    ]
