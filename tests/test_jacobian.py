"""Jacobians, exact and Hutchinson traces, and SURE against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theory.gaussian import gaussian_mmse
from theory.jacobian import jacobian, sure, trace_exact, trace_hutchinson
from theory.sigma import sigma_like

SHAPE = (1, 2, 3)  # d = 6 pixels per image
D = 6


def make_nonlinear(seed: int = 0):
    """A small nonlinear denoiser-shaped function that mixes all pixels of each image."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(D, D, generator=gen, dtype=torch.float64) / D**0.5
    v = torch.randn(D, generator=gen, dtype=torch.float64)

    def f(y, sigma):
        s = sigma_like(sigma, y).flatten(1)
        flat = y.flatten(1)
        out = torch.tanh(flat @ m.T + v) * (1 + s) + 0.1 * flat**2 * torch.sin(
            flat.sum(1, keepdim=True)
        )
        return out.reshape(y.shape)

    return f


def fd_jacobian(f, y, sigma, eps=1e-6):
    """Central finite differences, one pixel at a time."""
    b = y.shape[0]
    cols = []
    for j in range(D):
        e = torch.zeros(b, D, dtype=y.dtype)
        e[:, j] = eps
        e = e.reshape(y.shape)
        cols.append(((f(y + e, sigma) - f(y - e, sigma)) / (2 * eps)).flatten(1))
    return torch.stack(cols, dim=2)


def shrink(y, sigma):
    """Smooth shrinkage y * y^2 / (y^2 + (2 sigma)^2), applied pixelwise."""
    s = sigma_like(sigma, y)
    return y * y**2 / (y**2 + 4 * s**2)


def shrink_numpy(y, sigma):
    """The same shrinkage computed in numpy: a black box torch cannot differentiate."""
    s = sigma_like(sigma, y).numpy()
    yn = y.numpy()
    return torch.from_numpy(yn * yn**2 / (yn**2 + 4 * s**2))


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn((4,) + SHAPE, generator=gen, dtype=torch.float64)
    return y, torch.tensor([0.1, 0.3, 0.5, 1.0], dtype=torch.float64)


def test_jacobian_matches_finite_differences(batch):
    y, sigma = batch
    f = make_nonlinear()
    jac = jacobian(f, y, sigma)
    assert jac.shape == (4, D, D)
    torch.testing.assert_close(jac, fd_jacobian(f, y, sigma), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(jacobian(f, y, sigma, chunk_size=4), jac, rtol=1e-12, atol=0)
    # Per-image sigma is honoured: image 2 alone at its own sigma gives the same block.
    torch.testing.assert_close(jacobian(f, y[2:3], float(sigma[2]))[0], jac[2], rtol=1e-12, atol=0)


def test_trace_exact_is_trace_of_jacobian(batch):
    y, sigma = batch
    f = make_nonlinear()
    expected = torch.diagonal(fd_jacobian(f, y, sigma), dim1=1, dim2=2).sum(1)
    torch.testing.assert_close(trace_exact(f, y, sigma), expected, rtol=1e-7, atol=1e-8)


def test_hutchinson_within_four_se(batch):
    y, sigma = batch
    f = make_nonlinear()
    exact = trace_exact(f, y, sigma)
    by_jvp, se_jvp = trace_hutchinson(
        f, y, sigma, n_probes=64, generator=torch.Generator().manual_seed(2)
    )
    by_fd, se_fd = trace_hutchinson(
        f, y, sigma, n_probes=64, generator=torch.Generator().manual_seed(2), fd_eps=1e-7
    )
    assert torch.all(se_jvp > 0)
    assert torch.all((by_jvp - exact).abs() < 4 * se_jvp)
    assert torch.all((by_fd - exact).abs() < 4 * se_fd)
    # Same probes: forward mode and finite differences agree up to the difference error.
    torch.testing.assert_close(by_fd, by_jvp, rtol=1e-5, atol=1e-5)


def test_hutchinson_black_box_matches_exact_trace(batch):
    y, sigma = batch
    exact = trace_exact(shrink, y, sigma)
    est, se = trace_hutchinson(shrink_numpy, y, sigma, n_probes=16, fd_eps=1e-7)
    # A pixelwise map has a diagonal Jacobian: z^T J z = tr J for every Rademacher z.
    torch.testing.assert_close(est, exact, rtol=1e-5, atol=1e-6)
    assert torch.all(se < 1e-5)


def test_sure_is_wiener_mmse_on_gaussian_data():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(D, D))
    cov = g @ g.T / D + 0.05 * np.eye(D)
    c = torch.tensor(cov)
    n, sigma = 4000, 0.4
    gain = c @ torch.linalg.inv(c + sigma**2 * torch.eye(D, dtype=torch.float64))

    def wiener(y, s):
        return (y.flatten(1) @ gain.T).reshape(y.shape)

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(n, D, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(c).T
    x = x.reshape((n,) + SHAPE)
    y = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    est = sure(wiener, y, sigma, trace_exact(wiener, y, sigma))
    truth = gaussian_mmse(np.linalg.eigvalsh(cov), sigma)
    assert abs(est.mean().item() - truth) < 3 * est.std().item() / n**0.5


@pytest.mark.parametrize("black_box", [False, True])
def test_sure_unbiased_for_nonlinear_shrinkage(black_box):
    n, sigma = 4000, 0.3
    gen = torch.Generator().manual_seed(5)
    # Sparse (Bernoulli-Gaussian) data: the shrinkage is far from linear here.
    x = torch.randn((n,) + SHAPE, generator=gen, dtype=torch.float64)
    x = x * (torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.2)
    sig = torch.full((n,), sigma, dtype=torch.float64)
    y = x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    if black_box:
        trace, _ = trace_hutchinson(shrink_numpy, y, sig, n_probes=2, fd_eps=1e-7)
        est = sure(shrink_numpy, y, sig, trace)
    else:
        est = sure(shrink, y, sig, trace_exact(shrink, y, sig))
    err = (shrink(y, sig) - x).flatten(1).pow(2).sum(1)
    diff = est - err
    assert abs(diff.mean().item()) < 3 * diff.std().item() / n**0.5
    # The check has power: omitting the divergence term is rejected.
    naive = (shrink(y, sig) - y).flatten(1).pow(2).sum(1) - D * sigma**2 - err
    assert abs(naive.mean().item()) > 10 * naive.std().item() / n**0.5


def test_bad_input_raises(batch):
    y, sigma = batch
    f = make_nonlinear()
    with pytest.raises(ValueError, match="sigma"):
        jacobian(f, y, -0.1)
    with pytest.raises(ValueError, match="chunk_size"):
        jacobian(f, y, sigma, chunk_size=0)
    with pytest.raises(ValueError, match="n_probes"):
        trace_hutchinson(f, y, sigma, n_probes=1)
    with pytest.raises(ValueError, match="fd_eps"):
        trace_hutchinson(f, y, sigma, fd_eps=0.0)
    with pytest.raises(ValueError, match="trace"):
        sure(f, y, sigma, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape of y"):
        jacobian(lambda v, s: v.flatten(1), y, sigma)
