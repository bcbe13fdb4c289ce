"""Wiener filters against Monte Carlo, Stein, a dense eigendecomposition and sample covariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.wiener import DenseBasis, Wiener, ledoit_wolf_intensity
from theory.jacobian import trace_exact


def _spectrum(size: int, gamma: float = 2.0, scale: float = 0.05) -> torch.Tensor:
    """Power-law spectrum ``scale / (1 + |k|^2)^(gamma/2)`` at FFT frequencies (symmetric)."""
    k = torch.fft.fftfreq(size, dtype=torch.float64) * size
    return scale / (1 + k[:, None] ** 2 + k[None, :] ** 2) ** (gamma / 2)


def _field(n: int, spectrum: torch.Tensor, mean: float, seed: int) -> torch.Tensor:
    """``x = mu + ifft2(sqrt(S) fft2(w))`` (orthonormal FFT): covariance F* diag(S) F."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, 1, *spectrum.shape, generator=g, dtype=torch.float64)
    colored = torch.fft.ifft2(spectrum.sqrt() * torch.fft.fft2(w, norm="ortho"), norm="ortho")
    return mean + colored.real


def _dense_wiener(spectrum: torch.Tensor, mean: float) -> Wiener:
    """Wiener filter from the dense covariance ``F* diag(S) F`` by eigh."""
    h, w = spectrum.shape
    eye = torch.eye(h * w, dtype=torch.float64).reshape(-1, 1, h, w)
    columns = torch.fft.ifft2(spectrum * torch.fft.fft2(eye, norm="ortho"), norm="ortho").real
    cov = columns.reshape(h * w, h * w)
    lam, vectors = torch.linalg.eigh((cov + cov.T) / 2)
    return Wiener(
        torch.full((1, 1, h, w), mean, dtype=torch.float64),
        lam.clamp(min=0),
        DenseBasis(vectors, (h, w)),
    )


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.4])
def test_monte_carlo_sse_matches_closed_form(sigma):
    spectrum = _spectrum(16)
    wiener = Wiener.stationary(0.5, spectrum)
    x = _field(3000, spectrum, 0.5, seed=0)
    g = torch.Generator().manual_seed(1)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    sse = (wiener(y, sigma) - x).flatten(1).square().sum(1)
    se = sse.std() / math.sqrt(sse.numel())
    assert abs(sse.mean().item() - wiener.sse_star(sigma)) < 3 * se.item()


def test_stein_exact_for_fourier_and_dense():
    spectrum = _spectrum(6, gamma=1.5)
    y = _field(3, spectrum, 0.5, seed=2)
    for wiener in [Wiener.stationary(0.5, spectrum), _dense_wiener(spectrum, 0.5)]:
        for sigma in [0.01, 0.1, 1.0]:
            trace = trace_exact(wiener, y, sigma)
            expected = torch.full((3,), float(wiener.sse_star(sigma)), dtype=trace.dtype)
            torch.testing.assert_close(sigma**2 * trace, expected, rtol=1e-8, atol=0)


def test_dense_and_fourier_bases_agree():
    spectrum = _spectrum(8, gamma=2.5)
    y = _field(5, spectrum, 0.3, seed=3) + 0.2
    sigma = torch.tensor([0.01, 0.05, 0.1, 0.5, 2.0], dtype=torch.float64)
    fourier, dense = Wiener.stationary(0.3, spectrum), _dense_wiener(spectrum, 0.3)
    torch.testing.assert_close(dense(y, sigma), fourier(y, sigma), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        dense.sse_star([0.01, 0.3]), fourier.sse_star([0.01, 0.3]), rtol=1e-10
    )


def test_from_data_uses_unbiased_sample_covariance():
    # n < d: a rank-deficient covariance; its null space must get shrinkage 0.
    x = _field(30, _spectrum(8), 0.5, seed=4)
    wiener = Wiener.from_data(x, shrinkage=False)
    data = x.flatten(1).numpy()
    cov, mu = np.cov(data.T), data.mean(0)
    lam = np.linalg.eigvalsh(cov)[::-1][:29]
    np.testing.assert_allclose(wiener.eigvals.numpy(), lam, rtol=1e-9, atol=1e-14)
    assert wiener.name == "wiener_pca"
    y = _field(4, _spectrum(8, scale=0.1), 0.4, seed=5)
    for sigma in [0.02, 0.3]:
        gain = cov @ np.linalg.inv(cov + sigma**2 * np.eye(64))
        expected = mu + (y.flatten(1).numpy() - mu) @ gain.T
        np.testing.assert_allclose(wiener(y, sigma).flatten(1).numpy(), expected, atol=1e-12)


def test_from_data_approaches_the_true_filter():
    spectrum = _spectrum(8)
    true = Wiener.stationary(0.5, spectrum)
    y = _field(200, spectrum, 0.5, seed=6) + 0.1 * torch.randn(
        200, 1, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    errors = []
    for n in [300, 30000]:
        estimate = Wiener.from_data(_field(n, spectrum, 0.5, seed=8), shrinkage=False)
        errors.append(((estimate(y, 0.1) - true(y, 0.1)).norm() / (true(y, 0.1) - y).norm()).item())
    # Estimation error of a covariance shrinks like 1/sqrt(n): 10x for 100x more samples.
    assert errors[1] < errors[0] / 5
    assert errors[1] < 0.02


def test_float32_model_on_float64_input_and_to():
    spectrum = _spectrum(8)
    wiener = Wiener.stationary(0.5, spectrum)
    wiener32 = wiener.to(torch.float32)
    assert wiener32.eigvals.dtype == torch.float32 and wiener.eigvals.dtype == torch.float64
    y = _field(4, spectrum, 0.5, seed=9)
    out32 = wiener32(y.float(), 0.1)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), wiener(y, 0.1), rtol=0, atol=1e-6)


def test_bad_input_raises():
    spectrum = _spectrum(8)
    wiener = Wiener.stationary(0.5, spectrum)
    y = _field(2, spectrum, 0.5, seed=10)
    with pytest.raises(ValueError, match="sigma"):
        wiener(y, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        wiener(y, torch.tensor([0.1, -1.0]))
    asymmetric = spectrum.clone()
    asymmetric[0, 1] *= 2
    with pytest.raises(ValueError, match="symmetric"):
        Wiener.stationary(0.5, asymmetric)
    with pytest.raises(ValueError, match=">= 0"):
        Wiener.stationary(0.5, spectrum - 1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        Wiener.from_data(y[:1])
    with pytest.raises(ValueError, match="r <= d"):
        DenseBasis(torch.eye(64, 65, dtype=torch.float64), (8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    spectrum = _spectrum(8)
    x = _field(100, spectrum, 0.5, seed=11)
    y = _field(4, spectrum, 0.5, seed=12) + 0.05
    sigma = torch.tensor([0.01, 0.1, 0.3, 1.0], dtype=torch.float64)
    for wiener in [Wiener.stationary(0.5, spectrum), Wiener.from_data(x)]:
        gpu = wiener.to("cuda")(y.cuda(), sigma.cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), wiener(y, sigma), rtol=0, atol=1e-12)


def test_ledoit_wolf_intensity_matches_dense_formula():
    x = _field(25, _spectrum(6), 0.5, seed=11).flatten(1)
    xc = (x - x.mean(0)).numpy()
    n, d = xc.shape
    cov = xc.T @ xc / n
    m = np.trace(cov) / d
    delta2 = np.sum((cov - m * np.eye(d)) ** 2) / d
    b2 = sum(np.sum((np.outer(v, v) - cov) ** 2) for v in xc) / n**2 / d
    expected = min(b2, delta2) / delta2
    assert 0 < expected < 1
    assert ledoit_wolf_intensity(torch.from_numpy(xc)) == pytest.approx(expected, rel=1e-10)


def test_shrunk_filter_equals_dense_filter_of_shrunk_covariance():
    x = _field(20, _spectrum(6), 0.5, seed=12)
    wiener = Wiener.from_data(x)
    data = x.flatten(1).numpy()
    mu, cov = data.mean(0), np.cov(data.T)
    rho = ledoit_wolf_intensity(torch.from_numpy(data - mu))
    shrunk = (1 - rho) * cov + rho * np.trace(cov) / 36 * np.eye(36)
    assert wiener.floor > 0
    y = _field(3, _spectrum(6, scale=0.1), 0.4, seed=13)
    for sigma in [0.01, 0.3]:
        gain = shrunk @ np.linalg.inv(shrunk + sigma**2 * np.eye(36))
        expected = mu + (y.flatten(1).numpy() - mu) @ gain.T
        np.testing.assert_allclose(wiener(y, sigma).flatten(1).numpy(), expected, atol=1e-12)
        # Stein, exactly: sigma^2 tr(grad f) is the filter's own closed-form SSE*.
        trace = trace_exact(wiener, y[:1], sigma).item()
        assert sigma**2 * trace == pytest.approx(wiener.sse_star(sigma).item(), rel=1e-10)
