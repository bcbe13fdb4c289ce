"""How far is each denoiser from optimal, noise level by noise level.

``python -m benchmarks.optimality`` measures, per image family, the Monte Carlo risk
(MSE, SSE and PSNR with standard errors) of every reference denoiser on held-out images
over a log-spaced σ grid, fits log-log slopes on a stated window beside the minimax
exponent 2α/(α+1) (DESIGN §4), and, for the Gaussian family, turns the excess risk of a
Wiener filter built on a wrong spectrum into the KL integral and checks it against the
closed form. Writes ``<out>/<family>/results.json``, ``curves.csv`` and PNG plots, and
``<out>/summary.csv``; prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.cli import Parser, parse_sigmas, parse_window
from benchmarks.evaluation import RiskCurves, psnr, risk_curves
from benchmarks.output import provenance, save_figure, write_csv, write_json
from models.memorizer import Memorizer
from models.protocol import Denoiser
from models.wavelets import WaveletThreshold
from models.wiener import Wiener
from synthetic import FAMILY_NAMES, get_family
from synthetic.family import Family
from synthetic.fields import field_spectrum
from theory.gaussian import gaussian_kl, gaussian_mmse, mismatched_sse
from theory.kl import kl_curve
from theory.rates import fit_power_law, local_slopes, minimax_exponent

# The wrong model for the Gaussian KL check: same pixel variance, spectrum steeper by this.
WRONG_GAMMA_OFFSET = 1.0


def build_parser() -> Parser:
    p = Parser(prog="python -m benchmarks.optimality", description=__doc__.split("\n\n")[1])
    p.add_argument(
        "--family",
        default="all",
        help=f"comma-separated families or 'all'; choices: {', '.join(FAMILY_NAMES)}",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default: each family's own, 32 or 24 for faces)",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=128,
        help="held-out images per family, capped by what a finite family holds",
    )
    p.add_argument(
        "--n-train",
        type=int,
        default=1000,
        help="training images for the data-fitted references (memorizer, PCA Wiener);"
        " capped by what a finite family holds",
    )
    p.add_argument(
        "--sigmas",
        type=parse_sigmas,
        default=parse_sigmas("1e-3:1:19"),
        help="noise levels in pixel units: lo:hi:n log-spaced, or a list a,b,c",
    )
    p.add_argument(
        "--slope-window",
        type=parse_window,
        default=(0.01, 0.3),
        help="sigma window lo,hi of the fitted log-log slopes",
    )
    p.add_argument("--alpha", type=float, default=2.0, help="cartoons: contour regularity α")
    p.add_argument(
        "--beta", type=float, default=None, help="cartoons: background regularity β (default α)"
    )
    p.add_argument("--gamma", type=float, default=2.0, help="gaussian: spectral exponent γ")
    p.add_argument(
        "--faces-dir",
        default=None,
        help="faces: folder of aligned face images (e.g. CelebA); default the"
        " embedded LFW subset of scikit-image",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of images, splits and noise")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default="out/optimality", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def family_params(name: str, args: argparse.Namespace) -> dict:
    """The command-line options that belong to one family."""
    return {
        "cartoons": {"alpha": args.alpha, "beta": args.beta},
        "gaussian": {"gamma": args.gamma},
        "faces": {"folder": args.faces_dir},
        "shuffled_faces": {"folder": args.faces_dir},
    }.get(name, {})


def make_families(args: argparse.Namespace) -> list[Family]:
    """Build every requested family up front, so bad input fails before any work."""
    names = list(FAMILY_NAMES) if args.family == "all" else args.family.split(",")
    for value, what in ((args.n_test, "--n-test"), (args.n_train, "--n-train")):
        if value < 2:
            raise ValueError(f"{what} must be at least 2 (got {value})")
    return [
        get_family(
            name.strip(), size=args.size, seed=args.seed, **family_params(name.strip(), args)
        )
        for name in names
    ]


def references(family: Family, train: torch.Tensor) -> dict[str, Denoiser]:
    """The reference denoisers of a family, keyed by name."""
    if family.name == "gaussian":
        spectrum = torch.as_tensor(family.spectrum())
        wiener = Wiener.stationary(family.mean, spectrum, name="wiener")
    else:
        wiener = Wiener.from_data(train, name="wiener_pca")
    refs = [
        Memorizer(train),
        wiener.to(train.device),
        WaveletThreshold("db4", mode="hard", factor=3.0),
        WaveletThreshold("db4", mode="hard", factor=3.0, shifts=4),
    ]
    return {f.name: f for f in refs}


def gaussian_kl_check(
    family: Family, images: torch.Tensor, sigma: np.ndarray, seed: int, progress: bool
) -> dict:
    """KL integral of a Wiener filter built on a wrong spectrum, against the closed form.

    The wrong filter is the exact optimal denoiser of another stationary Gaussian q (same
    mean and pixel variance, exponent γ + 1), so DESIGN §4's identity holds exactly:
    ``KL(p_σ0 ‖ q_σ0) = ∫_σ0^∞ (SSE_q − SSE*_p) σ^-3 dσ``. Reported three ways: Monte Carlo
    (paired differences, with standard error), the same quadrature applied to the
    closed-form excess risk (isolates quadrature and tail error), and the closed form.
    """
    p = family.spectrum().ravel()
    q = field_spectrum(
        family.size, family.params["gamma"] + WRONG_GAMMA_OFFSET, family.params["std"]
    ).ravel()
    exact = Wiener.stationary(family.mean, torch.as_tensor(family.spectrum()), name="wiener")
    wrong = Wiener.stationary(
        family.mean, torch.as_tensor(q.reshape(family.spectrum().shape)), name="wiener_wrong"
    )
    curves = risk_curves(
        {"wiener": exact.to(images.device), "wrong": wrong.to(images.device)},
        images,
        sigma,
        seed,
        progress=progress,
        desc="gaussian KL",
    )
    mc = kl_curve(sigma, (curves.sse["wrong"] - curves.sse["wiener"]).T)
    zero = np.zeros_like(p)
    quad = kl_curve(sigma, mismatched_sse(zero, p, zero, q, sigma) - gaussian_mmse(p, sigma))
    closed = np.array([gaussian_kl(zero, p + s0**2, zero, q + s0**2) for s0 in sigma])
    return {
        "wrong_gamma": family.params["gamma"] + WRONG_GAMMA_OFFSET,
        "sigma0": sigma,
        "value": mc.value,
        "se": mc.se,
        "kind": "exact",
        "quadrature_of_closed_form": quad.value,
        "closed_form": closed,
        "tail": mc.tail,
        "units": "nats per image",
    }


def summarize(family: Family, curves: RiskCurves, window: tuple[float, float]) -> dict:
    """Per-denoiser curves, standard errors, slope fits and local slopes for one family."""
    sigma = curves.sigma
    out: dict = {
        "mse": {},
        "mse_se": {},
        "sse": {},
        "sse_se": {},
        "psnr": {},
        "slopes": {},
        "local_slopes": {},
    }
    for name in curves.sse:
        mse, se = curves.mse(name), curves.mse_se(name)
        out["mse"][name], out["mse_se"][name] = mse, se
        out["sse"][name], out["sse_se"][name] = mse * curves.d, se * curves.d
        out["psnr"][name] = psnr(mse)
        fit = fit_power_law(sigma, mse, se=se, window=window)
        out["slopes"][name] = fit.to_dict()
        mid, slope = local_slopes(sigma, mse)
        out["local_slopes"][name] = {"sigma": mid, "slope": slope}
    if family.name == "cartoons":
        out["minimax_exponent"] = minimax_exponent(family.params["alpha"])
    return out


def plot_family(result: dict, path) -> None:
    """MSE vs σ with fitted slopes, local slope vs σ, and output vs input PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigma = np.asarray(result["sigma"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_mse, ax_slope, ax_psnr = axes
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
        lo, hi = fit["window"]
        s_fit = np.geomspace(lo, hi, 20)
        ax_mse.plot(
            s_fit,
            np.exp(fit["intercept"]) * s_fit ** fit["slope"],
            "--",
            color=line.get_color(),
            lw=1,
        )
        ls = result["local_slopes"][name]
        ax_slope.plot(ls["sigma"], ls["slope"], marker=".", color=line.get_color(), label=name)
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
        ylabel="local slope d log MSE / d log σ",
        title="local slope (3-point windows)",
    )
    ax_slope.legend(fontsize=7)
    ax_psnr.plot(psnr(sigma**2), psnr(sigma**2), ":", color="gray")
    ax_psnr.set(xlabel="input PSNR (dB)", ylabel="output PSNR (dB)", title="output vs input PSNR")
    save_figure(path, fig)


def plot_kl(kl: dict, path) -> None:
    """The KL curve over the cut σ0: Monte Carlo with error band, quadrature, closed form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s0 = np.asarray(kl["sigma0"])
    value, se = np.asarray(kl["value"]), np.asarray(kl["se"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(s0, value, "o-", ms=3, label="Monte Carlo integral")
    ax.fill_between(s0, value - 2 * se, value + 2 * se, alpha=0.3, label="±2 SE")
    ax.plot(s0, kl["quadrature_of_closed_form"], "--", label="quadrature of exact ΔSSE")
    ax.plot(s0, kl["closed_form"], "k:", label="closed form KL(p_σ0‖q_σ0)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="lower cut σ0",
        ylabel="KL (nats per image)",
        title=f"Wiener on a wrong spectrum (γ = {kl['wrong_gamma']:g})",
    )
    ax.legend(fontsize=8)
    save_figure(path, fig)


def run_family(family: Family, args: argparse.Namespace, device: torch.device) -> dict:
    """Evaluate every reference of one family and write its result files."""
    start = time.perf_counter()
    test = family.images("test", min(args.n_test, family.capacity("test"))).to(device)
    train = family.images("A", min(args.n_train, family.capacity("A"))).to(device)
    denoisers = references(family, train)
    curves = risk_curves(
        denoisers, test, args.sigmas, args.seed, progress=not args.no_progress, desc=family.name
    )
    result = {
        "family": family.name,
        "params": family.params,
        "sigma": curves.sigma,
        "n_test": test.shape[0],
        "n_train": train.shape[0],
        "d": curves.d,
        "errors": "mse per pixel, sse per image; se = Monte Carlo standard error",
        **summarize(family, curves, args.slope_window),
    }
    if family.name == "gaussian":
        result["kl"] = gaussian_kl_check(
            family, test, curves.sigma, args.seed + 1, progress=not args.no_progress
        )
    result.update(provenance(device), wall_s=time.perf_counter() - start)
    out = args.out / family.name
    names = list(result["mse"])
    rows = [
        [s] + [result[k][n][j] for n in names for k in ("mse", "mse_se")]
        for j, s in enumerate(result["sigma"])
    ]
    write_csv(
        out / "curves.csv", ["sigma"] + [f"{k}_{n}" for n in names for k in ("mse", "mse_se")], rows
    )
    plot_family(result, out / "curves.png")
    if "kl" in result:
        plot_kl(result["kl"], out / "kl.png")
    write_json(out / "results.json", result)
    return result


def print_table(results: list[dict]) -> list[list]:
    """Print PSNR at a few σ and each slope; return the rows for summary.csv."""
    rows = []
    header = (
        f"{'family':15s} {'denoiser':26s} "
        + " ".join(f"{'σ=' + format(s, '.3g'):>9s}" for s in _table_sigmas(results[0]))
        + "  slope [95% CI]"
    )
    print("\nPSNR (dB) on held-out images\n" + header)
    for r in results:
        for name in r["mse"]:
            idx = [int(np.argmin(np.abs(np.asarray(r["sigma"]) - s))) for s in _table_sigmas(r)]
            values = [float(r["psnr"][name][i]) for i in idx]
            fit = r["slopes"][name]
            print(
                f"{r['family']:15s} {name:26s} "
                + " ".join(f"{v:9.2f}" for v in values)
                + f"  {fit['slope']:.2f} [{fit['ci'][0]:.2f}, {fit['ci'][1]:.2f}]"
            )
            rows.append([r["family"], name, *values, fit["slope"], *fit["ci"]])
        if "minimax_exponent" in r:
            print(f"{'':15s} {'minimax 2α/(α+1)':26s} {r['minimax_exponent']:.2f}")
        if "kl" in r:
            kl = r["kl"]
            print(
                f"{'':15s} KL(p‖q) at σ0 = {kl['sigma0'][0]:.3g}: Monte Carlo "
                f"{kl['value'][0]:.4g} ± {kl['se'][0]:.2g}, quadrature "
                f"{kl['quadrature_of_closed_form'][0]:.4g}, closed form {kl['closed_form'][0]:.4g}"
            )
    return rows


def _table_sigmas(result: dict) -> list[float]:
    sigma = np.asarray(result["sigma"])
    return [float(s) for s in sigma[np.linspace(0, len(sigma) - 1, 5).round().astype(int)]]


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        families = make_families(args)
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "--device cuda asked but no CUDA device is available: use --device cpu"
            )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        parser.error(str(err))
    args.out = Path(args.out)
    results = [run_family(family, args, device) for family in families]
    rows = print_table(results)
    header = ["family", "denoiser"] + [f"psnr_sigma_{s:.3g}" for s in _table_sigmas(results[0])]
    write_csv(args.out / "summary.csv", header + ["slope", "slope_ci_lo", "slope_ci_hi"], rows)
    print(f"\nwrote {args.out}/<family>/results.json, curves.csv, curves.png and summary.csv")


if __name__ == "__main__":
    main()
