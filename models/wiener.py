"""Wiener filters: the optimal denoisers of Gaussian laws, in a dense or a Fourier eigenbasis.

For ``x ~ N(mu, C)`` with ``C = B diag(lam) B^T`` (B orthonormal), the optimal denoiser is
``f(y) = mu + B diag(lam / (lam + sigma^2)) B^T (y - mu)`` and its expected total error is
``SSE*(sigma) = sum_k lam_k sigma^2 / (lam_k + sigma^2)`` (docs/design.md §3.3). For
non-Gaussian data with the same mean and covariance it is the best linear (affine) denoiser.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from theory.gaussian import gaussian_mmse
from theory.sigma import sigma_like


class Basis(Protocol):
    """An orthonormal basis: analysis ``B^T x`` and synthesis ``B c`` on (B, 1, H, W) images."""

    def analyze(self, x: torch.Tensor) -> torch.Tensor: ...

    def synthesize(self, coefficients: torch.Tensor) -> torch.Tensor: ...

    def to(self, *args, **kwargs) -> Basis: ...

    @property
    def complement_dim(self) -> int:
        """Dimension of the orthogonal complement of the span (0 for a complete basis)."""


class DenseBasis:
    """Columns of a (d, r) matrix with orthonormal columns, r <= d, d = H * W.

    Synthesis drops the orthogonal complement of the span, i.e. a filter that uses this
    basis gives that complement eigenvalue 0 (shrinkage 0).
    """

    def __init__(self, vectors: torch.Tensor, shape: tuple[int, int]) -> None:
        d = shape[0] * shape[1]
        if vectors.ndim != 2 or vectors.shape[0] != d or vectors.shape[1] > d:
            raise ValueError(
                f"vectors must be a (d, r) matrix with d = H*W = {d} and r <= d, "
                f"got {tuple(vectors.shape)}; pass the eigenvectors as columns"
            )
        self.vectors = vectors
        self.shape = tuple(shape)

    @property
    def complement_dim(self) -> int:
        return self.vectors.shape[0] - self.vectors.shape[1]

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.vectors

    def synthesize(self, coefficients: torch.Tensor) -> torch.Tensor:
        return (coefficients @ self.vectors.T).reshape(-1, 1, *self.shape)

    def to(self, *args, **kwargs) -> DenseBasis:
        return DenseBasis(self.vectors.to(*args, **kwargs), self.shape)


class FourierBasis:
    """The orthonormal 2-D discrete Fourier basis (``torch.fft.fft2`` with norm='ortho').

    Coefficients are complex (B, 1, H, W); synthesis keeps the real part, which is exact
    when the shrinkage is symmetric under k -> -k (a real linear filter).
    """

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def synthesize(self, coefficients: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(coefficients, norm="ortho").real

    def to(self, *args, **kwargs) -> FourierBasis:
        return self

    @property
    def complement_dim(self) -> int:
        return 0


def _flip_k(a: torch.Tensor) -> torch.Tensor:
    """``a[-k]`` for an array indexed by 2-D FFT frequencies k (modulo the size)."""
    return torch.roll(torch.flip(a, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


class Wiener:
    """Wiener filter ``f(y) = mu + B diag(lam / (lam + sigma^2)) B^T (y - mu)``.

    Directions outside the span of an incomplete basis all have the eigenvalue ``floor``:
    ``f(y) = mu + g0 (y - mu) + B diag(lam / (lam + sigma^2) - g0) B^T (y - mu)`` with
    ``g0 = floor / (floor + sigma^2)``.

    Parameters
    ----------
    mean : tensor broadcastable to (1, 1, H, W)
        The mean image mu (pixel units).
    eigvals : tensor
        Covariance eigenvalues lam >= 0 (pixel units squared), shaped like one image's
        coefficients: (r,) for a :class:`DenseBasis`, (H, W) for a :class:`FourierBasis`.
    basis : Basis
        The orthonormal eigenbasis B.
    name : str
        Short identifier used in result files.
    floor : float
        Covariance eigenvalue of the orthogonal complement of the basis span (default 0:
        those directions are projected out).

    Notes
    -----
    Exact (the posterior mean) for x ~ N(mu, B diag(lam) B^T); for other data with that mean
    and covariance it is the best affine denoiser. Calls run on y's device and dtype; keep
    the filter there with ``.to(...)`` to avoid a copy per call.

    References
    ----------
    N. Wiener, "Extrapolation, Interpolation, and Smoothing of Stationary Time Series", 1949.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        eigvals: torch.Tensor,
        basis: Basis,
        name: str = "wiener",
        floor: float = 0.0,
    ) -> None:
        if not bool(torch.all(torch.isfinite(eigvals))) or bool(torch.any(eigvals < 0)):
            raise ValueError(
                "eigvals must be finite and >= 0; "
                "clip round-off negatives with eigvals.clamp(min=0)"
            )
        if not floor >= 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        self.mean = mean
        self.eigvals = eigvals
        self.basis = basis
        self.name = name
        self.floor = float(floor)

    @classmethod
    def from_data(
        cls, images: torch.Tensor, name: str = "wiener_pca", shrinkage: bool = True
    ) -> Wiener:
        """Wiener filter of the Gaussian with the sample mean and covariance of ``images``.

        The covariance ``S = X^T X / (n - 1)`` of the centred (n, d) data X comes from its SVD
        ``X = U s V^T``: eigenvectors V, eigenvalues ``s^2 / (n - 1)``, rank <= n - 1. With
        ``shrinkage`` the estimate is Ledoit and Wolf's ``(1 - rho) S + rho m I``,
        ``m = tr(S) / d``: the eigenvalues become ``(1 - rho) lam + rho m`` and the
        complement of the span gets ``rho m`` instead of 0, so with n < d the filter does not
        project noisy images onto the span of the training set (which costs most at small
        sigma). ``rho`` tends to 0 as n grows. The SVD runs in float64; the filter takes the
        dtype and device of ``images``.

        Parameters
        ----------
        images : tensor of shape (n, 1, H, W), n >= 2
            Training images.
        shrinkage : bool
            Apply Ledoit-Wolf shrinkage towards ``m I`` (see :func:`ledoit_wolf_intensity`).
        """
        if images.ndim != 4 or images.shape[1] != 1 or images.shape[0] < 2:
            raise ValueError(
                f"images must be an (n, 1, H, W) tensor with n >= 2, got {tuple(images.shape)}"
            )
        n, _, h, w = images.shape
        x = images.to(torch.float64)
        mean = x.mean(0, keepdim=True)
        centred = (x - mean).reshape(n, -1)
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        r = min(n - 1, h * w)
        eigvals = s[:r].square() / (n - 1)
        floor = 0.0
        if shrinkage:
            rho = ledoit_wolf_intensity(centred)
            target = float(s.square().sum()) / (n - 1) / (h * w)
            eigvals, floor = (1 - rho) * eigvals + rho * target, rho * target
        return cls(
            mean.to(images),
            eigvals.to(images),
            DenseBasis(vt[:r].T.contiguous().to(images), (h, w)),
            name=name,
            floor=floor,
        )

    @classmethod
    def stationary(
        cls, mean: float | torch.Tensor, spectrum: torch.Tensor, name: str = "wiener"
    ) -> Wiener:
        """Exact optimal denoiser of a stationary Gaussian field.

        The covariance is ``F* diag(spectrum) F`` with F the orthonormal 2-D DFT, i.e. the
        field ``x = mu + ifft2(sqrt(spectrum) * fft2(w), norm='ortho')`` for white noise w.

        Parameters
        ----------
        mean : float or tensor broadcastable to (1, 1, H, W)
            Mean intensity or mean image.
        spectrum : tensor of shape (H, W)
            Covariance eigenvalues at FFT frequencies (``torch.fft.fftfreq`` order), >= 0 and
            symmetric under k -> -k (a real field).
        """
        if spectrum.ndim != 2:
            raise ValueError(f"spectrum must be (H, W), got {tuple(spectrum.shape)}")
        if not torch.allclose(spectrum, _flip_k(spectrum), rtol=1e-6, atol=0.0):
            raise ValueError(
                "spectrum must be symmetric under k -> -k for a real field; "
                "symmetrize it with (S + S[-k]) / 2"
            )
        mean = torch.as_tensor(mean, dtype=spectrum.dtype, device=spectrum.device)
        return cls(mean, spectrum, FourierBasis(), name=name)

    def to(self, *args, **kwargs) -> Wiener:
        """Return a copy on another device or dtype (arguments as for ``Tensor.to``)."""
        return Wiener(
            self.mean.to(*args, **kwargs),
            self.eigvals.to(*args, **kwargs),
            self.basis.to(*args, **kwargs),
            name=self.name,
            floor=self.floor,
        )

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        s2 = sigma_like(sigma, y).square()
        same = self.eigvals.device == y.device and self.eigvals.dtype == y.dtype
        f = self if same else self.to(y.device, y.dtype)
        residual = y - f.mean
        coefficients = f.basis.analyze(residual)
        s2c = s2.reshape((-1,) + (1,) * (coefficients.ndim - 1))
        gain = f.eigvals / (f.eigvals + s2c)
        if f.floor == 0:
            return f.mean + f.basis.synthesize(coefficients * gain)
        g0 = f.floor / (f.floor + s2c)
        return (
            f.mean
            + f.floor / (f.floor + s2) * residual
            + f.basis.synthesize(coefficients * (gain - g0))
        )

    def sse_star(self, sigma: float | np.ndarray) -> np.ndarray:
        """Expected total squared error ``sum_k lam_k sigma^2 / (lam_k + sigma^2)``.

        The error of this filter under its own Gaussian model (eigenvalues outside a dense
        basis's span are 0 and add nothing); see :func:`theory.gaussian.gaussian_mmse`.
        """
        lam = self.eigvals.detach().cpu().double().numpy().ravel()
        lam = np.concatenate([lam, np.full(self.basis.complement_dim, self.floor)])
        return gaussian_mmse(lam, sigma)


def ledoit_wolf_intensity(centred: torch.Tensor) -> float:
    """Ledoit-Wolf shrinkage intensity ``rho`` in [0, 1] for centred data ``X`` (n, d).

    With ``S = X^T X / n``, ``m = tr(S) / d``, ``delta^2 = ||S - m I||_F^2 / d`` and
    ``b^2 = min(delta^2, sum_i ||x_i x_i^T - S||_F^2 / (n^2 d))``, ``rho = b^2 / delta^2``
    minimises the expected Frobenius error of ``(1 - rho) S + rho m I`` (asymptotically in
    n and d). Every norm is computed from the (n, n) Gram matrix ``G = X X^T``:
    ``||S||_F^2 = ||G||_F^2 / n^2`` and ``x_i^T S x_i = sum_j G_ij^2 / n``.

    References
    ----------
    O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional covariance
    matrices", J. Multivariate Anal. 88(2), 2004.
    """
    n, d = centred.shape
    gram = centred @ centred.T
    sq_norms = gram.diagonal()
    m = float(sq_norms.sum()) / (n * d)
    s_frob2 = float(gram.square().sum()) / n**2
    delta2 = (s_frob2 - 2 * m * float(sq_norms.sum()) / n + m * m * d) / d
    per_sample = sq_norms.square() - 2 * gram.square().sum(1) / n + s_frob2
    b2 = min(delta2, float(per_sample.sum()) / (n * n * d))
    return b2 / delta2 if delta2 > 0 else 1.0
