"""Import bcc and check the prerequisites of eBPF, with errors that say how to fix them.

bcc is packaged by the distribution (``python3-bpfcc``), not by PyPI (the PyPI "bcc" is unrelated),
so it lives in ``/usr/lib/python3/dist-packages``, which a virtualenv or pyenv Python does not see.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from typing import Any

DIST_PACKAGES = ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages")
FIX = "run `make run` (or `sudo scripts/setup.sh run`): it installs python3-bpfcc and kernel headers"


class CollectorUnavailable(RuntimeError):
    """eBPF cannot start here; the message says exactly what is missing and how to fix it."""


def import_bcc() -> Any:
    """Import and return the ``bcc`` module, adding the distribution's dist-packages if needed."""
    try:
        import bcc  # noqa: PLC0415
        return bcc
    except ImportError:
        pass
    for d in DIST_PACKAGES:
        if os.path.isdir(os.path.join(d, "bcc")) and d not in sys.path:
            sys.path.append(d)     # appended: never shadow the venv's own packages
    try:
        import bcc  # noqa: PLC0415
        return bcc
    except ImportError as e:
        raise CollectorUnavailable(f"bcc (python3-bpfcc) is not installed or not importable "
                                   f"({e}); {FIX}") from None


def find_bcc() -> None:
    """Check that bcc is importable without importing it (importing bcc costs ~60 MB RSS; the
    engine leaves that to the loader child process)."""
    if importlib.util.find_spec("bcc") is not None:
        return
    for d in DIST_PACKAGES:
        if os.path.isdir(os.path.join(d, "bcc")):
            return
    raise CollectorUnavailable(f"bcc (python3-bpfcc) is not installed; {FIX}")


def check_prerequisites() -> None:
    """Raise :class:`CollectorUnavailable` naming the first missing prerequisite."""
    if os.geteuid() != 0:
        raise CollectorUnavailable("the eBPF collector needs root (CAP_BPF, CAP_PERFMON, "
                                   "CAP_SYS_ADMIN): run falconet as root, e.g. `sudo falconet run`")
    release = platform.release()
    build = f"/lib/modules/{release}/build"
    if not os.path.exists(os.path.join(build, "include")):
        raise CollectorUnavailable(f"kernel headers for {release} are missing ({build} does not "
                                   f"exist); {FIX} (scripts/setup.d/20-kernel-headers.sh)")
    from falconet.collector.program import tracefs_root  # noqa: PLC0415
    if tracefs_root() is None:
        raise CollectorUnavailable("tracefs is not mounted (no /sys/kernel/tracing/events/"
                                   "syscalls): `mount -t tracefs nodev /sys/kernel/tracing`, "
                                   "or " + FIX)
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise CollectorUnavailable("the kernel has no BTF (/sys/kernel/btf/vmlinux): falconet "
                                   "needs CONFIG_DEBUG_INFO_BTF=y to read task fields portably")
    find_bcc()
