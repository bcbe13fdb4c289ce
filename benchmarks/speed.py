"""Speed of the toolkit's compute kernels, timed against a plain matrix product.

The memorizer (exact optimal denoiser of a training set) costs one (B x d) @ (d x n)
product for the distances, a softmax, and a second product weights @ train whose size
depends on how many training images keep a weight above eps / n. This benchmark times it
on B noisy test images against n training images at a few noise levels, beside one
float32 product of the first product's shape in the same process, and reports the ratio
(aim: at most 2); it also times the training fast path against plain fp32 and the
Jacobian kernels against the methods they replace (``benchmarks.jacobian_speed``). Each
measurement is a function returning a dict; ``main`` assembles
them, so further sections (e.g. training throughput) slot in beside it. Output goes to
``out/speed`` by default (the committed results under ``benchmarks/results`` are written
only when ``--out`` names them).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from benchmarks.cli import Parser, check_writable, finite_float, run_command
from benchmarks.common import check_device, derive_seed
from benchmarks.jacobian_speed import jacobian_speed, lanczos_speed, print_tables
from benchmarks.output import provenance, write_json
from models.memorizer import Memorizer
from models.training import TrainConfig, build_network, train
from synthetic.registry import FAMILY_NAMES, get_family
from theory.sigma import check_sigma


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


def memorizer_speed(config: SpeedConfig, device: torch.device) -> dict:
    """Time the memorizer against one float32 product (n_query x d) @ (d x n_train).

    Training images are part A of ``config.family``; queries are held-out test images plus
    noise. Per sigma: median memorizer and matmul times (alternating runs) and the median
    of the per-pair time ratios.
    """
    family, n_train, n_query, size = config.family, config.n_train, config.n_query, config.size
    repeats, seed = config.repeats, config.seed
    fam = get_family(family, size=size, seed=seed)
    train = fam.images("A", n_train).to(device)
    clean = fam.images("test", n_query).to(device)
    memorizer = Memorizer(train)
    d = size * size
    g = torch.Generator(device=device).manual_seed(derive_seed(seed, "matmul-operands"))
    a = torch.randn(n_query, d, generator=g, device=device)
    b = torch.randn(d, n_train, generator=g, device=device)
    g = torch.Generator(device=device).manual_seed(derive_seed(seed, "query-noise"))
    rows = []
    for sigma in config.sigmas:
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


def training_throughput(config: SpeedConfig, device: torch.device) -> dict:
    """Training images per second of the trainer's fast path against plain fp32.

    Both runs train the same bias-free UNet from the same initialisation for two epochs of
    ``steps`` steps and time the second, so compilation, allocator and autotuning warm-up stay
    out of the rate. The fast path is bf16 autocast with channels_last and cuDNN autotuning on
    CUDA (the aim of 2.5x is for a GPU), and ``torch.compile`` with channels_last on CPU.
    """
    size, channels, blocks = config.train_size, config.train_channels, TRAIN_BLOCKS
    batch_size, steps, seed = config.train_batch, config.train_steps, config.seed
    images = get_family("cartoons", size=size, seed=seed).images("A", 4 * batch_size).to(device)
    rates = {}
    for fast, run_config in train_configs(config, device).items():
        torch.backends.cudnn.benchmark = fast
        with tempfile.TemporaryDirectory() as tmp:
            history = train(build_network(run_config), images, run_config, tmp, progress=False)
        rates["fast" if fast else "plain_fp32"] = history[-1]["img_per_s"]
    return {
        "size": size,
        "channels": channels,
        "blocks": blocks,
        "batch_size": batch_size,
        "steps": steps,
        "img_per_s": rates,
        "ratio": rates["fast"] / rates["plain_fp32"],
    }


def train_configs(config: SpeedConfig, device: torch.device) -> dict[bool, TrainConfig]:
    """The training runs timed: plain fp32 (``False``) and the fast path (``True``)."""
    return {
        fast: TrainConfig(
            network="unet",
            network_params={"channels": config.train_channels, "blocks": TRAIN_BLOCKS},
            objective="edm",
            batch_size=config.train_batch,
            samples_per_epoch=config.train_batch * config.train_steps,
            epochs=2,
            seed=config.seed,
            device=str(device),
            fast=fast,
        )
        for fast in (False, True)
    }


def print_training_table(result: dict) -> None:
    rates = result["img_per_s"]
    print(
        f"training: UNet {result['channels']} channels, {result['blocks']} levels, "
        f"{result['size']}x{result['size']}, batch {result['batch_size']}, "
        f"{result['steps']} timed steps\n  plain fp32 {rates['plain_fp32']:.0f} img/s, fast path "
        f"{rates['fast']:.0f} img/s, ratio {result['ratio']:.2f}x"
    )


@dataclass(frozen=True)
class SpeedConfig:
    """Everything one run of ``python -m benchmarks.speed`` depends on (checked on
    construction, ``ValueError`` naming the option and the fix).

    ``family``, ``n_train``, ``n_query``, ``size``, ``sigmas``, ``repeats``: the memorizer
    timing; ``train_*``: the training-throughput timing; ``threads``: torch CPU threads
    (None: torch's choice); ``seed``: root seed of images, operands and noise.
    """

    family: str = "disks"
    n_train: int = 10000
    n_query: int = 64
    size: int = 32
    sigmas: tuple[float, ...] = (0.01, 0.1, 0.3, 1.0)
    repeats: int = 20
    seed: int = 0
    threads: int | None = None
    train_size: int = 32
    train_channels: int = 16
    train_batch: int = 64
    train_steps: int = 30
    jacobian_size: int = 32
    lanczos_size: int = 64
    lanczos_k: int = 50
    device: str = "cpu"
    out: str = "out/speed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        object.__setattr__(self, "out", str(self.out))
        if self.family not in FAMILY_NAMES:
            raise ValueError(f"unknown family {self.family!r}; choose one of {FAMILY_NAMES}")
        if min(self.repeats, self.train_steps, self.train_batch) < 1:
            raise ValueError("--repeats, --train-steps and --train-batch must be >= 1")
        for flag in (
            "n_train",
            "n_query",
            "size",
            "train_size",
            "train_channels",
            "jacobian_size",
            "lanczos_size",
            "lanczos_k",
        ):
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1 (got {self.threads})")
        check_sigma(list(self.sigmas))


# Levels of the UNet whose training throughput is timed.
TRAIN_BLOCKS = 3


def build_parser() -> Parser:
    d = SpeedConfig()
    p = Parser(
        prog="python -m benchmarks.speed",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--family",
        default=d.family,
        choices=FAMILY_NAMES,
        help="image family of the training and query images",
    )
    p.add_argument("--n-train", type=int, default=d.n_train, help="training images")
    p.add_argument("--n-query", type=int, default=d.n_query, help="noisy query images per call")
    p.add_argument("--size", type=int, default=d.size, help="image side in pixels")
    p.add_argument(
        "--sigmas",
        type=finite_float,
        nargs="+",
        default=list(d.sigmas),
        help="noise levels in pixel units",
    )
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per measurement")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of images and noise")
    p.add_argument(
        "--threads", type=int, default=d.threads, help="torch CPU threads (default: torch's own)"
    )
    p.add_argument("--train-size", type=int, default=d.train_size, help="training: image side")
    p.add_argument(
        "--train-channels", type=int, default=d.train_channels, help="training: channels"
    )
    p.add_argument("--train-batch", type=int, default=d.train_batch, help="training: batch size")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="training: steps")
    p.add_argument(
        "--jacobian-size", type=int, default=d.jacobian_size, help="full Jacobian: image side"
    )
    p.add_argument(
        "--lanczos-size", type=int, default=d.lanczos_size, help="eigenpairs: image side"
    )
    p.add_argument("--lanczos-k", type=int, default=d.lanczos_k, help="eigenpairs: how many")
    p.add_argument("--device", default=d.device, help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default=d.out, help="output folder")
    return p


def run(config: SpeedConfig) -> dict:
    """Both timings, with the provenance; prints their tables."""
    device = check_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    result = {
        **provenance(device, options=asdict(config)),
        "memorizer": memorizer_speed(config, device),
    }
    result["training"] = training_throughput(config, device)
    result["jacobian"] = jacobian_speed(config.jacobian_size, config.seed, device)
    result["eigenpairs"] = lanczos_speed(config.lanczos_size, config.lanczos_k, config.seed, device)
    print_memorizer_table(result["memorizer"])
    print_training_table(result["training"])
    print_tables(result["jacobian"], result["eigenpairs"])
    return result


def check(config: SpeedConfig) -> None:
    """Everything the timings depend on, before any work (``ValueError`` naming the fix).

    The device, that ``--out`` can be written, the family holding ``--n-train`` training
    and ``--n-query`` held-out images of ``--size``, and the timed UNet taking
    ``--train-size`` images.
    """
    device = check_device(config.device)
    check_writable(config.out, "--out")
    family = get_family(config.family, size=config.size, seed=config.seed)
    for option, part, n in (
        ("--n-train", "A", config.n_train),
        ("--n-query", "test", config.n_query),
    ):
        held = family.capacity(part)
        if n > held:
            raise ValueError(
                f"family '{config.family}' holds {int(held)} images in part {part}: use "
                f"{option} <= {int(held)} or another --family"
            )
    get_family("cartoons", size=config.train_size, seed=config.seed)
    factor = 2**TRAIN_BLOCKS
    if config.train_size % factor:
        raise ValueError(
            f"--train-size {config.train_size} cannot pass the UNet's {TRAIN_BLOCKS} levels: "
            f"use a multiple of {factor}"
        )
    train_configs(config, device)
    for option, side in (
        ("--jacobian-size", config.jacobian_size),
        ("--lanczos-size", config.lanczos_size),
    ):
        if side % factor:
            raise ValueError(
                f"{option} {side} cannot pass the UNet's {TRAIN_BLOCKS} levels: use a "
                f"multiple of {factor}"
            )
    if config.lanczos_k >= config.lanczos_size**2:
        raise ValueError(f"--lanczos-k must be below the pixel count {config.lanczos_size**2}")


def prepare(args) -> SpeedConfig:
    """The checked configuration of the parsed options."""
    config = SpeedConfig(**{f.name: getattr(args, f.name) for f in fields(SpeedConfig)})
    check(config)
    return config


def work(config: SpeedConfig) -> dict:
    """Both timings, then ``<out>/results.json``."""
    result = run(config)
    path = Path(config.out) / "results.json"
    write_json(path, result)
    print(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> dict:
    """Exit status 2 for an option error (before any work), 1 for a fault, 130 for Ctrl-C."""
    return run_command(build_parser(), argv, prepare, work)


if __name__ == "__main__":
    main()
