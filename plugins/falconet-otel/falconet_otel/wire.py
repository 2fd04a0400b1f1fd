"""OTLP protobuf encoding, written by hand for speed.

Why not the SDK's encoder: it builds a protobuf object per attribute and costs ~350 µs per alert
log record and ~500 µs per span event with our ~40 attributes (measured, bench/bench_otel.py), which
caps the output far below the 5,000 alerts/s goal. Here a record is a few byte concatenations, and
the encoding of repeated key/value pairs (rule names, tags, hosts, images) is cached.

Field numbers are those of opentelemetry-proto (``logs/v1/logs.proto``, ``trace/v1/trace.proto``,
``common/v1/common.proto``); the tests decode our bytes with the official generated classes.

Every string goes through the engine's output policy (:mod:`falconet.outputs.encoding`) before it
is encoded: protobuf strings must be valid UTF-8 (a collector rejects the whole batch otherwise),
so a byte that is not UTF-8 is sent as ``\\xNN``, control and bidi characters are escaped and
attribute values are bounded by ``output_max_field_len``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from falconet.outputs.encoding import escape_text, field_text, safe_key, utf8

_pack_q = struct.Struct("<Q").pack          # fixed64
_pack_d = struct.Struct("<d").pack          # double
_pack_i = struct.Struct("<I").pack          # fixed32

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


#: ``AnyValue.int_value`` is an int64
_I64_BOUND = 1 << 63


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1              # int64 two's complement, as protobuf encodes negatives
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _len_field(field: int, payload: bytes) -> bytes:
    n = len(payload)
    return _LEN_TAGS[field] + (bytes((n,)) if n < 0x80 else _varint(n)) + payload


_LEN_TAGS = [_tag(f, _LEN) for f in range(0, 17)]

# precomputed tags of the hot fields
_T_STR = _tag(1, _LEN)          # AnyValue.string_value / KeyValue.key / ArrayValue.values
_T_BOOL = _tag(2, _VARINT)
_T_INT = _tag(3, _VARINT)
_T_DBL = _tag(4, _I64)
_T_ARR = _tag(5, _LEN)
_T_KV_VALUE = _tag(2, _LEN)


def any_value(v: Any) -> bytes:
    """An encoded ``AnyValue`` (str, bool, int, float, bytes, or a list/tuple of those)."""
    if isinstance(v, str):
        b = utf8(field_text(v))
        return _T_STR + _varint(len(b)) + b
    if isinstance(v, bool):
        return _T_BOOL + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        if -_I64_BOUND <= v < _I64_BOUND:
            return _T_INT + _varint(v)
        # beyond int64 (a capture's args are not range-checked): a longer varint is corrupt
        # protobuf, and the collector would reject the whole batch
        return any_value(str(v))
    if isinstance(v, float):
        return _T_DBL + _pack_d(v)
    if isinstance(v, bytes | bytearray):
        return _len_field(7, bytes(v))
    if isinstance(v, list | tuple):
        inner = b"".join(_len_field(1, any_value(x)) for x in v)
        return _T_ARR + _varint(len(inner)) + inner
    return any_value(str(v))


def key_value(key: str, v: Any) -> bytes:
    """An encoded ``KeyValue`` message body."""
    k = utf8(safe_key(key))
    av = any_value(v)
    return _T_STR + _varint(len(k)) + k + _T_KV_VALUE + _varint(len(av)) + av


class AttributeEncoder:
    """Encodes attribute maps as repeated ``KeyValue`` fields, caching pairs that repeat.

    :meth:`parts` returns the length-prefixed ``KeyValue`` payloads; :func:`repeated` turns them into
    a repeated field of any number, so one encoding serves the log record (field 6), the span
    event (field 3) and the span (field 9). Not thread-safe: one per producer thread.
    """

    def __init__(self, cache_size: int = 65536) -> None:
        self._cache: dict[tuple, bytes] = {}
        self._cache_size = cache_size

    def parts(self, attrs: Mapping[str, Any]) -> list[bytes]:
        cache = self._cache
        out = []
        for k, v in attrs.items():
            t = type(v)
            # the type is part of the key (True == 1 == 1.0); big ints (times) are unique: no caching
            if t is str:
                ck: tuple | None = (k, v)
            elif t is int:
                ck = (k, t, v) if -0x100000000 < v < 0x100000000 else None
            elif t is bool or t is float:
                ck = (k, t, v)
            elif t is list:
                try:
                    ck = (k, t, tuple(v))
                    hash(ck)
                except TypeError:
                    ck = None
            else:
                ck = None
            enc = cache.get(ck) if ck is not None else None
            if enc is None:
                kv = key_value(k, v)
                enc = _varint(len(kv)) + kv
                if ck is not None:
                    if len(cache) >= self._cache_size:
                        cache.clear()   # simple and bounded; the hot pairs come back quickly
                    cache[ck] = enc
            out.append(enc)
        return out

    def encode(self, attrs: Mapping[str, Any], field: int) -> bytes:
        return repeated(field, self.parts(attrs))




def repeated(field: int, parts: list[bytes]) -> bytes:
    """A repeated message field from length-prefixed payloads (one C-level join)."""
    if not parts:
        return b""
    tag = _LEN_TAGS[field]
    return tag + tag.join(parts)


# ------------------------------------------------------------------------------------ logs
_LOG_TIME = _tag(1, _I64)
_LOG_SEV_NUM = _tag(2, _VARINT)
_LOG_OBSERVED = _tag(11, _I64)
_LOG_FLAGS = _tag(8, _I32)


def log_record(*, time_ns: int, observed_ns: int, severity_number: int, severity_text: str,
               body: str, attributes: bytes, event_name: str, trace_id: bytes = b"",
               span_id: bytes = b"") -> bytes:
    """An encoded ``LogRecord`` body; ``attributes``: :func:`repeated` field 6."""
    out = [_LOG_TIME, _pack_q(time_ns), _LOG_SEV_NUM, _varint(severity_number),
           _len_field(3, severity_text.encode()), _len_field(5, _text_value(body)), attributes]
    if trace_id:
        out += [_LOG_FLAGS, _pack_i(1), _len_field(9, trace_id), _len_field(10, span_id)]
    out += [_LOG_OBSERVED, _pack_q(observed_ns), _len_field(12, event_name.encode())]
    return b"".join(out)


def _text_value(text: str) -> bytes:
    """A whole line (the alert's output) as an ``AnyValue``: escaped, not cut (its field values
    are already bounded)."""
    b = utf8(escape_text(text))
    return _T_STR + _varint(len(b)) + b


def scope(name: str, version: str) -> bytes:
    return _len_field(1, name.encode()) + _len_field(2, version.encode())


def logs_request(resource_body: bytes, scope_body: bytes, records: Iterable[bytes]) -> bytes:
    """``ExportLogsServiceRequest`` with one resource and one scope."""
    scope_logs = _len_field(1, scope_body) + b"".join(_len_field(2, r) for r in records)
    resource_logs = _len_field(1, resource_body) + _len_field(2, scope_logs)
    return _len_field(1, resource_logs)


# ------------------------------------------------------------------------------------ traces
SPAN_KIND_INTERNAL = 1
STATUS_UNSET, STATUS_ERROR = 0, 2
_SPAN_START = _tag(7, _I64)
_SPAN_END = _tag(8, _I64)
_SPAN_KIND = _tag(6, _VARINT)
_SPAN_FLAGS = _tag(16, _I32)
_EVENT_TIME = _tag(1, _I64)


def span_event(*, time_ns: int, name: str, attributes: bytes) -> bytes:
    """``Span.Event`` body; ``attributes``: :func:`repeated` field 3."""
    return _EVENT_TIME + _pack_q(time_ns) + _len_field(2, name.encode()) + attributes


def span(*, trace_id: bytes, span_id: bytes, parent_span_id: bytes, name: str, start_ns: int,
         end_ns: int, attributes: bytes, events: Iterable[bytes] = (), status_code: int = STATUS_UNSET,
         status_message: str = "", kind: int = SPAN_KIND_INTERNAL) -> bytes:
    """An encoded ``Span`` body; ``attributes``: :func:`repeated` field 9."""
    out = [_len_field(1, trace_id), _len_field(2, span_id)]
    if parent_span_id:
        out.append(_len_field(4, parent_span_id))
    out += [_len_field(5, utf8(field_text(name))), _SPAN_KIND, _varint(kind),
            _SPAN_START, _pack_q(start_ns), _SPAN_END, _pack_q(end_ns), attributes]
    out += [_len_field(11, e) for e in events]
    if status_code:
        st = _len_field(2, utf8(field_text(status_message))) + _tag(3, _VARINT) + \
            _varint(status_code)
        out.append(_len_field(15, st))
    out += [_SPAN_FLAGS, _pack_i(0x100 | 1)]     # sampled, parent is local (not remote)
    return b"".join(out)


def traces_request(resource_body: bytes, scope_body: bytes, spans: Iterable[bytes]) -> bytes:
    """``ExportTraceServiceRequest`` with one resource and one scope."""
    scope_spans = _len_field(1, scope_body) + b"".join(_len_field(2, s) for s in spans)
    resource_spans = _len_field(1, resource_body) + _len_field(2, scope_spans)
    return _len_field(1, resource_spans)
