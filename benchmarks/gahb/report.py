"""The GAHB benchmark's reporting: result files, figures and the printed table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import format_table
from benchmarks.gahb import plots
from benchmarks.gahb.measure import summarize
from benchmarks.output import atomic_write, write_csv, write_json

SPECTRA = ("eigvals", "clean_coefficients", "noisy_coefficients", "memorizer_eigvals")


def write_spectra(result: dict, path: Path) -> None:
    """spectra.npz: per σ the network's and the memorizer's eigenvalues and the coefficients."""
    arrays = {"sigma": np.array([row["sigma"] for row in result["rows"]]), "clean": result["clean"]}
    for key in SPECTRA:
        arrays[key] = np.stack([row[key] for row in result["rows"]])
    if "optimum_eigvals" in result["rows"][0]:
        arrays["optimum_eigvals"] = np.stack([row["optimum_eigvals"] for row in result["rows"]])
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def grid_row(result: dict, sigma: float) -> dict:
    return next(row for row in result["rows"] if row["sigma"] == sigma)


def write_family(result: dict, sigma: float, out: Path) -> list[dict]:
    """The family's figures, spectra.npz, then results.json (last: it marks a complete run)."""
    row = grid_row(result, sigma)
    plots.plot_eigenvectors(result, row, out / "eigenvectors.png")
    plots.plot_spectra(result, out / "spectra.png")
    plots.plot_compaction(result, row, out / "compaction.png")
    write_spectra(result, out / "spectra.npz")
    summary = summarize(result)
    keep = ("family", "name", "params", "n_train", "n_images", "d", "network", "wall_s")
    write_json(out / "results.json", {**{k: result[k] for k in keep}, "sigmas": summary})
    return summary


CSV_HEADER = [
    "family",
    "sigma",
    "trace",
    "memorizer_trace",
    "optimum_trace",
    "asymmetry",
    "homogeneity",
    "leading_asymmetry",
    "asymmetric_output",
    "mse_network",
    "mse_symmetric",
    "k_star",
    "captured_gahb",
    "captured_wavelet",
    "captured_bandlet",
    "captured_fourier",
    "captured_pca",
    "oracle_mse_gahb",
    "oracle_mse_wavelet",
    "oracle_mse_bandlet",
    "oracle_mse_fourier",
    "oracle_mse_pca",
    "best_oracle_basis",
    "best_compaction_basis",
    "memorizer_cosine_mean",
    "optimum_cosine_mean",
    "tangent_in_top20",
    "contour_energy",
    "contour_area",
]
BASES = ("gahb", "wavelet_db4", "bandlet_db4", "fourier", "pca")


def csv_row(s: dict) -> list:
    return [
        s["family"],
        s["sigma"],
        s["trace"],
        s["memorizer_trace"],
        s["optimum_trace"],
        s["asymmetry"],
        s["homogeneity"],
        s["leading_asymmetry"],
        s["asymmetric_output"],
        s["mse_network"],
        s["mse_symmetric"],
        s["k_star"],
        *[s["captured_at_k_star"].get(b) for b in BASES],
        *[s["oracle_mse"].get(b) for b in BASES],
        s["best_oracle_basis"],
        s["best_compaction_basis"],
        s["memorizer_cosine_mean"],
        s.get("optimum_cosine_mean"),
        s.get("tangent_in_top20"),
        s.get("contour_energy"),
        s.get("contour_area"),
    ]


def print_table(summaries: list[dict]) -> None:
    header = [
        "family",
        "σ",
        "tr J",
        "tr J mem",
        "tr J*",
        "asym",
        "asym top20",
        "MSE Sy/f",
        "f-Jy",
        "capt@trJ",
        "best fixed",
        "oracle MSE winner",
        "contour x",
    ]
    rows = []
    for s in summaries:
        fixed = {b: v for b, v in s["captured_at_k_star"].items() if b != "gahb"}
        best = max(fixed, key=fixed.get)
        rows.append(
            [
                s["family"],
                s["sigma"],
                s["trace"],
                s["memorizer_trace"],
                np.nan if s["optimum_trace"] is None else s["optimum_trace"],
                s["asymmetry"],
                s["leading_asymmetry"],
                s["mse_symmetric"] / s["mse_network"],
                s["homogeneity"],
                s["captured_at_k_star"]["gahb"],
                f"{best} {fixed[best]:.3f}",
                s["best_oracle_basis"],
                s.get("contour_energy", np.nan) / s.get("contour_area", 1.0),
            ]
        )
    formats = ["s", "g", ".1f", ".1f", ".1f", ".3f", ".3f", ".3f", ".1e", ".3f", "s", "s", ".1f"]
    print(format_table(header, rows, formats))


def write_all(results: list[dict], sigma: float, provenance: dict, out: Path) -> list[dict]:
    """Every family's files, the effective-dimension figure, summary.csv, the table."""
    summaries = []
    for result in results:
        summaries += write_family(result, sigma, out / result["family"])
    plots.plot_effective_dimension(results, out / "effective_dimension.png")
    write_csv(out / "summary.csv", CSV_HEADER, [csv_row(s) for s in summaries])
    write_json(
        out / "run.json", {"provenance": provenance, "families": [r["family"] for r in results]}
    )
    print_table(summaries)
    return summaries
