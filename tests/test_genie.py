"""Gaussian-region cartoons and their genie: exact conditional law, exact SSE, a lower bound."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from benchmarks.evaluation import risk_curves
from models.curvelets import CurveletThreshold
from models.genie import GenieWiener, conditional_gaussian, stationary_covariance
from models.memorizer import Memorizer
from models.references import cycle_spun
from models.wavelets import WaveletThreshold
from models.wiener import Wiener
from synthetic import get_family
from synthetic.cartoons_gaussian import region_fields, region_spectrum

SIZE, N_TEST = 16, 48
SIGMAS = (0.01, 0.05, 0.2)


@pytest.fixture(scope="module")
def setup():
    family = get_family("cartoons_gaussian", size=SIZE, seed=1)
    masks = family.masks("test", N_TEST)
    return family, family.images("test", N_TEST), GenieWiener(family, masks)


def test_region_spectrum_sets_texture_variance_and_mean_variance():
    s = region_spectrum(16, beta=1.5, std=0.05, tau=0.1)
    d = s.size
    assert np.isclose(s[0, 0] / d, 0.1**2)
    assert np.isclose((s.sum() - s[0, 0]) / d, 0.05**2)
    assert np.allclose(s, np.roll(np.flip(s), 1, axis=(0, 1)))  # S(k) = S(-k): a real field
    assert np.all(s > 0)


def test_stationary_covariance_is_the_fourier_diagonalisation():
    s = region_spectrum(6, beta=1.0, std=0.1, tau=0.2)
    dft = np.fft.fft(np.eye(6), norm="ortho")
    f2 = np.kron(dft, dft)  # orthonormal 2-D DFT on row-major flattened images
    dense = (f2.conj().T @ np.diag(s.ravel()) @ f2).real
    assert np.allclose(stationary_covariance(s), dense, atol=1e-14)


def test_conditional_law_matches_sampling():
    """x = m a + (1 - m) b drawn for one fixed mask against the closed-form mean/covariance."""
    family = get_family("cartoons_gaussian", size=8, tau=0.1)
    mask = family.masks("A", 1)[0, 0].numpy()
    rng = np.random.default_rng(7)
    k = 20000
    a = region_fields(k, family.region_spectrum, family.mean_below, rng)
    b = region_fields(k, family.region_spectrum, family.mean_above, rng)
    x = (mask * a + (1 - mask) * b).reshape(k, -1)
    c = stationary_covariance(family.region_spectrum)
    mean, cov = conditional_gaussian(mask, (family.mean_below, family.mean_above), (c, c))
    edge = int(np.argmax((mask.ravel() > 0) & (mask.ravel() < 1)))
    directions = [
        np.ones(64),
        mask.ravel(),
        np.eye(64)[edge],
        np.random.default_rng(8).standard_normal(64),
    ]
    for u in directions:
        proj = x @ u
        var = u @ cov @ u
        assert abs(proj.mean() - u @ mean) < 3 * np.sqrt(var / k)
        assert abs(proj.var(ddof=1) - var) < 3 * var * np.sqrt(2 / (k - 1))


def test_family_masks_match_images_and_are_prefix_consistent():
    tiny = get_family("cartoons_gaussian", size=16, std=1e-9, tau=1e-9)
    m = tiny.masks("B", 70)
    assert m.dtype == torch.float64 and m.shape == (70, 1, 16, 16)
    assert set(m.unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    expected = m * tiny.mean_below + (1 - m) * tiny.mean_above
    assert torch.allclose(tiny.images("B", 70).double(), expected, atol=1e-6)
    assert torch.equal(tiny.masks("B", 10), m[:10])
    rebuilt = get_family(**tiny.params)
    assert torch.equal(rebuilt.masks("B", 5), m[:5])


def test_images_are_not_clipped():
    wide = get_family("cartoons_gaussian", size=16, tau=1.0)
    x = wide.images("A", 20)
    assert x.min() < 0 and x.max() > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"std": 0.0}, "std must be > 0"),
        ({"tau": -1.0}, "tau must be > 0"),
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"size": 15}, "size must be even"),
        ({"mean_below": float("nan")}, "must be finite"),
    ],
)
def test_family_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_family("cartoons_gaussian", **kwargs)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_genie_monte_carlo_sse_equals_its_exact_conditional_sse(setup, sigma):
    family, images, genie = setup
    curves = risk_curves({"genie": genie}, images, [sigma], seed=11, progress=False)
    diff = curves.sse["genie"][0] - genie.sse_exact(sigma)
    assert abs(diff.mean()) < 3 * diff.std(ddof=1) / np.sqrt(N_TEST)


def test_genie_index_selects_the_masks(setup):
    family, images, genie = setup
    y = images[5:8] + 0.1 * torch.randn(
        3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)
    )
    by_slice = genie.select(slice(5, 8))(y, 0.1)
    assert torch.allclose(by_slice, genie.select([5, 6, 7])(y, 0.1))
    assert not torch.allclose(by_slice, genie.select([6, 7, 8])(y, 0.1), atol=1e-3)
    per_image = torch.tensor([0.05, 0.1, 0.2])
    out = genie.select(slice(5, 8))(y, per_image)
    assert torch.allclose(out[2:], genie.select(slice(7, 8))(y[2:], 0.2))
    # Row i of a full batch is denoised with mask i, as on the selected subset.
    noisy = images + 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(genie(noisy, 0.1)[5:8], genie.select(slice(5, 8))(noisy[5:8], 0.1))
    assert genie.sse_exact(np.array([0.05, 0.1])).shape == (2, N_TEST)


def test_genie_is_no_worse_than_any_other_denoiser(setup):
    """Paired Monte Carlo over the same noise: SSE(genie) - SSE(other) <= 3 standard errors."""
    family, images, genie = setup
    train = family.images("A", 2000)
    others = [
        Memorizer(train),
        Wiener.from_data(train),
        WaveletThreshold("db4"),
        cycle_spun(WaveletThreshold("db4"), 4),
        CurveletThreshold(),
    ]
    if importlib.util.find_spec("models.bandlets") is not None:
        from models.bandlets import BandletThreshold

        others.append(BandletThreshold(wavelet="db4", factor=3.0))
    denoisers = {"genie": genie, **{f.name: f for f in others}}
    curves = risk_curves(denoisers, images, SIGMAS, seed=12, progress=False)
    for name in denoisers:
        diff = curves.sse["genie"] - curves.sse[name]
        se = diff.std(axis=1, ddof=1) / np.sqrt(N_TEST)
        assert np.all(diff.mean(axis=1) <= 3 * se), (name, diff.mean(axis=1), se)


def test_genie_bad_input(setup):
    family, images, genie = setup
    masks = family.masks("A", 2)
    with pytest.raises(ValueError, match="needs the 'cartoons_gaussian' family"):
        GenieWiener(get_family("cartoons", size=SIZE), masks)
    with pytest.raises(ValueError, match="masks must be an"):
        GenieWiener(family, masks[:, 0])
    big = get_family("cartoons_gaussian", size=64)
    with pytest.raises(ValueError, match="use size <= 32"):
        GenieWiener(big, big.masks("A", 1))
    with pytest.raises(ValueError, match="use select"):
        genie(images[:3], 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        genie.select(slice(0, 2))(images[:2], -0.1)
