"""uid → user and gid → group names, from ``/etc/passwd`` and ``/etc/group``.

The files are parsed once and re-read only when their mtime changes; the mtime is checked at most
every ``check_interval`` seconds (and never on the per-event path otherwise), so a lookup is one
dict read. A host process's uid is resolved against the *host* files; a process in a container
is named through the container's own files instead (a container's ``/etc/passwd`` may name uid
1000 differently): :class:`falconet.state.container_users.ContainerUsers`, as libsinsp, held
here as ``containers``.

In replay the tables come from the capture (:meth:`UserDB.load`) and the host files are not read.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from falconet.state.container_users import ContainerUsers

#: (name, home directory, shell)
UserEntry = tuple[str, str, str]


def parse_passwd(text: str) -> dict[int, UserEntry]:
    """``name:x:uid:gid:gecos:home:shell`` lines; bad lines are skipped (first entry of a uid wins)."""
    out: dict[int, UserEntry] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split(":")
        if len(parts) < 7:
            continue
        try:
            uid = int(parts[2])
        except ValueError:
            continue
        out.setdefault(uid, (parts[0], parts[5], parts[6]))
    return out


def parse_group(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        out.setdefault(gid, parts[0])
    return out


class UserDB:
    """Cached user and group tables. ``frozen`` (replay) means: never touch the host files."""

    def __init__(self, passwd: str = "/etc/passwd", group: str = "/etc/group",
                 check_interval: float = 10.0, frozen: bool = False) -> None:
        self.passwd_path = passwd
        self.group_path = group
        self.check_interval = check_interval
        self.frozen = frozen
        self.users: dict[int, UserEntry] = {}
        self.groups: dict[int, str] = {}
        self._mtimes: tuple[float, float] = (-1.0, -1.0)
        self._next_check = 0.0
        self.reloads = 0
        #: the container tables (set by the state plugin; None: container processes get the
        #: host's names, e.g. in unit tests of the host tables)
        self.containers: ContainerUsers | None = None
        if not frozen:
            self.refresh(force=True)

    # ---------------------------------------------------------------------- loading
    def refresh(self, force: bool = False) -> bool:
        """Re-read the files if their mtime changed. Returns True if they were re-read."""
        if self.frozen:
            return False
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        mt = (_mtime(self.passwd_path), _mtime(self.group_path))
        if mt == self._mtimes and not force:
            return False
        self._mtimes = mt
        self.users = parse_passwd(_read(self.passwd_path))
        self.groups = parse_group(_read(self.group_path))
        self.reloads += 1
        return True

    def dump(self) -> dict[str, Any]:
        """JSON-able tables (for capture snapshots)."""
        out: dict[str, Any] = {"users": {str(k): list(v) for k, v in self.users.items()},
                               "groups": {str(k): v for k, v in self.groups.items()}}
        if self.containers is not None:
            out["container_users"] = self.containers.dump()
        return out

    def load(self, data: dict[str, Any]) -> None:
        """Replace the tables with a snapshot from :meth:`dump` and stop reading the host files."""
        self.frozen = True
        self.users = {int(k): (v[0], v[1], v[2]) for k, v in (data.get("users") or {}).items()}
        self.groups = {int(k): str(v) for k, v in (data.get("groups") or {}).items()}
        if self.containers is not None:
            self.containers.load(data.get("container_users") or {})

    # ---------------------------------------------------------------------- lookups (hot path)
    def user(self, uid: int) -> UserEntry | None:
        """The entry of ``uid``; checks the files for changes at most every ``check_interval``."""
        e = self.users.get(uid)
        if e is None and not self.frozen and time.monotonic() >= self._next_check:
            # an unknown uid may be a user added since the last read
            self.refresh()
            e = self.users.get(uid)
        return e

    def name(self, uid: int) -> str | None:
        e = self.user(uid)
        return e[0] if e is not None else None

    def user_in(self, cid: str, pid: int, uid: int) -> UserEntry | None:
        """``uid``'s entry for a process of container ``cid`` (``""``: the host)."""
        if cid and self.containers is not None:
            return self.containers.user(cid, pid, uid)
        return self.user(uid)

    def group_in(self, cid: str, pid: int, gid: int) -> str | None:
        if cid and self.containers is not None:
            return self.containers.group(cid, pid, gid)
        return self.group(gid)

    def group(self, gid: int) -> str | None:
        g = self.groups.get(gid)
        if g is None and not self.frozen and time.monotonic() >= self._next_check:
            self.refresh()
            g = self.groups.get(gid)
        return g


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""
