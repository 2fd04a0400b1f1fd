"""Load messages (errors and warnings) with Falco's codes and wording, and the exceptions that
carry them inside the loader.

Every message has a location (file, line, column; 1-based) so users can jump to the culprit, and
names the item it concerns (``rule 'Terminal shell in container'``).
"""

from __future__ import annotations

from dataclasses import dataclass

from falconet.outputs.encoding import escape_text

# Error codes (Falco's falco_load_result.cpp).
LOAD_ERR_FILE_READ = "LOAD_ERR_FILE_READ"
LOAD_ERR_YAML_PARSE = "LOAD_ERR_YAML_PARSE"
LOAD_ERR_YAML_VALIDATE = "LOAD_ERR_YAML_VALIDATE"
LOAD_ERR_COMPILE_CONDITION = "LOAD_ERR_COMPILE_CONDITION"
LOAD_ERR_COMPILE_OUTPUT = "LOAD_ERR_COMPILE_OUTPUT"
LOAD_ERR_VALIDATE = "LOAD_ERR_VALIDATE"
# Warning codes.
LOAD_UNKNOWN_SOURCE = "LOAD_UNKNOWN_SOURCE"
LOAD_UNSAFE_NA_CHECK = "LOAD_UNSAFE_NA_CHECK"
LOAD_NO_EVTTYPE = "LOAD_NO_EVTTYPE"
LOAD_UNKNOWN_FILTER = "LOAD_UNKNOWN_FILTER"
LOAD_UNUSED_MACRO = "LOAD_UNUSED_MACRO"
LOAD_UNUSED_LIST = "LOAD_UNUSED_LIST"
LOAD_UNKNOWN_ITEM = "LOAD_UNKNOWN_ITEM"
LOAD_DEPRECATED_ITEM = "LOAD_DEPRECATED_ITEM"
LOAD_APPEND_NO_VALUES = "LOAD_APPEND_NO_VALUES"
LOAD_EXCEPTION_NAME_NOT_UNIQUE = "LOAD_EXCEPTION_NAME_NOT_UNIQUE"
LOAD_INVALID_MACRO_NAME = "LOAD_INVALID_MACRO_NAME"
LOAD_INVALID_LIST_NAME = "LOAD_INVALID_LIST_NAME"
LOAD_COMPILE_CONDITION = "LOAD_COMPILE_CONDITION"
LOAD_UNKNOWN_KEY = "LOAD_UNKNOWN_KEY"
LOAD_DUPLICATE_KEY = "LOAD_DUPLICATE_KEY"     # Falconet's own: a key written twice in a mapping


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is in a rules file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0


@dataclass(frozen=True, slots=True)
class LoadMessage:
    """One error or warning of a load. ``str()`` gives ``file:line:col: error: rule 'x': msg``."""

    code: str
    message: str
    file: str
    line: int
    col: int
    item_type: str = ""
    item_name: str = ""
    severity: str = "error"          # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        item = (f"{self.item_type} '{self.item_name}': " if self.item_name else
                f"{self.item_type}: ") if self.item_type else ""
        # names and text from the file: escaped as alerts are (no forged lines or terminal
        # escapes from a rules file copied from the internet)
        return escape_text(f"{where}: {self.severity}: {item}{self.message}")

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "file": self.file, "line": self.line,
                "col": self.col, "item_type": self.item_type, "item_name": self.item_name,
                "severity": self.severity}


class RuleLoadError(Exception):
    """An error found while loading; the loader turns it into a :class:`LoadMessage`.

    ``loc`` may be ``None`` when the raiser does not know it; the loader then uses the item's.
    """

    def __init__(self, message: str, loc: Location | None = None,
                 code: str = LOAD_ERR_VALIDATE) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.code = code


class FilterSyntaxError(RuleLoadError):
    """A condition that does not parse. ``pos`` is the 0-based offset in the condition text."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"filter error at {pos}: {message}", None, LOAD_ERR_COMPILE_CONDITION)
        self.pos = pos
        self.reason = message


class FilterCompileError(RuleLoadError):
    """A condition that parses but does not compile (unknown field, wrong operator for a type...).
    ``unknown_filter`` marks errors that ``skip-if-unknown-filter`` turns into warnings."""

    def __init__(self, message: str, unknown_filter: bool = False,
                 code: str = LOAD_ERR_COMPILE_CONDITION) -> None:
        super().__init__(message, None, code)
        self.unknown_filter = unknown_filter
