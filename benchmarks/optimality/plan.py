"""What the optimality benchmark checks before any work, and the plan it then runs.

:func:`plan` turns a configuration into the families to measure after checking everything a
run could otherwise fail on later: the device, that ``--out`` (and ``--runs``, when a network
has to be trained) can be written, every family built at the requested size with at least 2
held-out and 2 training images after the caps of a finite family, every reference and the
optimum of every family denoising one image at both ends of the σ grid, and every stored
run of the networks readable (``models.runstore.RunStore.check``). Its ``ValueError`` names
the option or the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.api import comparison_for
from benchmarks.cli import check_writable
from benchmarks.common import check_device, probe_denoisers
from benchmarks.optimality.config import OptimalityConfig
from benchmarks.optimality.measure import (
    make_families,
    objectives,
    run_store,
    train_config,
    train_data,
)
from synthetic.family import Family

# Training images the references are built from for the probe (the run builds them from all).
PROBE_TRAIN = 4


@dataclass(frozen=True)
class Plan:
    """A checked configuration and its families, in the order they are measured."""

    config: OptimalityConfig
    families: tuple[Family, ...]


def image_counts(family: Family, config: OptimalityConfig) -> tuple[int, int]:
    """Held-out and training images of ``family`` after the caps of a finite family."""
    n_test = int(min(config.n_test, family.capacity("test")))
    n_train = int(min(config.n_train, family.capacity("A")))
    return n_test, n_train


def check_family(family: Family, config: OptimalityConfig) -> tuple[int, ...]:
    """Check the image counts and the references of ``family``; the shape of its training set."""
    n_test, n_train = image_counts(family, config)
    counts = (
        ("--n-test", "held-out", n_test, config.n_test),
        ("--n-train", "training", n_train, config.n_train),
    )
    for option, part, n, asked in counts:
        if n < 2:
            raise ValueError(
                f"family '{family.name}' holds {n} {part} image(s) ({option} {asked} asked); "
                "standard errors need >= 2: give a folder with more images (--faces-dir) or "
                "another family"
            )
    test = family.images("test", 1)
    comparison = comparison_for(family, family.images("A", min(n_train, PROBE_TRAIN)), 1)
    probe_denoisers(
        comparison.denoisers(),
        test,
        config.sigmas,
        f"family '{family.name}' at {family.size} px",
    )
    return (n_train, *test.shape[1:])


def check_runs(family: Family, shape: tuple[int, ...], config: OptimalityConfig) -> bool:
    """Check the stored runs of the family's networks; whether one still has to be trained."""
    if config.network == "none":
        return False
    store = run_store(config)
    data = train_data(family, shape[0])
    untrained = False
    for objective in objectives(config):
        train = train_config(config, objective)
        store.check(train, data, shape)
        untrained |= store.find(train, data, shape) is None
    return untrained


def plan(config: OptimalityConfig) -> Plan:
    """Check everything the run depends on (``ValueError`` naming the fix); the plan to run."""
    check_device(config.device)
    check_writable(config.out, "--out")
    families = make_families(config)
    untrained = False
    for family in families:
        shape = check_family(family, config)
        untrained |= check_runs(family, shape, config)
    if untrained:
        check_writable(config.runs, "--runs")
    return Plan(config, tuple(families))
