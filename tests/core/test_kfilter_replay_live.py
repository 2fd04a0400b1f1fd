"""The soundness replay on a live recording: real kernel events of a file-heavy workload
(secrets read, imports, tar, failed probes, relative and traversal paths), recorded with the
filter off, replayed with and without `--kernel-filter` through the stable and default rules:
identical alerts, and events filtered.

The collector reports what each successful open opened (the hidden ``ftype`` arg, read off the
new fd's inode in the kernel), so directory opens pass in the replay as they do in the
kernel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import FALCO_RULES, REPO, need, need_bcc
from falconet.capture import read_capture
from falconet.kfilter import OPEN_TYPES
from test_kfilter_replay import filtered, replay

pytestmark = [pytest.mark.root, pytest.mark.ebpf, pytest.mark.slow]

WORKLOAD = r"""
set -e
cat /etc/shadow > /dev/null
cat /etc/hosts > /dev/null
cat /nonexistent/file 2>/dev/null || true
python3 -c 'import json, email.parser, http.client, xml.dom.minidom, sqlite3'
tar cf /dev/null -C "$(python3 -c 'import os, json; print(os.path.dirname(json.__file__))')" .
cd /tmp && cat ../etc/../etc/hosts > /dev/null
cd /etc && cat ./passwd > /dev/null && ls > /dev/null
for i in 1 2 3; do cat /etc/os-release > /dev/null; done
tar cf - -C "$(python3 -c 'import os; print(os.path.dirname(os.__file__))')" json email | cat >/dev/null
python3 -c 'import os
os.chdir("/usr/lib"); os.close(os.open("os-release", 0)); os.chdir("/etc")
os.close(os.open("shadow", 0)); os.chdir("/usr"); os.chdir("lib")
os.close(os.open("os-release", 0)); d = os.open("/etc", os.O_DIRECTORY); os.fchdir(d)
os.close(os.open("shadow", 0)); os.close(os.open("hosts", 0, dir_fd=d))'
echo x > /tmp/falconet-kf-live.$$ && rm -f /tmp/falconet-kf-live.$$
ln -s /etc/shadow /tmp/falconet-kf-lnk.$$ && cat /tmp/falconet-kf-lnk.$$ > /dev/null
rm -f /tmp/falconet-kf-lnk.$$
"""


def opens_with_ftype(path: str) -> int:
    """Successful opens of the recording whose file type the kernel reported."""
    return sum(1 for evt in read_capture(path)
               if evt.type in OPEN_TYPES and evt.res is not None and evt.res >= 0
               and isinstance(evt.args.get("ftype"), int) and evt.args["ftype"] & 1)


def test_live_recording_replays_identically_with_the_kernel_filter(tmp_path: Path) -> None:
    need_bcc()
    need(FALCO_RULES.exists(), f"{FALCO_RULES} is missing")
    from falconet.authoring.evidence import Recorder  # noqa: PLC0415 - root-only machinery

    raw = str(tmp_path / "raw.fcap.gz")
    with Recorder(raw, ["-o", "collector.all_syscalls=true", "-o",
                        "plugins.learning.enabled=false"]):
        subprocess.run(["sh", "-c", WORKLOAD], check=True, timeout=120,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    cap = raw
    assert opens_with_ftype(cap) > 50
    off = tmp_path / "setuid-off.yaml"
    off.write_text("- rule: Setuid or Setgid Bit Set\n  enabled: false\n  override:\n    enabled: replace\n")
    for rules, must_filter in (([str(FALCO_RULES)], True), ([str(REPO / "rules")], True),
                               ([str(REPO / "rules"), str(off)], True)):
        plain, _ = replay(cap, rules)
        kf, err = replay(cap, rules, "--kernel-filter")
        assert kf == plain, rules
        assert (filtered(err) > 0) is must_filter, err
        print(f"{rules}: {len(plain)} alerts; {err.strip().splitlines()[-1]}")
        if rules == [str(FALCO_RULES)]:
            assert "Read sensitive file untrusted" in {a["rule"] for a in plain}
            # through the symlink: the resolved-path view, which the filter passes (step 6)
            assert any(a["rule"] == "Read sensitive file untrusted" and
                       a["output_fields"].get("fd.resolved_name") == "/etc/shadow" and
                       "falconet-kf-lnk" in str(a["output_fields"].get("fd.name"))
                       for a in kf), [a["output_fields"] for a in kf
                                      if a["rule"] == "Read sensitive file untrusted"]
