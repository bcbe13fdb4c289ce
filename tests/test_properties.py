"""Property tests (hypothesis): invariants that must hold for every input, not one example."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theory.empirical import empirical_posterior_mean
from theory.gaussian import gaussian_mmse
from theory.kl import kl_curve

positive = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
settings.register_profile("toolkit", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("toolkit")


@given(
    eigvals=arrays(np.float64, st.integers(1, 20), elements=st.floats(0, 10)),
    s1=positive,
    s2=positive,
)
def test_gaussian_mmse_bounded_and_increasing(eigvals, s1, s2):
    lo, hi = sorted((s1, s2))
    sse_lo, sse_hi = gaussian_mmse(eigvals, lo), gaussian_mmse(eigvals, hi)
    assert 0 <= sse_lo <= sse_hi * (1 + 1e-12) + 1e-300
    # Never worse than doing nothing (d sigma^2) or than returning the mean (sum of variances).
    assert sse_hi <= min(eigvals.size * hi**2, eigvals.sum()) * (1 + 1e-12)


@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 12),
    sigma=st.floats(1e-3, 10),
)
def test_memorizer_is_a_convex_combination_invariant_to_order(seed, n, sigma):
    gen = torch.Generator().manual_seed(seed)
    train = torch.rand(n, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = train[torch.randint(n, (3,), generator=gen)] + sigma * torch.randn(
        3, 1, 4, 4, generator=gen, dtype=torch.float64
    )
    out = empirical_posterior_mean(y, train, sigma)
    assert torch.all(out >= train.min(0).values - 1e-12)
    assert torch.all(out <= train.max(0).values + 1e-12)
    permuted = empirical_posterior_mean(y, train[torch.randperm(n, generator=gen)], sigma)
    torch.testing.assert_close(out, permuted, rtol=1e-10, atol=1e-12)


@given(
    a=arrays(np.float64, 6, elements=st.floats(0, 5)),
    b=arrays(np.float64, 6, elements=st.floats(0, 5)),
    c=st.floats(0, 3),
)
def test_kl_curve_is_linear_in_the_excess_error(a, b, c):
    sigma = np.geomspace(0.01, 1.0, 6)
    ka, kb = kl_curve(sigma, a).value, kl_curve(sigma, b).value
    scale = 1 + np.abs(ka).max() + c * np.abs(kb).max()
    np.testing.assert_allclose(kl_curve(sigma, a + c * b).value, ka + c * kb, atol=1e-12 * scale)
