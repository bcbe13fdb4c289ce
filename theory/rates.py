"""Minimax rates for C^alpha cartoons and log-log slope fits of error curves (docs/design.md §8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def minimax_exponent(alpha: float) -> float:
    """Exponent of the minimax MSE of C^alpha cartoons: ``MSE*(sigma) ~ sigma^(2 alpha/(alpha+1))``.

    Parameters
    ----------
    alpha : float
        Hölder regularity of the regions and of their edges, ``alpha > 0``.

    Returns
    -------
    float
        ``2 alpha / (alpha + 1)`` (1 for alpha = 1, 4/3 for alpha = 2, tending to 2).

    References
    ----------
    A. P. Korostelev, A. B. Tsybakov, "Minimax Theory of Image Reconstruction", Springer 1993;
    D. L. Donoho, "Wedgelets: nearly minimax estimation of edges", Ann. Statist. 27 (1999).
    """
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(
            f"alpha must be a finite regularity > 0 (got {alpha}); e.g. alpha=2 for C^2 cartoons"
        )
    return 2 * alpha / (alpha + 1)


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting ``mse = exp(intercept) * sigma^slope`` on a window of noise levels.

    Attributes
    ----------
    slope : float
        Fitted exponent.
    intercept : float
        Natural log of the prefactor.
    ci : tuple of float
        ``(lo, hi)`` confidence interval of the slope.
    confidence : float
        Confidence level of ``ci``.
    window : tuple of float
        Smallest and largest sigma actually used.
    n_points : int
        Number of points used.
    """

    slope: float
    intercept: float
    ci: tuple[float, float]
    confidence: float
    window: tuple[float, float]
    n_points: int

    def to_dict(self) -> dict:
        """Plain floats and lists, for JSON result files."""
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "ci": list(self.ci),
            "confidence": self.confidence,
            "window": list(self.window),
            "n_points": self.n_points,
        }


def _positive_curve(sigma: np.ndarray, mse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(sigma, dtype=np.float64)
    m = np.asarray(mse, dtype=np.float64)
    if s.ndim != 1 or m.shape != s.shape:
        raise ValueError(
            f"sigma and mse must be 1-D arrays of the same length (got {s.shape} and {m.shape})"
        )
    for name, v in (("sigma", s), ("mse", m)):
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{name} must be finite and > 0 for a log-log fit; drop zero errors")
    return s, m


def fit_power_law(
    sigma: np.ndarray,
    mse: np.ndarray,
    se: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> PowerLawFit:
    """Least-squares fit of ``ln mse = intercept + slope ln sigma`` over a window of sigma.

    Without ``se`` this is ordinary least squares. With ``se`` each point gets the weight
    ``1 / (se / mse)^2``, the inverse variance of ``ln mse`` by the delta method. The slope's
    confidence interval is ``slope +- t_{n-2} * sqrt(s^2 [(X^T W X)^-1]_11)`` with
    ``s^2 = sum w r^2 / (n - 2)`` the weighted residual variance (standard weighted least
    squares: the weights set relative precision, the residuals set the scale).

    Parameters
    ----------
    sigma, mse : arrays of shape (n,)
        Noise levels (pixel units) and errors, all > 0.
    se : array of shape (n,), optional
        Standard errors of ``mse``, > 0.
    window : (lo, hi), optional
        Inclusive range of sigma to fit; default all points.
    confidence : float
        Level of the interval, in (0, 1).

    Returns
    -------
    PowerLawFit
    """
    s, m = _positive_curve(sigma, mse)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence}); e.g. 0.95")
    if se is None:
        w = np.ones_like(s)
    else:
        e = np.asarray(se, dtype=np.float64)
        if e.shape != s.shape or not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise ValueError(
                f"se must hold one finite standard error > 0 per sigma (got shape {e.shape}); "
                "pass se=None for an unweighted fit"
            )
        w = (m / e) ** 2
    keep = np.ones_like(s, dtype=bool)
    if window is not None:
        lo, hi = window
        if not lo <= hi:
            raise ValueError(f"window must be (lo, hi) with lo <= hi (got {window})")
        keep = (s >= lo) & (s <= hi)
    n = int(keep.sum())
    if n < 3:
        raise ValueError(
            f"a slope with a confidence interval needs >= 3 points in the window (got {n}); "
            "widen the window or use a finer sigma grid"
        )
    x, y, w = np.log(s[keep]), np.log(m[keep]), w[keep]
    design = np.stack([np.ones_like(x), x], axis=1)
    normal = design.T @ (w[:, None] * design)
    coef = np.linalg.solve(normal, design.T @ (w * y))
    resid = y - design @ coef
    scale2 = np.sum(w * resid**2) / (n - 2)
    half = stats.t.ppf((1 + confidence) / 2, n - 2) * np.sqrt(scale2 * np.linalg.inv(normal)[1, 1])
    return PowerLawFit(
        slope=float(coef[1]),
        intercept=float(coef[0]),
        ci=(float(coef[1] - half), float(coef[1] + half)),
        confidence=float(confidence),
        window=(float(s[keep].min()), float(s[keep].max())),
        n_points=n,
    )


def local_slopes(
    sigma: np.ndarray, mse: np.ndarray, width: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Log-log slope over every run of ``width`` consecutive points of an error curve.

    docs/design.md §8: on a finite grid the slope of ``mse(sigma)`` drifts with sigma, so plots show
    this local slope beside ``minimax_exponent(alpha)``.

    Parameters
    ----------
    sigma, mse : arrays of shape (n,)
        Noise levels (increasing, pixel units) and errors, all > 0.
    width : int
        Points per run, ``2 <= width <= n``.

    Returns
    -------
    centers : ndarray of shape (n - width + 1,)
        Geometric mean of sigma over each run.
    slopes : ndarray of shape (n - width + 1,)
        Ordinary least-squares slope of ``ln mse`` on ``ln sigma`` over each run.
    """
    s, m = _positive_curve(sigma, mse)
    if not 2 <= width <= s.size:
        raise ValueError(f"width must be in [2, {s.size}] (got {width}); e.g. width=3")
    if np.any(np.diff(s) <= 0):
        raise ValueError("sigma must be strictly increasing; sort the curve and drop duplicates")
    x = np.lib.stride_tricks.sliding_window_view(np.log(s), width)
    y = np.lib.stride_tricks.sliding_window_view(np.log(m), width)
    xc = x - x.mean(axis=1, keepdims=True)
    slopes = np.sum(xc * y, axis=1) / np.sum(xc**2, axis=1)
    return np.exp(x.mean(axis=1)), slopes
