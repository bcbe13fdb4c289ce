"""The optimality benchmark's command line: options -> :class:`OptimalityConfig` -> run."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from benchmarks.cli import Parser, finite_float, parse_sigmas, parse_window, run_command
from benchmarks.optimality import measure, report
from benchmarks.optimality.config import PAPER, QUICK, OptimalityConfig, profile
from benchmarks.optimality.plan import Plan, plan
from models.objectives import OBJECTIVES, SIGMA_LAWS
from synthetic import FAMILY_NAMES

DESCRIPTION = (
    "Trains (or loads) a bias-free network on a family's training images and measures, on "
    "held-out images, how far it is from the best reference denoiser and from the optimum, "
    "σ by σ: risk curves, slopes, KL curves, effective dimension."
)


def _default(name: str) -> str:
    quick, paper = getattr(QUICK, name), getattr(PAPER, name)
    if isinstance(quick, tuple) and name == "sigmas":
        quick = paper = f"1e-3:1:{len(quick)}"
    return f"quick: {quick}" if quick == paper else f"quick: {quick}; paper: {paper}"


def build_parser() -> Parser:
    """The options; each one left out takes the profile's value (shown in the help)."""
    p = Parser(
        prog="python -m benchmarks.optimality",
        description=DESCRIPTION,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.HelpFormatter,
    )

    def add(flag: str, help: str, **kwargs) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        if kwargs.get("type") is float:
            kwargs["type"] = finite_float  # inf and nan are refused with one line
        p.add_argument(flag, help=f"{help} [{_default(dest)}]", **kwargs)

    p.add_argument(
        "--profile",
        choices=["quick", "paper"],
        default="quick",
        help="defaults: quick = C^α α=2 32x32 on CPU in minutes; paper = 80x80 and the "
        "paper's UNet, for a GPU [quick]",
    )
    add("--family", f"comma-separated families or 'all'; choices: {', '.join(FAMILY_NAMES)}")
    add("--size", "image side in pixels", type=int)
    add("--alpha", "cartoons: contour regularity α", type=float)
    add("--beta", "cartoons: background regularity β (None: α)", type=float)
    add("--gamma", "gaussian: spectral exponent γ", type=float)
    add(
        "--faces-dir",
        "faces: folder of aligned face images (e.g. CelebA); None: the embedded LFW subset "
        "of scikit-image",
    )
    add(
        "--network",
        "learned denoiser to train; none = references only",
        choices=["unet", "bfcnn", "none"],
    )
    add("--channels", "network channels (top level)", type=int)
    add("--blocks", "UNet levels / BF-CNN depth", type=int)
    add(
        "--objective",
        "training objective: paper (σ = u², plain), kl (log-uniform σ, weight 1/σ²), edm "
        "(EDM weight 1/σ² + 1/σ_d², σ law from --sigma-law)",
        choices=sorted(OBJECTIVES),
    )
    add(
        "--sigma-law",
        "edm objective: log-uniform σ over the training range, EDM's log-normal "
        "(ln σ ~ N(-1.89, 1.2²) for [0, 1] images), the paper's σ_max·u² cut at the range's "
        "lower end, or mixed (a fraction --sigma-mix log-uniform, the rest paper)",
        choices=SIGMA_LAWS,
    )
    add("--sigma-mix", "edm objective, mixed law: fraction of log-uniform σ draws", type=float)
    add(
        "--sigma-d",
        "edm objective: σ where the weight turns from 1/σ² to constant (EDM: the data "
        "standard deviation, 0.25)",
        type=float,
    )
    add(
        "--compare-objectives",
        "also train the other objectives on the same budget and plot them",
        action="store_true",
    )
    add("--train-sigma-min", "smallest training σ (log-uniform and cut paper laws)", type=float)
    add(
        "--train-sigma-max",
        "largest training σ (the evaluation grid ends at 1; a wider range keeps σ = 1 away "
        "from the edge of the training law)",
        type=float,
    )
    add("--steps", "training budget in Adam steps", type=int)
    add("--batch-size", "training batch size", type=int)
    add("--lr", "Adam learning rate", type=float)
    add("--lr-halvings", "times the learning rate is halved, evenly over the budget", type=int)
    add(
        "--cooldown",
        "fraction of the budget, at its end, trained at --cooldown-lr (0: none)",
        type=float,
    )
    add("--cooldown-lr", "learning rate of the cooldown", type=float)
    add(
        "--ema-halflife",
        "the network is the moving average of its weights with this half-life in steps "
        "(0: the last iterate)",
        type=int,
    )
    add(
        "--symmetry-shifts",
        "evaluate the network averaged over the family's exact symmetries (flips, and this "
        "many circular shifts per periodic axis); 0: the network alone",
        type=int,
    )
    add(
        "--n-train",
        "training images (network, memorizer, PCA Wiener); capped by what a finite family holds",
        type=int,
    )
    add("--n-test", "held-out images, capped by what a finite family holds", type=int)
    add(
        "--sigmas",
        "noise levels in pixel units: lo:hi:n log-spaced, or a list a,b,c",
        type=parse_sigmas,
    )
    add("--slope-window", "σ window lo,hi of the fitted log-log slopes", type=parse_window)
    add("--probes", "Hutchinson probes per image for the effective dimension", type=int)
    add(
        "--local-score-images",
        "held-out images on which the network is compared with the ELS, LS and memorizer "
        "outputs at calibrated patch sizes; 0 skips the comparison",
        type=int,
    )
    add(
        "--local-score-train",
        "training images of the ELS and LS machines (the network's first; ELS costs grow with it)",
        type=int,
    )
    add("--runs", "run store of trained networks", metavar="RUNS")
    add(
        "--retrain",
        "train the network (or take it from --runs) instead of loading the weights shipped "
        "in benchmarks/weights",
        action="store_true",
    )
    add(
        "--checkpoint-minutes",
        "minutes of training between checkpoints (also written at every phase end and on "
        "Ctrl-C; the same command resumes)",
        type=float,
    )
    add("--seed", "seed of images, splits, noise, training", type=int)
    add("--device", "torch device, e.g. cpu or cuda")
    add("--out", "output folder")
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    return p


def config_from_args(args: argparse.Namespace) -> OptimalityConfig:
    """The profile's configuration with every option given on the command line."""
    given = {k: v for k, v in vars(args).items() if k != "profile"}
    base = profile(args.profile)
    objective = given.get("objective", base.objective)
    if objective != "edm" and not given.get("compare_objectives", base.compare_objectives):
        for key in ("sigma_law", "sigma_d", "sigma_mix"):
            if key in given:
                raise ValueError(
                    f"--{key.replace('_', '-')} is an option of the edm objective, "
                    f"not of {objective}"
                )
    known = {f.name for f in fields(OptimalityConfig)}
    return replace(base, **{k: v for k, v in given.items() if k in known})


def prepare(args: argparse.Namespace) -> Plan:
    """Every check before any work: the configuration, then :func:`plan`."""
    return plan(config_from_args(args))


def work(p: Plan) -> list[dict]:
    """Measure every family, then write their files (a failure leaves no partial results)."""
    config, out = p.config, Path(p.config.out)
    results = [measure.run_family(family, config) for family in p.families]
    for result in results:
        report.write_family(result, out / result["family"])
    report.print_tables(results)
    report.write_permutation_checks(measure.permutation_checks(list(p.families), results), out)
    report.write_summary(results, out)
    print(f"\nwrote {out}/<family>/results.json, curves.csv, PNG plots and summary.csv")
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark on every requested family; return the families' results.

    Exit status 2 for an option error or a bad stored file (before any work), 1 for a
    fault during the run, 130 for Ctrl-C (``benchmarks.cli.run_command``).
    """
    return run_command(build_parser(), argv, prepare, work)
