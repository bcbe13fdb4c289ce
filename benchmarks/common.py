"""Pieces every benchmark shares: derived seeds, the device check, train-or-load, KL records,
tables."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from models.runstore import RunStore, read_metrics
from models.training import CHECKPOINT_S, TrainConfig
from theory.kl import kl_curve
from theory.protocol import Denoiser


def median(values) -> float:
    """Median of the finite values (a diverged sample or an undefined r² is NaN); NaN if none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 32-bit seed for the stream named by ``keys`` under the root ``seed``.

    The seed is the first word of ``numpy.random.SeedSequence([seed, *keys])``, a string key
    entering as the first 32 bits of its SHA-256 (stable across runs and platforms, unlike
    ``hash``). Streams with different keys are independent; integer keys give exactly
    ``SeedSequence([seed, *keys])``. Use it instead of ``seed + k``, which makes the streams
    of seed s and key k + 1 those of seed s + 1 and key k.
    """
    words = [seed] + [
        key if isinstance(key, int) else int.from_bytes(hashlib.sha256(key.encode()).digest()[:4])
        for key in keys
    ]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def check_device(text: str) -> torch.device:
    """The torch device named by ``text``; ``ValueError`` naming the fix if unusable."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {text!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {text!r} asked but no CUDA device is available: use cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {text!r} is not supported: use cpu or cuda")
    return device


def probe_denoisers(
    denoisers: Mapping[str, Denoiser],
    image: torch.Tensor,
    sigmas: Sequence[float],
    what: str,
    fix: str = "change --size or leave the family out",
) -> None:
    """Call every denoiser on one noisy ``image`` (1, 1, H, W) at the ends of the σ grid.

    A denoiser that cannot take the images (a size it does not support, a singular system at
    this size) then fails before any work, with a ``ValueError`` naming it, ``what`` it
    belongs to and the fix, instead of after an hour of training.
    """
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(0)).to(image)
    for name, f in denoisers.items():
        for sigma in sorted({min(sigmas), max(sigmas)}):
            try:
                with torch.no_grad():
                    out = f(image + float(sigma) * noise, float(sigma))
                if tuple(out.shape) != tuple(image.shape):
                    raise ValueError(f"output of shape {tuple(out.shape)}")
            except Exception as err:
                reason = (str(err).strip().splitlines() or [""])[0]
                raise ValueError(
                    f"{what}: {name} cannot denoise its images at σ = {sigma:g} "
                    f"({type(err).__name__}: {reason}): {fix}"
                ) from None


@dataclass(frozen=True)
class TrainedRun:
    """What a benchmark reports of a trained network: its run and how training went."""

    config: dict
    run_dir: str
    reused: bool
    parameters: int
    train_wall_s: float
    steps: int
    final_loss: float
    final_psnr: float
    img_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def train_or_load(
    store: RunStore,
    config: TrainConfig,
    data: dict,
    images: torch.Tensor,
    progress: bool = True,
    checkpoint_s: float = CHECKPOINT_S,
) -> tuple[nn.Module, TrainedRun]:
    """The network of ``(config, data, images)``, trained or loaded by ``store``, and its record.

    ``reused`` says whether the run was finished before this call (in ``store`` or among its
    shipped runs).
    """
    shape = tuple(images.shape)
    run = store.find(config, data, shape)
    reused = run is not None
    net = store.get_or_train(config, data, images, progress=progress, checkpoint_s=checkpoint_s)
    run = store.find(config, data, shape)
    metrics = read_metrics(run)
    history = metrics["history"]
    return net, TrainedRun(
        config=config.to_dict(),
        run_dir=str(run),
        reused=reused,
        parameters=int(metrics["parameters"]),
        train_wall_s=float(metrics["train_wall_s"]),
        steps=int(history[-1]["step"]),
        final_loss=float(history[-1]["loss"]),
        final_psnr=float(history[-1]["psnr"]),
        img_per_s=float(np.mean([epoch["img_per_s"] for epoch in history])),
    )


def kl_record(
    sigma: np.ndarray, rows: np.ndarray, kind: str, reference: str, note: str | None = None
) -> dict:
    """The KL curve over the lower cut σ0 from per-image excess errors, with its integrand.

    Parameters
    ----------
    sigma : the σ grid (pixel units).
    rows : per-image excess total squared error ``SSE_f − SSE_ref``, shape
        ``(n_images, n_sigma)``, on shared noise.
    kind : "exact", "upper_bound" or "estimate" (docs/design.md §4).
    reference : the denoiser the excess is measured against.
    """
    curve = kl_curve(sigma, rows)
    n = rows.shape[0]
    record = {
        "sigma0": sigma,
        "value": curve.value,
        "se": curve.se,
        "tail": curve.tail,
        "kind": kind,
        "reference": reference,
        "units": "nats per image",
        "integrand": rows.mean(0) / sigma**2,
        "integrand_se": rows.std(0, ddof=1) / np.sqrt(n) / sigma**2,
    }
    if note is not None:
        record["note"] = note
    return record


def format_table(header: Sequence[str], rows: Sequence[Sequence], formats: Sequence[str]) -> str:
    """A plain-text table: each column as wide as its header or widest cell, right-aligned.

    ``formats`` holds one format spec per column (``"s"``, ``".3f"``, ``"d"`` ...).
    """
    cells = [[format(v, f) for v, f in zip(row, formats, strict=True)] for row in rows]
    widths = [max([len(h)] + [len(r[k]) for r in cells]) for k, h in enumerate(header)]
    lines = [" ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += [" ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
