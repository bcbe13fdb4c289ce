"""End to end: the GAHB benchmark's command line, its files, and its refusals of bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from benchmarks.gahb import DEFAULT, PAPER, QUICK, GahbConfig, main
from benchmarks.gahb.cli import build_parser, config_from_args
from benchmarks.gahb.measure import contour_measures
from benchmarks.jacobian_speed import per_pixel_jacobian
from models.bfcnn import BFCNN
from synthetic.cartoons import CartoonFamily
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
        (["--quick", "--profile", "paper"], "--quick is the quick profile"),
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


def test_quick_is_the_quick_profile():
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--quick"])) == QUICK
    assert config_from_args(parser.parse_args(["--quick", "--n-images", "1"])).n_images == 1


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


def test_contour_measures_against_constructed_eigenvectors():
    family = CartoonFamily(size=8, seed=0)
    masks = family.masks("test", 2)[:, 0].numpy()
    crossed = (masks > 0) & (masks < 1)
    assert crossed.any(axis=1).all()  # the contour crosses every column of every image
    d = 64
    eigvecs = np.zeros((2, d, 2))
    eigvecs[:, :, 1] = 1 / np.sqrt(d)  # spread evenly: the band's share of the pixels
    for b in range(2):
        eigvecs[b, np.flatnonzero(crossed[b])[0], 0] = 1.0  # on the contour
    m = contour_measures(family, 2, eigvecs, k=2)
    np.testing.assert_allclose(m["contour_energy"], (1 + m["contour_area"]) / 2)
    assert (m["contour_area"] > crossed.reshape(2, -1).mean(1)).all()  # dilated


def test_cartoon_masks_are_the_images_regions():
    family = CartoonFamily(size=16, seed=3)
    x = family.images("A", 5)[:, 0].double().numpy()
    m = family.masks("A", 5)[:, 0].numpy()
    assert np.array_equal(m, family.masks("A", 9)[:5, 0].numpy())  # prefix-consistent
    assert np.isin(m, [0, 0.25, 0.5, 0.75, 1]).all()
    assert (np.diff(m, axis=1) >= 0).all()  # 1 below a contour that is a function of column
    # One side lies in [0, 1/2], the other in [1/2, 1]: the mask separates them.
    below, above = x[m == 1], x[m == 0]
    assert below.size and above.size
    for b in range(5):
        lo, hi = x[b][m[b] == 1], x[b][m[b] == 0]
        assert (lo.max() <= 0.5 + 1e-12 and hi.min() >= 0.5 - 1e-12) or (
            lo.min() >= 0.5 - 1e-12 and hi.max() <= 0.5 + 1e-12
        )
