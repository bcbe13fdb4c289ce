"""How well the local score machines predict a network, σ by σ (docs/design.md §11.7).

Per noise level, the ELS and LS machines' patch sides are calibrated against the network on
a few noisy held-out images, then the network's output on other noisy held-out images is
compared with
the ELS, LS and memorizer outputs on the same inputs by r². Each output pixel of a machine
is its own posterior mean, so only a seeded subset of pixels is computed: the cost is that
fraction of a whole image (docs/design.md §6.9 states the cost per image).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm import tqdm

from benchmarks.common import median
from models.local_score import (
    bounding_side,
    calibrate_patch_sizes,
    check_patch,
    local_posterior_mean,
    r_squared,
)
from models.memorizer import Memorizer

# Odd patch sides tried in this order at every σ (those the image size allows), from the
# pixel itself to most of a 32-pixel image. The cost of ELS grows as P², so the search stops
# once PATIENCE candidates in a row fall short of the best (r² rises to one peak in P).
PATCH_CANDIDATES = (1, 3, 5, 7, 9, 13, 19, 27, 39)
PATIENCE = 2
# Held-out images (the last ones) and pixels per image on which the patch sides are calibrated.
CALIBRATION_IMAGES = 2
CALIBRATION_PIXELS = 64
# Pixels per held-out image at which the outputs are compared.
COMPARISON_PIXELS = 64


def allowed_candidates(height: int, width: int, padding: str) -> list[int]:
    """The candidates of :data:`PATCH_CANDIDATES` that ``check_patch`` accepts for images of
    ``height`` x ``width``."""
    side = bounding_side(height, width, padding)
    allowed = []
    for p in PATCH_CANDIDATES:
        try:
            check_patch(p, side, padding)
        except ValueError:
            continue
        allowed.append(p)
    return allowed


def split_held_out(test: torch.Tensor, n_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out images to compare (the first ``n_images``, fewer when ``test`` is short)
    and the last :data:`CALIBRATION_IMAGES`, on which the patch sides are calibrated: never
    the same images, since choosing P on the compared images would bias their r² upwards."""
    compared = max(0, min(n_images, test.shape[0] - CALIBRATION_IMAGES))
    return test[:compared], test[-CALIBRATION_IMAGES:]


def image_r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """r² of one image's pixels; NaN when the target is constant (a network's correction
    f(y) - y can be exactly 0 at small σ, and then r² has no meaning)."""
    if not (target - target.mean()).abs().amax() > 0:
        return math.nan
    return r_squared(pred, target)


def local_score_agreement(
    network: Callable[[torch.Tensor, float], torch.Tensor],
    train: torch.Tensor,
    machine_train: torch.Tensor,
    test: torch.Tensor,
    calibration: torch.Tensor,
    sigmas: Sequence[float],
    seed: int,
    padding: str = "zeros",
    progress: bool = True,
    desc: str = "local score machines",
) -> dict:
    """Calibrated patch sides and the r² of ELS, LS and the memorizer to ``network`` per σ.

    Parameters
    ----------
    network : the denoiser the machines should predict (called without gradients).
    train : the network's training images (n, 1, H, W): the memorizer's set.
    machine_train : the training images of the ELS and LS machines (the first of ``train``;
        fewer than ``train`` where the full set would cost too much).
    test : held-out images (B, 1, H, W) whose noisy versions are compared.
    calibration : other held-out images on which the patch sides are calibrated (choosing P
        on the compared images themselves would bias their r² upwards).
    sigmas : noise levels in pixel units.
    seed : seed of the calibration and comparison noise and pixel subsets.
    padding : the network's boundary handling, "zeros" or "circular".

    Returns
    -------
    dict
        ``r2[name]`` pooled over images and pixels and ``r2_median[name]`` the median over
        images of per-image values, for ``els``, ``ls`` and ``memorizer``, one per σ;
        ``residual_r2_median[name]`` the same median for the corrections ``f(y) - y`` (at
        small σ every output is close to y, so agreement of outputs says little there; the
        corrections are what a denoiser adds; images where the network's correction is
        exactly 0 are left out, NaN when all are); ``patch[name]`` the calibrated sides and
        ``calibration[name]`` the r² of every candidate tried, one ``{P: r²}`` per σ.
    """
    _, _, height, width = test.shape
    candidates = allowed_candidates(height, width, padding)
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randperm(height * width, generator=g)[:COMPARISON_PIXELS].to(test.device)
    noise = torch.randn(test.shape, generator=g, dtype=test.dtype).to(test.device)
    memorizer = Memorizer(train)
    out: dict = {
        "sigma": [float(s) for s in sigmas],
        "candidates": candidates,
        "n_train_machines": int(machine_train.shape[0]),
        "n_train_memorizer": int(train.shape[0]),
        "n_images": int(test.shape[0]),
        "n_calibration_images": int(calibration.shape[0]),
        "pixels_per_image": int(pixels.numel()),
        "padding": padding,
        "patch": {"els": [], "ls": []},
        "calibration": {"els": [], "ls": []},
        "r2": {"els": [], "ls": [], "memorizer": []},
        "r2_median": {"els": [], "ls": [], "memorizer": []},
        "residual_r2_median": {"els": [], "ls": [], "memorizer": []},
    }
    for sigma in tqdm(out["sigma"], desc=desc, disable=not progress, leave=False):
        noisy = test + sigma * noise
        y = noisy.reshape(test.shape[0], -1)[:, pixels]
        with torch.no_grad():
            target = network(noisy, sigma).reshape(test.shape[0], -1)[:, pixels]
            outputs = {"memorizer": memorizer(noisy, sigma).reshape(test.shape[0], -1)[:, pixels]}
        for name, equivariant in (("els", True), ("ls", False)):
            fit = calibrate_patch_sizes(
                network,
                machine_train,
                calibration,
                [sigma],
                candidates,
                equivariant,
                padding,
                CALIBRATION_PIXELS,
                seed,
                PATIENCE,
            )[sigma]
            patch, r2 = fit["patch"], fit["r2"]
            out["patch"][name].append(patch)
            out["calibration"][name].append({str(p): v for p, v in r2.items()})
            outputs[name] = local_posterior_mean(
                noisy, machine_train, sigma, patch, equivariant, padding, pixels
            )
        for name, pred in outputs.items():
            out["r2"][name].append(r_squared(pred, target))
            per_image = [image_r2(p, t) for p, t in zip(pred, target, strict=True)]
            out["r2_median"][name].append(median(per_image))
            residual = [image_r2(p - q, t - q) for p, t, q in zip(pred, target, y, strict=True)]
            out["residual_r2_median"][name].append(median(residual))
    return out
