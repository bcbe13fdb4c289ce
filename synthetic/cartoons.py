"""C^α cartoon images: two C^β regions separated by a C^α contour (docs/design.md §5.3).

Recipe of Kadkhodaie, Guth, Simoncelli & Mallat (ICLR 2024, appendix): a contour drawn as
white uniform noise filtered in Fourier by |k|^{-α}, the region below it and the region
above it filled with 2-D noise filtered by |k|^{-β}, each rescaled to its own intensity
range, the mask rendered at twice the resolution and averaged down.
"""

from __future__ import annotations

import numpy as np
import torch

from synthetic.family import GeneratedFamily, check_int

# Contour excursion per unit of the filtered series, as a fraction of the image height: the
# series has standard deviation sqrt(2 ζ(2α) / 3) (≈ 1.05 at α = 1, 0.85 at α = 2), so the
# contour wanders about 0.1–0.13 of the height around the middle row.
CONTOUR_SCALE = 0.125


def _check_exponent(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be > 0 (got {value!r}); it is the Hölder regularity, e.g. 2.0"
        )
    return number


def contour_functions(n: int, length: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Random periodic C^α contours, sampled at ``length`` points, before rasterisation.

    With ``w`` white noise uniform on [-1, 1] and ``W = fft(w, norm="ortho")``,

        g(t_j) = Σ_{k ≠ 0} W_k |k|^{-α} exp(2πi k j / length),
        c_j = length · (1/2 + CONTOUR_SCALE · g(t_j)),

    k the integer frequency and k = 0 set to zero. The Fourier coefficients of ``g`` have a
    variance that does not depend on ``length``, so ``g`` samples one resolution-free random
    Fourier series (cut at Nyquist), whose power decays as |k|^{-2α}.

    Parameters
    ----------
    n : int
        Number of contours.
    length : int
        Number of samples along the horizontal axis.
    alpha : float
        Regularity exponent α > 0 (the contour is C^α for almost every draw when α > 1/2).
    rng : numpy.random.Generator
        Source of the white noise.

    Returns
    -------
    ndarray, shape (n, length)
        Vertical contour position in rows of a ``length × length`` grid, centred on
        ``length / 2`` (values may leave [0, length]).
    """
    alpha = _check_exponent("alpha", alpha)
    n = check_int("n", n, 0)
    length = check_int("length", length, 2)
    w = rng.uniform(-1.0, 1.0, size=(n, length))
    k = np.arange(length // 2 + 1, dtype=float)
    filt = np.zeros_like(k)
    filt[1:] = k[1:] ** -alpha
    g = np.fft.irfft(np.fft.rfft(w, norm="ortho") * filt, n=length, norm="forward")
    return length * (0.5 + CONTOUR_SCALE * g)


def contour_mask(contours: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased mask of the region below contours sampled on a ``2size × 2size`` grid.

    On the fine grid, cell (i, j) is inside when its row centre ``i + 1/2 > c_j`` (rows grow
    downwards); the mask is the mean over 2 × 2 blocks, in {0, 1/4, 1/2, 3/4, 1}.

    Parameters
    ----------
    contours : ndarray, shape (n, 2 size)
        Contours from ``contour_functions(n, 2 size, ...)``, in fine-grid rows.
    size : int
        Image side in pixels.

    Returns
    -------
    ndarray, shape (n, size, size)
    """
    contours = np.asarray(contours, dtype=float)
    length = 2 * size
    if contours.ndim != 2 or contours.shape[1] != length:
        raise ValueError(f"contours must have shape (n, {length}), got {contours.shape}")
    rows = np.arange(length) + 0.5
    fine = rows[None, :, None] > contours[:, None, :]
    return fine.reshape(-1, size, 2, size, 2).mean(axis=(2, 4))


def background_fields(n: int, size: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Periodic 2-D C^β textures: white uniform noise filtered by |k|^{-β}, k = 0 set to zero.

    ``f = real(ifft2(fft2(w) · |k|^{-β}))`` with ``w`` uniform on [-1, 1], |k| the length of
    the integer frequency vector (kx, ky). Zero-mean, before any intensity rescaling.

    Returns
    -------
    ndarray, shape (n, size, size)
    """
    beta = _check_exponent("beta", beta)
    size = check_int("size", size, 1)
    w = rng.uniform(-1.0, 1.0, size=(check_int("n", n, 0), size, size))
    ky = np.fft.fftfreq(size, d=1.0 / size)[:, None]
    kx = np.fft.rfftfreq(size, d=1.0 / size)[None, :]
    k = np.hypot(ky, kx)
    filt = np.zeros_like(k)
    filt[k > 0] = k[k > 0] ** -beta
    return np.fft.irfft2(np.fft.rfft2(w) * filt, s=(size, size))


def _rescale(fields: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map each field affinely onto [low_i, high_i] (its minimum to low, maximum to high)."""
    lo = fields.min(axis=(1, 2), keepdims=True)
    hi = fields.max(axis=(1, 2), keepdims=True)
    unit = (fields - lo) / np.maximum(hi - lo, np.finfo(float).tiny)
    return low[:, None, None] + (high - low)[:, None, None] * unit


def cartoon_images(
    n: int, size: int, alpha: float, beta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """C^α cartoons: a C^β region below a C^α contour and another above it, and their masks.

    The contour (``contour_functions`` with ``length = 2 size``, drawn first) gives the
    anti-aliased mask ``m = contour_mask(contour, size)``, 1 below the contour. Each region
    gets its own ``background_fields`` texture rescaled to a random range: one side inside
    [0, 1/2], the other inside [1/2, 1] (endpoints uniform, sides swapped with probability
    1/2), so the two sides always differ. ``x = m · below + (1 − m) · above``.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Even image side in pixels.
    alpha, beta : float
        Regularity of the contour and of the two textures (the paper uses β = α).
    rng : numpy.random.Generator
        Source of every draw.

    Returns
    -------
    images, masks : ndarrays of shape (n, size, size), float64
        The cartoons, values in [0, 1], and their masks m, values in {0, 1/4, 1/2, 3/4, 1}.
    """
    size = check_int("size", size, 2)
    if size % 2:
        raise ValueError(f"cartoon size must be even (got {size}); pass e.g. {size + 1}")
    alpha = _check_exponent("alpha", alpha)
    beta = _check_exponent("beta", beta)
    mask = contour_mask(contour_functions(n, 2 * size, alpha, rng), size)
    textures = background_fields(2 * n, size, beta, rng)
    dark = np.sort(rng.uniform(0.0, 0.5, size=(n, 2)), axis=1)
    bright = 0.5 + np.sort(rng.uniform(0.0, 0.5, size=(n, 2)), axis=1)
    swap = rng.random(n) < 0.5
    below_range = np.where(swap[:, None], bright, dark)
    above_range = np.where(swap[:, None], dark, bright)
    below = _rescale(textures[:n], below_range[:, 0], below_range[:, 1])
    above = _rescale(textures[n:], above_range[:, 0], above_range[:, 1])
    return mask * below + (1.0 - mask) * above, mask


class CartoonFamily(GeneratedFamily):
    """C^α cartoons (``cartoon_images``); ``beta=None`` means β = α as in the paper."""

    name = "cartoons"
    # The contour is a stationary periodic series with an even filter and symmetric noise,
    # the textures are periodic and isotropic, the two intensity ranges swap with
    # probability 1/2: mirroring either axis or shifting columns circularly keeps the law.
    symmetries = ("flip_h", "flip_v", "roll_h")

    def __init__(
        self, size: int = 32, seed: int = 0, alpha: float = 2.0, beta: float | None = None
    ) -> None:
        super().__init__(size, seed)
        if self.size % 2:
            raise ValueError(f"cartoon size must be even (got {self.size}); pass e.g. {size + 1}")
        self.alpha = _check_exponent("alpha", alpha)
        self.beta = self.alpha if beta is None else _check_exponent("beta", beta)

    @property
    def params(self) -> dict:
        return {**super().params, "alpha": self.alpha, "beta": self.beta}

    @property
    def regularity(self) -> float:
        return self.alpha

    def masks(self, part: str, n: int) -> torch.Tensor:
        """Masks m of ``images(part, n)``: float64 tensor ``(n, 1, size, size)``, 1 below.

        Prefix-consistent like the images; values in {0, 1/4, 1/2, 3/4, 1}, fractional
        exactly on the pixels the contour crosses.
        """
        n = self.check_request(part, n)
        masks = np.ascontiguousarray(self._draw(part, n)[1])
        return torch.from_numpy(masks.reshape(n, 1, self.size, self.size))

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return cartoon_images(n, self.size, self.alpha, self.beta, rng)
