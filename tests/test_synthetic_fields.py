"""Gaussian fields: spectrum formula and Monte Carlo moments against the stated covariance."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic.fields import GaussianFieldFamily, field_spectrum, gaussian_field_images

SIZE, GAMMA, STD, MEAN, N = 16, 2.0, 0.1, 0.5, 4000


@pytest.fixture(scope="module")
def samples():
    return gaussian_field_images(N, SIZE, GAMMA, STD, MEAN, np.random.default_rng(0))


def test_spectrum_formula():
    s = field_spectrum(SIZE, GAMMA, STD)
    assert s.mean() == pytest.approx(STD**2, rel=1e-12)
    amplitude = s[0, 0]
    assert s[0, 1] == pytest.approx(amplitude)  # max(|k|, 1) = 1
    assert s[3, 4] == pytest.approx(amplitude * 5.0**-GAMMA)
    assert s[-3, 4] == pytest.approx(s[3, -4])  # even in k
    assert s[SIZE // 2, 0] == pytest.approx(amplitude * (SIZE / 2) ** -GAMMA)


def test_pixel_mean_and_variance(samples):
    # per-image averages are independent across images: their spread gives the SE
    means = samples.mean(axis=(1, 2))
    assert abs(means.mean() - MEAN) < 3 * means.std(ddof=1) / np.sqrt(N)
    variances = ((samples - MEAN) ** 2).mean(axis=(1, 2))
    assert abs(variances.mean() - STD**2) < 3 * variances.std(ddof=1) / np.sqrt(N)


def test_covariance_in_pixel_space(samples):
    # C[p, q] = c(p - q) with c = ifft2(S) (numpy's 1/d inverse): C = F* diag(S) F.
    c = np.fft.ifft2(field_spectrum(SIZE, GAMMA, STD)).real
    centred = samples - MEAN
    for dy, dx in [(0, 0), (0, 1), (1, 0), (1, 1), (0, 3), (5, 2)]:
        shifted = np.roll(centred, shift=(dy, dx), axis=(1, 2))
        per_image = (centred * shifted).mean(axis=(1, 2))
        se = per_image.std(ddof=1) / np.sqrt(N)
        assert abs(per_image.mean() - c[dy, dx]) < 3 * se, (dy, dx)


def test_covariance_in_fourier_basis(samples):
    s = field_spectrum(SIZE, GAMMA, STD)
    power = np.abs(np.fft.fft2(samples - MEAN, norm="ortho")) ** 2
    ratio = power.mean(axis=0) / s
    # |X_k|^2 / S_k is exponential (variance 1) or chi2_1 (variance 2) at self-conjugate k
    k = np.fft.fftfreq(SIZE, d=1.0 / SIZE)
    self_conjugate = np.isin(k, [0, -SIZE // 2])
    var = np.where(self_conjugate[:, None] & self_conjugate[None, :], 2.0, 1.0)
    z = (ratio - 1) / np.sqrt(var / N)
    print(f"max |z| over {z.size} frequencies: {np.abs(z).max():.2f}")
    assert np.abs(z).max() < 4.5  # 256 (half of them conjugate copies) draws of N(0, 1)


def test_family_exposes_spectrum_and_mean():
    f = GaussianFieldFamily(size=8, gamma=1.0, std=0.2, mean=0.3)
    np.testing.assert_array_equal(f.spectrum(), field_spectrum(8, 1.0, 0.2))
    assert f.mean == 0.3
    assert f.params == {
        "name": "gaussian",
        "size": 8,
        "seed": 0,
        "gamma": 1.0,
        "std": 0.2,
        "mean": 0.3,
    }


def test_bad_field_input():
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        field_spectrum(8, -1.0, 0.1)
    with pytest.raises(ValueError, match="std must be > 0"):
        GaussianFieldFamily(std=-0.1)
