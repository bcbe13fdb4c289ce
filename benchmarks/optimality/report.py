"""The optimality benchmark's reporting: result files, figures and printed tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import format_table
from benchmarks.optimality import plots
from benchmarks.output import write_csv, write_json


def write_family(result: dict, out: Path) -> None:
    """curves.csv, the figures, then results.json (last, so it marks a complete run)."""
    names = list(result["mse"])
    header = ["sigma"] + [f"{k}_{n}" for n in names for k in ("mse", "mse_se")]
    rows = [
        [s] + [result[k][n][j] for n in names for k in ("mse", "mse_se")]
        for j, s in enumerate(result["sigma"])
    ]
    write_csv(out / "curves.csv", header, rows)
    plots.plot_risk(result, out / "curves.png")
    if "kl" in result:
        plots.plot_kl(result, out / "kl.png")
        plots.plot_effective_dimension(result, out / "effective_dimension.png")
    if "local_score" in result:
        plots.plot_local_score(result["local_score"], out / "local_score.png")
    if "objectives" in result:
        plots.plot_objectives(result["objectives"], out / "objectives.png")
    if "gaussian_check" in result:
        plots.plot_gaussian_check(result["gaussian_check"], out / "kl_check.png")
    write_json(out / "results.json", result)


def table_sigmas(result: dict) -> list[int]:
    """Indices of the five σ the tables show (both ends included)."""
    return list(np.linspace(0, len(result["sigma"]) - 1, 5).round().astype(int))


def summary_rows(results: list[dict]) -> tuple[list[str], list[list]]:
    """summary.csv: PSNR at five σ and the slope with its CI, per family and denoiser."""
    idx = table_sigmas(results[0])
    sigma = np.asarray(results[0]["sigma"])
    header = ["family", "denoiser"] + [f"psnr_sigma_{sigma[i]:.3g}" for i in idx]
    rows = []
    for r in results:
        for name in r["mse"]:
            fit = r["slopes"][name]
            values = [float(r["psnr"][name][i]) for i in idx]
            rows.append([r["family"], name, *values, fit["slope"], *fit["ci"]])
    return header + ["slope", "slope_ci_lo", "slope_ci_hi"], rows


def family_lines(r: dict, idx: list[int]) -> list[str]:
    """The lines printed under a family's PSNR rows: exponent, ratios, KL, Gaussian check."""
    lines = []
    if "minimax_exponent" in r:
        lines.append(f"  minimax exponent 2α/(α+1) = {r['minimax_exponent']:.2f}")
    for key in ("ratio_to_best_reference", "ratio_to_best_reference_raw"):
        if key in r:
            ratio = r[key]
            lines.append(
                f"  {ratio['denoiser']} / best reference: "
                + " ".join(f"{ratio['ratio'][i]:.3f}" for i in idx)
                + f"  worst {ratio['worst']:.3f} (σ ≥ 0.1: {ratio['worst_sigma_ge_0.1']:.3f})"
            )
    for key in ("kl", "kl_train"):
        if key in r:
            kl = r[key]
            lines.append(
                f"  {key} ({kl['kind']} vs {kl['reference']}) at σ0 = "
                + ", ".join(
                    f"{kl['sigma0'][i]:.3g}: {kl['value'][i]:.3g} ± {kl['se'][i]:.2g}"
                    for i in (0, len(kl["sigma0"]) // 2)
                )
                + " nats"
            )
    if "local_score" in r:
        lines += local_score_lines(r["local_score"], idx)
    if "gaussian_check" in r:
        kl = r["gaussian_check"]
        lines.append(
            f"  wrong-spectrum Wiener KL at σ0 = {kl['sigma0'][0]:.3g}: Monte "
            f"Carlo {kl['value'][0]:.4g} ± {kl['se'][0]:.2g}, quadrature "
            f"{kl['quadrature_of_closed_form'][0]:.4g}, closed form "
            f"{kl['closed_form'][0]:.4g}"
        )
    return lines


def local_score_lines(agreement: dict, idx: list[int]) -> list[str]:
    """Median r² of ELS, LS and the memorizer to the network, and ELS's calibrated sides."""
    sigma = agreement["sigma"]
    lines = []
    for key, what in (("r2_median", "outputs"), ("residual_r2_median", "corrections f(y) − y")):
        r2 = agreement[key]
        lines.append(f"  median r² to {agreement['network']}, {what} (ELS / LS / memorizer):")
        lines.append(
            "    "
            + ", ".join(
                f"σ={sigma[i]:.3g}: {r2['els'][i]:.2f}/{r2['ls'][i]:.2f}/{r2['memorizer'][i]:.2f}"
                for i in idx
            )
        )
    lines.append(
        "  calibrated patch sides (ELS / LS): "
        + ", ".join(f"{agreement['patch']['els'][i]}/{agreement['patch']['ls'][i]}" for i in idx)
    )
    return lines


def print_tables(results: list[dict]) -> None:
    """PSNR at five σ with each slope, then each family's ratios and KL values."""
    idx = table_sigmas(results[0])
    sigma = np.asarray(results[0]["sigma"])
    header = ["family", "denoiser"] + [f"σ={sigma[i]:.3g}" for i in idx] + ["slope [95% CI]"]
    rows = [
        [r["family"], name]
        + [float(r["psnr"][name][i]) for i in idx]
        + [
            f"{r['slopes'][name]['slope']:.2f} [{r['slopes'][name]['ci'][0]:.2f}, "
            f"{r['slopes'][name]['ci'][1]:.2f}]"
        ]
        for r in results
        for name in r["mse"]
    ]
    print("\nPSNR (dB) on held-out images")
    print(format_table(header, rows, ["s", "s"] + [".2f"] * len(idx) + ["s"]))
    for r in results:
        lines = family_lines(r, idx)
        if lines:
            print(f"{r['family']}:")
            print("\n".join(lines))


def write_permutation_checks(checks: dict[str, dict], out: Path) -> None:
    """Print each permutation check and write ``<out>/<family>.json`` and ``.png``."""
    for name, check in checks.items():
        print(f"\n{check['note'].split(';')[0]} (1 = blind to the pixel order)")
        for denoiser, ratio in check["ratio"].items():
            step = max(1, len(ratio) // 5)
            print(f"  {denoiser:26s} " + " ".join(f"{v:7.3f}" for v in ratio[::step]))
        plots.plot_permutation(check, out / f"{name}.png")
        write_json(out / f"{name}.json", check)


def write_summary(results: list[dict], out: Path) -> None:
    """``<out>/summary.csv`` (summary_rows)."""
    header, rows = summary_rows(results)
    write_csv(out / "summary.csv", header, rows)
