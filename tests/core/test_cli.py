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
