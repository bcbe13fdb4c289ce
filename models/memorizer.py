"""The memorizer: the exact optimal denoiser for the empirical law of a training set."""

from __future__ import annotations

import torch

from theory.empirical import empirical_posterior_covariance, empirical_posterior_mean
from theory.sigma import sigma_like


class Memorizer:
    """Optimal denoiser for x drawn uniformly from a fixed training set (docs/design.md §3.2).

    ``f*(y) = sum_i w_i(y) x_i``, ``w = softmax_i(-||y - x_i||^2 / (2 sigma^2))``; see
    :func:`theory.empirical.empirical_posterior_mean`. A network that reaches this denoiser
    at every sigma has memorized its training set: its samples are training images.

    Parameters
    ----------
    train : tensor of shape (n, 1, H, W)
        Training images (clean pixels in [0, 1]).
    name : str
        Short identifier used in result files.

    Notes
    -----
    The squared norms ``||x_i||^2`` are cached. Calls run on y's device and dtype; keep the
    memorizer there (``.to(device)``, ``.to(torch.float64)``) to avoid a copy of the
    training set per call.
    """

    def __init__(self, train: torch.Tensor, name: str = "memorizer") -> None:
        if train.ndim != 4 or train.shape[1] != 1 or train.shape[0] == 0:
            raise ValueError(
                f"train must be a non-empty (n, 1, H, W) tensor, got {tuple(train.shape)}; "
                "add the channel axis with train.unsqueeze(1)"
            )
        self.train = train
        self.name = name
        self.sq_norms = train.reshape(train.shape[0], -1).square().sum(1)

    def to(self, *args, **kwargs) -> Memorizer:
        """Return a copy on another device or dtype (arguments as for ``Tensor.to``)."""
        return Memorizer(self.train.to(*args, **kwargs), name=self.name)

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        same = y.device == self.train.device and y.dtype == self.train.dtype
        return empirical_posterior_mean(y, self.train, sigma, self.sq_norms if same else None)

    def jacobian(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """The exact Jacobian ``Cov_w[x | y] / sigma^2`` (B, d, d) from the softmax weights.

        Computed from the weighted covariance of the training images
        (:func:`theory.empirical.empirical_posterior_covariance`), not by differentiating
        the call, so it checks the autograd path and serves as the optimum's Jacobian.
        """
        s2 = sigma_like(sigma, y).reshape(-1, 1, 1).square()
        return empirical_posterior_covariance(y, self.train, sigma) / s2
