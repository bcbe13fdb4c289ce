"""The paper's bias-free UNet denoiser and its bias-free batch norm (docs/design.md §9.1).

Reference: Kadkhodaie, Guth, Simoncelli, Mallat, *Generalization in diffusion models arises
from geometry-adaptive harmonic representations*, ICLR 2024; bias-free networks: Mohan,
Kadkhodaie, Simoncelli, Fernandez-Granda, *Robust and interpretable blind image denoising via
bias-free convolutional neural networks*, ICLR 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BiasFreeBatchNorm(nn.Module):
    """Batch norm without additive constants: ``x / sd * gain`` per channel.

    In training ``sd = sqrt(Var_{B,H,W}[x] + eps)`` of the batch and a running average
    ``running_sd <- (1 - momentum) running_sd + momentum sd`` is kept; in eval the running
    value divides. No mean is subtracted and no shift added, so in eval mode the layer is
    linear and the network stays positively homogeneous.

    The gains start small and of random sign, ``N(0, (2/576)**2)`` clipped to +-0.025, as in
    the authors' code, so the untrained network is close to the identity. This matters:
    measured on 32x32 edges (16-channel UNet, 3 blocks, EDM objective, 600 steps of 64),
    gains started at 1 left a network no better than the identity (MSE/sigma^2 of 1.01-1.08
    at sigma 0.01-1); small gains gave 0.08-0.42.

    Parameters
    ----------
    channels : int
        Number of feature channels.
    momentum : float
        Weight of the newest batch in the running standard deviation.
    eps : float
        Added to the variance before the square root (training mode only).
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.gain = nn.Parameter((torch.randn(1, channels, 1, 1) * 2 / 576).clamp(-0.025, 0.025))
        self.register_buffer("running_sd", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # statistics in the module's precision even when autocast hands in bf16
            var = x.to(self.running_sd.dtype).var(dim=(0, 2, 3), keepdim=True, unbiased=False)
            sd = torch.sqrt(var + self.eps)
            with torch.no_grad():
                self.running_sd.lerp_(sd, self.momentum)
        else:
            sd = self.running_sd
        return x / sd * self.gain


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 'same' convolution without bias."""
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def conv_stack(cin: int, cout: int, n: int, norm_first: bool = True) -> list[nn.Module]:
    """``n`` layers conv3x3 -> bias-free batch norm -> ReLU (the first without norm if asked)."""
    layers: list[nn.Module] = []
    for k in range(n):
        layers.append(conv3x3(cin if k == 0 else cout, cout))
        if k > 0 or norm_first:
            layers.append(BiasFreeBatchNorm(cout))
        layers.append(nn.ReLU())
    return layers


class BiasFreeUNet(nn.Module):
    """Bias-free UNet that predicts the noise; ``f(y) = y - net(y)`` is the denoised image.

    Encoder: ``blocks`` levels of ``convs_per_block`` conv3x3-BN-ReLU layers with
    ``channels * 2**level`` channels, each followed by 2x2 average pooling; a middle block of
    ``convs_per_block`` layers at ``channels * 2**blocks``; decoder: per level a 2x2
    stride-2 transposed convolution, concatenation with the encoder output of that level and
    ``convs_per_block`` layers; the top level's last layer is a plain conv3x3 to
    ``in_channels`` (the noise estimate). Every convolution is bias-free and the batch norm
    is :class:`BiasFreeBatchNorm`, so in eval mode ``f(lam y) = lam f(y)`` for ``lam > 0``
    and ``f(y) = J_f(y) y``. As in the authors' code the very first conv has no norm.
    The paper's configuration (64, 3, 2) has 7,659,264 parameters.

    Parameters
    ----------
    channels : int
        Channels at the top level; doubled at each level below.
    blocks : int
        Number of down-sampling levels; H and W must be multiples of ``2**blocks``.
    convs_per_block : int
        3x3 convolutions per encoder, middle and decoder block.
    in_channels : int
        Image channels (1 for grayscale).
    name : str
        Short identifier used in result files.

    References
    ----------
    Kadkhodaie et al., ICLR 2024, Appendix A (network architecture).
    """

    def __init__(
        self,
        channels: int = 64,
        blocks: int = 3,
        convs_per_block: int = 2,
        in_channels: int = 1,
        name: str = "unet",
    ) -> None:
        super().__init__()
        if min(channels, blocks, convs_per_block, in_channels) < 1:
            raise ValueError(
                "channels, blocks, convs_per_block and in_channels must all be >= 1 (got "
                f"{channels}, {blocks}, {convs_per_block}, {in_channels})"
            )
        self.name = name
        self.blocks = blocks
        self.convs_per_block = convs_per_block
        self.in_channels = in_channels
        width = [channels * 2**level for level in range(blocks + 1)]
        self.encoder = nn.ModuleList(
            nn.Sequential(
                *conv_stack(
                    in_channels if b == 0 else width[b - 1],
                    width[b],
                    convs_per_block,
                    norm_first=b > 0,
                )
            )
            for b in range(blocks)
        )
        self.middle = nn.Sequential(*conv_stack(width[-2], width[-1], convs_per_block))
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(width[b + 1], width[b], 2, stride=2, bias=False)
            for b in reversed(range(blocks))
        )
        decoder = []
        for b in reversed(range(blocks)):
            n_hidden = convs_per_block - 1 if b == 0 else convs_per_block
            layers = conv_stack(2 * width[b], width[b], n_hidden)
            if b == 0:
                layers.append(conv3x3(width[0] if n_hidden else 2 * width[0], in_channels))
            decoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(decoder)

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``y`` of shape (B, in_channels, H, W); ``sigma`` is ignored (blind)."""
        factor = 2**self.blocks
        if y.ndim != 4 or y.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(y.shape)}"
            )
        if y.shape[-2] % factor or y.shape[-1] % factor:
            raise ValueError(
                f"image size {tuple(y.shape[-2:])} is not divisible by 2**blocks = {factor}: "
                f"pad or crop the images to a multiple of {factor}, or use fewer blocks"
            )
        x = y
        skips = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.middle(x)
        for up, decode, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            x = decode(torch.cat([up(x), skip], dim=1))
        return y - x

    def receptive_field(self) -> int:
        """Side in pixels of the largest input square any output pixel depends on.

        Propagates, along one axis, the interval of input positions each output position
        depends on (3x3 conv: +-1; 2x2 pooling: output j <- inputs 2j, 2j+1; 2x2 stride-2
        transposed conv: output i <- input floor(i/2); concatenation: union), and takes the
        widest over the ``2**blocks`` output phases. Paper configuration: 100 pixels (92 for
        half of the phases; the paper quotes 90).
        """
        c, depth = self.convs_per_block, self.blocks

        def encoder_input(level: int, lo: int, hi: int) -> tuple[int, int]:
            # level > 0 is fed by 2x2 pooling of the previous encoder's c-conv output
            if level == 0:
                return lo, hi
            return encoder_input(level - 1, 2 * lo - c, 2 * hi + 1 + c)

        def decoder_input(level: int, lo: int, hi: int) -> tuple[int, int]:
            skip = encoder_input(level, lo - c, hi + c)
            below = (lo // 2 - c, hi // 2 + c)
            if level + 1 == depth:
                up = encoder_input(depth, *below)
            else:
                up = decoder_input(level + 1, *below)
            return min(skip[0], up[0]), max(skip[1], up[1])

        spans = [decoder_input(0, i - c, i + c) for i in range(2**depth)]
        return max(hi - lo + 1 for lo, hi in spans)
