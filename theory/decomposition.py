"""Eigen-decomposition of a denoiser's Jacobian, the basis it shrinks in (docs/design.md §3.5).

At a noisy image y the Jacobian ``J(y) = d f(y) / d y`` of a denoiser has the symmetric part
``S = (J + J^T) / 2 = sum_k lam_k e_k e_k^T`` (eigenvalues in decreasing order). For a
posterior mean J is itself symmetric, ``Cov[x | y] / sigma^2``; a bias-free network obeys
``f(y) = J(y) y`` and so acts as ``f(y) = sum_k lam_k <y, e_k> e_k``: it keeps the
coefficient of y on ``e_k`` by the factor ``lam_k``. The e_k are the geometry-adaptive
harmonic basis of Kadkhodaie, Guth, Simoncelli and Mallat (ICLR 2024), ``tr J = sum_k lam_k``
its effective dimension.

:func:`decompose` forms J (``theory.jacobian.jacobian``) and diagonalises S with
``torch.linalg.eigh``; :func:`top_eigenpairs` finds the leading k by Lanczos
(``scipy.sparse.linalg.eigsh``) over Jacobian-vector products, never forming J, for images
too large for that. Both report the asymmetry ``||J - J^T||_F / ||J||_F`` and the
homogeneity residual ``||f(y) - J y|| / ||f(y)||`` beside the eigenpairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.autograd import forward_ad

from theory.bases import fourier_basis
from theory.jacobian import check_output, jacobian
from theory.protocol import Denoiser
from theory.sigma import check_sigma, sigma_like

# Largest image (pixels) whose full Jacobian and eigh fit comfortably (d^2 float64 = 134 MB).
FULL_LIMIT = 4096
# Leading eigenvectors over which Decomposition.leading_asymmetry is measured.
LEADING_ASYMMETRY = 20


@dataclass(frozen=True)
class Decomposition:
    """Leading eigenpairs of the symmetric part of each image's Jacobian, with diagnostics.

    Attributes
    ----------
    eigvals : float64 tensor (B, k)
        ``lam_k``, decreasing.
    eigvecs : float64 tensor (B, d, k)
        ``e_k`` as orthonormal columns over flattened pixels.
    trace, trace_se : float64 tensors (B,)
        ``tr J`` (the effective dimension) and its standard error: exact (se 0) from the
        full Jacobian, a Hutchinson estimate from :func:`top_eigenpairs`.
    asymmetry : float64 tensor (B,)
        ``||J - J^T||_F / ||J||_F``: exact, or estimated from the same probes.
    homogeneity : float64 tensor (B,)
        ``||f(y) - J y|| / ||f(y)||``; ~1e-6 in float32 for a bias-free network.
    symmetric_output : float64 tensor (B, d)
        ``S y = (J y + J^T y) / 2``: the output of the symmetric part alone. For a
        bias-free network ``f(y) - S y = (J - J^T) y / 2`` is what the asymmetry adds to the
        output, and the error of ``S y`` says what it costs or buys.
    leading_asymmetry : float64 tensor (B,)
        ``||E^T (J - J^T) E||_F / ||E^T J E||_F`` with E the leading ``LEADING_ASYMMETRY``
        eigenvectors: the asymmetry within the directions the denoiser keeps.
    """

    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    trace: torch.Tensor
    trace_se: torch.Tensor
    asymmetry: torch.Tensor
    homogeneity: torch.Tensor
    symmetric_output: torch.Tensor
    leading_asymmetry: torch.Tensor

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """``<x_b, e_k>`` (B, k) of images ``x`` (B, ...) in each image's eigenvectors."""
        flat = x.detach().reshape(x.shape[0], -1).to(self.eigvecs)
        return torch.einsum("bd,bdk->bk", flat, self.eigvecs)


def _leading_asymmetry(je: torch.Tensor, eigvecs: torch.Tensor) -> torch.Tensor:
    """``||E^T (J - J^T) E||_F / ||E^T J E||_F`` from ``J E`` (B, d, m) and E (B, d, m)."""
    core = eigvecs.transpose(1, 2) @ je
    return (core - core.transpose(1, 2)).flatten(1).norm(dim=1) / core.flatten(1).norm(dim=1)


def _homogeneity(out: torch.Tensor, jy: torch.Tensor) -> torch.Tensor:
    out, jy = out.detach().flatten(1).double(), jy.detach().flatten(1).double()
    return (out - jy).norm(dim=1) / out.norm(dim=1)


def decompose(
    f: Denoiser, y: torch.Tensor, sigma: float | torch.Tensor, chunk_size: int | None = None
) -> Decomposition:
    """Full eigen-decomposition of the symmetric part of each image's Jacobian.

    ``J`` by ``d`` batched vector-Jacobian products (:func:`theory.jacobian.jacobian`), then
    ``eigh((J + J^T) / 2)`` in float64. Cost: d backward passes and O(d^3) per image.

    Parameters
    ----------
    f : callable
        Denoiser ``f(y, sigma)`` under ``theory.protocol``, differentiable by torch.
    y : tensor of shape (B, 1, H, W)
        Noisy images, ``d = H W <= FULL_LIMIT`` (4096).
    sigma : float or tensor of shape (B,)
        Noise level in pixel units, > 0.
    chunk_size : int, optional
        Jacobian rows per vectorized pass (bounds memory).

    Returns
    -------
    Decomposition
        All d eigenpairs, exact trace and asymmetry.
    """
    sigma_like(sigma, y)
    d = y[0].numel()
    if d > FULL_LIMIT:
        raise ValueError(
            f"images of {d} pixels are too large for the full decomposition (at most "
            f"{FULL_LIMIT}); use top_eigenpairs(f, y, sigma, k) for the leading k"
        )
    jac = jacobian(f, y, sigma, chunk_size).detach().double()
    with torch.no_grad():
        out = f(y, sigma)
    sym = (jac + jac.transpose(1, 2)) / 2
    eigvals, eigvecs = torch.linalg.eigh(sym)
    flat = y.detach().reshape(y.shape[0], -1).double()
    jy = torch.einsum("bij,bj->bi", jac, flat)
    trace = torch.diagonal(jac, dim1=1, dim2=2).sum(1)
    eigvecs = eigvecs.flip(2)
    leading = eigvecs[:, :, :LEADING_ASYMMETRY]
    return Decomposition(
        eigvals=eigvals.flip(1),
        eigvecs=eigvecs,
        trace=trace,
        trace_se=torch.zeros_like(trace),
        asymmetry=(jac - jac.transpose(1, 2)).flatten(1).norm(dim=1) / jac.flatten(1).norm(dim=1),
        homogeneity=_homogeneity(out, jy),
        symmetric_output=torch.einsum("bij,bj->bi", sym, flat),
        leading_asymmetry=_leading_asymmetry(jac @ leading, leading),
    )


def top_eigenpairs(
    f: Denoiser,
    y: torch.Tensor,
    sigma: float | torch.Tensor,
    k: int,
    probes: int = 8,
    tol: float = 1e-6,
    seed: int = 0,
) -> Decomposition:
    """The k largest eigenpairs of each image's symmetrized Jacobian, by Lanczos.

    The operator ``v -> (J v + J^T v) / 2`` costs one forward-mode product (a forward pass
    with dual tensors) and one vector-Jacobian product on a graph built once per image;
    ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK) needs a few times
    k of them. The trace and the asymmetry are Hutchinson estimates from ``probes``
    Rademacher vectors: ``tr J = E[z^T J z]`` and ``||A||_F^2 = E||A z||^2``.

    Parameters
    ----------
    f : callable
        Denoiser under ``theory.protocol``, differentiable in forward and reverse mode.
    y : tensor of shape (B, ...)
        Noisy images, d pixels each.
    sigma : float or tensor of shape (B,)
        Noise level in pixel units, > 0.
    k : int
        Eigenpairs per image, ``1 <= k < d`` (use :func:`decompose` for all of them).
    probes : int
        Hutchinson probes, >= 2.
    tol : float
        Relative accuracy of the eigenvalues asked of ARPACK (float32 products limit it to
        about 1e-6).
    seed : int
        Seed of the Lanczos start vector and the probes: the result is a function of
        ``(f, y, sigma, k, probes, seed)``.

    Returns
    -------
    Decomposition
        k eigenpairs per image, estimated trace (with its standard error) and asymmetry.

    References
    ----------
    R. B. Lehoucq, D. C. Sorensen, C. Yang, "ARPACK Users' Guide", SIAM (1998).
    M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix",
    Commun. Statist. Simul. 18 (1989).
    """
    sigmas = sigma_like(sigma, y).reshape(-1)
    d = y[0].numel()
    if not 1 <= k < d:
        raise ValueError(f"k must satisfy 1 <= k < d = {d} (got {k}); use decompose for all d")
    if probes < 2:
        raise ValueError(f"probes must be >= 2 to give a standard error (got {probes})")
    rows = [
        _top_one(f, y[b : b + 1].detach(), sigmas[b : b + 1], k, probes, tol, seed)
        for b in range(y.shape[0])
    ]
    return Decomposition(*(torch.stack(parts) for parts in zip(*rows, strict=True)))


def _top_one(f, y, sigma, k, probes, tol, seed) -> tuple[torch.Tensor, ...]:
    with torch.enable_grad():
        y_in = y.clone().requires_grad_()
        out = f(y_in, sigma)
    check_output(out, y)

    def jvp(v: torch.Tensor) -> torch.Tensor:
        with forward_ad.dual_level():
            return forward_ad.unpack_dual(f(forward_ad.make_dual(y, v), sigma)).tangent

    def vjp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(out, y_in, v, retain_graph=True)[0]

    def matvec(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=float).ravel()).to(y).reshape(y.shape)
        return ((jvp(t) + vjp(t)) / 2).detach().double().cpu().numpy().ravel()

    d = y.numel()
    rng = np.random.default_rng(seed)
    operator = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    eigvals, eigvecs = eigsh(operator, k=k, which="LA", tol=tol, v0=rng.standard_normal(d))
    order = np.argsort(-eigvals)
    z = torch.from_numpy(2.0 * rng.integers(0, 2, (probes, d)) - 1.0).to(y)
    quad, asym, norm = [], [], []
    for probe in z:
        probe = probe.reshape(y.shape)
        jz, jtz = jvp(probe).detach().double(), vjp(probe).detach().double()
        quad.append(float((probe.double() * jz).sum()))
        asym.append(float((jz - jtz).square().sum()))
        norm.append(float(jz.square().sum()))
    quad = np.array(quad)
    eigvecs = torch.from_numpy(eigvecs[:, order].copy())
    leading = eigvecs[:, :LEADING_ASYMMETRY]
    je = torch.stack(
        [jvp(e.to(y).reshape(y.shape)).detach().double().ravel() for e in leading.T], 1
    )
    jy = jvp(y).detach()
    return (
        torch.from_numpy(eigvals[order].copy()),
        eigvecs,
        torch.tensor(quad.mean(), dtype=torch.float64),
        torch.tensor(quad.std(ddof=1) / np.sqrt(probes), dtype=torch.float64),
        torch.tensor(np.sqrt(np.mean(asym) / np.mean(norm)), dtype=torch.float64),
        _homogeneity(out, jy)[0],
        ((jy + vjp(y.detach())) / 2).double().ravel(),
        _leading_asymmetry(je[None], leading[None])[0],
    )


def stationary_eigenpairs(spectrum: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the exact Jacobian of a stationary Gaussian field's optimal denoiser.

    For ``x ~ N(mu, Sigma)`` with ``Sigma = F^* diag(S) F`` (F the orthonormal DFT) the
    posterior mean is the Wiener filter, whose Jacobian ``Sigma (Sigma + sigma^2 I)^-1`` has
    the eigenvalues ``S_k / (S_k + sigma^2)`` on the real Fourier vectors of frequency k
    (:func:`theory.bases.fourier_basis`), at every y.

    Parameters
    ----------
    spectrum : ndarray, shape (H, W)
        Covariance eigenvalues ``S`` at ``numpy.fft`` frequencies (pixel units squared).
    sigma : float
        Noise level in pixel units, > 0.

    Returns
    -------
    eigvals : ndarray, shape (d,)
        Decreasing (ties in the order of :func:`theory.bases.fourier_basis`).
    eigvecs : ndarray, shape (d, d)
        The matching real Fourier vectors as columns.
    """
    check_sigma(sigma)
    spectrum = np.asarray(spectrum, dtype=float)
    if spectrum.ndim != 2 or np.any(spectrum < 0):
        raise ValueError(f"spectrum must be a non-negative (H, W) array (got {spectrum.shape})")
    vectors, frequency = fourier_basis(*spectrum.shape)
    lam = spectrum.ravel()[frequency]
    gains = lam / (lam + sigma**2)
    order = np.argsort(-gains, kind="stable")
    return gains[order], vectors[:, order]
