"""Samples of the A and B networks, their nearest training images and their quality.

A and B start from the same initial noise and draw their injected noise from generators
seeded alike, so they see the same noise at every step both take; each sample's nearest
training image is searched in its own set and in the other one (raw cosine and mean-removed
correlation), and its quality is its distance to the nearest held-out image (and to the
family's manifold where the family declares a distance to it) (docs/design.md §12).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmarks.common import median
from benchmarks.generalization.config import GeneralizationConfig
from benchmarks.generalization.stats import PARTS
from models.samplers import (
    initial_noise,
    log_sigmas_schedule,
    probability_flow,
    stochastic_ascent,
)
from synthetic.family import Family
from theory.protocol import Denoiser
from theory.similarity import MEASURES, nearest_neighbours, paired_similarity

INITIAL_MEAN = 0.5


def initial_images(
    config: GeneralizationConfig, size: int, device: torch.device, seed: int
) -> torch.Tensor:
    """The shared initial noise ``y0``: ``n_samples`` images of std ``sigma0`` around 0.5."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return initial_noise(
        config.n_samples, size, config.sigma0, mean=INITIAL_MEAN, generator=generator
    )


def draw_samples(net: Denoiser, y0: torch.Tensor, config: GeneralizationConfig, seed: int) -> dict:
    """Samples of ``net`` from ``y0``; injected noise from a generator seeded with ``seed``.

    Two calls with the same ``y0`` and ``seed`` inject the same noise at every step both
    take, whatever the network (``stochastic_ascent``'s noise-sharing rule). The flow
    sampler is deterministic and takes no seed.
    """
    progress = config.progress
    with torch.no_grad():
        if config.sampler == "flow":
            sigmas = log_sigmas_schedule(config.flow_steps, config.sigma0, config.sigma_final)
            x = probability_flow(net, y0, sigmas, progress=progress)
            return {
                "x": x,
                "steps": [config.flow_steps - 1] * y0.shape[0],
                "diverged": (~finite_rows(x)).nonzero().flatten().tolist(),
            }
        generator = torch.Generator(device=y0.device).manual_seed(seed)
        result = stochastic_ascent(
            net,
            y0,
            h0=config.h0,
            beta=config.beta,
            sigma_final=config.sigma_final,
            sigma0=config.sigma0,
            generator=generator,
            max_steps=config.max_steps,
            progress=progress,
        )
    return {
        "x": result.x,
        "steps": result.steps.tolist(),
        "final_sigma": result.sigma.tolist(),
        "diverged": (~finite_rows(result.x)).nonzero().flatten().tolist(),
        "converged": bool((result.sigma <= config.sigma_final).all()),
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


def similarities(
    samples: dict[str, torch.Tensor],
    train: dict[str, torch.Tensor],
    family: Family,
    n: int,
    measure: str,
) -> dict:
    """Nearest training images of the A and B samples in both sets, and A vs B.

    For a finite family that names its sources (``family.sources``), each nearest image also
    carries its source name.
    """
    out: dict = {"search_measure": measure}
    for part, other in (("A", "B"), ("B", "A")):
        out[part] = {
            "own": nearest_training(samples[part], train[part], measure),
            "other": nearest_training(samples[part], train[other], measure),
        }
        for key, source in (("own", part), ("other", other)):
            names = family.sources(source, n)
            if names is not None:
                out[part][key]["source"] = [
                    names[i] if i >= 0 else None for i in out[part][key]["index"]
                ]
    out["AB"] = {m: paired_similarity(samples["A"], samples["B"], m).tolist() for m in MEASURES}
    out["medians"] = medians(out)
    return out


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


def nearest_images(samples: torch.Tensor, train: torch.Tensor, nearest: dict) -> torch.Tensor:
    """The nearest training image of each sample (NaN for a diverged sample), on the CPU."""
    index = torch.tensor(nearest["index"])
    images = train[index.clamp_min(0)].cpu()
    images[index < 0] = math.nan  # a diverged sample has no nearest image
    return images


def nearest_rms(
    queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False
) -> np.ndarray:
    """Root-mean-square pixel distance from each query to its nearest reference."""
    q, r = queries.flatten(1).double(), references.flatten(1).double().to(queries.device)
    dist = torch.cdist(q, r)
    if exclude_self:
        dist.fill_diagonal_(math.inf)
    return (dist.min(1).values / math.sqrt(q.shape[1])).cpu().numpy()


def sample_quality(samples: torch.Tensor, test: torch.Tensor, family: Family) -> dict:
    """Distance of samples to the nearest held-out image (and to the family's manifold).

    ``disk_fit_rms`` holds ``family.distance_to_manifold`` where the family declares one
    (the disks: the residual of the best disk fit). NaN for a diverged sample.
    """
    finite = finite_rows(samples).cpu().numpy()
    good = samples[torch.from_numpy(finite).to(samples.device)]
    out = {"nearest_test_rms": np.full(len(finite), np.nan)}
    out["nearest_test_rms"][finite] = nearest_rms(good, test) if len(good) else []
    distance = family.distance_to_manifold(good)
    if distance is not None:
        out["disk_fit_rms"] = np.full(len(finite), np.nan)
        out["disk_fit_rms"][finite] = distance
    return out


def held_out_reference(test: torch.Tensor, family: Family, n_fit: int = 32) -> dict:
    """What the held-out images score themselves: the yardstick of the sample quality.

    The RMS distance of each held-out image to its nearest other one and, where the family
    declares a distance to its manifold, that of the first ``n_fit`` clean held-out images.
    """
    rms = nearest_rms(test, test, exclude_self=True)
    reference = {"nearest_test_rms": rms, "median_nearest_test_rms": float(np.median(rms))}
    fit = family.distance_to_manifold(test[:n_fit])
    if fit is not None:
        reference["disk_fit_rms"] = fit
        reference["median_disk_fit_rms"] = float(np.median(fit))
    return reference
