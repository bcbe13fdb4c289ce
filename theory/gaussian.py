"""Gaussian laws: optimal (Wiener) denoising error, mismatched error and KL in closed form.

All functions take numpy float64 arrays. A covariance is either a dense ``(d, d)`` matrix or a
1-D array of length ``d`` holding a covariance diagonal in a shared orthonormal basis (for
example a stationary field's spectrum in the orthonormal FFT basis); means are then expressed
in that same basis. Dense and diagonal arguments may be mixed (a diagonal is promoted to a
diagonal matrix in the shared basis). Errors are totals over the d coordinates (``sse``).
"""

from __future__ import annotations

import numpy as np

from theory.sigma import check_sigma


def _as_cov(cov: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim == 1:
        ok = c.size > 0 and np.all(np.isfinite(c))
    else:
        ok = c.ndim == 2 and c.shape[0] == c.shape[1] > 0 and np.all(np.isfinite(c))
        ok = ok and np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * np.abs(c).max())
    if not ok:
        raise ValueError(
            f"{name} must be a finite symmetric (d, d) matrix or a 1-D diagonal of length d "
            f"(got shape {c.shape}); symmetrize it with (C + C.T) / 2"
        )
    return c


def _as_mean(mean: np.ndarray, d: int, name: str) -> np.ndarray:
    m = np.asarray(mean, dtype=np.float64)
    if m.shape != (d,) or not np.all(np.isfinite(m)):
        raise ValueError(
            f"{name} must be a finite vector of length d = {d} (got shape {m.shape}), "
            "expressed in the basis of the covariances"
        )
    return m


def _in_q_basis(
    mean_p: np.ndarray, cov_p: np.ndarray, mean_q: np.ndarray, cov_q: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Express p in the eigenbasis of ``C_q``: (eigenvalues of C_q, diag of C_p, mu_p - mu_q).

    Every matrix function of ``C_q`` is diagonal there, so the error and KL formulas reduce to
    sums over coordinates; only the diagonal of the rotated ``C_p`` enters them.
    """
    cov_p, cov_q = _as_cov(cov_p, "cov_p"), _as_cov(cov_q, "cov_q")
    d = cov_q.shape[0]
    if cov_p.shape[0] != d:
        raise ValueError(
            f"cov_p and cov_q must have the same dimension (got {cov_p.shape} and {cov_q.shape})"
        )
    diff = _as_mean(mean_p, d, "mean_p") - _as_mean(mean_q, d, "mean_q")
    if cov_q.ndim == 1:
        return cov_q, (np.diag(cov_p) if cov_p.ndim == 2 else cov_p), diff
    lam_q, u = np.linalg.eigh(cov_q)
    c_p = np.diag(cov_p) if cov_p.ndim == 1 else cov_p
    return lam_q, np.einsum("ik,ij,jk->k", u, c_p, u), u.T @ diff


_NOT_PD = "{} must be positive definite for a KL; smooth it first, e.g. smoothed(cov, sigma0)"


def _logdet(cov: np.ndarray) -> float:
    """``ln det C`` of a positive definite covariance (dense by Cholesky, or a diagonal)."""
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim == 1:
        if np.any(c <= 0):
            raise ValueError(_NOT_PD.format("cov_p"))
        return float(np.sum(np.log(c)))
    try:
        return float(2 * np.sum(np.log(np.diag(np.linalg.cholesky(c)))))
    except np.linalg.LinAlgError:
        raise ValueError(_NOT_PD.format("cov_p")) from None


def smoothed(cov: np.ndarray, sigma: float) -> np.ndarray:
    """Covariance of ``x + sigma z``: ``C + sigma^2 I`` (same form, dense or diagonal, as ``cov``).

    ``KL(p_sigma0 || q_sigma0)`` of two Gaussians is ``gaussian_kl`` of the smoothed covariances.
    """
    check_sigma(sigma)
    c = _as_cov(cov, "cov")
    if c.ndim == 1:
        return c + sigma**2
    return c + sigma**2 * np.eye(c.shape[0])


def gaussian_mmse(eigvals: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Minimum total squared error of denoising ``N(mu, C)`` at noise level ``s``.

    ``SSE*(s) = sum_k lam_k s^2 / (lam_k + s^2)``, attained by the Wiener filter
    ``f*(y) = mu + C (C + s^2 I)^-1 (y - mu)``.

    Parameters
    ----------
    eigvals : array of shape (d,)
        Eigenvalues ``lam_k >= 0`` of the covariance (pixel units squared).
    sigma : float or array
        Noise standard deviation(s) in pixel units.

    Returns
    -------
    ndarray with the shape of ``sigma``
        Expected per-image total squared error (``sse``).
    """
    check_sigma(sigma)
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(
            "eigvals must be a 1-D array of finite eigenvalues >= 0 "
            "(use np.linalg.eigvalsh(C) for a dense covariance)"
        )
    s2 = np.asarray(sigma, dtype=np.float64)[..., None] ** 2
    return np.sum(lam * s2 / (lam + s2), axis=-1)


def mismatched_sse(
    mean_p: np.ndarray,
    cov_p: np.ndarray,
    mean_q: np.ndarray,
    cov_q: np.ndarray,
    sigma: float | np.ndarray,
) -> np.ndarray:
    """Expected total squared error, under p, of the optimal denoiser of q.

    With ``f_q(y) = mu_q + A (y - mu_q)``, ``A = C_q (C_q + s^2 I)^-1`` and ``x ~ N(mu_p, C_p)``,

    ``SSE_q(s) = tr[(I-A) C_p (I-A)^T] + s^2 tr[A A^T] + ||(I-A)(mu_p - mu_q)||^2``,

    evaluated in the eigenbasis of ``C_q`` where ``A`` is diagonal. For ``q = p`` it equals
    :func:`gaussian_mmse`.

    Parameters
    ----------
    mean_p, cov_p : arrays
        The law of the clean data (see module docstring for the dense/diagonal forms).
    mean_q, cov_q : arrays
        The law whose Wiener filter is applied.
    sigma : float or array
        Noise standard deviation(s) in pixel units.

    Returns
    -------
    ndarray with the shape of ``sigma``
        Expected per-image total squared error (``sse``).
    """
    check_sigma(sigma)
    lam_q, c_p, diff = _in_q_basis(mean_p, cov_p, mean_q, cov_q)
    if np.any(lam_q < -1e-12 * np.abs(lam_q).max()):
        raise ValueError("cov_q must be positive semi-definite; clip its negative eigenvalues")
    lam_q = np.clip(lam_q, 0.0, None)
    s2 = np.asarray(sigma, dtype=np.float64)[..., None] ** 2
    a = lam_q / (lam_q + s2)
    return np.sum((1 - a) ** 2 * (c_p + diff**2) + s2 * a**2, axis=-1)


def gaussian_kl(
    mean_p: np.ndarray, cov_p: np.ndarray, mean_q: np.ndarray, cov_q: np.ndarray
) -> float:
    """Closed-form ``KL(N(mu_p, C_p) || N(mu_q, C_q))`` in nats.

    ``KL = 1/2 [tr(C_q^-1 C_p) + (mu_q - mu_p)^T C_q^-1 (mu_q - mu_p) - d
    + ln det C_q - ln det C_p]``.

    Parameters
    ----------
    mean_p, cov_p, mean_q, cov_q : arrays
        Both covariances positive definite (see module docstring for the forms).

    Returns
    -------
    float
        The Kullback–Leibler divergence.
    """
    lam_q, c_p, diff = _in_q_basis(mean_p, cov_p, mean_q, cov_q)
    if np.any(lam_q <= 0):
        raise ValueError(_NOT_PD.format("cov_q"))
    return float(
        0.5
        * (np.sum((c_p + diff**2) / lam_q) - lam_q.size + np.sum(np.log(lam_q)) - _logdet(cov_p))
    )
