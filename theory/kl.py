"""The KL integral of docs/design.md §4 as a function of the lower noise cut ``sigma0``.

If ``f_q`` is the optimal denoiser of a law ``q`` at every noise level, then

``KL(p_sigma0 || q_sigma0) = int_{sigma0}^{inf} dSSE(s) s^-3 ds = int dSSE(s) / s^2 d ln s``,

with ``dSSE = SSE_q - SSE*_p`` the excess total (per-image) squared error measured under p.
With ``sigma0 -> 0`` it bounds ``KL(p || p_theta)`` of a diffusion model's sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline


@dataclass(frozen=True)
class KLCurve:
    """The KL integral evaluated at every lower cut of the grid.

    Attributes
    ----------
    sigma0 : ndarray of shape (n,)
        Lower cuts (the input noise grid, pixel units).
    value : ndarray of shape (n,)
        ``int_{sigma0_j}^{inf} dSSE(s) s^-3 ds`` in nats, tail included.
    se : ndarray of shape (n,)
        Standard error of ``value`` propagated from per-sigma standard errors (zero when none
        were given).
    tail : float
        The part above the largest grid level, ``dSSE(sigma_max) / (2 sigma_max^2)``.
    """

    sigma0: np.ndarray
    value: np.ndarray
    se: np.ndarray
    tail: float

    def to_dict(self) -> dict:
        """Plain lists and floats, for JSON result files."""
        return {
            "sigma0": self.sigma0.tolist(),
            "value": self.value.tolist(),
            "se": self.se.tolist(),
            "tail": self.tail,
        }


def _weights(sigma: np.ndarray) -> np.ndarray:
    """Matrix ``W`` with ``value = W @ dSSE``: integral of a cubic spline in ``ln s``, plus tail.

    Column k is the integral of the spline through the k-th unit vector (divided by ``s_k^2``),
    so ``W`` is exact for any data; it costs O(n^2) memory (fine for a few thousand levels).
    """
    u = np.log(sigma)
    spline = CubicSpline(u, np.eye(sigma.size) / sigma[:, None] ** 2, axis=0)
    antiderivative = spline.antiderivative()(u)
    w = antiderivative[-1][None, :] - antiderivative
    w[:, -1] += 1 / (2 * sigma[-1] ** 2)
    return w


def kl_curve(
    sigma: np.ndarray, delta_sse: np.ndarray, delta_se: np.ndarray | None = None
) -> KLCurve:
    """Integrate ``dSSE(s) / s^2`` in ``ln s`` from every grid level up to infinity.

    On the grid, ``g = dSSE / s^2`` is interpolated by a cubic spline in ``u = ln s``
    (not-a-knot ends; a straight line for n = 2) and integrated exactly from every level to the
    top. For smooth curves this is fourth order in the grid step: on random Gaussian pairs it
    is within 0.2 % of the closed form at 4 levels per decade and 1e-6 at 30, where the
    trapezoid rule errs by 3-9 % and 0.2 %. Above ``sigma_max = sigma[-1]`` the excess
    error is taken as constant, ``dSSE(s) = dSSE(sigma_max)``, which adds
    ``dSSE(sigma_max) / (2 sigma_max^2)`` (exact as s -> inf for Gaussians, where dSSE tends to
    the squared mean difference). Choose ``sigma_max`` large enough that this tail is small.

    The result is linear in ``dSSE``: ``value = W @ dSSE`` (tail included in ``W``). Standard
    errors propagate as ``se = sqrt(W^2 @ delta_se^2)``, assuming the per-sigma Monte Carlo
    errors are independent (true when each sigma uses fresh images and noise). When the same
    clean images serve every sigma, their errors are correlated across sigma: pass the
    per-image excess errors as a 2-D array instead; each image's curve ``W @ dSSE_i`` is then
    integrated and the standard error is their spread over images, correct for any
    correlation across sigma.

    Parameters
    ----------
    sigma : array of shape (n,), n >= 2
        Strictly increasing noise levels in pixel units (log-spaced typically).
    delta_sse : array of shape (n,) or (m, n)
        ``SSE_q(s) - SSE*_p(s)``, per-image total squared errors under p: their mean at each
        sigma, or one row per image (m >= 2 images measured at every sigma).
    delta_se : array of shape (n,), optional
        Standard errors of a 1-D ``delta_sse``; not allowed with per-image rows.

    Returns
    -------
    KLCurve
        The integral (nats) at each lower cut ``sigma0 = sigma[j]``.

    References
    ----------
    S. Verdu, "Mismatched estimation and relative entropy", IEEE Trans. Inf. Theory 56(8),
    2010 (the identity); Kadkhodaie, Guth, Simoncelli, Mallat, ICLR 2024, arXiv:2310.02557
    (its use as a bound on diffusion models).
    """
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"sigma must be a 1-D grid of >= 2 finite noise levels > 0 (got shape {s.shape}); "
            "use theory.sigma.log_sigmas"
        )
    if np.any(np.diff(s) <= 0):
        raise ValueError("sigma must be strictly increasing; sort the grid and drop duplicates")
    dsse = np.asarray(delta_sse, dtype=np.float64)
    if dsse.shape[-1:] != s.shape or dsse.ndim > 2 or not np.all(np.isfinite(dsse)):
        raise ValueError(
            f"delta_sse must hold one finite value per sigma, or one row per image "
            f"(got shape {dsse.shape}, sigma has {s.shape})"
        )
    w = _weights(s)
    if dsse.ndim == 2:
        if delta_se is not None or dsse.shape[0] < 2:
            raise ValueError("per-image delta_sse needs >= 2 rows and no delta_se")
        per_image = dsse @ w.T
        return KLCurve(
            sigma0=s,
            value=per_image.mean(0),
            se=per_image.std(0, ddof=1) / np.sqrt(dsse.shape[0]),
            tail=float(dsse[:, -1].mean() / (2 * s[-1] ** 2)),
        )
    if delta_se is None:
        dse = np.zeros_like(s)
    else:
        dse = np.asarray(delta_se, dtype=np.float64)
        if dse.shape != s.shape or not np.all(np.isfinite(dse)) or np.any(dse < 0):
            raise ValueError(
                f"delta_se must hold one finite standard error >= 0 per sigma "
                f"(got shape {dse.shape}, expected {s.shape})"
            )
    return KLCurve(
        sigma0=s,
        value=w @ dsse,
        se=np.sqrt(w**2 @ dse**2),
        tail=float(dsse[-1] / (2 * s[-1] ** 2)),
    )
