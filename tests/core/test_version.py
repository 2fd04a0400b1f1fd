"""One version source: pyproject.toml; the package reads it back from its metadata."""

from __future__ import annotations

import tomllib

import falconet
from conftest import REPO


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert falconet.__version__ == project["version"]
    init = (REPO / "core" / "falconet" / "__init__.py").read_text(encoding="utf-8")
    assert f'"{project["version"]}"' not in init
