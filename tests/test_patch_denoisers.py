"""Non-local means and the optional BM3D reference, present or absent."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest
import torch

from models.patch_denoisers import BM3D, NonLocalMeans, bm3d_available
from models.references import build_references
from synthetic import get_family

FAMILY = get_family("cartoons", size=16)


def noisy(sigma: float, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    clean = FAMILY.images("test", n).to(torch.float64)
    noise = torch.randn(
        clean.shape, generator=torch.Generator().manual_seed(seed), dtype=clean.dtype
    )
    return clean, clean + sigma * noise


def fake_bm3d(calls: list) -> types.ModuleType:
    """A stand-in ``bm3d`` module: halves the image and records (sigma, profile)."""
    module = types.ModuleType("bm3d")
    module.__spec__ = importlib.machinery.ModuleSpec("bm3d", None)

    class BM3DProfile:
        num_threads = 0

    def bm3d(image, sigma_psd, profile):
        calls.append((sigma_psd, profile.num_threads))
        return image / 2

    module.BM3DProfile, module.bm3d = BM3DProfile, bm3d
    return module


def test_nlm_denoises_deterministically_with_per_image_sigma():
    clean, y = noisy(0.1)
    nlm = NonLocalMeans()
    out = nlm(y, 0.1)
    assert out.shape == y.shape and out.dtype == y.dtype
    assert torch.equal(out, nlm(y, 0.1))
    assert (out - clean).square().mean() < 0.5 * (y - clean).square().mean()
    sigmas = torch.tensor([0.05, 0.1, 0.2], dtype=y.dtype)
    batched = nlm(y, sigmas)
    for b, s in enumerate(sigmas.tolist()):
        assert torch.equal(batched[b : b + 1], nlm(y[b : b + 1], s))


def test_nlm_refuses_bad_parameters_in_one_line():
    with pytest.raises(ValueError, match="h_factor > 0") as err:
        NonLocalMeans(h_factor=0)
    assert "\n" not in str(err.value)


def test_bm3d_absent_is_left_out_of_the_references_and_named_by_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now fails
    assert not bm3d_available()
    train = FAMILY.images("A", 8)
    references = build_references(FAMILY, train)
    assert "bm3d" not in references and "nlm" in references
    with pytest.raises(ImportError, match=r'pip install -e "\.\[bm3d\]"'):
        BM3D()


def test_bm3d_present_joins_the_references_at_known_sigma_single_threaded(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "bm3d", fake_bm3d(calls))
    assert bm3d_available()
    references = build_references(FAMILY, FAMILY.images("A", 8))
    assert "bm3d" in references
    _, y = noisy(0.1, n=2)
    out = references["bm3d"](y, torch.tensor([0.1, 0.3], dtype=y.dtype))
    torch.testing.assert_close(out, y / 2, rtol=0, atol=0)
    assert calls == [(0.1, 1), (pytest.approx(0.3), 1)]


def test_the_installed_bm3d_denoises_reproducibly():
    pytest.importorskip("bm3d")
    clean, y = noisy(0.1, n=2)
    out = BM3D()(y, 0.1)
    assert torch.equal(out, BM3D()(y, 0.1))
    assert (out - clean).square().mean() < 0.5 * (y - clean).square().mean()
