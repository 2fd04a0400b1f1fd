"""Alerts as lines on a stream (stdout) or appended to a file."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO

from falconet.alerts import Alert
from falconet.priorities import Priority


class StreamSink:
    """Writes one formatted line per alert to a text stream (``sys.stdout`` by default)."""

    def __init__(self, name: str, fmt: Callable[[Alert], str], min_priority: Priority = Priority.DEBUG,
                 stream: IO[str] | None = None) -> None:
        self.name = name
        self.min_priority = min_priority
        self._fmt = fmt
        self._stream = stream

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stdout

    def start(self) -> None:
        pass

    def send(self, alert: Alert) -> None:
        self.stream.write(self._fmt(alert) + "\n")

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class FileSink:
    """Appends one formatted line per alert to a file (opened at start, 0600 when created)."""

    def __init__(self, name: str, path: str, fmt: Callable[[Alert], str],
                 min_priority: Priority = Priority.DEBUG) -> None:
        self.name = name
        self.path = path
        self.min_priority = min_priority
        self._fmt = fmt
        self._f: IO[str] | None = None

    def start(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._f = open(fd, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    def send(self, alert: Alert) -> None:
        if self._f is None:
            self.start()
        assert self._f is not None
        self._f.write(self._fmt(alert) + "\n")

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
