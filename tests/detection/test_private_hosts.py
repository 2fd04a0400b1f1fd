"""The engine-only /etc/hosts of a suite's ``engine_hosts`` (falconet.simulate.private_hosts): real
``unshare`` + bind mount, checked with the C library's resolver; the machine's /etc/hosts is never
changed. The end-to-end case (the engine resolving kubernetes.default.svc.cluster.local and the
stable rule firing for a runc container) is the falco-stable suite's, run by
test_detection_live.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import need_binary, need_root
from falconet.simulate.private_hosts import HOSTS, hosts_text, wrap, write_hosts_file

NAME = "kubernetes.default.svc.cluster.local"


def _getent(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def test_hosts_text_keeps_the_machines_entries_and_checks_values() -> None:
    text = hosts_text({NAME: "127.0.0.44"}, base="127.0.0.1 localhost")
    assert text.splitlines()[0] == "127.0.0.1 localhost"
    assert text.endswith(f"127.0.0.44 {NAME}\n")
    with pytest.raises(ValueError):
        hosts_text({NAME: "not-an-ip"}, base="")
    with pytest.raises(ValueError):
        hosts_text({"a b": "127.0.0.1"}, base="")


@pytest.mark.root
def test_only_the_wrapped_process_resolves_the_name() -> None:
    need_root()
    need_binary("unshare")
    need_binary("getent")
    with open(HOSTS, encoding="utf-8") as f:
        before = f.read()
    path = write_hosts_file({NAME: "127.0.0.44"})
    try:
        inside = _getent(wrap(["getent", "ahostsv4", NAME], path))
        assert inside.returncode == 0, inside.stderr
        assert inside.stdout.split()[0] == "127.0.0.44"
        # the machine (and this process) do not see it, and the real file is unchanged
        outside = _getent(["getent", "ahostsv4", NAME])
        assert "127.0.0.44" not in outside.stdout
        with open(HOSTS, encoding="utf-8") as f:
            assert f.read() == before
        # run without its private mount namespace, the helper refuses to touch /etc/hosts
        bare = _getent([sys.executable, "-m", "falconet.simulate.private_hosts", path, "--",
                        "true"])
        assert bare.returncode == 1 and "refusing" in bare.stderr
    finally:
        os.unlink(path)


def test_no_temporary_hosts_file_is_left_behind_when_the_engine_cannot_start(
        tmp_path, monkeypatch) -> None:
    """The hosts file is written before the engine starts: a failure on the way (no
    ``unshare``, an invalid entry) must not leave it in the temporary directory."""
    import tempfile

    import falconet.simulate.private_hosts as ph
    from falconet.simulate.live import LiveEngine

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError):
        write_hosts_file({"bad name": "127.0.0.44"})
    assert list(tmp_path.glob("falconet-hosts-*")) == []
    monkeypatch.setattr(ph.shutil, "which", lambda _name: None)
    engine = LiveEngine(["rules.yaml"], argv=["true"], hosts={NAME: "127.0.0.44"})
    with pytest.raises(RuntimeError, match="'unshare' .* is needed"):
        engine.start()
    engine.stop()
    assert list(tmp_path.glob("falconet-hosts-*")) == []
