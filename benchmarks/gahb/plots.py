"""The GAHB benchmark's figures (matplotlib, written as PNG by ``benchmarks.output``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.gahb.config import LATER_RANKS, LEADING  # noqa: E402
from benchmarks.output import save_figure  # noqa: E402

BASIS_STYLE = {
    "gahb": ("k", "-", "network's Jacobian eigenvectors (by eigenvalue)"),
    "wavelet_db4": ("tab:blue", "--", "db4 wavelets (best k-term)"),
    "bandlet_db4": ("tab:green", "--", "bandlets (best k-term)"),
    "fourier": ("tab:orange", "--", "Fourier (best k-term)"),
    "pca": ("tab:purple", "--", "training PCA (best k-term)"),
}


def plot_eigenvectors(result: dict, row: dict, path: Path) -> None:
    """The paper's layout: the noisy image, the leading eigenvectors, a few later ones.

    Each panel is titled with its rank and eigenvalue; shuffled faces add the same vectors
    unshuffled, disks the five tangent vectors at the true parameters.
    """
    size = int(round(np.sqrt(result["d"])))
    eigvecs, eigvals = row["grid"]["eigvecs"], row["eigvals"][0]
    ranks = list(range(1, min(LEADING, eigvecs.shape[1]) + 1))
    ranks += [k for k in LATER_RANKS if k <= eigvecs.shape[1]]
    panels = [("noisy y", row["grid"]["noisy"], "gray")]
    panels += [
        (f"k={k} λ={eigvals[k - 1]:.2f}", eigvecs[:, k - 1].reshape(size, size), "RdBu_r")
        for k in ranks
    ]
    sets = [("", panels)]
    if "unshuffle" in result:
        unshuffle = result["unshuffle"]
        sets.append(
            (" unshuffled", [(t, np.asarray(unshuffle(img)), cmap) for t, img, cmap in panels])
        )
    if "tangent" in row:
        items = [(f"tangent {i + 1}", t, "RdBu_r") for i, t in enumerate(row["tangent"])]
        sets.append(("", items))
    cols = 9
    nrows = sum(-(-len(p) // cols) for _, p in sets)
    fig, axes = plt.subplots(nrows, cols, figsize=(1.5 * cols, 1.65 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    r = 0
    for suffix, items in sets:
        for i, (title, img, cmap) in enumerate(items):
            ax = axes[r + i // cols, i % cols]
            lim = float(np.abs(img).max()) or 1.0
            kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
            ax.imshow(img, cmap=cmap, **kw)
            ax.set_title(title + (suffix if i == 0 else ""), fontsize=7)
        r += -(-len(items) // cols)
    fig.suptitle(
        f"{result['family']}: eigenvectors of the network's Jacobian, σ = {row['sigma']:g}"
    )
    save_figure(path, fig)


def plot_spectra(result: dict, path: Path) -> None:
    """λ_k and |<x, e_k>| against k on log axes at every σ, beside the optima's λ_k."""
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(rows)))
    for row, color in zip(rows, colors, strict=True):
        k = np.arange(1, row["eigvals"].shape[1] + 1)
        axes[0].loglog(
            k, np.clip(row["eigvals"][0], 1e-6, None), color=color, label=f"σ={row['sigma']:g}"
        )
        axes[0].loglog(
            k, np.clip(row["memorizer_eigvals"][0][: k.size], 1e-6, None), color=color, ls=":"
        )
        if "optimum_eigvals" in row:
            axes[0].loglog(
                k, np.clip(row["optimum_eigvals"][0][: k.size], 1e-6, None), color=color, ls="--"
            )
        axes[1].loglog(k, np.abs(row["clean_coefficients"][0]), color=color, lw=0.7)
    axes[0].set(
        xlabel="k",
        ylabel="λ_k",
        title="eigenvalues (solid: network; dotted: memorizer; dashed: exact optimum)",
        ylim=(1e-4, 1.5),
    )
    axes[0].title.set_fontsize(8)
    axes[1].set(xlabel="k", ylabel="|<x, e_k>|", title="clean image in the network's eigenvectors")
    axes[0].legend(fontsize=7)
    fig.suptitle(result["family"])
    save_figure(path, fig)


def plot_effective_dimension(results: list[dict], path: Path) -> None:
    """tr J of the network against σ per family, beside the optima's."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, result in enumerate(results):
        color = f"C{i}"
        sigma = [row["sigma"] for row in result["rows"]]
        ax.loglog(
            sigma,
            [np.median(row["trace"]) for row in result["rows"]],
            "o-",
            color=color,
            label=result["family"],
        )
        ax.loglog(
            sigma,
            [max(np.median(row["memorizer_trace"]), 1e-3) for row in result["rows"]],
            ":",
            color=color,
        )
        if "optimum_trace" in result["rows"][0]:
            traces = [np.median(row["optimum_trace"]) for row in result["rows"]]
            ax.loglog(sigma, traces, "--", color=color)
        if "tangent_dim" in result["rows"][0]:
            ax.axhline(result["rows"][0]["tangent_dim"], color=color, lw=0.8, ls="-.")
    ax.set(
        xlabel="σ",
        ylabel="tr J (effective dimension)",
        title="network (o-), memorizer (:), exact optimum (--), disk manifold dimension (-.)",
    )
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    save_figure(path, fig)


def plot_compaction(result: dict, row: dict, path: Path) -> None:
    """Captured fraction of ||x - mean||^2 against k: the network's basis and the fixed ones."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in row["captured"].items():
        color, ls, text = BASIS_STYLE[name]
        k = np.arange(1, curve.shape[1] + 1)
        ax.semilogx(k, np.median(curve, axis=0), color=color, ls=ls, label=text)
    ax.axvline(np.median(row["trace"]), color="0.5", lw=0.8, label="tr J")
    ax.set(
        xlabel="k",
        ylabel="captured fraction of ||x − mean||²",
        ylim=(0, 1.01),
        title=f"{result['family']}, σ = {row['sigma']:g} (median over images)",
    )
    ax.legend(fontsize=7, loc="lower right")
    save_figure(path, fig)
