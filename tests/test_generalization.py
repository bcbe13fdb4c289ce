"""The memorization-to-generalization sweep end to end, on tiny configurations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage import io

import benchmarks.generalization as gen
from models.memorizer import Memorizer
from synthetic import get_family
from synthetic.disks import render_disks
from theory.similarity import MEASURES, correlation_matrix, cosine_similarity_matrix

TINY = [
    "--size",
    "8",
    "--channels",
    "4",
    "--blocks",
    "1",
    "--batch-size",
    "16",
    "--samples-per-epoch",
    "64",
    "--epochs",
    "1",
    "--n-samples",
    "3",
    "--n-eval",
    "4",
    "--n-test",
    "6",
    "--sigmas",
    "0.01:1:3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One tiny disk sweep (n = 1, 2), with every sampler call recorded."""
    root = tmp_path_factory.mktemp("sweep")
    out, runs = root / "out", root / "runs"
    calls = []
    real = gen.stochastic_ascent

    def spy(denoiser, y0, **kwargs):
        record = {"denoiser": denoiser, "y0": y0.clone(), "noise": []}
        calls.append(record)
        kwargs["callback"] = lambda state: record["noise"].append(state["noise"].clone())
        return real(denoiser, y0, **kwargs)

    argv = [*TINY, "--family", "disks", "--sizes-n", "1,2", "--runs", str(runs), "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen, "stochastic_ascent", spy)
        result = gen.main(argv)
    return {"out": out, "runs": runs, "argv": argv, "calls": calls, "result": result}


def test_sweep_writes_every_key_and_file(sweep):
    out = sweep["out"]
    result = json.loads((out / "results.json").read_text())
    for key in (
        "experiment",
        "profile",
        "settings",
        "family",
        "sizes",
        "capacity_per_part",
        "capped",
        "train",
        "sampler",
        "sigma",
        "test_reference",
        "runs",
        "expectations",
        "command",
        "device",
        "machine",
        "wall_s",
    ):
        assert key in result, key
    assert result["sizes"] == [1, 2] and result["family"]["name"] == "disks"
    assert result["train"]["A"]["seed"] != result["train"]["B"]["seed"]
    assert result["capacity_per_part"] is None  # generated family: unlimited (inf -> null)
    n_sigma, k = 3, 3
    for run in result["runs"]:
        assert set(run) >= {
            "n",
            "networks",
            "input_psnr",
            "denoising",
            "sampling",
            "similarity",
            "quality",
        }
        for part in ("A", "B"):
            net = run["networks"][part]
            assert net["steps"] == 4 and net["images_seen"] == 64
            curves = run["denoising"][part]
            for key in (
                "train_psnr",
                "test_psnr",
                "memorizer_train_psnr",
                "memorizer_test_psnr",
                "train_mse",
                "test_mse",
            ):
                assert len(curves[key]) == n_sigma, key
            assert curves["kl"]["kind"] == "exact_vs_memorizer"
            assert len(curves["kl"]["value"]) == n_sigma and len(curves["kl"]["se"]) == n_sigma
            assert curves["n_train_rows"] == 4
            assert len(run["sampling"][part]["steps"]) == k
            for where in ("own", "other"):
                entry = run["similarity"][part][where]
                assert all(len(entry[m]) == k for m in MEASURES) and len(entry["index"]) == k
            assert len(run["quality"][part]["nearest_test_rms"]) == k
            assert len(run["quality"][part]["disk_fit_rms"]) == k
        assert all(len(run["similarity"]["AB"][m]) == k for m in MEASURES)
        assert {"own_cosine", "own_correlation", "AB_cosine", "AB_correlation"} <= set(
            run["similarity"]["medians"]
        )
    # The memorizer of one image is exact on it: PSNR inf, stored as null.
    assert result["runs"][0]["denoising"]["A"]["memorizer_train_psnr"] == [None] * n_sigma
    assert {
        "n1_min_nearest_cosine",
        "n1_memorized",
        "largest_n_AB_agree",
        "largest_n_quality_ratio",
        "largest_n_median_disk_fit_rms",
    } <= set(result["expectations"])
    for name in (
        "summary.csv",
        "samples.npz",
        "grid.png",
        "histograms.png",
        "curves.png",
        "psnr.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("n,train_psnr_A")
    assert not list(out.glob(".*")), "temporary files left behind"
    assert not (out / "order.txt").exists()


def test_a_and_b_share_initial_and_injected_noise(sweep):
    calls = sweep["calls"]
    assert len(calls) == 4  # A and B for each of the two sizes
    y0 = calls[0]["y0"]
    for first, second in zip(calls[::2], calls[1::2], strict=True):
        assert first["denoiser"] is not second["denoiser"]
        assert torch.equal(first["y0"], second["y0"]) and torch.equal(first["y0"], y0)
        common = min(len(first["noise"]), len(second["noise"]))
        assert common >= 1
        for a, b in zip(first["noise"][:common], second["noise"][:common], strict=True):
            assert torch.equal(a, b)
    # The networks of A and B differ (different data and initialisation).
    a, b = calls[0]["denoiser"], calls[1]["denoiser"]
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # Same y0 for every n, as in the paper's figure; it is centred at 0.5.
    saved = np.load(sweep["out"] / "samples.npz")
    assert np.array_equal(saved["y0"], y0.numpy())


def test_nearest_neighbours_match_brute_force(sweep):
    result = sweep["result"]
    saved = np.load(sweep["out"] / "samples.npz")
    family = get_family("disks", size=8, seed=0)
    matrices = {"cosine": cosine_similarity_matrix, "correlation": correlation_matrix}
    for run in result["runs"]:
        n = run["n"]
        train = {p: family.images(p, n) for p in ("A", "B")}
        samples = {p: torch.from_numpy(saved[f"{p}_n{n}"]) for p in ("A", "B")}
        for part, other in (("A", "B"), ("B", "A")):
            for where, ref in (("own", train[part]), ("other", train[other])):
                entry = run["similarity"][part][where]
                search = matrices[run["similarity"]["search_measure"]](samples[part], ref)
                assert entry["index"] == search.argmax(1).tolist()
                nearest = ref[entry["index"]]
                for m in MEASURES:
                    expected = torch.diagonal(matrices[m](samples[part], nearest))
                    np.testing.assert_allclose(entry[m], expected.numpy(), atol=1e-6)
            np.testing.assert_array_equal(
                saved[f"nearest_{part}_n{n}"],
                train[part][run["similarity"][part]["own"]["index"]].numpy(),
            )
        for m in MEASURES:
            expected = torch.diagonal(matrices[m](samples["A"], samples["B"]))
            np.testing.assert_allclose(run["similarity"]["AB"][m], expected.numpy(), atol=1e-6)


def test_rerun_loads_networks_from_the_store(sweep, tmp_path):
    before = sorted(p.name for p in sweep["runs"].iterdir())
    argv = list(sweep["argv"])
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    result = gen.main(argv)
    assert sorted(p.name for p in sweep["runs"].iterdir()) == before
    assert all(r["networks"][p]["reused"] for r in result["runs"] for p in ("A", "B"))
    first = sweep["result"]["runs"][0]["similarity"]["AB"]["cosine"]
    assert result["runs"][0]["similarity"]["AB"]["cosine"] == first  # deterministic


def test_memorizer_against_itself_has_zero_kl_and_equal_psnr():
    family = get_family("disks", size=8, seed=0)
    train, test = family.images("A", 3), family.images("test", 4)
    curves = gen.denoising_curves(
        Memorizer(train), train, test, np.geomspace(0.01, 1, 4), n_eval=5, seed=0, progress=False
    )
    assert curves["n_train_rows"] == 6  # 3 images, each twice: the uniform training law
    np.testing.assert_allclose(curves["kl"]["value"], 0.0, atol=1e-12)
    np.testing.assert_allclose(curves["train_psnr"], curves["memorizer_train_psnr"])
    np.testing.assert_allclose(curves["test_psnr"], curves["memorizer_test_psnr"])


def test_training_rows_weigh_every_image_equally():
    train = torch.arange(3.0).reshape(3, 1, 1, 1)
    rows = gen.training_rows(train, 7)
    assert torch.bincount(rows.flatten().long()).tolist() == [3, 3, 3]
    assert torch.equal(gen.training_rows(train, 2), train[:2])


def test_disk_fit_residual_measures_distance_to_the_manifold():
    family = get_family("disks", size=16, seed=0)
    clean = family.images("test", 6)
    assert np.all(gen.disk_fit_rms(clean, family) < 0.01)
    # A disk exactly on the search grid is fitted exactly.
    prior = family.prior
    theta = np.array([[prior.low[0], prior.high[1], prior.low[2], 0.9, 0.1]])
    on_grid = torch.from_numpy(render_disks(theta, 16)).float().reshape(1, 1, 16, 16)
    assert gen.disk_fit_rms(on_grid, family)[0] < 1e-6
    # Noise of rms 0.05 stays (the fit has 5 parameters in 256 pixels).
    noise = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = gen.disk_fit_rms(clean + noise, family)
    rms = noise.flatten(1).square().mean(1).sqrt().numpy()
    np.testing.assert_allclose(noisy, rms, rtol=0.1)
    random = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert np.all(gen.disk_fit_rms(random, family) > 0.2)


def test_nearest_rms_excludes_self():
    x = torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(gen.nearest_rms(x, x, exclude_self=True), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(gen.nearest_rms(x[:1] + 0.5, x), [0.5])


def test_a_diverged_sample_is_reported_not_averaged():
    train = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    samples = train[[3, 1]].clone()
    samples[1, 0, 0, 0] = math.nan
    near = gen.nearest_training(samples, train, "cosine")
    assert near["index"] == [3, -1]
    assert near["cosine"][0] == pytest.approx(1.0) and math.isnan(near["cosine"][1])
    family = get_family("disks", size=4, seed=0)
    quality = gen.sample_quality(samples, train, family)
    assert quality["nearest_test_rms"][0] == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(quality["nearest_test_rms"][1]) and math.isnan(quality["disk_fit_rms"][1])
    assert gen.median([1.0, math.nan, 3.0]) == 2.0 and math.isnan(gen.median([math.nan]))


def test_faces_from_a_written_folder_with_the_paper_profile(tmp_path):
    folder = tmp_path / "celeba"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # independent noise images: no near-duplicates
        io.imsave(folder / f"{i:03d}.png", (rng.random((12, 10)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    # The paper profile's sizes (up to 10^5) are capped at what the folder holds per part.
    argv = [
        *TINY,
        "--profile",
        "paper",
        "--device",
        "cpu",
        "--family",
        "faces",
        "--faces-dir",
        str(folder),
        "--n-test",
        "4",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(out),
    ]
    result = gen.main(argv)
    family = get_family("faces", size=8, seed=0, folder=str(folder))
    assert family.capacity("A") == 8 and result["sizes"] == [1, 8]
    assert "capped" in result["capped"] and "100000" in result["capped"]
    order = (out / "order.txt").read_text().splitlines()
    assert order == family.order and len(order) == 20
    saved = json.loads((out / "results.json").read_text())
    assert saved["order_file"] == "order.txt" and saved["capacity_per_part"] == 8
    assert saved["profile"] == "paper" and saved["train"]["A"]["objective"] == "paper"
    run = result["runs"][1]
    own = run["similarity"]["A"]["own"]
    assert own["source"] == [family.sources("A", 8)[i] for i in own["index"]]
    other = run["similarity"]["B"]["other"]
    assert other["source"] == [family.sources("A", 8)[i] for i in other["index"]]
    assert set(family.sources("A", 8)).isdisjoint(family.sources("B", 8))


def test_default_sizes_are_capped_with_a_note():
    sizes, note = gen.choose_sizes((1, 10, 100, 1000), False, 40, "faces")
    assert sizes == (1, 10, 40) and "40" in note
    assert gen.choose_sizes((1, 10), False, float("inf"), "disks") == ((1, 10), None)
    with pytest.raises(ValueError, match="use n <= 40"):
        gen.choose_sizes((1, 100), True, 40, "faces")


def test_quick_is_the_quick_profile():
    args = gen.build_parser().parse_args(["--quick"])
    assert gen.resolve_profile(args) == gen.PROFILES["quick"]
    args = gen.build_parser().parse_args(["--profile", "paper", "--epochs", "2"])
    profile = gen.resolve_profile(args)
    assert (profile.family, profile.size, profile.channels, profile.epochs) == ("faces", 80, 64, 2)
    assert profile.device == "cuda" and gen.PROFILES["default"].device == "cpu"
    # A step budget alone sets the epochs (250 steps each by default) and caps the last one.
    args = gen.build_parser().parse_args(["--steps", "1100"])
    assert gen.resolve_profile(args).epochs == 5
    configs = gen.setup(args).configs
    assert configs["A"].max_steps == 1100 and configs["A"].epochs == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--family", "faces", "--faces-dir", "/nonexistent/celeba"], "not found"),
        (["--family", "faces", "--sizes-n", "1,100"], "use n <= 40"),
        (["--sigmas", "0,0.1,1"], "sigma must be > 0"),
        (["--sigma-final", "0"], "sigma must be > 0"),
        (["--sigma0=-1"], "sigma must be > 0"),
        (["--sizes-n", "0,1"], "set sizes must be integers >= 1"),
        (["--size", "12", "--blocks", "3"], "multiple of 8"),
        (["--family", "nosuch"], "unknown family"),
        (["--beta", "0"], "--beta must lie in (0, 1]"),
        (["--n-samples", "0"], "--n-samples must be an integer >= 1"),
        (["--quick", "--profile", "paper"], "--quick is the quick profile"),
        (["--faces-dir", "/tmp"], "--faces-dir needs --family faces"),
        (["--device", "nosuch"], "unknown device"),
        (["--steps", "0"], "integers >= 1"),
        (["--objective", "paper", "--sigma-law", "log_normal"], "option of the edm objective"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        gen.main([*argv, "--out", str(out), "--runs", str(tmp_path / "runs"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_kl_from_the_exact_optimum_on_gaussian_fields():
    family = get_family("gaussian", size=8, seed=0)
    optimum = gen.exact_optimum(family)
    assert optimum is not None and gen.exact_optimum(get_family("disks", size=8)) is None
    train, test = family.images("A", 3), family.images("test", 32)
    sigma = np.geomspace(0.01, 1, 5)
    exact = gen.denoising_curves(
        optimum, train, test, sigma, n_eval=3, seed=0, progress=False, optimum=optimum
    )
    assert exact["kl_test"]["kind"] == "exact_vs_optimum"
    np.testing.assert_allclose(exact["kl_test"]["value"], 0.0, atol=1e-9)
    np.testing.assert_allclose(exact["test_psnr"], exact["optimum_test_psnr"])
    # The memorizer of 3 images is far from the law p; the optimum of p is far from them.
    memorized = gen.denoising_curves(
        Memorizer(train), train, test, sigma, n_eval=3, seed=0, progress=False, optimum=optimum
    )
    assert memorized["kl_test"]["value"][0] > 10 * memorized["kl_test"]["se"][0] > 0
    assert exact["kl"]["value"][0] > 10 * exact["kl"]["se"][0] > 0


def test_gaussian_sweep_reports_the_kl_from_the_exact_optimum(tmp_path):
    argv = [*TINY, "--family", "gaussian", "--sizes-n", "1", "--sigmas", "0.001,0.01,1"]
    result = gen.main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    curves = result["runs"][0]["denoising"]["A"]
    assert curves["kl_test"]["kind"] == "exact_vs_optimum"
    assert len(curves["kl_test"]["value"]) == 3 and len(curves["optimum_test_psnr"]) == 3
    header = (tmp_path / "out" / "summary.csv").read_text().splitlines()[0].split(",")
    row = (tmp_path / "out" / "summary.csv").read_text().splitlines()[1].split(",")
    i = gen.kl_index(np.asarray(result["sigma"]), result["sampler"]["sigma_final"])
    assert result["sigma"][i] == pytest.approx(0.01)  # the sampler's last sigma
    assert float(row[header.index("kl_test_A")]) == pytest.approx(curves["kl_test"]["value"][i])
