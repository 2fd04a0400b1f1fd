"""Alerts as lines on a stream (stdout) or appended to a file."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO

from falconet.alerts import Alert
from falconet.outputs.encoding import utf8
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
    """Appends one formatted line per alert to a file (opened at start, 0600 when created, never
    through a symlink).

    Each alert is one ``write(2)`` of the whole line on an ``O_APPEND`` descriptor, no user-space
    buffer: ``send`` returns only when the kernel took the line, so a full disk (``ENOSPC``) or
    any other write error is this alert's counted failure, never a later flush warning about
    alerts already counted as sent. A line cut short by a failing write is removed again, so
    the next alert does not continue a torn line."""

    def __init__(self, name: str, path: str, fmt: Callable[[Alert], str],
                 min_priority: Priority = Priority.DEBUG) -> None:
        self.name = name
        self.path = path
        self.min_priority = min_priority
        self._fmt = fmt
        self._fd: int | None = None

    def start(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600)

    def send(self, alert: Alert) -> None:
        if self._fd is None:
            self.start()
        assert self._fd is not None
        data = utf8(self._fmt(alert) + "\n")
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:] if done else data)
                if n <= 0:
                    raise OSError(f"{self.path}: write returned {n}")
                done += n
        except OSError as e:
            if done:
                self._unwrite(done)
            raise OSError(e.errno, f"{self.path}: {e.strerror or e}") from None

    def _unwrite(self, n: int) -> None:
        """Take back the ``n`` bytes of a torn line at the end of the file."""
        assert self._fd is not None
        try:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            os.ftruncate(self._fd, max(0, end - n))
        except OSError:
            pass        # not a regular file (a FIFO, /dev/full): nothing to take back

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
