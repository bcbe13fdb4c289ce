"""Tweedie/Miyasawa conversions and the Gaussian closed forms against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from theory.gaussian import gaussian_kl, gaussian_mmse, mismatched_sse, smoothed
from theory.jacobian import trace_exact
from theory.tweedie import denoiser_from_score, score_from_denoiser

SIGMAS = (0.05, 0.3, 1.5)


def random_gaussian(rng: np.random.Generator, d: int, dense: bool):
    """A random mean and covariance: dense matrix, or a diagonal spectrum."""
    mean = rng.normal(size=d)
    if dense:
        g = rng.normal(size=(d, d))
        return mean, g @ g.T / d + 0.05 * np.eye(d)
    return mean, rng.uniform(0.02, 3.0, size=d)


def dense(cov: np.ndarray) -> np.ndarray:
    return np.diag(cov) if cov.ndim == 1 else cov


def wiener(mean_q, cov_q, y, sigma):
    """Wiener filter from the dense formula f(y) = mu + C (C + s^2 I)^-1 (y - mu); y is (n, d)."""
    c = dense(cov_q)
    a = c @ np.linalg.inv(c + sigma**2 * np.eye(c.shape[0]))
    return mean_q + (y - mean_q) @ a.T


def mc_sse(mean_p, cov_p, mean_q, cov_q, sigma, n=20000, seed=0):
    """Monte Carlo mean and standard error of ||f_q(y) - x||^2 with x ~ p."""
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(mean_p, dense(cov_p), size=n)
    y = x + sigma * rng.normal(size=x.shape)
    err = np.sum((wiener(mean_q, cov_q, y, sigma) - x) ** 2, axis=1)
    return err.mean(), err.std(ddof=1) / np.sqrt(n)


def eig(cov):
    return cov if cov.ndim == 1 else np.linalg.eigvalsh(cov)


def test_score_denoiser_round_trip():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    x_hat = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    for sigma in (0.2, torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)):
        score = score_from_denoiser(x_hat, y, sigma)
        torch.testing.assert_close(denoiser_from_score(score, y, sigma), x_hat, rtol=1e-12, atol=0)
    expected = (x_hat - y) / torch.tensor([0.01, 0.25, 4.0], dtype=torch.float64)[
        :, None, None, None
    ]
    torch.testing.assert_close(
        score_from_denoiser(x_hat, y, torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)), expected
    )


@pytest.mark.parametrize("d", [1, 6])
def test_tweedie_is_wiener_for_gaussian(d):
    rng = np.random.default_rng(d)
    mean, cov = random_gaussian(rng, d, dense=True)
    sigma = torch.tensor([0.1, 0.7, 2.0], dtype=torch.float64)
    mu, c = torch.tensor(mean), torch.tensor(cov)
    y = torch.tensor(rng.normal(size=(3, d)) * 2, requires_grad=True)
    eye = torch.eye(d, dtype=torch.float64)
    # log p_sigma(y) of N(mu, C + s^2 I), differentiated by autograd.
    logp = sum(
        torch.distributions.MultivariateNormal(mu, c + s**2 * eye).log_prob(y[i])
        for i, s in enumerate(sigma)
    )
    (score,) = torch.autograd.grad(logp, y)
    tweedie = denoiser_from_score(score, y.detach(), sigma)
    direct = torch.stack(
        [
            mu + c @ torch.linalg.solve(c + s**2 * eye, y[i].detach() - mu)
            for i, s in enumerate(sigma)
        ]
    )
    rel = (tweedie - direct).norm() / direct.norm()
    assert rel < 1e-10


@pytest.mark.parametrize("is_dense", [True, False])
def test_mmse_matches_monte_carlo_wiener(is_dense):
    rng = np.random.default_rng(1)
    mean, cov = random_gaussian(rng, 8, is_dense)
    for k, sigma in enumerate(SIGMAS):
        mc, se = mc_sse(mean, cov, mean, cov, sigma, seed=k)
        assert abs(gaussian_mmse(eig(cov), sigma) - mc) < 3 * se


@pytest.mark.parametrize("is_dense", [True, False])
def test_mismatched_sse_matches_monte_carlo(is_dense):
    rng = np.random.default_rng(2)
    mean_p, cov_p = random_gaussian(rng, 8, is_dense)
    mean_q, cov_q = random_gaussian(rng, 8, is_dense)
    for k, sigma in enumerate(SIGMAS):
        mc, se = mc_sse(mean_p, cov_p, mean_q, cov_q, sigma, seed=10 + k)
        assert abs(mismatched_sse(mean_p, cov_p, mean_q, cov_q, sigma) - mc) < 3 * se


@pytest.mark.parametrize("is_dense", [True, False])
def test_mismatched_equals_mmse_when_q_is_p(is_dense):
    mean, cov = random_gaussian(np.random.default_rng(3), 7, is_dense)
    sigma = np.geomspace(1e-3, 10, 9)
    np.testing.assert_allclose(
        mismatched_sse(mean, cov, mean, cov, sigma), gaussian_mmse(eig(cov), sigma), rtol=1e-12
    )
    assert gaussian_mmse(eig(cov), sigma).shape == sigma.shape
    assert np.ndim(gaussian_mmse(eig(cov), 0.5)) == 0


def test_mismatched_sse_excess_is_positive():
    rng = np.random.default_rng(4)
    mean_p, cov_p = random_gaussian(rng, 5, True)
    mean_q, cov_q = random_gaussian(rng, 5, True)
    sigma = np.geomspace(1e-3, 1e2, 30)
    excess = mismatched_sse(mean_p, cov_p, mean_q, cov_q, sigma) - gaussian_mmse(eig(cov_p), sigma)
    assert np.all(excess > 0)


@pytest.mark.parametrize("is_dense", [True, False])
def test_gaussian_kl_matches_monte_carlo_log_ratio(is_dense):
    rng = np.random.default_rng(5)
    mean_p, cov_p = random_gaussian(rng, 4, is_dense)
    mean_q, cov_q = random_gaussian(rng, 4, is_dense)
    x = rng.multivariate_normal(mean_p, dense(cov_p), size=40000)
    log_ratio = stats.multivariate_normal(mean_p, dense(cov_p)).logpdf(
        x
    ) - stats.multivariate_normal(mean_q, dense(cov_q)).logpdf(x)
    se = log_ratio.std(ddof=1) / np.sqrt(x.shape[0])
    assert abs(gaussian_kl(mean_p, cov_p, mean_q, cov_q) - log_ratio.mean()) < 3 * se
    assert gaussian_kl(mean_p, cov_p, mean_p, cov_p) == pytest.approx(0, abs=1e-12)


def test_gaussian_kl_design_value():
    assert gaussian_kl([0.0], [1.0], [0.0], [3.0]) == pytest.approx(0.2159728, abs=1e-7)


def test_diagonal_and_dense_forms_agree():
    rng = np.random.default_rng(6)
    d = 6
    q_orth, _ = np.linalg.qr(rng.normal(size=(d, d)))
    mean_p, lam_p = random_gaussian(rng, d, False)
    mean_q, lam_q = random_gaussian(rng, d, False)
    rot_p, rot_q = q_orth @ np.diag(lam_p) @ q_orth.T, q_orth @ np.diag(lam_q) @ q_orth.T
    rot_p, rot_q = (rot_p + rot_p.T) / 2, (rot_q + rot_q.T) / 2
    sigma = np.array([0.01, 0.2, 3.0])
    np.testing.assert_allclose(
        mismatched_sse(q_orth @ mean_p, rot_p, q_orth @ mean_q, rot_q, sigma),
        mismatched_sse(mean_p, lam_p, mean_q, lam_q, sigma),
        rtol=1e-10,
    )
    assert gaussian_kl(q_orth @ mean_p, rot_p, q_orth @ mean_q, rot_q) == pytest.approx(
        gaussian_kl(mean_p, lam_p, mean_q, lam_q), rel=1e-10
    )
    # Mixed forms: a 1-D diagonal is the diagonal matrix in the shared basis.
    assert gaussian_kl(mean_p, lam_p, mean_q, np.diag(lam_q)) == pytest.approx(
        gaussian_kl(mean_p, lam_p, mean_q, lam_q), rel=1e-12
    )
    np.testing.assert_allclose(
        mismatched_sse(mean_p, np.diag(lam_p), mean_q, lam_q, sigma),
        mismatched_sse(mean_p, lam_p, mean_q, lam_q, sigma),
        rtol=1e-12,
    )
    np.testing.assert_allclose(smoothed(rot_p, 0.5), rot_p + 0.25 * np.eye(d))
    np.testing.assert_allclose(smoothed(lam_p, 0.5), lam_p + 0.25)


def test_stein_exact_trace_of_wiener_jacobian():
    rng = np.random.default_rng(7)
    mean, cov = random_gaussian(rng, 9, True)
    mu, c = torch.tensor(mean), torch.tensor(cov)

    def f(y, sigma):
        s = torch.as_tensor(sigma, dtype=y.dtype).reshape(-1, 1, 1)
        flat = y.flatten(1)
        gain = c @ torch.linalg.inv(c + s**2 * torch.eye(9, dtype=y.dtype))
        return (mu + ((flat - mu)[:, None, :] @ gain.transpose(1, 2))[:, 0]).reshape(y.shape)

    y = torch.tensor(rng.normal(size=(3, 1, 3, 3)))
    sigma = torch.tensor([0.05, 0.4, 2.0], dtype=torch.float64)
    stein = (sigma**2 * trace_exact(f, y, sigma)).numpy()
    np.testing.assert_allclose(
        stein, gaussian_mmse(np.linalg.eigvalsh(cov), sigma.numpy()), rtol=1e-10
    )


def test_bad_input_raises():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_mmse([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="eigvals"):
        gaussian_mmse([1.0, -2.0], 0.1)
    with pytest.raises(ValueError, match="same dimension"):
        mismatched_sse(np.zeros(2), np.ones(2), np.zeros(3), np.ones(3), 0.1)
    with pytest.raises(ValueError, match="mean_q"):
        gaussian_kl(np.zeros(2), np.ones(2), np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="symmetr"):
        gaussian_kl(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl(np.zeros(2), np.array([1.0, 0.0]), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl(np.zeros(2), np.ones(2), np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        score_from_denoiser(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 4, 4), 0.1)
    with pytest.raises(ValueError, match="sigma"):
        denoiser_from_score(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3), -1.0)
