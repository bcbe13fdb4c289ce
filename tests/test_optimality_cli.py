"""End to end: the optimality benchmark's command line, its result files and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.optimality import main
from benchmarks.optimality_plots import objective_label
from models.objectives import SIGMA_LAWS, get_objective

TINY = ["--size", "16", "--n-test", "8", "--n-train", "20", "--sigmas", "0.01:1:5", "--no-progress"]
NET = ["--channels", "4", "--blocks", "2", "--steps", "6", "--batch-size", "8"]


def _results(out, family):
    return json.loads((out / family / "results.json").read_text())


def test_references_only_run_writes_valid_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.optimality",
            "--family",
            "gaussian,cartoons",
            "--network",
            "none",
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
        result = _results(out, family)
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
        assert result["family"] == family and len(result["sigma"]) == 5
        assert {"memorizer", "wavelet_db4_hard", "ti_wavelet_db4_hard_4x4"} <= set(result["mse"])
        for name, mse in result["mse"].items():
            assert np.all(np.asarray(mse) > 0), name
            assert set(result["slopes"][name]) >= {"slope", "ci", "window"}
        assert (out / family / "curves.png").stat().st_size > 0
        assert (out / family / "curves.csv").read_text().startswith("sigma,")
    check = _results(out, "gaussian")["gaussian_check"]
    assert check["kind"] == "exact"
    # The wrong-spectrum KL: Monte Carlo within 4 SE of the same quadrature of the exact
    # excess risk (this coarse 5-level grid has quadrature error; tests/test_kl.py bounds it).
    gap = np.abs(np.asarray(check["value"]) - np.asarray(check["quadrature_of_closed_form"]))
    assert np.all(gap < 4 * np.asarray(check["se"]))
    assert (out / "summary.csv").exists()
    assert not list(out.rglob(".*")), "temporary files left behind"


def test_network_run_has_every_key_and_reuses_the_run_store(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--family", "gaussian", *TINY, *NET, "--runs", str(runs), "--out", str(out)]
    main([*argv, "--ema-halflife", "2"])
    result = _results(out, "gaussian")
    assert result["network"]["config"]["ema_halflife"] == 2
    for key in (
        "family",
        "params",
        "sigma",
        "mse",
        "mse_se",
        "slopes",
        "kl",
        "wall_s",
        "device",
        "command",
        "train",
        "kl_train",
        "effective_dimension",
        "ratio_to_best_reference",
        "network",
    ):
        assert key in result, key
    assert set(result["kl"]) >= {"sigma0", "value", "se", "kind"}
    assert result["kl"]["kind"] == "exact" and result["kl"]["reference"] == "wiener"
    assert result["kl_train"]["kind"] == "exact"
    # The gaussian family declares flips and circular shifts of both axes: 2 x 2 x 2 x 2.
    assert result["network"]["symmetrized"]["group_order"] == 16
    assert result["ratio_to_best_reference"]["denoiser"] == "unet_sym"
    assert result["ratio_to_best_reference_raw"]["denoiser"] == "unet"
    assert {"unet_sym", "unet"} <= set(result["mse"])
    assert {"unet_sym", "memorizer"} <= set(result["train"]["mse"])
    # On its own training images the memorizer is exact: the network cannot beat it.
    train = result["train"]["mse"]
    assert np.all(np.asarray(train["memorizer"]) <= np.asarray(train["unet_sym"]) * (1 + 1e-6))
    eff = result["effective_dimension"]
    assert len(eff["trace"]) == 5 and eff["method"] == "exact"  # d = 256
    for name in ("curves.png", "kl.png", "effective_dimension.png", "kl_check.png"):
        assert (out / "gaussian" / name).stat().st_size > 0
    runs_before = sorted(p.name for p in runs.iterdir())
    stamp = (runs / runs_before[0] / "model.pt").stat().st_mtime_ns
    main([*argv, "--ema-halflife", "2", "--symmetry-shifts", "0"])  # loaded, not retrained
    assert sorted(p.name for p in runs.iterdir()) == runs_before
    assert (runs / runs_before[0] / "model.pt").stat().st_mtime_ns == stamp
    raw = _results(out, "gaussian")
    assert raw["network"]["symmetrized"] is None and "unet_sym" not in raw["mse"]
    # Same network, same noise: the raw curve is the one of the symmetrized run.
    np.testing.assert_allclose(raw["mse"]["unet"], result["mse"]["unet"], rtol=1e-6)


def test_objective_comparison_trains_all_three_on_one_budget(tmp_path):
    out = tmp_path / "out"
    argv = ["--family", "cartoons", *TINY, *NET, "--compare-objectives"]
    main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(out)])
    comparison = _results(out, "cartoons")["objectives"]
    assert set(comparison["objectives"]) == {"edm", "kl", "paper"}
    assert comparison["objectives"]["edm"]["params"]["law"] == "paper"  # the quick profile's
    assert comparison["objectives"]["kl"]["params"]["sigma_min"] == 1e-3
    for entry in comparison["objectives"].values():
        assert len(entry["ratio"]) == 5 and np.all(np.asarray(entry["ratio"]) > 0)
    assert (out / "cartoons" / "objectives.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--family", "nosuch"], "unknown family"),
        (["--family", "cartoons", "--alpha", "0"], "alpha must be > 0"),
        (["--family", "cartoons", "--alpha", "-1"], "alpha must be > 0"),
        (["--family", "gaussian", "--sigmas", "0,0.1,1"], "sigma must be > 0"),
        (["--family", "gaussian", "--sigmas=-0.1,0.1,1"], "sigma must be > 0"),
        (["--family", "faces", "--faces-dir", "/nonexistent/celeba"], "not found"),
        (["--family", "cartoons", "--size", "20", "--blocks", "3"], "multiple of 8"),
        (["--objective", "nosuch"], "invalid choice"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--objective", "kl", "--sigma-law", "log_normal"], "option of the edm objective"),
        (["--objective", "paper", "--sigma-d", "0.1"], "option of the edm objective"),
        (["--sigma-d", "0"], "--sigma-d must be positive"),
        (["--sigma-mix", "1.2"], "--sigma-mix is a fraction"),
        (["--objective", "kl", "--sigma-mix", "0.5"], "option of the edm objective"),
        (["--cooldown", "1"], "need 0 <= --cooldown < 1"),
        (["--cooldown-lr", "0"], "--cooldown-lr > 0"),
        (["--ema-halflife", "-1"], "--ema-halflife must be >= 0 steps"),
        (["--train-sigma-min", "2"], "need 0 < --train-sigma-min < --train-sigma-max"),
        (["--symmetry-shifts", "3"], "--symmetry-shifts must be 0 or a divisor of the image"),
        (["--symmetry-shifts", "-1"], "--symmetry-shifts must be 0 or a divisor of the image"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out), "--no-progress"])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not out.exists()


def test_corrupt_stored_network_fails_clearly(tmp_path, capsys):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--family", "cartoons", *TINY, *NET, "--runs", str(runs), "--out", str(out)]
    main(argv)
    (next(runs.iterdir()) / "model.pt").write_bytes(b"not a checkpoint")
    out2 = tmp_path / "out2"
    with pytest.raises(SystemExit) as exc:
        main([*argv[:-1], str(out2)])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and "delete" in err[0]
    assert not out2.exists()


def test_kl_bracket_kinds(tmp_path):
    out = tmp_path / "out"
    main(
        [
            "--family",
            "cartoons_gaussian,disks",
            *TINY,
            *NET,
            "--n-test",
            "4",
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(out),
        ]
    )
    bracket = _results(out, "cartoons_gaussian")["kl_curves"]
    assert [c["kind"] for c in bracket] == ["upper_bound", "estimate"]
    assert bracket[0]["reference"] == "genie"
    # The genie's error is below every usable reference's, so its curve lies above.
    assert np.all(np.asarray(bracket[0]["value"]) >= np.asarray(bracket[1]["value"]) - 1e-9)
    disks = _results(out, "disks")
    assert [c["kind"] for c in disks["kl_curves"]] == ["exact", "estimate"]
    assert "disk_posterior" in disks["mse"]
    assert (out / "cartoons_gaussian" / "kl.png").stat().st_size > 0


def test_shuffled_faces_leave_permutation_invariant_denoisers_unchanged(tmp_path):
    out = tmp_path / "out"
    main(
        [
            "--family",
            "faces,shuffled_faces",
            "--network",
            "none",
            "--n-test",
            "8",
            "--sigmas",
            "0.01:1:5",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    check = json.loads((out / "shuffled_faces.json").read_text())
    faces, shuffled = _results(out, "faces"), _results(out, "shuffled_faces")
    for name in ("memorizer", "wiener_pca"):
        # Equal in distribution (the noise is a different draw relative to the faces).
        gap = np.abs(np.asarray(shuffled["mse"][name]) - np.asarray(faces["mse"][name]))
        se = np.hypot(faces["mse_se"][name], shuffled["mse_se"][name])
        assert np.all(gap < 4 * se + 1e-12), name
    # Wavelets use pixel neighbourhoods: shuffling the pixels hurts them at moderate σ.
    assert max(check["ratio"]["wavelet_db4_hard"]) > 1.2
    assert (out / "shuffled_faces.png").stat().st_size > 0


@pytest.mark.parametrize("law", SIGMA_LAWS)
def test_every_edm_law_has_a_legend_label(law):
    params = get_objective("edm", law=law, sigma_min=1e-3, sigma_max=1.5).to_dict()
    label = objective_label("edm", params)
    assert label.startswith("edm (σ ") and "σ_d = 0.25" in label
