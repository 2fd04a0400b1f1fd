"""Reading the run summary's ``outputs:`` part, for tests of delivery accounting.

Installed plugins may contribute sinks of their own (the learning plugin watches alerts through
one), so a test checks the outputs it configured, each exactly, rather than the whole line.
"""

from __future__ import annotations


def outputs_of(summary: str) -> dict[str, str]:
    """``{"file": "0 sent, 1 failed", "stdout": "1 sent", ...}`` from the summary line."""
    line = next((ln for ln in summary.splitlines() if "; outputs: " in ln or ", outputs: " in ln
                 or ln.startswith("falconet: ") and " outputs: " in ln), "")
    part = line.split(" outputs: ", 1)[1] if " outputs: " in line else ""
    out: dict[str, str] = {}
    for item in part.split("; "):
        name, _, counts = item.strip().partition(" ")
        if name:
            out[name] = counts
    return out


def assert_outputs(summary: str, expected: dict[str, str]) -> None:
    got = outputs_of(summary)
    assert {k: got.get(k) for k in expected} == expected, summary
