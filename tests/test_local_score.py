"""LS and ELS machines against brute force, closed forms, the memorizer and symmetries."""

from __future__ import annotations

import math

import pytest
import torch

import models.local_score as local_score
from models.local_score import (
    LocalScoreMachine,
    calibrate_patch_sizes,
    check_patch,
    local_posterior_mean,
    nearest_level,
    r_squared,
)
from models.memorizer import Memorizer


def _images(n: int, height: int, width: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, height, width or height, generator=g, dtype=torch.float64)


def _noisy(train: torch.Tensor, b: int, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return train[:b] + sigma * torch.randn(train[:b].shape, generator=g, dtype=train.dtype)


def _patch(x: torch.Tensor, r: int, c: int, patch: int, padding: str) -> list[float]:
    """The patch of the 2-D image x centred at (r, c), written out pixel by pixel."""
    h, w = x.shape
    out = []
    for dr in range(-(patch // 2), patch // 2 + 1):
        for dc in range(-(patch // 2), patch // 2 + 1):
            rr, cc = r + dr, c + dc
            if padding == "circular":
                out.append(float(x[rr % h, cc % w]))
            else:
                out.append(float(x[rr, cc]) if 0 <= rr < h and 0 <= cc < w else 0.0)
    return out


def _brute_force(y, train, sigma, patch, equivariant, padding) -> torch.Tensor:
    """The posterior means by a loop over output pixels i, training images n and locations j."""
    _, _, h, w = y.shape
    out = torch.empty_like(y)
    for b in range(y.shape[0]):
        for r in range(h):
            for c in range(w):
                query = torch.tensor(_patch(y[b, 0], r, c, patch, padding), dtype=y.dtype)
                logits, centres = [], []
                for x in train[:, 0]:
                    sites = [(rr, cc) for rr in range(h) for cc in range(w)]
                    for rr, cc in sites if equivariant else [(r, c)]:
                        key = torch.tensor(_patch(x, rr, cc, patch, padding), dtype=y.dtype)
                        logits.append(-(query - key).square().sum() / (2 * sigma**2))
                        centres.append(x[rr, cc])
                weights = torch.softmax(torch.stack(logits), 0)
                out[b, 0, r, c] = (weights * torch.stack(centres)).sum()
    return out


@pytest.mark.parametrize("blocks", ["default", "tiny"])
@pytest.mark.parametrize("padding,patch", [("zeros", 3), ("zeros", 5), ("circular", 3)])
def test_machines_match_brute_force(monkeypatch, blocks, padding, patch):
    if blocks == "tiny":  # many blocks and query chunks: exercises the online log-sum-exp
        monkeypatch.setattr(local_score, "_BLOCK", 7)
        monkeypatch.setattr(local_score, "_QUERY_CHUNK", 4)
    train = _images(3, 5)
    y = _noisy(_images(2, 5, seed=5), 2, 0.2)
    for equivariant in (True, False):
        got = local_posterior_mean(y, train, 0.3, patch, equivariant, padding)
        expected = _brute_force(y, train, 0.3, patch, equivariant, padding)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_ls_with_one_pixel_patch_is_the_pixelwise_posterior_mean():
    train = _images(6, 4)
    y = _noisy(train, 3, 0.2)
    sigma = 0.15
    logits = -(y[:, None] - train[None]).square() / (2 * sigma**2)  # (B, n, 1, H, W)
    expected = (torch.softmax(logits, 1) * train[None]).sum(1)
    for padding in ("zeros", "circular"):
        got = local_posterior_mean(y, train, sigma, 1, equivariant=False, padding=padding)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
@pytest.mark.parametrize("padding,patch", [("zeros", 9), ("circular", 5)])
def test_ls_with_full_patch_is_the_memorizer(sigma, padding, patch):
    # Every P_i then sees the whole image (under circular padding, circularly shifted by the
    # same amount in y and x_n), so ||P_i y - P_i x_n|| = ||y - x_n|| at every pixel.
    train = _images(7, 5)
    y = _noisy(train, 3, sigma)
    got = local_posterior_mean(y, train, sigma, patch, equivariant=False, padding=padding)
    torch.testing.assert_close(got, Memorizer(train)(y, sigma), rtol=0, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_circular_els_with_full_patch_is_the_memorizer_of_all_circular_shifts(sigma):
    # With P = side (odd) under circular padding, P_j x_n is x_n rolled so that j is the
    # centre, hence ||P_i y - P_j x_n|| = ||y - roll(x_n, i - j)|| and the weight of
    # (n, j) at pixel i is the memorizer's weight of roll(x_n, i - j), whose pixel i is x_n[j].
    train = _images(3, 5)
    shifts = [(a, b) for a in range(5) for b in range(5)]
    augmented = torch.cat([torch.roll(train, s, dims=(2, 3)) for s in shifts])
    y = _noisy(train, 2, sigma)
    got = local_posterior_mean(y, train, sigma, 5, equivariant=True, padding="circular")
    torch.testing.assert_close(got, Memorizer(augmented)(y, sigma), rtol=0, atol=1e-10)


def test_zero_padded_els_with_full_patch_is_the_memorizer_near_a_training_image():
    # Under zero padding, P = 2 side - 1 compares y with zero-filled shifts of every x_n, which
    # the memorizer does not see; it agrees with the memorizer only where those shifts are
    # negligible: y within a few sigma of a training image that its shifts are far from.
    train = _images(4, 5)
    y = _noisy(train, 4, 0.05)
    got = local_posterior_mean(y, train, 0.05, 9, equivariant=True, padding="zeros")
    torch.testing.assert_close(got, Memorizer(train)(y, 0.05), rtol=0, atol=1e-6)


def test_circular_els_is_translation_equivariant():
    train = _images(4, 6, 7)
    y = _noisy(_images(2, 6, 7, seed=3), 2, 0.2)
    machine = LocalScoreMachine(train, 3, padding="circular")
    for shift in [(1, 0), (0, 3), (2, 5)]:
        rolled = machine(torch.roll(y, shift, dims=(2, 3)), 0.2)
        expected = torch.roll(machine(y, 0.2), shift, dims=(2, 3))
        torch.testing.assert_close(rolled, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("equivariant", [True, False])
def test_sigma_tensor_equals_per_image_calls(equivariant):
    train = _images(5, 6)
    y = _noisy(train, 4, 0.2)
    sigma = torch.tensor([0.1, 0.6, 0.1, 0.3], dtype=torch.float64)
    machine = LocalScoreMachine(train, {0.1: 1, 0.5: 3}, equivariant=equivariant)
    assert [machine.patch_for(float(s)) for s in sigma] == [1, 3, 1, 3]
    expected = torch.cat([machine(y[i : i + 1], float(sigma[i])) for i in range(4)])
    torch.testing.assert_close(machine(y, sigma), expected, rtol=0, atol=0)
    assert machine.name == ("els" if equivariant else "ls")


def test_patch_rules_and_nearest_level():
    assert nearest_level([0.01, 0.1, 1.0], 0.2) == 0.1  # |log 2| < |log 5|
    assert nearest_level([0.01, 0.1, 1.0], 0.5) == 1.0
    assert nearest_level({0.1: 3, 0.4: 5}, 0.2) == 0.1  # a tie in log sigma: the smaller
    train = _images(2, 5)
    assert LocalScoreMachine(train, lambda s: 5 if s < 0.1 else 3).patch_for(0.05) == 5
    assert LocalScoreMachine(train, 7).patch_for(0.3) == 7
    with pytest.raises(ValueError, match="odd integer"):
        LocalScoreMachine(train, lambda s: 4).patch_for(0.1)


@pytest.mark.parametrize("equivariant", [True, False])
@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_pixel_subset_equals_the_full_output(equivariant, padding):
    train = _images(4, 6)
    y = _noisy(train, 3, 0.2)
    pixels = torch.tensor([0, 35, 7, 7, 20])
    full = local_posterior_mean(y, train, 0.2, 3, equivariant, padding)
    part = local_posterior_mean(y, train, 0.2, 3, equivariant, padding, pixels=pixels)
    torch.testing.assert_close(part, full.reshape(3, -1)[:, pixels], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "patch,padding,match",
    [
        (4, "zeros", "odd integer"),
        (0, "zeros", "odd integer"),
        (-1, "circular", "odd integer"),
        (3.0, "zeros", "odd integer"),
        (11, "zeros", "pass an odd P <= 9"),
        (7, "circular", "pass an odd P <= 5"),
        (3, "reflect", "padding must be one of"),
    ],
)
def test_bad_patch_or_padding_fails_with_one_line(patch, padding, match):
    train = _images(2, 5)
    calls = [
        lambda: check_patch(patch, 5, padding),
        lambda: local_posterior_mean(train, train, 0.1, patch, padding=padding),
        lambda: LocalScoreMachine(train, patch, padding=padding),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_gradient_matches_finite_differences():
    train = _images(3, 4)
    y = _noisy(train, 1, 0.2)
    sigma, patch = 0.3, 3
    machine = LocalScoreMachine(train, patch)
    y_in = y.clone().requires_grad_(True)
    out = machine(y_in, sigma)
    torch.testing.assert_close(out.detach(), machine(y, sigma), rtol=0, atol=1e-14)
    weights = _images(1, 4, seed=9)
    (grad,) = torch.autograd.grad((out * weights).sum(), y_in)
    step = torch.zeros_like(y)
    step[0, 0, 1, 2] = 1e-6
    diff = ((machine(y + step, sigma) - machine(y - step, sigma)) * weights).sum() / 2e-6
    assert float(grad[0, 0, 1, 2]) == pytest.approx(float(diff), rel=1e-6, abs=1e-9)


def test_r_squared_convention():
    target = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    assert r_squared(target, target) == 1.0
    assert r_squared(torch.full_like(target, 3.0), target) == pytest.approx(0.0, abs=1e-15)
    noisy = target + torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    assert r_squared(noisy, target) == pytest.approx(1 - 2 / 14)
    with pytest.raises(ValueError, match="constant target"):
        r_squared(target, torch.ones_like(target))


def test_calibration_recovers_the_patch_size_of_an_els_network():
    train = _images(6, 8)
    clean = _images(3, 8, seed=4)
    network = LocalScoreMachine(train, 3)
    out = calibrate_patch_sizes(network, train, clean, [0.1, 0.4], (1, 3, 5), pixels_per_image=16)
    assert list(out) == [0.1, 0.4]
    for result in out.values():
        assert result["patch"] == 3
        assert set(result["r2"]) == {1, 3, 5}
        assert result["r2"][3] == pytest.approx(1.0, abs=1e-12)
        assert max(result["r2"][1], result["r2"][5]) < 0.999
    assert math.isfinite(out[0.1]["r2"][1])


def test_calibration_with_patience_stops_past_the_peak_and_keeps_its_numbers():
    train = _images(6, 8)
    clean = _images(3, 8, seed=4)
    network = LocalScoreMachine(train, 3)
    candidates = (1, 3, 5, 7, 9)
    full = calibrate_patch_sizes(network, train, clean, [0.1], candidates, pixels_per_image=16)
    early = calibrate_patch_sizes(
        network, train, clean, [0.1], candidates, pixels_per_image=16, patience=1
    )
    assert list(early[0.1]["r2"]) == [1, 3, 5]  # 5 falls short of 3: one in a row is enough
    assert early[0.1]["patch"] == full[0.1]["patch"] == 3
    assert all(early[0.1]["r2"][p] == full[0.1]["r2"][p] for p in early[0.1]["r2"])
    with pytest.raises(ValueError, match="patience must be >= 1"):
        calibrate_patch_sizes(network, train, clean, [0.1], candidates, patience=0)
