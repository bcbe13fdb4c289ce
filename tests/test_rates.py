"""Minimax exponents, power-law fits with confidence intervals, and local slopes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from theory.rates import fit_power_law, local_slopes, minimax_exponent

SIGMA = np.geomspace(1e-3, 1.0, 13)


def noisy_power_law(rng, slope=4 / 3, scale=0.05, noise=0.1):
    return scale * SIGMA**slope * np.exp(noise * rng.normal(size=SIGMA.size))


def test_minimax_exponent_values():
    assert minimax_exponent(1.0) == 1.0
    assert minimax_exponent(2.0) == pytest.approx(4 / 3)
    assert minimax_exponent(1e6) == pytest.approx(2.0, abs=1e-5)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            minimax_exponent(bad)


def test_fit_recovers_exponent_inside_ci():
    fit = fit_power_law(SIGMA, noisy_power_law(np.random.default_rng(0)))
    assert fit.ci[0] < 4 / 3 < fit.ci[1]
    assert fit.ci[1] - fit.ci[0] < 0.1
    assert fit.n_points == 13 and fit.window == (SIGMA[0], SIGMA[-1])
    assert fit.intercept == pytest.approx(np.log(0.05), abs=0.2)
    assert json.loads(json.dumps(fit.to_dict()))["slope"] == fit.slope


def test_exact_on_pure_power_law():
    fit = fit_power_law(SIGMA, 3.0 * SIGMA**1.7)
    assert fit.slope == pytest.approx(1.7, abs=1e-12)
    assert fit.intercept == pytest.approx(np.log(3.0), abs=1e-12)
    assert fit.ci[1] - fit.ci[0] < 1e-10


@pytest.mark.parametrize("weighted", [False, True])
def test_ci_coverage_over_seeds(weighted):
    covered = 0
    n_seeds = 200
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        # Heteroscedastic noise on log mse; the weighted fit is told its size.
        rel = np.linspace(0.05, 0.3, SIGMA.size)
        mse = 0.05 * SIGMA**1.5 * np.exp(rel * rng.normal(size=SIGMA.size))
        fit = fit_power_law(SIGMA, mse, se=rel * mse if weighted else None)
        covered += fit.ci[0] <= 1.5 <= fit.ci[1]
    assert 0.90 <= covered / n_seeds <= 0.99


def test_weights_down_weight_noisy_points():
    mse = 0.05 * SIGMA**1.5
    mse[-1] *= 10.0  # one outlier, declared very uncertain
    se = 0.01 * mse
    se[-1] = 100 * mse[-1]
    assert fit_power_law(SIGMA, mse, se=se).slope == pytest.approx(1.5, abs=1e-3)
    assert abs(fit_power_law(SIGMA, mse).slope - 1.5) > 0.05


def test_window_is_respected():
    # Slope 2 below sigma = 0.01, slope 1 above: a window on either side sees only its own law.
    mse = np.where(SIGMA < 0.01, SIGMA**2, 0.01 * SIGMA)
    low = fit_power_law(SIGMA, mse, window=(1e-3, 0.0099))
    high = fit_power_law(SIGMA, mse, window=(0.01, 1.0))
    assert low.slope == pytest.approx(2.0, abs=1e-10)
    assert high.slope == pytest.approx(1.0, abs=1e-10)
    inside = SIGMA[(SIGMA >= 0.01) & (SIGMA <= 1.0)]
    assert high.window == (inside[0], inside[-1]) and high.n_points == inside.size


def test_local_slopes_pure_and_broken_power_law():
    centers, slopes = local_slopes(SIGMA, 2.0 * SIGMA**0.8)
    np.testing.assert_allclose(slopes, 0.8, atol=1e-12)
    np.testing.assert_allclose(centers, SIGMA[1:-1], rtol=1e-12)  # geometric means of a log grid

    knee = 0.03
    mse = np.where(SIGMA <= knee, SIGMA**2, knee * SIGMA)
    centers, slopes = local_slopes(SIGMA, mse, width=4)
    assert centers.size == SIGMA.size - 3
    runs = np.lib.stride_tricks.sliding_window_view(SIGMA, 4)
    below, above = runs.max(axis=1) <= knee, runs.min(axis=1) >= knee
    np.testing.assert_allclose(slopes[below], 2.0, atol=1e-12)
    np.testing.assert_allclose(slopes[above], 1.0, atol=1e-12)
    straddle = ~(below | above)
    assert np.all((slopes[straddle] > 1.0) & (slopes[straddle] < 2.0))
    np.testing.assert_allclose(centers, np.exp(np.log(runs).mean(axis=1)), rtol=1e-12)


def test_bad_input_raises():
    mse = SIGMA**2
    with pytest.raises(ValueError, match=">= 3 points"):
        fit_power_law(SIGMA, mse, window=(0.5, 1.0))
    with pytest.raises(ValueError, match="mse"):
        fit_power_law(SIGMA, np.where(SIGMA > 0.5, 0.0, mse))
    with pytest.raises(ValueError, match="same length"):
        fit_power_law(SIGMA, mse[:-1])
    with pytest.raises(ValueError, match="se"):
        fit_power_law(SIGMA, mse, se=np.zeros_like(mse))
    with pytest.raises(ValueError, match="confidence"):
        fit_power_law(SIGMA, mse, confidence=95)
    with pytest.raises(ValueError, match="window"):
        fit_power_law(SIGMA, mse, window=(1.0, 0.1))
    with pytest.raises(ValueError, match="width"):
        local_slopes(SIGMA, mse, width=1)
    with pytest.raises(ValueError, match="increasing"):
        local_slopes(SIGMA[::-1], mse)
