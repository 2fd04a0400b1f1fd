"""``user.*`` and ``group.*``: the thread's effective ids, named through the host's user database
(:class:`falconet.state.users.UserDB`), or the container's own for a process in a container
(as libsinsp's ``sinsp_threadinfo::get_user``: the container id selects the table).
"""

from __future__ import annotations

from typing import Any

from falconet.events import Event
from falconet.fields.registry import Extractor, FieldDef
from falconet.state.fields.common import T
from falconet.state.fields.common import simple_field as _f


def _unknown_user(uid: int) -> tuple[str, str, str]:
    """libsinsp's entry for a uid its user table lacks (sinsp_threadinfo::get_user and
    get_loginuser): root's name and home for 0, else ``<NA>``; the shell is always ``<NA>``.
    These are values, not missing fields (``user.name = "<NA>"`` is true in Falco)."""
    return ("root", "/root", "<NA>") if uid == 0 else ("<NA>", "<NA>", "<NA>")


def user_fields(users: Any) -> list[FieldDef]:
    def uname(evt: Event) -> str | None:
        t = evt.thread
        if t is None:
            return None
        u = users.user_in(t.container_id, t.pid, t.euid)
        return u[0] if u is not None else _unknown_user(t.euid)[0]

    def loginname(evt: Event) -> str | None:
        t = evt.thread
        if t is None:
            return None
        if t.loginuid < 0:          # unset (UINT32_MAX): no such user
            return "<NA>"
        u = users.user_in(t.container_id, t.pid, t.loginuid)
        return u[0] if u is not None else _unknown_user(t.loginuid)[0]

    def entry(i: int) -> Extractor:
        def ex(evt: Event) -> str | None:
            t = evt.thread
            if t is None:
                return None
            u = users.user_in(t.container_id, t.pid, t.euid)
            return (u if u is not None else _unknown_user(t.euid))[i]
        return ex

    def gname(evt: Event) -> str | None:
        t = evt.thread
        if t is None:
            return None
        g = users.group_in(t.container_id, t.pid, t.egid)
        if g is not None:
            return g
        return "root" if t.egid == 0 else "<NA>"        # sinsp_threadinfo::get_group

    return [
        _f("user.uid", T.UINT32, "user ID (the effective uid).",
           lambda e: None if e.thread is None else e.thread.euid),
        _f("user.name", T.STRING, "user name (the host's /etc/passwd; in a container, the "
           "container's).", uname, cache=True),
        _f("user.homedir", T.PATH, "home directory of the user.", entry(1), cache=True),
        _f("user.shell", T.STRING, "user's shell.", entry(2), cache=True),
        _f("user.loginuid", T.INT64, "audit user id (auid); -1 when unset (UINT32_MAX).",
           lambda e: None if e.thread is None else e.thread.loginuid),
        _f("user.loginname", T.STRING, "audit user name (auid).", loginname, cache=True),
        _f("group.gid", T.UINT32, "group ID (the effective gid).",
           lambda e: None if e.thread is None else e.thread.egid),
        _f("group.name", T.STRING, "group name (the host's /etc/group; in a container, the "
           "container's).", gname, cache=True),
    ]
