"""Stationary Gaussian fields with power-law spectra (docs/design.md §5.8).

On the periodic ``size × size`` grid the field is exactly ``N(mean, C)`` with
``C = F* diag(S) F``, F the orthonormal 2-D DFT. So S holds the eigenvalues of C, and the
optimal denoiser and the KL divergences are closed forms (``theory.gaussian``). The images
are not clipped to [0, 1]: clipping would break Gaussianity. With the defaults
(std 0.1 around 0.5) a pixel leaves [0, 1] with probability about 6e-7.
"""

from __future__ import annotations

import numpy as np

from synthetic.family import GeneratedFamily, Optimum, check_int


def _check_field(gamma: float, std: float) -> tuple[float, float]:
    gamma, std = float(gamma), float(std)
    if not (np.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be >= 0 (got {gamma}); it is the spectral decay, e.g. 2.0")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(
            f"std must be > 0 (got {std}); it is the pixel standard deviation, e.g. 0.1"
        )
    return gamma, std


def field_spectrum(size: int, gamma: float, std: float) -> np.ndarray:
    """Power spectrum ``S(k) = A · max(|k|, 1)^{-γ}``: the eigenvalues of the covariance.

    |k| is the length of the integer frequency vector ``(fftfreq(size) · size)`` per axis, in
    numpy's FFT order. A makes the pixel variance ``mean_k S(k)`` (orthonormal DFT) equal
    ``std²``. The zero frequency keeps ``S(0) = A``: the image mean fluctuates too.

    Returns
    -------
    ndarray, shape (size, size), float64
    """
    size = check_int("size", size, 1)
    gamma, std = _check_field(gamma, std)
    k = np.fft.fftfreq(size, d=1.0 / size)
    s = np.maximum(np.hypot(k[:, None], k[None, :]), 1.0) ** -gamma
    return s * (std**2 / s.mean())


def gaussian_field_images(
    n: int, size: int, gamma: float, std: float, mean: float, rng: np.random.Generator
) -> np.ndarray:
    """Exact samples of ``N(mean, F* diag(S) F)``, S = ``field_spectrum(size, gamma, std)``.

    ``x = mean + real(ifft2(sqrt(S) · fft2(w)))`` (orthonormal DFTs), w white standard normal.
    S is even in k, so the imaginary part vanishes up to rounding.

    Returns
    -------
    ndarray, shape (n, size, size), float64, not clipped
    """
    root = np.sqrt(field_spectrum(size, gamma, std))
    w = rng.standard_normal((check_int("n", n, 0), size, size))
    return float(mean) + np.fft.ifft2(root * np.fft.fft2(w, norm="ortho"), norm="ortho").real


class GaussianFieldFamily(GeneratedFamily):
    """Stationary Gaussian fields (``gaussian_field_images``), not clipped to [0, 1]."""

    name = "gaussian"
    # Stationary on the periodic grid with a spectrum even in each frequency coordinate.
    symmetries = ("flip_h", "flip_v", "roll_h", "roll_v")
    # The stationary Wiener filter of the true spectrum is the posterior mean.
    references = ("memorizer", "wiener", "wavelet", "ti_wavelet", "curvelet", "nlm", "bm3d")
    optimum = Optimum("exact", "wiener")

    def __init__(
        self,
        size: int = 32,
        seed: int = 0,
        gamma: float = 2.0,
        std: float = 0.1,
        mean: float = 0.5,
    ) -> None:
        super().__init__(size, seed)
        self.gamma, self.std = _check_field(gamma, std)
        self.mean = float(mean)
        if not np.isfinite(self.mean):
            raise ValueError(f"mean must be finite (got {mean}); it is the pixel mean, e.g. 0.5")

    @property
    def params(self) -> dict:
        return {**super().params, "gamma": self.gamma, "std": self.std, "mean": self.mean}

    def spectrum(self) -> np.ndarray:
        """Covariance eigenvalues in the orthonormal FFT basis, ``(size, size)`` float64."""
        return field_spectrum(self.size, self.gamma, self.std)

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, None]:
        return gaussian_field_images(n, self.size, self.gamma, self.std, self.mean, rng), None
