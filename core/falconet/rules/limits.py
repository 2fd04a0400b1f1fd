"""Limits on what a rules file can make the loader do: time and memory stay bounded whatever the
file holds, and every limit is a load error with ``file:line:col`` (never a traceback).

Rules files are copied from the internet and read by an engine running as root, so each way a
small file can become big work has a cap, checked where the work would happen:

=====================  =================================================  =====================
what                   limit                                              where
=====================  =================================================  =====================
file size              ``rules_max_file_size`` (falconet.yaml), 8 MiB     :func:`read_rules_file`
YAML nesting           :data:`MAX_YAML_DEPTH` levels                      ``yamlnodes``
YAML nodes per file    :data:`MAX_YAML_NODES`                             ``yamlnodes``
text aliases add       :data:`MAX_YAML_ALIAS_CHARS` per file              ``yamlnodes``
list items             :data:`MAX_LIST_ITEMS` after expanding lists       :func:`check_list_size`
condition text         :data:`MAX_CONDITION_CHARS` after list substitution  ``substitute_lists``
condition nesting      :data:`MAX_CONDITION_DEPTH` = libsinsp's parser    ``parser.MAX_DEPTH``
                       depth as Falco sets it (1000)
expanded nesting       :data:`MAX_EXPANDED_DEPTH` and/or/not levels       :func:`check_condition`
expanded condition     :data:`MAX_CONDITION_NODES` after macro expansion  :func:`check_condition`
all conditions         :data:`MAX_LOADED_CONDITION_NODES` in one load      :class:`NodeBudget`
all condition text     :data:`MAX_LOADED_CONDITION_CHARS` in one load      :class:`NodeBudget`
=====================  =================================================  =====================

The figures are far above real rules (Falco's stable ruleset: 1.5k YAML nodes, lists of at most
~100 items, conditions of at most 124 expanded nodes and depth 6) and low enough that a
rejected file costs a second, not minutes or gigabytes.
"""

from __future__ import annotations

from typing import Any

from falconet.rules.errors import LOAD_ERR_COMPILE_CONDITION, LOAD_ERR_VALIDATE, RuleLoadError
from falconet.rules.parser import (
    MAX_DEPTH,
    And,
    Binary,
    MultiTransform,
    Not,
    Or,
    Transform,
    TransformList,
    Unary,
)

#: default of ``rules_max_file_size``: 8 MiB (Falco's stable rules are 64 KB)
DEFAULT_MAX_FILE_BYTES = 8 << 20
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 500_000
#: characters that aliases may add to a file's text (each use of an anchored value counts its
#: expanded length): Falco's rules use no aliases; few aliases of a long scalar would otherwise
#: be gigabytes for whatever joins them
MAX_YAML_ALIAS_CHARS = 4 << 20
MAX_LIST_ITEMS = 100_000
MAX_CONDITION_CHARS = 4 << 20
#: libsinsp's parser depth limit as Falco sets it (``p.set_max_depth(1000)`` in Falco's rule
#: loader), enforced by our parser (each parenthesis level costs 3, so ~333 levels)
MAX_CONDITION_DEPTH = MAX_DEPTH
#: and/or/not levels of a condition after macro expansion (Falco expands macros without a
#: limit): what the compiled checks evaluate within Python's default recursion limit; one
#: condition can only reach ~333 (the parser's limit), real rules stay under 30
MAX_EXPANDED_DEPTH = 400
#: 200x the largest condition of Falco's stable rules (124 nodes); compiling 25k nodes takes
#: ~1 s, 100k took 2.5 s
MAX_CONDITION_NODES = 25_000
#: expanded nodes of every rule condition of one load together: a 16k-node macro used by 100k
#: rules fits every other limit and would compile for hours; Falco's stable ruleset is ~800
#: nodes in all, 250k compile in ~4 s
MAX_LOADED_CONDITION_NODES = 250_000
#: characters of every rule condition of one load after list substitution: a 50k-item list is
#: one node but 450 KB to parse and a set of 50k strings per rule that uses it
MAX_LOADED_CONDITION_CHARS = 16 << 20


class FileTooLarge(Exception):
    """A rules file over ``rules_max_file_size`` (the message says so and names the key)."""


def read_rules_file(path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's bytes, reading at most ``max_bytes + 1``: ``/dev/zero`` or a 50 MB file is
    refused after that much, never slurped. Raises :class:`FileTooLarge` or ``OSError``."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(f"Could not read file: larger than {max_bytes} bytes "
                           "(rules_max_file_size in falconet.yaml)")
    return data


def check_list_size(name: str, n: int) -> None:
    """A list that expands (items naming earlier lists) to more than :data:`MAX_LIST_ITEMS`:
    39 lists that each double the previous one would need 2**39 items."""
    if n > MAX_LIST_ITEMS:
        raise RuleLoadError(f"List '{name}' has more than {MAX_LIST_ITEMS} items after "
                            "expanding the lists it names", code=LOAD_ERR_VALIDATE)


class ConditionTooLarge(RuleLoadError):
    """The condition text grew past :data:`MAX_CONDITION_CHARS` during list substitution."""

    def __init__(self) -> None:
        super().__init__(f"Condition is longer than {MAX_CONDITION_CHARS} characters after "
                         "substituting lists", code=LOAD_ERR_COMPILE_CONDITION)


def check_condition(ast: Any, what: str) -> int:
    """Refuse an expanded condition with more than :data:`MAX_CONDITION_NODES` nodes or deeper
    than :data:`MAX_EXPANDED_DEPTH` and/or/not levels. Macro expansion shares the AST of a macro
    between its uses (a DAG), so a chain of 39 macros that each use the previous one twice is
    small in memory but 2**39 nodes to compile: sizes are counted per shared node, once, so
    this check is linear in the DAG and runs before anything walks the tree."""
    sizes: dict[int, tuple[int, int]] = {}       # id(node) -> (nodes, depth)
    # iterative post-order: the depth being checked is exactly what would overflow recursion
    stack: list[tuple[Any, bool]] = [(ast, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, And | Or):
            kids = node.children
        elif isinstance(node, Not):
            kids = [node.child]
        else:
            sizes[key] = (1, _operand_depth(node))
            if sizes[key][1] > MAX_EXPANDED_DEPTH:
                raise RuleLoadError(f"{what} nests transformers deeper than "
                                    f"{MAX_EXPANDED_DEPTH} levels", code=LOAD_ERR_COMPILE_CONDITION)
            continue
        if not done:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
            continue
        n, d = 1, 0
        for k in kids:
            kn, kd = sizes[id(k)]
            n += kn
            d = max(d, kd)
        d += 1
        if d > MAX_EXPANDED_DEPTH:
            raise RuleLoadError(f"{what} is nested deeper than {MAX_EXPANDED_DEPTH} levels after "
                                "expanding macros", code=LOAD_ERR_COMPILE_CONDITION)
        if n > MAX_CONDITION_NODES:
            raise RuleLoadError(f"{what} has more than {MAX_CONDITION_NODES} nodes after "
                                "expanding macros (a macro used many times over?)",
                                code=LOAD_ERR_COMPILE_CONDITION)
        sizes[key] = (n, d)
    return sizes[id(ast)][0]


def _operand_depth(node: Any) -> int:
    """How deeply a check's operands nest transformers (``tolower(tolower(...))``): compiled
    and evaluated recursively like and/or/not, so it counts against the same limit."""
    if not isinstance(node, Binary | Unary):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(node.left, 0)]
    if isinstance(node, Binary):
        stack.append((node.right, 0))
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(x, Transform):
            stack.append((x.child, d + 1))
        elif isinstance(x, MultiTransform):
            stack.extend((a, d + 1) for a in x.args)
        elif isinstance(x, TransformList):
            stack.extend((a, d + 1) for a in x.items)
    return deepest


class NodeBudget:
    """The expanded condition nodes (:data:`MAX_LOADED_CONDITION_NODES`) and the condition text
    (:data:`MAX_LOADED_CONDITION_CHARS`) one load may compile: each rule spends its text before
    it is parsed and its :func:`check_condition` count before it is compiled."""

    def __init__(self, limit: int = MAX_LOADED_CONDITION_NODES,
                 char_limit: int = MAX_LOADED_CONDITION_CHARS) -> None:
        self.limit, self.spent = limit, 0
        self.char_limit, self.chars = char_limit, 0

    def spend_text(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.char_limit:
            raise RuleLoadError(f"Condition not compiled: the conditions of this load are longer "
                                f"than {self.char_limit} characters in total after substituting "
                                "lists (one large list used by many rules?)",
                                code=LOAD_ERR_COMPILE_CONDITION)

    def spend(self, nodes: int) -> None:
        self.spent += nodes
        if self.spent > self.limit:
            raise RuleLoadError(f"Condition not compiled: the conditions of this load expand to "
                                f"more than {self.limit} nodes in total (one large macro used by "
                                "many rules?)", code=LOAD_ERR_COMPILE_CONDITION)
