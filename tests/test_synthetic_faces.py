"""Faces: embedded LFW, the folder loader, near-duplicate removal, splits, shuffled faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import zoom
from skimage import color, io, transform

from synthetic import get_family
from synthetic.faces import (
    FaceFamily,
    ShuffledFaceFamily,
    lfw_faces,
    load_face_folder,
    near_duplicate_mask,
)


def smooth_images(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Independent smooth random images in [0.1, 0.9] (8 × 8 noise, cubic upsampling)."""
    coarse = rng.random((n, 8, 8))
    fine = np.stack([zoom(c, size / 8, order=3) for c in coarse])
    lo = fine.min(axis=(1, 2), keepdims=True)
    hi = fine.max(axis=(1, 2), keepdims=True)
    return 0.1 + 0.8 * (fine - lo) / (hi - lo)


def brute_force_keep(images: np.ndarray, threshold: float) -> np.ndarray:
    """Reference: full correlation matrix on per-image 20 × 20 copies, greedy over kept ones."""
    small = np.stack(
        [transform.resize(im, (20, 20), order=1, anti_aliasing=True) for im in images]
    ).reshape(len(images), -1)
    corr = np.corrcoef(small)
    keep = np.zeros(len(images), dtype=bool)
    for i in range(len(images)):
        keep[i] = not (corr[i, :i][keep[:i]] > threshold).any()
    return keep


def unit_angle_images(rng: np.random.Generator, angles: list[float]) -> np.ndarray:
    """24 × 24 images whose pairwise correlations are cos(angle_i − angle_j) after resizing."""
    u, v = smooth_images(2, 24, rng) - 0.5
    v = v - u * (u * v).sum() / (u * u).sum()  # orthogonal directions of equal norm
    v = v * np.linalg.norm(u) / np.linalg.norm(v)
    return np.stack([0.5 + 0.4 * (np.cos(a) * u + np.sin(a) * v) for a in angles])


def test_lfw_faces():
    faces = lfw_faces()
    assert faces.shape == (100, 25, 25)
    assert faces.min() >= 0 and faces.max() <= 1


def test_near_duplicate_mask_blocks_equal_brute_force():
    rng = np.random.default_rng(0)
    base = smooth_images(40, 24, rng)
    near = base[[3, 3, 17, 30]] + 0.01 * rng.standard_normal((4, 24, 24))
    chain = unit_angle_images(rng, [0.0, 0.2, 0.4])  # cos 0.2 = 0.98, cos 0.4 = 0.92
    images = np.concatenate([base[:20], near[:2], chain, base[20:], near[2:], base[[5, 5]]])
    reference = brute_force_keep(images, 0.95)
    assert (~reference).sum() == 7  # four noisy copies, two exact copies, the chain's middle
    assert reference[22] and not reference[23] and reference[24]  # greedy: compare to kept only
    for block in (1, 3, 7, 1024):
        np.testing.assert_array_equal(near_duplicate_mask(images, 0.95, block), reference)


@pytest.fixture()
def face_folder(tmp_path):
    rng = np.random.default_rng(1)
    img = smooth_images(6, 48, rng)
    chain = unit_angle_images(rng, [0.0, 0.2, 0.4])

    def save(name, array):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
        io.imsave(path, pixels, check_contrast=False)

    rgb = np.stack([img[1], 0.5 * img[1] + 0.2, img[1] ** 2], axis=-1)
    wide = np.concatenate([np.zeros((48, 8, 3)), rgb, np.ones((48, 8, 3))], axis=1)
    save("a.png", img[0])
    save("b.png", wide)  # RGB, 48 × 64: the centre crop is the 48 × 48 middle
    save("c.jpg", transform.resize(img[2], (40, 40)))
    save("d_copy.png", img[0])
    save("e_near.png", np.clip(wide + 0.01 * rng.standard_normal(wide.shape), 0, 1))
    save("f.png", np.dstack([img[3], img[3], img[3], np.full((48, 48), 0.5)]))  # RGBA
    save("i.png", chain[0])
    save("j.png", chain[1])
    save("k.png", chain[2])
    save("sub/g.png", transform.resize(img[4], (32, 32)))
    save("sub/h.bmp", img[5])
    save("sub/h_big.tif", transform.resize(img[5], (96, 96)))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


KEPT = ["a.png", "b.png", "c.jpg", "f.png", "i.png", "k.png", "sub/g.png", "sub/h.bmp"]


def test_folder_loader(face_folder):
    images, names = load_face_folder(face_folder, 24)
    assert names == KEPT
    assert images.shape == (8, 24, 24) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    again, names_again = load_face_folder(face_folder, 24)
    assert names_again == names and np.array_equal(again, images)
    # b.png: grayscale, centre crop, anti-aliased resize
    gray = color.rgb2gray(io.imread(face_folder / "b.png") / 255.0)[:, 8:56]
    expected = transform.resize(gray, (24, 24), order=1, anti_aliasing=True)
    np.testing.assert_allclose(images[1], expected, atol=1e-6)
    assert load_face_folder(face_folder, 10)[0].shape == (8, 10, 10)


def test_face_family_from_folder(face_folder):
    f = get_family("faces", size=16, folder=str(face_folder), holdout=2)
    assert sorted(f.order) == sorted(KEPT)
    assert f.capacity("test") == 2 and f.capacity("A") == 3 and f.capacity("B") == 3
    assert f.sources("test", 2) == f.order[:2]
    assert f.sources("A", 3) == f.order[2:5]
    assert f.sources("B", 3) == f.order[::-1][:3]
    with pytest.raises(ValueError, match="at most 3 images in part 'A'"):
        f.images("A", 4)
    assert f.images("B", 3).shape == (3, 1, 16, 16)
    assert get_family("faces", folder=str(face_folder)).size == 80
    with pytest.raises(ValueError, match="pass holdout <= 6"):
        FaceFamily(folder=str(face_folder), size=8, holdout=7)


def test_missing_or_empty_folder(tmp_path):
    for folder in (tmp_path / "nope", tmp_path):
        with pytest.raises(FileNotFoundError, match=f"faces folder {folder} .*--faces-dir"):
            load_face_folder(folder, 16)
    with pytest.raises(FileNotFoundError, match="embedded LFW subset"):
        get_family("faces", folder=str(tmp_path / "nope"))


def test_lfw_family_split():
    f = FaceFamily()
    total = len(f.order)
    assert f.size == 24 and f.holdout == total // 5
    assert f.capacity("A") == (total - f.holdout) // 2
    n = f.capacity("A")
    a, b, t = (set(f.sources(p, f.capacity(p))) for p in ("A", "B", "test"))
    assert len(a) == len(b) == n and not a & b and not (a | b) & t
    assert f.sources("A", n) == f.order[f.holdout : f.holdout + n]
    assert f.sources("B", n) == f.order[::-1][:n]
    # the image content follows the recorded order
    index = int(f.sources("B", 1)[0].split("[")[1].rstrip("]"))
    np.testing.assert_allclose(
        f.images("B", 1)[0, 0].numpy(), lfw_faces()[index, :24, :24], atol=1e-7
    )
    assert FaceFamily(seed=1).order != f.order
    assert FaceFamily(size=32).images("test", 2).shape == (2, 1, 32, 32)


def test_shuffled_faces_invert_exactly():
    s = ShuffledFaceFamily(seed=5)
    faces = FaceFamily(seed=5)
    x = faces.images("A", 10)
    assert torch.equal(s.images("A", 10), s.shuffle(x))
    assert torch.equal(s.unshuffle(s.images("A", 10)), x)
    assert torch.equal(s.unshuffle(s.shuffle(x)), x)
    y = np.random.default_rng(0).random((3, 2, 24, 24))
    assert np.array_equal(s.unshuffle(s.shuffle(y)), y)
    assert np.array_equal(np.sort(s.permutation), np.arange(24 * 24))
    assert not np.array_equal(s.permutation, np.arange(24 * 24))
    assert np.array_equal(ShuffledFaceFamily(seed=5).permutation, s.permutation)
    assert not np.array_equal(ShuffledFaceFamily(seed=6).permutation, s.permutation)
    # one permutation for every image: pixel p of each shuffled image is pixel perm[p]
    flat = x.reshape(10, -1)
    assert torch.equal(s.images("A", 10).reshape(10, -1), flat[:, s.permutation])
    with pytest.raises(ValueError, match=r"expected images of shape \(\.\.\., 24, 24\)"):
        s.shuffle(torch.zeros(2, 1, 8, 8))
