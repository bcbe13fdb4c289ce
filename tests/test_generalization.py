"""The memorization-to-generalization sweep end to end, on tiny configurations, and its parts."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io

import benchmarks.generalization as gen
from benchmarks.common import derive_seed, median
from benchmarks.evaluation import risk_curves
from benchmarks.generalization import cli, config, measure, plots, prepare, report, sampling, stats
from models.local_score import LocalScoreMachine
from models.memorizer import Memorizer
from synthetic import FAMILY_NAMES, get_family
from synthetic.disks import render_disks
from theory.kl import kl_curve
from theory.similarity import MEASURES, correlation_matrix, cosine_similarity_matrix

PACKAGE = Path(gen.__file__).parent
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
    real = sampling.stochastic_ascent

    def spy(denoiser, y0, **kwargs):
        record = {
            "denoiser": denoiser,
            "y0": y0.clone(),
            "noise": [],
            "seed": kwargs["generator"].initial_seed(),
        }
        calls.append(record)
        kwargs["callback"] = lambda state: record["noise"].append(state["noise"].clone())
        return real(denoiser, y0, **kwargs)

    argv = [*TINY, "--family", "disks", "--sizes-n", "1,2", "--runs", str(runs), "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sampling, "stochastic_ascent", spy)
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
        "seeds",
        "sampler",
        "sigma",
        "test_reference",
        "runs",
        "expectations",
        "command",
        "options",
        "git",
        "versions",
        "timestamp",
        "device",
        "machine",
        "wall_s",
    ):
        assert key in result, key
    assert result["sizes"] == [1, 2] and result["family"]["name"] == "disks"
    assert result["options"]["family"] == "disks" and result["options"]["sizes"] == [1, 2]
    assert set(result["settings"]) == set(config.PROFILE_FIELDS)
    assert result["settings"]["sigmas"] == "0.01:1:3" and result["settings"]["size"] == 8
    assert result["capacity_per_part"] is None  # generated family: unlimited (inf -> null)
    assert len(result["test_reference"]["disk_fit_rms"]) == 6  # min(32, n_test) clean disks
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
            assert set(net) == {
                "run_dir",
                "reused",
                "seed",
                "train_wall_s",
                "parameters",
                "steps",
                "images_seen",
                "final_loss",
                "final_train_psnr",
            }
            assert net["steps"] == 4 and net["images_seen"] == 64 and not net["reused"]
            assert net["seed"] == derive_seed(0, "network", part)
            assert Path(net["run_dir"]).parent == sweep["runs"]
            curves = run["denoising"][part]
            for key in (
                "train_psnr",
                "test_psnr",
                "memorizer_train_psnr",
                "memorizer_test_psnr",
                "train_mse",
                "test_mse",
                "optimum_test_psnr",
            ):
                assert len(curves[key]) == n_sigma, key
            assert curves["kl"]["kind"] == "exact_vs_memorizer"
            assert curves["kl"]["reference"] == "memorizer"
            assert len(curves["kl"]["value"]) == n_sigma and len(curves["kl"]["se"]) == n_sigma
            # Disks declare an exact optimum (the disk posterior mean): the KL from the law.
            assert curves["kl_test"]["kind"] == "exact_vs_optimum"
            assert curves["kl_test"]["reference"] == "disk_posterior"
            assert curves["n_train_rows"] == 4
            assert len(run["sampling"][part]["steps"]) == k
            for where in ("own", "other"):
                entry = run["similarity"][part][where]
                assert all(len(entry[m]) == k for m in MEASURES) and len(entry["index"]) == k
                assert "source" not in entry  # a generated family names no sources
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
    for name in ("summary.csv", "samples.npz", *plots.FIGURES, *plots.LOCAL_SCORE_FIGURES):
        assert (out / name).stat().st_size > 0, name
    # Network A against the local score machines: 4 held-out images (the last 2 calibrate).
    for run in result["runs"]:
        local = run["local_score"]
        assert local["n_images"] == 4 and local["n_train_machines"] == run["n"]
        assert all(len(local["r2_median"][k]) == n_sigma for k in ("els", "ls", "memorizer"))
        els = local["els_samples"]
        assert len(els["r2_to_network"]) == len(els["nearest"]["index"]) == k
        assert max(els["nearest"]["index"]) < run["n"]
    lines = (out / "summary.csv").read_text().splitlines()
    assert lines[0].split(",") == report.SUMMARY_HEADER and len(lines) == 3
    assert not list(out.glob(".*")), "temporary files left behind"
    assert not (out / "order.txt").exists() and "order_file" not in result


def test_the_streams_are_derived_by_name(sweep):
    seeds = sweep["result"]["seeds"]
    names = {
        "network_A": ("network", "A"),
        "network_B": ("network", "B"),
        "initial_noise": ("initial-noise",),
        "injected_noise": ("injected-noise",),
        "training_rows": ("training-rows",),
        "held_out": ("held-out",),
        "local_score": ("local-score",),
    }
    assert seeds == {"root": 0, **{k: derive_seed(0, *v) for k, v in names.items()}}
    assert len(set(seeds.values())) == len(seeds)  # no two streams coincide
    assert config.stream_seeds(1) != config.stream_seeds(0)
    train = sweep["result"]["train"]
    assert train["A"]["seed"] == seeds["network_A"] != train["B"]["seed"] == seeds["network_B"]
    sampler = sweep["result"]["sampler"]
    assert sampler["initial_noise_seed"] == seeds["initial_noise"]
    assert sampler["injected_noise_seed"] == seeds["injected_noise"]
    # The sampler's injected noise comes from its named stream, for A, B and the ELS machine.
    assert [c["seed"] for c in sweep["calls"]] == [seeds["injected_noise"]] * 6


def test_a_b_and_the_els_machine_share_initial_and_injected_noise(sweep):
    calls = sweep["calls"]
    assert len(calls) == 6  # A, B and the ELS machine of A's set for each of the two sizes
    assert all(isinstance(c["denoiser"], LocalScoreMachine) for c in calls[2::3])
    y0 = calls[0]["y0"]
    pairs = [(c[0], c[1]) for c in zip(calls[::3], calls[1::3], calls[2::3], strict=True)]
    pairs += [(c[0], c[2]) for c in zip(calls[::3], calls[1::3], calls[2::3], strict=True)]
    for first, second in pairs:
        assert first["denoiser"] is not second["denoiser"]
        assert torch.equal(first["y0"], second["y0"]) and torch.equal(first["y0"], y0)
        common = min(len(first["noise"]), len(second["noise"]))
        assert common >= 1
        for a, b in zip(first["noise"][:common], second["noise"][:common], strict=True):
            assert torch.equal(a, b)
    # The networks of A and B differ (different data and initialisation).
    a, b = calls[0]["denoiser"], calls[1]["denoiser"]
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # Same y0 for every n, as in the paper's figure: N(0.5, 1) from the initial-noise stream.
    generator = torch.Generator().manual_seed(derive_seed(0, "initial-noise"))
    expected = 0.5 + torch.randn(3, 1, 8, 8, generator=generator)
    assert torch.equal(y0, expected)
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
    kl = [r["runs"][0]["denoising"]["A"]["kl_test"]["value"] for r in (result, sweep["result"])]
    np.testing.assert_array_equal(kl[0], kl[1])
    # The loaded networks give the numbers of the runs that trained them, bit for bit.
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    first = json.loads((sweep["out"] / "results.json").read_text())
    for new, old in zip(again["runs"], first["runs"], strict=True):
        assert new["denoising"] == old["denoising"] and new["similarity"] == old["similarity"]


def test_figures_are_drawn_again_from_the_files(sweep, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("results.json", "samples.npz"):
        (folder / name).write_bytes((sweep["out"] / name).read_bytes())
    images = plots.load_images(folder / "samples.npz")
    assert sorted(images) == [1, 2]
    assert set(images[2]) == {"A", "B", "nearest_A", "nearest_B", "els", "nearest_els"}
    assert images[2]["A"].shape == (3, 1, 8, 8)
    plots.replot(folder)
    for name in plots.FIGURES + plots.LOCAL_SCORE_FIGURES:
        assert (folder / name).stat().st_size > 0, name


def test_memorizer_against_itself_has_zero_kl_and_equal_psnr():
    family = get_family("disks", size=8, seed=0)
    train, test = family.images("A", 3), family.images("test", 4)
    curves = measure.denoising_curves(
        Memorizer(train), train, test, np.geomspace(0.01, 1, 4), n_eval=5, seed=0
    )
    assert curves["n_train_rows"] == 6  # 3 images, each twice: the uniform training law
    np.testing.assert_allclose(curves["kl"]["value"], 0.0, atol=1e-12)
    np.testing.assert_allclose(curves["train_psnr"], curves["memorizer_train_psnr"])
    np.testing.assert_allclose(curves["test_psnr"], curves["memorizer_test_psnr"])
    assert "kl_test" not in curves  # no optimum given


def test_training_rows_weigh_every_image_equally():
    train = torch.arange(3.0).reshape(3, 1, 1, 1)
    rows = measure.training_rows(train, 7)
    assert torch.bincount(rows.flatten().long()).tolist() == [3, 3, 3]
    assert torch.equal(measure.training_rows(train, 2), train[:2])


def test_disk_fit_residual_measures_distance_to_the_manifold():
    family = get_family("disks", size=16, seed=0)
    clean = family.images("test", 6)
    assert np.all(family.distance_to_manifold(clean) < 0.01)
    # A disk exactly on the search grid is fitted exactly.
    prior = family.prior
    theta = np.array([[prior.low[0], prior.high[1], prior.low[2], 0.9, 0.1]])
    on_grid = torch.from_numpy(render_disks(theta, 16)).float().reshape(1, 1, 16, 16)
    assert family.distance_to_manifold(on_grid)[0] < 1e-6
    # Noise of rms 0.05 stays (the fit has 5 parameters in 256 pixels).
    noise = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = family.distance_to_manifold(clean + noise)
    rms = noise.flatten(1).square().mean(1).sqrt().numpy()
    np.testing.assert_allclose(noisy, rms, rtol=0.1)
    random = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert np.all(family.distance_to_manifold(random) > 0.2)
    # A family without a manifold distance reports none, and the quality has no such key.
    gaussian = get_family("gaussian", size=8, seed=0)
    assert gaussian.distance_to_manifold(gaussian.images("test", 2)) is None
    test = gaussian.images("test", 4)
    assert set(sampling.sample_quality(test[:2], test, gaussian)) == {"nearest_test_rms"}
    assert set(sampling.held_out_reference(test, gaussian)) == {
        "nearest_test_rms",
        "median_nearest_test_rms",
    }


def test_nearest_rms_excludes_self():
    x = torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(sampling.nearest_rms(x, x, exclude_self=True), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(sampling.nearest_rms(x[:1] + 0.5, x), [0.5])


def test_a_diverged_sample_is_reported_not_averaged():
    train = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    samples = train[[3, 1]].clone()
    samples[1, 0, 0, 0] = math.nan
    near = sampling.nearest_training(samples, train, "cosine")
    assert near["index"] == [3, -1]
    assert near["cosine"][0] == pytest.approx(1.0) and math.isnan(near["cosine"][1])
    nearest = sampling.nearest_images(samples, train, near)
    assert torch.equal(nearest[0], train[3]) and nearest[1].isnan().all()
    family = get_family("disks", size=4, seed=0)
    quality = sampling.sample_quality(samples, train, family)
    assert quality["nearest_test_rms"][0] == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(quality["nearest_test_rms"][1]) and math.isnan(quality["disk_fit_rms"][1])
    assert quality["disk_fit_rms"][0] == pytest.approx(family.distance_to_manifold(samples[:1])[0])
    assert median([1.0, math.nan, 3.0]) == 2.0 and math.isnan(median([math.nan]))


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
    assert "the first 4 are held out" in saved["order_note"]
    assert saved["profile"] == "paper" and saved["train"]["A"]["objective"] == "paper"
    assert "kl_test" not in saved["runs"][0]["denoising"]["A"]  # faces: no optimum known
    assert "disk_fit_rms" not in saved["runs"][0]["quality"]["A"]
    run = result["runs"][1]
    own = run["similarity"]["A"]["own"]
    assert own["source"] == [family.sources("A", 8)[i] for i in own["index"]]
    other = run["similarity"]["B"]["other"]
    assert other["source"] == [family.sources("A", 8)[i] for i in other["index"]]
    assert set(family.sources("A", 8)).isdisjoint(family.sources("B", 8))


def test_default_sizes_are_capped_with_a_note():
    sizes, note = config.choose_sizes((1, 10, 100, 1000), False, 40, "faces")
    assert sizes == (1, 10, 40) and "40" in note
    assert config.choose_sizes((1, 10), False, float("inf"), "disks") == ((1, 10), None)
    with pytest.raises(ValueError, match="use n <= 40"):
        config.choose_sizes((1, 100), True, 40, "faces")


def _config(argv: list[str]) -> config.GeneralizationConfig:
    return cli.config_from_args(cli.build_parser().parse_args(argv))


def test_quick_is_the_quick_profile():
    assert _config(["--quick"]) == gen.PROFILES["quick"] == gen.configure("quick")
    assert _config([]) == gen.PROFILES["default"] == gen.configure()
    paper = _config(["--profile", "paper", "--epochs", "2"])
    assert (paper.family, paper.size, paper.channels, paper.epochs) == ("faces", 80, 64, 2)
    assert paper.device == "cuda" and gen.PROFILES["default"].device == "cpu"
    # A step budget alone sets the epochs (250 steps each by default) and caps the last one.
    steps = _config(["--steps", "1100"])
    assert steps.epochs == 5
    configs = gen.setup(steps).train
    assert configs["A"].max_steps == 1100 and configs["A"].epochs == 5
    # Another family keeps its own size; another objective drops the profile's edm law.
    assert _config(["--family", "disks"]).size is None
    assert _config(["--family", "disks", "--size", "8"]).size == 8
    assert _config(["--objective", "paper"]).sigma_law is None
    assert _config(["--sizes-n", "1,10"]).sizes_given and not _config([]).sizes_given


def test_profiles_are_one_frozen_dataclass():
    default = gen.PROFILES["default"]
    for name, profile in gen.PROFILES.items():
        assert type(profile) is gen.GeneralizationConfig and profile.profile == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.seed = 1
    changed = {
        f.name
        for f in dataclasses.fields(default)
        if getattr(gen.PROFILES["quick"], f.name) != getattr(default, f.name)
    }
    assert changed == {
        "profile",
        "sizes",
        "samples_per_epoch",
        "epochs",
        "lr_step_epochs",
        "n_samples",
        "n_eval",
        "n_test",
        "sigmas",
    }
    # Every option of the command line reaches the configuration.
    argv = ["--h0", "0.02", "--beta", "0.7", "--sigma0", "0.9", "--sigma-final", "0.02"]
    argv += ["--max-steps", "7", "--flow-steps", "9", "--sampler", "flow", "--measure"]
    argv += ["correlation", "--seed", "3", "--lr", "0.002", "--runs", "r", "--out", "o"]
    argv += ["--no-progress", "--n-eval", "5", "--sigmas", "0.1,0.2,0.3"]
    c = _config(argv)
    assert (c.h0, c.beta, c.sigma0, c.sigma_final, c.max_steps) == (0.02, 0.7, 0.9, 0.02, 7)
    assert (c.flow_steps, c.sampler, c.measure, c.seed, c.lr) == (9, "flow", "correlation", 3, 2e-3)
    assert (c.runs, c.out, c.progress, c.n_eval) == ("r", "o", False, 5)
    np.testing.assert_allclose(c.sigma_grid, [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_samples", 0, "--n-samples must be an integer >= 1"),
        ("n_eval", 1, "--n-eval must be an integer >= 2"),
        ("batch_size", 0, "--batch-size must be an integer >= 1"),
        ("epochs", 2.5, "--epochs must be an integer >= 1"),
        ("steps", 0, "--steps must be an integer >= 1"),
        ("seed", -1, "--seed must be an integer >= 0"),
        ("lr", 0.0, "--lr must be > 0"),
        ("h0", 1.5, "--h0 must lie in (0, 1]"),
        ("sigma_final", 2.0, "need 0 < --sigma-final < --sigma0"),
        ("sigmas", "1,2", "--sigmas: need at least 3 distinct noise levels"),
        ("sizes", (10, 1), "increasing order"),
        ("sampler", "euler", "unknown --sampler 'euler'"),
        ("family", "nosuch", "unknown family 'nosuch'"),
    ],
)
def test_a_bad_configuration_is_refused_with_the_option_to_fix(field, value, message):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(gen.PROFILES["quick"], **{field: value})
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown settings nosuch"):
        gen.configure("quick", nosuch=1)


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
        (["--flow-steps", "1"], "--flow-steps must be an integer >= 2"),
        (["--channels", "0"], "--channels must be an integer >= 1"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--quick", "--profile", "paper"], "--quick is the quick profile"),
        (["--faces-dir", "/tmp"], "--faces-dir needs a family read from a folder"),
        (["--device", "nosuch"], "unknown device"),
        (["--steps", "0"], "--steps must be an integer >= 1"),
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


def test_the_optimum_is_what_the_family_declares():
    gaussian = get_family("gaussian", size=8, seed=0)
    test = gaussian.images("test", 4)
    wiener = prepare.exact_optimum(gaussian, test)
    assert wiener is not None and wiener.name == gaussian.optimum.reference == "wiener"
    disks = get_family("disks", size=8, seed=0)
    assert prepare.exact_optimum(disks, disks.images("test", 2)).name == "disk_posterior"
    assert prepare.exact_optimum(get_family("faces", size=8), test) is None  # none known
    cartoons = get_family("cartoons_gaussian", size=8, seed=0)
    assert cartoons.optimum.kind == "lower_bound"  # a genie bound, not the optimum itself
    assert prepare.exact_optimum(cartoons, cartoons.images("test", 2)) is None


def test_kl_from_the_exact_optimum_on_gaussian_fields():
    family = get_family("gaussian", size=8, seed=0)
    train, test = family.images("A", 3), family.images("test", 32)
    sigma = np.geomspace(0.01, 1, 5)
    optimum = prepare.exact_optimum(family, test)
    held_out = measure.held_out_optimum(optimum, test, sigma, seed=0)
    exact = measure.denoising_curves(optimum, train, test, sigma, 3, 0, optimum=held_out)
    assert exact["kl_test"]["kind"] == "exact_vs_optimum"
    assert exact["kl_test"]["reference"] == "wiener"
    np.testing.assert_allclose(exact["kl_test"]["value"], 0.0, atol=1e-9)
    np.testing.assert_allclose(exact["test_psnr"], exact["optimum_test_psnr"])
    # The memorizer of 3 images is far from the law p; the optimum of p is far from them.
    memorizer = Memorizer(train)
    memorized = measure.denoising_curves(memorizer, train, test, sigma, 3, 0, optimum=held_out)
    assert memorized["kl_test"]["value"][0] > 10 * memorized["kl_test"]["se"][0] > 0
    assert exact["kl"]["value"][0] > 10 * exact["kl"]["se"][0] > 0
    # The optimum measured once equals the optimum measured beside the denoiser (same noise).
    joint = risk_curves(
        {"memorizer": memorizer, "optimum": optimum},
        test,
        sigma,
        derive_seed(0, "held-out"),
        progress=False,
    )
    expected = kl_curve(sigma, (joint.sse["memorizer"] - joint.sse["optimum"]).T)
    np.testing.assert_allclose(memorized["kl_test"]["value"], expected.value, rtol=1e-12)
    np.testing.assert_allclose(memorized["test_mse"], joint.mse("memorizer"), rtol=1e-12)


def test_gaussian_sweep_reports_the_kl_from_the_exact_optimum(tmp_path):
    argv = [*TINY, "--family", "gaussian", "--sizes-n", "1", "--sigmas", "0.001,0.01,1"]
    result = gen.main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    curves = result["runs"][0]["denoising"]["A"]
    assert curves["kl_test"]["kind"] == "exact_vs_optimum"
    assert len(curves["kl_test"]["value"]) == 3 and len(curves["optimum_test_psnr"]) == 3
    assert "disk_fit_rms" not in result["runs"][0]["quality"]["A"]
    header = (tmp_path / "out" / "summary.csv").read_text().splitlines()[0].split(",")
    row = (tmp_path / "out" / "summary.csv").read_text().splitlines()[1].split(",")
    i = stats.kl_index(np.asarray(result["sigma"]), result["sampler"]["sigma_final"])
    assert result["sigma"][i] == pytest.approx(0.01)  # the sampler's last sigma
    assert float(row[header.index("kl_test_A")]) == pytest.approx(curves["kl_test"]["value"][i])
    assert row[header.index("disk_fit_rms")] in ("nan", "")


def test_the_package_asks_families_instead_of_testing_their_names():
    source = {p.name: p.read_text() for p in PACKAGE.glob("*.py")}
    assert {"config.py", "measure.py", "sampling.py", "report.py", "plots.py", "cli.py"} <= set(
        source
    )
    names = "|".join(re.escape(n) for n in FAMILY_NAMES)
    tests = [
        r"\.name\s*(==|!=)",  # family.name == "..."
        r"\.name\s+(not\s+)?in\b",  # family.name in (...)
        rf"(==|!=|\bin)\s*[(\[{{]?\s*[\"']({names})[\"']",  # x == "gaussian", x in ("faces", ...
        rf"[\"']({names})[\"']\s*(==|!=|\bin\b)",  # "disks" == x
    ]
    for name, text in source.items():
        for pattern in tests:
            assert not re.search(pattern, text), (name, pattern)
    # The patterns do catch a test on the name (the check cannot pass vacuously).
    for sample in ('if family.name == "disks":', 'if s.family.name in ("faces", "x"):'):
        assert any(re.search(p, sample) for p in tests), sample
    for name, text in source.items():
        assert len(text.splitlines()) <= 420, name  # modules of ~400 lines at most


def test_the_gpu_script_parses_with_the_command_line():
    script = (Path(__file__).parent.parent / "benchmarks" / "gpu_generalization.sh").read_text()
    arrays = re.findall(r"args=\((.*?)\)", script, flags=re.S)
    assert len(arrays) == 2  # the TINY rehearsal and the GPU run
    assert "-m benchmarks.generalization" in script
    for text in arrays:
        argv = shlex.split(text.replace("\\\n", " "))
        c = _config([*argv, "--runs", "r", "--out", "o", "--no-progress"])
        assert c.steps is not None and c.sizes_given and c.device in ("cpu", "cuda")
    tiny = _config([*shlex.split(arrays[0]), "--no-progress"])
    assert gen.setup(tiny).sizes == (1, 4)
