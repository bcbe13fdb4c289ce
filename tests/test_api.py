"""The Python API: evaluate callables of one's own against a family's references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.api import Evaluation, evaluate
from benchmarks.optimality import main
from models.patch_denoisers import bm3d_available
from models.runstore import load_run
from synthetic import get_family

SIGMAS = np.geomspace(0.01, 1, 5)
SMALL = {"sigmas": SIGMAS, "n_test": 8, "n_train": 20}


def shrink(y, sigma):
    """Linear shrinkage towards 0.5: ∇f = I / (1 + σ²/0.04), so tr ∇f = d / (1 + σ²/0.04)."""
    return 0.5 + (y - 0.5) / (1 + sigma**2 / 0.04)


def through_numpy(y, sigma):
    """The identity computed outside torch: torch cannot differentiate it."""
    return torch.from_numpy(y.detach().cpu().numpy().copy())


@pytest.fixture(scope="module")
def cartoons_result() -> Evaluation:
    family = get_family("cartoons", size=16)
    return evaluate({"shrink": shrink, "identity": through_numpy}, family, **SMALL)


def test_plain_functions_get_ratios_and_kl_against_the_best_reference(cartoons_result):
    r = cartoons_result
    assert r.d == 256 and r.n_test == 8 and r.n_train == 20
    assert set(r.references) == {
        "memorizer",
        "wiener_pca",
        "wavelet_db4_hard",
        "ti_wavelet_db4_hard",
        "curvelet",
        "nlm",
    } | ({"bm3d"} if bm3d_available() else set())
    assert list(r.mse) == ["shrink", "identity", *r.references]
    best = np.min([r.mse[n] for n in r.references], axis=0)
    for name in ("shrink", "identity"):
        np.testing.assert_allclose(r.ratio[name], r.mse[name] / best, rtol=1e-12)
        np.testing.assert_allclose(r.psnr[name], 10 * np.log10(1 / r.mse[name]))
        # Cartoons know no optimum: only the estimate against the best reference.
        assert [(k["kind"], k["reference"]) for k in r.kl[name]] == [("estimate", "best_reference")]
    np.testing.assert_allclose([r.mse[n][j] for j, n in enumerate(r.best_reference)], best)
    # The identity's MSE is σ² up to Monte Carlo error (4 standard errors).
    assert np.all(np.abs(r.mse["identity"] - SIGMAS**2) < 4 * r.mse_se["identity"])


def test_effective_dimension_is_measured_where_torch_can_differentiate(cartoons_result):
    r = cartoons_result
    eff = r.effective_dimension["shrink"]
    assert eff["method"] == "exact" and eff["denoiser"] == "shrink"
    np.testing.assert_allclose(eff["trace"], 256 / (1 + SIGMAS**2 / 0.04), rtol=1e-5)
    assert "identity" not in r.effective_dimension
    assert "differentiate" in r.skipped["identity"]
    assert "identity: no effective dimension" in r.table()


def test_result_table_and_json(cartoons_result, tmp_path):
    table = cartoons_result.table()
    assert "shrink" in table and "best reference:" in table and "KL (estimate" in table
    path = tmp_path / "out" / "shrink.json"
    cartoons_result.write_json(path)
    written = json.loads(path.read_text())
    assert written["options"]["n_test"] == 8 and written["options"]["denoisers"] == [
        "shrink",
        "identity",
    ]
    for key in ("git", "versions", "timestamp", "machine", "command"):
        assert key in written
    np.testing.assert_allclose(written["ratio"]["shrink"], cartoons_result.ratio["shrink"])
    assert written["kl"]["shrink"][0]["kind"] == "estimate"
    assert not list(path.parent.glob(".*")), "temporary files left behind"


def test_family_with_an_oracle_gives_the_upper_bound_first():
    family = get_family("cartoons_gaussian", size=16)
    r = evaluate({"shrink": shrink}, family, effective_dimension=False, **SMALL)
    assert family.optimum.kl_kind == "upper_bound"
    kinds = [(k["kind"], k["reference"]) for k in r.kl["shrink"]]
    assert kinds == [("upper_bound", "genie"), ("estimate", "best_reference")]
    assert "genie" in r.mse and "genie" not in r.references and r.effective_dimension == {}
    # The genie's error is below every reference's, so the bound lies above the estimate.
    assert np.all(r.kl["shrink"][0]["value"] >= r.kl["shrink"][1]["value"] - 1e-9)


def test_names_of_references_are_refused():
    family = get_family("cartoons", size=16)
    with pytest.raises(ValueError, match="taken by the family's references"):
        evaluate({"memorizer": shrink}, family, **SMALL)


def test_a_stored_network_gets_the_benchmarks_numbers(tmp_path):
    """The API and the optimality benchmark share one held-out evaluation."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    main(
        ["--family", "gaussian", "--size", "16", "--n-test", "8", "--n-train", "20"]
        + ["--sigmas", "0.01:1:5", "--no-progress", "--channels", "4", "--blocks", "2"]
        + ["--steps", "6", "--batch-size", "8", "--symmetry-shifts", "0"]
        + ["--runs", str(runs), "--out", str(out)]
    )
    bench = json.loads((out / "gaussian" / "results.json").read_text())
    net, run = load_run(bench["network"]["run_dir"])
    assert run.config.to_dict() == bench["network"]["config"]
    family = get_family("gaussian", size=16)
    r = evaluate({"unet": net}, family, **SMALL)
    assert list(r.mse) == list(bench["mse"])
    for name in bench["mse"]:
        np.testing.assert_allclose(r.mse[name], bench["mse"][name], rtol=1e-12)
    np.testing.assert_allclose(r.ratio["unet"], bench["ratio_to_best_reference"]["ratio"])
    for mine, theirs in zip(r.kl["unet"], bench["kl_curves"], strict=True):
        assert (mine["kind"], mine["reference"]) == (theirs["kind"], theirs["reference"])
        np.testing.assert_allclose(mine["value"], theirs["value"], rtol=1e-12)
    assert r.kl["unet"][0]["kind"] == family.optimum.kl_kind == "exact"
    for key in ("trace", "sse", "sure"):
        np.testing.assert_allclose(
            r.effective_dimension["unet"][key], bench["effective_dimension"][key], rtol=1e-6
        )


@pytest.mark.benchmark
def test_the_readme_example_runs(tmp_path, monkeypatch):
    """The README's example as written (10 000 training images: about half a minute)."""
    monkeypatch.chdir(tmp_path)
    family = get_family("cartoons", size=32, alpha=2.0)
    result = evaluate({"shrink": shrink}, family, sigmas=np.geomspace(1e-3, 1, 13), n_test=64)
    assert "shrink" in result.table()
    assert result.kl["shrink"][0]["kind"] == "estimate"
    result.write_json("out/shrink.json")
    assert (tmp_path / "out" / "shrink.json").exists()
