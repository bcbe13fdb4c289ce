"""Group averaging: closure, exact equivariance, Jensen, and the families' declared symmetries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from models.symmetrized import SYMMETRIES, Symmetrized, Transform, cycle_spins, symmetry_group
from models.unet import BiasFreeUNet
from synthetic import FAMILY_NAMES, get_family

SIZE = 16


@pytest.fixture
def random_net(calibrate):
    return lambda: calibrate(BiasFreeUNet(channels=4, blocks=2), SIZE)


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIZE, SIZE, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "symmetries, shifts, order",
    [((), 2, 1), (("flip_h",), 2, 2), (("flip_h", "flip_v", "roll_h"), 4, 16), (SYMMETRIES, 2, 16)],
)
def test_group_is_closed_and_has_the_stated_order(symmetries, shifts, order):
    group = symmetry_group(symmetries, SIZE, shifts)
    assert len(group) == order and group[0] == Transform()
    y = images(1)
    actions = [g.apply(y) for g in group]
    assert len({tuple(a.flatten().tolist()) for a in actions}) == order
    for a, b in itertools.product(group, repeat=2):
        composed = a.apply(b.apply(y))
        assert any(torch.equal(composed, c) for c in actions)
        assert torch.equal(a.invert(a.apply(y)), y)


def test_average_is_exactly_equivariant_homogeneous_and_idempotent(random_net):
    group = symmetry_group(("flip_h", "flip_v", "roll_h"), SIZE, 2)
    f = Symmetrized(random_net(), group)
    y = images()
    out = f(y, 0.1)
    for g in group:
        torch.testing.assert_close(f(g.apply(y), 0.1), g.apply(out), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f(2.5 * y, 0.1), 2.5 * out, rtol=1e-10, atol=1e-12)
    # Averaging an equivariant function changes nothing.
    torch.testing.assert_close(Symmetrized(f, group)(y, 0.1), out, rtol=1e-10, atol=1e-12)


def test_average_is_never_worse_than_its_transformed_calls(random_net):
    group = symmetry_group(("flip_h", "roll_h"), SIZE, 4)
    net = random_net()
    x = images(8, seed=1)
    y = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    averaged = (Symmetrized(net, group)(y, 0.2) - x).flatten(1).square().sum(1)
    each = torch.stack([(g.invert(net(g.apply(y))) - x).flatten(1).square().sum(1) for g in group])
    assert torch.all(averaged <= each.mean(0) * (1 + 1e-12))
    assert torch.all(averaged < each.max(0).values)


def test_name_and_bad_input(random_net):
    net = random_net()
    assert Symmetrized(net, symmetry_group(("flip_h",), SIZE)).name == "unet_sym"
    with pytest.raises(ValueError, match="unknown symmetries.*flip_h"):
        symmetry_group(("rotate",), SIZE)
    with pytest.raises(ValueError, match="divisor of the image size 16"):
        symmetry_group(("roll_h",), SIZE, 3)
    with pytest.raises(ValueError, match="identity"):
        Symmetrized(net, [])


def _local_statistics(x: np.ndarray) -> np.ndarray:
    """Per image: the pixels, and squared circular differences to the right and below."""
    dh = (x - np.roll(x, 1, axis=-1)) ** 2
    dv = (x - np.roll(x, 1, axis=-2)) ** 2
    return np.stack([x, dh, dv], axis=1).reshape(len(x), -1)


def _max_paired_z(x: np.ndarray, transform) -> float:
    """Largest |z| over pixels of E s(g x) − E s(x), paired over the same images x."""
    d = _local_statistics(transform(x)) - _local_statistics(x)
    se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
    z = np.abs(d.mean(axis=0)) / np.maximum(se, 1e-12)
    return float(z.max())


def _family_images(name: str, n: int = 3000) -> np.ndarray:
    return get_family(name, size=SIZE).images("A", n)[:, 0].double().numpy()


DECLARED = [
    (name, symmetry)
    for name in FAMILY_NAMES
    if not name.endswith("faces")
    for symmetry in get_family(name, size=SIZE).symmetries
]


@pytest.mark.parametrize("name, symmetry", DECLARED)
def test_declared_symmetries_keep_the_law(name, symmetry):
    # Paired test of the pixels' means and of the local contrasts: 3 SIZE² statistics, so a
    # 5-sigma threshold leaves a false-alarm chance of about 4e-4.
    g = symmetry_group((symmetry,), SIZE, 2)[1]
    x = _family_images(name)
    assert _max_paired_z(x, lambda a: g.apply(torch.from_numpy(a)[:, None])[:, 0].numpy()) < 5


@pytest.mark.parametrize(
    "name, transform",
    [
        ("cartoons", lambda a: np.swapaxes(a, -1, -2)),  # the contour runs left to right
        ("cartoons_gaussian", lambda a: a[:, ::-1]),  # darker below the contour on average
        ("disks", lambda a: np.roll(a, SIZE // 2, axis=-1)),  # the disk stays in the middle
    ],
)
def test_the_invariance_check_sees_a_broken_symmetry(name, transform):
    assert _max_paired_z(_family_images(name), transform) > 10


def test_cycle_spins_are_the_shifts_of_cycle_spinning():
    spins = cycle_spins(3)
    assert [g.shift for g in spins] == [(i, j) for i in range(3) for j in range(3)]
    assert all(g.flip == () for g in spins)
    with pytest.raises(ValueError, match="shifts must be >= 1"):
        cycle_spins(0)
