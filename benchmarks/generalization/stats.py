"""Small helpers shared by the measurement, the reports and the plots of the sweep."""

from __future__ import annotations

import numpy as np

PARTS = ("A", "B")


def mid_index(sigma: np.ndarray) -> int:
    """Grid index nearest the geometric middle of the sigma range (the table's sigma)."""
    return int(np.argmin(np.abs(np.log(sigma) - np.log(sigma).mean())))


def kl_index(sigma: np.ndarray, sigma_final: float) -> int:
    """Grid index of the reported KL cut σ0: the level nearest (in log σ) the sampler's last.

    The sampler never goes below ``sigma_final``, so the law it samples is the one smoothed
    at that level, and errors of the denoiser below it do not reach its samples.
    """
    return int(np.argmin(np.abs(np.log(sigma) - np.log(sigma_final))))
