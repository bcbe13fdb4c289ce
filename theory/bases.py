"""Fixed orthonormal bases, and how well a basis compacts an image (docs/design.md §3.5).

An orthonormal basis with coefficients ``c = B^T x`` keeps ``||x||^2 = sum_k c_k^2``; its
best k-term approximation keeps the k largest ``|c_k|`` and captures the fraction
``sum of the k largest c_k^2 / ||x||^2`` of the energy. Shrinking each coefficient by an
oracle factor ``c^2 / (c^2 + sigma^2)`` (the best diagonal linear estimator knowing the
clean coefficients) has risk ``sum_k c_k^2 sigma^2 / (c_k^2 + sigma^2)``. Both say how well
a basis suits an image: a denoiser that shrinks in an adaptive basis (the eigenvectors of
its Jacobian, ``theory.decomposition``) is compared with the fixed ones here.

Every function works on numpy float64 arrays of shape (B, H, W) (images) or (B, m)
(coefficients).
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt
import scipy.linalg


def _images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"images must be a (B, H, W) array, got shape {x.shape}")
    return x


def _fourier_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat FFT indices q of the real Fourier vectors, whether each is a sine, and its
    scale relative to the complex vector (sqrt 2 for a pair, 1 for a self-conjugate k)."""
    ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    q = (ky * w + kx).ravel()
    conjugate = (((-ky) % h) * w + ((-kx) % w)).ravel()
    representatives = q[q <= conjugate]
    paired = conjugate[representatives] != representatives
    index = np.repeat(representatives, 1 + paired)
    sine = np.zeros(index.size, dtype=bool)
    sine[np.cumsum(1 + paired)[paired] - 1] = True
    scale = np.where(np.repeat(paired, 1 + paired), np.sqrt(2.0), 1.0)
    return index, sine, scale


def fourier_basis(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The real orthonormal 2-D Fourier basis of (h, w) images on the periodic grid.

    For each frequency pair ``{k, -k}`` (``k != -k`` modulo the size) the vectors
    ``sqrt(2) cos(2 pi k.p) / sqrt(d)`` and ``sqrt(2) sin(2 pi k.p) / sqrt(d)``; for a
    self-conjugate k (0 or the Nyquist frequencies) ``cos(2 pi k.p) / sqrt(d)``. They span
    the eigenspaces of every stationary covariance on the grid.

    Returns
    -------
    vectors : ndarray, shape (d, d)
        Columns orthonormal over flattened pixels (row-major), in the order of
        :func:`fourier_coefficients`.
    frequency : ndarray of int, shape (d,)
        For each column, the flat index ``ky * w + kx`` of its FFT frequency: a spectrum
        ``S`` in ``numpy.fft`` order gives the column's variance ``S.flat[frequency]``.
    """
    index, sine, scale = _fourier_index(h, w)
    ky, kx = np.divmod(index, w)
    py, px = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    phase = 2 * np.pi * (np.outer(py.ravel(), ky) / h + np.outer(px.ravel(), kx) / w)
    vectors = np.where(sine, np.sin(phase), np.cos(phase)) * scale / np.sqrt(h * w)
    return vectors, index


def fourier_coefficients(x: np.ndarray) -> np.ndarray:
    """Coefficients ``B^T x`` of images (B, H, W) in :func:`fourier_basis`, by one FFT.

    With ``X = fft2(x, norm='ortho')`` they are ``sqrt(2) Re X_k`` and ``-sqrt(2) Im X_k``
    for a pair and ``Re X_k`` for a self-conjugate k.
    """
    x = _images(x)
    b, h, w = x.shape
    index, sine, scale = _fourier_index(h, w)
    spectrum = np.fft.fft2(x, norm="ortho").reshape(b, -1)[:, index]
    return np.where(sine, -spectrum.imag, spectrum.real) * scale


def wavelet_levels(shape: tuple[int, int], levels: int | None = None, wavelet: str = "db4") -> int:
    """Levels of an orthonormal periodic 2-D wavelet transform of images of ``shape`` (H, W).

    ``levels`` None takes the largest for which H and W are divisible by ``2**levels``;
    periodization keeps the transform orthonormal at any such depth. ``ValueError`` when no
    level (or not the given number) fits.
    """
    if levels is None:
        levels = 0
        while all(n % 2 ** (levels + 1) == 0 for n in shape):
            levels += 1
    if levels < 1 or any(n % 2**levels for n in shape):
        raise ValueError(
            f"images of size {shape[0]}x{shape[1]} cannot take {levels} level(s) of "
            f"{wavelet!r} (needs H and W divisible by 2**levels, levels >= 1); pass "
            "fewer levels or crop/resize the images to a multiple of 2**levels"
        )
    return levels


def wavelet_coefficients(
    x: np.ndarray, wavelet: str = "db4", levels: int | None = None
) -> np.ndarray:
    """Coefficients (B, d) of images in an orthonormal 2-D wavelet basis (periodic boundaries).

    ``levels`` defaults to the largest that fits (:func:`wavelet_levels`).
    """
    x = _images(x)
    levels = wavelet_levels(x.shape[1:], levels, wavelet)
    with warnings.catch_warnings():
        # pywt warns beyond dwtn_max_level; periodization is orthonormal there too.
        warnings.simplefilter("ignore", UserWarning)
        coeffs = [pywt.wavedec2(image, wavelet, mode="periodization", level=levels) for image in x]
    return np.stack([pywt.coeffs_to_array(c)[0].ravel() for c in coeffs])


def pca_basis(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The principal components of training images (n, H, W): mean (d,) and vectors (d, r).

    Columns are the eigenvectors of the sample covariance in decreasing eigenvalue order,
    ``r = min(n - 1, d)`` of them (the span of the centred training set).
    """
    train = _images(train)
    flat = train.reshape(train.shape[0], -1)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    return mean, vt[: min(flat.shape[0] - 1, flat.shape[1])].T


def captured_fraction(coefficients: np.ndarray, total: np.ndarray, best: bool = True) -> np.ndarray:
    """Fraction of each image's energy captured by its first k coefficients, for every k.

    Parameters
    ----------
    coefficients : ndarray, shape (B, m)
        Coefficients in an orthonormal set of m vectors.
    total : ndarray, shape (B,)
        The images' energy ``||x||^2`` (> 0); below ``sum c^2`` only by round-off when the
        set is a basis.
    best : bool
        Sort the coefficients by decreasing magnitude first (the best k-term approximation);
        False keeps the given order (e.g. by decreasing Jacobian eigenvalue).

    Returns
    -------
    ndarray, shape (B, m)
        Entry k - 1 is the captured fraction with k terms.
    """
    energy = np.square(np.asarray(coefficients, dtype=float))
    total = np.asarray(total, dtype=float)
    if energy.ndim != 2 or total.shape != energy.shape[:1] or np.any(total <= 0):
        raise ValueError(
            "need coefficients (B, m) and a positive energy per image (B,), got shapes "
            f"{energy.shape} and {total.shape}"
        )
    if best:
        energy = -np.sort(-energy, axis=1)
    return np.cumsum(energy, axis=1) / total[:, None]


def oracle_shrinkage_sse(
    coefficients: np.ndarray, sigma: float, residual: np.ndarray | float = 0.0
) -> np.ndarray:
    """Risk of oracle diagonal shrinkage in an orthonormal set, per image (total sse).

    ``sum_k c_k^2 sigma^2 / (c_k^2 + sigma^2)`` plus ``residual``, the energy outside the
    span of an incomplete set (set to zero there, it is lost). This is the expected error
    of ``c_k + sigma z_k -> (c_k^2 / (c_k^2 + sigma^2)) (c_k + sigma z_k)``, the best
    estimator that multiplies each noisy coefficient by a factor.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (got {sigma}); pass it in pixel units")
    c2 = np.square(np.asarray(coefficients, dtype=float))
    return (c2 * sigma**2 / (c2 + sigma**2)).sum(axis=1) + residual


def principal_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the column spans of ``a`` and ``b``, decreasing.

    1 for a shared direction, 0 for an orthogonal one; ``min(rank a, rank b)`` of them
    (``scipy.linalg.subspace_angles``, Björck & Golub 1973).
    """
    return np.sort(np.cos(scipy.linalg.subspace_angles(a, b)))[::-1]
