"""The GAHB benchmark's command line: options -> :class:`GahbConfig` -> checks -> run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from pathlib import Path

from benchmarks.cli import Parser, check_writable, float_list, run_command
from benchmarks.common import check_device
from benchmarks.gahb import measure, report
from benchmarks.gahb.config import DEFAULT, PAPER, QUICK, GahbConfig, profile
from benchmarks.optimality.plan import check_family, check_runs
from benchmarks.output import provenance
from synthetic import FAMILY_NAMES

DESCRIPTION = (
    "Decomposes a trained network's Jacobian at noisy held-out images into eigenvalues and "
    "eigenvectors (the basis it shrinks in) and compares them with the optimum's where it is "
    "known, and the eigenvectors' compaction of the clean image with fixed bases."
)


@dataclass(frozen=True)
class Plan:
    """A checked configuration and the (family, α) pairs it measures."""

    config: GahbConfig
    specs: tuple[tuple[str, float | None], ...]


def _default(name: str) -> str:
    values = [getattr(c, name) for c in (DEFAULT, QUICK, PAPER)]
    if len(set(map(str, values))) == 1:
        return f"{values[0]}"
    return "; ".join(
        f"{c.profile}: {v}" for c, v in zip((DEFAULT, QUICK, PAPER), values, strict=True)
    )


def build_parser() -> Parser:
    """The options; each one left out takes the profile's value (shown in the help)."""
    p = Parser(
        prog="python -m benchmarks.gahb",
        description=DESCRIPTION,
        argument_default=argparse.SUPPRESS,
    )

    def add(flag: str, help: str, **kwargs) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        p.add_argument(flag, help=f"{help} [{_default(dest)}]", **kwargs)

    p.add_argument(
        "--profile",
        choices=["default", "quick", "paper"],
        default="default",
        help="default: five families at 32x32 on CPU; quick: two, in minutes; paper: 80x80, "
        "the paper's network and the leading eigenpairs by Lanczos, for a GPU [default]",
    )
    p.add_argument("--quick", action="store_true", help="alias of --profile quick")
    add("--family", f"comma-separated families; choices: {', '.join(FAMILY_NAMES)}")
    add("--alphas", "regularities α of the cartoon families, comma-separated", type=float_list)
    add("--size", "image side in pixels", type=int)
    add("--n-images", "held-out images per family and σ", type=int)
    add("--sigmas", "noise levels in pixel units, comma-separated", type=float_list)
    add("--top-k", "leading eigenpairs by Lanczos instead of the full decomposition", type=int)
    add("--grid-sigma", "σ of the eigenvector grids and compaction figures", type=float)
    add("--network", "optimality profile whose network is analysed", choices=["quick", "paper"])
    add("--steps", "training budget of networks not yet trained (Adam steps)", type=int)
    add("--n-train", "training images of the networks and the memorizer", type=int)
    add("--channels", "network channels (top level) of networks not yet trained", type=int)
    add("--blocks", "UNet levels of networks not yet trained", type=int)
    add("--batch-size", "training batch size of networks not yet trained", type=int)
    add("--runs", "run store of trained networks", metavar="RUNS")
    add(
        "--retrain",
        "train the networks (or take them from --runs) instead of loading shipped weights",
        action="store_true",
    )
    add("--seed", "seed of images, noise and training", type=int)
    add("--device", "torch device, e.g. cpu or cuda")
    add("--out", "output folder")
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    return p


def config_from_args(args: argparse.Namespace) -> GahbConfig:
    """The profile's configuration with every option given on the command line."""
    quick = getattr(args, "quick", False)
    if quick and args.profile not in ("default", "quick"):
        raise ValueError(f"--quick is the quick profile: drop it or --profile {args.profile}")
    given = {k: v for k, v in vars(args).items() if k not in ("profile", "quick")}
    if "sigmas" in given:
        given["sigmas"] = tuple(float(s) for s in given["sigmas"])
    if "alphas" in given:
        given["alphas"] = tuple(given["alphas"])
    known = {f.name for f in fields(GahbConfig)}
    name = "quick" if quick else args.profile
    return replace(profile(name), **{k: v for k, v in given.items() if k in known})


def prepare(args: argparse.Namespace) -> Plan:
    """Every check before any work: options, device, folders, families, stored runs."""
    config = config_from_args(args)
    check_device(config.device)
    check_writable(config.out, "--out")
    specs = tuple(measure.family_specs(config))
    untrained = False
    for name, alpha in specs:
        family = measure.build_family(name, alpha, config)
        oconfig = config.optimality(name, alpha)
        untrained |= check_runs(family, check_family(family, oconfig), oconfig)
    if untrained:
        check_writable(config.runs, "--runs")
    return Plan(config, specs)


def work(p: Plan) -> list[dict]:
    """Measure every family, then write the files (a failure leaves no partial results)."""
    config, out = p.config, Path(p.config.out)
    results = [measure.run_family(name, alpha, config) for name, alpha in p.specs]
    options = {f.name: getattr(config, f.name) for f in fields(config)}
    summaries = report.write_all(
        results, config.grid_sigma, provenance(config.device, options), out
    )
    print(f"\nwrote {out}/<family>/results.json, spectra.npz, PNG figures and summary.csv")
    return summaries


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; exit 2 for bad options or stored files, 1 for a fault, 130 for Ctrl-C."""
    return run_command(build_parser(), argv, prepare, work)
