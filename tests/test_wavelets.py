"""Wavelet thresholding: orthonormality, the thresholding rules, cycle spinning, SURE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch

from models.references import cycle_spun
from models.wavelets import WaveletThreshold
from theory.jacobian import sure, trace_hutchinson


def _bumps(n: int, size: int, seed: int, n_bumps: int = 5) -> torch.Tensor:
    """Smooth test images in [0, 1]: sums of Gaussian bumps with random centres and widths."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    centres = rng.uniform(0, size, (n, n_bumps, 2))
    widths = rng.uniform(1.5, 6.0, (n, n_bumps))
    amplitudes = rng.uniform(0.1, 0.4, (n, n_bumps))
    dy = (grid[None, None, :] - centres[..., 0:1]) ** 2
    dx = (grid[None, None, :] - centres[..., 1:2]) ** 2
    bumps = np.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * widths[..., None, None] ** 2))
    images = 0.1 + np.einsum("nb,nbij->nij", amplitudes, bumps)
    return torch.from_numpy(np.clip(images, 0, 1))[:, None]


def _noisy(x: torch.Tensor, sigma: float | torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
    return x + s * torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("wavelet", ["haar", "db4", "sym8"])
def test_periodized_transform_is_orthonormal(wavelet):
    y = _noisy(_bumps(4, 32, seed=0), 0.3, seed=1)
    levels = WaveletThreshold(wavelet).levels_for((32, 32))
    coeffs = pywt.wavedec2(
        y[:, 0].numpy(), wavelet, mode="periodization", level=levels, axes=(-2, -1)
    )
    energy = (coeffs[0] ** 2).sum((-2, -1)) + sum(
        (c**2).sum((-2, -1)) for detail in coeffs[1:] for c in detail
    )
    np.testing.assert_allclose(energy, (y[:, 0].numpy() ** 2).sum((-2, -1)), rtol=1e-12)
    for mode in ["hard", "soft"]:
        for shifts in [1, 3]:
            out = cycle_spun(WaveletThreshold(wavelet, mode, factor=0.0), shifts)(y, 0.3)
            torch.testing.assert_close(out, y, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("mode", "expected"), [("hard", [2.0, 0.0, 0.0]), ("soft", [1.25, 0.0, 0.0])]
)
def test_thresholding_rules_on_one_coefficient(mode, expected):
    # Three images, one nonzero level-1 detail coefficient each; T = 3 sigma per image.
    rng = np.random.default_rng(2)
    approx = rng.uniform(0, 4, (3, 4, 4))
    level2 = tuple(np.zeros((3, 4, 4)) for _ in range(3))
    level1 = [np.zeros((3, 8, 8)) for _ in range(3)]
    level1[1][:, 2, 5] = [2.0, 0.5, -2.0]
    image = pywt.waverec2(
        [approx, level2, tuple(level1)], "haar", mode="periodization", axes=(-2, -1)
    )
    sigma = torch.tensor([0.25, 0.25, 1.0], dtype=torch.float64)  # T = 0.75, 0.75, 3
    out = WaveletThreshold("haar", mode, factor=3.0, levels=2)(
        torch.from_numpy(image)[:, None], sigma
    )
    coeffs = pywt.wavedec2(out[:, 0].numpy(), "haar", mode="periodization", level=2, axes=(-2, -1))
    np.testing.assert_allclose(coeffs[0], approx, atol=1e-12)  # approximation kept
    np.testing.assert_allclose(coeffs[2][1][:, 2, 5], expected, atol=1e-12)
    coeffs[2][1][:, 2, 5] = 0
    assert max(np.abs(c).max() for detail in coeffs[1:] for c in detail) < 1e-12


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_batched_equals_per_image_loop(mode):
    y = _noisy(_bumps(5, 32, seed=3), 0.1, seed=4)
    sigma = torch.tensor([0.05, 0.1, 0.1, 0.2, 0.4], dtype=torch.float64)
    out = WaveletThreshold("db4", mode, factor=2.5, levels=2)(y, sigma)
    for b in range(5):
        coeffs = pywt.wavedec2(y[b, 0].numpy(), "db4", mode="periodization", level=2)
        threshold = 2.5 * sigma[b].item()
        kept = [coeffs[0]] + [
            tuple(pywt.threshold(c, threshold, mode) for c in detail) for detail in coeffs[1:]
        ]
        expected = pywt.waverec2(kept, "db4", mode="periodization")
        np.testing.assert_allclose(out[b, 0].numpy(), expected, atol=1e-12)


def test_cycle_spinning_averages_circular_shifts():
    y = _noisy(_bumps(3, 32, seed=5), 0.1, seed=6)
    plain = WaveletThreshold("db2", "hard", factor=3.0)
    expected = (
        sum(
            torch.roll(plain(torch.roll(y, (i, j), dims=(-2, -1)), 0.1), (-i, -j), dims=(-2, -1))
            for i in range(2)
            for j in range(2)
        )
        / 4
    )
    spun = cycle_spun(plain, 2)(y, 0.1)
    torch.testing.assert_close(spun, expected, rtol=0, atol=1e-12)
    assert (spun - plain(y, 0.1)).abs().max() > 1e-3  # the shifts change the result


@pytest.mark.parametrize("wavelet, mode", [("haar", "hard"), ("db4", "soft")])
def test_undecimated_thresholding_equals_the_full_cycle_spin_average(wavelet, mode):
    # One undecimated transform is the average over all 2^J x 2^J shifts of the orthonormal
    # thresholding; the explicit average over the 256 shifts of a 16 x 16 image (J = 4)
    # checks it.
    y = _noisy(_bumps(3, 16, seed=12), 0.2, seed=13)
    plain = WaveletThreshold(wavelet, mode, factor=1.0)
    assert plain.levels_for((16, 16)) == 4
    explicit = cycle_spun(plain, 16)(y, 0.2)
    invariant = WaveletThreshold(wavelet, mode, factor=1.0, invariant=True)(y, 0.2)
    torch.testing.assert_close(invariant, explicit, rtol=0, atol=1e-12)
    assert (invariant - cycle_spun(plain, 4)(y, 0.2)).abs().max() > 1e-3  # 4 x 4 is not all


def test_sure_equals_true_risk_for_soft_thresholding():
    x = _bumps(256, 32, seed=7)
    sigma = torch.linspace(0.05, 0.2, 256, dtype=torch.float64)
    y = _noisy(x, sigma, seed=8)
    denoiser = WaveletThreshold("db4", "soft", factor=1.5)
    sse = (denoiser(y, sigma) - x).flatten(1).square().sum(1)

    # Exact divergence of soft thresholding in an orthonormal basis: kept detail coefficients
    # plus approximation coefficients (each has derivative 1, the others 0).
    coeffs = pywt.wavedec2(
        y[:, 0].numpy(),
        "db4",
        mode="periodization",
        level=denoiser.levels_for((32, 32)),
        axes=(-2, -1),
    )
    threshold = (1.5 * sigma).numpy()[:, None, None]
    kept = sum((np.abs(c) > threshold).sum((-2, -1)) for detail in coeffs[1:] for c in detail)
    n_approx = coeffs[0][0].size
    exact = torch.from_numpy(kept + n_approx).to(torch.float64)

    hutchinson, se = trace_hutchinson(
        denoiser, y, sigma, n_probes=8, generator=torch.Generator().manual_seed(9), fd_eps=1e-6
    )
    assert abs((hutchinson - exact).sum()) < 3 * se.square().sum().sqrt()

    for trace in [exact, hutchinson]:
        diff = sure(denoiser, y, sigma, trace) - sse
        se_diff = diff.std() / math.sqrt(diff.numel())
        assert abs(diff.mean()) < 3 * se_diff
        # A divergence off by 10% (e.g. counting only the kept coefficients of most
        # subbands) would be detected.
        assert (0.2 * sigma**2 * exact).mean() > 5 * se_diff


def test_default_names_and_dtype_device():
    assert WaveletThreshold().name == "wavelet_db4_hard"
    assert WaveletThreshold(invariant=True).name == "ti_wavelet_db4_hard"
    assert cycle_spun(WaveletThreshold(), 4).name == "wavelet_db4_hard_sym"
    assert cycle_spun(WaveletThreshold(), 4, "ti").name == "ti"
    assert WaveletThreshold(name="w").name == "w"
    y = _noisy(_bumps(2, 32, seed=10), 0.1, seed=11).float()
    out = WaveletThreshold()(y, 0.1)
    assert out.dtype == torch.float32 and out.device == y.device and out.shape == y.shape


def test_levels_for_sizes():
    # The full depth allowed by divisibility; periodization wraps filters longer than the signal.
    assert WaveletThreshold("db4").levels_for((80, 80)) == 4  # 80 = 5 * 2^4
    assert WaveletThreshold("db4").levels_for((32, 48)) == 4
    assert WaveletThreshold("db4").levels_for((32, 32)) == 5
    assert WaveletThreshold("haar").levels_for((24, 24)) == 3  # 24 = 3 * 2^3


@pytest.mark.parametrize(
    ("kwargs", "size", "match"),
    [
        ({"wavelet": "db4"}, 25, "cannot take"),  # odd size: no orthonormal level
        ({"wavelet": "haar", "levels": 2}, 6, "cannot take"),  # 6 is not divisible by 4
        ({"wavelet": "db4", "levels": 6}, 32, "cannot take"),
    ],
)
def test_size_too_small_for_levels_raises(kwargs, size, match):
    y = torch.zeros(1, 1, size, size)
    with pytest.raises(ValueError, match=match):
        WaveletThreshold(**kwargs)(y, 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"wavelet": "db99"}, "wavelet"),
        ({"wavelet": "bior2.2"}, "non-orthogonal"),
        ({"mode": "garrote"}, "mode"),
        ({"factor": -1.0}, "factor"),
        ({"levels": 0}, "levels"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WaveletThreshold(**kwargs)


@pytest.mark.parametrize("sigma", [0.0, -0.1, torch.tensor([0.1, 0.0])])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        WaveletThreshold()(torch.zeros(2, 1, 32, 32), sigma)
