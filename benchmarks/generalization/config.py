"""The configuration of the sweep: one frozen dataclass, its profiles, and what it builds.

A :class:`GeneralizationConfig` is valid by construction (every number is checked in
``__post_init__``, with a one-line error naming the command-line option and the fix); the
profiles ``quick``, ``default`` and ``paper`` are instances of it, and :func:`configure`
applies explicit settings to a profile. ``benchmarks.generalization.prepare.setup`` then
checks what depends on the machine, the family and the run store, and builds what the
measurement needs without doing any work.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields, replace

import numpy as np

from benchmarks.cli import parse_sigmas
from benchmarks.common import derive_seed
from models.objectives import SIGMA_LAWS
from synthetic import FAMILY_NAMES
from theory.similarity import MEASURES

DEFAULT_SIZES = (1, 10, 100, 1000, 10_000)
OBJECTIVES = ("paper", "kl", "edm")
SAMPLERS = ("ascent", "flow")
# Fields whose option is not ``--`` + the field name with dashes.
_OPTIONS = {"sizes": "--sizes-n", "progress": "--no-progress", "train_sigma": "train_sigma"}


def option(name: str) -> str:
    """The command-line option of the configuration field ``name`` (for error messages)."""
    return _OPTIONS.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class GeneralizationConfig:
    """Everything one sweep depends on; all but ``train_sigma`` can be set on the command line.

    Profile settings (they differ between profiles) come first. Training: ``batch_size *
    steps`` images per network (``steps = epochs * samples_per_epoch / batch_size``, capped by
    ``steps``), the same for every n; the learning rate is halved every ``lr_step_epochs``
    epochs. ``train_sigma`` is the (sigma_min, sigma_max) range of the objective's noise law
    (sigma_min unused by the paper's law); ``sigma_law`` picks the ``edm`` objective's law (one
    of :data:`models.objectives.SIGMA_LAWS`; None: the objective's default). ``size`` None is
    the family's own default; ``sigmas`` is a σ grid as ``lo:hi:n`` (log-spaced) or ``a,b,c``.

    Then the settings every profile shares: the sampler (``sampler``, ``h0``, ``beta``,
    ``sigma0``, ``sigma_final``, ``max_steps``, ``flow_steps``), the similarity that picks the
    nearest training image (``measure``), the comparison of network A with the local score
    machines (``local_score_images`` held-out images, 0 to skip it and the ELS samples; the
    machines use the first ``local_score_train`` training images), the root ``seed`` of
    every stream, the run store (``runs``) and the minutes of training between its
    checkpoints (``checkpoint_minutes``, not part of a run's key), the output folder
    (``out``) and the progress bars. The step
    budget is exact: ``steps`` above what the epochs hold is refused. ``sizes_given`` says that
    ``sizes`` were asked for explicitly: sizes above what the family holds are then an error
    instead of being capped.
    """

    family: str
    size: int | None
    sizes: tuple[int, ...]
    channels: int
    blocks: int
    objective: str
    train_sigma: tuple[float, float]
    sigma_law: str | None
    batch_size: int
    samples_per_epoch: int
    epochs: int
    lr_step_epochs: int
    n_samples: int
    n_eval: int
    n_test: int
    sigmas: str
    device: str = "cpu"
    profile: str = "default"
    sizes_given: bool = False
    faces_dir: str | None = None
    steps: int | None = None
    lr: float = 1e-3
    runs: str = "runs"
    checkpoint_minutes: float = 4.0
    sampler: str = "ascent"
    h0: float = 0.01
    beta: float = 0.5
    sigma0: float = 1.0
    sigma_final: float = 0.01
    max_steps: int = 1000
    flow_steps: int = 50
    measure: str = "cosine"
    local_score_images: int = 8
    local_score_train: int = 1000
    seed: int = 0
    out: str = "out/generalization"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_choice("family", self.family, FAMILY_NAMES)
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("measure", self.measure, MEASURES)
        if self.sigma_law is not None:
            _check_choice("sigma_law", self.sigma_law, SIGMA_LAWS)
            if self.objective != "edm":
                raise ValueError(
                    f"--sigma-law is an option of the edm objective, not of {self.objective!r}: "
                    "drop --sigma-law or use --objective edm"
                )
        for name, low in (
            ("channels", 1),
            ("blocks", 1),
            ("batch_size", 1),
            ("samples_per_epoch", 1),
            ("epochs", 1),
            ("lr_step_epochs", 1),
            ("n_samples", 1),
            ("n_eval", 2),
            ("n_test", 2),
            ("max_steps", 1),
            ("flow_steps", 2),
            ("local_score_images", 0),
            ("local_score_train", 1),
            ("seed", 0),
        ):
            _check_int(name, getattr(self, name), low)
        if self.size is not None:
            _check_int("size", self.size, 1)
        if self.steps is not None:
            _check_int("steps", self.steps, 1)
        sizes = self.sizes
        if not (isinstance(sizes, tuple) and sizes and all(_is_int(n) for n in sizes)):
            raise ValueError(f"--sizes-n must be set sizes, integers >= 1 (got {sizes!r})")
        if sizes[0] < 1 or list(sizes) != sorted(set(sizes)):
            raise ValueError(
                f"--sizes-n: set sizes must be integers >= 1 in increasing order (got {sizes})"
            )
        for name in ("lr", "h0", "beta", "sigma0", "sigma_final", "checkpoint_minutes"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{option(name)} must be a finite number (got {value!r})")
        if not self.checkpoint_minutes > 0:
            raise ValueError(
                f"--checkpoint-minutes must be > 0 (got {self.checkpoint_minutes}): the "
                "default is 4"
            )
        if self.steps is not None:
            held = self.epochs * math.ceil(self.samples_per_epoch / self.batch_size)
            if self.steps > held:
                raise ValueError(
                    f"--steps {self.steps} is more than the {self.epochs} epoch(s) of "
                    f"{held // self.epochs} steps hold ({held}): raise --epochs, or drop it to "
                    "let --steps set the epochs"
                )
        lo, hi = self.train_sigma
        if not 0 < lo < hi:
            raise ValueError(f"train_sigma needs 0 < sigma_min < sigma_max (got {lo}, {hi})")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0 (got {self.lr}): the default is 1e-3")
        for name in ("h0", "beta"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{option(name)} must lie in (0, 1] (got {value})")
        if not 0 < self.sigma_final < self.sigma0:
            raise ValueError(
                f"need 0 < --sigma-final < --sigma0 (got {self.sigma_final}, {self.sigma0}); "
                "sigma must be > 0, the paper uses 0.01 and 1"
            )
        try:
            parse_sigmas(self.sigmas)
        except (argparse.ArgumentTypeError, AttributeError, TypeError) as err:
            raise ValueError(f"--sigmas: {err}") from None

    @property
    def sigma_grid(self) -> np.ndarray:
        """The σ grid of the PSNR and KL curves."""
        return np.asarray(parse_sigmas(self.sigmas), dtype=float)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int(name: str, value, low: int) -> None:
    if not (_is_int(value) and value >= low):
        raise ValueError(
            f"{option(name)} must be an integer >= {low} (got {value!r}): pass {option(name)} "
            f"{low} or more"
        )


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        what = "family" if name == "family" else option(name)
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


_NAMES = [f.name for f in fields(GeneralizationConfig)]
# The settings that differ between profiles (recorded as ``settings`` in results.json).
PROFILE_FIELDS = tuple(_NAMES[: _NAMES.index("profile")])

# Sized by measurement (docs/design.md §12, docs/results.md §9; 16-channel UNet with 3 blocks,
# batch 64, about 35 ms a step at 16x16 on 2 cores). The family is Gaussian fields: simple
# families saturate every similarity (a new disk's nearest training disk has raw cosine 0.998
# and correlation 0.96 at n = 1000, a new 16x16 cartoon's 0.988 and 0.96), so no measure can
# tell a generalizing network from a memorizing one there; a held-out field's nearest training
# field has correlation 0.42 at n = 1000, and the exact optimum gives the KL from the true law.
# The objective decides both ends (3000 steps, gaussian 16x16): EDM's log-normal law memorizes
# one image (samples at cosine >= 0.99, median correlation 0.93-0.95) and generalizes at
# n = 1000 (A/B correlation 0.88 against 0.43 to the nearest training image); the log-uniform
# law generalizes too (0.95) but does not memorize (cosine down to 0.955); the paper's law
# leaves a floor at small sigma (test PSNR below the input's at sigma = 0.03). At 3000 steps
# the n = 1 networks sat at the 0.99 line (minimum 0.9896 in one run), so the default trains
# 6000 steps: minimum 0.9954 in an earlier version, 0.970 with the current seeds and compiled
# training (median cosine 0.996, correlation 0.92; docs/results.md §9).
_DEFAULT = GeneralizationConfig(
    family="gaussian",
    size=16,
    sizes=DEFAULT_SIZES,
    channels=16,
    blocks=3,
    objective="edm",
    train_sigma=(2e-3, 1.5),
    sigma_law="log_normal",
    batch_size=64,
    samples_per_epoch=64 * 250,
    epochs=24,
    lr_step_epochs=8,
    n_samples=16,
    n_eval=128,
    n_test=128,
    sigmas="1e-3:1:13",
)
PROFILES = {
    # The default pipeline on a smoke-test budget: 400 steps per network, fewer n and samples.
    "quick": replace(
        _DEFAULT,
        profile="quick",
        sizes=(1, 10, 1000),
        samples_per_epoch=64 * 200,
        epochs=2,
        lr_step_epochs=1,
        n_samples=8,
        n_eval=64,
        n_test=64,
        sigmas="2e-3:1:7",
    ),
    "default": _DEFAULT,
    # The paper's 80x80 faces with its UNet and objective, for a GPU.
    "paper": replace(
        _DEFAULT,
        profile="paper",
        family="faces",
        size=80,
        sizes=DEFAULT_SIZES + (100_000,),
        channels=64,
        objective="paper",
        train_sigma=(1e-3, 1.0),
        sigma_law=None,
        batch_size=512,
        samples_per_epoch=250_000,
        epochs=40,
        lr_step_epochs=10,
        n_samples=32,
        n_eval=256,
        n_test=256,
        sigmas="1e-3:1:13",
        device="cuda",
    ),
}


def configure(profile: str = "default", **settings) -> GeneralizationConfig:
    """The profile named ``profile`` with the explicit ``settings`` (configuration fields).

    The profile's image size belongs to its own family: another family keeps its own default
    unless ``size`` is given. The profile's edm law does not carry over to another objective.
    A step budget alone (``steps`` without ``epochs``) sets as many epochs as it needs, and
    still caps the last one. Explicit ``sizes`` mark ``sizes_given``.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown --profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    unknown = sorted(set(settings) - set(_NAMES) - {"profile"})
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)} of GeneralizationConfig")
    base = PROFILES[profile]
    if settings.get("family", base.family) != base.family:
        settings.setdefault("size", None)
    if settings.get("objective", "edm") != "edm":
        settings.setdefault("sigma_law", None)
    if "sizes" in settings:
        settings.setdefault("sizes_given", True)
    steps = settings.pop("steps", base.steps)
    config = replace(base, **settings, steps=None)
    if steps is not None and "epochs" not in settings:
        _check_int("steps", steps, 1)
        per_epoch = math.ceil(config.samples_per_epoch / config.batch_size)
        config = replace(config, epochs=math.ceil(steps / per_epoch))
    return replace(config, steps=steps)


def stream_seeds(seed: int) -> dict[str, int]:
    """Every random stream of a sweep, derived from the root ``seed`` by name.

    The networks of A and B start from different initialisations (their agreement must not
    come from shared weights); A and B share the initial noise of the sampler and its injected
    noise; the two evaluation passes (training rows, held-out images) draw their own noise.
    The family's images and splits use the root seed itself.
    """
    return {
        "network_A": derive_seed(seed, "network", "A"),
        "network_B": derive_seed(seed, "network", "B"),
        "initial_noise": derive_seed(seed, "initial-noise"),
        "injected_noise": derive_seed(seed, "injected-noise"),
        "training_rows": derive_seed(seed, "training-rows"),
        "held_out": derive_seed(seed, "held-out"),
        "local_score": derive_seed(seed, "local-score"),
    }


def choose_sizes(
    requested: tuple[int, ...], explicit: bool, capacity: float, family: str
) -> tuple[tuple[int, ...], str | None]:
    """Set sizes within the family's A/B capacity, and a note when defaults were capped.

    Explicit sizes above the capacity are an error; default ones are dropped and the
    capacity itself becomes the largest size.
    """
    if requested[-1] <= capacity:
        return requested, None
    cap = int(capacity)
    if cap < 1:
        raise ValueError(
            f"family '{family}' holds no image for the disjoint sets A and B: give a folder "
            "with more images (--faces-dir) or another family"
        )
    if explicit:
        raise ValueError(
            f"--sizes-n asks for n = {requested[-1]} but family '{family}' holds at most {cap} "
            f"images in each of the disjoint sets A and B: use n <= {cap}"
        )
    sizes = tuple(sorted({n for n in requested if n <= cap} | {cap}))
    note = (
        f"family '{family}' holds {cap} images in each of A and B: sizes capped to "
        f"{', '.join(map(str, sizes))} (asked {', '.join(map(str, requested))})"
    )
    return sizes, note
