"""Every registered denoiser, called through the protocol on every family it serves.

A typing protocol cannot check behaviour, so this test does: ``f(y, sigma)`` with a float
and with a per-image tensor σ returns a finite tensor of y's shape, dtype and device, has a
string ``name``, gives image b from image b alone, and takes the per-image σ row by row.
"""

from __future__ import annotations

import pytest
import torch

from models.bandlets import BandletThreshold
from models.references import REFERENCES, build_optimum, build_references, cycle_spun
from models.symmetrized import Symmetrized, symmetry_group
from models.training import NETWORKS
from synthetic import FAMILY_NAMES, get_family

SIZE = 16
N = 3


def _family(name: str):
    return get_family(name, size=SIZE, seed=5)


def _denoisers(family) -> dict:
    train = family.images("A", min(40, family.capacity("A")))
    out = dict(build_references(family, train))
    optimum = build_optimum(family, train, N)
    if optimum is not None:
        out[f"optimum:{optimum.name}"] = optimum
    for name, cls in NETWORKS.items():
        net = cls(name=name).eval() if name == "bfcnn" else cls(channels=4, blocks=2).eval()
        out[name] = net
        out[f"{name}_sym"] = Symmetrized(net, symmetry_group(("flip_h", "roll_h"), SIZE, 2))
    out["bandlet"] = BandletThreshold(max_square=8)
    out["ti_bandlet"] = cycle_spun(BandletThreshold(max_square=8), 2)
    return out


def _check(f, y: torch.Tensor) -> None:
    assert isinstance(f.name, str) and f.name
    with torch.no_grad():
        out = f(y, 0.1)
        assert out.shape == y.shape and out.dtype == y.dtype and out.device == y.device
        assert torch.isfinite(out).all()
        # image b depends on image b only
        changed = y.clone()
        changed[1:] = changed[1:].flip(-1) + 0.05
        torch.testing.assert_close(f(changed, 0.1)[0], out[0], rtol=1e-5, atol=1e-6)
        # a per-image sigma acts row by row
        sigma = torch.tensor([0.1, 0.3, 0.05])
        per_image = f(y, sigma)
        assert per_image.shape == y.shape and torch.isfinite(per_image).all()
        torch.testing.assert_close(per_image[0], out[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_denoiser_follows_the_protocol_on_every_family(name):
    family = _family(name)
    clean = family.images("test", N)
    y = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(6))
    denoisers = _denoisers(family)
    for key, f in denoisers.items():
        try:
            _check(f, y)
        except AssertionError as err:
            raise AssertionError(f"{key} on {name}: {err}") from err


def test_every_registered_reference_is_declared_by_some_family():
    declared = {ref for name in FAMILY_NAMES for ref in _family(name).references}
    assert declared == set(REFERENCES)


def test_families_declare_buildable_references_and_a_consistent_optimum():
    for name in FAMILY_NAMES:
        family = _family(name)
        refs = build_references(family, family.images("A", 8))
        optimum = family.optimum
        assert optimum.kl_kind in ("exact", "upper_bound", "estimate")
        if optimum.kind == "exact":
            # an exact optimum is one of the family's usable references
            assert optimum.reference in family.references
            assert build_optimum(family, family.images("A", 8), N).name in refs
        assert all(f.name for f in refs.values())
