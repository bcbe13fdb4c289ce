"""Bias-free networks: homogeneity, f(y) = J y, parameter count, receptive field, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from models.bfcnn import BFCNN
from models.unet import BiasFreeUNet


def unet_param_count(c: int, blocks: int, convs: int) -> int:
    """Closed-form count for the architecture of docs/design.md §9.1 (independent of the module)."""
    w = [c * 2**b for b in range(blocks + 1)]
    total = 9 * (w[0] + (convs - 1) * w[0] ** 2) + (convs - 1) * w[0]  # first conv: no norm
    for b in range(1, blocks + 1):  # encoders below the top, then the middle block
        total += 9 * (w[b - 1] * w[b] + (convs - 1) * w[b] ** 2) + convs * w[b]
    for b in range(blocks):
        total += 4 * w[b + 1] * w[b]  # 2x2 transposed conv
        hidden = convs if b else convs - 1
        if hidden:
            total += 9 * (2 * w[b] * w[b] + (hidden - 1) * w[b] ** 2) + hidden * w[b]
    return total + 9 * w[0] * (1 if convs > 1 else 2)  # the output conv


@pytest.mark.parametrize("lam", [0.5, 3.0])
@pytest.mark.parametrize(
    "net", [BiasFreeUNet(channels=6, blocks=2), BFCNN(depth=5, channels=6)], ids=["unet", "bfcnn"]
)
def test_homogeneous_in_eval_mode(net, lam, calibrate):
    net = calibrate(net, 16)
    y = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out, scaled = net(y), net(lam * y)
    assert out.abs().max() > 0.1
    assert torch.allclose(scaled, lam * out, rtol=1e-10, atol=0)
    assert (scaled - lam * out).norm() / (lam * out).norm() < 1e-12


def test_unet_equals_its_jacobian_times_input(calibrate):
    net = calibrate(BiasFreeUNet(channels=4, blocks=2), 8)
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    jac = jacobian(lambda v: net(v.view(1, 1, 8, 8)).ravel(), y.ravel(), vectorize=True)
    out = net(y).ravel()
    assert jac.shape == (64, 64)
    assert torch.allclose(jac @ y.ravel(), out, rtol=1e-10, atol=1e-12)
    # and not trivially: the network is far from the identity and from linear
    assert (jac - torch.eye(64, dtype=torch.float64)).abs().max() > 1e-2
    y2 = y.flip(-1)
    jac2 = jacobian(lambda v: net(v.view(1, 1, 8, 8)).ravel(), y2.ravel(), vectorize=True)
    assert (jac2 - jac).abs().max() > 1e-3


def test_paper_unet_parameter_count():
    net = BiasFreeUNet()  # channels 64, blocks 3, 2 convs per block
    count = sum(p.numel() for p in net.parameters())
    assert count == unet_param_count(64, 3, 2) == 7_659_264
    assert abs(count - 7.6e6) / 7.6e6 < 0.01  # the paper quotes 7.6 M
    for c, b, k in [(4, 1, 1), (8, 2, 3), (5, 4, 2)]:
        small = BiasFreeUNet(channels=c, blocks=b, convs_per_block=k)
        assert sum(p.numel() for p in small.parameters()) == unet_param_count(c, b, k)
    assert not any(m.bias is not None for m in net.modules() if hasattr(m, "bias"))


def gradient_boxes(net: torch.nn.Module, size: int, positions: range) -> list[tuple[int, int]]:
    """For each output pixel (i, i): the row and column width of the input support of its
    gradient, asserting the support is a full rectangle containing the pixel."""
    g = torch.Generator().manual_seed(3)
    y = torch.rand(6, 1, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    out = net(y)
    boxes = []
    for i in positions:
        (grad,) = torch.autograd.grad(out[:, 0, i, i].sum(), y, retain_graph=True)
        support = grad.abs().sum(dim=(0, 1)) > 0
        rows = torch.nonzero(support.any(1)).ravel()
        cols = torch.nonzero(support.any(0)).ravel()
        assert rows[0] > 0 and cols[0] > 0 and rows[-1] < size - 1 and cols[-1] < size - 1
        assert support[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert rows[0] <= i <= rows[-1]
        boxes.append((int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)))
    return boxes


@pytest.mark.parametrize(("blocks", "widths"), [(2, {44}), (3, {92, 100})])
def test_unet_receptive_field_matches_gradient_support(blocks, widths, calibrate):
    # the receptive field depends on blocks and convs only; 8 channels keep this cheap
    net = calibrate(BiasFreeUNet(channels=8, blocks=blocks), 16)
    size = 128
    assert net.receptive_field() == max(widths)
    # every phase of the output pixel in the 2**blocks grid; with 3 blocks the support
    # is 92 or 100 pixels wide depending on the phase (the paper quotes 90)
    boxes = gradient_boxes(net, size, range(size // 2, size // 2 + 2**blocks))
    assert {w for box in boxes for w in box} == widths


def test_bfcnn_receptive_field_matches_gradient_support(calibrate):
    net = calibrate(BFCNN(depth=6, channels=6), 16)
    assert net.receptive_field() == 13
    assert gradient_boxes(net, 24, range(11, 13)) == [(13, 13), (13, 13)]


def test_networks_follow_the_denoiser_protocol():
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    for net in (BiasFreeUNet(channels=4, blocks=2).eval(), BFCNN(depth=3, channels=4).eval()):
        assert net.name in ("unet", "bfcnn")
        with torch.no_grad():
            assert torch.equal(net(y, 0.1), net(y))
            assert torch.equal(net(y, torch.full((2,), 0.3)), net(y))


def test_unet_size_not_divisible_fails_clearly():
    net = BiasFreeUNet(channels=4, blocks=3)
    with pytest.raises(ValueError, match=r"not divisible by 2\*\*blocks = 8: pad or crop"):
        net(torch.rand(1, 1, 20, 16))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, H, W\)"):
        net(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="must all be >= 1"):
        BiasFreeUNet(blocks=0)
    with pytest.raises(ValueError, match="need depth >= 2"):
        BFCNN(depth=1)


def test_untrained_networks_start_near_the_identity():
    # small batch-norm gains (the authors' init): the residual starts ~1e-3 of the image
    y = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    for net in (BiasFreeUNet(channels=8, blocks=2), BFCNN(depth=5, channels=8)):
        with torch.no_grad():
            residual = net.train()(y) - y
        assert 0 < residual.norm() < 0.02 * y.norm()
