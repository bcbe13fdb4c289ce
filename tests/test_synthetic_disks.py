"""Disk manifold: images agree with their parameters; prior, frozen coordinates, rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic.disks import (
    DISK_PARAMETERS,
    DiskFamily,
    disk_prior,
    render_disks,
    sample_disk_parameters,
)


def test_area_and_centre_agree_with_parameters():
    f = DiskFamily(size=32, seed=1)
    x = f.images("test", 400)[:, 0].double().numpy()
    theta = f.parameters("test", 400).numpy()
    cx, cy, r, fg, bg = theta.T
    visible = np.abs(fg - bg) > 0.2
    assert visible.sum() > 200
    coverage = (x - bg[:, None, None]) / (fg - bg)[:, None, None]
    coverage = coverage[visible]
    area = coverage.sum(axis=(1, 2))
    rel = area / (np.pi * r[visible] ** 2) - 1
    print(f"area: max relative error {np.abs(rel).max():.4f}")
    assert np.abs(rel).max() < 0.02
    centres = np.arange(32) + 0.5
    mx = (coverage * centres[None, None, :]).sum(axis=(1, 2)) / area
    my = (coverage * centres[None, :, None]).sum(axis=(1, 2)) / area
    err = np.hypot(mx - cx[visible], my - cy[visible])
    print(f"centroid: max error {err.max():.4f} px")
    assert err.max() < 0.1


def test_parameters_render_to_the_images():
    f = DiskFamily(size=24, seed=2, free="cx,r,bg")
    theta = f.parameters("B", 70)
    assert theta.dtype == torch.float64 and theta.shape == (70, 5)
    rendered = torch.from_numpy(render_disks(theta.numpy(), 24)).float()
    assert torch.equal(rendered, f.images("B", 70)[:, 0])
    assert torch.equal(f.parameters("B", 5), theta[:5])


def test_prior_bounds_and_frozen_defaults():
    size = 40
    prior = disk_prior(size)
    np.testing.assert_array_equal(prior.low, [10, 10, 5, 0, 0])
    np.testing.assert_array_equal(prior.high, [30, 30, 10, 1, 1])
    np.testing.assert_array_equal(prior.default, [20, 20, 7.5, 0.8, 0.2])
    theta = DiskFamily(size=size, free=("cy", "cx")).parameters("A", 500).numpy()
    assert DiskFamily(size=size, free=("cy", "cx")).free == ("cx", "cy")
    np.testing.assert_array_equal(theta[:, 2:], np.broadcast_to(prior.default[2:], (500, 3)))
    assert np.all(theta[:, :2] >= 10) and np.all(theta[:, :2] <= 30)
    assert theta[:, :2].std(axis=0).min() > 5  # U[10, 30] has std 5.77
    full = DiskFamily(size=size).parameters("A", 2000).numpy()
    assert np.all(full >= prior.low) and np.all(full <= prior.high)
    # the disk stays inside the image
    assert np.all(full[:, :2] - full[:, 2:3] >= 0) and np.all(full[:, :2] + full[:, 2:3] <= size)
    np.testing.assert_allclose(
        full.mean(axis=0),
        (prior.low + prior.high) / 2,
        atol=4 * ((prior.high - prior.low) / np.sqrt(12 * 2000)).max(),
    )


def test_free_coordinates_do_not_depend_on_the_frozen_ones():
    a = sample_disk_parameters(50, 32, np.random.default_rng(7))
    b = sample_disk_parameters(50, 32, np.random.default_rng(7), free=("r", "fg"))
    np.testing.assert_array_equal(a[:, 2:4], b[:, 2:4])


def test_rendering_limits():
    size = 16
    theta = np.array([[8.0, 8.0, 4.0, 0.9, 0.1], [8.0, 8.0, 0.0, 0.9, 0.1]])
    x = render_disks(theta, size)
    assert x[0, 7, 7] == pytest.approx(0.9) and x[0, 0, 0] == pytest.approx(0.1)
    assert ((x[0] > 0.1 + 1e-9) & (x[0] < 0.9 - 1e-9)).any(), "edge pixels are anti-aliased"
    np.testing.assert_allclose(x[1], 0.1)
    # finer supersampling converges to the exact coverage area pi r^2
    fine = render_disks(theta[:1], size, supersample=64)
    assert (fine[0] - 0.1).sum() / 0.8 == pytest.approx(np.pi * 16, rel=2e-3)


def test_bad_disk_input():
    with pytest.raises(ValueError, match="free disk parameters"):
        DiskFamily(free=())
    with pytest.raises(ValueError, match="free disk parameters"):
        disk_prior(32, free=["rr"])
    with pytest.raises(ValueError, match=r"params must have shape \(n, 5\)"):
        render_disks(np.zeros((3, 4)), 8)
    assert DISK_PARAMETERS == ("cx", "cy", "r", "fg", "bg")
