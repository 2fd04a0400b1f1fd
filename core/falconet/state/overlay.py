"""Is an executable in the *upper* (writable) layer of an overlayfs mount?

That is the "binary was dropped into the container after it started" signal behind Falco's
``proc.is_exe_upper_layer``. Derived from ``/proc/<pid>/mountinfo``: find the overlay mount that
holds the path, read its ``upperdir=`` super option, and check whether the file exists under the
upper directory. Mount tables are parsed once per mount namespace and cached; this runs once per
exec (never per event) and only when the collector did not already report the flag.
"""

from __future__ import annotations

import os
import time

#: mount namespace -> (read at, [(mount point, upperdir)] longest mount point first). Entries
#: expire after ``_TTL`` seconds: mounts come and go in a namespace (the host's in particular).
_CACHE: dict[str, tuple[float, list[tuple[str, str]]]] = {}
_CACHE_MAX = 1024
_TTL = 5.0


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    if "\\" not in s:
        return s
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def overlay_mounts(pid: int, proc: str = "/proc") -> list[tuple[str, str]]:
    """Overlay mounts visible to ``pid`` as ``(mount point, upperdir)``, longest mount point first."""
    try:
        ns = os.readlink(f"{proc}/{pid}/ns/mnt")
    except OSError:
        ns = ""
    now = time.monotonic()
    hit = _CACHE.get(ns) if ns else None
    if hit is not None and now - hit[0] < _TTL:
        return hit[1]
    mounts: list[tuple[str, str]] = []
    try:
        with open(f"{proc}/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                if not sep:
                    continue
                rparts = right.split()
                if len(rparts) < 3 or rparts[0] != "overlay":
                    continue
                upper = ""
                for opt in rparts[2].split(","):
                    if opt.startswith("upperdir="):
                        upper = _unescape(opt[9:])
                        break
                lparts = left.split()
                if upper and len(lparts) >= 5:
                    mounts.append((_unescape(lparts[4]), upper))
    except OSError:
        return []
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    if ns:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[ns] = (now, mounts)
    return mounts


def is_upper_layer(pid: int, exepath: str, proc: str = "/proc") -> bool:
    """True if ``exepath`` (as ``pid`` sees it) lives in the upper layer of an overlay mount.

    The upperdir path is a host path: checked as is (we run in the host mount namespace), then
    through ``/proc/1/root`` in case we run in a container ourselves.
    """
    if not exepath.startswith("/"):
        return False
    for mnt, upper in overlay_mounts(pid, proc):
        if exepath == mnt or exepath.startswith(mnt.rstrip("/") + "/"):
            rel = exepath[len(mnt.rstrip("/")):].lstrip("/")
            return (os.path.lexists(os.path.join(upper, rel))
                    or os.path.lexists(os.path.join(f"{proc}/1/root{upper}", rel)))
    return False


def clear_cache() -> None:
    _CACHE.clear()
