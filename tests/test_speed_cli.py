"""The speed benchmark's command line rejects bad input with one line and writes nothing."""

from __future__ import annotations

import pytest

from benchmarks.speed import main


@pytest.mark.parametrize("sigmas", [["0", "0.1"], ["-0.1", "0.1"]])
def test_bad_sigma_fails_clearly_and_writes_nothing(tmp_path, capsys, sigmas):
    with pytest.raises(SystemExit) as exc:
        main(["--sigmas", *sigmas, "--out", str(tmp_path / "out")])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert "sigma must be > 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_default_output_leaves_the_committed_results_alone():
    from benchmarks.speed import SpeedConfig, build_parser

    args = build_parser().parse_args([])
    assert args.out == SpeedConfig().out == "out/speed"
    with pytest.raises(ValueError, match="--repeats, --train-steps and --train-batch"):
        SpeedConfig(repeats=0)
