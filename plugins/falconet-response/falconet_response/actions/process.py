"""``kill``: signal the alert's process, its process group, or its container's init, through a
pidfd opened *before* the start time is checked, so a recycled PID is never hit."""

from __future__ import annotations

import os
import signal
from typing import Any

from falconet.alerts import Alert

from falconet_response import procfs
from falconet_response.actions.base import ActionParamError, Outcome, Target
from falconet_response.actions.common import (
    PidGuard,
    check_keys,
    choice,
    failed,
    no_guard,
    skipped,
)

SCOPES = ("process", "process_group", "container_init")


def _signal(v: Any) -> int:
    name = str(v).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ActionParamError(f"signal: expected a signal name like KILL or TERM, got {v!r}") \
            from None


class KillAction:
    name = "kill"
    reversible = False

    def __init__(self, guard: PidGuard = no_guard, proc: str = procfs.PROC) -> None:
        self.guard = guard
        self.proc = proc

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, {"target": "process, process_group or container_init",
                            "signal": "KILL (default), TERM, STOP..."})
        return {"target": choice(params, "target", SCOPES, "process"),
                "signal": _signal(params.get("signal", "KILL"))}

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.pid is None:
            return skipped("the alert names no process")
        sig = int(params.get("signal", signal.SIGKILL))
        scope = params.get("target", "process")
        try:
            fd, st = procfs.open_verified(target.pid, target.start_ts, alert.time_ns, self.proc)
        except procfs.ProcessGone as e:
            return skipped(str(e))
        try:
            if scope == "process":
                procfs.pidfd_kill(fd, sig)
                return Outcome("done", f"{signal.Signals(sig).name} pid {target.pid}")
            if scope == "process_group":
                return self._group(st.pgid, sig)
            return self._init(target, sig)
        except ProcessLookupError:
            return skipped(f"pid {target.pid} exited before the signal")
        except OSError as e:
            return failed(f"pid {target.pid}: {e.strerror or e}")
        finally:
            os.close(fd)

    def _group(self, pgid: int, sig: int) -> Outcome:
        if pgid <= 1 or pgid == os.getpgrp():
            return skipped(f"process group {pgid} is protected (init's or the engine's)")
        hit, spared = [], []
        for pid in _pids(self.proc):
            st = procfs.stat(pid, self.proc)
            if st is None or st.pgid != pgid:
                continue
            if self.guard(pid):
                spared.append(pid)
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                again = procfs.stat(pid, self.proc)   # still the same process, same group
                if again is not None and again.start_ticks == st.start_ticks and again.pgid == pgid:
                    procfs.pidfd_kill(fd, sig)
                    hit.append(pid)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        if not hit:
            return skipped(f"process group {pgid}: no process left to signal")
        more = f", spared protected {spared}" if spared else ""
        return Outcome("done", f"{signal.Signals(sig).name} process group {pgid}: "
                               f"{len(hit)} processes{more}")

    def _init(self, target: Target, sig: int) -> Outcome:
        if target.container_id is None:
            return skipped("container_init: the process is not in a container")
        init = container_init(target.pid or 0, self.proc)
        if init is None:
            return skipped("container_init: the container's init was not found")
        why = self.guard(init)
        if why:
            return skipped(f"container_init: pid {init} is protected ({why})")
        try:
            fd = os.pidfd_open(init)
        except ProcessLookupError:
            return skipped(f"container init {init} has exited")
        try:
            # checked after the pidfd is open: it is still pid 1 of the target's namespace
            if container_init(target.pid or 0, self.proc) != init:
                return skipped(f"container init {init} has exited")
            procfs.pidfd_kill(fd, sig)
        finally:
            os.close(fd)
        return Outcome("done", f"{signal.Signals(sig).name} container init pid {init}")

    def undo(self, data: dict[str, Any]) -> Outcome:
        return skipped("kill cannot be undone")


def _pids(proc: str) -> list[int]:
    try:
        return [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []


def container_init(pid: int, proc: str = procfs.PROC) -> int | None:
    """The host pid of pid 1 of ``pid``'s pid namespace (``pid`` itself or an ancestor)."""
    mine = procfs.nspid(pid, proc)
    if len(mine) < 2:
        return None            # the host pid namespace: there is no container init
    for cand in [pid, *procfs.ancestors(pid, proc)]:
        ns = procfs.nspid(cand, proc)
        if len(ns) == len(mine) and ns[-1] == 1:
            return cand
        if len(ns) < len(mine):
            break
    return None
