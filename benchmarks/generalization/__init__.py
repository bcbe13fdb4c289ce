"""Memorization to generalization: networks on n images, two disjoint training sets per n.

``python -m benchmarks.generalization`` trains (through the run store, so reruns are free)
one network on A_n and one on B_n for every set size n, with the same number of training
samples per epoch for every n (Kadkhodaie, Guth, Simoncelli, Mallat, ICLR 2024, fig. 1-2),
then measures: train and test PSNR against input PSNR on a σ grid (the memorization gap);
the KL integral of each network against the memorizer of its own training set on its
training images (the memorizer is the exact optimal denoiser of that law), and against the
family's optimum on held-out images where the family declares an exact one; K samples of
each network from the same initial and injected noise; each sample's nearest training
image in its own set and in the other one (raw cosine and mean-removed correlation), the
similarity of the A and B samples; and the quality of the samples (distance to the nearest
held-out image against the held-out images' own, and the distance to the family's manifold
where it declares one). Writes ``results.json``, ``summary.csv``, ``samples.npz`` and PNG
plots under ``--out`` (and ``order.txt``, the fixed order of a finite family's sources);
prints a table.

Modules: ``config`` (the frozen configuration, its profiles, the derived seeds), ``prepare``
(every check before any work, and the objects the sweep needs), ``measure`` (training,
denoising curves, KL), ``sampling`` (samples, nearest training images, sample quality),
``sweep`` (the loop over set sizes), ``report`` (expectations, table, files), ``plots``
(figures) and ``cli`` (the command line). In Python::

    from benchmarks.generalization import configure, run
    result = run(configure("quick", out="out/quick"))
"""

from benchmarks.generalization.cli import main, run
from benchmarks.generalization.config import PROFILES, GeneralizationConfig, configure
from benchmarks.generalization.prepare import setup

__all__ = ["PROFILES", "GeneralizationConfig", "configure", "main", "run", "setup"]
