"""Run upstream Falco's `falco -V` (../shared/falco-bin, or $FALCONET_FALCO_BIN) on rules files
and read its warnings and errors, to compare with `falconet rules validate` (issue 17)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import SHARED

#: one warning or error as both engines can say it: kind and name of the item, code, message,
#: file name and 1-based line and column (Falco prints them 0-based)
Item = tuple[str, str, str, str, str, int, int]


def falco_run_sh() -> Path | None:
    env = os.environ.get("FALCONET_FALCO_BIN")
    d = Path(env) if env else SHARED / "falco-bin"
    run = d / "run.sh" if d.is_dir() else d
    return run if run.is_file() and os.access(run, os.X_OK) else None


_BLOCK = re.compile(r"^In rules content: ", re.M)
_ITEM = re.compile(r"^\s+(rule|macro|list) '([^']*)': \(", re.M)
_CODE = re.compile(r"^(LOAD_[A-Z_]+) \([^)]*\)(?:: (.*))?$", re.M)
_POS = re.compile(r"\(([^():]+\.ya?ml):(\d+):(\d+)\)")
_STEP = re.compile(r"(\S+\.ya?ml): (?:Ok|Invalid)")
_HEADER = re.compile(r"^\d+ (?:Warnings|Errors):$")


def falco_validate(run_sh: Path, files: list[Path]) -> tuple[int, list[Item]]:
    """`falco -V f1 -V f2 ...` in the files' directory: (exit status, the warnings and errors
    of the last step). Falco validates the files one after the other, each step compiling
    everything read so far, and reports each step's messages under "<file>: Ok, with warnings"
    / "N Warnings:"; the last file's step is the ruleset of all the files together."""
    argv = [str(run_sh)]
    for f in files:
        argv += ["-V", f.name]
    p = subprocess.run(argv, cwd=files[0].parent, capture_output=True, text=True, timeout=120,
                       check=False)
    lines = (p.stdout + p.stderr).splitlines()
    last, section, grab = files[-1].name, [], False
    for i, line in enumerate(lines):
        step = _STEP.search(line)
        if _HEADER.match(line):
            prev = _STEP.search(lines[i - 1]) if i else None
            grab = prev is not None and prev.group(1) == last
        elif step is not None and not line.startswith(" "):
            grab = False
        elif grab:
            section.append(line)
    items: list[Item] = []
    for block in _BLOCK.split("\n".join(section))[1:]:
        item, code, pos = _ITEM.search(block), _CODE.search(block), _POS.findall(block)
        if item is None or code is None or not pos:
            continue
        f, line_no, col = pos[-1]
        items.append((item.group(1), item.group(2), code.group(1), code.group(2) or "", f,
                      int(line_no) + 1, int(col) + 1))
    return p.returncode, items
