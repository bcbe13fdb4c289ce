"""Jacobian eigen-decompositions, the optima's known Jacobians, fixed bases and compaction."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from models.bfcnn import BFCNN
from models.memorizer import Memorizer
from models.unet import BiasFreeUNet
from models.wiener import Wiener
from synthetic.disks import disk_tangent, render_disks
from synthetic.fields import field_spectrum
from theory.bases import (
    captured_fraction,
    fourier_basis,
    fourier_coefficients,
    oracle_shrinkage_sse,
    pca_basis,
    principal_cosines,
    wavelet_coefficients,
)
from theory.decomposition import LEADING_ASYMMETRY, decompose, stationary_eigenpairs, top_eigenpairs
from theory.jacobian import jacobian


class Linear:
    """The denoiser ``f(y) = A y`` (its Jacobian is A everywhere)."""

    name = "linear"

    def __init__(self, a: torch.Tensor, shape: tuple[int, int]) -> None:
        self.a, self.shape = a, shape

    def __call__(self, y: torch.Tensor, sigma) -> torch.Tensor:
        return (y.reshape(y.shape[0], -1) @ self.a.T).reshape(y.shape)


def test_fourier_basis_is_orthonormal_and_matches_the_fft():
    vectors, frequency = fourier_basis(6, 4)
    assert np.allclose(vectors.T @ vectors, np.eye(24), atol=1e-12)
    # They diagonalise a stationary covariance F* diag(S) F, applied here through the FFT.
    spectrum = np.abs(np.fft.fft2(np.random.default_rng(1).standard_normal((6, 4)))) ** 2
    basis = np.eye(24).reshape(24, 6, 4)
    cov = np.fft.ifft2(spectrum * np.fft.fft2(basis, norm="ortho"), norm="ortho").real
    assert np.allclose(
        vectors @ np.diag(spectrum.ravel()[frequency]) @ vectors.T,
        cov.reshape(24, 24).T,
        atol=1e-10,
    )
    x = np.random.default_rng(0).standard_normal((3, 6, 4))
    assert np.allclose(fourier_coefficients(x), x.reshape(3, -1) @ vectors, atol=1e-12)


def test_wiener_decomposition_is_its_spectrum_on_fourier_vectors():
    size, sigma = 8, 0.05
    spectrum = field_spectrum(size, 2.0, 0.1)
    wiener = Wiener.stationary(0.5, torch.from_numpy(spectrum))
    y = 0.5 + 0.1 * torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    dec = decompose(wiener, y.double(), sigma)
    gains, vectors = stationary_eigenpairs(spectrum, sigma)
    lam = spectrum.ravel()
    assert np.allclose(dec.eigvals[0].numpy(), np.sort(lam / (lam + sigma**2))[::-1], atol=1e-6)
    assert np.allclose(dec.eigvals[1].numpy(), gains, atol=1e-6)
    # Each eigenvector of the network path lies in the Fourier eigenspace of its eigenvalue.
    e = dec.eigvecs[0].numpy()
    for k in range(size * size):
        same = np.abs(gains - gains[k]) < 1e-9
        span = vectors[:, same]
        assert np.linalg.norm(e[:, k] - span @ (span.T @ e[:, k])) < 1e-6
    assert float(dec.asymmetry.max()) < 1e-12
    assert torch.allclose(dec.trace, torch.tensor(gains.sum(), dtype=torch.float64), atol=1e-9)


def test_memorizer_jacobian_by_autograd_equals_its_weighted_covariance():
    g = torch.Generator().manual_seed(1)
    train = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64)
    memorizer = Memorizer(train)
    sigma = torch.tensor([0.5, 1.0], dtype=torch.float64)
    y = train[:2] + sigma.reshape(-1, 1, 1, 1) * torch.randn(2, 1, 4, 4, generator=g).double()
    by_autograd = jacobian(memorizer, y, sigma)
    by_formula = memorizer.jacobian(y, sigma)
    assert float((by_autograd - by_formula).abs().max()) < 1e-10
    # not trivially: the posterior spreads over several images, J far from 0 and from I
    eigvals = torch.linalg.eigvalsh(by_formula)
    assert (eigvals > 1e-3).sum(1).min() >= 3 and eigvals.max() < 1


def test_lanczos_equals_eigh_on_a_symmetric_operator():
    g = torch.Generator().manual_seed(2)
    m = torch.randn(64, 64, generator=g, dtype=torch.float64)
    a = (m + m.T) / 2
    f = Linear(a, (8, 8))
    y = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    top = top_eigenpairs(f, y, 0.1, k=6, tol=1e-12)
    full = decompose(f, y, 0.1)
    assert torch.allclose(top.eigvals, full.eigvals[:, :6], rtol=1e-10)
    cosines = torch.einsum("bdk,bdk->bk", top.eigvecs, full.eigvecs[:, :, :6]).abs()
    assert float(cosines.min()) > 1 - 1e-8
    assert float(top.asymmetry.max()) < 1e-12 and float(full.asymmetry.max()) < 1e-12
    assert float(full.homogeneity.max()) < 1e-12


def test_asymmetry_and_trace_estimates_against_exact():
    g = torch.Generator().manual_seed(3)
    a = torch.eye(64, dtype=torch.float64) + 0.3 * torch.randn(64, 64, generator=g).double()
    f = Linear(a, (8, 8))
    y = torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64)
    full = decompose(f, y, 0.1)
    top = top_eigenpairs(f, y, 0.1, k=4, probes=64)
    exact = float((a - a.T).norm() / a.norm())
    assert abs(float(full.asymmetry[0]) - exact) < 1e-12
    assert abs(float(top.asymmetry[0]) - exact) < 0.15 * exact
    assert abs(float(top.trace[0]) - float(a.trace())) < 4 * float(top.trace_se[0])


def test_symmetric_output_and_leading_asymmetry_against_the_matrix():
    """A linear map y -> A y: S y = (A + A^T) y / 2 and, over the leading eigenvectors E of
    the symmetric part, ||E^T (A - A^T) E|| / ||E^T A E||, both computed here from A."""
    g = torch.Generator().manual_seed(4)
    a = torch.eye(64, dtype=torch.float64) + 0.3 * torch.randn(64, 64, generator=g).double()
    f = Linear(a, (8, 8))
    y = torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64)
    sym = (a + a.T) / 2
    _, vecs = torch.linalg.eigh(sym)
    e = vecs.flip(1)[:, :LEADING_ASYMMETRY]
    core = e.T @ a @ e
    expected = float((core - core.T).norm() / core.norm())
    for dec in (decompose(f, y, 0.1), top_eigenpairs(f, y, 0.1, k=30, tol=1e-12)):
        assert torch.allclose(dec.symmetric_output[0], sym @ y.reshape(-1), atol=1e-12)
        assert abs(float(dec.leading_asymmetry[0]) - expected) < 1e-9


@pytest.mark.parametrize(
    "make",
    [lambda: BiasFreeUNet(channels=4, blocks=2), lambda: BFCNN(depth=4, channels=6)],
    ids=["unet", "bfcnn"],
)
def test_networks_lanczos_equals_eigh_and_homogeneity(make, calibrate):
    net = calibrate(make(), 8).float()
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    full = decompose(lambda v, s: net(v), y, 0.1)
    top = top_eigenpairs(lambda v, s: net(v), y, 0.1, k=5)
    assert torch.allclose(top.eigvals, full.eigvals[:, :5], rtol=1e-4, atol=1e-5)
    assert float(full.homogeneity[0]) < 1e-5 and float(top.homogeneity[0]) < 1e-5
    assert float(full.asymmetry[0]) > 1e-3  # a random network's Jacobian is not symmetric


def test_homogeneity_residual_detects_a_bias():
    net = BFCNN(depth=3, channels=4).double().eval()
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert float(decompose(lambda v, s: net(v), y, 0.1).homogeneity[0]) < 1e-12
    assert float(decompose(lambda v, s: net(v) + 0.1, y, 0.1).homogeneity[0]) > 1e-2


def test_disk_tangent_against_finite_differences_of_the_renderer():
    params = np.array([[15.3, 16.7, 6.1, 0.8, 0.2]])
    tangent = disk_tangent(params, 32)
    h = 0.05
    for j in range(5):
        step = np.zeros(5)
        step[j] = h
        fd = (render_disks(params + step, 32, 64) - render_disks(params - step, 32, 64)) / (2 * h)
        error = np.linalg.norm(tangent[0, j] - fd[0]) / np.linalg.norm(fd[0])
        assert error < 0.05, (j, error)


def test_captured_fraction_of_a_k_term_image_reaches_one_at_k():
    size, k = 16, 3
    coeffs = pywt.wavedec2(np.zeros((size, size)), "db4", mode="periodization", level=4)
    array, slices = pywt.coeffs_to_array(coeffs)
    array.ravel()[[5, 77, 200]] = [1.0, -2.0, 0.5]
    image = pywt.waverec2(
        pywt.array_to_coeffs(array, slices, output_format="wavedec2"), "db4", mode="periodization"
    )
    c = wavelet_coefficients(image[None])
    curve = captured_fraction(c, np.array([np.square(image).sum()]))
    assert curve[0, k - 2] < 1 - 1e-3 and abs(curve[0, k - 1] - 1) < 1e-12
    vectors, _ = fourier_basis(size, size)
    x = (vectors[:, [3, 40]] @ np.array([1.0, 0.7])).reshape(1, size, size)
    fourier = captured_fraction(fourier_coefficients(x), np.square(x).sum((1, 2)))
    assert fourier[0, 0] < 0.99 and abs(fourier[0, 1] - 1) < 1e-12


def test_pca_basis_and_principal_cosines():
    rng = np.random.default_rng(6)
    train = rng.standard_normal((50, 4, 4)) * np.linspace(0.1, 2, 16).reshape(4, 4)
    mean, vectors = pca_basis(train)
    assert vectors.shape == (16, 16) and np.allclose(vectors.T @ vectors, np.eye(16), atol=1e-10)
    variances = ((train.reshape(50, -1) - mean) @ vectors).var(0)
    assert np.all(np.diff(variances) <= 1e-12)
    assert np.allclose(
        principal_cosines(vectors[:, :3], vectors[:, :3] @ rng.standard_normal((3, 3))), 1
    )
    assert np.allclose(principal_cosines(vectors[:, :3], vectors[:, 3:6]), 0, atol=1e-10)


def test_oracle_shrinkage_risk_against_monte_carlo():
    rng = np.random.default_rng(7)
    c, sigma = rng.standard_normal((1, 40)) * 0.2, 0.1
    noisy = c + sigma * rng.standard_normal((200_000, 40))
    estimate = noisy * c**2 / (c**2 + sigma**2)
    monte_carlo = np.square(estimate - c).sum(1)
    exact = oracle_shrinkage_sse(c, sigma)[0]
    assert abs(monte_carlo.mean() - exact) < 4 * monte_carlo.std() / np.sqrt(len(monte_carlo))


def test_bad_input_fails_with_one_clear_line():
    f = Linear(torch.eye(16, dtype=torch.float64), (4, 4))
    y = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="must return the shape"):
        decompose(lambda v, s: v[..., :2], y, 0.1)
    with pytest.raises(ValueError, match="must return the shape"):
        top_eigenpairs(lambda v, s: v[..., :2], y, 0.1, k=2)
    with pytest.raises(ValueError, match="1 <= k < d"):
        top_eigenpairs(f, y, 0.1, k=16)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        top_eigenpairs(f, y, 0.0, k=2)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        decompose(f, y, -1.0)
