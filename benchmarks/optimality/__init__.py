"""How far is a trained denoiser from optimal, noise level by noise level.

``python -m benchmarks.optimality`` loads the default network from the weights shipped in
``benchmarks/weights`` (or trains it, with ``--retrain``, through the run store), averages
it over the family's exact symmetries (``models.symmetrized``), and measures, on held-out
images, the Monte Carlo risk (MSE, SSE, PSNR with standard errors) of the averaged
network, the network alone and every reference denoiser the family declares over a
log-spaced σ grid; on training images it compares the network with the memorizer of its
training set. It fits log-log slopes beside the minimax exponent 2α/(α+1) of C^α
families, turns excess risk into the KL integral over the lower cut σ0 (``theory.kl``)
with its kind (exact, upper bound or estimate, from ``family.optimum``), measures the
network's effective dimension E tr ∇f(y), and writes ``<out>/<family>/results.json``,
``curves.csv`` and PNG plots plus ``<out>/summary.csv``.

Modules: ``config`` (the frozen :class:`OptimalityConfig` and the profiles ``QUICK`` and
``PAPER``), ``cli`` (the command line), ``plan`` (every check before any work), ``measure``
(the measurements), ``report`` (files and tables), ``plots`` (figures). The held-out
evaluation is ``benchmarks.api``'s.
"""

from benchmarks.optimality.cli import build_parser, main
from benchmarks.optimality.config import PAPER, QUICK, OptimalityConfig, profile

__all__ = ["PAPER", "QUICK", "OptimalityConfig", "build_parser", "main", "profile"]
