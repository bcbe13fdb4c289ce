"""The denoiser protocol that every learned and reference denoiser follows.

It lives at the bottom layer so that the numerics (``theory.jacobian``), the denoisers
(``models``) and the benchmarks share one definition (docs/design.md §2).
"""

from __future__ import annotations

from typing import Protocol

import torch


class Denoiser(Protocol):
    """A batched denoiser ``x_hat = f(y, sigma)``.

    ``y`` is a float tensor of shape ``(B, 1, H, W)`` holding ``x + sigma * z``;
    ``sigma`` is a float or a ``(B,)`` tensor in pixel units. Blind denoisers accept
    ``sigma`` and ignore it. Image b of the output depends on image b of the input only
    (networks are called in eval mode). ``name`` is a short identifier used in result
    files. A protocol cannot check behaviour: ``tests/test_conformance.py`` calls every
    registered denoiser on every family it serves.
    """

    name: str

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...
