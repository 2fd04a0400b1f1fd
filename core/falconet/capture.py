"""Capture files: record (``falconet record``) and replay (the ``replay`` event source).

Format v2 (``docs/capture-format.md``; v1 is still read): JSON lines, gzip-compressed when the
name ends in ``.gz`` (on read, detected by the gzip magic). Line 1 is the header, then state records
and events in the order they happened::

    {"falconet_capture": 2, "host": "h", "kernel": "6.18.0", "start_ns": 1, "engine_version": "0.63.0"}
    {"k": "state", "plugin": "core-state", "data": {...}}
    {"k": "evt", "src": "syscall", "type": "openat", "ts": 2, "tid": 7, "pid": 7, "args": {...}, "res": 3}

Strings hold what the kernel gave byte for byte: the engine keeps a byte that is not UTF-8 as
the lone surrogate U+DC80+byte (Python's ``surrogateescape``), and v2 writes that as the JSON escape
``\\udcXX``, so a replay sees exactly the recorded bytes (v1 wrote the raw byte, which made the
line invalid UTF-8; the reader accepts such v1 lines too).

A malformed line (bad JSON, too long, too deeply nested, a missing or wrongly typed field) is
reported with its line number (rate-limited), counted as the drop cause ``capture_malformed``, and
skipped: the rest of the file replays. Memory stays bounded: lines are read up to
:data:`MAX_LINE_BYTES`, a gzip stream is decompressed to at most :func:`max_decompressed`.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import os
import platform
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar, cast

from falconet import ENGINE_VERSION
from falconet.api import hookimpl
from falconet.events import Event
from falconet.kfilter import FdTracker

log = logging.getLogger("falconet.capture")
_T = TypeVar("_T")

FORMAT_VERSION = 2
#: versions this reader understands (v1: raw non-UTF-8 bytes; v2: ``\\udcXX`` escapes)
READ_VERSIONS = frozenset({1, 2})
#: the longest line read (a longer one is skipped, read in pieces, never held whole)
MAX_LINE_BYTES = 16 << 20
#: the longest header line (line 1); `replay /dev/zero` ends here
MAX_HEADER_BYTES = 1 << 20
#: a gzip capture decompresses to at most this many times its size (gzip's best is ~1032x;
#: real captures are 40-50x), and never less than MIN_DECOMPRESSED_LIMIT: beyond, a bomb
MAX_GZIP_RATIO = 500
MIN_DECOMPRESSED_LIMIT = 256 << 20
#: ranges of the integer fields (int64 timestamps and return values, 32-bit ids)
_I64 = 1 << 63
_ID_MAX = 1 << 32
GZIP_MAGIC = b"\x1f\x8b"
#: malformed lines reported individually before switching to a summary
MAX_REPORTED_MALFORMED = 20
#: files larger than this get a progress bar when stderr is a terminal
PROGRESS_MIN_BYTES = 8 << 20


class CaptureError(Exception):
    """The file is not a capture this engine can read (message says why, with the path)."""


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray):
        # the same convention as strings read from /proc: invalid bytes become U+DC80+byte,
        # which the encoding step below writes as a \udcXX escape (exact round trip)
        return bytes(o).decode("utf-8", "surrogateescape")
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def create_private(path: str, *, overwrite: bool = False) -> IO[bytes]:
    """A new file, mode 0600 (captures hold process environments), never through a symlink:
    ``O_CREAT|O_EXCL|O_NOFOLLOW``. An existing regular file is an error (``FileExistsError``)
    unless ``overwrite``; then it is unlinked first (a hard link to another file is cut, not
    written through). Anything else that exists (a device such as ``/dev/null``, a FIFO) is
    never replaced, and a symlink at ``path`` is refused, even with ``overwrite``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "is a symbolic link (not followed; remove it first)")
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "file exists (use --force to overwrite it)")
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            # a device, FIFO or socket (`--force /dev/null`): unlinking it would remove it
            raise OSError(errno.EEXIST, "exists and is not a regular file (not replaced)")
        os.unlink(path)
    # O_EXCL: a file (or symlink) planted between the unlink and here is an error, not followed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)            # whatever the umask
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


class CaptureWriter:
    """Writes a capture. Thread-safe: plugins may call ``emit_state`` from their own threads.
    The file is created 0600 and never through a symlink (:func:`create_private`).

    A write error (a full disk) never raises into the engine: the first one is kept in
    :attr:`error`, nothing more is written, and ``close`` reports through it too, so the caller
    can say the capture is incomplete (``record`` exits 1)."""

    def __init__(self, path: str, *, host: str | None = None, kernel: str | None = None,
                 start_ns: int | None = None, compress: bool | None = None,
                 overwrite: bool = False) -> None:
        self.path = path
        gz = path.endswith(".gz") if compress is None else compress
        raw: IO[bytes] = create_private(path, overwrite=overwrite)
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
        #: the first write error; once set, the capture is incomplete and nothing more is written
        self.error: OSError | None = None
        header = {"falconet_capture": FORMAT_VERSION, "host": host or socket.gethostname(),
                  "kernel": kernel or platform.release(),
                  "start_ns": start_ns if start_ns is not None else time.time_ns(),
                  "engine_version": ENGINE_VERSION}
        self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        # a lone surrogate (a non-UTF-8 byte kept by surrogateescape) only occurs inside JSON
        # strings, where backslashreplace's "\udcff" is exactly the JSON escape: valid UTF-8
        # out, the same string back on read (format v2)
        data = (self._dumps(obj) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            if self.error is not None:
                return
            try:
                self._f.write(data)
            except OSError as e:
                self.error = e
                log.error("%s: cannot write the capture (%s): recording stops here, the capture "
                          "is incomplete", self.path, e.strerror or e)

    def write_state(self, plugin: str, data: Any) -> None:
        self.states += 1
        self._write({"k": "state", "plugin": plugin, "data": data})

    def write_event(self, evt: Event) -> None:
        d = evt.to_dict()
        d["k"] = "evt"
        self.events += 1
        self._write(d)

    def close(self) -> None:
        """Flush and close; an error doing so is kept in :attr:`error`, never raised."""
        with self._lock:
            for f in ((self._f, self._raw) if self._f is not self._raw else (self._raw,)):
                try:
                    f.close()    # the buffer into gzip and the gzip stream, then the file
                except (OSError, ValueError) as e:
                    if self.error is None:
                        self.error = e if isinstance(e, OSError) else OSError(str(e))

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
    try:
        magic = raw.read(2)
        raw.seek(0)
    except OSError as e:
        raw.close()
        raise CaptureError(f"{path}: cannot read capture: {e.strerror or e}") from None
    if magic == GZIP_MAGIC:
        # a GzipFile is a binary file object, though typeshed does not derive it from IO
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def max_decompressed(raw: IO[bytes]) -> int:
    """How many bytes a gzip capture may decompress to: :data:`MAX_GZIP_RATIO` times its size,
    at least :data:`MIN_DECOMPRESSED_LIMIT` (a 1 MB bomb stops there, not at 1 GB)."""
    try:
        size = os.fstat(raw.fileno()).st_size
    except (OSError, ValueError):
        size = 0
    return max(MIN_DECOMPRESSED_LIMIT, MAX_GZIP_RATIO * size)


def read_header(path: str) -> dict[str, Any]:
    """The capture's header. Raises :class:`CaptureError` if it is missing or unsupported."""
    f, raw = _open_bytes(path)
    try:
        return _parse_header(path, f.readline(MAX_HEADER_BYTES))
    except (OSError, EOFError) as e:
        raise CaptureError(f"{path}: cannot read capture: {e}") from None
    finally:
        f.close()
        raw.close()


def _parse_header(path: str, line: bytes) -> dict[str, Any]:
    try:
        h = json.loads(line) if line.endswith(b"\n") or len(line) < MAX_HEADER_BYTES else None
    except (ValueError, RecursionError):
        h = None
    if not isinstance(h, dict) or "falconet_capture" not in h:
        raise CaptureError(f"{path}:1: not a falconet capture: expected a header line "
                           f'{{"falconet_capture": {FORMAT_VERSION}, ...}}')
    v = h["falconet_capture"]
    if type(v) is not int or v not in READ_VERSIONS:
        raise CaptureError(f"{path}:1: unsupported capture format version {v!r} (this engine "
                           f"reads versions {', '.join(map(str, sorted(READ_VERSIONS)))})")
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
                 progress: bool | None = None,
                 max_line: int = MAX_LINE_BYTES) -> Iterator[Event]:
    """Yield the events of a capture; state records go to ``on_state(plugin, data)`` in file
    order, malformed lines to ``on_malformed(lineno, reason)``. Raises :class:`CaptureError`
    for a missing/unsupported header. Never holds more than ``max_line`` bytes of one line."""
    f, raw = _open_bytes(path)
    try:
        try:
            _parse_header(path, f.readline(MAX_HEADER_BYTES))
        except (OSError, EOFError) as e:
            raise CaptureError(f"{path}: cannot read capture: {e}") from None
        bar = None
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            size = os.fstat(raw.fileno()).st_size
            if size >= PROGRESS_MIN_BYTES:
                bar = _Progress(raw, size)
        limit = max_decompressed(raw) if f is not raw else 0
        # the C scanner directly: json.loads() spends more time in its Python wrappers
        # (encoding detection, whitespace checks) than in parsing these short lines
        # NaN and Infinity are not JSON (RFC 8259): such a line is malformed, never an alert
        # whose JSON strict consumers refuse (called only for those constants: free otherwise)
        # (scan_once: set by JSONDecoder.__init__, not in typeshed's stub)
        scan = json.JSONDecoder(parse_constant=_not_json).scan_once  # type: ignore[attr-defined]
        make = Event
        i64, id_max = _I64, _ID_MAX
        readline = f.readline
        lineno = 1
        try:
            while True:
                line = readline(max_line)
                if not line:
                    break
                lineno += 1
                if not lineno & 1023:          # every 1024 lines: stop request, progress, bomb
                    if stop is not None and stop():
                        return
                    if bar is not None:
                        bar.update()
                    if limit and f.tell() > limit:
                        _bomb(on_malformed, lineno, limit)
                        return
                if len(line) >= 65536:          # rare: a long line may be a bomb or too long
                    if limit and f.tell() > limit:
                        _bomb(on_malformed, lineno, limit)
                        return
                    if len(line) == max_line and not line.endswith(b"\n"):
                        if not _skip_line(readline, max_line, stop, f, limit):
                            _bomb(on_malformed, lineno, limit)
                            return
                        if on_malformed is not None:
                            on_malformed(lineno, f"line longer than {max_line} bytes: skipped")
                        continue
                try:
                    # surrogateescape: v1 files hold raw non-UTF-8 bytes (v2 escapes them)
                    text = line.decode("utf-8", "surrogateescape")
                    try:
                        d, end = scan(text, 0)
                    except StopIteration:
                        raise ValueError("invalid JSON at column 1: expected an object") from None
                    if end < len(text) - 1 and text[end:].strip():
                        raise ValueError(f"extra data after the record at column {end + 1}")
                    k = d["k"]
                    if k == "evt":
                        src, typ, ts = d["src"], d["type"], d["ts"]
                        tid, pid, res = d.get("tid", 0), d.get("pid", 0), d.get("res")
                        args = d.get("args")
                        if args is None:
                            args = {}
                        # type() is: a bool is not an int here; ranges: no huge numbers
                        if not (type(ts) is int and type(tid) is int and type(pid) is int
                                and type(src) is str and type(typ) is str
                                and type(args) is dict and 0 <= ts < i64
                                and 0 <= tid < id_max and 0 <= pid < id_max
                                and (res is None or (type(res) is int and -i64 <= res < i64))):
                            raise TypeError(_field_problem(d))
                        evt = make(src, typ, ts, tid, pid, args, res, d.get("raw"))
                    elif k == "state":
                        plugin = d["plugin"]
                        if type(plugin) is not str:
                            raise TypeError(f"state record: 'plugin' must be a string, "
                                            f"not {_kind(plugin)}")
                        if on_state is not None:
                            on_state(plugin, d.get("data"))
                        continue
                    else:
                        raise ValueError(f"unknown record kind {_quoted(k)}")
                except (ValueError, KeyError, TypeError, RecursionError) as e:
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


def _not_json(name: str) -> Any:
    raise ValueError(f"not a JSON number: {name}")


def _skip_line(readline: Callable[[int], bytes], size: int, stop: Callable[[], bool] | None,
               f: IO[bytes], limit: int) -> bool:
    """Read (and drop) the rest of an over-long line in pieces. False: the decompressed-size
    limit was reached first (a gzip bomb)."""
    while True:
        piece = readline(size)
        if not piece or piece.endswith(b"\n"):
            return True
        if (limit and f.tell() > limit) or (stop is not None and stop()):
            return False


def _bomb(on_malformed: Callable[[int, str], None] | None, lineno: int, limit: int) -> None:
    if on_malformed is not None:
        on_malformed(lineno, f"decompressed data exceeds {limit} bytes ({MAX_GZIP_RATIO}x the "
                     "file): not read further (a gzip bomb?)")


_FIELD_TYPES = (("src", str, False), ("type", str, False), ("ts", int, False),
                ("tid", int, True), ("pid", int, True), ("args", dict, True),
                ("res", int, True))
_FIELD_RANGES = {"ts": (0, _I64), "tid": (0, _ID_MAX), "pid": (0, _ID_MAX), "res": (-_I64, _I64)}


def _kind(v: Any) -> str:
    return "null" if v is None else {bool: "a boolean", int: "an integer", float: "a number",
                                     str: "a string", list: "an array",
                                     dict: "an object"}.get(type(v), type(v).__name__)


def _field_problem(d: dict[str, Any]) -> str:
    """Which field of an event record is wrongly typed or out of range (the slow path)."""
    for key, want, optional in _FIELD_TYPES:
        if key not in d or (optional and d[key] is None):
            continue
        v = d[key]
        if type(v) is not want:
            name = {str: "a string", int: "an integer", dict: "an object"}[want]
            return f"field '{key}' must be {name}, not {_kind(v)}"
        lo_hi = _FIELD_RANGES.get(key)
        if lo_hi is not None and isinstance(v, int) and not lo_hi[0] <= v < lo_hi[1]:
            return f"field '{key}' out of range [{lo_hi[0]}, {lo_hi[1]})"
    return "src/type must be strings, ts an integer, args a mapping"


#: characters of a value a malformed-line report quotes (the value may be megabytes)
MAX_QUOTED = 60


def _quoted(v: Any) -> str:
    """``repr`` of a value from the file for a report: escaped (repr) and short."""
    text = repr(v)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def _malformed_reason(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
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


def _paced(events: Iterable[_T], rate: float, batch: int = 256) -> Iterator[_T]:
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
    #: its records can be split among worker processes (``collector.workers``, see
    #: :mod:`falconet.workers`): :meth:`lines` gives them undecoded
    partitionable = True

    def __init__(self) -> None:
        self._closed = False
        self.reporter: MalformedReporter | None = None
        self._options: dict[str, Any] = {}

    def open(self, options: dict[str, Any]) -> Iterator[Event | None]:
        path = options.get("path")
        if not path:
            raise CaptureError("the replay source needs a capture file (options['path'])")
        self._closed = False
        read_header(path)   # fail now, with a clear message, not at the first next()
        self.reporter = MalformedReporter(path, options.get("metrics"))
        self._options = options
        return self._events(path, options)

    def blocks(self) -> Iterator[tuple[int, list[bytes]]]:
        """After :meth:`open`, instead of its events: the raw records in blocks (see
        :func:`read_capture_blocks`) for a partitioned replay (malformed framing reported and
        counted as :meth:`open` does; the workers restore the state records)."""
        path = self._options["path"]
        try:
            blocks = read_capture_blocks(path, on_malformed=self.reporter,
                                         stop=lambda: self._closed)
            rate = self._options.get("rate")
            yield from (_paced_blocks(blocks, float(rate)) if rate else blocks)
        finally:
            if self.reporter is not None:
                self.reporter.summary()

    def _events(self, path: str, options: dict[str, Any]) -> Iterator[Event | None]:
        events: Iterable[Event]     # the kernel filter below wraps the reader
        try:
            events = read_capture(path, on_state=options.get("restore_state"),
                                  on_malformed=self.reporter,
                                  stop=lambda: self._closed, progress=options.get("progress"))
            plan = options.get("kernel_filter")
            if plan is not None:
                # `replay --kernel-filter`: what the kernel would have dropped never reaches
                # the pipeline, counted as the collector counts it
                metrics = options.get("metrics")
                counts = getattr(metrics, "kernel_filtered", None)
                events = FdTracker(plan, counts).apply(events)
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


# ------------------------------------------------------------------ raw lines (partitioned replay)
#: bytes read at a time by :func:`read_capture_blocks`
BLOCK_BYTES = 1 << 20


def read_capture_blocks(path: str, *, on_malformed: Callable[[int, str], None] | None = None,
                        stop: Callable[[], bool] | None = None, max_line: int = MAX_LINE_BYTES,
                        block: int | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """The records of a capture, undecoded, a block at a time: ``(line number of the first,
    [line without its newline, ...])``. What the partitioned replay (:mod:`falconet.workers`)
    routes to its workers, which decode with :func:`decode_record`; blocks, not lines, because
    the router's whole budget is about a microsecond per record. The framing checks are
    :func:`read_capture`'s: header, the gzip-bomb bound, over-long lines reported and skipped
    (never held whole: a line still open past ``max_line`` is dropped as it is read), a
    truncated stream reported."""
    block = block or BLOCK_BYTES
    f, raw = _open_bytes(path)
    try:
        try:
            _parse_header(path, f.readline(MAX_HEADER_BYTES))
        except (OSError, EOFError) as e:
            raise CaptureError(f"{path}: cannot read capture: {e}") from None
        limit = max_decompressed(raw) if f is not raw else 0
        lineno = 2                   # the number of the next line to start
        tail = b""
        skipping = False             # inside an over-long line: drop up to its newline
        try:
            while True:
                if stop is not None and stop():
                    return
                data = f.read(block)
                if not data:
                    break
                if limit and f.tell() > limit:
                    _bomb(on_malformed, lineno, limit)
                    return
                if skipping:
                    nl = data.find(b"\n")
                    if nl < 0:
                        continue
                    data = data[nl + 1:]
                    skipping = False
                    if on_malformed is not None:
                        on_malformed(lineno, f"line longer than {max_line} bytes: skipped")
                    lineno += 1
                parts = (tail + data).split(b"\n") if tail else data.split(b"\n")
                tail = parts.pop()
                if len(tail) > max_line:
                    tail, skipping = b"", True
                if parts:
                    if max(map(len, parts)) > max_line:
                        for i, p in enumerate(parts):
                            if len(p) > max_line:
                                parts[i] = b""
                                if on_malformed is not None:
                                    on_malformed(lineno + i,
                                                 f"line longer than {max_line} bytes: skipped")
                    yield lineno, parts
                    lineno += len(parts)
            if skipping and on_malformed is not None:
                on_malformed(lineno, f"line longer than {max_line} bytes: skipped")
            elif tail:
                yield lineno, [tail]
        except (OSError, EOFError) as e:
            if on_malformed is not None:
                on_malformed(lineno, f"truncated capture: {e}")
    finally:
        f.close()
        raw.close()


def _paced_blocks(blocks: Iterator[tuple[int, list[bytes]]],
                  rate: float) -> Iterator[tuple[int, list[bytes]]]:
    """:func:`_paced` for blocks: at most ``rate`` records per second, checked per block."""
    t0 = time.monotonic()
    n = 0
    for b in blocks:
        yield b
        n += len(b[1])
        ahead = n / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


class StateRecord:
    """A decoded ``{"k": "state"}`` line (:func:`decode_record`)."""

    __slots__ = ("plugin", "data")

    def __init__(self, plugin: str, data: Any) -> None:
        self.plugin, self.data = plugin, data


_SCAN = json.JSONDecoder(parse_constant=_not_json).scan_once  # type: ignore[attr-defined]


def decode_record(line: bytes) -> Event | StateRecord | None:
    """One capture line, checked exactly as :func:`read_capture` checks it (kept inline there:
    it is the single-worker hot loop). ``None`` for a blank line; raises ``ValueError`` with the
    reason (:func:`malformed_reason` words it) for a malformed one."""
    try:
        text = line.decode("utf-8", "surrogateescape")
        try:
            d, end = _SCAN(text, 0)
        except StopIteration:
            raise ValueError("invalid JSON at column 1: expected an object") from None
        if end < len(text) - 1 and text[end:].strip():
            raise ValueError(f"extra data after the record at column {end + 1}")
        k = d["k"]
        if k == "evt":
            src, typ, ts = d["src"], d["type"], d["ts"]
            tid, pid, res = d.get("tid", 0), d.get("pid", 0), d.get("res")
            args = d.get("args")
            if args is None:
                args = {}
            if not (type(ts) is int and type(tid) is int and type(pid) is int
                    and type(src) is str and type(typ) is str
                    and type(args) is dict and 0 <= ts < _I64
                    and 0 <= tid < _ID_MAX and 0 <= pid < _ID_MAX
                    and (res is None or (type(res) is int and -_I64 <= res < _I64))):
                raise TypeError(_field_problem(d))
            return Event(src, typ, ts, tid, pid, args, res, d.get("raw"))
        if k == "state":
            plugin = d["plugin"]
            if type(plugin) is not str:
                raise TypeError(f"state record: 'plugin' must be a string, not {_kind(plugin)}")
            return StateRecord(plugin, d.get("data"))
        raise ValueError(f"unknown record kind {_quoted(k)}")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        if not line.strip():
            return None
        raise ValueError(_malformed_reason(e)) from None
