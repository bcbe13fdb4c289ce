"""Face images, embedded (LFW subset) or from a folder (e.g. CelebA), and shuffled faces.

Faces are grayscale, centre-cropped to a square and resized with anti-aliasing;
near-duplicates (Pearson correlation > 0.95 on a 20 × 20 copy) are removed greedily in a
recorded order (docs/design.md §5.6). The shuffled family applies one fixed pixel permutation to
every face: a permutation-invariant denoiser scores the same on both, a convolutional
network does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from skimage import color, data, io, transform, util

from synthetic.family import Family, check_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
THUMBNAIL = 20
LFW_SIZE = 24  # the embedded 25 × 25 faces, centre-cropped to an even side
FOLDER_SIZE = 80  # the paper's CelebA resolution

Images = TypeVar("Images", np.ndarray, torch.Tensor)


def lfw_faces() -> np.ndarray:
    """The 100 faces of ``skimage.data.lfw_subset()`` (the other 100 images are not faces).

    Returns
    -------
    ndarray, shape (100, 25, 25), float64 in [0, 1]
    """
    return data.lfw_subset()[:100]


def _resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, h, w)`` to ``(N, size, size)``, anti-aliased, without mixing images."""
    if images.shape[1:] == (size, size):
        return images.astype(float)
    out = transform.resize(images, (len(images), size, size), order=1, anti_aliasing=True)
    return out


def _centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def _read_gray(path: Path) -> np.ndarray:
    """Read one image file as a float grayscale array in [0, 1]; drop any alpha channel."""
    try:
        image = io.imread(path)
    except Exception as err:  # the readers raise many unrelated types
        raise ValueError(f"cannot read image {path}: {err}; remove or replace the file") from err
    image = util.img_as_float(image)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[-1] == 3:
        image = color.rgb2gray(image)
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"image {path} has shape {image.shape}; expected a 2-D gray or RGB image")
    return image


def _thumbnails(images: np.ndarray) -> np.ndarray:
    """Mean-removed, unit-norm ``THUMBNAIL²`` vectors, so dot products are Pearson correlations.

    A constant image maps to the zero vector (correlation 0 with everything).
    """
    z = _resize_stack(np.asarray(images, dtype=float), THUMBNAIL).reshape(len(images), -1)
    z = z - z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)


def near_duplicate_mask(
    images: np.ndarray, threshold: float = 0.95, block: int = 1024
) -> np.ndarray:
    """Greedy near-duplicate removal: keep an image unless it matches an earlier kept one.

    Image i is kept when its Pearson correlation (mean-removed, normalised) with every kept
    image j < i is <= ``threshold``, both taken on anti-aliased 20 × 20 copies. So the first
    image of each group survives, and an image matching only removed images survives.
    Images are processed ``block`` at a time against the kept ones ``block`` at a time:
    beyond the kept 20 × 20 copies, memory is O(block²), not O(N²).

    Parameters
    ----------
    images : ndarray, shape (N, h, w)
    threshold : float
        Correlation above which two images are duplicates (docs/design.md §5.6: 0.95).
    block : int
        Images per block.

    Returns
    -------
    ndarray of bool, shape (N,)
        True for the images to keep.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, h, w), got {images.shape}")
    block = check_int("block", block, 1)
    keep = np.zeros(len(images), dtype=bool)
    kept: list[np.ndarray] = []
    for start in range(0, len(images), block):
        z = _thumbnails(images[start : start + block])
        matched = np.zeros(len(z), dtype=bool)
        for previous in kept:
            matched |= (z @ previous.T > threshold).any(axis=1)
        within = z @ z.T > threshold
        local = np.zeros(len(z), dtype=bool)
        for i in np.flatnonzero(~matched):
            local[i] = not within[i, :i][local[:i]].any()
        keep[start : start + len(z)] = local
        kept.append(z[local])
    return keep


def load_face_folder(
    folder: str | Path, size: int, threshold: float = 0.95, block: int = 1024
) -> tuple[np.ndarray, list[str]]:
    """Load every image under ``folder`` as a ``size × size`` grayscale face, without duplicates.

    Files ending in .png, .jpg, .jpeg, .bmp, .tif or .tiff (any case, in subfolders too) are
    read in the order of their relative paths; each is converted to grayscale, centre-cropped
    to a square, resized with anti-aliasing, then ``near_duplicate_mask`` drops
    near-duplicates.

    Returns
    -------
    images : ndarray, shape (N, size, size), float32 in [0, 1]
    names : list of str
        Relative paths of the kept images, in order.
    """
    root = Path(folder)
    size = check_int("size", size, 1)
    paths = (
        sorted(
            (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if root.is_dir()
        else []
    )
    if not paths:
        what = "has no image files" if root.is_dir() else "not found"
        raise FileNotFoundError(
            f"faces folder {root} {what}: pass --faces-dir pointing to a folder of aligned face "
            "images (e.g. CelebA img_align_celeba) or omit it to use the embedded LFW subset"
        )
    images = np.empty((len(paths), size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        square = _centre_square(_read_gray(path))
        images[i] = transform.resize(square, (size, size), order=1, anti_aliasing=True)
    keep = near_duplicate_mask(images, threshold, block)
    names = [p.relative_to(root).as_posix() for p, k in zip(paths, keep, strict=True) if k]
    return images[keep], names


class FaceFamily(Family):
    """Faces with a fixed seeded order: test first, then A from the front, B from the back.

    After near-duplicate removal the faces are permuted by
    ``np.random.default_rng([seed, 3]).permutation``; the first ``holdout`` form the test
    part, the rest the training pool. ``A_n`` is the first n of the pool and ``B_n`` the
    last n (last first), so they are disjoint for n <= pool // 2.

    Parameters
    ----------
    size : int or None
        Image side; None means 24 for the embedded faces (25 × 25, centre-cropped to 24)
        and 80 for a folder.
    seed : int
        Seed of the order.
    folder : str or None
        Folder of aligned faces (``load_face_folder``); None uses ``lfw_faces()``.
    holdout : int or None
        Number of test images; None means min(1000, N // 5).

    Attributes
    ----------
    order : list of str
        Source of every face in the order used (test, then pool): file names relative to
        ``folder``, or ``lfw_subset[i]``.
    """

    name = "faces"

    def __init__(
        self,
        size: int | None = None,
        seed: int = 0,
        folder: str | None = None,
        holdout: int | None = None,
    ) -> None:
        if folder is None:
            super().__init__(LFW_SIZE if size is None else size, seed)
            faces = _resize_stack(lfw_faces()[:, :LFW_SIZE, :LFW_SIZE], self.size)
            keep = near_duplicate_mask(faces)
            faces = faces[keep].astype(np.float32)
            names = [f"lfw_subset[{i}]" for i in np.flatnonzero(keep)]
        else:
            super().__init__(FOLDER_SIZE if size is None else size, seed)
            faces, names = load_face_folder(folder, self.size)
        self.folder = None if folder is None else str(folder)
        total = len(faces)
        self.holdout = (
            min(1000, total // 5) if holdout is None else check_int("holdout", holdout, 0)
        )
        if total - self.holdout < 2:
            raise ValueError(
                f"holdout {self.holdout} leaves fewer than 2 of the {total} faces for training; "
                f"pass holdout <= {total - 2}"
            )
        permutation = np.random.default_rng([self.seed, 3]).permutation(total)
        self._faces = faces[permutation]
        self.order = [names[i] for i in permutation]

    @property
    def params(self) -> dict:
        return {**super().params, "folder": self.folder, "holdout": self.holdout}

    def capacity(self, part: str) -> int:
        if part == "test":
            return self.holdout
        return (len(self._faces) - self.holdout) // 2

    def _indices(self, part: str, n: int) -> np.ndarray:
        if part == "test":
            return np.arange(n)
        if part == "A":
            return self.holdout + np.arange(n)
        return len(self._faces) - 1 - np.arange(n)

    def sources(self, part: str, n: int) -> list[str]:
        """Source names (see ``order``) of ``images(part, n)``."""
        n = self.check_request(part, n)
        return [self.order[i] for i in self._indices(part, n)]

    def _images(self, part: str, n: int) -> np.ndarray:
        return self._faces[self._indices(part, n)]


class ShuffledFaceFamily(FaceFamily):
    """``FaceFamily`` images under one fixed pixel permutation, the same for every image.

    The permutation is ``np.random.default_rng([seed, 4]).permutation(size²)``; the split
    and order are those of ``FaceFamily`` with the same arguments. Pixel p of a shuffled
    image is pixel ``permutation[p]`` of the face (row-major).
    """

    name = "shuffled_faces"
    permutes = "faces"

    def __init__(
        self,
        size: int | None = None,
        seed: int = 0,
        folder: str | None = None,
        holdout: int | None = None,
    ) -> None:
        super().__init__(size, seed, folder, holdout)
        self.permutation = np.random.default_rng([self.seed, 4]).permutation(self.size**2)
        self._inverse = np.argsort(self.permutation)

    def _permute(self, x: Images, index: np.ndarray) -> Images:
        if tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(
                f"expected images of shape (..., {self.size}, {self.size}), got {tuple(x.shape)}"
            )
        if isinstance(x, torch.Tensor):
            index = torch.as_tensor(index, device=x.device)
        flat = x.reshape(*x.shape[:-2], self.size**2)
        return flat[..., index].reshape(x.shape)

    def shuffle(self, x: Images) -> Images:
        """Apply the pixel permutation to images of shape ``(..., size, size)``."""
        return self._permute(x, self.permutation)

    def unshuffle(self, x: Images) -> Images:
        """Undo ``shuffle`` exactly."""
        return self._permute(x, self._inverse)

    def _images(self, part: str, n: int) -> np.ndarray:
        return self.shuffle(super()._images(part, n))
