"""The GAHB benchmark's configuration: one frozen dataclass, three profiles of it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from benchmarks.optimality.config import PAPER as OPTIMALITY_PAPER
from benchmarks.optimality.config import QUICK as OPTIMALITY_QUICK
from benchmarks.optimality.config import OptimalityConfig
from synthetic import FAMILY_NAMES
from theory.sigma import check_sigma

# The eigenvector grid: the leading LEADING eigenvectors, then these ranks (1-based).
LEADING = 20
LATER_RANKS = (30, 50, 100, 200, 400)
# Terms of the compaction summaries (captured fraction at k), and the principal angles
# compared with the optimum's leading eigenvectors.
SUMMARY_TERMS = (10, 50, 200)
ANGLE_RANKS = 20


@dataclass(frozen=True)
class GahbConfig:
    """Everything one run of ``python -m benchmarks.gahb`` depends on.

    The networks are the optimality benchmark's (``network`` names its profile, quick or
    paper): the run store shares them, so a network trained by either benchmark serves
    both. Every number is checked on construction (``ValueError`` naming the option and
    the fix).

    Attributes
    ----------
    family : comma-separated family names; ``cartoons`` is measured at every ``alphas``.
    alphas : regularities α of the cartoon families.
    size : image side in pixels.
    n_images : held-out images decomposed per family and σ.
    sigmas : noise levels of the decompositions.
    top_k : None for the full decomposition (d <= 4096), else the leading k by Lanczos.
    grid_sigma : the σ of the eigenvector grids and compaction figures (one of ``sigmas``).
    network : the optimality profile whose network is analysed ("quick" or "paper").
    steps, n_train, channels, blocks, batch_size : the network's training budget,
        training images, size and batch (None: the optimality profile's; other values
        train other networks).
    runs, retrain : the run store and whether to leave the shipped weights out.
    seed, device, out, progress : as for the optimality benchmark.
    """

    profile: str = "default"
    family: str = "cartoons,disks,shuffled_faces,gaussian"
    alphas: tuple[float, ...] = (2.0, 4.0)
    size: int = 32
    n_images: int = 3
    sigmas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    top_k: int | None = None
    grid_sigma: float = 0.1
    network: str = "quick"
    steps: int | None = None
    n_train: int | None = None
    channels: int | None = None
    blocks: int | None = None
    batch_size: int | None = None
    runs: str = "runs"
    retrain: bool = False
    seed: int = 0
    device: str = "cpu"
    out: str = "out/gahb"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", tuple(sorted({float(s) for s in self.sigmas})))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        validate(self)

    def family_names(self) -> list[str]:
        return [name.strip() for name in self.family.split(",")]

    def optimality(self, name: str, alpha: float | None) -> OptimalityConfig:
        """The optimality configuration that trains (or names) this family's network."""
        base = OPTIMALITY_QUICK if self.network == "quick" else OPTIMALITY_PAPER
        return replace(
            base,
            family=name,
            size=self.size,
            alpha=base.alpha if alpha is None else alpha,
            runs=self.runs,
            retrain=self.retrain,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
            **{
                key: getattr(self, key)
                for key in ("steps", "n_train", "channels", "blocks", "batch_size")
                if getattr(self, key) is not None
            },
        )


def validate(c: GahbConfig) -> None:
    """Raise ``ValueError`` (one line naming the option and the fix) on any bad setting."""
    unknown = [name for name in c.family_names() if name not in FAMILY_NAMES]
    if unknown or not c.family_names():
        raise ValueError(
            f"unknown family {', '.join(unknown) or repr(c.family)}: choose from "
            f"{', '.join(FAMILY_NAMES)}"
        )
    if not c.alphas or not all(math.isfinite(a) and a > 0 for a in c.alphas):
        raise ValueError(f"--alphas must be positive numbers (got {c.alphas}); e.g. 2,4")
    if c.n_images < 1:
        raise ValueError(f"--n-images must be at least 1 (got {c.n_images})")
    check_sigma(np.asarray(c.sigmas))
    if c.grid_sigma not in c.sigmas:
        raise ValueError(
            f"--grid-sigma {c.grid_sigma:g} must be one of --sigmas "
            f"({', '.join(f'{s:g}' for s in c.sigmas)})"
        )
    d = c.size * c.size
    if c.top_k is not None and not 1 <= c.top_k < d:
        raise ValueError(f"--top-k must be between 1 and {d - 1} for {c.size} px (got {c.top_k})")
    if c.top_k is None and d > 4096:
        raise ValueError(
            f"{c.size} px images ({d} pixels) are too large for the full decomposition: "
            "pass --top-k (e.g. 100) for the leading eigenpairs by Lanczos"
        )
    if c.network not in ("quick", "paper"):
        raise ValueError(f"--network must be quick or paper (got {c.network!r})")
    if c.seed < 0:
        raise ValueError(f"--seed must be >= 0 (got {c.seed})")


# Every family of the analysis, 32 x 32, the optimality default's networks, on CPU.
DEFAULT = GahbConfig()
# The shipped network and the Gaussian fields' at two noise levels.
QUICK = replace(
    DEFAULT,
    profile="quick",
    family="cartoons,gaussian",
    alphas=(2.0,),
    n_images=2,
    sigmas=(0.02, 0.1),
    grid_sigma=0.1,
)
# 80 x 80 and the paper's network, the leading 100 eigenpairs by Lanczos, for a GPU.
PAPER = replace(DEFAULT, profile="paper", size=80, top_k=100, network="paper", device="cuda")


def profile(name: str) -> GahbConfig:
    """The configuration of the profile ``name`` ("default", "quick" or "paper")."""
    for config in (DEFAULT, QUICK, PAPER):
        if config.profile == name:
            return config
    raise ValueError(f"unknown profile {name!r}: choose default, quick or paper")
