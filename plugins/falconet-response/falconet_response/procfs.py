"""What the response actions read about a live process from ``/proc`` (start time, kernel
thread flag, parent, pid namespace, cgroups), and pidfds that never hit a recycled PID."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

PROC = "/proc"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
#: how far the start time /proc reports may be from the one the engine recorded: /proc has
#: clock-tick resolution and the engine's /proc bootstrap used btime (1 s resolution)
START_TOLERANCE_NS = 2_000_000_000
#: a process that started after the alert's event cannot be the one that caused it; /proc's
#: start time is rounded to a clock tick
AFTER_EVENT_TOLERANCE_NS = 2 * 1_000_000_000 // CLK_TCK


def boot_epoch_ns() -> int:
    """The epoch time of boot, to the nanosecond (CLOCK_BOOTTIME is what /proc start times and
    eBPF timestamps count from)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgid: int
    flags: int
    start_ns: int          # epoch ns
    state: str
    start_ticks: int = 0   # raw /proc start time: exact, for comparing two reads

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD) or self.pid == 2 or self.ppid == 2


def stat(pid: int, proc: str = PROC) -> ProcStat | None:
    """``/proc/<pid>/stat``, or ``None`` when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields follow the last ')'
    rest = raw.rsplit(")", 1)[1].split()
    return ProcStat(pid=pid, ppid=int(rest[1]), pgid=int(rest[2]), flags=int(rest[6]),
                    start_ns=boot_epoch_ns() + int(rest[19]) * 1_000_000_000 // CLK_TCK,
                    state=rest[0], start_ticks=int(rest[19]))


def same_process(st: ProcStat, start_ts: int | None, event_ns: int | None) -> bool:
    """Whether the live process ``st`` is the one the alert named: its start time matches the
    recorded one, or (when unknown) it started before the alert's event."""
    if start_ts:
        return abs(st.start_ns - start_ts) <= START_TOLERANCE_NS
    if event_ns:
        return st.start_ns <= event_ns + AFTER_EVENT_TOLERANCE_NS
    return False


def ancestors(pid: int, proc: str = PROC, limit: int = 256) -> list[int]:
    """The parent chain of ``pid`` (nearest first, up to pid 1)."""
    out: list[int] = []
    cur = pid
    for _ in range(limit):
        st = stat(cur, proc)
        if st is None or st.ppid <= 0:
            break
        out.append(st.ppid)
        if st.ppid == 1:
            break
        cur = st.ppid
    return out


def nspid(pid: int, proc: str = PROC) -> list[int]:
    """``NSpid`` of ``/proc/<pid>/status``: the pid in each nested pid namespace, outermost
    first (the last one is the pid inside the container)."""
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def cgroups(pid: int, proc: str = PROC) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as ``{controller: path}``; the unified hierarchy is ``""``."""
    out: dict[str, str] = {}
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for c in parts[1].split(",") if parts[1] else [""]:
                        out[c] = parts[2]
    except OSError:
        pass
    return out


def pids_in(procs_file: str) -> list[int]:
    try:
        with open(procs_file, encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


class ProcessGone(Exception):
    """The process exited (or its PID now names another process): nothing to act on."""


def open_verified(pid: int, start_ts: int | None, event_ns: int | None,
                  proc: str = PROC) -> tuple[int, ProcStat]:
    """A pidfd for ``pid``, *then* its start time checked: once the pidfd is open it names one
    process for good, so a PID recycled after the check cannot be hit, and one recycled before
    has a later start time and is refused. Raises :class:`ProcessGone`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ProcessGone(f"pid {pid} has exited") from None
    st = stat(pid, proc)
    if st is None or st.state in ("Z", "X") or not same_process(st, start_ts, event_ns):
        os.close(fd)
        raise ProcessGone(f"pid {pid} has exited or now names another process")
    return fd, st


def pidfd_kill(fd: int, sig: int = signal.SIGKILL) -> None:
    signal.pidfd_send_signal(fd, sig)
