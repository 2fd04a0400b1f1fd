"""The condition grammar: precedence, blanks, values, errors (libsinsp parser cases)."""

from __future__ import annotations

import pytest
from falconet.rules.errors import FilterSyntaxError
from falconet.rules.parser import And, Binary, ListValue, Not, Or, as_string, parse_condition


@pytest.mark.parametrize("text, canonical", [
    ("a or b and c", "(a or (b and c))"),
    ("a and b or c", "((a and b) or c)"),
    ("not not a", "a"),
    ("not not not a", "not a"),
    ("a and(b)", "(a and b)"),
    ("a or(b)", "(a or b)"),
    ("not(a)", "not a"),
    ("notb", "notb"),
    ("a.b in (x, y)", "a.b in (x, y)"),
    ("a.b in(x)", "a.b in (x)"),
    ("a.b=1", "a.b = 1"),
    ("a.b = not", "a.b = not"),
    ("fd.name=*.log", "fd.name = *.log"),
    ("a.b in ()", "a.b in ()"),
    ("proc.aname[2]=x", "proc.aname[2] = x"),
    ('evt.arg["key with space"] exists', "evt.arg[\"key with space\"] exists"),
    ("a.b exists", "a.b exists"),
    ("tolower(a.b) = val(c.d)", "tolower(a.b) = val(c.d)"),
    ("toupper(b64(a.b)) = X", "toupper(b64(a.b)) = X"),
    ("a.b startswith oneof (x, y)", "a.b startswith oneof (x, y)"),
    ("a\n  and\tc.d = 1", "(a and c.d = 1)"),
    ("a.b <= 0x1F", "a.b <= 0x1F"),
    ("a.b > -1.5e+3", "a.b > -1.5e+3"),
])
def test_canonical_forms(text: str, canonical: str) -> None:
    assert as_string(parse_condition(text)) == canonical


def test_and_or_chains_are_nary() -> None:
    ast = parse_condition("a and b and c or d or e")
    assert isinstance(ast, Or) and len(ast.children) == 3
    assert isinstance(ast.children[0], And) and len(ast.children[0].children) == 3


def test_bare_value_special_characters() -> None:
    ast = parse_condition("x.y = 0a!@#456:/\\.;!$%^&*[]{}|")
    assert isinstance(ast, Binary) and ast.right.text == "0a!@#456:/\\.;!$%^&*[]{}|"


@pytest.mark.parametrize("text, value", [
    (r'x.y = "a\"b"', 'a"b'),
    (r"x.y = 'a\'b'", "a'b"),
    (r'x.y = "t\tn\nx"', "t\tn\nx"),
    (r'x.y = "a\\b\/c"', "a\\b/c"),
    ('x.y = "with space"', "with space"),
])
def test_quoted_strings_and_escapes(text: str, value: str) -> None:
    assert parse_condition(text).right.text == value


def test_list_values_quoted_and_bare() -> None:
    ast = parse_condition('x.y in (a, "b c", \'d\')')
    assert isinstance(ast.right, ListValue) and ast.right.values == ["a", "b c", "d"]


def test_not_of_group() -> None:
    assert isinstance(parse_condition("not (a or b)"), Not)


@pytest.mark.parametrize("text, msg", [
    ("", "filter input string is empty"),
    ("   ", "filter input string is empty"),
    ("a andb", "expected blank or '(' after 'and'"),
    ("a orb", "expected blank or '(' after 'or'"),
    ("a.b = b = 1", "unexpected token after"),
    ("x.y containsvalue", "expected a valid operator"),
    ("test.list = (value)", "expected a string value"),
    ("x.y ExIsTs", "expected a valid operator"),
    ("x.y <= a", "expected a number value"),
    ("x.y in (a,,b)", "expected a list value"),
    ("x.y in (a,)", "expected a list value"),
    ("b64 (x.y) = 1", "unexpected token"),
    ("(a", "expected a ')' token"),
    ("x.y[] = 1", "expected a valid field argument"),
    ("x.y[a b] = 1", "expected a ']' token"),
    ("toupper(fd.name)[x] = 1", "transformer 'toupper' does not support field arguments"),
    (r'x.y = "a\qb"', "unsupported string escape sequence"),
    (r"x.y = 'a\"b'", "invalid \\\" escape in '-quoted string"),
    ('x.y = "abc', "unterminated quoted string"),
    ("a and ", "expected a '(' token, a field check, or an identifier"),
    ("x.y =", "expected a string value"),
])
def test_syntax_errors(text: str, msg: str) -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition(text)
    assert msg in str(ei.value)
    assert str(ei.value).startswith("filter error at ")


def test_and_without_blank_at_end() -> None:
    with pytest.raises(FilterSyntaxError, match="expected blank or '\\(' after 'and'"):
        parse_condition("a and")


def test_error_position_points_at_problem() -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition("proc.name = a andb")
    assert ei.value.pos == len("proc.name = a and")


def test_depth_limit() -> None:
    with pytest.raises(FilterSyntaxError) as ei:
        parse_condition("(" * 2000 + "a" + ")" * 2000)
    assert "exceeded max depth limit of 1000" in str(ei.value)


def test_deep_but_legal_nesting_parses() -> None:
    assert as_string(parse_condition("(" * 300 + "a" + ")" * 300)) == "a"
