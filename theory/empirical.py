"""The empirical optimal denoiser (the memorizer) and its smoothed density (docs/design.md §3.2).

For a training set {x_1, ..., x_n}, the law p = (1/n) sum_i delta(x_i) smoothed by
Gaussian noise of standard deviation sigma is p_sigma = (1/n) sum_i N(x_i, sigma^2 I).
Its posterior mean E[x | y] = y + sigma^2 grad log p_sigma(y) (Tweedie/Miyasawa) is a
softmax-weighted average of the training images, the optimal denoiser for that law.
"""

from __future__ import annotations

import math

import torch

from theory.sigma import sigma_like

# Gather the rows of kept weights only when at most this fraction of the training set is
# kept over the batch: copying k rows costs k*d, far less than the B*n*d product it replaces.
_GATHER_FRACTION = 0.5


def _flatten(y: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``y`` to (B, d) and ``train`` to (n, d) on y's device and dtype."""
    if y.ndim < 2 or train.ndim != y.ndim or train.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"y (B, ...) and train (n, ...) need equal trailing shapes, got {tuple(y.shape)} "
            f"and {tuple(train.shape)}; reshape the noisy batch like the training images"
        )
    if train.shape[0] == 0:
        raise ValueError("the training set is empty; pass at least one training image")
    return y.reshape(y.shape[0], -1), train.to(y.device, y.dtype).reshape(train.shape[0], -1)


def empirical_posterior_mean(
    y: torch.Tensor,
    train: torch.Tensor,
    sigma: float | torch.Tensor,
    train_sq_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Posterior mean of x given y = x + sigma z for x uniform on a training set.

    ``f*(y) = sum_i w_i(y) x_i`` with ``w = softmax_i(-||y - x_i||^2 / (2 sigma^2))``. The
    distances use ``||y||^2 - 2<y, x_i> + ||x_i||^2``, so all n of them come from one
    matrix product; ``||y||^2`` is constant over i and cancels in the softmax. The softmax
    subtracts the row maximum before dividing by sigma^2 (log-sum-exp), so it stays finite
    for any sigma whose square is > 0 in the dtype and tends to the nearest training image
    as sigma -> 0. Every step is out of place, so torch.func can differentiate it.

    Weights at or below ``eps / n`` (``eps`` the machine epsilon of y's dtype) are set to
    zero. The dropped mass m is at most ``n * eps / n = eps``, so each output pixel moves by
    at most ``m * max_i |x_ij| <= eps * max_i |x_ij|``: one unit of the dtype's resolution
    at the pixel scale (renormalising the kept weights would change them by less than
    that). When the training images kept by any query in the batch number at most half
    the set, only their rows enter the second product.

    Parameters
    ----------
    y : tensor of shape (B, ...)
        Noisy images; the result takes its dtype and device.
    train : tensor of shape (n, ...)
        Training images, same trailing shape as ``y``.
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units, > 0.
    train_sq_norms : tensor of shape (n,), optional
        ``||x_i||^2`` in y's dtype, precomputed by callers that reuse ``train``.

    Returns
    -------
    tensor of shape (B, ...)
        The optimal denoiser's output for the empirical law of ``train``.

    Notes
    -----
    In float32 the expansion carries an absolute error of about
    ``eps32 * ||y|| * ||x_i||`` on each distance, i.e. ``eps32 * ||y|| ||x_i|| / sigma^2``
    on each logit; use float64 when the posterior spreads over images closer than that.
    With TF32 matmuls enabled on CUDA the error grows by a factor of about 10^4.

    References
    ----------
    Kadkhodaie, Guth, Simoncelli, Mallat, "Generalization in diffusion models arises from
    geometry-adaptive harmonic representations", ICLR 2024, section 2.
    """
    yf, xf = _flatten(y, train)
    weights = _weights(yf, xf, sigma, train_sq_norms)
    n = xf.shape[0]
    kept = (weights.amax(0) > 0).nonzero().squeeze(1)
    if kept.numel() <= _GATHER_FRACTION * n:
        out = weights[:, kept] @ xf[kept]
    else:
        out = weights @ xf
    return out.reshape(y.shape)


def _weights(
    yf: torch.Tensor,
    xf: torch.Tensor,
    sigma: float | torch.Tensor,
    train_sq_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Posterior weights (B, n) of flattened queries over flattened training images."""
    s2 = sigma_like(sigma, yf).square()
    if train_sq_norms is None:
        train_sq_norms = xf.square().sum(1)
    # logits * sigma^2 = <y, x_i> - ||x_i||^2 / 2 = -(||y - x_i||^2 - ||y||^2) / 2
    logits = torch.addmm(train_sq_norms.to(yf), yf, xf.T, beta=-0.5)
    # Subtracting the row maximum before dividing keeps the softmax defined for any sigma^2 > 0
    # in the dtype (logits / sigma^2 alone overflow float32 for sigma below about 1e-18).
    weights = torch.softmax((logits - logits.amax(1, keepdim=True)) / s2, dim=1)
    n = xf.shape[0]
    return torch.nn.functional.threshold(weights, torch.finfo(weights.dtype).eps / n, 0.0)


def empirical_posterior_covariance(
    y: torch.Tensor, train: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """Posterior covariance ``Cov[x | y]`` for x uniform on a training set, per image.

    ``Cov = sum_i w_i (x_i - m)(x_i - m)^T`` with the weights ``w`` of
    :func:`empirical_posterior_mean` and ``m = sum_i w_i x_i``. By the second-order
    Tweedie identity the memorizer's Jacobian is ``Cov[x | y] / sigma^2``, symmetric and
    positive semi-definite, of rank below the number of training images that keep a
    weight. Only those rows enter the product, so the cost is ``O(B k d^2)`` for k kept
    images, the memory ``O(B d^2)``.

    Parameters
    ----------
    y : tensor of shape (B, ...)
        Noisy images; the result takes their dtype and device.
    train : tensor of shape (n, ...)
        Training images, same trailing shape as ``y``.
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units, > 0.

    Returns
    -------
    tensor of shape (B, d, d)
        ``Cov[x | y]`` over flattened pixels, in pixel units squared.

    References
    ----------
    B. Efron, "Tweedie's formula and selection bias", J. Amer. Statist. Assoc. 106 (2011)
    (the second-order identity ``Cov[x | y] = sigma^2 (I + sigma^2 Hess log p_sigma)``).
    """
    yf, xf = _flatten(y, train)
    weights = _weights(yf, xf, sigma)
    covariances = []
    for w in weights:
        kept = (w > 0).nonzero().squeeze(1)
        centred = xf[kept] - w[kept] @ xf[kept]
        covariances.append((centred * w[kept, None]).T @ centred)
    return torch.stack(covariances)


def empirical_log_density(
    y: torch.Tensor, train: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """Log density of the smoothed empirical law at y.

    ``log p_sigma(y) = logsumexp_i(-||y - x_i||^2 / (2 sigma^2)) - log n
    - (d / 2) log(2 pi sigma^2)``, exactly normalised on R^d, d the number of pixels.

    Parameters
    ----------
    y : tensor of shape (B, ...)
        Points at which to evaluate the density.
    train : tensor of shape (n, ...)
        Training images, same trailing shape as ``y``.
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units, > 0.

    Returns
    -------
    tensor of shape (B,)
        ``log p_sigma(y)`` in nats.
    """
    yf, xf = _flatten(y, train)
    s2 = sigma_like(sigma, yf).square()
    sq_dist = torch.addmm(
        yf.square().sum(1, keepdim=True) + xf.square().sum(1), yf, xf.T, alpha=-2.0
    ).clamp_(min=0.0)
    n, d = xf.shape
    log_norm = math.log(n) + 0.5 * d * torch.log(2.0 * math.pi * s2.squeeze(1))
    return torch.logsumexp(-sq_dist / (2.0 * s2), dim=1) - log_norm
