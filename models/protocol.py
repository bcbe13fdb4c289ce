"""The one denoiser protocol every learned and reference denoiser follows (DESIGN §3)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """A batched denoiser ``x_hat = f(y, sigma)``.

    ``y`` is a float tensor of shape ``(B, 1, H, W)`` holding ``x + sigma * z``;
    ``sigma`` is a float or a ``(B,)`` tensor in pixel units. Blind denoisers accept
    ``sigma`` and ignore it. ``name`` is a short identifier used in result files.
    """

    name: str

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...
