"""Curvelet thresholding: a Parseval frame, exact noise calibration, and a denoising gain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from models.curvelets import CurveletThreshold, curvelet_frame, default_num_scales
from models.wavelets import WaveletThreshold
from synthetic import get_family

SHAPES = [(32, 32), (64, 64), (64, 32), (48, 48)]


def _subbands(frame):
    """(start, stop) of every curvelet subband (low-pass excluded) in the coefficient vector."""
    sizes = [int(np.prod(s)) for sc in frame.transform.coefficient_shapes() for d in sc for s in d]
    edges = np.cumsum([0] + sizes)
    return list(zip(edges[1:-1], edges[2:], strict=True))


def _bonferroni_z(n_tests: int, level: float = 0.01) -> float:
    """Two-sided z bound with family-wise false-alarm probability ``level``."""
    return float(stats.norm.isf(level / (2 * n_tests)))


@pytest.mark.parametrize("shape", SHAPES)
def test_udct_is_a_parseval_frame_with_adjoint_inverse(shape):
    frame = curvelet_frame(shape)
    t = frame.transform
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    c = t.vect(t.forward(x))
    assert np.linalg.norm(t.backward(t.struct(c)) - x) / np.linalg.norm(x) < 1e-10
    assert abs(np.sum(np.abs(c) ** 2) / np.sum(x**2) - 1) < 1e-10
    # backward is the adjoint of forward for the real inner product on C^N = R^2N, so the
    # frame is tight and the noise std of a coefficient is the norm of its synthesized atom.
    w = rng.standard_normal(c.shape) + 1j * rng.standard_normal(c.shape)
    lhs = np.sum((np.conj(c) * w).real)
    rhs = np.sum(x * t.backward(t.struct(w)))
    assert abs(lhs - rhs) < 1e-10 * np.linalg.norm(x) * np.linalg.norm(w)


def test_zero_threshold_returns_the_input():
    y = torch.rand(3, 1, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = CurveletThreshold(factor=0.0)(y, 0.1)
    assert out.dtype == torch.float64 and out.shape == y.shape
    assert torch.allclose(out, y, atol=1e-12, rtol=0)


def test_atoms_of_a_subband_share_one_norm():
    """The calibration uses one position per subband: atoms are translates of each other."""
    frame = curvelet_frame((32, 32))
    t = frame.transform
    unit = np.zeros(frame.std_real.size, dtype=complex)
    for lo, hi in _subbands(frame):
        for value in (1.0, 1j):
            norms = []
            for position in (lo, (lo + hi) // 2, hi - 1):
                unit[position] = value
                norms.append(np.linalg.norm(t.backward(t.struct(unit))))
                unit[position] = 0
            assert np.ptp(norms) < 1e-12, (lo, value, norms)


def test_noise_calibration_matches_monte_carlo():
    """Per subband, the mean square of real/imag parts of transformed unit noise = std^2."""
    frame = curvelet_frame((64, 64))
    t, rng, k = frame.transform, np.random.default_rng(2), 300
    bands = _subbands(frame)
    power = np.empty((k, len(bands), 2))
    for i in range(k):
        c = t.vect(t.forward(rng.standard_normal((64, 64))))
        for b, (lo, hi) in enumerate(bands):
            power[i, b] = np.mean(c.real[lo:hi] ** 2), np.mean(c.imag[lo:hi] ** 2)
    exact = np.array([[frame.std_real[lo] ** 2, frame.std_imag[lo] ** 2] for lo, _ in bands])
    z = (power.mean(0) - exact) / (power.std(0, ddof=1) / np.sqrt(k))
    assert np.abs(z).max() < _bonferroni_z(z.size), np.abs(z).max()
    # Real and imaginary parts really differ in some subbands: one std would not do.
    assert np.max(np.abs(np.log(exact[:, 0] / exact[:, 1]))) > 0.05


def test_three_sigma_threshold_keeps_the_gaussian_tail_in_every_subband():
    frame = curvelet_frame((64, 64))
    t, rng, k = frame.transform, np.random.default_rng(3), 300
    bands = _subbands(frame)
    kept = np.empty((k, len(bands)))
    for i in range(k):
        c = t.vect(t.forward(rng.standard_normal((64, 64))))
        survive = (np.abs(c.real) >= 3 * frame.std_real).astype(float)
        survive += np.abs(c.imag) >= 3 * frame.std_imag
        kept[i] = [survive[lo:hi].sum() / (2 * (hi - lo)) for lo, hi in bands]
    tail = 2 * stats.norm.sf(3.0)  # 0.27%
    se = kept.std(0, ddof=1) / np.sqrt(k)
    z = (kept.mean(0) - tail) / se
    assert np.abs(z).max() < _bonferroni_z(len(bands)), (kept.mean(0), tail)
    pooled = kept.mean(1)
    assert abs(pooled.mean() - tail) < 3 * pooled.std(ddof=1) / np.sqrt(k)


def test_beats_orthogonal_wavelets_on_cartoons_at_moderate_sigma():
    """Measured (8 C^2 cartoons, 64 px): MSE ratio curvelet / db4 about 0.6 at these sigma."""
    x = get_family("cartoons", size=64, alpha=2.0).images("test", 8)
    gen = torch.Generator().manual_seed(4)
    curvelet, wavelet = CurveletThreshold(), WaveletThreshold("db4")
    for sigma in (0.05, 0.1):
        y = x + sigma * torch.randn(x.shape, generator=gen)
        err_c = (curvelet(y, sigma) - x).square().flatten(1).mean(1).double()
        err_w = (wavelet(y, sigma) - x).square().flatten(1).mean(1).double()
        diff = err_c - err_w
        assert diff.mean() < -3 * diff.std() / np.sqrt(len(diff)), (err_c.mean(), err_w.mean())


def test_batched_call_and_per_image_sigma():
    x = get_family("cartoons", size=32).images("test", 4)
    sigma = torch.tensor([0.02, 0.05, 0.1, 0.2])
    y = x + sigma.reshape(-1, 1, 1, 1) * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(5)
    )
    f = CurveletThreshold(mode="soft")
    out = f(y, sigma)
    assert out.dtype == torch.float32 and out.shape == y.shape
    for i in range(4):
        assert torch.allclose(out[i : i + 1], f(y[i : i + 1], float(sigma[i])), atol=1e-6)
    assert list(f._frames) == [(32, 32)]


def test_default_number_of_scales():
    assert [default_num_scales((n, n)) for n in (16, 32, 64, 128, 256)] == [3, 3, 4, 5, 6]
    assert default_num_scales((80, 80)) == 4
    assert default_num_scales((48, 48)) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "median"}, "unknown thresholding mode"),
        ({"factor": -1.0}, "factor must be finite and >= 0"),
        ({"wedges_per_direction": 4}, "multiple of 3"),
        ({"num_scales": 1}, "num_scales must be >= 2"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CurveletThreshold(**kwargs)


def test_bad_input():
    f = CurveletThreshold()
    with pytest.raises(ValueError, match="does not reconstruct 30x30 images"):
        f(torch.zeros(1, 1, 30, 30), 0.1)
    with pytest.raises(ValueError, match="cannot take 32x32 images"):
        CurveletThreshold(num_scales=7)(torch.zeros(1, 1, 32, 32), 0.1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        f(torch.zeros(1, 32, 32), 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        f(torch.zeros(1, 1, 32, 32), 0.0)
