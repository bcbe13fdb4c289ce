"""The command line of the sweep: parse into a configuration, check it, run, report."""

from __future__ import annotations

import argparse

from benchmarks.cli import Parser, finite_float, parse_sigmas, run_command
from benchmarks.generalization import __doc__ as _DOC
from benchmarks.generalization.config import (
    OBJECTIVES,
    PROFILES,
    SAMPLERS,
    GeneralizationConfig,
    configure,
)
from benchmarks.generalization.prepare import Setup, setup
from benchmarks.generalization.report import print_table, summary_rows, write_outputs
from benchmarks.generalization.sweep import sweep
from models.objectives import SIGMA_LAWS
from synthetic import FAMILY_NAMES
from theory.similarity import MEASURES

_SHARED = PROFILES["default"]  # the defaults every profile shares
# Options whose default is the profile's: (configuration field, argparse dest).
_PROFILE_OPTIONS = (
    ("family", "family"),
    ("size", "size"),
    ("sizes", "sizes_n"),
    ("channels", "channels"),
    ("blocks", "blocks"),
    ("objective", "objective"),
    ("sigma_law", "sigma_law"),
    ("batch_size", "batch_size"),
    ("samples_per_epoch", "samples_per_epoch"),
    ("epochs", "epochs"),
    ("lr_step_epochs", "lr_step_epochs"),
    ("n_samples", "n_samples"),
    ("n_eval", "n_eval"),
    ("n_test", "n_test"),
    ("sigmas", "sigmas"),
    ("device", "device"),
)
# Options with one default for every profile.
_SHARED_OPTIONS = (
    "faces_dir",
    "steps",
    "lr",
    "runs",
    "checkpoint_minutes",
    "sampler",
    "h0",
    "beta",
    "sigma0",
    "sigma_final",
    "max_steps",
    "flow_steps",
    "measure",
    "local_score_images",
    "local_score_train",
    "seed",
    "out",
)


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


def _sigmas(text: str) -> str:
    parse_sigmas(text)  # a readable grid, or a one-line error
    return text


def build_parser() -> Parser:
    """The parser of ``python -m benchmarks.generalization``."""
    p = Parser(prog="python -m benchmarks.generalization", description=_DOC.split("\n\n")[1])
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
        choices=OBJECTIVES,
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
        default=_SHARED.steps,
        help="optimizer steps per network (sets the epochs unless --epochs is given, then caps)",
    )
    g.add_argument("--lr", type=finite_float, default=_SHARED.lr, help="Adam learning rate")
    g.add_argument(
        "--lr-step-epochs",
        type=int,
        default=None,
        help="halve the learning rate every this many epochs",
    )
    g.add_argument(
        "--runs", default=_SHARED.runs, help="run store root (trained networks are reused)"
    )
    g.add_argument(
        "--checkpoint-minutes",
        type=finite_float,
        default=_SHARED.checkpoint_minutes,
        help="minutes of training between checkpoints (also written at every epoch end and on "
        "Ctrl-C; the same command resumes)",
    )
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--sigmas",
        type=_sigmas,
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
        choices=SAMPLERS,
        default=_SHARED.sampler,
        help="stochastic coarse-to-fine ascent or deterministic probability flow",
    )
    g.add_argument("--h0", type=finite_float, default=_SHARED.h0, help="ascent: first step size")
    g.add_argument(
        "--beta",
        type=finite_float,
        default=_SHARED.beta,
        help="ascent: noise-reduction fraction kept (1: no injected noise)",
    )
    g.add_argument(
        "--sigma0",
        type=finite_float,
        default=_SHARED.sigma0,
        help="standard deviation of the initial noise, centred at 0.5",
    )
    g.add_argument(
        "--sigma-final", type=finite_float, default=_SHARED.sigma_final, help="final noise level"
    )
    g.add_argument("--max-steps", type=int, default=_SHARED.max_steps, help="ascent: cap on steps")
    g.add_argument(
        "--flow-steps", type=int, default=_SHARED.flow_steps, help="flow: levels of the schedule"
    )
    g.add_argument(
        "--measure",
        choices=MEASURES,
        default=_SHARED.measure,
        help="similarity that picks the nearest training image (both are reported)",
    )
    g = p.add_argument_group("local score machines (network A against ELS, LS, memorizer)")
    g.add_argument(
        "--local-score-images",
        type=int,
        default=_SHARED.local_score_images,
        help="held-out images on which network A is compared with the machines per σ; 0 "
        "skips the comparison and the ELS samples",
    )
    g.add_argument(
        "--local-score-train",
        type=int,
        default=_SHARED.local_score_train,
        help="training images of the ELS and LS machines (the first of A; ELS costs grow with it)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=_SHARED.seed,
        help="root seed of images, splits, training, noise",
    )
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda (default: the profile's)"
    )
    p.add_argument("--out", default=_SHARED.out, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> GeneralizationConfig:
    """The configuration of parsed arguments: the profile with every explicit option."""
    if args.quick and args.profile not in ("default", "quick"):
        raise ValueError(f"--quick is the quick profile: drop it or --profile {args.profile}")
    settings = {
        field: getattr(args, dest)
        for field, dest in _PROFILE_OPTIONS
        if getattr(args, dest) is not None
    }
    settings.update({name: getattr(args, name) for name in _SHARED_OPTIONS})
    settings["progress"] = not args.no_progress
    return configure("quick" if args.quick else args.profile, **settings)


def run(config: GeneralizationConfig, prepared: Setup | None = None) -> dict:
    """Run the sweep of ``config``, write its files under ``config.out``, print its table."""
    s = setup(config) if prepared is None else prepared
    done = sweep(s)
    names = write_outputs(config.out, done.result, done.images, done.y0, s.family.order)
    print_table(done.result, summary_rows(done.result["runs"], s.sigmas, config.sigma_final))
    print(f"\nwrote {config.out}/{', '.join(names)}")
    return done.result


def main(argv: list[str] | None = None) -> dict:
    """``python -m benchmarks.generalization``: exit status 2 for an option error or a bad
    stored file (before any work), 1 for a fault during the run, 130 for Ctrl-C."""
    return run_command(
        build_parser(), argv, lambda args: setup(config_from_args(args)), lambda s: run(s.config, s)
    )
