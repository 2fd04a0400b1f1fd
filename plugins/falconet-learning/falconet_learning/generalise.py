"""Path classes: the generalisation that keeps ``/proc/1234/stat`` or ``/tmp/tmp.k3J9x`` from
counting as new every time.

Each path component is replaced by a placeholder when it looks generated:

- ``<pid>``: a number directly below ``/proc`` (and ``/proc/<pid>/task/<tid>``);
- ``<n>``: any other all-digit component (``/var/log/app.1``'s suffix stays: only whole
  components are generalised, plus a numeric suffix after a dot, ``app.log.3`` → ``app.log.<n>``);
- ``<hex>``: 8 or more hex digits (container ids, hashes, uuids with dashes);
- ``<rand>``: a component below a temporary directory (``/tmp``, ``/var/tmp``, ``/dev/shm``,
  ``/run/user/<n>``) that mixes letters and digits after a common prefix (``tmp.k3J9x``,
  ``pip-build-a8x_3k``), or any component with a long mixed-case/digit run.

The function is pure and deterministic; callers cache its results (see :class:`ClassCache`).
"""

from __future__ import annotations

import re

_TMP_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/")
_HEX = re.compile(r"[0-9a-fA-F]{8,}(?:-[0-9a-fA-F]{4,})*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: a generated suffix: at least 5 characters of letters/digits/_ containing a digit or mixed case
_RAND_TAIL = re.compile(r"^(?P<stem>.*[._-])(?P<tail>[A-Za-z0-9]{5,})$")
#: Python's tempfile names: "tmp" + 8 characters of [a-z0-9_]
_PY_TMP = re.compile(r"^tmp[a-z0-9_]{8}$")
_NUM_SUFFIX = re.compile(r"^(?P<stem>.+\.)(?P<n>\d+)$")
_MAX_PATH = 4096


def _looks_random(s: str) -> bool:
    has_digit = any(c.isdigit() for c in s)
    has_upper = any(c.isupper() for c in s)
    has_lower = any(c.islower() for c in s)
    return (has_digit and (has_upper or has_lower)) or (has_upper and has_lower)


def _component(c: str, below_tmp: bool) -> str:
    if c.isdigit():
        return "<n>"
    if _UUID.fullmatch(c) or (_HEX.fullmatch(c) and any(ch.isdigit() for ch in c)):
        return "<hex>"
    if below_tmp:
        if _PY_TMP.match(c) and _looks_random(c[3:]):
            return "tmp<rand>"
        m = _RAND_TAIL.match(c)
        if m and _looks_random(m["tail"]):
            return m["stem"] + "<rand>"
    elif len(c) >= 16 and _looks_random(c) and c.isalnum():
        return "<rand>"
    m = _NUM_SUFFIX.match(c)
    if m:
        return m["stem"] + "<n>"
    return c


def path_class(path: str) -> str:
    """The path class of an absolute path (relative or empty paths are returned unchanged)."""
    if not path or path[0] != "/":
        return path
    if len(path) > _MAX_PATH:
        path = path[:_MAX_PATH]
    parts = path.split("/")
    out = [""]
    below_tmp = False
    for i, c in enumerate(parts[1:], start=1):
        if not c:
            continue
        if i == 2 and out[1] == "proc" and c.isdigit() or \
                (c.isdigit() and len(out) >= 2 and out[-1] == "task" and "<pid>" in out):
            out.append("<pid>")
            continue
        if c == "self" and i == 2 and out[1] == "proc":
            out.append("<pid>")     # /proc/self/x and /proc/<pid>/x are one class
            continue
        out.append(_component(c, below_tmp))
        if not below_tmp:
            prefix = "/".join(out) + "/"
            below_tmp = prefix.startswith(_TMP_DIRS) or prefix.startswith("/run/user/")
    return "/".join(out) or "/"


class ClassCache:
    """A bounded memo of :func:`path_class` for the hot path (cleared when full: the working set
    of a host's paths refills it within a few events, and the bound caps memory)."""

    __slots__ = ("_d", "max_size", "misses")

    def __init__(self, max_size: int = 65536) -> None:
        self._d: dict[str, str] = {}
        self.max_size = max_size
        self.misses = 0

    def get(self, path: str) -> str:
        c = self._d.get(path)
        if c is None:
            c = path_class(path)
            if len(self._d) >= self.max_size:
                self._d.clear()     # in place: the learner reads this very dict
            self._d[path] = c
            self.misses += 1
        return c
