"""Run a command with a private ``/etc/hosts``: the engine under test resolves names the machine
does not (a suite's ``engine_hosts``, e.g. ``kubernetes.default.svc.cluster.local``), and nothing
else on the machine sees them. The real ``/etc/hosts`` is never written.

How: :func:`wrap` returns ``unshare --mount --propagation slave -- python -m
falconet.simulate.private_hosts FILE -- ARGV...``. In its own mount namespace, this module
bind-mounts FILE over ``/etc/hosts`` and ``exec``s ARGV: same PID, same process name, only the
mount table differs. Needs root (CAP_SYS_ADMIN). No shell anywhere.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

HOSTS = "/etc/hosts"


def hosts_text(extra: Mapping[str, str], base: str | None = None) -> str:
    """The machine's hosts file (``base``, default: read ``/etc/hosts``) plus one line per
    ``name -> address``. Raises ``ValueError`` for an invalid address or name."""
    if base is None:
        try:
            with open(HOSTS, encoding="utf-8") as f:
                base = f.read()
        except OSError:
            base = "127.0.0.1 localhost\n"
    lines = [base.rstrip("\n"), "# added for this process only (falconet.simulate.private_hosts)"]
    for name, addr in extra.items():
        ipaddress.ip_address(addr)
        if not name or any(c.isspace() or c == "#" for c in name):
            raise ValueError(f"invalid host name {name!r}")
        lines.append(f"{addr} {name}")
    return "\n".join(lines) + "\n"


def write_hosts_file(extra: Mapping[str, str]) -> str:
    """A temporary hosts file for :func:`wrap` (the caller removes it)."""
    text = hosts_text(extra)          # validated first: an invalid entry leaves no file behind
    fd, path = tempfile.mkstemp(prefix="falconet-hosts-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        os.fchmod(f.fileno(), 0o644)     # world-readable like /etc/hosts; by fd, never by path
    return path


def wrap(argv: Sequence[str], hosts_file: str) -> list[str]:
    """``argv`` run in a private mount namespace that sees ``hosts_file`` as /etc/hosts."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("'unshare' (util-linux) is needed for a private /etc/hosts")
    return [unshare, "--mount", "--propagation", "slave", "--", sys.executable, "-m",
            "falconet.simulate.private_hosts", hosts_file, "--", *argv]


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m falconet.simulate.private_hosts HOSTS_FILE -- ARGV...",
              file=sys.stderr)
        return 2
    hosts_file, argv = args[0], args[2:]
    # never our caller's mount table: that would change /etc/hosts for everyone
    try:
        shared = os.readlink("/proc/self/ns/mnt") == os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        shared = True
    if shared:
        print("private_hosts: not in a private mount namespace (run through wrap()); refusing "
              f"to touch {HOSTS}", file=sys.stderr)
        return 1
    p = subprocess.run(["mount", "--bind", hosts_file, HOSTS], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        print(f"private_hosts: cannot bind {hosts_file} over {HOSTS}: "
              f"{(p.stderr or p.stdout).strip()}", file=sys.stderr)
        return 1
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"private_hosts: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
        return 127
    return 0   # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
