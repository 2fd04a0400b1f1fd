"""A few seconds of fuzzing captures (bench/fuzz_inputs.py runs the same properties for minutes):
any bytes round-trip exactly; hostile lines never stop the reader and are each accounted for."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inputfuzz import capture_lines, check_capture_reader, check_capture_round_trip, records

FEW = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


@FEW
@given(records, st.booleans())
def test_any_bytes_round_trip_exactly(recs: list, gz: bool) -> None:
    check_capture_round_trip(recs, gz)


@FEW
@given(st.lists(capture_lines(), min_size=1, max_size=12), st.booleans())
def test_hostile_lines_are_skipped_and_counted(lines: list[bytes], gz: bool) -> None:
    check_capture_reader(lines, gz)
