"""End to end: the optimality benchmark's command line, its result files and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.optimality import main

TINY = ["--size", "16", "--n-test", "8", "--n-train", "20", "--sigmas", "0.01:1:5", "--no-progress"]


def test_tiny_run_writes_valid_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.optimality",
            "--family",
            "gaussian,cartoons",
            "--out",
            str(out),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PSNR" in proc.stdout
    for family in ("gaussian", "cartoons"):
        result = json.loads((out / family / "results.json").read_text())
        for key in (
            "family",
            "params",
            "sigma",
            "mse",
            "mse_se",
            "sse",
            "psnr",
            "slopes",
            "wall_s",
            "device",
            "command",
        ):
            assert key in result, key
        assert result["family"] == family
        assert len(result["sigma"]) == 5
        names = set(result["mse"])
        assert {"memorizer", "wavelet_db4_hard"} <= names
        for name in names:
            mse = np.asarray(result["mse"][name])
            assert mse.shape == (5,) and np.all(mse > 0)
            assert set(result["slopes"][name]) >= {"slope", "ci", "window"}
        assert (out / family / "curves.png").stat().st_size > 0
        assert (out / family / "curves.csv").read_text().startswith("sigma,")
    kl = json.loads((out / "gaussian" / "results.json").read_text())["kl"]
    assert kl["kind"] == "exact"
    assert (out / "summary.csv").exists()
    assert not list(out.rglob(".*")), "temporary files left behind"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--family", "nosuch"], "unknown family"),
        (["--family", "cartoons", "--alpha", "0"], "alpha must be > 0"),
        (["--family", "cartoons", "--alpha", "-1"], "alpha must be > 0"),
        (["--family", "gaussian", "--sigmas", "0,0.1,1"], "sigma must be > 0"),
        (["--family", "gaussian", "--sigmas=-0.1,0.1,1"], "sigma must be > 0"),
        (["--family", "faces", "--faces-dir", "/nonexistent/celeba"], "not found"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out), "--no-progress"])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) <= 2, err  # argparse may prefix a usage line
    assert not out.exists()
