"""Image families with deterministic train/test and disjoint A/B parts (docs/design.md §5).

Every family hands out images by *part*: ``"A"`` and ``"B"`` are two disjoint training
sets and ``"test"`` is held out. ``images(part, n)`` is prefix-consistent: the first ``n``
images of a part never depend on how many are asked for, so ``A_10`` lies inside
``A_100``.

A family also declares what the benchmarks need to know about its law, so that they ask
instead of testing its name: its usable reference denoisers (``references``, names built by
``models.references``), its optimal denoiser and so the kind of KL bound it supports
(``optimum``), the regularity of C^α families, the spectrum of a stationary Gaussian law, a
distance to its manifold, the exact symmetries of its law.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

PARTS = ("A", "B", "test")


def check_int(name: str, value: int, minimum: int) -> int:
    """Return ``value`` as an ``int``; raise ``ValueError`` unless it is an integer >= minimum."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {number})")
    return number


OPTIMUM_KINDS = ("exact", "lower_bound", "none")


@dataclass(frozen=True)
class Optimum:
    """What a family knows of its optimal denoiser f* (the posterior mean).

    ``kind``: ``"exact"`` when the denoiser named ``reference`` is f* (so the KL integral
    against it is the KL itself); ``"lower_bound"`` when ``reference`` is an oracle whose
    risk is below f*'s at every σ (the integral is then an upper bound on the KL);
    ``"none"`` when only estimates are available (the best reference stands in for f*).
    """

    kind: str = "none"
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPTIMUM_KINDS:
            raise ValueError(f"optimum kind must be one of {OPTIMUM_KINDS} (got {self.kind!r})")
        if (self.kind == "none") != (self.reference is None):
            raise ValueError("an optimum names its reference denoiser unless its kind is 'none'")

    @property
    def kl_kind(self) -> str:
        """The kind of the KL curve measured against this optimum."""
        return {"exact": "exact", "lower_bound": "upper_bound", "none": "estimate"}[self.kind]


class Family(ABC):
    """A family of grayscale images of side ``size`` split into parts A, B and test.

    Attributes
    ----------
    name : str
        Registry name of the family.
    size : int
        Image side in pixels.
    seed : int
        Seed of every random choice (images, splits, permutations).
    symmetries : tuple of str
        Exact symmetries of the image distribution, named as in
        ``models.symmetrized.SYMMETRIES`` (mirror flips, circular shifts): transformed images
        have the law of the images. Empty when none is exact.
    references : tuple of str
        The usable (non-oracle) reference denoisers of the family, by their names in
        ``models.references.REFERENCES``.
    permutes : str or None
        The family whose images this one permutes pixel-wise (shuffled faces), if any.
    order : list of str or None
        Names of the source images in the family's fixed order (finite families).
    """

    name: str = ""
    symmetries: tuple[str, ...] = ()
    references: tuple[str, ...] = (
        "memorizer",
        "wiener_pca",
        "wavelet",
        "ti_wavelet",
        "curvelet",
        "nlm",
        "bm3d",
    )
    permutes: str | None = None
    order: list[str] | None = None

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = check_int("size", size, 1)
        self.seed = check_int("seed", seed, 0)

    @property
    def params(self) -> dict:
        """JSON-serialisable description of everything that determines the images.

        ``get_family(**family.params)`` rebuilds an identical family.
        """
        return {"name": self.name, "size": self.size, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k != "name")
        return f"{type(self).__name__}({args})"

    @property
    def optimum(self) -> Optimum:
        """The family's optimal denoiser, as far as it is known (default: not known)."""
        return Optimum()

    @property
    def regularity(self) -> float | None:
        """The regularity α of a C^α family (minimax MSE ~ σ^(2α/(α+1))), else None."""
        return None

    def spectrum(self) -> np.ndarray | None:
        """The power spectrum ``(size, size)`` when the law is a stationary Gaussian field."""
        return None

    def sources(self, part: str, n: int) -> list[str] | None:
        """Source names of the first ``n`` images of ``part``, for finite families."""
        return None

    def distance_to_manifold(self, images: torch.Tensor) -> np.ndarray | None:
        """Per-image RMS distance to the set of clean images, when it can be computed."""
        return None

    @abstractmethod
    def capacity(self, part: str) -> int | float:
        """How many images ``part`` holds: an ``int``, or ``math.inf`` for generated families."""

    @abstractmethod
    def _images(self, part: str, n: int) -> np.ndarray:
        """The first ``n`` images of a validated ``part`` as an array ``(n, size, size)``."""

    def images(self, part: str, n: int) -> torch.Tensor:
        """The first ``n`` images of ``part`` as a float32 tensor ``(n, 1, size, size)``.

        Parameters
        ----------
        part : {"A", "B", "test"}
            Training set A, the disjoint training set B, or the held-out test set.
        n : int
            Number of images; ``images(part, n)`` equals ``images(part, m)[:n]`` for m > n.
        """
        n = self.check_request(part, n)
        x = np.ascontiguousarray(self._images(part, n), dtype=np.float32)
        return torch.from_numpy(x.reshape(n, 1, self.size, self.size))

    def check_request(self, part: str, n: int) -> int:
        """Validate ``part`` and ``n`` against what the family holds; return ``n`` as int."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; choose one of: {', '.join(PARTS)}")
        n = check_int("n", n, 0)
        available = self.capacity(part)
        if n > available:
            raise ValueError(
                f"family '{self.name}' holds at most {available} images in part '{part}' "
                f"(asked for {n}); ask for at most {available}"
            )
        return n


class GeneratedFamily(Family):
    """An infinite family drawn in fixed chunks from independent seeded streams.

    Chunk ``c`` of part ``p`` is generated from ``np.random.default_rng([seed, p, c])``
    (a ``SeedSequence``; p = 0, 1, 2 for A, B, test), always ``CHUNK`` images at a time.
    So any ``n`` is prefix-consistent and the three parts are independent streams, disjoint
    with probability one. Subclasses implement ``_generate``, vectorised over the batch.
    """

    CHUNK = 64

    def capacity(self, part: str) -> float:
        return math.inf

    @abstractmethod
    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw ``n`` images ``(n, size, size)`` in [0, 1] and their parameters (or None)."""

    def _draw(self, part: str, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The first ``n`` images of ``part`` and their parameters, from whole chunks."""
        stream = PARTS.index(part)
        chunks = [
            self._generate(np.random.default_rng([self.seed, stream, c]), self.CHUNK)
            for c in range(max(1, -(-n // self.CHUNK)))
        ]
        images = np.concatenate([c[0] for c in chunks])[:n]
        params = None if chunks[0][1] is None else np.concatenate([c[1] for c in chunks])[:n]
        return images, params

    def _images(self, part: str, n: int) -> np.ndarray:
        return self._draw(part, n)[0]
