"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from models.unet import BiasFreeBatchNorm


def _calibrated(net: torch.nn.Module, size: int, seed: int = 0) -> torch.nn.Module:
    """``net`` in float64 eval mode after a few training-mode passes set its running sd.

    Random gains and running scales make every batch-norm layer act (a fresh network's
    gains of 1 and scales of 1 would hide a layer that ignores them).
    """
    g = torch.Generator().manual_seed(seed)
    net = net.double().train()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, BiasFreeBatchNorm):
                module.gain.uniform_(0.5, 1.5, generator=g)
        for _ in range(3):
            net(torch.rand(4, 1, size, size, generator=g, dtype=torch.float64))
    return net.eval()


@pytest.fixture
def calibrate() -> Callable[..., torch.nn.Module]:
    """``calibrate(net, size, seed=0)``: the network in float64 eval mode with set scales."""
    return _calibrated
