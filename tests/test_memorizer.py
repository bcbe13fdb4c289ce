"""The memorizer against independent computations: autograd Tweedie, softmax, Stein, limits."""

from __future__ import annotations

import math

import pytest
import torch

from models.memorizer import Memorizer
from theory.empirical import empirical_log_density, empirical_posterior_mean
from theory.jacobian import trace_exact


def _train(n: int, size: int, spread: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Images around grey with per-pixel spread ``spread`` (small spread: posteriors mix)."""
    g = torch.Generator().manual_seed(seed)
    return (0.5 + spread * torch.randn(n, 1, size, size, generator=g, dtype=dtype)).clamp(0, 1)


def _direct_log_density(y: torch.Tensor, train: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log p_sigma(y) up to a y-independent constant, from direct differences ||y - x_i||^2."""
    sq = (y.flatten(1)[:, None, :] - train.flatten(1)[None, :, :]).square().sum(-1)
    return torch.logsumexp(-sq / (2 * sigma[:, None] ** 2), dim=1)


def _tweedie_autograd(y: torch.Tensor, train: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    y = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_direct_log_density(y, train, sigma).sum(), y)
    return (y + sigma[:, None, None, None] ** 2 * grad).detach()


@pytest.mark.parametrize("sigma", [0.05, 0.2, 1.0, torch.tensor([0.03, 0.1, 0.3, 1.0, 3.0, 0.07])])
def test_memorizer_is_tweedie_of_smoothed_empirical_law(sigma):
    train = _train(40, 6, 0.1, seed=0)
    g = torch.Generator().manual_seed(1)
    s = torch.as_tensor(sigma, dtype=torch.float64).expand(6)
    z = torch.randn(6, 1, 6, 6, generator=g, dtype=torch.float64)
    y = train[:6] + s[:, None, None, None] * z
    expected = _tweedie_autograd(y, train, s)
    got = Memorizer(train)(y, sigma)
    rel = (got - expected).flatten(1).norm(dim=1) / expected.flatten(1).norm(dim=1)
    assert rel.max() < 1e-6


def test_log_density_is_normalised_and_matches_direct_formula():
    # d = 1: the density integrates to one (trapezoid on a fine grid).
    train = torch.tensor([0.1, 0.4, 0.45], dtype=torch.float64).reshape(3, 1)
    grid = torch.linspace(-4.0, 5.0, 20001, dtype=torch.float64).reshape(-1, 1)
    density = empirical_log_density(grid, train, 0.3).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-9)
    # d = 36: against the mixture of Gaussians written directly.
    train = _train(7, 6, 0.2, seed=2)
    y = _train(5, 6, 0.3, seed=3)
    sigma = torch.tensor([0.1, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    const = math.log(7) + 18 * torch.log(2 * math.pi * sigma**2)
    expected = _direct_log_density(y, train, sigma) - const
    torch.testing.assert_close(empirical_log_density(y, train, sigma), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("near", [True, False])
def test_tiny_sigma_returns_nearest_training_image(near):
    g = torch.Generator().manual_seed(4)
    train = torch.rand(1000, 1, 32, 32, generator=g)
    y = torch.rand(8, 1, 32, 32, generator=g)
    if near:
        y = train[torch.arange(8) * 97] + 1e-4 * torch.randn(8, 1, 32, 32, generator=g)
    nearest = torch.cdist(y.flatten(1).double(), train.flatten(1).double()).argmin(1)
    out = Memorizer(train)(y, 1e-4)
    assert torch.isfinite(out).all()
    assert torch.equal(out, train[nearest])


def test_pruning_matches_full_softmax_in_float64():
    # Two far-apart clusters of 250 images: weights across clusters fall below eps / n.
    train = torch.cat([_train(250, 8, 0.05, seed=5) - 0.2, _train(250, 8, 0.05, seed=6) + 0.2])
    g = torch.Generator().manual_seed(7)
    both, first = torch.arange(0, 500, 32), torch.arange(0, 250, 16)
    eps = torch.finfo(torch.float64).eps
    # (sigma, queries, whether the union of kept weights is at most n / 2: the gathered path)
    for sigma, idx, gathered in [(0.02, both, True), (0.2, first, True), (0.2, both, False)]:
        y = train[idx] + sigma * torch.randn(len(idx), 1, 8, 8, generator=g, dtype=torch.float64)
        sq = (y.flatten(1)[:, None] - train.flatten(1)[None]).square().sum(-1)
        weights = torch.softmax(-sq / (2 * sigma**2), dim=1)
        # The case exercises what it claims: weights are pruned, the kept union is small or not.
        assert bool(((weights > 0) & (weights <= eps / 500)).any())
        assert ((weights > eps / 500).any(0).sum().item() <= 250) == gathered
        expected = (weights @ train.flatten(1)).reshape(y.shape)
        torch.testing.assert_close(Memorizer(train)(y, sigma), expected, rtol=0, atol=1e-13)


def test_float32_agrees_with_float64():
    train = _train(300, 8, 0.1, seed=7)
    g = torch.Generator().manual_seed(8)
    sigma = torch.tensor([0.05, 0.1, 0.3, 1.0]).repeat(4)
    y = train[:16] + sigma.double()[:, None, None, None] * torch.randn(
        16, 1, 8, 8, generator=g, dtype=torch.float64
    )
    out64 = Memorizer(train)(y, sigma.double())
    out32 = Memorizer(train.float())(y.float(), sigma)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=2e-5)


def test_stein_mse_equals_sigma2_expected_trace():
    """SSE*(sigma) = sigma^2 E tr grad f*(y), x uniform on the training set (Monte Carlo)."""
    train = _train(12, 4, 0.15, seed=9)  # neighbours about 0.85 apart: posteriors mix
    g = torch.Generator().manual_seed(10)
    mem = Memorizer(train)
    for sigma in [0.25, 0.6]:
        idx = torch.randint(0, 12, (2000,), generator=g)
        x = train[idx]
        y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        sse = (mem(y, sigma) - x).flatten(1).square().sum(1)
        diff = sse - sigma**2 * trace_exact(mem, y, sigma)
        se = diff.std() / math.sqrt(diff.numel())
        assert abs(diff.mean()) < 3 * se, (sigma, diff.mean().item(), se.item())
        assert sse.mean() > 10 * se  # the error itself is far from zero: the check has teeth


def test_to_dtype_and_protocol():
    train = _train(20, 4, 0.1, seed=11, dtype=torch.float32)
    mem = Memorizer(train)
    mem64 = mem.to(torch.float64)
    assert mem64.train.dtype == torch.float64 and mem64.name == "memorizer"
    assert mem.train.dtype == torch.float32  # a copy, the original is unchanged
    y = train[:3].double() + 0.1
    torch.testing.assert_close(mem(y, 0.2), mem64(y, 0.2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), torch.tensor([0.1, 0.0])])
def test_bad_sigma_raises(sigma):
    train = _train(5, 4, 0.1, seed=12)
    with pytest.raises(ValueError, match="sigma"):
        Memorizer(train)(train[:2], sigma)


def test_bad_shapes_raise():
    train = _train(5, 4, 0.1, seed=13)
    with pytest.raises(ValueError, match="trailing shape"):
        Memorizer(train)(torch.zeros(2, 1, 5, 5, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match=r"\(n, 1, H, W\)"):
        Memorizer(train[:, 0])
    with pytest.raises(ValueError, match="trailing shape"):
        empirical_posterior_mean(torch.zeros(2, 3), torch.zeros(4, 5), 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    train = _train(200, 8, 0.1, seed=14)
    y = _train(16, 8, 0.2, seed=15)
    sigma = torch.linspace(0.02, 1.0, 16, dtype=torch.float64)
    cpu = Memorizer(train)(y, sigma)
    gpu = Memorizer(train).to("cuda")(y.cuda(), sigma.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-12)
