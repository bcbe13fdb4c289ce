"""C^α cartoons: spectral decay of contours and textures, mask rendering, intensity sides."""

from __future__ import annotations

import time

import numpy as np
import pytest

from synthetic.cartoons import (
    CONTOUR_SCALE,
    CartoonFamily,
    background_fields,
    cartoon_images,
    contour_functions,
    contour_mask,
)


def fitted_slope(k: np.ndarray, amplitude: np.ndarray) -> float:
    return float(np.polyfit(np.log(k), np.log(amplitude), 1)[0])


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_contour_fourier_decay_is_minus_alpha(alpha):
    length = 256
    c = contour_functions(2000, length, alpha, np.random.default_rng(1))
    power = (np.abs(np.fft.rfft(c, axis=1)) ** 2).mean(axis=0)
    k = np.arange(1, length // 4 + 1)  # drop k = 0 and the top octave
    slope = fitted_slope(k, np.sqrt(power[k]))
    print(f"alpha={alpha}: fitted amplitude slope {slope:.4f}")
    assert abs(slope + alpha) < 0.2
    np.testing.assert_allclose(c.mean(axis=1), length / 2, rtol=1e-12)  # centred, k = 0 zeroed


@pytest.mark.parametrize("length", [64, 256])
def test_contour_variance_matches_the_fourier_series_and_not_the_resolution(length):
    # Var g_j = Var(w) Σ_{k ≠ 0} |k|^{-2α} over the DFT frequencies, Var(w) = 1/3 for U[-1, 1].
    alpha = 1.5
    c = contour_functions(4000, length, alpha, np.random.default_rng(2))
    g = (c / length - 0.5) / CONTOUR_SCALE
    k = np.abs(np.fft.fftfreq(length, d=1.0 / length))[1:]
    expected = (k ** (-2 * alpha)).sum() / 3
    per_contour = g.var(axis=1)  # each contour averages its own pixels; contours independent
    mean = per_contour.mean() * length / (length - 1)
    se = per_contour.std(ddof=1) / np.sqrt(len(per_contour)) * length / (length - 1)
    assert abs(mean - expected) < 3 * se + 1e-3 * expected
    assert expected == pytest.approx(2 * 1.2020569 / 3, rel=0.02)  # 2 ζ(3) / 3 up to the cut


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_background_radial_decay_is_minus_beta(beta):
    size = 64
    f = background_fields(400, size, beta, np.random.default_rng(3))
    power = (np.abs(np.fft.fft2(f)) ** 2).mean(axis=0)
    k = np.abs(np.fft.fftfreq(size, d=1.0 / size))
    radius = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    shells = np.arange(2, size // 4 + 1)
    radial = np.array([power[radius == r].mean() for r in shells])
    slope = fitted_slope(shells, np.sqrt(radial))
    print(f"beta={beta}: fitted radial amplitude slope {slope:.4f}")
    assert abs(slope + beta) < 0.2
    assert power[0, 0] < 1e-18 * power.max()


def test_contour_mask_matches_a_loop_and_is_anti_aliased():
    size, n = 8, 5
    contours = contour_functions(n, 2 * size, 1.0, np.random.default_rng(4))
    mask = contour_mask(contours, size)
    reference = np.zeros((n, size, size))
    for b in range(n):
        for i in range(size):
            for j in range(size):
                cells = [
                    fine_row + 0.5 > contours[b, fine_col]
                    for fine_row in (2 * i, 2 * i + 1)
                    for fine_col in (2 * j, 2 * j + 1)
                ]
                reference[b, i, j] = np.mean(cells)
    np.testing.assert_array_equal(mask, reference)
    fractional = (mask > 0) & (mask < 1)
    assert fractional.any(axis=(1, 2)).all(), "every edge should have partially covered pixels"
    assert set(np.unique(mask)) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_two_sides_get_disjoint_intensity_halves():
    n, size, alpha = 200, 32, 2.0
    x, _ = cartoon_images(n, size, alpha, alpha, np.random.default_rng(5))
    # cartoon_images draws its contours first, from the same generator.
    mask = contour_mask(contour_functions(n, 2 * size, alpha, np.random.default_rng(5)), size)
    assert x.min() >= 0 and x.max() <= 1
    swapped = 0
    for img, m in zip(x, mask, strict=True):
        below, above = img[m == 1], img[m == 0]
        if below.size == 0 or above.size == 0:
            continue
        if below.min() >= 0.5:
            swapped += 1
            assert above.max() <= 0.5
        else:
            assert below.max() <= 0.5 and above.min() >= 0.5
    assert 60 < swapped < 140  # sides swapped with probability 1/2


def test_any_even_size_and_bad_input():
    for size in (2, 6, 80):
        images, masks = cartoon_images(3, size, 2.0, 1.0, np.random.default_rng(0))
        assert images.shape == masks.shape == (3, size, size)
    with pytest.raises(ValueError, match="cartoon size must be even"):
        cartoon_images(1, 9, 2.0, 2.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        contour_functions(1, 8, -0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="beta must be > 0"):
        cartoon_images(1, 8, 2.0, 0.0, np.random.default_rng(0))


def test_family_beta_defaults_to_alpha():
    f = CartoonFamily(size=16, alpha=3.0)
    assert f.beta == 3.0
    same = CartoonFamily(size=16, alpha=3.0, beta=3.0)
    assert (f.images("A", 4) == same.images("A", 4)).all()


@pytest.mark.benchmark
def test_generation_speed():
    f = CartoonFamily(size=32)
    start = time.perf_counter()
    f.images("A", 1000)
    elapsed = time.perf_counter() - start
    print(f"1000 cartoons of 32x32: {elapsed:.3f} s")
    assert elapsed < 2.0
