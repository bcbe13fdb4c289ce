"""C^α cartoons with Gaussian regions: exactly Gaussian given the mask (docs/design.md §5.4, §6.6).

Same contour and 2× anti-aliased mask as ``synthetic.cartoons``; each region is a
stationary Gaussian field of known covariance whose mean is random, so that given the
mask m the image is Gaussian and its optimal denoiser is a Wiener filter (the genie of
``models.genie``):

    x = m · a + (1 − m) · b,   a ~ N(μ_a 1, C'),   b ~ N(μ_b 1, C'),   a, b, m independent,
    C' = C + τ² 1 1ᵀ,

C stationary with spectrum ∝ |k|^{-2β} (the power of the |k|^{-β}-filtered textures of the
cartoons) and pixel variance ``std²``. So x | m ~ N(M μ_a 1 + (I − M) μ_b 1,
M C' M + (I − M) C' (I − M)), M = diag(m). The images are not clipped to [0, 1]: clipping
would break Gaussianity. With the defaults (μ = 0.3 and 0.7, std = τ = 0.05) a pixel leaves
[0, 1] with probability about 1e-5.
"""

from __future__ import annotations

import numpy as np

from synthetic.cartoons import CartoonFamily, _check_exponent, contour_functions, contour_mask
from synthetic.family import Optimum, check_int
from synthetic.fields import field_spectrum


def _check_positive(name: str, value: float, meaning: str) -> float:
    number = float(value)
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be > 0 (got {value!r}); it is {meaning}")
    return number


def region_spectrum(size: int, beta: float, std: float, tau: float) -> np.ndarray:
    """Covariance eigenvalues ``S`` of one region, ``C' = F* diag(S) F`` (orthonormal DFT F).

    ``S(k) = A |k|^{-2β}`` for k ≠ 0 with A such that the pixel variance of the zero-mean
    part, ``(1/d) Σ_{k≠0} S(k)``, equals ``std²``; ``S(0) = d τ²``, which is the term
    ``τ² 1 1ᵀ``: the spatial mean of the region field has standard deviation τ.
    |k| and the FFT order are those of :func:`synthetic.fields.field_spectrum`.

    Returns
    -------
    ndarray, shape (size, size), float64
    """
    size = check_int("size", size, 1)
    beta = _check_exponent("beta", beta)
    std = _check_positive("std", std, "the texture pixel standard deviation, e.g. 0.05")
    tau = _check_positive("tau", tau, "the standard deviation of each region's mean, e.g. 0.05")
    s = field_spectrum(size, 2 * beta, 1.0)
    s[0, 0] = 0.0
    s *= size * size * std**2 / s.sum()
    s[0, 0] = size * size * tau**2
    return s


def region_fields(
    n: int, spectrum: np.ndarray, mean: float, rng: np.random.Generator
) -> np.ndarray:
    """Exact samples of ``N(mean 1, F* diag(spectrum) F)``: ``mean + ifft2(√S · fft2(w))``.

    Orthonormal DFTs, w white standard normal; S even in k, so the result is real.

    Returns
    -------
    ndarray, shape (n, size, size), float64
    """
    w = rng.standard_normal((check_int("n", n, 0), *spectrum.shape))
    field = np.fft.ifft2(np.sqrt(spectrum) * np.fft.fft2(w, norm="ortho"), norm="ortho")
    return float(mean) + field.real


def gaussian_cartoon_images(
    n: int,
    size: int,
    alpha: float,
    spectrum: np.ndarray,
    means: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Cartoons ``x = m a + (1 − m) b`` with Gaussian regions, and their masks m.

    The contour (``contour_functions`` with ``length = 2 size``, drawn first) gives the
    anti-aliased mask ``m = contour_mask(contour, size)``, 1 below the contour; then
    ``a = region_fields(n, spectrum, means[0])`` below and ``b`` likewise with ``means[1]``.

    Returns
    -------
    images, masks : ndarrays of shape (n, size, size), float64
    """
    size = check_int("size", size, 2)
    if size % 2:
        raise ValueError(f"cartoon size must be even (got {size}); pass e.g. {size + 1}")
    mask = contour_mask(contour_functions(n, 2 * size, alpha, rng), size)
    below = region_fields(n, spectrum, means[0], rng)
    above = region_fields(n, spectrum, means[1], rng)
    return mask * below + (1.0 - mask) * above, mask


# Largest image side whose genie (a dense Gaussian conditioning per image) is built.
GENIE_MAX_SIZE = 32


class GaussianCartoonFamily(CartoonFamily):
    """C^α cartoons with Gaussian regions (``gaussian_cartoon_images``), not clipped.

    Parameters
    ----------
    size : int
        Even image side in pixels.
    seed : int
        Seed of every draw.
    alpha : float
        Contour regularity α > 0.
    beta : float, optional
        Texture regularity β > 0 (spectrum ∝ |k|^{-2β}); default α.
    std : float
        Pixel standard deviation of each region's texture around its spatial mean.
    tau : float
        Standard deviation of each region's random mean.
    mean_below, mean_above : float
        Expected intensities μ_a of the region below the contour and μ_b above it.
    """

    name = "cartoons_gaussian"
    # The region below has mean μ_a and the one above μ_b: no up-down mirror.
    symmetries = ("flip_h", "roll_h")

    def __init__(
        self,
        size: int = 32,
        seed: int = 0,
        alpha: float = 2.0,
        beta: float | None = None,
        std: float = 0.05,
        tau: float = 0.05,
        mean_below: float = 0.3,
        mean_above: float = 0.7,
    ) -> None:
        super().__init__(size, seed, alpha, beta)
        self.region_spectrum = region_spectrum(self.size, self.beta, std, tau)
        self.std, self.tau = float(std), float(tau)
        self.mean_below, self.mean_above = float(mean_below), float(mean_above)
        if not (np.isfinite(self.mean_below) and np.isfinite(self.mean_above)):
            raise ValueError(
                f"mean_below and mean_above must be finite (got {mean_below}, {mean_above})"
            )

    @property
    def params(self) -> dict:
        return {
            **super().params,
            "alpha": self.alpha,
            "beta": self.beta,
            "std": self.std,
            "tau": self.tau,
            "mean_below": self.mean_below,
            "mean_above": self.mean_above,
        }

    @property
    def optimum(self) -> Optimum:
        # The genie knows each image's mask, so its risk is below the posterior mean's; its
        # exact Gaussian conditioning costs a d x d solve per image: up to 32 x 32 images.
        if self.size <= GENIE_MAX_SIZE:
            return Optimum("lower_bound", "genie")
        return Optimum()

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return gaussian_cartoon_images(
            n, self.size, self.alpha, self.region_spectrum, (self.mean_below, self.mean_above), rng
        )
