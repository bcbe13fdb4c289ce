"""Rate table: how fast the reference denoisers' MSE falls with σ on C^α cartoons.

``python -m benchmarks.rates`` measures, for C^α cartoons (family 'cartoons', β = α) at
several α and image sizes, the Monte Carlo MSE on held-out images of orthogonal wavelet,
translation-invariant wavelet, curvelet and bandlet thresholding (hard, 3σ) over a
log-spaced σ grid; fits log-log slopes with confidence intervals on a stated σ window and
local slopes over 3-point runs, against the minimax exponent 2α/(α+1) (``theory.rates``). Writes
``<out>/results.json``, ``<out>/rates.csv``, ``<out>/mse.png`` and
``<out>/local_slopes.png``; prints a table with the MSE ratios to orthogonal wavelets at
the smallest and largest σ.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.cli import (
    Parser,
    check_writable,
    float_list,
    int_list,
    parse_sigmas,
    parse_window,
    run_command,
)
from benchmarks.common import derive_seed
from benchmarks.evaluation import risk_curves
from benchmarks.output import provenance, save_figure, write_csv, write_json
from models.bandlets import BandletThreshold
from models.curvelets import CurveletThreshold
from models.patch_denoisers import BM3D, NonLocalMeans, bm3d_available
from models.references import TI_SHIFTS, cycle_spun
from models.wavelets import WaveletThreshold
from synthetic import get_family
from theory.protocol import Denoiser
from theory.rates import fit_power_law, local_slopes, minimax_exponent

# Every thresholding reference thresholds at 3σ (hard); ratios are taken against
# "wavelet". The invariant wavelets use the undecimated transform, the invariant bandlets
# average over 4 x 4 circular shifts (cycle spinning); NLM and BM3D know σ.
DENOISERS: dict[str, Callable[[], Denoiser]] = {
    "wavelet": lambda: WaveletThreshold("db4", mode="hard", factor=3.0),
    "ti_wavelet": lambda: WaveletThreshold("db4", mode="hard", factor=3.0, invariant=True),
    "curvelet": lambda: CurveletThreshold(factor=3.0, mode="hard"),
    "bandlet": lambda: BandletThreshold(wavelet="db4", factor=3.0),
    "ti_bandlet": lambda: cycle_spun(
        BandletThreshold(wavelet="db4", factor=3.0),
        TI_SHIFTS,
        f"ti_bandlet_db4_{TI_SHIFTS}x{TI_SHIFTS}",
    ),
    "nlm": NonLocalMeans,
    "bm3d": BM3D,
}
DEFAULT_DENOISERS = "wavelet,ti_wavelet,curvelet,bandlet,nlm" + (
    ",bm3d" if bm3d_available() else ""
)
BASELINE = "wavelet"


@dataclass(frozen=True)
class RatesConfig:
    """Everything one run of ``python -m benchmarks.rates`` depends on (numbers checked on
    construction, ``ValueError`` naming the option and the fix).

    Attributes
    ----------
    alphas : regularities α > 0 of the C^α cartoons (β = α).
    sizes : image sides in pixels.
    n_images : held-out images per size: one count for every size, or one per size.
    sigmas : noise levels (pixel units); ``window`` the σ window of the slope fits.
    denoisers : keys of :data:`DENOISERS`.
    seed : root seed: images, and the noise of block (α index i, size s) from
        ``derive_seed(seed, i, s)``.
    out, progress : output folder, progress bars.
    """

    alphas: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    sizes: tuple[int, ...] = (64, 128, 256)
    n_images: tuple[int, ...] = (12,)
    sigmas: tuple[float, ...] = tuple(parse_sigmas("0.0025:0.32:9").tolist())
    window: tuple[float, float] = (0.01, 0.16)
    denoisers: tuple[str, ...] = tuple(DEFAULT_DENOISERS.split(","))
    seed: int = 0
    out: str = "out/rates"
    progress: bool = True

    def __post_init__(self) -> None:
        for key in ("alphas", "sizes", "n_images", "sigmas", "window", "denoisers"):
            object.__setattr__(self, key, tuple(np.asarray(getattr(self, key)).tolist()))
        object.__setattr__(self, "out", str(self.out))
        for alpha in self.alphas:
            minimax_exponent(alpha)
        if len(self.n_images) not in (1, len(self.sizes)):
            raise ValueError(
                f"--n-images needs one number or one per size ({len(self.sizes)}), "
                f"got {len(self.n_images)}"
            )
        if min(self.n_images) < 2:
            raise ValueError(
                f"--n-images must be >= 2 for standard errors (got {list(self.n_images)})"
            )
        sigma = np.asarray(self.sigmas)
        inside = int(np.sum((sigma >= self.window[0]) & (sigma <= self.window[1])))
        if inside < 3:
            raise ValueError(
                f"--window {self.window[0]:g},{self.window[1]:g} holds {inside} of the noise "
                "levels; a slope with a CI needs >= 3: widen it or refine --sigmas"
            )
        for key in self.denoisers:
            if key not in DENOISERS:
                raise ValueError(f"unknown denoiser {key!r}; choose from: {', '.join(DENOISERS)}")
        if "bm3d" in self.denoisers and not bm3d_available():
            raise ValueError(
                'denoiser bm3d needs the optional bm3d package: pip install -e ".[bm3d]" '
                "(non-commercial licence), or leave it out of --denoisers"
            )

    def counts(self) -> dict[int, int]:
        """Held-out images per size."""
        counts = self.n_images * (len(self.sizes) if len(self.n_images) == 1 else 1)
        return dict(zip(self.sizes, counts, strict=True))


def build_parser() -> Parser:
    d = RatesConfig()
    p = Parser(prog="python -m benchmarks.rates", description=__doc__.split("\n\n")[1])
    p.add_argument(
        "--alphas", type=float_list, default=list(d.alphas), help="regularities α > 0, a,b,c"
    )
    p.add_argument(
        "--sizes",
        type=int_list,
        default=list(d.sizes),
        help="image sides in pixels, even and divisible as the denoisers need (powers of 2)",
    )
    p.add_argument(
        "--n-images",
        type=int_list,
        default=list(d.n_images),
        help="held-out images per size: one number for every size or one per size (>= 2)",
    )
    p.add_argument(
        "--sigmas",
        type=parse_sigmas,
        default=np.asarray(d.sigmas),
        help="noise levels in pixel units: lo:hi:n log-spaced, or a list a,b,c",
    )
    p.add_argument(
        "--window",
        type=parse_window,
        default=d.window,
        help="sigma window lo,hi of the fitted slopes (>= 3 noise levels inside)",
    )
    p.add_argument(
        "--denoisers",
        default=",".join(d.denoisers),
        help=f"comma-separated subset of {', '.join(DENOISERS)} (ti_bandlet: 16x the cost)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of images and noise")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> RatesConfig:
    """The validated configuration of the parsed options."""
    return RatesConfig(
        alphas=args.alphas,
        sizes=args.sizes,
        n_images=args.n_images,
        sigmas=args.sigmas,
        window=args.window,
        denoisers=args.denoisers.split(","),
        seed=args.seed,
        out=args.out,
        progress=not args.no_progress,
    )


def build_denoisers(config: RatesConfig) -> dict[str, Denoiser]:
    """The denoisers by key, each tried on one image of each size (so a size it cannot take
    fails before any work; the curvelet calibration this builds is cached and reused)."""
    denoisers = {key: DENOISERS[key]() for key in config.denoisers}
    for size in config.sizes:
        for alpha in config.alphas:
            get_family("cartoons", size=size, seed=config.seed, alpha=alpha)
        probe = torch.full((1, 1, size, size), 0.5)
        for key, f in denoisers.items():
            try:
                f(probe, 0.1)
            except (ValueError, RuntimeError) as err:
                raise ValueError(f"size {size} does not suit '{key}': {err}") from None
    return denoisers


def curve_record(
    alpha: float, size: int, key: str, name: str, sigma: np.ndarray, mse, se, window
) -> dict:
    """One denoiser's curve at one (α, size): MSE, standard error, slope fit, local slopes."""
    fit = fit_power_law(sigma, mse, se=se, window=window)
    mid, slope = local_slopes(sigma, mse)
    return {
        "alpha": alpha,
        "size": size,
        "denoiser": key,
        "name": name,
        "mse": mse,
        "mse_se": se,
        "slope": fit.to_dict(),
        "local_slopes": {"sigma": mid, "slope": slope},
        "minimax_exponent": minimax_exponent(alpha),
    }


def run(config: RatesConfig, denoisers: dict[str, Denoiser]) -> dict:
    """Measure every (α, size) block and return the results dictionary."""
    start = time.perf_counter()
    sigma = np.asarray(config.sigmas, dtype=float)
    n_images = config.counts()
    records, blocks = [], []
    for a_index, alpha in enumerate(config.alphas):
        for size in config.sizes:
            block_start = time.perf_counter()
            family = get_family("cartoons", size=size, seed=config.seed, alpha=alpha)
            images = family.images("test", n_images[size])
            curves = risk_curves(
                denoisers,
                images,
                sigma,
                derive_seed(config.seed, a_index, size),
                progress=config.progress,
                desc=f"alpha={alpha:g} size={size}",
            )
            block = [
                curve_record(
                    alpha,
                    size,
                    key,
                    f.name,
                    sigma,
                    curves.mse(key),
                    curves.mse_se(key),
                    config.window,
                )
                for key, f in denoisers.items()
            ]
            if BASELINE in denoisers:
                base = curves.mse(BASELINE)
                for record in block:
                    record["ratio_to_wavelet"] = record["mse"] / base
            records += block
            blocks.append(
                {"alpha": alpha, "size": size, "wall_s": time.perf_counter() - block_start}
            )
    return {
        "family": "cartoons",
        "beta": "equal to alpha",
        "alphas": list(config.alphas),
        "sizes": list(config.sizes),
        "n_images": {str(s): n for s, n in n_images.items()},
        "sigma": sigma,
        "window": list(config.window),
        "seed": config.seed,
        "denoisers": {key: f.name for key, f in denoisers.items()},
        "errors": "mse per pixel on held-out test images; mse_se its Monte Carlo standard error "
        "over images; slopes of ln mse on ln sigma (95% CI) on the window; local slopes over "
        "3 consecutive noise levels",
        "minimax_exponent": {f"{a:g}": minimax_exponent(a) for a in config.alphas},
        "curves": records,
        "blocks": blocks,
        **provenance("cpu", options=asdict(config)),
        "wall_s": time.perf_counter() - start,
    }


def csv_rows(result: dict) -> tuple[list[str], list[list]]:
    """The rate table: one row per (α, size, denoiser)."""
    header = [
        "alpha",
        "size",
        "denoiser",
        "slope",
        "ci_lo",
        "ci_hi",
        "minimax_exponent",
        "window_lo",
        "window_hi",
        "mse_ratio_to_wavelet_smallest_sigma",
        "mse_ratio_to_wavelet_largest_sigma",
    ]
    rows = []
    for r in result["curves"]:
        fit = r["slope"]
        ratio = r.get("ratio_to_wavelet", [float("nan")])
        rows.append(
            [r["alpha"], r["size"], r["denoiser"], fit["slope"], *fit["ci"], r["minimax_exponent"]]
            + [*fit["window"], ratio[0], ratio[-1]]
        )
    return header, rows


def plot(result: dict, out: Path) -> None:
    """MSE vs σ and local slope vs σ, one panel per α; colours denoisers, styles sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigma = np.asarray(result["sigma"])
    alphas, sizes = result["alphas"], result["sizes"]
    colours = {k: f"C{i}" for i, k in enumerate(result["denoisers"])}
    styles = dict(zip(sizes, ["-", "--", ":", "-."] * len(sizes), strict=False))
    figs = {
        kind: plt.subplots(1, len(alphas), figsize=(4.6 * len(alphas), 4.2), squeeze=False)
        for kind in ("mse", "local_slopes")
    }
    for r in result["curves"]:
        i = alphas.index(r["alpha"])
        style = {"color": colours[r["denoiser"]], "ls": styles[r["size"]]}
        label = f"{r['denoiser']} {r['size']}px"
        ax = figs["mse"][1][0, i]
        ax.errorbar(sigma, r["mse"], yerr=r["mse_se"], marker=".", ms=3, label=label, **style)
        ls = r["local_slopes"]
        figs["local_slopes"][1][0, i].plot(
            ls["sigma"], ls["slope"], marker=".", label=label, **style
        )
    lo, hi = result["window"]
    for i, alpha in enumerate(alphas):
        ax = figs["mse"][1][0, i]
        ax.axvspan(lo, hi, color="0.92", zorder=0)
        ax.set(
            xscale="log", yscale="log", xlabel="σ", ylabel="MSE per pixel", title=f"α = {alpha:g}"
        )
        ax = figs["local_slopes"][1][0, i]
        ax.axhline(minimax_exponent(alpha), color="k", ls="--", label="2α/(α+1)")
        ax.axhline(1.0, color="0.5", ls=":", lw=1)
        ax.set(xscale="log", xlabel="σ", ylabel="local slope (3 points)", title=f"α = {alpha:g}")
    for kind, (fig, axes) in figs.items():
        axes[0, -1].legend(fontsize=6, ncol=2)
        fig.suptitle(
            "C^α cartoons: MSE on held-out images (shaded: slope window)"
            if kind == "mse"
            else "local log-log slope of the MSE against the minimax exponent"
        )
        save_figure(out / f"{kind}.png", fig)


def print_table(result: dict) -> None:
    """Slopes with CIs per (α, size, denoiser) and MSE ratios to wavelets at the σ ends."""
    sigma = result["sigma"]
    lo, hi = result["window"]
    print(
        f"\nslope of ln MSE vs ln σ on [{lo:g}, {hi:g}] (95% CI); MSE / wavelet MSE at "
        f"σ = {sigma[0]:.3g} and σ = {sigma[-1]:.3g}"
    )
    print(f"{'α':>4s} {'size':>5s} {'denoiser':12s} {'slope [95% CI]':>22s} {'minimax':>8s} ratios")
    for r in result["curves"]:
        fit = r["slope"]
        ratio = r.get("ratio_to_wavelet")
        ratios = "" if ratio is None else f"{ratio[0]:6.2f} {ratio[-1]:6.2f}"
        print(
            f"{r['alpha']:4g} {r['size']:5d} {r['denoiser']:12s} "
            f"{fit['slope']:6.2f} [{fit['ci'][0]:5.2f}, {fit['ci'][1]:5.2f}]      "
            f"{r['minimax_exponent']:8.2f} {ratios}"
        )


def prepare(args: argparse.Namespace) -> tuple[RatesConfig, dict[str, Denoiser]]:
    """Every check before any work: the configuration, the denoisers at every size, and
    that ``--out`` can be written."""
    config = config_from_args(args)
    denoisers = build_denoisers(config)
    check_writable(config.out, "--out")
    return config, denoisers


def work(prepared: tuple[RatesConfig, dict[str, Denoiser]]) -> dict:
    """Measure, then write the files and print the table."""
    config, denoisers = prepared
    out = Path(config.out)
    result = run(config, denoisers)
    header, rows = csv_rows(result)
    write_csv(out / "rates.csv", header, rows)
    plot(result, out)
    write_json(out / "results.json", result)
    print_table(result)
    print(f"\nwrote {out}/results.json, rates.csv, mse.png and local_slopes.png")
    return result


def main(argv: list[str] | None = None) -> dict:
    """Exit status 2 for an option error (before any work), 1 for a fault, 130 for Ctrl-C."""
    return run_command(build_parser(), argv, prepare, work)


if __name__ == "__main__":
    main()
