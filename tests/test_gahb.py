"""End to end: the GAHB benchmark's command line, its files, and its refusals of bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from benchmarks.gahb import DEFAULT, PAPER, QUICK, GahbConfig, main
from benchmarks.jacobian_speed import per_pixel_jacobian
from models.bfcnn import BFCNN
from theory.jacobian import jacobian

TINY = [
    "--size", "16", "--n-images", "2", "--sigmas", "0.05,0.2", "--grid-sigma", "0.2",
    "--steps", "6", "--n-train", "20", "--channels", "4", "--blocks", "2",
    "--batch-size", "8", "--no-progress",
]  # fmt: skip


def test_tiny_run_writes_every_file_with_consistent_numbers(tmp_path):
    out = tmp_path / "out"
    main(["--family", "gaussian,disks", "--runs", str(tmp_path / "runs"), "--out", str(out), *TINY])
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["family"], float(r["sigma"])) for r in rows] == [
        ("gaussian", 0.05), ("gaussian", 0.2), ("disks", 0.05), ("disks", 0.2)
    ]  # fmt: skip
    for family in ("gaussian", "disks"):
        for name in ("eigenvectors.png", "spectra.png", "compaction.png", "results.json"):
            assert (out / family / name).stat().st_size > 0
        spectra = np.load(out / family / "spectra.npz")
        assert spectra["eigvals"].shape == (2, 2, 256)
        assert np.all(np.diff(spectra["eigvals"], axis=2) <= 1e-9)  # decreasing
        result = json.loads((out / family / "results.json").read_text())
        for s in result["sigmas"]:
            # every fixed basis is complete here (PCA of 20 images is not): its best k-term
            # curve reaches 1 at d terms, and tr J is the sum of the eigenvalues
            assert s["captured_at"]["200"]["wavelet_db4"] <= 1 + 1e-9
            assert s["homogeneity"] < 1e-5  # bias-free network
    gaussian = json.loads((out / "gaussian" / "results.json").read_text())["sigmas"]
    trace = np.load(out / "gaussian" / "spectra.npz")["eigvals"].sum(axis=2)
    assert np.allclose(np.median(trace, axis=1), [s["trace"] for s in gaussian], rtol=1e-6)
    assert all(s["optimum_trace"] > 0 for s in gaussian)
    disks = json.loads((out / "disks" / "results.json").read_text())["sigmas"]
    assert all(len(s["tangent_cosines"]) == 5 for s in disks)
    # the disk posterior's Jacobian Cov[x | y]/σ²: PSD, its trace near the manifold's 5
    optimum = np.load(out / "disks" / "spectra.npz")["optimum_eigvals"]
    assert optimum.shape == (2, 2, 256) and optimum.min() > -1e-9
    assert all(2 < s["optimum_trace"] < 8 for s in disks)
    for s in gaussian + disks:
        assert 0 <= s["leading_asymmetry"] and 0 <= s["asymmetric_output"]
        assert s["mse_symmetric"] > 0
    assert (out / "effective_dimension.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--family", "nope"], "unknown family"),
        (["--sigmas", "0,0.1", "--grid-sigma", "0.1"], "sigma must be > 0"),
        (["--sigmas", "0.1,0.2", "--grid-sigma", "0.3"], "--grid-sigma 0.3 must be one of"),
        (["--alphas", "0"], "--alphas must be positive"),
        (["--size", "80"], "pass --top-k"),
        (["--size", "16", "--top-k", "256"], "--top-k must be between 1 and 255"),
        (["--size", "20", "--family", "gaussian"], "cannot pass 3 UNet levels"),
        (["--device", "cuda:9"], "cuda"),
    ],
)
def test_bad_input_stops_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out), "--runs", str(tmp_path / "runs"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_profiles_hold_the_documented_scope():
    assert {DEFAULT.size, QUICK.size, PAPER.size} == {32, 80}
    assert PAPER.top_k is not None and DEFAULT.top_k is None
    assert DEFAULT.family_names() == ["cartoons", "disks", "shuffled_faces", "gaussian"]
    assert DEFAULT.alphas == (2.0, 4.0)
    with pytest.raises(ValueError, match="--n-images"):
        GahbConfig(n_images=0)


def test_per_pixel_jacobian_of_the_speed_benchmark_equals_the_batched_one():
    net = BFCNN(depth=3, channels=4).double().eval()
    y = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = lambda v, s: net(v)  # noqa: E731
    assert torch.allclose(per_pixel_jacobian(f, y, 0.1), jacobian(f, y, 0.1)[0], atol=1e-12)
