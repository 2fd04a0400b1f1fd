"""A wakeup one thread can give another that sleeps in ``select``: a byte on a socket pair.
``threading.Event`` cannot be waited on together with a file descriptor (a listening socket,
an inotify instance); this can, so such a thread sleeps until there is work instead of
polling for a stop flag."""

from __future__ import annotations

import socket


class Wakeup:
    """Register :meth:`fileno` with the sleeper's selector; :meth:`set` makes it readable,
    :meth:`drain` makes it quiet again. ``set`` never blocks and is safe from any thread."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def set(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:
            pass                 # the pair is full (a wakeup is pending) or closed

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except OSError:
            pass                 # empty (BlockingIOError) or closed

    def close(self) -> None:
        self._r.close()
        self._w.close()
