"""Noise levels: validation, broadcasting and log-spaced grids (docs/design.md §1.2)."""

from __future__ import annotations

import numpy as np
import torch


def check_sigma(sigma: float | torch.Tensor | np.ndarray) -> None:
    """Raise ``ValueError`` unless every noise level is finite and strictly positive."""
    values = sigma.detach().cpu().numpy() if isinstance(sigma, torch.Tensor) else np.asarray(sigma)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"noise level sigma must be > 0 and finite (got {values.ravel()[:4].tolist()}); "
            "pass sigma in pixel units, e.g. 0.1 for 25.5/255"
        )


def sigma_like(sigma: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return ``sigma`` as a tensor of shape ``(B, 1, ..., 1)`` broadcastable against ``y``.

    Parameters
    ----------
    sigma : float or tensor of shape () or (B,)
        Noise standard deviation in pixel units (clean pixels lie in [0, 1]).
    y : tensor of shape (B, ...)
        The noisy batch whose dtype and device the result takes.
    """
    check_sigma(sigma)
    s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    if s.ndim == 0:
        s = s.expand(y.shape[0])
    if s.shape != (y.shape[0],):
        raise ValueError(f"sigma must be a float or a ({y.shape[0]},) tensor, got {tuple(s.shape)}")
    return s.reshape((-1,) + (1,) * (y.ndim - 1))


def log_sigmas(lo: float = 1e-3, hi: float = 1.0, n: int = 13) -> np.ndarray:
    """Log-spaced noise levels from ``lo`` to ``hi`` inclusive (the default curve grid)."""
    check_sigma(np.array([lo, hi]))
    if not hi > lo or n < 2:
        raise ValueError(f"need lo < hi and n >= 2 (got lo={lo}, hi={hi}, n={n})")
    return np.geomspace(lo, hi, n)
