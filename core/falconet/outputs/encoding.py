"""The one escaping, encoding and length policy of every output (docs/outputs.md, "Encoding and
escaping").

Field values come from what watched processes write (argv, paths, comm, environment), read
from ``/proc`` or a capture as ``str`` with *surrogate escapes*: a byte that is not UTF-8 is the
lone surrogate ``U+DC80 + byte`` (the eBPF decoder writes such bytes as the text ``\\xNN``
already, which this policy leaves as it is: both look the same in every output). Such a string
cannot be encoded as UTF-8, and control characters in it can forge lines or reorder text on an
operator's terminal. So before a value becomes output it goes through :func:`bound`:

- a byte that is not UTF-8 (``U+DC80``-``U+DCFF``) is shown as ``\\xNN``; any other lone surrogate
  as ``\\udNNN``;
- C0 controls as JSON escapes them (``\\n``, ``\\t``, ``\\u001b``), DEL and the C1 controls
  (``U+0080``-``U+009F``) as ``\\u0085``; the line and paragraph separators ``U+2028``/``U+2029``
  and every bidi control (``U+061C``, ``U+200E``, ``U+200F``, ``U+202A``-``U+202E``,
  ``U+2066``-``U+2069``) as ``\\u202e``;
- a value longer than ``output_max_field_len`` characters (after escaping) is cut, never inside
  an escape, and ends with ``…[truncated N chars]`` (N: characters of the original value not
  shown); the result is never longer than the limit.

The result is printable, valid UTF-8, and :func:`bound` of it is itself (so applying the policy
twice, e.g. in the rule formatter and again when an alert is serialised, changes nothing).
Backslashes are not escaped: a value that already reads ``\\xff`` looks like an escaped byte
(documented; the raw value stays available to conditions, which never see escaped text).
"""

from __future__ import annotations

from typing import Any

#: default of ``output_max_field_len`` (characters per field value in any output)
DEFAULT_MAX_FIELD_LEN = 4096
#: the smallest limit accepted: room for a marker and some of the value
MIN_MAX_FIELD_LEN = 64

_C0_NAMED = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))


def _escape_of(cp: int) -> str:
    if 0xDC80 <= cp <= 0xDCFF:
        return f"\\x{cp - 0xDC00:02x}"
    return _C0_NAMED.get(cp) or f"\\u{cp:04x}"


#: every code point the policy escapes, mapped to its escape
ESCAPES: dict[int, str] = {cp: _escape_of(cp) for cp in (
    *range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *_BIDI, *range(0xD800, 0xE000))}

#: the same code points, each mapped to its escape's shape: ``\x01`` where the escape starts, one
#: ``\x02`` per further character. Translating with it gives a string aligned with the escaped
#: one, in which C-speed ``rfind``/``count`` say where escapes start and how many raw characters
#: a prefix holds (unsafe characters, ``\x01``/``\x02`` included, never survive translation)
_SHAPES: dict[int, str] = {cp: "\x01" + "\x02" * (len(e) - 1) for cp, e in ESCAPES.items()}


def escape_text(text: str) -> str:
    """``text`` with every unsafe character escaped (no length limit): for whole lines that are
    made of already bounded values (the rendered ``output``)."""
    if text.isprintable():          # every unsafe character is non-printable: the common case
        return text
    return text.translate(ESCAPES)


def truncation_marker(dropped: int) -> str:
    return f"…[truncated {dropped} chars]"


def bound(text: str, limit: int) -> str:
    """``text`` escaped and at most ``limit`` characters long (with the truncation marker when
    cut). ``limit`` <= 0: no length limit."""
    if 0 < limit < len(text):
        return _cut(text, limit)    # before any whole-string scan: the value may be megabytes
    if text.isprintable():
        return text
    esc = text.translate(ESCAPES)
    if limit <= 0 or len(esc) <= limit:
        return esc
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    # escaping only lengthens: no more than the first ``limit`` characters can be shown
    budget = limit - len(truncation_marker(len(text)))
    kept, shown = _fit(text[:limit], budget)
    return shown + truncation_marker(len(text) - kept)


def _fit(head: str, budget: int) -> tuple[int, str]:
    """The longest prefix of ``head`` whose escaped form fits ``budget`` characters, never
    cutting an escape: (characters of ``head`` kept, escaped prefix). Two ``translate`` calls
    and no loop per character: a value made only of unsafe characters is the attacker's
    cheapest way to make this slow."""
    if head.isprintable():
        return min(budget, len(head)), head[:budget]
    esc = head.translate(ESCAPES)
    if len(esc) <= budget:
        return len(head), esc
    shapes = head.translate(_SHAPES)
    cut = budget
    if shapes[cut] == "\x02":          # the first character left out is inside an escape
        cut = shapes.rfind("\x01", 0, cut)
    return cut - shapes.count("\x02", 0, cut), esc[:cut]


class OutputPolicy:
    """The process-wide output settings (``output_max_field_len``), set once from the
    configuration at engine start (:func:`configure`); read where values become output."""

    __slots__ = ("max_field_len",)

    def __init__(self, max_field_len: int = DEFAULT_MAX_FIELD_LEN) -> None:
        self.max_field_len = max_field_len


POLICY = OutputPolicy()


def configure(max_field_len: int) -> None:
    """Apply the configuration (called by the engine before rules load)."""
    POLICY.max_field_len = max_field_len


def field_text(value: str) -> str:
    """A field value as output text, under the configured limit."""
    return bound(value, POLICY.max_field_len)


def decode_bytes(raw: bytes | bytearray) -> str:
    """Bytes as text with surrogate escapes (nothing lost: each non-UTF-8 byte stays one
    character, which :func:`bound` shows as ``\\xNN``)."""
    return bytes(raw).decode("utf-8", "surrogateescape")


def safe_value(v: Any) -> Any:
    """A JSON-ready value: strings bounded, bytes decoded then bounded, lists and dicts walked
    (keys too), numbers and booleans kept; anything else as its bounded ``str()``."""
    if v is None or v is True or v is False:
        return v
    t = type(v)
    if t is str:
        return bound(v, POLICY.max_field_len)
    if t is int or t is float:
        return v
    if t is list or t is tuple:
        return [safe_value(x) for x in v]
    if t is dict:
        return {safe_key(k): safe_value(x) for k, x in v.items()}
    if isinstance(v, bytes | bytearray):
        return bound(decode_bytes(v), POLICY.max_field_len)
    if isinstance(v, set | frozenset):
        return [safe_value(x) for x in sorted(v, key=str)]
    if isinstance(v, bool | int | float):
        return v
    return bound(str(v), POLICY.max_field_len)


def safe_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    """:func:`safe_value` of every key and value of an alert's ``output_fields``, with the clean
    case (short printable strings, numbers: what the rule formatter already bounded) checked
    inline: this runs for every alert a JSON output serialises."""
    limit = POLICY.max_field_len
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if type(k) is not str or len(k) > limit or not k.isprintable():
            k = safe_key(k)
        t = type(v)
        if t is str:
            if len(v) > limit or not v.isprintable():
                v = bound(v, limit)
        elif not (v is None or t is int or t is float or t is bool):
            v = safe_value(v)
        out[k] = v
    return out


def safe_key(k: Any) -> str:
    return bound(k if type(k) is str else str(k), POLICY.max_field_len)


def utf8(text: str) -> bytes:
    """``text`` (already through the policy, or not) as valid UTF-8 bytes: never raises."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_text(text).encode("utf-8")
