"""Objectives (sigma laws, weights), the training loop, exact resume and the run store."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from models import checkpoint, training
from models.objectives import OBJECTIVES, get_objective, sigma_range
from models.runstore import RunStore, load_run
from models.training import TrainConfig, build_network, epoch_order, learning_rate, train

N_SIGMA = 20_000
CUT = math.sqrt(0.02 / 1.5)  # the edm paper law cut at sigma_min = 0.02, sigma_max = 1.5


def paper_cut_cdf(s):
    return (np.sqrt(s / 1.5) - CUT) / (1 - CUT)


def half_planes(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Two-intensity images split by a random straight edge (n, 1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-0.5, 0.5, size)
    angle = 2 * math.pi * torch.rand(n, 1, 1, 1, generator=g)
    offset = torch.rand(n, 1, 1, 1, generator=g) - 0.5
    lo = 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    hi = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    proj = torch.cos(angle) * t.view(1, 1, -1, 1) + torch.sin(angle) * t.view(1, 1, 1, -1)
    return torch.where(proj > offset, hi, lo)


def tiny_config(**changes) -> TrainConfig:
    base = {
        "network_params": {"channels": 4, "blocks": 2},
        "objective": "edm",
        "batch_size": 8,
        "samples_per_epoch": 24,
        "epochs": 2,
        "seed": 7,
    }
    return TrainConfig(**(base | changes))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Interrupted(Exception):
    """Stands for a kill right after the first checkpoint is on disk."""


def interrupt_after_first_checkpoint(monkeypatch):
    real = checkpoint.save_checkpoint

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)


# --- objectives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "law", "wrong"),
    [
        ("paper", {"sigma_max": 0.8}, lambda s: np.sqrt(s / 0.8), stats.uniform(0, 0.8).cdf),
        (
            "kl",
            {"sigma_min": 1e-3, "sigma_max": 2.0},
            stats.loguniform(1e-3, 2.0).cdf,
            stats.loguniform(1e-3, 1.0).cdf,
        ),
        (
            "edm",
            {"sigma_min": 2e-3, "sigma_max": 1.5},
            stats.loguniform(2e-3, 1.5).cdf,
            stats.loguniform(1e-3, 1.5).cdf,
        ),
        (
            "edm",
            {"law": "log_normal", "p_mean": -1.5, "p_std": 0.9},
            stats.lognorm(s=0.9, scale=math.exp(-1.5)).cdf,
            stats.lognorm(s=1.0, scale=math.exp(-1.5)).cdf,
        ),
        (
            "edm",
            {"law": "paper", "sigma_min": 0.02, "sigma_max": 1.5},
            paper_cut_cdf,
            lambda s: np.sqrt(s / 1.5),  # the same law without the cut
        ),
        (
            "edm",
            {"law": "mixed", "mix": 0.3, "sigma_min": 0.02, "sigma_max": 1.5},
            lambda s: 0.3 * stats.loguniform(0.02, 1.5).cdf(s) + 0.7 * paper_cut_cdf(s),
            lambda s: 0.4 * stats.loguniform(0.02, 1.5).cdf(s) + 0.6 * paper_cut_cdf(s),
        ),
    ],
    ids=["paper", "kl", "edm-log-uniform", "edm-log-normal", "edm-paper-cut", "edm-mixed"],
)
def test_sigma_law(name, params, law, wrong):
    objective = get_objective(name, **params)
    sigma = objective.sample_sigma(N_SIGMA, torch.Generator().manual_seed(11))
    assert sigma.shape == (N_SIGMA,) and sigma.dtype == torch.float32
    sample = sigma.double().numpy()
    assert stats.kstest(sample, law).pvalue > 1e-3
    assert stats.kstest(sample, wrong).pvalue < 1e-6  # the test can tell laws apart


def test_objective_weights():
    sigma = torch.tensor([1e-3, 0.1, 0.25, 1.0], dtype=torch.float64)
    assert torch.equal(get_objective("paper").weight(sigma), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(
        get_objective("kl").weight(sigma),
        torch.tensor([1e6, 100.0, 16.0, 1.0], dtype=torch.float64),
    )
    # EDM, sigma_d = 0.25: 1/sigma^2 + 16; at sigma = sigma_d it is 2/sigma_d^2 = 32
    assert torch.allclose(
        get_objective("edm").weight(sigma),
        torch.tensor([1e6 + 16, 116.0, 32.0, 17.0], dtype=torch.float64),
    )
    assert torch.allclose(get_objective("edm", sigma_d=0.5).weight(sigma), 1 / sigma**2 + 4)


def test_loss_is_the_weighted_mse_of_the_drawn_noise():
    x = half_planes(6, size=8, seed=1).double()
    net = lambda y, sigma: 0.7 * y  # noqa: E731  (a shrinker: loss depends on sigma and x)
    objective = get_objective("edm")
    g = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    loss = objective(net, x, g)
    lo, hi = math.log(1e-3), math.log(1.0)
    sigma = torch.exp(lo + (hi - lo) * torch.rand(6, generator=replay)).double()
    z = torch.randn(x.shape, generator=replay, dtype=torch.float64)
    mse = ((0.7 * (x + sigma.view(-1, 1, 1, 1) * z) - x) ** 2).mean(dim=(1, 2, 3))
    weight = (sigma**2 + 0.0625) / (sigma**2 * 0.0625)
    assert torch.allclose(loss, (weight * mse).mean(), rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        # identity denoiser: mse = sigma^2 * mean(z^2), so loss -> E[w(sigma) sigma^2]
        ("paper", {"sigma_max": 0.5}, 0.25 / 5),  # E[u^4] = 1/5
        ("kl", {}, 1.0),
        (
            "edm",
            {"sigma_min": 0.01, "sigma_max": 1.0},
            1 + (1.0 - 1e-4) / (2 * math.log(100.0)) / 0.0625,
        ),  # 1 + E[sigma^2] / sigma_d^2
        (
            "edm",
            {"law": "paper", "sigma_min": 0.01, "sigma_max": 1.0, "sigma_d": 0.1},
            1 + (1 - 0.1**5) / (5 * (1 - 0.1)) / 0.01,
        ),  # sigma = v^2, v ~ U(0.1, 1): E[sigma^2] = E[v^4] = (1 - 0.1^5) / (5 (1 - 0.1))
        (
            "edm",
            {"law": "mixed", "mix": 0.25, "sigma_min": 0.01, "sigma_max": 1.0, "sigma_d": 0.1},
            1
            + 0.25 * (1.0 - 1e-4) / (2 * math.log(100.0)) / 0.01
            + 0.75 * (1 - 0.1**5) / (5 * (1 - 0.1)) / 0.01,
        ),  # the mixture's E[sigma^2] is the mixture of the two above
    ],
)
def test_loss_of_identity_matches_closed_form(name, params, expected):
    objective = get_objective(name, **params)
    x = torch.full((4000, 1, 4, 4), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    sigma, mse = objective.terms(lambda y, s: y, x, g)
    per_image = (objective.weight(sigma) * mse).numpy()
    se = per_image.std(ddof=1) / math.sqrt(per_image.size)
    assert abs(per_image.mean() - expected) < 3 * se


def test_objective_registry_and_keys():
    assert set(OBJECTIVES) >= {"paper", "kl", "edm"}
    with pytest.raises(ValueError, match=r"unknown objective 'l2': choose one of \['edm', 'kl'"):
        get_objective("l2")
    with pytest.raises(ValueError, match="has no parameter"):
        get_objective("kl", sigma_d=0.3)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        get_objective("kl", sigma_min=1.0, sigma_max=0.1)
    with pytest.raises(ValueError, match="unknown sigma law"):
        get_objective("edm", law="uniform")
    with pytest.raises(ValueError, match="0 <= mix <= 1"):
        get_objective("edm", law="mixed", mix=1.5)
    assert get_objective("kl", sigma_max=1).to_dict() == {
        "name": "kl",
        "sigma_min": 1e-3,
        "sigma_max": 1.0,
    }
    json.dumps(get_objective("edm").to_dict())


def test_sigma_range_gives_each_objective_its_range_and_law():
    assert sigma_range("paper", 1e-3, 2.0) == {"sigma_max": 2.0}
    assert sigma_range("kl", 1e-3, 2.0) == {"sigma_min": 1e-3, "sigma_max": 2.0}
    edm = get_objective("edm", **sigma_range("edm", 1e-3, 2.0, "log_normal"))
    assert edm.law == "log_normal" and edm.sigma_max == 2.0
    with pytest.raises(ValueError, match="option of the edm objective, not of 'paper'"):
        sigma_range("paper", 1e-3, 2.0, "log_normal")
    assert sigma_range("edm", 1e-3, 1.5, "paper", 0.1) == {
        "sigma_min": 1e-3,
        "sigma_max": 1.5,
        "law": "paper",
        "sigma_d": 0.1,
    }
    with pytest.raises(ValueError, match="sigma_d is an option of the edm objective"):
        sigma_range("kl", 1e-3, 1.0, sigma_d=0.1)


# --- training -----------------------------------------------------------------------------


def test_epoch_order_gives_every_image_equal_exposure():
    g = torch.Generator().manual_seed(0)
    for n in (1, 3, 10, 70):
        counts = torch.bincount(epoch_order(n, 100, g), minlength=n)
        assert counts.sum() == 100 and counts.min() == 100 // n and counts.max() == -(-100 // n)
    assert not torch.equal(epoch_order(10, 100, g), epoch_order(10, 100, g))  # shuffled


def test_training_reduces_denoising_error(tmp_path):
    config = tiny_config(
        network_params={"channels": 8, "blocks": 2},
        objective="paper",
        lr=5e-3,
        batch_size=16,
        samples_per_epoch=16 * 20,
        epochs=2,
    )
    net = build_network(config)
    test = half_planes(64, seed=1)
    noisy = test + 0.2 * torch.randn(test.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = ((net.eval()(noisy) - test) ** 2).mean().item()
    history = train(net, half_planes(32), config, tmp_path, progress=False)
    assert [h["step"] for h in history] == [20, 40]
    assert history[1]["loss"] < history[0]["loss"] and history[1]["psnr"] > history[0]["psnr"]
    with torch.no_grad():
        after = ((net(noisy) - test) ** 2).mean().item()
    # held-out images: clearly below the untrained network and the noisy input (sigma^2)
    assert after < 0.5 * min(before, 0.2**2)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    images = half_planes(5)
    config = tiny_config()
    whole = build_network(config)
    history = train(whole, images, config, tmp_path / "whole", progress=False)
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["step"] == 6

    interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Interrupted):
        train(build_network(config), images, config, tmp_path / "split", progress=False)
    monkeypatch.undo()
    resumed = build_network(config)  # a fresh process would start from the seeded init
    assert not same_weights(resumed, whole)
    history = train(resumed, images, config, tmp_path / "split", progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert same_weights(resumed, whole)


def test_learning_rate_is_step_lr_then_cooldown():
    config = tiny_config(lr=0.1, lr_step_epochs=2, lr_gamma=0.3, epochs=7, max_steps=19)
    assert config.steps_per_epoch() == 3 and config.total_steps() == 19
    # independent computation: torch's StepLR stepped once per epoch
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.3)
    expected = []
    for _ in range(7):
        expected += [optimizer.param_groups[0]["lr"]] * 3
        optimizer.step()  # no gradient: changes nothing, keeps torch's call order
        step_lr.step()
    assert [learning_rate(config, k) for k in range(19)] == pytest.approx(expected[:19])
    cooled = replace(config, cooldown_steps=4, cooldown_lr=1e-4)
    assert [learning_rate(cooled, k) for k in range(19)] == pytest.approx(
        expected[:15] + [1e-4] * 4
    )
    with pytest.raises(ValueError, match="integers >= 0: {'cooldown_steps': -1}"):
        replace(config, cooldown_steps=-1)


@pytest.mark.parametrize("ema_halflife", [0, 2])
def test_resume_equals_uninterrupted_through_a_cooldown(tmp_path, monkeypatch, ema_halflife):
    images = half_planes(5)
    # the cooldown starts inside epoch 1; the weight average must resume too
    config = tiny_config(cooldown_steps=4, cooldown_lr=3e-4, ema_halflife=ema_halflife)
    whole = build_network(config)
    history = train(whole, images, config, tmp_path / "whole", progress=False)
    assert [h["lr"] for h in history] == [3e-4, 3e-4]
    interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Interrupted):
        train(build_network(config), images, config, tmp_path / "split", progress=False)
    monkeypatch.undo()
    resumed = build_network(config)
    train(resumed, images, config, tmp_path / "split", progress=False)
    assert same_weights(resumed, whole)
    plain = build_network(config)
    train(plain, images, replace(config, cooldown_steps=0), tmp_path / "plain", progress=False)
    assert not same_weights(plain, whole)  # the cooldown changed the run


def test_weight_average_is_the_exponential_average_of_the_iterates(tmp_path, monkeypatch):
    halflife, images = 2, half_planes(5)
    config = tiny_config(ema_halflife=halflife)
    net, iterates = build_network(config), []

    class Recording(torch.optim.Adam):
        def step(self, *args, **kwargs):
            super().step(*args, **kwargs)
            iterates.append({k: v.clone() for k, v in net.state_dict().items()})

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    train(net, images, config, tmp_path, progress=False)
    assert len(iterates) == config.total_steps() == 6
    # closed form: the first iterate weighs beta**(T-1), iterate t > 1 weighs (1-beta) beta**(T-t)
    beta, n = 0.5 ** (1 / halflife), len(iterates)
    weights = [beta ** (n - 1)] + [(1 - beta) * beta ** (n - t) for t in range(2, n + 1)]
    assert sum(weights) == pytest.approx(1)
    assert weights[-1 - halflife] == pytest.approx(weights[-1] / 2)  # the half-life
    for name, value in net.state_dict().items():
        expected = sum(w * it[name] for w, it in zip(weights, iterates, strict=True))
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    assert not all(torch.equal(iterates[-1][k], v) for k, v in net.state_dict().items())


def test_step_budget_stops_mid_epoch(tmp_path):
    config = tiny_config(max_steps=4)
    history = train(build_network(config), half_planes(5), config, tmp_path, progress=False)
    assert [h["step"] for h in history] == [3, 4]


def test_corrupt_or_foreign_checkpoint_fails_clearly(tmp_path):
    images = half_planes(5)
    config = tiny_config(epochs=1)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is corrupt or from another configuration .*: delete it"):
        train(build_network(config), images, config, tmp_path, progress=False)
    (tmp_path / "checkpoint.pt").unlink()
    train(build_network(config), images, config, tmp_path, progress=False)
    other = tiny_config(epochs=1, lr=2e-3)
    with pytest.raises(ValueError, match="configuration differs.*delete it to retrain"):
        train(build_network(other), images, other, tmp_path, progress=False)
    assert not list(tmp_path.glob("*.tmp"))


def test_config_validation_and_canonical_form():
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="nosuch")
    with pytest.raises(ValueError, match="unknown network 'resnet': choose one of"):
        TrainConfig(network="resnet")
    with pytest.raises(ValueError, match="has no parameter"):
        TrainConfig(network="bfcnn", network_params={"blocks": 2})
    with pytest.raises(ValueError, match="integers >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr > 0"):
        TrainConfig(lr=-1.0)
    implicit = TrainConfig(objective="kl", objective_params={"sigma_max": 1})
    explicit = TrainConfig(
        network_params={"channels": 64, "blocks": 3},
        objective="kl",
        objective_params={"sigma_min": 0.001},
    )
    assert implicit.to_dict() == explicit.to_dict()
    assert json.loads(json.dumps(implicit.to_dict())) == implicit.to_dict()


def test_cpu_fast_path_is_compiled_and_deterministic(tmp_path, monkeypatch):
    calls = {"compiled": 0, "steps": 0}
    compile_ = torch.compile

    def spy(module, **options):
        calls["compiled"] += 1
        assert options == {"dynamic": False}  # static shapes: numbers independent of history
        compiled = compile_(module, **options)

        def step(*args, **kwargs):
            calls["steps"] += 1
            return compiled(*args, **kwargs)

        return step

    monkeypatch.setattr(training.torch, "compile", spy)
    images = half_planes(5)
    nets, histories = [], []
    for run, fast in enumerate((True, True, False)):
        config = tiny_config(fast=fast, epochs=1)
        nets.append(build_network(config))
        histories.append(train(nets[-1], images, config, tmp_path / str(run), progress=False))
    # the two fast runs, and only they, train through the compiled module at every step
    assert calls == {"compiled": 2, "steps": 2 * config.total_steps()}
    assert same_weights(nets[0], nets[1])  # a compiled rerun is bit for bit the same
    # the compiled step computes the same loss as eager mode, up to rounding
    assert histories[0][0]["loss"] == pytest.approx(histories[2][0]["loss"], rel=1e-3)


def test_run_store_reuses_finished_runs(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    images = half_planes(5)
    config, data = tiny_config(), {"family": "half_planes", "n": 5, "part": "A"}
    first = store.get_or_train(config, data, images, progress=False)
    run = store.run_dir(config, data, images.shape)
    assert {p.name for p in run.iterdir()} == {
        "config.json",
        "checkpoint.pt",
        "model.pt",
        "metrics.json",
    }
    assert json.loads((run / "config.json").read_text())["data"] == data
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train", no_training)
    again = store.get_or_train(config, data, images, progress=False)
    assert same_weights(first, again) and not again.training
    # another description of the data is another run
    with pytest.raises(AssertionError, match="trained again"):
        store.get_or_train(config, data | {"part": "B"}, images, progress=False)


def test_run_store_resumes_partial_runs(tmp_path, monkeypatch):
    images = half_planes(5)
    config, data = tiny_config(), {"family": "half_planes", "n": 5}
    reference = RunStore(tmp_path / "a").get_or_train(config, data, images, progress=False)
    store = RunStore(tmp_path / "b")
    interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Interrupted):
        store.get_or_train(config, data, images, progress=False)
    monkeypatch.undo()
    assert store.load(config, data, images.shape) is None  # not finished
    assert same_weights(store.get_or_train(config, data, images, progress=False), reference)
    assert (
        store.run_dir(config, data, images.shape).name
        == RunStore(tmp_path / "a").run_dir(config, data, images.shape).name
    )
    with pytest.raises(ValueError, match="plain JSON"):
        store.run_dir(config, {"n": np.int64(5)}, images.shape)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_trains_and_resumes(tmp_path, monkeypatch):
    images = half_planes(5)
    config = tiny_config(device="cuda", fast=True, objective="paper", lr=5e-3)
    interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Interrupted):
        train(build_network(config), images, config, tmp_path, progress=False)
    monkeypatch.undo()
    net = build_network(config)
    history = train(net, images, config, tmp_path, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert next(net.parameters()).device.type == "cuda"
    y = images.cuda()
    with torch.no_grad():
        assert torch.allclose(net(3 * y), 3 * net(y), rtol=1e-4, atol=1e-6)


def test_shipped_store_is_found_and_never_written(tmp_path, monkeypatch):
    images = half_planes(5)
    config, data = tiny_config(), {"family": "half_planes", "n": 5, "part": "A"}
    trained = RunStore(tmp_path / "shipped").get_or_train(config, data, images, progress=False)
    shipped = tmp_path / "shipped"
    before = sorted(p.name for p in shipped.rglob("*"))

    def no_training(*args, **kwargs):
        raise AssertionError("a shipped run was trained again")

    monkeypatch.setattr(training, "train", no_training)
    store = RunStore(tmp_path / "user", shipped=(shipped,))
    run = store.find(config, data, tuple(images.shape))
    assert run is not None and run.parent == shipped
    loaded = store.get_or_train(config, data, images, progress=False)
    assert same_weights(loaded, trained)
    assert sorted(p.name for p in shipped.rglob("*")) == before
    assert not (tmp_path / "user").exists()
    # without the shipped store the same key is a new run
    with pytest.raises(AssertionError, match="trained again"):
        RunStore(tmp_path / "user").get_or_train(config, data, images, progress=False)


def test_load_run_returns_the_network_and_its_record(tmp_path):
    images = half_planes(5)
    config, data = tiny_config(), {"family": "half_planes", "n": 5, "part": "A"}
    store = RunStore(tmp_path)
    trained = store.get_or_train(config, data, images, progress=False)
    net, run = load_run(store.run_dir(config, data, tuple(images.shape)))
    assert same_weights(net, trained) and not net.training
    assert (
        run.config.to_dict() == config.to_dict()
        and run.data == data
        and run.shape == tuple(images.shape)
    )
    assert run.metrics["history"][-1]["step"] == config.total_steps()
    with pytest.raises(ValueError, match="not a finished run"):
        load_run(tmp_path / "missing")
    metrics = (run.path / "metrics.json").read_text()
    (run.path / "metrics.json").write_text("{")
    with pytest.raises(ValueError) as err:
        load_run(run.path)
    assert str(err.value).count("corrupt") == 1 and str(run.path / "metrics.json") in str(err.value)
    (run.path / "metrics.json").write_text(metrics)
    (run.path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="is corrupt.*delete the folder"):
        load_run(run.path)


# --- checkpoints inside an epoch, Ctrl-C, kills -----------------------------------------


def test_time_checkpoints_inside_an_epoch_resume_exactly(tmp_path, monkeypatch):
    images = half_planes(5)
    config = tiny_config(samples_per_epoch=40, epochs=2, cooldown_steps=3, fast=False)
    reference = build_network(config)
    expected = train(reference, images, config, tmp_path / "ref", progress=False)
    saves = []
    real = checkpoint.save_checkpoint

    def save_then_die(path, meta, modules, optimizer, generators, progress):
        real(path, meta, modules, optimizer, generators, progress)
        saves.append(progress["position"])
        if len(saves) == 3:
            raise Interrupted

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    net = build_network(config)
    with pytest.raises(Interrupted):
        # a tiny interval: a checkpoint after every step
        train(net, images, config, tmp_path / "run", progress=False, checkpoint_s=1e-9)
    assert saves[-1] is not None and saves[-1]["k"] == 3  # killed inside the first epoch
    monkeypatch.setattr(training, "save_checkpoint", real)
    resumed = build_network(config)
    history = train(resumed, images, config, tmp_path / "run", progress=False)
    assert same_weights(resumed, reference)
    assert [h["loss"] for h in history] == [h["loss"] for h in expected]


def test_cooldown_start_writes_a_checkpoint(tmp_path, monkeypatch):
    images = half_planes(5)
    config = tiny_config(samples_per_epoch=40, epochs=1, cooldown_steps=2, fast=False)
    positions = []
    real = checkpoint.save_checkpoint

    def record(path, meta, modules, optimizer, generators, progress):
        real(path, meta, modules, optimizer, generators, progress)
        positions.append(None if progress["position"] is None else progress["step"])

    monkeypatch.setattr(training, "save_checkpoint", record)
    train(build_network(config), images, config, tmp_path, progress=False)
    assert positions == [config.total_steps() - 2, None]


def test_sigint_writes_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    images = half_planes(5)
    config = tiny_config(samples_per_epoch=40, epochs=2, fast=False)
    reference = build_network(config)
    train(reference, images, config, tmp_path / "ref", progress=False)
    objective_terms = type(config.make_objective()).terms
    calls = {"n": 0}

    def terms_then_ctrl_c(self, net, x, generator):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return objective_terms(self, net, x, generator)

    monkeypatch.setattr(type(config.make_objective()), "terms", terms_then_ctrl_c)
    net = build_network(config)
    with pytest.raises(training.TrainingInterrupted) as info:
        train(net, images, config, tmp_path / "run", progress=False)
    assert info.value.step == 4 and info.value.checkpoint.exists()
    monkeypatch.setattr(type(config.make_objective()), "terms", objective_terms)
    resumed = build_network(config)
    train(resumed, images, config, tmp_path / "run", progress=False)
    assert same_weights(resumed, reference)


KILL_SCRIPT = """
import sys, torch
from models.training import TrainConfig, build_network, train
config = TrainConfig(network_params={"channels": 4, "blocks": 2}, objective="edm",
                     batch_size=8, samples_per_epoch=48, epochs=2, seed=7, fast=False)
images = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
net = build_network(config)
train(net, images, config, sys.argv[1], progress=False, checkpoint_s=float(sys.argv[2]))
torch.save(net.state_dict(), sys.argv[1] + "/final.pt")
"""


def test_sigkill_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path):
    def run(folder, interval, kill_after=None):
        command = [sys.executable, "-c", KILL_SCRIPT, str(folder), str(interval)]
        proc = subprocess.Popen(command, cwd=Path(__file__).parent.parent)
        if kill_after is None:
            assert proc.wait(timeout=300) == 0
            return
        checkpoint_file = folder / training.CHECKPOINT
        deadline = time.monotonic() + 300
        # wait for a random number of checkpoints (one per step), then kill without warning
        seen = set()
        while len(seen) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            if checkpoint_file.exists():
                seen.add(checkpoint_file.stat().st_mtime_ns)
            time.sleep(0.005)
        proc.kill()
        proc.wait()

    kill_after = int(np.random.default_rng(3).integers(1, 10))  # a seeded "random" step
    run(tmp_path / "ref", 1e9)
    run(tmp_path / "killed", 1e-9, kill_after=kill_after)
    run(tmp_path / "killed", 1e9)
    ref = torch.load(tmp_path / "ref" / "final.pt")
    resumed = torch.load(tmp_path / "killed" / "final.pt")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref), f"killed after {kill_after}"
