"""The contract every image family keeps: determinism, prefixes, splits, registry, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from synthetic import FAMILY_NAMES, get_family

# Small but non-default settings; generated families cross a chunk boundary (64) below.
CONFIGS = {
    "cartoons": {"size": 16, "alpha": 1.5},
    "cartoons_gaussian": {"size": 16, "alpha": 1.5},
    "disks": {"size": 16},
    "gaussian": {"size": 16, "gamma": 1.0},
    "faces": {},
    "shuffled_faces": {},
}
IN_UNIT_RANGE = ("cartoons", "disks", "faces", "shuffled_faces")


def family(name: str, seed: int = 0):
    return get_family(name, seed=seed, **CONFIGS[name])


def test_every_family_is_configured():
    assert set(CONFIGS) == set(FAMILY_NAMES)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_shape_dtype_and_range(name):
    f = family(name)
    n = min(70, f.capacity("A"))
    x = f.images("A", n)
    assert x.dtype == torch.float32
    assert x.shape == (n, 1, f.size, f.size)
    assert torch.isfinite(x).all()
    if name in IN_UNIT_RANGE:
        assert x.min() >= 0 and x.max() <= 1
    assert f.images("test", 0).shape == (0, 1, f.size, f.size)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_seed_determines_images(name):
    a = family(name, seed=3)
    again = family(name, seed=3)
    other = family(name, seed=4)
    for part in ("A", "B", "test"):
        n = min(10, a.capacity(part))
        assert torch.equal(a.images(part, n), again.images(part, n))
        assert not torch.equal(a.images(part, n), other.images(part, n))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_prefix_consistency(name):
    f = family(name)
    for part in ("A", "B", "test"):
        big = min(130, f.capacity(part))
        x = f.images(part, big)
        for n in (1, 10, big // 2, big - 1):
            assert torch.equal(f.images(part, n), x[:n])


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_parts_share_no_image(name):
    f = family(name)
    rows = {}
    for part in ("A", "B", "test"):
        n = min(100, f.capacity(part))
        x = f.images(part, n).reshape(n, -1).numpy()
        rows[part] = {r.tobytes() for r in x}
        assert len(rows[part]) == n, f"repeated image inside part {part}"
    assert not rows["A"] & rows["B"]
    assert not rows["A"] & rows["test"]
    assert not rows["B"] & rows["test"]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_params_are_json_and_rebuild_the_family(name):
    f = family(name, seed=2)
    params = json.loads(json.dumps(f.params))
    assert params["name"] == name and params["seed"] == 2 and params["size"] == f.size
    rebuilt = get_family(**params)
    assert rebuilt.params == f.params
    assert torch.equal(rebuilt.images("B", 5), f.images("B", 5))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_bad_requests(name):
    f = family(name)
    with pytest.raises(ValueError, match="unknown part 'C'; choose one of: A, B, test"):
        f.images("C", 1)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        f.images("A", -1)
    with pytest.raises(ValueError, match="n must be an integer"):
        f.images("A", 2.5)


def test_generated_families_are_infinite_and_finite_ones_say_their_maximum():
    for name in ("cartoons", "disks", "gaussian"):
        assert family(name).capacity("A") == math.inf
    f = family("faces")
    top = f.capacity("A")
    assert 2 * top <= len(f.order) - f.capacity("test")
    with pytest.raises(ValueError, match=f"at most {top} images in part 'A'"):
        f.images("A", top + 1)
    with pytest.raises(ValueError, match=f"at most {f.capacity('test')} images in part 'test'"):
        f.images("test", f.capacity("test") + 1)


def test_registry_names_and_defaults():
    assert FAMILY_NAMES == (
        "cartoons",
        "cartoons_gaussian",
        "disks",
        "faces",
        "gaussian",
        "shuffled_faces",
    )
    for name in ("cartoons", "disks", "gaussian"):
        assert get_family(name).size == 32
    assert get_family("faces").size == 24
    assert get_family("cartoons").params["beta"] == 2.0
    assert get_family("cartoons", size=8).images("A", 2).shape == (2, 1, 8, 8)


def test_registry_rejects_bad_input():
    with pytest.raises(
        ValueError,
        match="unknown family 'x'; choose one of: cartoons, cartoons_gaussian, disks, faces, "
        "gaussian, shuffled_faces",
    ):
        get_family("x")
    with pytest.raises(ValueError, match="unknown parameter.* gamma for family 'cartoons'"):
        get_family("cartoons", gamma=1.0)
    for alpha in (0, -1.0, float("nan"), "two"):
        with pytest.raises(ValueError, match="alpha must be > 0"):
            get_family("cartoons", alpha=alpha)
    with pytest.raises(ValueError, match="beta must be > 0"):
        get_family("cartoons", beta=0.0)
    with pytest.raises(ValueError, match="cartoon size must be even"):
        get_family("cartoons", size=15)
    with pytest.raises(ValueError, match="free disk parameters must be a non-empty subset"):
        get_family("disks", free=("cx", "radius"))
    with pytest.raises(ValueError, match="std must be > 0"):
        get_family("gaussian", std=0.0)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        get_family("disks", size=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        get_family("disks", seed=-1)


def test_images_are_independent_of_request_history():
    f = get_family("cartoons", size=16)
    first = f.images("test", 3)
    f.images("A", 200)
    f.images("B", 7)
    assert torch.equal(f.images("test", 3), first)
    assert np.array_equal(first.numpy(), get_family("cartoons", size=16).images("test", 3).numpy())
