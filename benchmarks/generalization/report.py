"""Reporting of the sweep: expectations, the summary table, the result files and the plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import format_table, median
from benchmarks.evaluation import psnr
from benchmarks.generalization.plots import figures, plot_all
from benchmarks.generalization.stats import PARTS, kl_index, mid_index
from benchmarks.output import atomic_write, write_csv, write_json
from theory.similarity import MEASURES

SUMMARY_HEADER = [
    "n",
    "train_psnr_A",
    "train_psnr_B",
    "test_psnr_A",
    "test_psnr_B",
    "kl_A",
    "kl_B",
    "kl_test_A",
    "kl_test_B",
    "nearest_cosine",
    "nearest_correlation",
    "AB_cosine",
    "AB_correlation",
    "sample_test_rms",
    "disk_fit_rms",
    "converged",
    "diverged",
]


def expectations(runs: list[dict], reference: dict) -> dict:
    """The measured expectations of the experiment, as numbers and flags (reported, not enforced).

    At n = 1 every sample's nearest-training cosine >= 0.99 (memorized); at the largest n the
    median A/B cosine >= 0.9 and above the median nearest-training cosine (A/B agreement).
    Agreement alone is not generalization: two untrained networks agree trivially
    (docs/design.md §12), so the sample quality at the largest n is given beside it, as
    the ratio of the samples' median distance to the nearest held-out image to the held-out
    images' own.
    """
    out: dict = {}
    first = runs[0]
    if first["n"] == 1:
        cos = np.array([c for p in PARTS for c in first["similarity"][p]["own"]["cosine"]])
        finite = np.isfinite(cos)
        out["n1_min_nearest_cosine"] = float(cos[finite].min()) if finite.any() else None
        out["n1_diverged"] = int((~finite).sum())
        out["n1_memorized"] = bool(finite.all() and cos.min() >= 0.99)
    last = runs[-1]
    med = last["similarity"]["medians"]
    out["largest_n"] = last["n"]
    for m in MEASURES:
        out[f"largest_n_median_AB_{m}"] = med[f"AB_{m}"]
        out[f"largest_n_median_nearest_{m}"] = med[f"own_{m}"]
        out[f"largest_n_AB_minus_nearest_{m}"] = med[f"AB_{m}"] - med[f"own_{m}"]
    out["largest_n_AB_agree"] = med["AB_cosine"] >= 0.9 and med["AB_cosine"] > med["own_cosine"]
    quality = [last["quality"][p] for p in PARTS]
    rms = median(np.concatenate([q["nearest_test_rms"] for q in quality]))
    out["largest_n_quality_ratio"] = float(rms / reference["median_nearest_test_rms"])
    if "disk_fit_rms" in quality[0]:
        fit = np.concatenate([q["disk_fit_rms"] for q in quality])
        out["largest_n_median_disk_fit_rms"] = median(fit)
    return out


def converged_fraction(sampling: dict) -> float:
    """Fraction of the A and B samples whose ascent reached sigma_final (1 for the flow)."""
    sigma = [v for p in PARTS for v in sampling[p].get("final_sigma", [])]
    if not sigma:
        return 1.0
    return float(np.mean(np.asarray(sigma) <= sampling["sigma_final"]))


def summary_rows(runs: list[dict], sigma: np.ndarray, sigma_final: float) -> list[list]:
    """One row per n (columns :data:`SUMMARY_HEADER`): PSNR at the middle sigma, KL from the
    sampler's last sigma, median similarities, sample quality."""
    j, i = mid_index(sigma), kl_index(sigma, sigma_final)
    rows = []
    for r in runs:
        c, med, q = r["denoising"], r["similarity"]["medians"], r["quality"]
        rms = np.concatenate([q[p]["nearest_test_rms"] for p in PARTS])
        fit = (
            median(np.concatenate([q[p]["disk_fit_rms"] for p in PARTS]))
            if "disk_fit_rms" in q["A"]
            else math.nan
        )
        rows.append(
            [
                r["n"],
                *(float(c[p][k][j]) for k in ("train_psnr", "test_psnr") for p in PARTS),
                *(float(c[p]["kl"]["value"][i]) for p in PARTS),
                *(
                    float(c[p]["kl_test"]["value"][i]) if "kl_test" in c[p] else math.nan
                    for p in PARTS
                ),
                med["own_cosine"],
                med["own_correlation"],
                med["AB_cosine"],
                med["AB_correlation"],
                median(rms),
                float(fit),
                converged_fraction(r["sampling"]),
                sum(len(r["sampling"][p]["diverged"]) for p in PARTS),
            ]
        )
    return rows


def table(rows: list[list]) -> str:
    """The printed table of the summary rows (A/B pairs side by side)."""
    header = [
        "n",
        "train A/B",
        "test A/B",
        "KL A/B",
        "KL test A/B",
        "near cos",
        "near corr",
        "A/B cos",
        "A/B corr",
        "rms→test",
        "disk fit",
        "conv",
        "div",
    ]
    cells = []
    for row in rows:
        n, tra, trb, tea, teb, kla, klb, kta, ktb = row[:9]
        cells.append(
            [
                n,
                f"{tra:6.2f}/{trb:6.2f}",
                f"{tea:6.2f}/{teb:6.2f}",
                f"{kla:8.3g}/{klb:8.3g}",
                f"{kta:8.3g}/{ktb:8.3g}",
                *row[9:],
            ]
        )
    formats = ["d", "s", "s", "s", "s", ".3f", ".3f", ".3f", ".3f", ".3g", ".3g", ".2f", "d"]
    return format_table(header, cells, formats)


def print_table(result: dict, rows: list[list]) -> None:
    """Print the summary table and the expectations."""
    sigma = np.asarray(result["sigma"])
    j, i = mid_index(sigma), kl_index(sigma, result["sampler"]["sigma_final"])
    ref = result["test_reference"]
    size = result["family"]["size"]
    print(
        f"\n{result['family']['name']} {size}x{size}: PSNR at σ = {sigma[j]:.3g} (input "
        f"{psnr(sigma[j] ** 2):.1f} dB); KL from σ0 = {sigma[i]:.3g} (nats; the sampler's last "
        "σ) vs the memorizer on training images and vs the exact optimum on held-out ones (KL "
        "test, when known); medians over samples (nearest = own set)"
    )
    print(table(rows))
    print(
        "conv: fraction of samples whose ascent reached sigma_final; div: diverged samples "
        "(non-finite, left out of the medians)"
    )
    line = (
        f"held-out images: median rms to the nearest other held-out image "
        f"{ref['median_nearest_test_rms']:.4f}"
    )
    if "median_disk_fit_rms" in ref:
        line += f", disk-fit rms of clean disks {ref['median_disk_fit_rms']:.4f}"
    print(line)
    e = result["expectations"]
    if "n1_memorized" in e:
        low = e["n1_min_nearest_cosine"]
        print(
            f"n = 1: min nearest-training cosine {math.nan if low is None else low:.4f} over "
            f"the finite samples, {e['n1_diverged']} diverged "
            f"({'memorized' if e['n1_memorized'] else 'NOT memorized'}: all >= 0.99 expected)"
        )
    print(
        f"n = {e['largest_n']}: median A/B cosine {e['largest_n_median_AB_cosine']:.3f} vs "
        f"nearest-training {e['largest_n_median_nearest_cosine']:.3f}; correlation "
        f"{e['largest_n_median_AB_correlation']:.3f} vs "
        f"{e['largest_n_median_nearest_correlation']:.3f} "
        f"({'A/B agree' if e['largest_n_AB_agree'] else 'A/B do NOT agree'}: "
        "A/B cosine >= 0.9 and above nearest expected)"
    )
    quality = (
        f"sample quality at n = {e['largest_n']}: distance to held-out "
        f"{e['largest_n_quality_ratio']:.2f}x the held-out images' own"
    )
    if "largest_n_median_disk_fit_rms" in e:
        quality += (
            f"; disk-fit rms {e['largest_n_median_disk_fit_rms']:.4f} (clean disks "
            f"{ref['median_disk_fit_rms']:.4f})"
        )
    print(quality + " (agreement of poor samples is not generalization)")
    if "local_score" in result["runs"][0]:
        print(local_score_table(result["runs"], sigma))
    if result["capped"]:
        print(f"note: {result['capped']}")


def local_score_table(runs: list[dict], sigma: np.ndarray) -> str:
    """Per n: the machines' median r² to network A at the middle σ and the ELS samples."""
    j = mid_index(sigma)
    header = [
        "n",
        "P els",
        "r² ELS",
        "r² LS",
        "r² mem",
        "Δ ELS",
        "ELS smp r²",
        "ELS near",
        "A near",
    ]
    rows = []
    for r in runs:
        local, els = r["local_score"], r["local_score"]["els_samples"]
        rows.append(
            [
                r["n"],
                local["patch"]["els"][j],
                *(local["r2_median"][k][j] for k in ("els", "ls", "memorizer")),
                local["residual_r2_median"]["els"][j],
                els["median_r2_to_network"],
                els["median_nearest"]["correlation"],
                r["similarity"]["medians"]["own_A_correlation"],
            ]
        )
    formats = ["d", "d", ".3f", ".3f", ".3f", ".3f", ".3f", ".3f", ".3f"]
    return (
        f"\nlocal score machines vs network A at σ = {sigma[j]:.3g} (median r² over held-out "
        "images; Δ ELS: of the corrections f(y) − y), and ELS samples from A's noise (median "
        "r² to A's samples, nearest-training correlation beside A's own)\n"
        + format_table(header, rows, formats)
    )


def write_outputs(
    out: str | Path,
    result: dict,
    images: dict[int, dict[str, torch.Tensor]],
    y0: torch.Tensor,
    order: list[str] | None = None,
) -> list[str]:
    """Write every file of a sweep under ``out``, ``results.json`` last; return their names.

    ``summary.csv`` (one row per n), ``samples.npz`` (``y0`` and, per n, the samples of A and
    B and their nearest training images, and the ELS samples), the figures, ``order.txt``
    (the fixed order of a finite family's sources, when ``order`` is given) and ``results.json``.
    """
    out = Path(out)
    written = []
    if order is not None:
        text = ("\n".join(order) + "\n").encode()
        atomic_write(out / "order.txt", lambda f: f.write(text))
        written.append("order.txt")
    arrays = {f"{key}_n{n}": v.numpy() for n, d in images.items() for key, v in d.items()}
    atomic_write(
        out / "samples.npz", lambda f: np.savez_compressed(f, y0=y0.cpu().numpy(), **arrays)
    )
    rows = summary_rows(
        result["runs"], np.asarray(result["sigma"]), result["sampler"]["sigma_final"]
    )
    write_csv(out / "summary.csv", SUMMARY_HEADER, rows)
    plot_all(result, images, out)
    write_json(out / "results.json", result)
    return [*written, "samples.npz", "summary.csv", *figures(result), "results.json"]
