"""Safe YAML reading that keeps positions: every mapping and sequence remembers where it and each
of its values start, so load messages can say ``file:line:col``.

Uses PyYAML's safe resolver and composer and ``SafeConstructor`` for scalars: never unsafe
loading. Events come from libyaml (``CParser``, ~15x faster than the pure-Python scanner) when
PyYAML has it; a file libyaml rejects is parsed again by the pure-Python parser so the message
and position are PyYAML's. The composer is bounded (:data:`~falconet.rules.limits.MAX_YAML_DEPTH`
levels, :data:`~falconet.rules.limits.MAX_YAML_NODES` nodes): deep or huge documents are a
``file:line:col`` error, not a ``RecursionError`` or minutes of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from falconet.rules import limits
from falconet.rules.errors import Location

try:
    from yaml._yaml import CParser
except ImportError:          # PyYAML built without libyaml: the pure-Python parser only
    CParser = None  # type: ignore[assignment,misc]


class YMap(dict):
    """A mapping with ``loc`` (its start) and ``locs`` (start of each key's value).
    ``duplicates``: keys written more than once (the last value wins, as in safe_load), with
    where each repeat is, so the loader can warn instead of silently using one of them."""

    loc: Location
    locs: dict[Any, Location]
    key_locs: dict[Any, Location]
    duplicates: list[tuple[Any, Location]]


class YSeq(list):
    """A sequence with ``loc`` and ``locs`` (start of each element)."""

    loc: Location
    locs: list[Location]


class YStr(str):
    """A string scalar that remembers where it starts and how it was written."""

    loc: Location
    style: str | None
    node: yaml.ScalarNode


class _Constructor(SafeConstructor):
    """SafeConstructor that reads a plain ``=`` (YAML's obscure "value" tag) as the string
    ``"="``, as yaml-cpp does: exception ``comps: [=, =]`` must work."""


# typeshed types a constructor's first argument as a Loader; this one is used on its own
_Constructor.add_constructor("tag:yaml.org,2002:value",
                             SafeConstructor.construct_yaml_str)  # type: ignore[type-var]


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth and a node-count limit (its recursion would otherwise
    end in ``RecursionError`` at ~10k levels, and a huge document takes minutes)."""

    _depth = 0
    _nodes = 0

    if TYPE_CHECKING:       # from the parser it is mixed with (_PyLoader, _CLoader)
        def peek_event(self) -> Any: ...

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._nodes += 1
        if self._depth > limits.MAX_YAML_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {limits.MAX_YAML_DEPTH} levels",
                                self.peek_event().start_mark)
        if self._nodes > limits.MAX_YAML_NODES:
            raise ComposerError(None, None, f"more than {limits.MAX_YAML_NODES} YAML nodes in "
                                "one file", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_BoundedComposer, yaml.SafeLoader):
    """The pure-Python reference parser (its error messages are the ones users see)."""


if CParser is not None:
    class _CLoader(_BoundedComposer, Resolver, CParser):
        """libyaml's events, PyYAML's (bounded) composer and resolver."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.ctor = _Constructor()
        self.memo: dict[int, Any] = {}
        # id(node) -> its size with aliases expanded: what a consumer that walks the value
        # (str(), iteration) would do; 40 aliases of aliases are 2**40 nodes
        self.sizes: dict[int, int] = {}
        # id(node) -> characters of its scalars with aliases expanded, and what the aliases of
        # this file added so far: 2000 aliases of one 2 MB scalar are few nodes but 4 GB of text
        # for whatever joins them (an exception's values, tags in every alert)
        self.chars: dict[int, int] = {}
        self.alias_chars = 0

    def _sized(self, node: yaml.Node, kids: Any) -> None:
        kids = list(kids)
        n = 1 + sum(self.sizes.get(id(k), 1) for k in kids)
        if n > limits.MAX_YAML_NODES:
            raise ComposerError(None, None, f"aliases expand to more than {limits.MAX_YAML_NODES}"
                                " YAML nodes", node.start_mark)
        self.sizes[id(node)] = n
        self.chars[id(node)] = sum(self.chars.get(id(k), 0) for k in kids)

    def _aliased(self, node: yaml.Node) -> None:
        """Count what one more use of ``node`` (an alias) adds to the file's text."""
        self.alias_chars += self.chars.get(id(node), 0)
        if self.alias_chars > limits.MAX_YAML_ALIAS_CHARS:
            raise ComposerError(None, None, "aliases expand to more than "
                                f"{limits.MAX_YAML_ALIAS_CHARS} characters", node.start_mark)

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise ConstructorError(None, None, "could not determine a constructor for the tag "
                                   f"{node.tag!r}", node.start_mark)
        done = self.memo.get(id(node))
        if done is not None:        # an alias: share the value (no alias-bomb blow-up, no cycles)
            self._aliased(node)
            return done
        if isinstance(node, yaml.MappingNode):
            self.ctor.flatten_mapping(node)        # '<<' merge keys, as safe_load does
            m = YMap()
            self.memo[id(node)] = m
            m.loc = _loc(self.file, node.start_mark)
            m.locs = {}
            m.key_locs = {}
            m.duplicates = []
            for knode, vnode in node.value:
                key = self.ctor.construct_object(knode, deep=True)
                self.chars[id(knode)] = len(key) if isinstance(key, str) else 0
                try:
                    hash(key)
                except TypeError:
                    key = str(key)
                if key in m:
                    m.duplicates.append((key, _loc(self.file, knode.start_mark)))
                m[key] = self.build(vnode)
                m.locs[key] = _loc(self.file, vnode.start_mark)
                m.key_locs[key] = _loc(self.file, knode.start_mark)
            self._sized(node, (n for pair in node.value for n in pair))
            return m
        if isinstance(node, yaml.SequenceNode):
            s = YSeq()
            self.memo[id(node)] = s
            s.extend(self.build(v) for v in node.value)
            s.loc = _loc(self.file, node.start_mark)
            s.locs = [_loc(self.file, v.start_mark) for v in node.value]
            self._sized(node, node.value)
            return s
        value = self.ctor.construct_object(node, deep=True)
        if isinstance(value, str) and isinstance(node, yaml.ScalarNode):
            ys = YStr(value)
            ys.loc = _loc(self.file, node.start_mark)
            ys.style = node.style or None      # libyaml says '' for plain, PyYAML None
            ys.node = node
            self.memo[id(node)] = ys        # an alias of a scalar shares it too (no copy)
            self.chars[id(node)] = len(value)
            return ys
        return value


#: files up to this size that libyaml rejects are parsed again by PyYAML for its message
_REPARSE_MAX_CHARS = 256 << 10


def load_documents(text: str, file: str) -> list[tuple[Any, Location]]:
    """Every YAML document of ``text`` as position-aware values. Raises ``yaml.YAMLError``."""
    if CParser is not None:
        try:
            return _load_documents(_CLoader(text), file)
        except ComposerError as e:
            if e.context is None:          # our own limits: the same with either parser
                raise
        except yaml.YAMLError:
            # PyYAML's wording and position, as before; not for a big file (the pure-Python
            # parser needs ~10 s per MB: a big broken file gets libyaml's message instead)
            if len(text) > _REPARSE_MAX_CHARS:
                raise
    return _load_documents(_PyLoader(text), file)


def _load_documents(loader: Any, file: str) -> list[tuple[Any, Location]]:
    builder = _Builder(file)
    docs: list[tuple[Any, Location]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            docs.append((builder.build(node), _loc(file, node.start_mark)))
    finally:
        loader.dispose()
    return docs


def offset_location(value: Any, pos: int, source_lines: list[str]) -> Location | None:
    """Map an offset inside a scalar's value back to the file (exact for plain single-line,
    quoted single-line and block scalars without blank lines; ``None`` when unsure)."""
    if not isinstance(value, YStr):
        return None
    node = value.node
    start, end = node.start_mark, node.end_mark
    file = value.loc.file
    if value.style in (None, "'", '"') and start.line == end.line:
        return Location(file, start.line + 1, start.column + 1 + pos + (1 if value.style else 0))
    if value.style in ("|", ">"):
        # content lines follow the indicator line; folding keeps one char per line break
        line = start.line + 1
        remaining = pos
        while line < len(source_lines) and line <= end.line:
            raw = source_lines[line]
            stripped = raw.lstrip(" ")
            indent = len(raw) - len(stripped)
            length = len(stripped.rstrip("\n"))
            if remaining <= length:
                return Location(file, line + 1, indent + remaining + 1)
            remaining -= length + 1
            line += 1
    return None
