"""What the sweep checks before any work, and the objects it builds for the measurement.

:func:`setup` turns a :class:`~benchmarks.generalization.config.GeneralizationConfig` into a
:class:`Setup` (the family, the set sizes after the family's caps, the training
configurations of the A and B networks, the σ grid, the derived seeds) after checking
everything a sweep could otherwise fail on after training (docs/design.md §13.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.cli import check_writable
from benchmarks.common import check_device, probe_denoisers
from benchmarks.generalization.config import (
    GeneralizationConfig,
    choose_sizes,
    stream_seeds,
)
from benchmarks.generalization.stats import PARTS
from models.objectives import sigma_range
from models.references import build_optimum
from models.runstore import RunStore
from models.training import TrainConfig
from synthetic import family_parameters, get_family
from synthetic.family import Family
from theory.protocol import Denoiser


@dataclass(frozen=True)
class Setup:
    """What the measurement needs, built from a configuration before any work."""

    config: GeneralizationConfig
    family: Family
    sizes: tuple[int, ...]
    capacity: float
    capped: str | None
    train: dict[str, TrainConfig]
    sigmas: np.ndarray
    n_test: int
    device: torch.device
    seeds: dict[str, int]

    def checkpoint_s(self) -> float:
        """Seconds of training between checkpoints."""
        return 60 * self.config.checkpoint_minutes


def build_family(config: GeneralizationConfig) -> Family:
    """The image family of ``config`` (``faces_dir``: the folder the family reads)."""
    params = {} if config.faces_dir is None else {"folder": config.faces_dir}
    if params and "folder" not in family_parameters(config.family):
        raise ValueError(
            f"--faces-dir needs a family read from a folder, such as --family faces "
            f"(family '{config.family}' takes no folder): drop --faces-dir"
        )
    return get_family(config.family, size=config.size, seed=config.seed, **params)


def train_configs(
    config: GeneralizationConfig, seeds: dict[str, int], device: torch.device
) -> dict[str, TrainConfig]:
    """The training configuration of the A and B networks (they differ only in their seed)."""
    objective_params = sigma_range(config.objective, *config.train_sigma, config.sigma_law)
    return {
        part: TrainConfig(
            network="unet",
            network_params={"channels": config.channels, "blocks": config.blocks},
            objective=config.objective,
            objective_params=objective_params,
            lr=config.lr,
            lr_step_epochs=config.lr_step_epochs,
            batch_size=config.batch_size,
            samples_per_epoch=config.samples_per_epoch,
            epochs=config.epochs,
            max_steps=config.steps,
            seed=seeds[f"network_{part}"],
            device=str(device),
        )
        for part in PARTS
    }


def train_data(family: Family, part: str, n: int) -> dict:
    """The description of the n training images of ``part`` that the run store keys by."""
    return {"family": family.params, "part": part, "n": int(n)}


def exact_optimum(family: Family, test: torch.Tensor) -> Denoiser | None:
    """The optimal denoiser of the family's own law when the family declares it exact.

    None when the family knows only a lower bound (an oracle) or nothing. The exact optimum
    does not depend on training images; it is built on the device of ``test``.
    """
    if family.optimum.kind != "exact":
        return None
    return build_optimum(family, test, test.shape[0])


def check_runs(s: Setup) -> bool:
    """Check every stored run of the sweep (``RunStore.check``); whether one must be trained."""
    store = RunStore(s.config.runs)
    shape = tuple(s.family.images("test", 1).shape[1:])
    untrained = False
    for n in s.sizes:
        for part in PARTS:
            data = train_data(s.family, part, n)
            store.check(s.train[part], data, (n, *shape))
            untrained |= store.find(s.train[part], data, (n, *shape)) is None
    return untrained


def setup(config: GeneralizationConfig) -> Setup:
    """Check everything the sweep depends on before any work, and build the sweep's objects.

    The device, the family at its size (divisible by the UNet's levels, with >= 2 held-out
    images and >= 1 image in each of A and B after the caps), the family's exact optimum
    denoising one image at both ends of the σ grid, every stored run readable, and that
    ``--out`` (and ``--runs``, when a network has to be trained) can be written.
    ``ValueError`` names the option or the file and the fix.
    """
    device = check_device(config.device)
    check_writable(config.out, "--out")
    family = build_family(config)
    factor = 2**config.blocks
    if family.size % factor:
        raise ValueError(
            f"image size {family.size} is not divisible by 2**blocks = {factor}: choose --size "
            f"a multiple of {factor} or fewer --blocks"
        )
    capacity = min(family.capacity("A"), family.capacity("B"))
    sizes, capped = choose_sizes(config.sizes, config.sizes_given, capacity, family.name)
    n_test = int(min(config.n_test, family.capacity("test")))
    if n_test < 2:
        raise ValueError(
            f"family '{family.name}' holds {n_test} held-out images; need >= 2: use a larger "
            "family (e.g. a bigger --faces-dir)"
        )
    optimum = exact_optimum(family, family.images("test", 1))
    if optimum is not None:
        probe_denoisers(
            {optimum.name: optimum},
            family.images("test", 1),
            config.sigma_grid,
            f"family '{family.name}' at {family.size} px",
            fix="change --size or choose another family",
        )
    seeds = stream_seeds(config.seed)
    s = Setup(
        config=config,
        family=family,
        sizes=sizes,
        capacity=capacity,
        capped=capped,
        train=train_configs(config, seeds, device),
        sigmas=config.sigma_grid,
        n_test=n_test,
        device=device,
        seeds=seeds,
    )
    if check_runs(s):
        check_writable(config.runs, "--runs")
    return s
