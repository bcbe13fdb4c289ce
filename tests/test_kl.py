"""The KL integral (docs/design.md §4) against closed-form Gaussian KLs; its error propagation."""

from __future__ import annotations

import numpy as np
import pytest

from theory.gaussian import gaussian_kl, gaussian_mmse, mismatched_sse, smoothed
from theory.kl import kl_curve

SIGMA0 = (1e-2, 0.1, 0.5)


def random_pair(rng: np.random.Generator, dense: bool):
    """Two Gaussians: random dense covariances (d = 6) or random power-law spectra (d = 64)."""
    if dense:
        d = 6
        covs = []
        for _ in range(2):
            g = rng.normal(size=(d, d))
            covs.append(g @ g.T / d + 0.01 * np.eye(d))
    else:
        d = 64
        k = np.arange(1, d + 1)
        covs = [
            rng.uniform(0.5, 2.0) * k ** -rng.uniform(0.5, 2.5) * rng.uniform(0.5, 1.5, size=d)
            for _ in range(2)
        ]
    return rng.normal(scale=0.5, size=d), covs[0], rng.normal(scale=0.5, size=d), covs[1]


def excess_curve(mean_p, cov_p, mean_q, cov_q, sigma):
    lam_p = cov_p if cov_p.ndim == 1 else np.linalg.eigvalsh(cov_p)
    return mismatched_sse(mean_p, cov_p, mean_q, cov_q, sigma) - gaussian_mmse(lam_p, sigma)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("per_decade", "rel"), [(10, 1e-3), (4, 5e-3)])
def test_kl_identity_random_gaussians(dense, seed, per_decade, rel):
    mean_p, cov_p, mean_q, cov_q = random_pair(np.random.default_rng(seed), dense)
    # Log grid from 1e-3 to 1e4 with each sigma0 put on it; 4 per decade is the default
    # benchmark density (theory.sigma.log_sigmas: 13 levels over 3 decades).
    grid = np.geomspace(1e-3, 1e4, 7 * per_decade + 1)
    sigma = np.unique(np.concatenate([grid, SIGMA0]))
    curve = kl_curve(sigma, excess_curve(mean_p, cov_p, mean_q, cov_q, sigma))
    for s0 in SIGMA0:
        exact = gaussian_kl(mean_p, smoothed(cov_p, s0), mean_q, smoothed(cov_q, s0))
        assert curve.value[np.searchsorted(sigma, s0)] == pytest.approx(exact, rel=rel)


def test_kl_design_value_one_dimension():
    sigma = np.geomspace(1e-4, 1e4, 400)
    curve = kl_curve(
        sigma, excess_curve(np.zeros(1), np.ones(1), np.zeros(1), np.full(1, 3.0), sigma)
    )
    assert curve.value[0] == pytest.approx(0.2159728, abs=1e-6)
    assert curve.tail == pytest.approx(0.0, abs=1e-12)  # equal means: dSSE -> 0 at large sigma


@pytest.mark.parametrize(("n", "coef"), [(17, (0.3, -0.7, 0.2, 0.05)), (2, (0.3, -0.7, 0, 0))])
def test_weights_exact_for_polynomial_integrand_and_tail(n, coef):
    # The cubic spline in u = ln s integrates a cubic g = dSSE / s^2 exactly (a line for n = 2),
    # on an irregular grid.
    rng = np.random.default_rng(0)
    sigma = np.sort(np.geomspace(0.01, 2.0, n) * np.exp(rng.uniform(0, 0.05, n)))
    u = np.log(sigma)
    poly = np.polynomial.Polynomial(coef)
    curve = kl_curve(sigma, poly(u) * sigma**2)
    exact = poly.integ()(u[-1]) - poly.integ()(u)
    tail = poly(u[-1]) / 2
    assert curve.tail == pytest.approx(tail, rel=1e-12)
    np.testing.assert_allclose(curve.value, exact + tail, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(curve.se, np.zeros_like(sigma))
    assert curve.to_dict()["value"][-1] == pytest.approx(tail)


def test_standard_error_matches_replicates():
    rng = np.random.default_rng(3)
    sigma = np.geomspace(1e-3, 1.0, 25)
    truth = 2.0 * sigma**2 + 0.5 * sigma**3
    delta_se = truth * rng.uniform(0.05, 0.4, size=sigma.size)
    curve = kl_curve(sigma, truth, delta_se)
    n_rep = 2000
    replicates = np.stack(
        [
            kl_curve(sigma, truth + delta_se * rng.normal(size=sigma.size)).value
            for _ in range(n_rep)
        ]
    )
    np.testing.assert_allclose(replicates.std(axis=0, ddof=1), curve.se, rtol=0.1)
    assert np.all(np.abs(replicates.mean(axis=0) - curve.value) < 4 * curve.se / np.sqrt(n_rep))


@pytest.mark.parametrize(
    ("sigma", "dsse", "se", "match"),
    [
        (np.array([0.1]), np.array([1.0]), None, ">= 2"),
        (np.array([0.1, 0.0, 0.3]), np.ones(3), None, "> 0"),
        (np.array([0.1, 0.3, 0.2]), np.ones(3), None, "increasing"),
        (np.array([0.1, 0.2, 0.3]), np.ones(2), None, "delta_sse"),
        (np.array([0.1, 0.2, 0.3]), np.array([1.0, np.nan, 1.0]), None, "delta_sse"),
        (np.array([0.1, 0.2, 0.3]), np.ones(3), np.array([0.1, -0.1, 0.1]), "delta_se"),
    ],
)
def test_bad_input_raises(sigma, dsse, se, match):
    with pytest.raises(ValueError, match=match):
        kl_curve(sigma, dsse, se)


def test_per_image_rows_give_mean_curve_and_correlation_aware_se():
    """Rows sharing an image-level offset across sigma: the row path's SE sees the correlation."""
    rng = np.random.default_rng(5)
    sigma = np.geomspace(1e-2, 1.0, 9)
    truth = 0.3 * sigma**2
    offsets = rng.normal(scale=0.05, size=(4000, 1)) * sigma**2  # fully correlated across sigma
    rows = truth + offsets

    per_image = kl_curve(sigma, rows)
    assert np.allclose(per_image.value, kl_curve(sigma, rows.mean(0)).value, rtol=1e-12)

    # Independent replicate estimates of the 200-image mean: their spread is the true SE.
    reps = [kl_curve(sigma, rows[i : i + 200]).value for i in range(0, 4000, 200)]
    true_se = np.std(reps, axis=0, ddof=1)
    est_se = kl_curve(sigma, rows[:200]).se
    assert np.allclose(est_se, true_se, rtol=0.4)
    naive = kl_curve(sigma, rows[:200].mean(0), rows[:200].std(0, ddof=1) / np.sqrt(200)).se
    # Many correlated levels below the lowest cut: the independence formula underestimates.
    assert naive[0] < 0.5 * true_se[0]


def test_per_image_rows_reject_single_row_and_se():
    sigma = np.geomspace(0.1, 1.0, 4)
    with pytest.raises(ValueError, match="rows"):
        kl_curve(sigma, np.ones((1, 4)))
    with pytest.raises(ValueError, match="rows"):
        kl_curve(sigma, np.ones((3, 4)), np.ones(4))
