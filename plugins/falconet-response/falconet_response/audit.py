"""The audit log: one JSON object per line, appended by the engine (every action, dry run,
skip, undo and breaker change) and by ``falconet respond undo``; read by ``falconet respond
list``. Created 0600 and never through a symlink (O_NOFOLLOW), in a 0700 directory."""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

DEFAULT_DIR = "/var/lib/falconet/response"
DEFAULT_AUDIT_LOG = f"{DEFAULT_DIR}/audit.jsonl"
#: a line longer than this is not ours: skipped when reading
MAX_LINE = 1 << 20


class AuditError(Exception):
    """The audit log cannot be opened or read (message says why, with the path)."""


def secure_dir(path: str) -> None:
    """Create ``path`` (0700) if needed; refuse a symlink."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise AuditError(f"{path}: expected a directory, found a symlink or a file")


def open_private(path: str, flags: int) -> int:
    """``os.open`` with O_NOFOLLOW and mode 0600 (an existing file is made 0600 too)."""
    parent = os.path.dirname(path) or "."
    secure_dir(parent)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise AuditError(f"{path}: cannot open: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise AuditError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def new_id() -> str:
    """A short id for ``falconet respond undo ID``: unique across restarts."""
    return secrets.token_hex(6)


class AuditLog:
    def __init__(self, path: str = DEFAULT_AUDIT_LOG) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.write_errors = 0

    def open(self) -> None:
        if self._fd is None:
            self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (``ts`` added). An I/O error is counted, never raised."""
        record = {"ts": time.time_ns(), **record}
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            try:
                self.open()
                assert self._fd is not None
                os.write(self._fd, line)
            except (OSError, AuditError):
                self.write_errors += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """Every well-formed record in file order (malformed lines are skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise AuditError(f"{path}: cannot read the audit log: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            if len(raw) > MAX_LINE:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def actions_with_state(path: str) -> list[dict[str, Any]]:
    """Action records, each with ``undone`` (the undo record) when one succeeded."""
    acts: dict[str, dict[str, Any]] = {}
    for rec in read_records(path):
        kind = rec.get("type", "action")
        if kind == "action" and isinstance(rec.get("id"), str):
            acts[rec["id"]] = dict(rec)
        elif kind == "undo" and rec.get("of") in acts and rec.get("result") == "done":
            acts[rec["of"]]["undone"] = {"ts": rec.get("ts"), "by": rec.get("by"),
                                         "detail": rec.get("detail", "")}
    return list(acts.values())
