"""One registry for every image family, by name."""

from __future__ import annotations

import inspect

from synthetic.cartoons import CartoonFamily
from synthetic.cartoons_gaussian import GaussianCartoonFamily
from synthetic.disks import DiskFamily
from synthetic.faces import FaceFamily, ShuffledFaceFamily
from synthetic.family import Family
from synthetic.fields import GaussianFieldFamily

_FAMILIES: dict[str, type[Family]] = {
    cls.name: cls
    for cls in (
        CartoonFamily,
        DiskFamily,
        FaceFamily,
        GaussianCartoonFamily,
        GaussianFieldFamily,
        ShuffledFaceFamily,
    )
}
FAMILY_NAMES = tuple(sorted(_FAMILIES))


def family_parameters(name: str) -> tuple[str, ...]:
    """The parameters family ``name`` takes besides ``size`` and ``seed`` (e.g. ``alpha``)."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of: {', '.join(FAMILY_NAMES)}")
    signature = inspect.signature(_FAMILIES[name])
    return tuple(p for p in signature.parameters if p not in ("size", "seed"))


def get_family(name: str, size: int | None = None, seed: int = 0, **params) -> Family:
    """Build the family ``name`` with its own parameters.

    Parameters
    ----------
    name : str
        One of ``FAMILY_NAMES``.
    size : int or None
        Image side in pixels; None takes the family's default (32 for the generated
        families, 24 for the embedded faces, 80 for a faces folder).
    seed : int
        Seed of images and splits.
    **params
        Family parameters (e.g. ``alpha`` for cartoons); ``get_family(**family.params)``
        rebuilds ``family``.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of: {', '.join(FAMILY_NAMES)}")
    cls = _FAMILIES[name]
    accepted = family_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for family '{name}'; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    if size is not None:
        params["size"] = size
    return cls(seed=seed, **params)
