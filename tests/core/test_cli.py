"""The `falconet` command line: mistakes in options are reported by the subcommand they belong to."""

from __future__ import annotations

import pytest
from falconet.cli import main


@pytest.mark.parametrize("argv, usage", [
    (["fields", "--bogus"], "falconet fields: error: unrecognized arguments: --bogus"),
    (["replay", "x.fcap", "--bogus"], "falconet replay: error: unrecognized arguments: --bogus"),
    (["rules", "validate", "x.yaml", "--zzz"],
     "falconet rules validate: error: unrecognized arguments: --zzz"),
    (["rules", "list", "--zzz"], "falconet rules list: error: unrecognized arguments: --zzz"),
    (["--bogus"], "falconet: error: unrecognized arguments: --bogus"),
])
def test_unknown_option_names_the_subcommand(argv: list[str], usage: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert usage in err and "Traceback" not in err


def test_fields_of_an_unknown_source_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fields", "--source", "nosuch"]) == 2
    out = capsys.readouterr()
    assert "unknown event source 'nosuch' (known: " in out.err and "syscall" in out.err
    assert out.out == ""
    assert main(["fields", "--source", "syscall"]) == 0
    assert "proc.name" in capsys.readouterr().out


def test_validating_a_directory_without_rules_files_is_an_error(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not rules")
    assert main(["rules", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"no rules files (*.yaml, *.yml) in {tmp_path}" in out.err and "OK" not in out.out


def test_an_explicit_rules_directory_without_rules_does_not_fall_back_to_the_defaults(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not rules")
    assert main(["rules", "list", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"no rules files in {tmp_path}" in out.err
    assert out.out == ""          # not the 32 default rules


def test_default_rules_are_looked_for_wherever_the_bpf_source_is() -> None:
    """A wheel installs bpf/ and rules/ side by side as data (<prefix>/share/falconet); a
    distribution's Python puts that prefix in /usr/local, not sys.prefix. The engine must look
    for the default rules in every place it looks for the BPF source."""
    from falconet.app import RULES_DIR_CANDIDATES
    from falconet.collector.program import BPF_SOURCE_CANDIDATES

    for bpf in BPF_SOURCE_CANDIDATES[1:]:
        assert bpf.parents[1] / "rules" in RULES_DIR_CANDIDATES, bpf


def test_default_rules_come_from_the_first_candidate_with_rules(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from falconet.app import load_rules as app

    empty, share = tmp_path / "empty", tmp_path / "share" / "falconet" / "rules"
    empty.mkdir()
    share.mkdir(parents=True)
    (share / "a.yaml").write_text("[]\n")
    monkeypatch.delenv("FALCONET_RULES_DIR", raising=False)
    monkeypatch.setattr(app, "RULES_DIR_CANDIDATES", (tmp_path / "missing", empty, share))
    assert app.default_rules_paths() == [str(share / "a.yaml")]
    monkeypatch.setenv("FALCONET_RULES_DIR", str(empty))      # empty: the next one
    assert app.default_rules_paths() == [str(share / "a.yaml")]


def test_rules_list_shows_the_process_names_of_the_kernel_filter(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    (tmp_path / "r.yaml").write_text(
        "- rule: shells write tmp\n  desc: d\n  condition: evt.type = openat and "
        "evt.is_open_write = true and fd.name startswith /tmp/ and proc.name in (sh, bash)\n"
        "  output: x\n  priority: warning\n")
    args = ["rules", "list", str(tmp_path / "r.yaml"), "--kernel-filter",
            "-o", "plugins.learning.enabled=false"]
    assert main(args) == 0
    assert "  - write, proc.name in (bash, sh), path startswith /tmp/" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    [c] = json.loads(capsys.readouterr().out)["types"]["openat"]
    assert c["proc_names"] == ["bash", "sh"] and c["prefixes"] == ["/tmp/"]
