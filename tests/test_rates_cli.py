"""End to end: the rate benchmark's command line, its result files and its errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from benchmarks import rates
from benchmarks.rates import DEFAULT_DENOISERS, DENOISERS, RatesConfig, bm3d_available, main

TINY = ["--alphas", "2", "--sizes", "32", "--n-images", "2", "--sigmas", "0.02,0.05,0.1"]


def test_tiny_run_writes_valid_results(tmp_path, capsys):
    out = tmp_path / "rates"
    denoisers = ["wavelet", "ti_wavelet", "curvelet"]
    main(
        [*TINY, "--window", "0.01,0.2", "--denoisers", ",".join(denoisers)]
        + ["--out", str(out), "--no-progress", "--seed", "3"]
    )
    printed = capsys.readouterr().out
    assert "slope of ln MSE" in printed and "curvelet" in printed
    result = json.loads((out / "results.json").read_text())
    for key in (
        "family",
        "alphas",
        "sizes",
        "n_images",
        "sigma",
        "window",
        "seed",
        "denoisers",
        "errors",
        "minimax_exponent",
        "curves",
        "blocks",
        "wall_s",
        "command",
        "device",
        "machine",
    ):
        assert key in result, key
    assert result["window"] == [0.01, 0.2] and result["n_images"] == {"32": 2}
    assert list(result["denoisers"]) == denoisers
    assert len(result["curves"]) == len(denoisers)
    for curve in result["curves"]:
        for key in ("mse", "mse_se", "ratio_to_wavelet"):
            values = np.asarray(curve[key])
            assert values.shape == (3,) and np.all(values > 0), key
        fit = curve["slope"]
        assert fit["ci"][0] < fit["slope"] < fit["ci"][1] and fit["n_points"] == 3
        assert len(curve["local_slopes"]["slope"]) == 1
        assert curve["minimax_exponent"] == pytest.approx(4 / 3)
    wavelet = next(c for c in result["curves"] if c["denoiser"] == "wavelet")
    assert wavelet["ratio_to_wavelet"] == [1.0, 1.0, 1.0]
    with open(out / "rates.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["denoiser"] for r in rows] == denoisers
    assert {"alpha", "size", "slope", "ci_lo", "ci_hi"} <= set(rows[0])
    for figure in ("mse.png", "local_slopes.png"):
        assert (out / figure).stat().st_size > 0
    assert not list(out.glob(".*")), "temporary files left behind"


def test_default_denoisers_are_the_references_and_bm3d_when_installed(monkeypatch):
    names = DEFAULT_DENOISERS.split(",")
    expected = ["wavelet", "ti_wavelet", "curvelet", "bandlet", "nlm"]
    assert names == expected + (["bm3d"] if bm3d_available() else [])
    assert set(names) <= set(DENOISERS)
    monkeypatch.setattr(rates, "bm3d_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install -e \"\.\[bm3d\]\""):
        RatesConfig(denoisers=("wavelet", "bm3d"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--alphas", "0"], "alpha must be a finite regularity > 0"),
        (["--alphas", "2,-1"], "alpha must be a finite regularity > 0"),
        (["--sigmas", "0,0.05,0.1"], "sigma must be > 0"),
        (["--sigmas=-0.1,0.05,0.1"], "sigma must be > 0"),
        (["--sizes", "30"], "size 30 does not suit 'curvelet'"),
        (["--sizes", "33"], "cartoon size must be even"),
        (["--denoisers", "wavelet,nosuch"], "unknown denoiser 'nosuch'"),
        (["--window", "0.03,0.04"], "a slope with a CI needs >= 3"),
        (["--n-images", "1"], "--n-images must be >= 2"),
        (["--n-images", "2,3"], "one number or one per size"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "rates"
    base = [*TINY, "--denoisers", "wavelet,curvelet", "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        main(base + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_configuration_defaults_names_and_noise_seeds():
    from benchmarks.common import derive_seed
    from benchmarks.rates import RatesConfig, build_parser, config_from_args

    config = config_from_args(build_parser().parse_args([]))
    assert config == RatesConfig() and config.out == "out/rates"
    assert config.counts() == {64: 12, 128: 12, 256: 12}
    # Translation-invariant versions are the cycle-spun ones, under their historical names.
    assert DENOISERS["ti_wavelet"]().name == "ti_wavelet_db4_hard"
    assert DENOISERS["ti_bandlet"]().name == "ti_bandlet_db4_4x4"
    # Block (alpha index, size) keeps the noise stream of SeedSequence([seed, index, size]).
    expected = int(np.random.SeedSequence([3, 1, 64]).generate_state(1)[0])
    assert derive_seed(3, 1, 64) == expected
    with pytest.raises(ValueError, match="one number or one per size"):
        RatesConfig(sizes=(32,), n_images=(2, 3))
