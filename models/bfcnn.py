"""Bias-free DnCNN-style denoiser, BF-CNN (Mohan et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from models.unet import conv3x3, conv_stack


class BFCNN(nn.Module):
    """Bias-free CNN that predicts the noise; ``f(y) = y - net(y)`` is the denoised image.

    ``depth`` 3x3 convolutions without bias: conv-ReLU, ``depth - 2`` times
    conv-:class:`~models.unet.BiasFreeBatchNorm`-ReLU, and a final conv to ``in_channels``
    (the noise estimate). In eval mode ``f(lam y) = lam f(y)`` for ``lam > 0``. Any image
    size works; the receptive field is ``2 * depth + 1`` pixels.

    Parameters
    ----------
    depth : int
        Number of convolution layers (>= 2).
    channels : int
        Feature channels of the hidden layers.
    in_channels : int
        Image channels (1 for grayscale).
    name : str
        Short identifier used in result files.

    References
    ----------
    Mohan, Kadkhodaie, Simoncelli, Fernandez-Granda, *Robust and interpretable blind image
    denoising via bias-free convolutional neural networks*, ICLR 2020; Zhang et al., *Beyond
    a Gaussian denoiser: residual learning of deep CNN for image denoising*, IEEE TIP 2017.
    """

    def __init__(
        self, depth: int = 20, channels: int = 64, in_channels: int = 1, name: str = "bfcnn"
    ) -> None:
        super().__init__()
        if depth < 2 or min(channels, in_channels) < 1:
            raise ValueError(
                f"need depth >= 2 and channels, in_channels >= 1 (got {depth}, {channels}, "
                f"{in_channels})"
            )
        self.name = name
        self.depth = depth
        self.in_channels = in_channels
        self.layers = nn.Sequential(
            *conv_stack(in_channels, channels, depth - 1, norm_first=False),
            conv3x3(channels, in_channels),
        )

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``y`` of shape (B, in_channels, H, W); ``sigma`` is ignored (blind)."""
        if y.ndim != 4 or y.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(y.shape)}"
            )
        return y - self.layers(y)

    def receptive_field(self) -> int:
        """Side in pixels of the input square each output pixel depends on: ``2 depth + 1``."""
        return 2 * self.depth + 1
