"""The local score machines beside network A of each set size (docs/design.md §12).

How well the ELS and LS machines of A's training set predict network A's outputs per σ
(``benchmarks.local_score``), and samples of the ELS machine at its calibrated patch sizes
from the same initial and injected noise as network A's: their r² to A's samples and their
nearest training images.
"""

from __future__ import annotations

import math

import torch

from benchmarks.common import median
from benchmarks.generalization.config import GeneralizationConfig
from benchmarks.generalization.sampling import (
    draw_samples,
    finite_rows,
    nearest_images,
    nearest_training,
)
from benchmarks.local_score import image_r2, local_score_agreement, split_held_out
from models.local_score import LocalScoreMachine
from theory.protocol import Denoiser
from theory.similarity import MEASURES


def sample_r2(samples: torch.Tensor, network_samples: torch.Tensor) -> list[float]:
    """r² of each machine sample for the network's sample from the same noise (NaN if either
    diverged)."""
    finite = finite_rows(samples) & finite_rows(network_samples)
    rows = zip(samples.flatten(1), network_samples.flatten(1), finite.tolist(), strict=True)
    return [image_r2(s, t) if ok else math.nan for s, t, ok in rows]


def local_score_record(
    net: Denoiser,
    train: torch.Tensor,
    test: torch.Tensor,
    y0: torch.Tensor,
    network_samples: torch.Tensor,
    config: GeneralizationConfig,
    seeds: dict[str, int],
    sigmas,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """The agreement of the machines with ``net`` and the ELS samples, with their images.

    Parameters
    ----------
    net : network A of one set size, trained on ``train``.
    test : held-out images, split by ``benchmarks.local_score.split_held_out`` into those
        compared (``config.local_score_images``) and those that calibrate the patch sizes.
    y0, network_samples : the sampler's initial noise and network A's samples from it.
    seeds : the sweep's streams (``local_score``, ``injected_noise``).
    sigmas : the σ grid of the comparison (and the levels of the patch table).
    """
    machine_train = train[: config.local_score_train]
    compared, calibration = split_held_out(test, config.local_score_images)
    record = local_score_agreement(
        net,
        train,
        machine_train,
        compared,
        calibration,
        sigmas,
        seeds["local_score"],
        progress=False,
    )
    patches = dict(zip(record["sigma"], record["patch"]["els"], strict=True))
    els = LocalScoreMachine(machine_train, patches)
    draw = draw_samples(els, y0, config, seeds["injected_noise"])
    samples = draw.pop("x")
    r2 = sample_r2(samples, network_samples)
    nearest = nearest_training(samples, train, config.measure)
    record["els_samples"] = {
        "sampling": draw,
        "r2_to_network": r2,
        "median_r2_to_network": median(r2),
        "nearest": nearest,
        "median_nearest": {m: median(nearest[m]) for m in MEASURES},
    }
    images = {"els": samples.cpu(), "nearest_els": nearest_images(samples, train, nearest)}
    return record, images
