"""Falco 0.44 multivalue transformers: ``join``, ``concat`` and ``getopt`` (evaluation only).

Mirrors libsinsp ``sinsp_filtercheck_multivalue_transformer.cpp``; the compiler
(:mod:`falconet.rules.compiler`) checks argument counts and types at load time with libsinsp's
messages and binds these functions to the arguments' getters.

Each argument getter returns ``None`` when its value is missing; as in libsinsp (``if(!arg->
extract(...)) return false``) a missing argument makes the whole transformer's value missing, so
every check on it is false.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Getter = Callable[[Any], Any]


def as_text(v: Any) -> str:
    """A field value as the string libsinsp would hand to a string transformer."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "surrogateescape")
    return str(v)          # numbers, IP addresses


def join(sep: str, values: Sequence[Any]) -> str:
    """``join(sep, (a, b))``: the list's values with ``sep`` between them (``""`` for ``()``)."""
    return sep.join(as_text(v) for v in values)


def concat(values: Sequence[Any]) -> str:
    """``concat(a, b, ...)``: the values one after the other."""
    return "".join(as_text(v) for v in values)


class OptString:
    """A getopt(3) optstring decoded once: valid option characters, those taking a value."""

    __slots__ = ("valid", "with_args")

    def __init__(self, optstring: str) -> None:
        valid: set[str] = set()
        with_args: set[str] = set()
        # a leading ':' only changes getopt(3)'s missing-argument error; no effect here
        i = 1 if optstring.startswith(":") else 0
        n = len(optstring)
        while i < n:
            c = optstring[i]
            if c != ":":
                valid.add(c)
                if i + 1 < n and optstring[i + 1] == ":":
                    with_args.add(c)
                    i += 1
            i += 1
        self.valid = frozenset(valid)
        self.with_args = frozenset(with_args)


def getopt(argv: Sequence[Any], opts: OptString, selector: str | None) -> Any:
    """``getopt(args, optstring)`` as libsinsp scans ``args``:

    - stop at ``--`` and at the first non-option (``x``, ``-``, ``""``); skip long options
      (``--exec``); expand clusters (``-nt``); a value is the rest of the token (``-tval``) or
      the next argument (``-t val``);
    - without selector: the list of option characters, each followed by its value, ``?`` for an
      unknown option, ``""`` for a value-taking option at the end of ``args`` (no value);
    - with selector ``[t]``: the value of the **last** ``-t`` (the option character itself if it
      takes no value, ``""`` if its value is missing), or ``None`` (missing) if there is no ``-t``.
    """
    results: list[str] = []
    selected: str | None = None
    valid, with_args = opts.valid, opts.with_args
    i, n = 0, len(argv)
    while i < n:
        arg = as_text(argv[i])
        if arg == "--":
            break
        if len(arg) > 2 and arg[0] == "-" and arg[1] == "-":
            i += 1
            continue
        if not arg or arg[0] != "-" or len(arg) == 1:
            break
        j = 1
        while j < len(arg):
            opt = arg[j]
            if opt == ":" or opt not in valid:
                if selector is None:
                    results.append("?")
                j += 1
                continue
            match = selector is None or opt == selector
            if opt not in with_args:
                if match:
                    if selector is None:
                        results.append(opt)
                    else:
                        selected = opt
                j += 1
                continue
            if j + 1 < len(arg):
                value: str | None = arg[j + 1:]
            elif i + 1 < n:
                i += 1
                value = as_text(argv[i])
            else:
                value = None
            if match:
                if selector is not None:
                    selected = "" if value is None else value
                elif value is None:
                    results.append("")
                else:
                    results.append(opt)
                    results.append(value)
            break
        i += 1
    if selector is not None:
        return selected
    return tuple(results)
