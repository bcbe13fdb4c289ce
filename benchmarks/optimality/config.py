"""The optimality benchmark's configuration: one frozen dataclass, two profiles of it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from benchmarks.cli import parse_sigmas
from synthetic import FAMILY_NAMES
from theory.sigma import check_sigma


@dataclass(frozen=True)
class OptimalityConfig:
    """Everything one run of ``python -m benchmarks.optimality`` depends on.

    Every number is checked on construction (``ValueError`` naming the option and the fix);
    the device and the families are checked when the run starts. The defaults are the quick
    profile, :data:`QUICK`; :data:`PAPER` changes the size, network and budget.

    The objective (EDM weight with σ_d = 0.1 on the paper's σ law cut at 1e-3, up to 1.5),
    the budget (batches of 128: 21 % more images per second on 2 cores than 64), the
    cooldown (the last 20 % of the steps), the weight average (half-life 100 steps) and the
    symmetry average were chosen by measurement on the quick profile
    (``docs/results.md``); the paper profile reuses them untested at 80 x 80. ``sigma_mix``
    only acts with ``sigma_law = "mixed"``.

    Attributes
    ----------
    family : comma-separated family names, or "all".
    alpha, beta : contour and background regularity of the cartoon families (β None: = α).
    gamma : spectral exponent of the Gaussian fields.
    faces_dir : folder of aligned face images (None: the embedded LFW subset).
    network : "unet", "bfcnn" or "none" (references only); ``channels``, ``blocks`` its size.
    objective, sigma_law, sigma_d, sigma_mix, train_sigma_min, train_sigma_max : training
        objective and its σ law (``models.objectives``).
    compare_objectives : also train the other objectives on the same budget.
    steps, batch_size, lr, lr_halvings, cooldown, cooldown_lr, ema_halflife : the budget and
        its schedule (``train_config``).
    symmetry_shifts : circular shifts per periodic axis of the symmetry average (0: none).
    n_train, n_test : training and held-out images.
    sigmas : evaluation noise levels; ``slope_window`` the σ window of the slope fits.
    probes : Hutchinson probes per image of the effective dimension.
    local_score_images : held-out images on which the network is compared with the ELS, LS
        and memorizer outputs (docs/design.md §11.7); 0 skips the comparison.
    local_score_train : training images of the ELS and LS machines (the network's first).
    runs : the writable run store; ``retrain`` leaves the shipped weights out.
    checkpoint_minutes : minutes of training between checkpoints (an interrupt loses at
        most this much); not part of a run's key.
    seed : root seed of images, splits, noise and training.
    device, out, progress : torch device, output folder, progress bars.
    """

    profile: str = "quick"
    family: str = "cartoons"
    size: int = 32
    alpha: float = 2.0
    beta: float | None = None
    gamma: float = 2.0
    faces_dir: str | None = None
    network: str = "unet"
    channels: int = 16
    blocks: int = 3
    objective: str = "edm"
    sigma_law: str = "paper"
    sigma_d: float = 0.1
    sigma_mix: float = 0.5
    compare_objectives: bool = False
    train_sigma_min: float = 1e-3
    train_sigma_max: float = 1.5
    # Three equal phases of 1666 steps (two learning-rate halvings), the last 1000 of them
    # (a fifth, rounded) at the cooldown rate.
    steps: int = 4998
    batch_size: int = 128
    lr: float = 2e-3
    lr_halvings: int = 2
    cooldown: float = 0.2
    cooldown_lr: float = 1e-4
    ema_halflife: int = 100
    symmetry_shifts: int = 2
    n_train: int = 10000
    n_test: int = 128
    sigmas: tuple[float, ...] = tuple(parse_sigmas("1e-3:1:19").tolist())
    slope_window: tuple[float, float] = (0.01, 0.3)
    probes: int = 4
    local_score_images: int = 8
    local_score_train: int = 1000
    runs: str = "runs"
    retrain: bool = False
    checkpoint_minutes: float = 4.0
    seed: int = 0
    device: str = "cpu"
    out: str = "out/optimality"
    progress: bool = True

    def __post_init__(self) -> None:
        sigmas = np.asarray(self.sigmas, dtype=float)
        if np.all(np.isfinite(sigmas)):
            sigmas = np.unique(sigmas)  # the final grid: sorted, without duplicates
        object.__setattr__(self, "sigmas", tuple(float(s) for s in sigmas))
        object.__setattr__(self, "slope_window", tuple(float(s) for s in self.slope_window))
        object.__setattr__(self, "runs", str(self.runs))
        object.__setattr__(self, "out", str(self.out))
        validate(self)

    def family_names(self) -> list[str]:
        """The requested family names (``"all"`` expanded)."""
        if self.family == "all":
            return list(FAMILY_NAMES)
        return [name.strip() for name in self.family.split(",")]


# Real-valued settings: each must be a finite number (``inf`` would reach the run store's
# key, NaN would pass every comparison).
_REALS = (
    "alpha",
    "beta",
    "gamma",
    "sigma_d",
    "sigma_mix",
    "train_sigma_min",
    "train_sigma_max",
    "lr",
    "cooldown",
    "cooldown_lr",
    "checkpoint_minutes",
)


def validate(c: OptimalityConfig) -> None:
    """Raise ``ValueError`` (one line naming the option and the fix) on any bad number."""
    for name in _REALS:
        value = getattr(c, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number (got {value})")
    if not c.checkpoint_minutes > 0:
        raise ValueError(
            f"--checkpoint-minutes must be > 0 (got {c.checkpoint_minutes}): the default is 4"
        )
    if c.network not in ("unet", "bfcnn", "none"):
        raise ValueError(f"--network must be unet, bfcnn or none (got {c.network!r})")
    positive = {
        "--n-test": c.n_test,
        "--n-train": c.n_train,
        "--steps": c.steps,
        "--batch-size": c.batch_size,
        "--channels": c.channels,
        "--blocks": c.blocks,
        "--probes": c.probes,
    }
    for flag, value in positive.items():
        if value < 1:
            raise ValueError(f"{flag} must be at least 1 (got {value})")
    if c.local_score_images < 0 or c.local_score_train < 1:
        raise ValueError(
            "need --local-score-images >= 0 (0 skips the comparison) and --local-score-train "
            f">= 1 (got {c.local_score_images}, {c.local_score_train})"
        )
    if c.n_test < 2 or c.n_train < 2:
        raise ValueError("--n-test and --n-train need at least 2 images for standard errors")
    if not 0 < c.train_sigma_min < c.train_sigma_max:
        raise ValueError(
            "need 0 < --train-sigma-min < --train-sigma-max (got "
            f"{c.train_sigma_min}, {c.train_sigma_max})"
        )
    if not c.sigma_d > 0:
        raise ValueError(f"--sigma-d must be positive (got {c.sigma_d})")
    if not 0 <= c.sigma_mix <= 1:
        raise ValueError(f"--sigma-mix is a fraction: need 0 <= it <= 1 (got {c.sigma_mix})")
    if not (0 <= c.cooldown < 1 and c.cooldown_lr > 0):
        raise ValueError(
            "need 0 <= --cooldown < 1 (a fraction of the budget) and --cooldown-lr > 0 (got "
            f"{c.cooldown}, {c.cooldown_lr})"
        )
    if c.ema_halflife < 0:
        raise ValueError(f"--ema-halflife must be >= 0 steps (got {c.ema_halflife})")
    if c.symmetry_shifts < 0 or (c.symmetry_shifts and c.size % c.symmetry_shifts):
        raise ValueError(
            f"--symmetry-shifts must be 0 or a divisor of the image size {c.size} "
            f"(got {c.symmetry_shifts})"
        )
    if not c.lr > 0 or c.lr_halvings < 0:
        raise ValueError(f"need --lr > 0 and --lr-halvings >= 0 (got {c.lr}, {c.lr_halvings})")
    phases = c.lr_halvings + 1
    if c.steps % phases:
        below, above = c.steps - c.steps % phases, c.steps - c.steps % phases + phases
        raise ValueError(
            f"--steps {c.steps} does not split into --lr-halvings + 1 = {phases} equal phases: "
            f"use --steps {below or above} or {above}"
        )
    check_sigma(np.asarray(c.sigmas))
    if len(c.sigmas) < 3:
        raise ValueError("--sigmas needs at least 3 distinct noise levels to fit slopes")
    lo, hi = c.slope_window
    if not 0 < lo < hi:
        raise ValueError(f"--slope-window needs 0 < lo < hi (got {lo:g},{hi:g})")
    inside = sum(lo <= s <= hi for s in c.sigmas)
    if inside < 3:
        raise ValueError(
            f"--slope-window {lo:g},{hi:g} holds {inside} of the --sigmas levels "
            f"({min(c.sigmas):g} ... {max(c.sigmas):g}); a slope fit needs at least 3: widen it"
        )
    if c.seed < 0:
        raise ValueError(f"--seed must be >= 0 (got {c.seed})")


# Quick: C^α cartoons, α = 2, 32 x 32, a 0.48 M-parameter UNet on CPU.
QUICK = OptimalityConfig()
# Paper: 80 x 80 and the paper's UNet (64 channels), for a GPU.
PAPER = replace(
    QUICK,
    profile="paper",
    size=80,
    channels=64,
    steps=20000,
    batch_size=512,
    lr=1e-3,
    lr_halvings=3,
    cooldown_lr=5e-5,
    n_train=100000,
    device="cuda",
)


def profile(name: str) -> OptimalityConfig:
    """The configuration of the profile ``name`` ("quick" or "paper")."""
    for config in (QUICK, PAPER):
        if config.profile == name:
            return config
    raise ValueError(f"unknown profile {name!r}: choose quick or paper")
