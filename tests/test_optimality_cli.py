"""End to end: the optimality benchmark's command line, its result files and its errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.optimality import PAPER, QUICK, OptimalityConfig, main, measure
from benchmarks.optimality.plots import objective_label
from models.objectives import SIGMA_LAWS, get_objective
from synthetic import FAMILY_NAMES, get_family

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--size", "16", "--n-test", "8", "--n-train", "20", "--sigmas", "0.01:1:5", "--no-progress"]
NET = ["--channels", "4", "--blocks", "2", "--steps", "6", "--batch-size", "8"]


def _results(out, family):
    return json.loads((out / family / "results.json").read_text())


def _curves(out, family) -> dict[str, np.ndarray]:
    """The MSE columns of curves.csv by denoiser name."""
    with open(out / family / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    names = [k[len("mse_") :] for k in rows[0] if k.startswith("mse_") and "mse_se_" not in k]
    return {n: np.array([float(r[f"mse_{n}"]) for r in rows]) for n in names}


def _best_reference_mse(result: dict, exclude: set[str]) -> np.ndarray:
    return np.min([result["mse"][n] for n in result["mse"] if n not in exclude], axis=0)


def test_references_only_run_writes_valid_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.optimality", "--family", "gaussian,cartoons"]
        + ["--network", "none", "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PSNR" in proc.stdout
    for family in ("gaussian", "cartoons"):
        result = _results(out, family)
        for key in ("family", "params", "sigma", "mse", "mse_se", "sse", "psnr", "slopes"):
            assert key in result, key
        for key in ("wall_s", "device", "command", "git", "versions", "options", "timestamp"):
            assert key in result, key
        assert result["options"]["network"] == "none" and result["options"]["n_test"] == 8
        assert result["family"] == family and len(result["sigma"]) == 5
        assert {"memorizer", "wavelet_db4_hard", "ti_wavelet_db4_hard"} <= set(result["mse"])
        for name, mse in result["mse"].items():
            assert np.all(np.asarray(mse) > 0), name
            assert set(result["slopes"][name]) >= {"slope", "ci", "window"}
            np.testing.assert_allclose(_curves(out, family)[name], mse, rtol=1e-12)
        assert (out / family / "curves.png").stat().st_size > 0
    # The C^α family declares its regularity, the Gaussian field does not.
    assert _results(out, "cartoons")["minimax_exponent"] == pytest.approx(4 / 3)
    assert "minimax_exponent" not in _results(out, "gaussian")
    assert "gaussian_check" not in _results(out, "cartoons")
    check = _results(out, "gaussian")["gaussian_check"]
    assert check["kind"] == "exact" and check["wrong_gamma"] == 3.0
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
    family = get_family("gaussian", size=16)
    network = result["network"]
    assert network["config"]["ema_halflife"] == 2 and network["steps"] == 6
    assert network["reused"] is False and Path(network["run_dir"]).parent == runs
    for key in ("kl", "train", "kl_train", "effective_dimension", "ratio_to_best_reference"):
        assert key in result, key
    # The KL against the family's declared optimum first, then the estimate.
    kinds = [(c["kind"], c["reference"]) for c in result["kl_curves"]]
    assert kinds == [
        (family.optimum.kl_kind, family.optimum.reference),
        ("estimate", "best_reference"),
    ]
    assert result["kl"] == result["kl_curves"][0]
    # The gaussian family declares flips and circular shifts of both axes: 2 x 2 x 2 x 2.
    assert network["symmetrized"]["group_order"] == 16
    # The ratio is the network's MSE over the best reference's, recomputed from curves.csv.
    curves = _curves(out, "gaussian")
    best = np.min([curves[n] for n in curves if n not in ("unet_sym", "unet")], axis=0)
    for key, name in (
        ("ratio_to_best_reference", "unet_sym"),
        ("ratio_to_best_reference_raw", "unet"),
    ):
        assert result[key]["denoiser"] == name
        np.testing.assert_allclose(result[key]["ratio"], curves[name] / best, rtol=1e-9)
    best_names = result["kl_best_reference_per_sigma"]
    np.testing.assert_allclose([curves[n][j] for j, n in enumerate(best_names)], best, rtol=0)
    # On its own training images the memorizer is exact at σ = 0.01 (posterior on one image).
    train = result["train"]["mse"]
    assert train["memorizer"][0] == 0 and train["unet_sym"][0] > 0
    eff = result["effective_dimension"]
    assert len(eff["trace"]) == 5 and eff["method"] == "exact"  # d = 256
    sigma2_trace = np.asarray(eff["trace"]) * np.square(result["sigma"])
    np.testing.assert_allclose(eff["sigma2_trace"], sigma2_trace, rtol=1e-12)
    # The local score machines against the network alone, on 6 held-out images (2 calibrate).
    local = result["local_score"]
    assert local["network"] == "unet" and local["n_images"] == 6
    assert local["n_train_machines"] == local["n_train_memorizer"] == 20
    for name in ("els", "ls", "memorizer"):
        assert len(local["r2"][name]) == len(local["r2_median"][name]) == 5
    for patches, tried in zip(local["patch"]["els"], local["calibration"]["els"], strict=True):
        assert max(tried, key=tried.get) == str(patches)
    for name in ("curves.png", "kl.png", "effective_dimension.png", "kl_check.png"):
        assert (out / "gaussian" / name).stat().st_size > 0
    assert (out / "gaussian" / "local_score.png").stat().st_size > 0
    runs_before = sorted(p.name for p in runs.iterdir())
    stamp = (runs / runs_before[0] / "model.pt").stat().st_mtime_ns
    main([*argv, "--ema-halflife", "2", "--symmetry-shifts", "0"])  # loaded, not retrained
    assert sorted(p.name for p in runs.iterdir()) == runs_before
    assert (runs / runs_before[0] / "model.pt").stat().st_mtime_ns == stamp
    raw = _results(out, "gaussian")
    assert raw["network"]["reused"] is True and raw["network"]["run_dir"] == network["run_dir"]
    assert raw["network"]["symmetrized"] is None and "unet_sym" not in raw["mse"]
    # Same network, same noise: the stored network reproduces the raw curve bit for bit.
    assert raw["mse"]["unet"] == result["mse"]["unet"]


def test_objective_comparison_trains_all_three_on_one_budget(tmp_path):
    out = tmp_path / "out"
    argv = ["--family", "cartoons", *TINY, *NET, "--compare-objectives"]
    main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(out)])
    result = _results(out, "cartoons")
    comparison = result["objectives"]
    assert set(comparison["objectives"]) == {"edm", "kl", "paper"}
    assert comparison["objectives"]["edm"]["params"]["law"] == "paper"  # the quick profile's
    assert comparison["objectives"]["kl"]["params"]["sigma_min"] == 1e-3
    best = _best_reference_mse(result, {"unet_sym", "unet", "unet_sym_kl", "unet_sym_paper"})
    for objective, entry in comparison["objectives"].items():
        name = "unet_sym" if objective == "edm" else f"unet_sym_{objective}"
        np.testing.assert_allclose(entry["ratio"], np.asarray(result["mse"][name]) / best)
    assert list(result["mse"])[-2:] == ["unet_sym_kl", "unet_sym_paper"]
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
        (["--device", "tpu"], "use cpu or cuda"),
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


def test_profiles_are_configurations_and_validate_on_construction():
    assert dataclasses.replace(PAPER, profile="quick", size=32, channels=16) != QUICK
    changed = {
        f.name
        for f in dataclasses.fields(OptimalityConfig)
        if getattr(PAPER, f.name) != getattr(QUICK, f.name)
    }
    assert changed == {
        "profile",
        "size",
        "channels",
        "steps",
        "batch_size",
        "lr",
        "lr_halvings",
        "cooldown_lr",
        "n_train",
        "device",
    }
    with pytest.raises(ValueError, match="--probes must be at least 1"):
        dataclasses.replace(QUICK, probes=0)
    with pytest.raises(ValueError, match="--slope-window needs 0 < lo < hi"):
        OptimalityConfig(slope_window=(0.3, 0.01))
    with pytest.raises(dataclasses.FrozenInstanceError):
        QUICK.steps = 1  # type: ignore[misc]


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


def test_shipped_weights_are_loaded_unless_retrain(tmp_path, monkeypatch):
    shipped, runs, out = tmp_path / "shipped", tmp_path / "runs", tmp_path / "out"
    argv = ["--family", "cartoons", *TINY, *NET, "--symmetry-shifts", "0", "--out", str(out)]
    main([*argv, "--runs", str(shipped)])  # the weights a release would ship
    trained = _results(out, "cartoons")
    monkeypatch.setattr(measure, "WEIGHTS_DIR", shipped)
    main([*argv, "--runs", str(runs)])
    loaded = _results(out, "cartoons")
    assert loaded["network"]["reused"] is True and not runs.exists()
    assert Path(loaded["network"]["run_dir"]).parent == shipped
    assert loaded["mse"] == trained["mse"]
    main([*argv, "--runs", str(runs), "--retrain"])
    retrained = _results(out, "cartoons")
    assert retrained["network"]["reused"] is False and retrained["options"]["retrain"] is True
    assert Path(retrained["network"]["run_dir"]).parent == runs
    assert [p.name for p in runs.iterdir()] == [p.name for p in shipped.iterdir()]
    # Same configuration, same seed: training again gives the shipped network's numbers.
    np.testing.assert_allclose(retrained["mse"]["unet"], trained["mse"]["unet"], rtol=1e-6)


def test_kl_bracket_kinds(tmp_path):
    out = tmp_path / "out"
    main(
        ["--family", "cartoons_gaussian,disks", *TINY, *NET, "--n-test", "4"]
        + ["--runs", str(tmp_path / "runs"), "--out", str(out)]
    )
    for name in ("cartoons_gaussian", "disks"):
        optimum = get_family(name, size=16).optimum
        result = _results(out, name)
        kinds = [(c["kind"], c["reference"]) for c in result["kl_curves"]]
        assert kinds == [(optimum.kl_kind, optimum.reference), ("estimate", "best_reference")]
        assert optimum.reference in result["mse"]
    assert _results(out, "cartoons_gaussian")["kl_curves"][0]["kind"] == "upper_bound"
    bracket = _results(out, "cartoons_gaussian")["kl_curves"]
    # The genie's error is below every usable reference's, so its curve lies above.
    assert np.all(np.asarray(bracket[0]["value"]) >= np.asarray(bracket[1]["value"]) - 1e-9)
    # The genie is an oracle, not a usable reference: the ratio leaves it out.
    genie = _results(out, "cartoons_gaussian")
    best = _best_reference_mse(genie, {"unet_sym", "unet", "genie"})
    np.testing.assert_allclose(
        genie["ratio_to_best_reference"]["ratio"], np.asarray(genie["mse"]["unet_sym"]) / best
    )
    assert (out / "cartoons_gaussian" / "kl.png").stat().st_size > 0


def test_shuffled_faces_leave_permutation_invariant_denoisers_unchanged(tmp_path):
    out = tmp_path / "out"
    main(
        ["--family", "faces,shuffled_faces", "--network", "none", "--n-test", "8"]
        + ["--sigmas", "0.01:1:5", "--no-progress", "--out", str(out)]
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


def test_no_benchmark_module_tests_a_family_name():
    """Families declare, benchmarks ask: no comparison with a family's name in benchmarks/."""
    names = "|".join(FAMILY_NAMES)
    patterns = [
        re.compile(r"family\.name\s*(==|!=|\bin\b|\bnot in\b)"),
        re.compile(r"\.name\.(startswith|endswith)\("),
        re.compile(rf"(==|!=|\bin\b)\s*[\(\[{{]?\s*[\"']({names})[\"']"),
        re.compile(rf"[\"']({names})[\"']\s*(==|!=)"),
        re.compile(rf"\.startswith\(\s*[\"']({names})"),
    ]
    offending = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in patterns):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


@pytest.mark.benchmark
def test_retrained_default_network_reproduces_the_shipped_results(tmp_path):
    """Retrain the quick profile's network (minutes on 2 cores) and compare with the results
    committed in benchmarks/results/optimality-quick (held-out numbers: same seeds)."""
    shipped = json.loads(
        (ROOT / "benchmarks/results/optimality-quick/cartoons/results.json").read_text()
    )
    out = tmp_path / "out"
    main(["--retrain", "--runs", str(tmp_path / "runs"), "--out", str(out), "--no-progress"])
    result = _results(out, "cartoons")
    assert result["network"]["reused"] is False
    assert result["network"]["config"] == shipped["network"]["config"]
    # the same weights, bit for bit, as the shipped ones
    trained = torch.load(Path(result["network"]["run_dir"]) / "model.pt")
    key = Path(result["network"]["run_dir"]).name
    reference = torch.load(ROOT / "benchmarks" / "weights" / key / "model.pt")
    assert trained.keys() == reference.keys()
    assert all(torch.equal(trained[k], reference[k]) for k in reference)
    assert list(result["mse"]) == list(shipped["mse"])
    for key in ("mse", "mse_se", "psnr"):
        for name in shipped[key]:
            np.testing.assert_allclose(result[key][name], shipped[key][name], rtol=1e-6)
    for key in ("ratio_to_best_reference", "ratio_to_best_reference_raw"):
        np.testing.assert_allclose(result[key]["ratio"], shipped[key]["ratio"], rtol=1e-6)
    assert result["kl_best_reference_per_sigma"] == shipped["kl_best_reference_per_sigma"]
    for new, old in zip(result["kl_curves"], shipped["kl_curves"], strict=True):
        assert new["kind"] == old["kind"] and new["reference"] == old["reference"]
        np.testing.assert_allclose(new["value"], old["value"], rtol=1e-6)
