"""The reference denoisers a family declares, built by name.

A family lists its usable references in ``Family.references`` and names its optimum (exact
or an oracle lower bound) in ``Family.optimum``; this module turns those names into
denoisers, so the benchmarks never test a family's name. The registry ``REFERENCES`` maps
each name to a builder ``(family, train) -> Denoiser | None``; a builder returns None when
its denoiser cannot take the family's images (curvelets need a side that is a multiple of
8 and at least 16) or is not installed (BM3D, an optional extra: results record its version
among their ``versions``, None when it was absent).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from models.curvelets import CurveletThreshold
from models.disk_posterior import DiskPosteriorMean
from models.genie import GenieWiener
from models.memorizer import Memorizer
from models.patch_denoisers import BM3D, NonLocalMeans, bm3d_available
from models.symmetrized import Symmetrized, cycle_spins
from models.wavelets import WaveletThreshold
from models.wiener import Wiener
from synthetic.family import Family
from theory.protocol import Denoiser

# Cycle spins per axis of the translation-invariant bandlets: 4 x 4 shifts (the wavelets
# are fully invariant through the undecimated transform).
TI_SHIFTS = 4


def cycle_spun(denoiser: Denoiser, shifts: int, name: str | None = None) -> Symmetrized:
    """``denoiser`` averaged over the ``shifts x shifts`` circular shifts (cycle spinning).

    The average of ``g⁻¹ f(g y)`` over the shifts g of ``models.symmetrized.cycle_spins``
    (Coifman & Donoho, 1995): the same mechanism as the networks' symmetry average.
    """
    return Symmetrized(denoiser, cycle_spins(shifts), name=name)


def _stationary_wiener(family: Family, train: torch.Tensor) -> Denoiser:
    spectrum = family.spectrum()
    if spectrum is None:
        raise ValueError(
            f"family '{family.name}' has no stationary Gaussian law: use 'wiener_pca' instead "
            "of 'wiener' among its references"
        )
    return Wiener.stationary(family.mean, torch.as_tensor(spectrum), name="wiener")


def _curvelet(family: Family, train: torch.Tensor) -> Denoiser | None:
    if family.size < 16 or family.size % 8:
        return None
    return CurveletThreshold(factor=3.0, mode="hard")


def _bm3d(family: Family, train: torch.Tensor) -> Denoiser | None:
    return BM3D() if bm3d_available() else None


REFERENCES: dict[str, Callable[[Family, torch.Tensor], Denoiser | None]] = {
    "memorizer": lambda family, train: Memorizer(train),
    "wiener": _stationary_wiener,
    "wiener_pca": lambda family, train: Wiener.from_data(train, name="wiener_pca"),
    "wavelet": lambda family, train: WaveletThreshold("db4", mode="hard", factor=3.0),
    "ti_wavelet": lambda family, train: WaveletThreshold(
        "db4", mode="hard", factor=3.0, invariant=True
    ),
    "curvelet": _curvelet,
    "nlm": lambda family, train: NonLocalMeans(),
    "bm3d": _bm3d,
    "disk_posterior": lambda family, train: DiskPosteriorMean(
        family.size, free=family.params["free"]
    ),
}


def build_references(family: Family, train: torch.Tensor) -> dict[str, Denoiser]:
    """The family's usable reference denoisers, keyed by their result-file names.

    Parameters
    ----------
    family : the image family; ``family.references`` names what to build.
    train : its training images ``(n, 1, H, W)`` on the evaluation device (the memorizer
        and the PCA Wiener filter are built from them).
    """
    unknown = sorted(set(family.references) - set(REFERENCES))
    if unknown:
        raise ValueError(
            f"family '{family.name}' declares unknown references {unknown}: choose among "
            f"{', '.join(REFERENCES)}"
        )
    built = [REFERENCES[name](family, train) for name in family.references]
    return {f.name: _to(f, train.device) for f in built if f is not None}


def build_optimum(family: Family, train: torch.Tensor, n_test: int) -> Denoiser | None:
    """The denoiser named by ``family.optimum`` for the first ``n_test`` held-out images.

    The exact optimum is one of the references, built afresh; the genie (a lower bound) is
    bound to the masks of those held-out images, so it must be called on them in order.
    None when the family knows no optimum.
    """
    name = family.optimum.reference
    if name is None:
        return None
    if name == "genie":
        return GenieWiener(family, family.masks("test", n_test))
    return _to(REFERENCES[name](family, train), train.device)


def _to(denoiser: Denoiser, device: torch.device) -> Denoiser:
    mover = getattr(denoiser, "to", None)
    return denoiser if mover is None else mover(device)
