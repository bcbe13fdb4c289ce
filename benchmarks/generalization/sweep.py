"""The sweep over set sizes: train A_n and B_n networks, measure them, assemble the results.

Measurement only: :func:`sweep` returns the results dictionary and the sample images;
``benchmarks.generalization.report`` writes the files and prints the table.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from benchmarks.evaluation import psnr
from benchmarks.generalization.config import PROFILE_FIELDS
from benchmarks.generalization.local import local_score_record
from benchmarks.generalization.measure import (
    HeldOutOptimum,
    denoising_curves,
    held_out_optimum,
    train_network,
)
from benchmarks.generalization.prepare import Setup, exact_optimum
from benchmarks.generalization.report import expectations
from benchmarks.generalization.sampling import (
    INITIAL_MEAN,
    draw_samples,
    held_out_reference,
    initial_images,
    nearest_images,
    sample_quality,
    similarities,
)
from benchmarks.generalization.stats import PARTS
from benchmarks.output import provenance
from models.runstore import RunStore


@dataclass
class Sweep:
    """What a sweep produced: the results, the sample images per n, the initial noise."""

    result: dict
    images: dict[int, dict[str, torch.Tensor]]
    y0: torch.Tensor


def run_size(
    n: int,
    s: Setup,
    store: RunStore,
    test: torch.Tensor,
    y0: torch.Tensor,
    optimum: HeldOutOptimum | None,
    bar: tqdm,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train (or load) the A and B networks of one set size and measure them."""
    c = s.config
    train = {part: s.family.images(part, n) for part in PARTS}
    nets, networks, curves, samples, draws = {}, {}, {}, {}, {}
    for part in PARTS:
        bar.set_description(f"n={n}: network {part}")
        nets[part], networks[part] = train_network(s, n, part, train[part], store)
        bar.update()
    bar.set_description(f"n={n}: evaluating")
    for part in PARTS:
        curves[part] = denoising_curves(
            nets[part],
            train[part].to(s.device),
            test,
            s.sigmas,
            c.n_eval,
            c.seed,
            c.progress,
            optimum=optimum,
        )
        draws[part] = draw_samples(nets[part], y0, c, s.seeds["injected_noise"])
        samples[part] = draws[part].pop("x")
    similarity = similarities(samples, train, s.family, n, c.measure)
    quality = {part: sample_quality(samples[part], test, s.family) for part in PARTS}
    bar.update()
    record = {
        "n": n,
        "networks": networks,
        "input_psnr": psnr(s.sigmas**2),
        "denoising": curves,
        "sampling": {"sigma_final": c.sigma_final, **draws},
        "similarity": similarity,
        "quality": quality,
    }
    images = {part: samples[part].cpu() for part in PARTS}
    for part in PARTS:
        images[f"nearest_{part}"] = nearest_images(
            samples[part], train[part], similarity[part]["own"]
        )
    if c.local_score_images:
        bar.set_description(f"n={n}: local score machines")
        record["local_score"], els_images = local_score_record(
            nets["A"], train["A"].to(s.device), test, y0, samples["A"], c, s.seeds, s.sigmas
        )
        images.update(els_images)
    return record, images


def sweep(s: Setup) -> Sweep:
    """The whole sweep: every set size of ``s``, and the results dictionary."""
    start = time.perf_counter()
    c = s.config
    store = RunStore(c.runs)
    test = s.family.images("test", s.n_test).to(s.device)
    y0 = initial_images(c, s.family.size, s.device, s.seeds["initial_noise"])
    reference = held_out_reference(test, s.family)
    denoiser = exact_optimum(s.family, test)
    optimum = (
        None if denoiser is None else held_out_optimum(denoiser, test, s.sigmas, c.seed, c.progress)
    )
    runs, images = [], {}
    with tqdm(
        total=3 * len(s.sizes),
        desc="generalization",
        disable=not c.progress,
        unit="stage",
        dynamic_ncols=True,
    ) as bar:
        for n in s.sizes:
            record, images[n] = run_size(n, s, store, test, y0, optimum, bar)
            runs.append(record)
    result = {
        "experiment": "memorization to generalization",
        "profile": c.profile,
        "settings": {name: getattr(c, name) for name in PROFILE_FIELDS},
        "family": s.family.params,
        "sizes": list(s.sizes),
        "capacity_per_part": s.capacity,
        "capped": s.capped,
        "equal_exposure": "every network sees the same number of training images "
        "(samples_per_epoch * epochs, capped by --steps), whatever n",
        "train": {part: config.to_dict() for part, config in s.train.items()},
        "seeds": {"root": c.seed, **s.seeds},
        "sampler": {
            "name": c.sampler,
            "h0": c.h0,
            "beta": c.beta,
            "sigma0": c.sigma0,
            "sigma_final": c.sigma_final,
            "max_steps": c.max_steps,
            "flow_steps": c.flow_steps,
            "initial_mean": INITIAL_MEAN,
            "n_samples": c.n_samples,
            "initial_noise_seed": s.seeds["initial_noise"],
            "injected_noise_seed": s.seeds["injected_noise"],
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
    if s.family.order is not None:
        result["order_file"] = "order.txt"
        result["order_note"] = (
            f"faces in the fixed order: the first {int(s.family.capacity('test'))} are "
            "held out, A_n takes the next n, B_n the last n (last first)"
        )
    result.update(provenance(s.device, options=asdict(c)), wall_s=time.perf_counter() - start)
    return Sweep(result=result, images=images, y0=y0.cpu())
