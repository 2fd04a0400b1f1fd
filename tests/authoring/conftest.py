"""Fixtures of the live authoring tests: the benign workload is recorded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import need, need_bcc


@pytest.fixture(scope="session")
def benign_recording(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A live recording of scripts/benign-workload.py (its process tree is the focus)."""
    need_bcc()
    from falconet.authoring.evidence import BENIGN_WORKLOAD, record_benign  # noqa: PLC0415

    need(BENIGN_WORKLOAD.exists(), f"{BENIGN_WORKLOAD} is missing")
    path = str(Path(tmp_path_factory.mktemp("benign")) / "benign.fcap.gz")
    record_benign(path)
    return path
