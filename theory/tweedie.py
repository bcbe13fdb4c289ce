"""Tweedie / Miyasawa: converting between a denoiser and the score of the noisy law.

See docs/design.md §3.1.

For ``y = x + sigma z`` with ``z ~ N(0, I)`` and ``p_sigma = p * N(0, sigma^2 I)``, the
minimum-mean-squared-error denoiser is ``E[x | y] = y + sigma^2 grad log p_sigma(y)``
(Miyasawa 1961; Robbins 1956; Efron 2011, "Tweedie's formula and selection bias").
"""

from __future__ import annotations

import torch

from theory.sigma import sigma_like


def _check_same_shape(a: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if a.shape != y.shape:
        raise ValueError(
            f"{name} and y must have the same shape (got {tuple(a.shape)} and {tuple(y.shape)}); "
            "pass the output of the denoiser for this very batch y"
        )


def score_from_denoiser(
    x_hat: torch.Tensor, y: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """Score of the noisy law read off a denoiser: ``s(y) = (f(y) - y) / sigma^2``.

    Parameters
    ----------
    x_hat : tensor of shape (B, ...)
        Denoiser output ``f(y)``.
    y : tensor of shape (B, ...)
        Noisy batch ``x + sigma z``.
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units.

    Returns
    -------
    tensor of shape (B, ...)
        Estimate of ``grad log p_sigma(y)``; exact when ``f`` is the MMSE denoiser.

    References
    ----------
    K. Miyasawa, "An empirical Bayes estimator of the mean of a normal population",
    Bull. Inst. Internat. Statist. 38 (1961).
    """
    _check_same_shape(x_hat, y, "x_hat")
    return (x_hat - y) / sigma_like(sigma, y) ** 2


def denoiser_from_score(
    score: torch.Tensor, y: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """Posterior mean from the score of the noisy law: ``E[x | y] = y + sigma^2 s(y)``.

    Parameters
    ----------
    score : tensor of shape (B, ...)
        ``grad log p_sigma(y)``.
    y : tensor of shape (B, ...)
        Noisy batch ``x + sigma z``.
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units.

    Returns
    -------
    tensor of shape (B, ...)
        The Tweedie/Miyasawa denoiser output.
    """
    _check_same_shape(score, y, "score")
    return y + sigma_like(sigma, y) ** 2 * score
