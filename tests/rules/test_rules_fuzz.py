"""A few seconds of fuzzing (bench/fuzz_rules.py runs the same properties for minutes)."""

from __future__ import annotations

from fuzzstrategies import (
    any_condition,
    check_compilers_agree,
    check_load,
    check_parse,
    check_rules_file,
    conditions,
    documents,
    limit_documents,
    rule_document,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(any_condition)
def test_parser_raises_only_its_own_error(text: str) -> None:
    check_parse(text)


@FEW
@given(st.lists(documents, min_size=1, max_size=3))
def test_loader_never_raises(docs: list[str]) -> None:
    check_load(docs)


@FEW
@given(conditions())
def test_generated_rules_compile_or_fail_cleanly(cond: str) -> None:
    check_load([rule_document(cond)])


@FEW
@given(conditions())
def test_generated_code_and_closures_agree(cond: str) -> None:
    check_compilers_agree(cond)


@FEW
@given(limit_documents())
def test_files_shaped_like_loader_attacks_fail_cleanly(data: bytes) -> None:
    check_rules_file(data)
