"""Stage 1 of loading rules (Falco's ``rule_loader_reader``): a file's bytes → YAML documents →
items, each a mapping that knows the ``file:line:col`` of itself and of every value.

The reader knows the shape of a rules file (a sequence of mappings) and nothing of what an item
means: it yields the items in order and the collector (:mod:`falconet.rules.collector`) makes
lists, macros and rules of them. Problems of the file itself (unreadable, not UTF-8, invalid YAML,
not a sequence of mappings) go to the load's messages, each with its position.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import yaml

from falconet.rules import errors as E
from falconet.rules import limits
from falconet.rules.errors import Location
from falconet.rules.yamlnodes import YMap, YSeq, load_documents


class MessageSink(Protocol):
    """Where the reader reports: the load's messages and the text of every file it read (later
    stages point into it, e.g. the column of a syntax error inside a condition)."""

    source_lines: dict[str, list[str]]

    def error(self, message: str, loc: Location | None, code: str = ...,
              item: tuple[str, str] | None = None) -> None: ...


def _yaml_error_location(e: yaml.YAMLError, text: str, name: str) -> tuple[Location, str]:
    """Where a YAML error is and what it is, in one line. The problem mark is where the parser
    gave up (often the end of the file for an unclosed quote or bracket), so the context
    ("while scanning a quoted scalar") and where that started are added; a reader error (a
    forbidden character) only has a character offset."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None)
    if isinstance(e, yaml.reader.ReaderError):
        before = text[:e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        return Location(name, line, col), f"{e.reason} (character #x{code:04x})"
    if problem is None:
        problem = " ".join(str(e).split())
    ctx, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and cmark is not None and cmark is not mark:
        problem += f" ({ctx} started at line {cmark.line + 1} column {cmark.column + 1})"
    elif ctx:
        problem += f" ({ctx})"
    loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
    return loc, problem


def read_file(path: str | os.PathLike[str], log: MessageSink,
              max_file_bytes: int = limits.DEFAULT_MAX_FILE_BYTES) -> Iterator[YMap]:
    """The items of the rules file ``path`` (nothing, with an error in ``log``, when the file
    cannot be read, is larger than ``max_file_bytes`` or is not UTF-8)."""
    p = str(path)
    try:
        data = limits.read_rules_file(p, max_file_bytes)
    except limits.FileTooLarge as e:
        log.error(str(e), Location(p, 1, 1), E.LOAD_ERR_FILE_READ, ("file", p))
        return
    except OSError as e:
        log.error(f"Could not read file: {e.strerror or e}",
                  Location(p, 0, 0), E.LOAD_ERR_FILE_READ, ("file", p))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:      # point at the bad byte, not at line 0
        before = data[:e.start]
        line, col = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
        log.error(f"Could not read file: not UTF-8 text (byte 0x{data[e.start]:02x}: "
                  f"{e.reason})", Location(p, line, col), E.LOAD_ERR_FILE_READ, ("file", p))
        return
    yield from read_text(text, p, log)


def read_text(text: str, name: str, log: MessageSink) -> Iterator[YMap]:
    """The items of the rules text ``text`` (called ``name`` in messages), in order. A
    document that is not a sequence, or an element that is not a mapping, ends the file there
    (with an error), as in Falco."""
    log.source_lines[name] = text.splitlines()
    try:
        docs = load_documents(text, name)
    except yaml.YAMLError as e:
        loc, problem = _yaml_error_location(e, text, name)
        log.error(f"Invalid YAML: {problem}", loc, E.LOAD_ERR_YAML_PARSE, ("file", name))
        return
    for doc, loc in docs:
        if doc is None:
            continue
        if not isinstance(doc, YSeq):
            log.error("Rules content is not yaml array of objects", loc,
                      E.LOAD_ERR_YAML_VALIDATE, ("file", name))
            return
        for i, item in enumerate(doc):
            if item is None:
                continue
            if not isinstance(item, YMap):
                log.error("Unexpected element type. Each element should be a yaml "
                          "associative array.", doc.locs[i], E.LOAD_ERR_YAML_VALIDATE,
                          ("file", name))
                return
            yield item
