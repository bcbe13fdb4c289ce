"""Jacobians of denoisers, their traces (exact and Hutchinson) and SURE (docs/design.md §3.4).

``f`` is any denoiser under ``theory.protocol``: batched ``f(y, sigma)`` acting on each
image independently. Because image b of the output depends only on image b of the input, one
vector-Jacobian product with the same cotangent in every image yields one Jacobian row for
every image at once. (A network in training mode with batch statistics couples images; call
``eval()`` first.)

The derivatives come from ``torch.autograd``: one forward pass, then reverse mode with the
cotangents vectorized by vmap (``is_grads_batched``), or forward mode with dual tensors. The
``torch.func`` transforms are avoided on purpose: inside ``torch.func.vjp``/``jvp`` even
tensors captured from outside are wrapped, so a denoiser that validates a tensor ``sigma``
(``theory.sigma.check_sigma`` reads it into numpy) fails there.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from theory.protocol import Denoiser
from theory.sigma import sigma_like


def jacobian(
    f: Denoiser, y: torch.Tensor, sigma: float | torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Exact Jacobian ``d f(y) / d y`` of each image, by ``d`` batched vector-Jacobian products.

    Parameters
    ----------
    f : callable
        Denoiser ``f(y, sigma)``, differentiable by torch.
    y : tensor of shape (B, ...)
        Noisy batch; ``d`` = number of elements per image.
    sigma : float or tensor of shape (B,)
        Noise level in pixel units, passed to ``f`` unchanged.
    chunk_size : int, optional
        Rows computed per vectorized pass (bounds memory for large ``d``); default all ``d``.

    Returns
    -------
    tensor of shape (B, d, d)
        ``J[b, i, j] = d f(y)[b, i] / d y[b, j]`` over flattened pixels.
    """
    sigma_like(sigma, y)  # validate before differentiating
    b, d = y.shape[0], y[0].numel()
    with torch.enable_grad():
        y_in = y.detach().requires_grad_()
        out = f(y_in, sigma)
    check_output(out, y)
    step = d if chunk_size is None else chunk_size
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1 (got {chunk_size}); e.g. chunk_size=256")
    basis = torch.eye(d, dtype=out.dtype, device=out.device)
    rows = []
    for start in range(0, d, step):
        # Cotangent k is the k-th pixel indicator, repeated in every image of the batch.
        chunk = basis[start : start + step, None, :].expand(-1, b, d)
        cotangents = chunk.reshape((-1,) + tuple(y.shape))
        rows.append(
            torch.autograd.grad(out, y_in, cotangents, retain_graph=True, is_grads_batched=True)[0]
        )
    return torch.cat(rows).reshape(d, b, d).transpose(0, 1)


def check_output(out: torch.Tensor, y: torch.Tensor) -> None:
    """``ValueError`` naming the protocol unless the denoiser's output has the shape of ``y``."""
    if out.shape != y.shape:
        raise ValueError(
            f"f(y, sigma) must return the shape of y (got {tuple(out.shape)} for "
            f"{tuple(y.shape)}); pass a denoiser under the protocol of ``theory.protocol``"
        )


def trace_exact(f: Denoiser, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Exact trace of each image's Jacobian, ``tr grad f(y)`` (the effective dimension).

    Costs ``d`` vector-Jacobian products; use :func:`trace_hutchinson` for large images.

    Returns
    -------
    tensor of shape (B,)
    """
    return torch.diagonal(jacobian(f, y, sigma), dim1=1, dim2=2).sum(dim=1)


def trace_hutchinson(
    f: Denoiser,
    y: torch.Tensor,
    sigma: float | torch.Tensor,
    n_probes: int = 8,
    generator: torch.Generator | None = None,
    fd_eps: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson estimate of ``tr grad f(y)`` per image from Rademacher probes.

    ``tr J = E[z^T J z]`` for ``z`` with independent ±1 entries. ``J z`` is a forward-mode
    Jacobian-vector product (dual tensors) or, with ``fd_eps``, the finite difference
    ``(f(y + eps z) - f(y)) / eps`` of Monte-Carlo SURE for denoisers torch cannot
    differentiate (Ramani, Blu, Unser, IEEE Trans. Image Process. 17(9), 2008).

    Parameters
    ----------
    f : callable
        Denoiser ``f(y, sigma)``.
    y : tensor of shape (B, ...)
        Noisy batch.
    sigma : float or tensor of shape (B,)
        Noise level in pixel units, passed to ``f`` unchanged.
    n_probes : int
        Number of probes, >= 2 (for the standard error).
    generator : torch.Generator, optional
        Source of the probes; default a generator on ``y.device`` seeded with 0.
    fd_eps : float, optional
        Finite-difference step in pixel units (> 0). In float32 keep it well above
        ``1e-3 * sigma`` or rounding dominates.

    Returns
    -------
    trace : tensor of shape (B,)
        Mean of ``z^T J z`` over probes.
    se : tensor of shape (B,)
        Its standard error (standard deviation over probes / sqrt(n_probes)).
    """
    sigma_like(sigma, y)
    if n_probes < 2:
        raise ValueError(f"n_probes must be >= 2 to give a standard error (got {n_probes})")
    if fd_eps is not None and not fd_eps > 0:
        raise ValueError(f"fd_eps must be > 0 (got {fd_eps}); e.g. fd_eps=1e-3 * sigma")
    if generator is None:
        generator = torch.Generator(device=y.device).manual_seed(0)
    signs = torch.randint(
        0, 2, (n_probes,) + tuple(y.shape), generator=generator, device=generator.device
    )
    probes = (2 * signs - 1).to(dtype=y.dtype, device=y.device)
    if fd_eps is None:
        with forward_ad.dual_level():
            products = [
                forward_ad.unpack_dual(f(forward_ad.make_dual(y, z), sigma)).tangent for z in probes
            ]
    else:
        with torch.no_grad():
            base = f(y, sigma)
            products = [(f(y + fd_eps * z, sigma) - base) / fd_eps for z in probes]
    quad = (probes * torch.stack(products)).flatten(2).sum(dim=2)
    return quad.mean(dim=0), quad.std(dim=0) / n_probes**0.5


def sure(
    f: Denoiser, y: torch.Tensor, sigma: float | torch.Tensor, trace: torch.Tensor
) -> torch.Tensor:
    """Stein's unbiased risk estimate of each image's total squared error ``||f(y) - x||^2``.

    ``SURE = ||f(y) - y||^2 - d sigma^2 + 2 sigma^2 tr grad f(y)``, unbiased for
    ``y = x + sigma z`` with ``z ~ N(0, I)`` and weakly differentiable ``f``.

    Parameters
    ----------
    f : callable
        Denoiser ``f(y, sigma)``.
    y : tensor of shape (B, ...)
        Noisy batch.
    sigma : float or tensor of shape (B,)
        Noise level in pixel units.
    trace : tensor of shape (B,)
        ``tr grad f(y)`` per image (from :func:`trace_exact` or :func:`trace_hutchinson`).

    Returns
    -------
    tensor of shape (B,)
        Estimated per-image ``sse``.

    References
    ----------
    C. M. Stein, "Estimation of the mean of a multivariate normal distribution",
    Ann. Statist. 9(6), 1981.
    """
    s2 = sigma_like(sigma, y).flatten() ** 2
    if trace.shape != (y.shape[0],):
        raise ValueError(
            f"trace must have shape ({y.shape[0]},) (got {tuple(trace.shape)}); "
            "pass trace_exact(f, y, sigma) or trace_hutchinson(f, y, sigma)[0]"
        )
    with torch.no_grad():
        residual = (f(y, sigma) - y).flatten(1).pow(2).sum(dim=1)
    return residual - y[0].numel() * s2 + 2 * s2 * trace.to(residual.dtype)
