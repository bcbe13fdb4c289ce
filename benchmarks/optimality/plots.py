"""Figures of the optimality benchmark: risk and KL curves, effective dimension, local score."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.evaluation import psnr  # noqa: E402
from benchmarks.output import save_figure  # noqa: E402


def plot_risk(result: dict, path: Path) -> None:
    """MSE vs σ with fitted slopes, local slope vs σ, and output vs input PSNR."""
    sigma = np.asarray(result["sigma"])
    fig, (ax_mse, ax_slope, ax_psnr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, mse in result["mse"].items():
        mse, se = np.asarray(mse), np.asarray(result["mse_se"][name])
        fit = result["slopes"][name]
        line = ax_mse.errorbar(
            sigma,
            mse,
            yerr=se,
            marker="o",
            ms=3,
            capsize=2,
            label=f"{name} (slope {fit['slope']:.2f})",
        )[0]
        s_fit = np.geomspace(*fit["window"], 20)
        ax_mse.plot(
            s_fit,
            np.exp(fit["intercept"]) * s_fit ** fit["slope"],
            "--",
            color=line.get_color(),
            lw=1,
        )
        local = result["local_slopes"][name]
        ax_slope.plot(
            local["sigma"], local["slope"], marker=".", color=line.get_color(), label=name
        )
        ax_psnr.plot(
            psnr(sigma**2), result["psnr"][name], marker=".", color=line.get_color(), label=name
        )
    ax_mse.plot(sigma, sigma**2, ":", color="gray", label="identity (σ²)")
    ax_mse.set(
        xscale="log",
        yscale="log",
        xlabel="σ",
        ylabel="MSE per pixel",
        title=f"{result['family']}: risk on held-out images",
    )
    ax_mse.legend(fontsize=7)
    if "minimax_exponent" in result:
        ax_slope.axhline(
            result["minimax_exponent"],
            color="k",
            ls="--",
            label=f"2α/(α+1) = {result['minimax_exponent']:.2f}",
        )
    ax_slope.set(
        xscale="log",
        xlabel="σ",
        ylabel="local slope d ln MSE / d ln σ",
        title="local slope (3-point windows)",
    )
    ax_slope.legend(fontsize=7)
    ax_psnr.plot(psnr(sigma**2), psnr(sigma**2), ":", color="gray")
    ax_psnr.set(xlabel="input PSNR (dB)", ylabel="output PSNR (dB)", title="output vs input PSNR")
    save_figure(path, fig)


def plot_kl(result: dict, path: Path) -> None:
    """The KL integrand ΔSSE/σ² against ln σ, and the KL integral over the lower cut σ0."""
    fig, (ax_int, ax_kl) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kl in [*result["kl_curves"], result["kl_train"]]:
        s0 = np.asarray(kl["sigma0"])
        label = f"{kl['kind']} vs {kl['reference']}"
        integrand, integrand_se = np.asarray(kl["integrand"]), np.asarray(kl["integrand_se"])
        line = ax_int.plot(s0, integrand, "o-", ms=3, label=label)[0]
        ax_int.fill_between(
            s0,
            integrand - 2 * integrand_se,
            integrand + 2 * integrand_se,
            color=line.get_color(),
            alpha=0.25,
        )
        value, se = np.asarray(kl["value"]), np.asarray(kl["se"])
        ax_kl.plot(s0, value, "o-", ms=3, color=line.get_color(), label=label)
        ax_kl.fill_between(s0, value - 2 * se, value + 2 * se, color=line.get_color(), alpha=0.25)
    ax_int.axhline(0, color="gray", lw=0.8)
    ax_int.set(
        xscale="log",
        xlabel="σ",
        ylabel="ΔSSE / σ² (nats per unit ln σ)",
        title="KL integrand (±2 SE)",
    )
    ax_int.legend(fontsize=7)
    ax_kl.axhline(0, color="gray", lw=0.8)
    ax_kl.set(
        xscale="log",
        xlabel="lower cut σ0",
        ylabel="∫_σ0^∞ ΔSSE σ⁻³ dσ (nats per image)",
        title=f"{result['family']}: KL over the cut σ0 (±2 SE)",
    )
    ax_kl.legend(fontsize=7)
    save_figure(path, fig)


def plot_effective_dimension(result: dict, path: Path) -> None:
    """E tr ∇f(y) per σ, and the Stein check SSE ≈ σ² E tr ∇f beside SURE."""
    eff = result["effective_dimension"]
    sigma = np.asarray(eff["sigma"])
    trace, trace_se = np.asarray(eff["trace"]), np.asarray(eff["trace_se"])
    fig, (ax_dim, ax_stein) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_dim.errorbar(
        sigma,
        trace,
        yerr=2 * trace_se,
        marker="o",
        ms=3,
        capsize=2,
        label=f"{eff['denoiser']} ({eff['method']})",
    )
    ax_dim.axhline(result["d"], color="gray", ls=":", label=f"d = {result['d']}")
    ax_dim.set(
        xscale="log", yscale="log", xlabel="σ", ylabel="E tr ∇f(y)", title="effective dimension"
    )
    ax_dim.legend(fontsize=8)
    ax_stein.plot(sigma, eff["sse"], "o-", ms=3, label="SSE (true error)")
    ax_stein.plot(sigma, eff["sigma2_trace"], "s--", ms=3, label="σ² E tr ∇f (exact if optimal)")
    ax_stein.plot(sigma, eff["sure"], "^:", ms=3, label="SURE (unbiased for any f)")
    ax_stein.set(
        xscale="log", yscale="log", xlabel="σ", ylabel="SSE per image", title="Stein check"
    )
    ax_stein.legend(fontsize=8)
    save_figure(path, fig)


def plot_gaussian_check(check: dict, path: Path) -> None:
    """Wiener on a wrong spectrum: Monte Carlo KL, quadrature of the exact ΔSSE, closed form."""
    s0 = np.asarray(check["sigma0"])
    value, se = np.asarray(check["value"]), np.asarray(check["se"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(s0, value, "o-", ms=3, label="Monte Carlo integral")
    ax.fill_between(s0, value - 2 * se, value + 2 * se, alpha=0.3, label="±2 SE")
    ax.plot(s0, check["quadrature_of_closed_form"], "--", label="quadrature of exact ΔSSE")
    ax.plot(s0, check["closed_form"], "k:", label="closed form KL(p_σ0‖q_σ0)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="lower cut σ0",
        ylabel="KL (nats per image)",
        title="Wiener on a wrong spectrum"
        + ("" if check.get("wrong_gamma") is None else f" (γ = {check['wrong_gamma']:g})"),
    )
    ax.legend(fontsize=8)
    save_figure(path, fig)


def objective_label(name: str, params: dict) -> str:
    """Short legend text: the objective and its σ law (and σ_d for EDM's weight)."""
    if name == "paper":
        return f"paper (σ = {params['sigma_max']:g}·u², plain)"
    low, high = params["sigma_min"], params["sigma_max"]
    if name == "kl":
        return f"kl (log-uniform [{low:g}, {high:g}], 1/σ²)"
    law = params["law"]
    support = {
        "paper": f"= {high:g}·u² ≥ {low:g}",
        "log_uniform": f"log-uniform [{low:g}, {high:g}]",
        "log_normal": "log-normal",
        "mixed": f"{params['mix']:g} log-uniform, rest {high:g}·u² ≥ {low:g}",
    }[law]
    return f"edm (σ {support}, σ_d = {params['sigma_d']:g})"


def plot_objectives(comparison: dict, path: Path) -> None:
    """MSE of each training objective's network over the best reference, per σ."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, entry in comparison["objectives"].items():
        ax.plot(
            comparison["sigma"],
            entry["ratio"],
            "o-",
            ms=3,
            label=f"{objective_label(name, entry['params'])} (worst {entry['worst']:.2f})",
        )
    ax.axhline(1, color="gray", lw=0.8)
    ax.axhline(1.25, color="gray", ls=":", lw=0.8, label="target 1.25")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="σ",
        ylabel="MSE network / MSE best reference",
        title=f"training objectives ({comparison['budget']})",
    )
    ax.legend(fontsize=8)
    save_figure(path, fig)


def plot_permutation(check: dict, path: Path) -> None:
    """MSE on a pixel-permuted family over MSE on the original, for each denoiser."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, ratio in check["ratio"].items():
        ax.plot(check["sigma"], ratio, "o-", ms=3, label=name)
    ax.axhline(1, color="gray", lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="σ",
        ylabel="MSE permuted / MSE original",
        title="a fixed pixel permutation: who notices?",
    )
    ax.legend(fontsize=8)
    save_figure(path, fig)


def plot_local_score(agreement: dict, path: Path) -> None:
    """Median r² of ELS, LS and the memorizer to the network per σ, and the calibrated P."""
    sigma = np.asarray(agreement["sigma"])
    fig, (ax_r2, ax_p) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {"els": "ELS machine", "ls": "LS machine", "memorizer": "memorizer"}
    for (name, label), color in zip(labels.items(), ("C0", "C1", "C2"), strict=True):
        ax_r2.plot(sigma, agreement["r2_median"][name], "o-", ms=3, color=color, label=label)
        residual = agreement["residual_r2_median"][name]
        ax_r2.plot(sigma, residual, "s--", ms=3, color=color, label=f"{label}, f(y) − y")
    lowest = min(
        min(v) for key in ("r2_median", "residual_r2_median") for v in agreement[key].values()
    )
    ax_r2.set(
        xscale="log",
        ylim=(max(lowest, -1.0) - 0.05, 1.02),
        xlabel="σ",
        ylabel="median r² over images",
        title=f"prediction of {agreement['network']} (r² below -1 not shown)",
    )
    ax_r2.axhline(1, color="gray", ls=":")
    ax_r2.legend(fontsize=8)
    for name in ("els", "ls"):
        ax_p.plot(sigma, agreement["patch"][name], "o-", ms=3, label=labels[name])
    ax_p.set(xscale="log", xlabel="σ", ylabel="patch side P (pixels)", title="calibrated P")
    ax_p.legend(fontsize=8)
    save_figure(path, fig)
