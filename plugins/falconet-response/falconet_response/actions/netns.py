"""``isolate_network``: set every link of the container's network namespace down (loopback
too with ``include_loopback: true``) over netlink with pyroute2, and back up on undo. The
namespace is entered on a short-lived thread only (setns is per thread), so the engine's own
network never changes; the host's namespace is never touched."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any

from falconet.alerts import Alert

from falconet_response import procfs
from falconet_response.actions.base import ActionParamError, Outcome, Target
from falconet_response.actions.cgroup import find_container_cgroup
from falconet_response.actions.common import check_keys, failed, skipped
from falconet_response.actions.process import container_init

CLONE_NEWNET = 0x40000000
IFF_UP = 0x1


def _ns_ino(pid: int | str, proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}/ns/net").st_ino
    except OSError:
        return None


def in_netns(fd: int, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(IPRoute)`` on a thread that joined the namespace ``fd``; re-raise its error."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - only actions that need netlink load it

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            with IPRoute() as ipr:
                box["ok"] = fn(ipr)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            box["err"] = e
    t = threading.Thread(target=work, name="falconet-response-netns", daemon=True)
    t.start()
    t.join(10.0)
    if "err" in box:
        raise box["err"]
    if "ok" not in box:
        raise TimeoutError("netlink did not answer within 10 s")
    return box["ok"]


def _set_links(ipr: Any, names: list[str] | None, up: bool, lo: bool) -> list[str]:
    done = []
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        if names is not None and name not in names:
            continue
        if names is None:
            if (name == "lo" and not lo) or not link["flags"] & IFF_UP:
                continue
        ipr.link("set", index=link["index"], state="up" if up else "down")
        done.append(name)
    return done


class IsolateNetworkAction:
    name = "isolate_network"
    reversible = True

    def __init__(self, proc: str = procfs.PROC) -> None:
        self.proc = proc

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, {"include_loopback": "also set lo down (default false)"})
        lo = params.get("include_loopback", False)
        if not isinstance(lo, bool):
            raise ActionParamError(f"include_loopback: expected true or false, got {lo!r}")
        return {"include_loopback": lo}

    def _open_ns(self, pid: int, start_ts: int | None, event_ns: int | None
                 ) -> tuple[int, int]:
        fd, _st = procfs.open_verified(pid, start_ts, event_ns, self.proc)
        try:
            ns = os.open(f"{self.proc}/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(fd)
        ino = os.fstat(ns).st_ino
        if ino in (_ns_ino(1, self.proc), _ns_ino("self", self.proc)):
            os.close(ns)
            raise PermissionError("the process shares the host's network namespace")
        return ns, ino

    def anchor(self, target: Target, event_ns: int) -> tuple[int, int | None] | None:
        """A long-lived process of the container to reach (and later undo) its namespace: the
        container's init (pid 1 of its pid namespace), found through the alert's process or the
        container's cgroup (the triggering process is often short-lived: a `docker exec`)."""
        cid = target.container_id or ""
        alive = None
        if target.pid is not None:
            st = procfs.stat(target.pid, self.proc)
            if st is not None and procfs.same_process(st, target.start_ts, event_ns):
                alive = (target.pid, st.start_ns)
                init = container_init(target.pid, self.proc)
                ist = procfs.stat(init, self.proc) if init is not None else None
                if ist is not None:
                    return init, ist.start_ns          # type: ignore[return-value]
        found = find_container_cgroup(cid)
        members = procfs.pids_in(os.path.join(found[1], "cgroup.procs")) if found else []
        for pid in sorted(members, key=lambda p: procfs.nspid(p, self.proc)[-1:] != [1]):
            st = procfs.stat(pid, self.proc)
            if st is not None and cid in "".join(procfs.cgroups(pid, self.proc).values()):
                return pid, st.start_ns
        return alive

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.container_id is None:
            return skipped("isolate_network acts on containers")
        anchor = self.anchor(target, alert.time_ns)
        if anchor is None:
            return skipped("no live process of the container to reach its network namespace")
        pid, start_ns = anchor
        try:
            ns, ino = self._open_ns(pid, start_ns, alert.time_ns)
        except procfs.ProcessGone as e:
            return skipped(str(e))
        except PermissionError as e:
            return skipped(str(e))
        except OSError as e:
            return failed(f"netns of pid {pid}: {e.strerror or e}")
        try:
            down = in_netns(ns, lambda ipr: _set_links(ipr, None, False,
                                                       params.get("include_loopback", False)))
        except Exception as e:  # noqa: BLE001 - a netlink error is this action's failure
            return failed(f"netlink: {e}")
        finally:
            os.close(ns)
        undo = {"pid": pid, "start_ts": start_ns, "netns_ino": ino, "links": down}
        return Outcome("done", f"links down: {', '.join(down) or 'none were up'}", undo)

    def undo(self, data: dict[str, Any]) -> Outcome:
        pid, links = data.get("pid"), data.get("links")
        if not isinstance(pid, int) or not isinstance(links, list):
            return failed("undo data names no process and links")
        try:
            ns, ino = self._open_ns(pid, data.get("start_ts"), None)
        except (procfs.ProcessGone, PermissionError) as e:
            return skipped(f"cannot reach the namespace: {e}")
        except OSError as e:
            return failed(f"netns of pid {pid}: {e.strerror or e}")
        try:
            if ino != data.get("netns_ino"):
                return skipped("the process is in another network namespace now")
            up = in_netns(ns, lambda ipr: _set_links(ipr, [str(x) for x in links], True, True))
        except Exception as e:  # noqa: BLE001
            return failed(f"netlink: {e}")
        finally:
            os.close(ns)
        return Outcome("done", f"links up: {', '.join(up) or 'none'}")
