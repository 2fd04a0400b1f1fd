"""Capture files: record (``falconet record``) and replay (the ``replay`` event source).

Format v1 (``docs/capture-format.md``): JSON lines, gzip-compressed when the name ends in ``.gz``
(on read, detected by the gzip magic). Line 1 is the header, then state records and events in the
order they happened::

    {"falconet_capture": 1, "host": "h", "kernel": "6.18.0", "start_ns": 1, "engine_version": "0.63.0"}
    {"k": "state", "plugin": "core-state", "data": {...}}
    {"k": "evt", "src": "syscall", "type": "openat", "ts": 2, "tid": 7, "pid": 7, "args": {...}, "res": 3}

A malformed line is reported with its line number (rate-limited), counted as the drop cause
``capture_malformed``, and skipped: the rest of the file replays.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from falconet import ENGINE_VERSION
from falconet.api import hookimpl
from falconet.events import Event

FORMAT_VERSION = 1
GZIP_MAGIC = b"\x1f\x8b"
#: malformed lines reported individually before switching to a summary
MAX_REPORTED_MALFORMED = 20
#: files larger than this get a progress bar when stderr is a terminal
PROGRESS_MIN_BYTES = 8 << 20


class CaptureError(Exception):
    """The file is not a capture this engine can read (message says why, with the path)."""


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray):
        return o.decode("utf-8", "backslashreplace")
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


class CaptureWriter:
    """Writes a capture. Thread-safe: plugins may call ``emit_state`` from their own threads."""

    def __init__(self, path: str, *, host: str | None = None, kernel: str | None = None,
                 start_ns: int | None = None, compress: bool | None = None) -> None:
        self.path = path
        gz = path.endswith(".gz") if compress is None else compress
        raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._raw = raw
        # one compress() call per 256 KiB, not per event
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3) if gz else None
        self._f: IO[bytes] = (io.BufferedWriter(self._gz, 1 << 18)  # type: ignore[arg-type]
                              if self._gz is not None else raw)
        self._lock = threading.Lock()
        self._dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default,
                                       ensure_ascii=False).encode
        self.events = 0
        self.states = 0
        header = {"falconet_capture": FORMAT_VERSION, "host": host or socket.gethostname(),
                  "kernel": kernel or platform.release(),
                  "start_ns": start_ns if start_ns is not None else time.time_ns(),
                  "engine_version": ENGINE_VERSION}
        self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        data = (self._dumps(obj) + "\n").encode("utf-8", "surrogateescape")
        with self._lock:
            self._f.write(data)

    def write_state(self, plugin: str, data: Any) -> None:
        self.states += 1
        self._write({"k": "state", "plugin": plugin, "data": data})

    def write_event(self, evt: Event) -> None:
        d = evt.to_dict()
        d["k"] = "evt"
        self.events += 1
        self._write(d)

    def close(self) -> None:
        with self._lock:
            if self._f is not self._raw:
                self._f.close()      # flushes the buffer into gzip and closes the gzip stream
            self._raw.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_bytes(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """(reader, raw file): gzip detected by magic bytes, not by name."""
    try:
        raw = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise CaptureError(f"{path}: cannot open capture: {e.strerror or e}") from None
    magic = raw.read(2)
    raw.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def read_header(path: str) -> dict[str, Any]:
    """The capture's header. Raises :class:`CaptureError` if it is missing or unsupported."""
    f, raw = _open_bytes(path)
    try:
        return _parse_header(path, f.readline())
    except (OSError, EOFError) as e:
        raise CaptureError(f"{path}: cannot read capture: {e}") from None
    finally:
        f.close()
        raw.close()


def _parse_header(path: str, line: bytes) -> dict[str, Any]:
    try:
        h = json.loads(line)
    except ValueError:
        h = None
    if not isinstance(h, dict) or "falconet_capture" not in h:
        raise CaptureError(f"{path}:1: not a falconet capture: expected a header line "
                           '{"falconet_capture": 1, ...}')
    if h["falconet_capture"] != FORMAT_VERSION:
        raise CaptureError(f"{path}:1: unsupported capture format version "
                           f"{h['falconet_capture']!r} (this engine reads version {FORMAT_VERSION})")
    return h


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal and the file is big)."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self.raw, self.size, self.last = raw, size, 0.0

    def update(self) -> None:
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        try:
            pos = self.raw.tell()
        except (OSError, ValueError):
            return
        pct = min(100.0, 100.0 * pos / self.size) if self.size else 100.0
        bar = "#" * int(pct / 4)
        sys.stderr.write(f"\rreplay [{bar:<25}] {pct:5.1f}%")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r" + " " * 40 + "\r")
        sys.stderr.flush()


def read_capture(path: str, *, on_state: Callable[[str, Any], None] | None = None,
                 on_malformed: Callable[[int, str], None] | None = None,
                 stop: Callable[[], bool] | None = None,
                 progress: bool | None = None) -> Iterator[Event]:
    """Yield the events of a capture; state records go to ``on_state(plugin, data)`` in file
    order, malformed lines to ``on_malformed(lineno, reason)``. Raises :class:`CaptureError`
    for a missing/unsupported header."""
    f, raw = _open_bytes(path)
    try:
        try:
            _parse_header(path, f.readline())
        except (OSError, EOFError) as e:
            raise CaptureError(f"{path}: cannot read capture: {e}") from None
        bar = None
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            size = os.fstat(raw.fileno()).st_size
            if size >= PROGRESS_MIN_BYTES:
                bar = _Progress(raw, size)
        # the C scanner directly: json.loads() spends more time in its Python wrappers
        # (encoding detection, whitespace checks) than in parsing these short lines
        scan = json.JSONDecoder().scan_once
        make = Event
        lineno = 1
        try:
            for line in f:
                lineno += 1
                if not lineno & 1023:          # every 1024 lines: stop request, progress
                    if stop is not None and stop():
                        return
                    if bar is not None:
                        bar.update()
                try:
                    text = line.decode("utf-8")
                    try:
                        d, end = scan(text, 0)
                    except StopIteration:
                        raise ValueError("invalid JSON at column 1: expected an object") from None
                    if end < len(text) - 1 and text[end:].strip():
                        raise ValueError(f"extra data after the record at column {end + 1}")
                    k = d["k"]
                    if k == "evt":
                        args = d.get("args")
                        evt = make(d["src"], d["type"], d["ts"], d.get("tid", 0), d.get("pid", 0),
                                   args if args is not None else {}, d.get("res"), d.get("raw"))
                        if type(evt.ts) is not int or type(evt.source) is not str \
                                or type(evt.type) is not str or type(evt.args) is not dict:
                            raise TypeError("src/type must be strings, ts an integer, args a mapping")
                    elif k == "state":
                        if on_state is not None:
                            on_state(d["plugin"], d.get("data"))
                        continue
                    else:
                        raise ValueError(f"unknown record kind {k!r}")
                except (ValueError, KeyError, TypeError) as e:
                    if not line.strip():
                        continue
                    if on_malformed is not None:
                        on_malformed(lineno, _malformed_reason(e))
                    continue
                yield evt
        except (OSError, EOFError) as e:
            # a truncated gzip stream (recording killed mid-write): report, keep what was read
            if on_malformed is not None:
                on_malformed(lineno + 1, f"truncated capture: {e}")
        finally:
            if bar is not None:
                bar.done()
    finally:
        f.close()
        raw.close()


def _malformed_reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON at column {e.colno}: {e.msg}"
    if isinstance(e, KeyError):
        return f"missing key {e.args[0]!r}"
    return str(e) or type(e).__name__


class MalformedReporter:
    """Reports malformed capture lines on stderr (the first few, then a summary) and counts
    them as drops."""

    def __init__(self, path: str, metrics: Any = None, stream: IO[str] | None = None,
                 limit: int = MAX_REPORTED_MALFORMED) -> None:
        self.path, self.metrics, self.limit = path, metrics, limit
        self.stream = stream
        self.count = 0

    def __call__(self, lineno: int, reason: str) -> None:
        self.count += 1
        if self.metrics is not None:
            self.metrics.drop("capture_malformed")
        if self.count <= self.limit:
            out = self.stream or sys.stderr
            out.write(f"falconet: {self.path}:{lineno}: malformed capture line skipped: {reason}\n")
            if self.count == self.limit:
                out.write(f"falconet: {self.path}: further malformed lines are counted "
                          f"but not shown\n")

    def summary(self) -> None:
        if self.count > self.limit:
            (self.stream or sys.stderr).write(
                f"falconet: {self.path}: {self.count} malformed lines skipped in total\n")


def _paced(events: Iterator[Event], rate: float, batch: int = 256) -> Iterator[Event]:
    """At most ``rate`` events per second (checked every ``batch`` events, so pacing costs
    nothing per event): for load tests, and to let a scraper watch a replay happen."""
    t0 = time.monotonic()
    n = 0
    for evt in events:
        yield evt
        n += 1
        if not n % batch:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)


class ReplaySource:
    """The ``replay`` event source: events of any source from a capture file.

    ``open`` options: ``path`` (required), ``restore_state`` (``(plugin, data) -> None``, called
    for state records in file order), ``metrics`` (an ``EngineMetrics`` for the drop counter),
    ``progress`` (bool, default: stderr is a terminal), ``rate`` (events per second, default:
    as fast as possible).
    """

    name = "replay"
    source = "syscall"
    live = False

    def __init__(self) -> None:
        self._closed = False
        self.reporter: MalformedReporter | None = None

    def open(self, options: dict[str, Any]) -> Iterator[Event | None]:
        path = options.get("path")
        if not path:
            raise CaptureError("the replay source needs a capture file (options['path'])")
        self._closed = False
        read_header(path)   # fail now, with a clear message, not at the first next()
        self.reporter = MalformedReporter(path, options.get("metrics"))
        return self._events(path, options)

    def _events(self, path: str, options: dict[str, Any]) -> Iterator[Event | None]:
        try:
            events = read_capture(path, on_state=options.get("restore_state"),
                                  on_malformed=self.reporter,
                                  stop=lambda: self._closed, progress=options.get("progress"))
            rate = options.get("rate")
            yield from (_paced(events, float(rate)) if rate else events)
        finally:
            if self.reporter is not None:
                self.reporter.summary()

    def close(self) -> None:
        self._closed = True


@hookimpl
def falconet_event_sources(engine: Any) -> list[Any]:
    return [ReplaySource()]
