"""Figures of the generalization benchmark: the seed-figure grid, histograms, curves.

Every figure is drawn from the results dictionary (as written to ``results.json``) and the
sample images, so the committed results can be plotted again without rerunning the sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import median
from benchmarks.evaluation import psnr
from benchmarks.generalization.stats import PARTS, kl_index, mid_index
from benchmarks.output import save_figure
from theory.similarity import MEASURES

FIGURES = ("grid.png", "histograms.png", "curves.png", "psnr.png")
# Drawn when the sweep compared network A with the local score machines.
LOCAL_SCORE_FIGURES = ("local_score.png", "els_grid.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image_grid(
    images: dict[int, dict[str, torch.Tensor]],
    keys: tuple[str, ...],
    titles: tuple[str, ...],
    path: Path,
    columns: int,
) -> None:
    """Rows n; for each of the first ``columns`` samples, one panel per key of ``keys``."""
    plt = _pyplot()
    sizes = sorted(images)
    k = min(columns, images[sizes[0]][keys[0]].shape[0])
    width = len(keys)
    fig, axes = plt.subplots(
        len(sizes), width * k, figsize=(1.3 * width * k, 1.4 * len(sizes)), squeeze=False
    )
    for row, n in enumerate(sizes):
        for i in range(k):
            for c, key in enumerate(keys):
                ax = axes[row, width * i + c]
                ax.imshow(images[n][key][i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(titles[c], fontsize=7)
        axes[row, 0].set_ylabel(f"n = {n}", fontsize=8)
    save_figure(path, fig)


def plot_grid(images: dict[int, dict[str, torch.Tensor]], path: Path, columns: int = 3) -> None:
    """The seed figure: rows n; per sample: sample A, nearest in A, sample B, nearest in B."""
    keys = ("A", "nearest_A", "B", "nearest_B")
    titles = ("sample A", "nearest in A", "sample B", "nearest in B")
    _image_grid(images, keys, titles, path, columns)


def plot_histograms(runs: list[dict], path: Path) -> None:
    """Histograms per n of nearest-training (own, other) and A/B similarities, both measures."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(MEASURES),
        len(runs),
        figsize=(3 * len(runs), 5.5),
        squeeze=False,
        constrained_layout=True,
    )
    for col, r in enumerate(runs):
        sim = r["similarity"]
        for row, m in enumerate(MEASURES):
            ax = axes[row, col]
            values = {
                "nearest in own set": sim["A"]["own"][m] + sim["B"]["own"][m],
                "nearest in other set": sim["A"]["other"][m] + sim["B"]["other"][m],
                "A vs B": sim["AB"][m],
            }
            values = {k: np.asarray(v, dtype=float) for k, v in values.items()}
            values = {k: v[np.isfinite(v)] for k, v in values.items()}
            lo = min((v.min() for v in values.values() if v.size), default=0.9)
            bins = np.linspace(min(lo, 0.9), 1.0, 25)
            for label, v in values.items():
                ax.hist(np.clip(v, bins[0], 1.0), bins=bins, alpha=0.5, label=label)
            ax.set_xlabel(m, fontsize=8)
        axes[0, col].set_title(f"n = {r['n']}", fontsize=9)
    for row, m in enumerate(MEASURES):
        axes[row, 0].set_ylabel(f"samples ({m})", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    save_figure(path, fig)


def plot_curves(result: dict, path: Path) -> None:
    """Median similarity vs n (both measures), PSNR vs n at the middle σ, and quality."""
    plt = _pyplot()
    runs = result["runs"]
    n = np.array([r["n"] for r in runs])
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    for ax, m in zip(axes[:2], MEASURES, strict=True):
        med = [r["similarity"]["medians"] for r in runs]
        ax.plot(n, [x[f"own_A_{m}"] for x in med], "o-", label="sample A vs nearest in A")
        ax.plot(n, [x[f"own_B_{m}"] for x in med], "s-", label="sample B vs nearest in B")
        ax.plot(n, [x[f"AB_{m}"] for x in med], "k^-", label="sample A vs sample B")
        ax.plot(
            n, [x[f"other_A_{m}"] for x in med], ":", color="gray", label="sample A vs nearest in B"
        )
        ax.set(
            xscale="log",
            xlabel="training set size n",
            ylabel=f"median {m}",
            title=f"{m} similarity",
        )
        ax.legend(fontsize=7)
    j = mid_index(np.asarray(result["sigma"]))
    ax = axes[2]
    for part, marker in (("A", "o"), ("B", "s")):
        ax.plot(
            n,
            [r["denoising"][part]["train_psnr"][j] for r in runs],
            marker + "-",
            label=f"train {part}",
        )
        ax.plot(
            n,
            [r["denoising"][part]["test_psnr"][j] for r in runs],
            marker + "--",
            label=f"test {part}",
        )
    ax.axhline(psnr(result["sigma"][j] ** 2), color="gray", ls=":", label="input")
    ax.set(
        xscale="log",
        xlabel="training set size n",
        ylabel="output PSNR (dB)",
        title=f"denoising at σ = {result['sigma'][j]:.3g}",
    )
    ax.legend(fontsize=7)
    ax = axes[3]
    rms = [
        median(np.concatenate([r["quality"][p]["nearest_test_rms"] for p in PARTS])) for r in runs
    ]
    ax.plot(n, rms, "o-", label="sample → nearest held-out")
    ax.axhline(
        result["test_reference"]["median_nearest_test_rms"],
        color="k",
        ls="--",
        label="held-out → nearest other held-out",
    )
    if "disk_fit_rms" in runs[0]["quality"]["A"]:
        fit = [
            median(np.concatenate([r["quality"][p]["disk_fit_rms"] for p in PARTS])) for r in runs
        ]
        ax.plot(n, fit, "s-", label="sample disk-fit residual")
        ax.axhline(
            result["test_reference"]["median_disk_fit_rms"],
            color="gray",
            ls=":",
            label="clean disk-fit residual",
        )
    ax.set(
        xscale="log",
        xlabel="training set size n",
        ylabel="median rms per pixel",
        title="sample quality",
    )
    ax.legend(fontsize=7)
    save_figure(path, fig)


def plot_psnr(result: dict, path: Path) -> None:
    """Output vs input PSNR per n (train dashed, test solid), KL curves vs σ0, KL vs n.

    The third panel puts the distance from memorizing (KL vs the memorizer on training
    images) beside the distance from generalizing (KL vs the exact optimum on held-out
    images, for families that have one) at the lowest σ0, against n.
    """
    plt = _pyplot()
    sigma = np.asarray(result["sigma"])
    fig, (ax, ax_kl, ax_n) = plt.subplots(1, 3, figsize=(16, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(result["runs"])))
    for r, color in zip(result["runs"], colors, strict=True):
        c = r["denoising"]["A"]
        ax.plot(r["input_psnr"], c["test_psnr"], "-", color=color, label=f"n = {r['n']} test")
        ax.plot(r["input_psnr"], c["train_psnr"], "--", color=color)
        for part, ls in (("A", "-"), ("B", ":")):
            kl = np.asarray(r["denoising"][part]["kl"]["value"], dtype=float)
            ax_kl.plot(
                sigma,
                np.maximum(kl, 1e-6),
                ls,
                color=color,
                label=f"n = {r['n']}" if part == "A" else None,
            )
    ax.plot(psnr(sigma**2), psnr(sigma**2), ":", color="gray")
    ax.set(
        xlabel="input PSNR (dB)",
        ylabel="output PSNR (dB)",
        title="network A: train (dashed) and test (solid)",
    )
    ax.legend(fontsize=7)
    ax_kl.set(
        xscale="log",
        yscale="log",
        xlabel="lower cut σ0",
        ylabel="KL vs memorizer (nats per image)",
        title="network vs memorizer on training images (A solid, B dotted)",
    )
    ax_kl.legend(fontsize=7)
    n = [r["n"] for r in result["runs"]]
    i = kl_index(sigma, result["sampler"]["sigma_final"])
    for key, label, color in (
        ("kl", "vs memorizer (train)", "C0"),
        ("kl_test", "vs optimum (test)", "C3"),
    ):
        if key not in result["runs"][0]["denoising"]["A"]:
            continue  # no exact optimum for this family
        for part, marker in (("A", "o-"), ("B", "s:")):
            value = [r["denoising"][part][key]["value"][i] for r in result["runs"]]
            ax_n.plot(n, np.maximum(value, 1e-6), marker, color=color, label=f"{label} {part}")
    ax_n.set(
        xscale="log",
        yscale="log",
        xlabel="training set size n",
        ylabel=f"KL from σ0 = {sigma[i]:.3g} (nats per image)",
        title="memorizing vs generalizing",
    )
    ax_n.legend(fontsize=7)
    save_figure(path, fig)


def plot_local_score(runs: list[dict], path: Path) -> None:
    """Median r² to network A per σ, one curve per n: ELS, LS, memorizer; ELS's calibrated P."""
    plt = _pyplot()
    names = {"els": "ELS machine", "ls": "LS machine", "memorizer": "memorizer"}
    fig, axes = plt.subplots(1, 4, figsize=(17, 4), squeeze=False)
    for r in runs:
        local = r["local_score"]
        sigma = np.asarray(local["sigma"])
        for ax, name in zip(axes[0], names, strict=False):
            ax.plot(sigma, local["r2_median"][name], "o-", ms=3, label=f"n = {r['n']}")
        axes[0, 3].plot(sigma, local["patch"]["els"], "o-", ms=3, label=f"n = {r['n']}")
    for ax, label in zip(axes[0], names.values(), strict=False):
        ax.set(xscale="log", ylim=(-0.05, 1.02), xlabel="σ", ylabel="median r² to network A")
        ax.set_title(f"{label} (r² < 0 not shown)", fontsize=9)
    axes[0, 3].set(xscale="log", xlabel="σ", ylabel="patch side P (pixels)")
    axes[0, 3].set_title("calibrated ELS patch", fontsize=9)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    save_figure(path, fig)


def plot_els_grid(images: dict[int, dict[str, torch.Tensor]], path: Path, columns: int = 3) -> None:
    """Rows n; per sample: network A's sample, the ELS sample from the same noise, and the
    ELS sample's nearest training image."""
    keys = ("A", "els", "nearest_els")
    _image_grid(images, keys, ("network A", "ELS", "nearest to ELS"), path, columns)


def figures(result: dict) -> tuple[str, ...]:
    """The figure files of a sweep."""
    return FIGURES + (LOCAL_SCORE_FIGURES if "local_score" in result["runs"][0] else ())


def plot_all(result: dict, images: dict[int, dict[str, torch.Tensor]], out: Path) -> None:
    """Draw the figures (:func:`figures`) of one sweep under ``out``."""
    out = Path(out)
    plot_grid(images, out / "grid.png")
    plot_histograms(result["runs"], out / "histograms.png")
    plot_curves(result, out / "curves.png")
    plot_psnr(result, out / "psnr.png")
    if "local_score" in result["runs"][0]:
        plot_local_score(result["runs"], out / "local_score.png")
        plot_els_grid(images, out / "els_grid.png")


def load_images(path: Path) -> dict[int, dict[str, torch.Tensor]]:
    """The sample images of ``samples.npz`` by n: ``{n: {"A", "B", "nearest_A", ...}}``."""
    images: dict[int, dict[str, torch.Tensor]] = {}
    with np.load(path) as saved:
        for key in saved.files:
            if key == "y0":
                continue
            name, n = key.rsplit("_n", 1)
            images.setdefault(int(n), {})[name] = torch.from_numpy(saved[key])
    return dict(sorted(images.items()))


def replot(folder: str | Path) -> None:
    """Draw the figures of a finished sweep again from its ``results.json`` and ``samples.npz``."""
    folder = Path(folder)
    result = json.loads((folder / "results.json").read_text())
    plot_all(result, load_images(folder / "samples.npz"), folder)
