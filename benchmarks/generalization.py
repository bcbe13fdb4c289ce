"""Memorization to generalization: networks on n images, two disjoint training sets per n.

``python -m benchmarks.generalization`` trains (through the run store, so reruns are free)
one network on A_n and one on B_n for every set size n, with the same number of training
samples per epoch for every n (Kadkhodaie, Guth, Simoncelli, Mallat, ICLR 2024, fig. 1-2),
then measures: train and test PSNR against input PSNR on a σ grid (the memorization gap);
the KL integral of each network against the memorizer of its own training set on its
training images (the memorizer is the exact optimal denoiser of that law); K samples of
each network from the same initial and injected noise; each sample's nearest training
image in its own set and in the other one (raw cosine and mean-removed correlation), the
similarity of the A and B samples; and the quality of the samples (distance to the nearest
held-out image against the held-out images' own, and for disks the residual of the best
disk fit). Writes ``results.json``, ``summary.csv``, ``samples.npz`` and PNG plots under
``--out`` (and ``order.txt``, the deterministic face order, for faces); prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks.cli import Parser, parse_sigmas
from benchmarks.evaluation import psnr, risk_curves
from benchmarks.generalization_plots import (
    PARTS,
    kl_index,
    median,
    mid_index,
    plot_curves,
    plot_grid,
    plot_histograms,
    plot_psnr,
)
from benchmarks.output import provenance, write_csv, write_json
from models.checkpoint import atomic_write
from models.memorizer import Memorizer
from models.objectives import SIGMA_LAWS, sigma_range
from models.protocol import Denoiser
from models.runstore import RunStore
from models.samplers import (
    initial_noise,
    log_sigmas_schedule,
    probability_flow,
    stochastic_ascent,
)
from models.training import TrainConfig
from models.wiener import Wiener
from synthetic import FAMILY_NAMES, get_family
from synthetic.disks import DISK_PARAMETERS, render_disks
from synthetic.family import Family
from theory.kl import kl_curve
from theory.similarity import MEASURES, nearest_neighbours, paired_similarity

DEFAULT_SIZES = (1, 10, 100, 1000, 10_000)


@dataclass(frozen=True)
class Profile:
    """Defaults of one kind of run; all but ``train_sigma`` can be set on the command line.

    Training: ``batch_size * steps`` images per network (``steps = epochs *
    samples_per_epoch / batch_size``), the same for every n; the learning rate is halved
    every ``lr_step_epochs`` epochs. ``train_sigma`` is the (sigma_min, sigma_max) range of
    the objective's noise law (sigma_min unused by the paper's law); ``sigma_law`` picks the
    ``edm`` objective's law (one of :data:`models.objectives.SIGMA_LAWS`; None: the
    objective's default).
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


# Sized by measurement (DESIGN §6-§7; 16-channel UNet with 3 blocks, batch 64, about 35 ms a
# step at 16x16 on 2 cores). The family is Gaussian fields: simple families saturate every
# similarity (a new disk's nearest training disk has raw cosine 0.998 and correlation 0.96
# at n = 1000, a new 16x16 cartoon's 0.988 and 0.96), so no measure can tell a generalizing
# network from a memorizing one there; a held-out field's nearest training field has
# correlation 0.42 at n = 1000, and the exact optimum gives the KL from the true law. The
# objective decides both ends (3000 steps, gaussian 16x16): EDM's log-normal law memorizes
# one image (samples at cosine >= 0.99, median correlation 0.93-0.95) and generalizes at
# n = 1000 (A/B correlation 0.88 against 0.43 to the nearest training image); the
# log-uniform law generalizes too (0.95) but does not memorize (cosine down to 0.955); the
# paper's law leaves a floor at small sigma (test PSNR below the input's at sigma = 0.03).
# At 3000 steps the n = 1 networks sat at the 0.99 line (minimum 0.9896 in one run), so the
# default trains 6000 steps (minimum 0.9954, median correlation 0.976; about 30 minutes).
_DEFAULT = Profile(
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
    "paper": Profile(
        family="faces",
        size=80,
        sizes=DEFAULT_SIZES + (100_000,),
        channels=64,
        blocks=3,
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


def _parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = sorted({int(float(v)) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read set sizes {text!r}: use a comma-separated list such as 1,10,100"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"set sizes must be integers >= 1 (got {text!r})")
    return tuple(sizes)


def build_parser() -> Parser:
    p = Parser(prog="python -m benchmarks.generalization", description=__doc__.split("\n\n")[1])
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="defaults for a CPU smoke run (quick), the CPU sweep (default) or the "
        "paper's 80x80 faces with its UNet, for a GPU (paper)",
    )
    p.add_argument("--quick", action="store_true", help="alias of --profile quick")
    p.add_argument(
        "--family",
        default=None,
        help=f"image family, one of {', '.join(FAMILY_NAMES)} (default: the profile's)",
    )
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument(
        "--sizes-n",
        type=_parse_sizes,
        default=None,
        help="training-set sizes n, comma-separated (default: the profile's, capped "
        "by the images a finite family holds)",
    )
    p.add_argument(
        "--faces-dir",
        default=None,
        help="faces: folder of aligned face images (e.g. CelebA img_align_celeba); "
        "default the embedded LFW subset",
    )
    g = p.add_argument_group("training (identical for every n: equal exposure)")
    g.add_argument("--channels", type=int, default=None, help="UNet channels at the top level")
    g.add_argument("--blocks", type=int, default=None, help="UNet down-sampling levels")
    g.add_argument(
        "--objective",
        choices=("paper", "kl", "edm"),
        default=None,
        help="training objective (models.objectives)",
    )
    g.add_argument(
        "--sigma-law",
        choices=SIGMA_LAWS,
        default=None,
        help="edm objective: log-uniform sigma over the training range, EDM's log-normal "
        "(ln sigma ~ N(-1.89, 1.2^2) for [0, 1] images), the paper's sigma_max u^2 cut at "
        "the range's lower end, or mixed (half log-uniform, half the cut paper law)",
    )
    g.add_argument("--batch-size", type=int, default=None, help="images per step")
    g.add_argument(
        "--samples-per-epoch",
        type=int,
        default=None,
        help="training images shown per epoch, whatever n (the paper: 250000)",
    )
    g.add_argument("--epochs", type=int, default=None, help="epochs per network")
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps per network (sets the epochs unless --epochs is given, then caps)",
    )
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    g.add_argument(
        "--lr-step-epochs",
        type=int,
        default=None,
        help="halve the learning rate every this many epochs",
    )
    g.add_argument("--runs", default="runs", help="run store root (trained networks are reused)")
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--sigmas",
        type=parse_sigmas,
        default=None,
        help="noise levels for the PSNR and KL curves: lo:hi:n log-spaced or a,b,c",
    )
    g.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="training-image rows evaluated per network (a small set is repeated)",
    )
    g.add_argument(
        "--n-test", type=int, default=None, help="held-out images, capped by what the family holds"
    )
    g = p.add_argument_group("sampling (A and B share the initial and the injected noise)")
    g.add_argument("--n-samples", type=int, default=None, help="samples K per network")
    g.add_argument(
        "--sampler",
        choices=("ascent", "flow"),
        default="ascent",
        help="stochastic coarse-to-fine ascent or deterministic probability flow",
    )
    g.add_argument("--h0", type=float, default=0.01, help="ascent: first step size")
    g.add_argument(
        "--beta",
        type=float,
        default=0.5,
        help="ascent: noise-reduction fraction kept (1: no injected noise)",
    )
    g.add_argument(
        "--sigma0",
        type=float,
        default=1.0,
        help="standard deviation of the initial noise, centred at 0.5",
    )
    g.add_argument("--sigma-final", type=float, default=0.01, help="final noise level")
    g.add_argument("--max-steps", type=int, default=1000, help="ascent: cap on steps")
    g.add_argument("--flow-steps", type=int, default=50, help="flow: levels of the schedule")
    g.add_argument(
        "--measure",
        choices=MEASURES,
        default="cosine",
        help="similarity that picks the nearest training image (both are reported)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of images, splits, training, noise")
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda (default: the profile's)"
    )
    p.add_argument("--out", default="out/generalization", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


@dataclass(frozen=True)
class Setup:
    """Everything validated before any work: family, sizes, training configurations."""

    family: Family
    sizes: tuple[int, ...]
    capacity: float
    capped: str | None
    profile: Profile
    configs: dict[str, TrainConfig]
    sigmas: np.ndarray
    n_test: int
    device: torch.device
    optimum: Denoiser | None


def resolve_profile(args: argparse.Namespace) -> Profile:
    """The profile named by --profile/--quick with every explicit option applied."""
    if args.quick and args.profile not in ("default", "quick"):
        raise ValueError(f"--quick is the quick profile: drop it or --profile {args.profile}")
    name = "quick" if args.quick else args.profile
    profile = PROFILES[name]
    family = args.family or profile.family
    # The profile's size is for its own family; another family keeps its own default.
    size = (
        args.size if args.size is not None else (profile.size if family == profile.family else None)
    )
    overrides = {
        "family": family,
        "size": size,
        "sizes": args.sizes_n,
        "channels": args.channels,
        "blocks": args.blocks,
        "objective": args.objective,
        "sigma_law": args.sigma_law,
        "batch_size": args.batch_size,
        "samples_per_epoch": args.samples_per_epoch,
        "epochs": args.epochs,
        "lr_step_epochs": args.lr_step_epochs,
        "n_samples": args.n_samples,
        "n_eval": args.n_eval,
        "n_test": args.n_test,
        "device": args.device,
    }
    profile = replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    if args.objective not in (None, "edm") and args.sigma_law is None:
        # The profile's edm law does not carry over to another objective.
        profile = replace(profile, sigma_law=None)
    if args.steps is not None and args.epochs is None and args.steps >= 1:
        # A step budget alone sets as many epochs as it needs (--steps still caps the last).
        per_epoch = math.ceil(profile.samples_per_epoch / profile.batch_size)
        profile = replace(profile, epochs=math.ceil(args.steps / per_epoch))
    return profile


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


def setup(args: argparse.Namespace) -> Setup:
    """Validate every option and build the family and training configurations (no work)."""
    profile = resolve_profile(args)
    if profile.family not in FAMILY_NAMES:
        raise ValueError(
            f"unknown family {profile.family!r}; choose one of: {', '.join(FAMILY_NAMES)}"
        )
    params = {"folder": args.faces_dir} if profile.family in ("faces", "shuffled_faces") else {}
    if args.faces_dir is not None and not params:
        raise ValueError(f"--faces-dir needs --family faces (got {profile.family})")
    for name, value, low in (
        ("--n-samples", profile.n_samples, 1),
        ("--n-eval", profile.n_eval, 2),
        ("--n-test", profile.n_test, 2),
        ("--flow-steps", args.flow_steps, 2),
        ("--max-steps", args.max_steps, 1),
        ("--seed", args.seed, 0),
        ("--channels", profile.channels, 1),
        ("--blocks", profile.blocks, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be an integer >= {low} (got {value})")
    if not 0 < args.h0 <= 1 or not 0 < args.beta <= 1:
        raise ValueError(f"--h0 and --beta must lie in (0, 1] (got {args.h0}, {args.beta})")
    if not 0 < args.sigma_final < args.sigma0:
        raise ValueError(
            f"need 0 < --sigma-final < --sigma0 (got {args.sigma_final}, {args.sigma0}); "
            "sigma must be > 0, the paper uses 0.01 and 1"
        )
    try:
        device = torch.device(profile.device)
    except RuntimeError:
        raise ValueError(f"unknown device {profile.device!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked but no CUDA device is available: use --device cpu")
    family = get_family(profile.family, size=profile.size, seed=args.seed, **params)
    factor = 2**profile.blocks
    if family.size % factor:
        raise ValueError(
            f"image size {family.size} is not divisible by 2**blocks = {factor}: choose --size "
            f"a multiple of {factor} or fewer --blocks"
        )
    capacity = min(family.capacity("A"), family.capacity("B"))
    sizes, capped = choose_sizes(profile.sizes, args.sizes_n is not None, capacity, family.name)
    objective_params = sigma_range(profile.objective, *profile.train_sigma, profile.sigma_law)
    configs = {
        part: TrainConfig(
            network="unet",
            network_params={"channels": profile.channels, "blocks": profile.blocks},
            objective=profile.objective,
            objective_params=objective_params,
            lr=args.lr,
            lr_step_epochs=profile.lr_step_epochs,
            batch_size=profile.batch_size,
            samples_per_epoch=profile.samples_per_epoch,
            epochs=profile.epochs,
            max_steps=args.steps,
            # Different initialisations for A and B: agreement must not come from shared weights.
            seed=args.seed + offset,
            device=str(device),
        )
        for offset, part in enumerate(PARTS)
    }
    sigmas = args.sigmas if args.sigmas is not None else parse_sigmas(profile.sigmas)
    n_test = int(min(profile.n_test, family.capacity("test")))
    if n_test < 2:
        raise ValueError(f"family '{family.name}' holds {n_test} held-out images; need >= 2")
    return Setup(
        family,
        sizes,
        capacity,
        capped,
        profile,
        configs,
        np.asarray(sigmas, dtype=float),
        n_test,
        device,
        exact_optimum(family),
    )


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def training_rows(train: torch.Tensor, n_eval: int) -> torch.Tensor:
    """Rows on which a network is scored on its training law (uniform over ``train``).

    The first ``n_eval`` images when there are more; otherwise every image repeated the same
    number of times (``ceil(n_eval / n)``), so each row is a draw from the uniform law.
    """
    n = train.shape[0]
    if n >= n_eval:
        return train[:n_eval]
    return train.repeat_interleave(math.ceil(n_eval / n), dim=0)


def exact_optimum(family: Family) -> Denoiser | None:
    """The optimal denoiser of the family's own law when it is cheap and exact, else None.

    Gaussian fields: the stationary Wiener filter of the true spectrum (the posterior mean).
    """
    if family.name == "gaussian":
        return Wiener.stationary(family.mean, torch.as_tensor(family.spectrum()), name="optimum")
    return None


def denoising_curves(
    net: Denoiser,
    train: torch.Tensor,
    test: torch.Tensor,
    sigma: np.ndarray,
    n_eval: int,
    seed: int,
    progress: bool,
    optimum: Denoiser | None = None,
) -> dict:
    """Train/test PSNR of ``net`` and of the memorizer of ``train``, and the KL between them.

    On training rows the memorizer is the exact optimal denoiser of the training law p_n,
    so ``int (SSE_net - SSE_mem) s^-3 ds`` from sigma0 up is the KL between the
    sigma0-smoothed p_n and the law whose optimal denoiser the network is (a bound on the
    KL of the network's sampler when it is not exactly optimal for some law), with no
    approximation but Monte Carlo. With ``optimum``, the optimal denoiser of the family's
    law p, the same integral on held-out images against it is the KL from p: the distance
    from generalizing (``kl_test``), beside the distance from memorizing (``kl``).
    """
    memorizer = Memorizer(train)
    denoisers = {"network": net, "memorizer": memorizer}
    rows = training_rows(train, n_eval)
    on_train = risk_curves(
        denoisers, rows, sigma, _seed(seed, 3), progress=progress, desc="train PSNR"
    )
    if optimum is not None:
        denoisers["optimum"] = optimum.to(test.device)
    on_test = risk_curves(
        denoisers, test, sigma, _seed(seed, 4), progress=progress, desc="test PSNR"
    )
    kl = kl_curve(sigma, (on_train.sse["network"] - on_train.sse["memorizer"]).T)
    extra = {}
    if optimum is not None:
        kl_test = kl_curve(sigma, (on_test.sse["network"] - on_test.sse["optimum"]).T)
        extra = {
            "optimum_test_psnr": psnr(on_test.mse("optimum")),
            "kl_test": {
                **kl_test.to_dict(),
                "kind": "exact_vs_optimum",
                "units": "nats per image",
                "note": "KL(p_sigma0 || q_net,sigma0) on held-out images; p = the family's "
                "law, whose optimal denoiser is known exactly",
            },
        }
    return {
        "train_psnr": psnr(on_train.mse("network")),
        "test_psnr": psnr(on_test.mse("network")),
        # The memorizer of one image is exact on it: mse 0, PSNR inf (null in JSON).
        "memorizer_train_psnr": psnr(on_train.mse("memorizer")),
        "memorizer_test_psnr": psnr(on_test.mse("memorizer")),
        "train_mse": on_train.mse("network"),
        "train_mse_se": on_train.mse_se("network"),
        "test_mse": on_test.mse("network"),
        "test_mse_se": on_test.mse_se("network"),
        "n_train_rows": rows.shape[0],
        "kl": {
            **kl.to_dict(),
            "kind": "exact_vs_memorizer",
            "units": "nats per image",
            "note": "KL(p_n,sigma0 || q_net,sigma0) on training rows; p_n = uniform law of "
            "the training set, whose optimal denoiser is the memorizer",
        },
        **extra,
    }


def draw_samples(net: Denoiser, y0: torch.Tensor, args: argparse.Namespace, seed: int) -> dict:
    """Samples of ``net`` from ``y0``; injected noise from a generator seeded with ``seed``.

    Two calls with the same ``y0`` and ``seed`` inject the same noise at every step both
    take, whatever the network (``stochastic_ascent``'s noise-sharing rule).
    """
    with torch.no_grad():
        if args.sampler == "flow":
            sigmas = log_sigmas_schedule(args.flow_steps, args.sigma0, args.sigma_final)
            x = probability_flow(net, y0, sigmas, progress=not args.no_progress)
            return {
                "x": x,
                "steps": [args.flow_steps - 1] * y0.shape[0],
                "diverged": (~finite_rows(x)).nonzero().flatten().tolist(),
            }
        generator = torch.Generator(device=y0.device).manual_seed(seed)
        result = stochastic_ascent(
            net,
            y0,
            h0=args.h0,
            beta=args.beta,
            sigma_final=args.sigma_final,
            sigma0=args.sigma0,
            generator=generator,
            max_steps=args.max_steps,
            progress=not args.no_progress,
        )
    return {
        "x": result.x,
        "steps": result.steps.tolist(),
        "final_sigma": result.sigma.tolist(),
        "diverged": (~finite_rows(result.x)).nonzero().flatten().tolist(),
        "converged": bool((result.sigma <= args.sigma_final).all()),
    }


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Boolean (B,): the images with no inf or NaN pixel (a diverged sampler gives NaN)."""
    return torch.isfinite(x.flatten(1)).all(1)


def nearest_training(samples: torch.Tensor, train: torch.Tensor, measure: str) -> dict:
    """Each sample's nearest training image (by ``measure``) and both similarities to it.

    A diverged (non-finite) sample gets index -1 and similarity NaN.
    """
    finite = finite_rows(samples)
    index, _ = nearest_neighbours(samples.nan_to_num(0.0, 0.0, 0.0), train, measure)
    index = torch.where(finite, index, -1)
    nearest = train[index.clamp_min(0).cpu()].to(samples)
    return {
        "index": index.tolist(),
        **{m: paired_similarity(samples, nearest, m).tolist() for m in MEASURES},
    }


def nearest_rms(
    queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False
) -> np.ndarray:
    """Root-mean-square pixel distance from each query to its nearest reference."""
    q, r = queries.flatten(1).double(), references.flatten(1).double().to(queries.device)
    dist = torch.cdist(q, r)
    if exclude_self:
        dist.fill_diagonal_(math.inf)
    return (dist.min(1).values / math.sqrt(q.shape[1])).cpu().numpy()


def disk_fit_rms(images: torch.Tensor, family: Family, coarse: int = 33) -> np.ndarray:
    """RMS residual of the best disk image (a distance to the disk manifold) per image.

    Centre and radius on a grid over the prior box (``coarse`` values per centre
    coordinate, a quarter as many for the radius), refined by a local grid 4x finer; for
    each candidate geometry the intensities (fg, bg) solve linear least squares
    ``x ~ bg (1 - m) + fg m`` (m the anti-aliased coverage), unconstrained, so the residual
    slightly underestimates the distance to the manifold (fg, bg in [0, 1]). Frozen
    parameters keep their value. A clean disk scores the grid-resolution floor.
    """
    prior = family.prior
    y = images.flatten(1).double().cpu().numpy()
    counts = (coarse, coarse, max(3, coarse // 4))
    axes = [
        np.linspace(prior.low[i], prior.high[i], k)
        if DISK_PARAMETERS[i] in prior.free
        else np.array([prior.default[i]])
        for i, k in enumerate(counts)
    ]
    steps = [a[1] - a[0] if len(a) > 1 else 0.0 for a in axes]
    best, geometry = _best_disk(
        y, np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), family
    )
    out = np.empty(len(y))
    offsets = np.linspace(-1, 1, 9)
    for k in range(len(y)):
        local = [
            np.clip(geometry[k, i] + steps[i] * offsets, prior.low[i], prior.high[i])
            if steps[i]
            else np.array([geometry[k, i]])
            for i in range(3)
        ]
        grid = np.stack(np.meshgrid(*local, indexing="ij"), -1).reshape(-1, 3)
        out[k] = min(best[k], _best_disk(y[k : k + 1], grid, family)[0][0])
    return np.sqrt(out / y.shape[1])


def _best_disk(
    y: np.ndarray, geometry: np.ndarray, family: Family
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest squared residual over candidate (cx, cy, r) per image, and its geometry."""
    prior = family.prior
    fg_free, bg_free = ("fg" in prior.free), ("bg" in prior.free)
    best = np.full(len(y), np.inf)
    arg = np.zeros((len(y), 3))
    for start in range(0, len(geometry), 256):
        g = geometry[start : start + 256]
        theta = np.column_stack([g, np.ones(len(g)), np.zeros(len(g))])
        m = render_disks(theta, family.size).reshape(len(g), -1)  # (M, d) coverage
        columns, fixed = [], np.zeros_like(m)
        for free, value, column in (
            (fg_free, prior.default[3], m),
            (bg_free, prior.default[4], 1 - m),
        ):
            if free:
                columns.append(column)
            else:
                fixed += value * column
        target = y[None, :, :] - fixed[:, None, :]  # (M, K, d)
        if columns:
            design = np.stack(columns, -1)  # (M, d, p)
            gram = design.transpose(0, 2, 1) @ design  # (M, p, p)
            proj = np.einsum("mdp,mkd->mkp", design, target)
            coef = np.linalg.solve(gram[:, None], proj[..., None])[..., 0]
            residual = (target**2).sum(-1) - (coef * proj).sum(-1)
        else:
            residual = (target**2).sum(-1)
        j = residual.argmin(0)
        value = residual[j, np.arange(len(y))]
        better = value < best
        best = np.where(better, value, best)
        arg[better] = g[j[better]]
    return np.maximum(best, 0.0), arg


def sample_quality(samples: torch.Tensor, test: torch.Tensor, family: Family) -> dict:
    """Distance of samples to the nearest held-out image (and to the disk manifold).

    NaN for a diverged sample.
    """
    finite = finite_rows(samples).cpu().numpy()
    good = samples[torch.from_numpy(finite).to(samples.device)]
    out = {"nearest_test_rms": np.full(len(finite), np.nan)}
    out["nearest_test_rms"][finite] = nearest_rms(good, test) if len(good) else []
    if family.name == "disks":
        out["disk_fit_rms"] = np.full(len(finite), np.nan)
        out["disk_fit_rms"][finite] = disk_fit_rms(good, family) if len(good) else []
    return out


def run_size(
    n: int,
    s: Setup,
    args: argparse.Namespace,
    store: RunStore,
    test: torch.Tensor,
    y0: torch.Tensor,
    bar: tqdm,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train (or load) the A and B networks of one set size and measure them."""
    progress = not args.no_progress
    train = {part: s.family.images(part, n) for part in PARTS}
    nets, networks, curves, samples, draws = {}, {}, {}, {}, {}
    for part in PARTS:
        bar.set_description(f"n={n}: network {part}")
        data = {"family": s.family.params, "part": part, "n": n}
        config = s.configs[part]
        run = store.run_dir(config, data, tuple(train[part].shape))
        reused = (run / "metrics.json").exists()
        nets[part] = store.get_or_train(config, data, train[part].to(s.device), progress)
        metrics = json.loads((run / "metrics.json").read_text())
        history = metrics["history"]
        networks[part] = {
            "run_dir": str(run),
            "reused": reused,
            "seed": config.seed,
            "train_wall_s": metrics["train_wall_s"],
            "parameters": metrics["parameters"],
            "steps": history[-1]["step"],
            "images_seen": history[-1]["step"] * config.batch_size,
            "final_loss": history[-1]["loss"],
            "final_train_psnr": history[-1]["psnr"],
        }
        bar.update()
    bar.set_description(f"n={n}: evaluating")
    for part in PARTS:
        device_train = train[part].to(s.device)
        curves[part] = denoising_curves(
            nets[part],
            device_train,
            test,
            s.sigmas,
            s.profile.n_eval,
            args.seed,
            progress,
            optimum=s.optimum,
        )
        draws[part] = draw_samples(nets[part], y0, args, _seed(args.seed, 2))
        samples[part] = draws[part].pop("x")
    similarity: dict = {"search_measure": args.measure}
    for part, other in (("A", "B"), ("B", "A")):
        similarity[part] = {
            "own": nearest_training(samples[part], train[part], args.measure),
            "other": nearest_training(samples[part], train[other], args.measure),
        }
        if s.family.name in ("faces", "shuffled_faces"):
            for key, source in (("own", part), ("other", other)):
                names = s.family.sources(source, n)
                similarity[part][key]["source"] = [
                    names[i] if i >= 0 else None for i in similarity[part][key]["index"]
                ]
    similarity["AB"] = {
        m: paired_similarity(samples["A"], samples["B"], m).tolist() for m in MEASURES
    }
    similarity["medians"] = medians(similarity)
    quality = {part: sample_quality(samples[part], test, s.family) for part in PARTS}
    bar.update()
    record = {
        "n": n,
        "networks": networks,
        "input_psnr": psnr(s.sigmas**2),
        "denoising": curves,
        "sampling": {"sigma_final": args.sigma_final, **draws},
        "similarity": similarity,
        "quality": quality,
    }
    nearest = {}
    for part in PARTS:
        index = torch.tensor(similarity[part]["own"]["index"])
        nearest[part] = train[part][index.clamp_min(0)]
        nearest[part][index < 0] = math.nan  # a diverged sample has no nearest image
    return record, {
        "A": samples["A"].cpu(),
        "B": samples["B"].cpu(),
        "nearest_A": nearest["A"],
        "nearest_B": nearest["B"],
    }


def medians(similarity: dict) -> dict:
    """Median similarities: own/other nearest training image per network, and A vs B."""
    out = {}
    for m in MEASURES:
        for part in PARTS:
            for key in ("own", "other"):
                out[f"{key}_{part}_{m}"] = median(similarity[part][key][m])
        out[f"AB_{m}"] = median(similarity["AB"][m])
        out[f"own_{m}"] = median(similarity["A"]["own"][m] + similarity["B"]["own"][m])
    return out


def expectations(runs: list[dict], reference: dict) -> dict:
    """The issue's measured expectations, as numbers and flags (reported, not enforced).

    At n = 1 every sample's nearest-training cosine >= 0.99 (memorized); at the largest n the
    median A/B cosine >= 0.9 and above the median nearest-training cosine (A/B agreement).
    Agreement alone is not generalization: two untrained networks agree trivially (DESIGN
    §6), so the sample quality at the largest n is given beside it, as the ratio of the
    samples' median distance to the nearest held-out image to the held-out images' own.
    """
    out: dict = {}
    first = runs[0]
    if first["n"] == 1:
        cos = np.array([c for p in PARTS for c in first["similarity"][p]["own"]["cosine"]])
        finite = np.isfinite(cos)
        out["n1_min_nearest_cosine"] = float(cos[finite].min()) if finite.any() else None
        out["n1_diverged"] = int((~finite).sum())
        out["n1_memorized"] = bool(finite.all() and cos.min() >= 0.99)
    last = runs[-1]
    med = last["similarity"]["medians"]
    out["largest_n"] = last["n"]
    for m in MEASURES:
        out[f"largest_n_median_AB_{m}"] = med[f"AB_{m}"]
        out[f"largest_n_median_nearest_{m}"] = med[f"own_{m}"]
        out[f"largest_n_AB_minus_nearest_{m}"] = med[f"AB_{m}"] - med[f"own_{m}"]
    out["largest_n_AB_agree"] = med["AB_cosine"] >= 0.9 and med["AB_cosine"] > med["own_cosine"]
    quality = [last["quality"][p] for p in PARTS]
    rms = median(np.concatenate([q["nearest_test_rms"] for q in quality]))
    out["largest_n_quality_ratio"] = float(rms / reference["median_nearest_test_rms"])
    if "disk_fit_rms" in quality[0]:
        fit = np.concatenate([q["disk_fit_rms"] for q in quality])
        out["largest_n_median_disk_fit_rms"] = median(fit)
    return out


def summary_rows(
    runs: list[dict], sigma: np.ndarray, sigma_final: float
) -> tuple[list[str], list[list]]:
    """One row per n: PSNR at the middle sigma, KL from the sampler's last sigma, median
    similarities, sample quality."""
    j, i = mid_index(sigma), kl_index(sigma, sigma_final)
    header = [
        "n",
        "train_psnr_A",
        "train_psnr_B",
        "test_psnr_A",
        "test_psnr_B",
        "kl_A",
        "kl_B",
        "kl_test_A",
        "kl_test_B",
        "nearest_cosine",
        "nearest_correlation",
        "AB_cosine",
        "AB_correlation",
        "sample_test_rms",
        "disk_fit_rms",
        "converged",
        "diverged",
    ]
    rows = []
    for r in runs:
        c, med = r["denoising"], r["similarity"]["medians"]
        q = r["quality"]
        rms = np.concatenate([q[p]["nearest_test_rms"] for p in PARTS])
        fit = (
            median(np.concatenate([q[p]["disk_fit_rms"] for p in PARTS]))
            if "disk_fit_rms" in q["A"]
            else float("nan")
        )
        rows.append(
            [
                r["n"],
                *(float(c[p][k][j]) for k in ("train_psnr", "test_psnr") for p in PARTS),
                *(float(c[p]["kl"]["value"][i]) for p in PARTS),
                *(
                    float(c[p]["kl_test"]["value"][i]) if "kl_test" in c[p] else math.nan
                    for p in PARTS
                ),
                med["own_cosine"],
                med["own_correlation"],
                med["AB_cosine"],
                med["AB_correlation"],
                median(rms),
                float(fit),
                converged_fraction(r["sampling"]),
                sum(len(r["sampling"][p]["diverged"]) for p in PARTS),
            ]
        )
    return header, rows


def converged_fraction(sampling: dict) -> float:
    """Fraction of the A and B samples whose ascent reached sigma_final (1 for the flow)."""
    sigma = [v for p in PARTS for v in sampling[p].get("final_sigma", [])]
    if not sigma:
        return 1.0
    return float(np.mean(np.asarray(sigma) <= sampling["sigma_final"]))


def print_table(result: dict, header: list[str], rows: list[list]) -> None:
    sigma = np.asarray(result["sigma"])
    j, i = mid_index(sigma), kl_index(sigma, result["sampler"]["sigma_final"])
    ref = result["test_reference"]
    print(
        f"\n{result['family']['name']} {result['family']['size']}x{result['family']['size']}: "
        f"PSNR at σ = {sigma[j]:.3g} (input {psnr(sigma[j] ** 2):.1f} dB); KL from σ0 = "
        f"{sigma[i]:.3g} (nats; the sampler's last σ) vs the memorizer on training images and vs "
        "the exact optimum "
        "on held-out ones (KL test, when known); medians over samples (nearest = own set)"
    )
    print(
        f"{'n':>6} {'train A/B':>13} {'test A/B':>13} {'KL A/B':>17} {'KL test A/B':>17} "
        f"{'near cos':>8} "
        f"{'near corr':>9} {'A/B cos':>8} {'A/B corr':>8} {'rms→test':>8} {'disk fit':>8} "
        f"{'conv':>5} {'div':>4}"
    )
    for row in rows:
        (n, tra, trb, tea, teb, kla, klb, kta, ktb, ncos, ncorr, abcos, abcorr) = row[:13]
        rms, fit, conv, div = row[13:]
        print(
            f"{n:>6d} {tra:6.2f}/{trb:6.2f} {tea:6.2f}/{teb:6.2f} {kla:8.3g}/{klb:8.3g} "
            f"{kta:8.3g}/{ktb:8.3g} "
            f"{ncos:8.3f} {ncorr:9.3f} {abcos:8.3f} {abcorr:8.3f} {rms:8.3g} {fit:8.3g} "
            f"{conv:5.2f} {div:4d}"
        )
    print(
        "conv: fraction of samples whose ascent reached sigma_final; div: diverged samples "
        "(non-finite, left out of the medians)"
    )
    line = (
        f"held-out images: median rms to the nearest other held-out image "
        f"{ref['median_nearest_test_rms']:.4f}"
    )
    if "median_disk_fit_rms" in ref:
        line += f", disk-fit rms of clean disks {ref['median_disk_fit_rms']:.4f}"
    print(line)
    e = result["expectations"]
    if "n1_memorized" in e:
        low = e["n1_min_nearest_cosine"]
        print(
            f"n = 1: min nearest-training cosine {math.nan if low is None else low:.4f} over "
            f"the finite samples, {e['n1_diverged']} diverged "
            f"({'memorized' if e['n1_memorized'] else 'NOT memorized'}: all >= 0.99 expected)"
        )
    print(
        f"n = {e['largest_n']}: median A/B cosine {e['largest_n_median_AB_cosine']:.3f} vs "
        f"nearest-training {e['largest_n_median_nearest_cosine']:.3f}; correlation "
        f"{e['largest_n_median_AB_correlation']:.3f} vs "
        f"{e['largest_n_median_nearest_correlation']:.3f} "
        f"({'A/B agree' if e['largest_n_AB_agree'] else 'A/B do NOT agree'}: "
        "A/B cosine >= 0.9 and above nearest expected)"
    )
    quality = (
        f"sample quality at n = {e['largest_n']}: distance to held-out "
        f"{e['largest_n_quality_ratio']:.2f}x the held-out images' own"
    )
    if "largest_n_median_disk_fit_rms" in e:
        quality += (
            f"; disk-fit rms {e['largest_n_median_disk_fit_rms']:.4f} (clean disks "
            f"{ref['median_disk_fit_rms']:.4f})"
        )
    print(quality + " (agreement of poor samples is not generalization)")
    if result["capped"]:
        print(f"note: {result['capped']}")


def run(args: argparse.Namespace, s: Setup) -> dict:
    """The whole sweep; writes every output file and returns the results dictionary."""
    start = time.perf_counter()
    progress = not args.no_progress
    out = Path(args.out)
    store = RunStore(args.runs)
    test = s.family.images("test", s.n_test).to(s.device)
    generator = torch.Generator(device=s.device).manual_seed(_seed(args.seed, 1))
    y0 = initial_noise(
        s.profile.n_samples, s.family.size, args.sigma0, mean=0.5, generator=generator
    )
    reference = {"nearest_test_rms": nearest_rms(test, test, exclude_self=True)}
    reference["median_nearest_test_rms"] = float(np.median(reference["nearest_test_rms"]))
    if s.family.name == "disks":
        reference["disk_fit_rms"] = disk_fit_rms(test[:32], s.family)
        reference["median_disk_fit_rms"] = float(np.median(reference["disk_fit_rms"]))
    runs, images = [], {}
    with tqdm(
        total=3 * len(s.sizes),
        desc="generalization",
        disable=not progress,
        unit="stage",
        dynamic_ncols=True,
    ) as bar:
        for n in s.sizes:
            record, images[n] = run_size(n, s, args, store, test, y0, bar)
            runs.append(record)
    p = s.profile
    result = {
        "experiment": "memorization to generalization",
        "profile": "quick" if args.quick else args.profile,
        "settings": asdict(p),
        "family": s.family.params,
        "sizes": list(s.sizes),
        "capacity_per_part": s.capacity,
        "capped": s.capped,
        "equal_exposure": "every network sees the same number of training images "
        "(samples_per_epoch * epochs, capped by --steps), whatever n",
        "train": {part: c.to_dict() for part, c in s.configs.items()},
        "sampler": {
            "name": args.sampler,
            "h0": args.h0,
            "beta": args.beta,
            "sigma0": args.sigma0,
            "sigma_final": args.sigma_final,
            "max_steps": args.max_steps,
            "flow_steps": args.flow_steps,
            "initial_mean": 0.5,
            "n_samples": p.n_samples,
            "initial_noise_seed": _seed(args.seed, 1),
            "injected_noise_seed": _seed(args.seed, 2),
            "shared": "A and B start from the same y0 and draw injected noise from generators "
            "seeded alike (the same noise at every step both take)",
        },
        "sigma": s.sigmas,
        "n_test": s.n_test,
        "errors": "psnr in dB from per-pixel mse; kl in nats per image; rms per pixel",
        "similarity_measures": "cosine = raw cosine; correlation = cosine of mean-removed images",
        "test_reference": reference,
        "runs": runs,
        "expectations": expectations(runs, reference),
    }
    result.update(provenance(s.device), wall_s=time.perf_counter() - start)
    header, rows = summary_rows(runs, s.sigmas, args.sigma_final)
    if s.family.name in ("faces", "shuffled_faces"):
        order = ("\n".join(s.family.order) + "\n").encode()
        atomic_write(out / "order.txt", lambda f: f.write(order))
        result["order_file"] = "order.txt"
        result["order_note"] = (
            f"faces in the fixed order: the first {s.family.holdout} are "
            "held out, A_n takes the next n, B_n the last n (last first)"
        )
    arrays = {f"{key}_n{n}": v.numpy() for n, d in images.items() for key, v in d.items()}
    atomic_write(
        out / "samples.npz", lambda f: np.savez_compressed(f, y0=y0.cpu().numpy(), **arrays)
    )
    write_csv(out / "summary.csv", header, rows)
    plot_grid(images, out / "grid.png")
    plot_histograms(runs, out / "histograms.png")
    plot_curves(result, out / "curves.png")
    plot_psnr(result, out / "psnr.png")
    write_json(out / "results.json", result)
    print_table(result, header, rows)
    print(
        f"\nwrote {out}/results.json, summary.csv, samples.npz, grid.png, histograms.png, "
        "curves.png, psnr.png" + (", order.txt" if "order_file" in result else "")
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, setup(args))
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
