"""Speed of the toolkit's compute kernels, timed against a plain matrix product.

The memorizer (exact optimal denoiser of a training set) costs one (B x d) @ (d x n)
product for the distances, a softmax, and a second product weights @ train whose size
depends on how many training images keep a weight above eps / n. This benchmark times it
on B noisy test images against n training images at a few noise levels, beside one
float32 product of the first product's shape in the same process, and reports the ratio
(aim: at most 2). Each measurement is a function returning a dict; ``main`` assembles
them, so further sections (e.g. training throughput) slot in beside it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.cli import Parser
from benchmarks.output import provenance, write_json
from models.memorizer import Memorizer
from synthetic.registry import FAMILY_NAMES, get_family


def paired_seconds(
    fn: Callable[[], object], baseline: Callable[[], object], repeats: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Wall times of ``fn()`` and ``baseline()`` run alternately ``repeats`` times.

    Alternating puts both under the same machine load; one warm-up run of each comes first.
    """

    def run(f: Callable[[], object]) -> float:
        start = time.perf_counter()
        f()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    run(fn), run(baseline)
    pairs = [(run(fn), run(baseline)) for _ in range(repeats)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def memorizer_speed(
    family: str,
    n_train: int,
    n_query: int,
    size: int,
    sigmas: list[float],
    repeats: int,
    seed: int,
    device: torch.device,
) -> dict:
    """Time the memorizer against one float32 product (n_query x d) @ (d x n_train).

    Training images are part A of ``family``; queries are held-out test images plus noise.
    Per sigma: median memorizer and matmul times (alternating runs) and the median of the
    per-pair time ratios.
    """
    fam = get_family(family, size=size, seed=seed)
    train = fam.images("A", n_train).to(device)
    clean = fam.images("test", n_query).to(device)
    memorizer = Memorizer(train)
    d = size * size
    g = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(n_query, d, generator=g, device=device)
    b = torch.randn(d, n_train, generator=g, device=device)
    rows = []
    for sigma in sigmas:
        y = clean + sigma * torch.randn(clean.shape, generator=g, device=device)
        seconds, matmul = paired_seconds(
            lambda y=y, sigma=sigma: memorizer(y, sigma), lambda: a @ b, repeats, device
        )
        rows.append(
            {
                "sigma": sigma,
                "seconds": statistics.median(seconds),
                "matmul_seconds": statistics.median(matmul),
                "ratio": statistics.median(t / m for t, m in zip(seconds, matmul, strict=True)),
            }
        )
    return {
        "family": family,
        "n_train": n_train,
        "n_query": n_query,
        "size": size,
        "dtype": "float32",
        "repeats": repeats,
        "rows": rows,
    }


def print_memorizer_table(result: dict) -> None:
    d = result["size"] ** 2
    print(
        f"memorizer: {result['n_query']} noisy {result['family']} images vs "
        f"n = {result['n_train']} training images of {result['size']}x{result['size']} "
        f"({result['dtype']}, median of {result['repeats']}); baseline: one matmul "
        f"({result['n_query']} x {d}) @ ({d} x {result['n_train']})"
    )
    print(f"  {'sigma':>8} {'memorizer ms':>13} {'matmul ms':>10} {'ratio':>7}")
    for row in result["rows"]:
        print(
            f"  {row['sigma']:>8g} {1e3 * row['seconds']:>13.2f} "
            f"{1e3 * row['matmul_seconds']:>10.2f} {row['ratio']:>6.2f}x"
        )


def build_parser() -> Parser:
    p = Parser(
        prog="python -m benchmarks.speed",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--family",
        default="disks",
        choices=FAMILY_NAMES,
        help="image family of the training and query images",
    )
    p.add_argument("--n-train", type=int, default=10000, help="training images")
    p.add_argument("--n-query", type=int, default=64, help="noisy query images per call")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.01, 0.1, 0.3, 1.0],
        help="noise levels in pixel units",
    )
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of images and noise")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default="benchmarks/results/speed", help="output folder")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {
        **provenance(device),
        "memorizer": memorizer_speed(
            args.family,
            args.n_train,
            args.n_query,
            args.size,
            args.sigmas,
            args.repeats,
            args.seed,
            device,
        ),
    }
    print_memorizer_table(result["memorizer"])
    path = Path(args.out) / "results.json"
    write_json(path, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
