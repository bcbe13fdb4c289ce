"""Training a learned denoiser: configuration, seeded network construction, the loop.

The loop follows the paper (Kadkhodaie et al., ICLR 2024, Appendix A): every epoch shows the
network ``samples_per_epoch`` images drawn by tiling the training set and shuffling (so a set
of any size n gets the same exposure; the paper uses 250,000), Adam with the learning rate
halved every ``lr_step_epochs`` epochs, and the loss of a chosen :mod:`models.objectives`
objective, optionally ending with a short cooldown at a low learning rate and returning an
exponential moving average of the weights. A checkpoint is written atomically at the end of
every epoch, when the cooldown starts, every ``checkpoint_s`` seconds of training and on
Ctrl-C (with the position inside the epoch), and a run resumes from it bit for bit.
"""

from __future__ import annotations

import inspect
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from models.bfcnn import BFCNN
from models.checkpoint import StoredFileError, load_checkpoint, save_checkpoint
from models.objectives import Objective, get_objective
from models.unet import BiasFreeUNet

NETWORKS: dict[str, type[nn.Module]] = {"unet": BiasFreeUNet, "bfcnn": BFCNN}
CHECKPOINT = "checkpoint.pt"
# Seconds of training between checkpoints: an interrupt loses at most this much work.
CHECKPOINT_S = 240.0


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT after writing a checkpoint; rerunning resumes it.

    ``step`` is the number of steps taken, ``checkpoint`` the file written.
    """

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"training interrupted at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; ``step`` and ``loss`` say where."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(
            f"training diverged at step {step} (loss {loss}): lower --lr or use another objective"
        )
        self.step, self.loss = step, loss


def network_params(network: str, params: dict) -> dict:
    """Constructor parameters of ``NETWORKS[network]`` with every default filled in."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}: choose one of {sorted(NETWORKS)}")
    signature = inspect.signature(NETWORKS[network])
    allowed = [name for name in signature.parameters if name != "name"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"network {network!r} has no parameter(s) {unknown}: it takes {allowed}")
    bound = signature.bind(**params)
    bound.apply_defaults()
    return {name: bound.arguments[name] for name in allowed}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (with the data), defaults = the paper.

    Parameters
    ----------
    network, network_params : str, dict
        ``"unet"`` (:class:`~models.unet.BiasFreeUNet`) or ``"bfcnn"``
        (:class:`~models.bfcnn.BFCNN`) and its constructor parameters.
    objective, objective_params : str, dict
        A name of :data:`models.objectives.OBJECTIVES` and its parameters.
    lr, lr_step_epochs, lr_gamma : float, int, float
        Adam learning rate, multiplied by ``lr_gamma`` every ``lr_step_epochs`` epochs.
    cooldown_steps, cooldown_lr : int, float
        The last ``cooldown_steps`` steps of the run take the learning rate ``cooldown_lr``
        (0: no cooldown). Adam's steps leave noise in the weights that the denoising error
        at the smallest sigma feels most: measured on the quick profile, 1000 steps at 1e-4
        after the step schedule cut the clean-image error ``|f(x) - x|**2`` from 8e-7 to
        3e-7 per pixel (docs/results.md §4.4).
    ema_halflife : int
        If positive, the trained network is the exponential moving average of the weights
        (and of the batch-norm running scales) over the steps, ``w_ema <- beta w_ema +
        (1 - beta) w`` with ``beta = 0.5**(1 / ema_halflife)``: the weight of a step halves
        every ``ema_halflife`` steps (Karras et al., EDM, NeurIPS 2022, express it in images).
        On the quick profile a half-life of 100 steps lowered the error at sigma = 1 by up to
        4 % and moved sigma = 1e-3 by -14 to +14 % over five seeds (docs/results.md §4.3,
        §4.5). 0: the last iterate.
    batch_size, samples_per_epoch, epochs : int
        Images per step, images per epoch (the last batch of an epoch may be smaller),
        number of epochs.
    max_steps : int or None
        Optional cap on the total number of optimizer steps (a step budget).
    seed : int
        Seeds the initialisation, the data order, sigma and the noise.
    device : str
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    fast : bool
        On CUDA, bf16 autocast and channels_last; on CPU, the training step's network compiled
        by ``torch.compile`` (needs a C++ compiler; 1.7x the images per second of eager mode
        for the quick profile's UNet on 2 cores) with channels_last. ``False`` keeps plain
        eager fp32. The two paths round differently, so they are different runs.
    """

    network: str = "unet"
    network_params: dict = field(default_factory=dict)
    objective: str = "paper"
    objective_params: dict = field(default_factory=dict)
    lr: float = 1e-3
    lr_step_epochs: int = 100
    lr_gamma: float = 0.5
    cooldown_steps: int = 0
    cooldown_lr: float = 1e-4
    ema_halflife: int = 0
    batch_size: int = 512
    samples_per_epoch: int = 250_000
    epochs: int = 1000
    max_steps: int | None = None
    seed: int = 0
    device: str = "cpu"
    fast: bool = True

    def __post_init__(self) -> None:
        network_params(self.network, self.network_params)
        self.make_objective()
        counts = {
            1: {
                "lr_step_epochs": self.lr_step_epochs,
                "batch_size": self.batch_size,
                "samples_per_epoch": self.samples_per_epoch,
                "epochs": self.epochs,
                "max_steps": 1 if self.max_steps is None else self.max_steps,
            },
            0: {"cooldown_steps": self.cooldown_steps, "ema_halflife": self.ema_halflife},
        }
        for minimum, settings in counts.items():
            bad = {k: v for k, v in settings.items() if not (isinstance(v, int) and v >= minimum)}
            if bad:
                raise ValueError(f"these settings must be integers >= {minimum}: {bad}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0 (got {self.seed!r})")
        if not (self.lr > 0 and 0 < self.lr_gamma <= 1 and self.cooldown_lr > 0):
            raise ValueError(
                "need lr > 0, 0 < lr_gamma <= 1 and cooldown_lr > 0 (got "
                f"{self.lr}, {self.lr_gamma}, {self.cooldown_lr})"
            )
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {self.device!r}: use 'cpu' or 'cuda'") from err

    def make_objective(self) -> Objective:
        """The configured objective."""
        return get_objective(self.objective, **self.objective_params)

    def to_dict(self) -> dict:
        """Canonical plain-JSON form (defaults filled in): equal runs give equal dicts."""
        out = asdict(self)
        out["network_params"] = network_params(self.network, self.network_params)
        out["objective_params"] = self.make_objective().to_dict()
        del out["objective_params"]["name"]
        out["lr"], out["lr_gamma"] = float(self.lr), float(self.lr_gamma)
        out["cooldown_lr"] = float(self.cooldown_lr)
        return out

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the last batch may be smaller)."""
        return math.ceil(self.samples_per_epoch / self.batch_size)

    def total_steps(self) -> int:
        """Optimizer steps of the whole run: all epochs, or ``max_steps`` if fewer."""
        return min(self.max_steps or math.inf, self.epochs * self.steps_per_epoch())


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (counted from 0) of a run of ``config``.

    ``lr * lr_gamma**floor(epoch / lr_step_epochs)`` with ``epoch = step // steps_per_epoch``,
    except in the last ``cooldown_steps`` steps of the run, which take ``cooldown_lr``.
    """
    if step >= config.total_steps() - config.cooldown_steps:
        return config.cooldown_lr
    epoch = step // config.steps_per_epoch()
    return config.lr * config.lr_gamma ** (epoch // config.lr_step_epochs)


def seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for (initialisation, data order, sigma and noise) from one seed."""
    init, data, noise = np.random.SeedSequence(seed).generate_state(3)
    return int(init), int(data), int(noise)


def build_network(config: TrainConfig) -> nn.Module:
    """The configured network, initialised from ``config.seed``, on ``config.device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds(config.seed)[0])
        net = NETWORKS[config.network](**network_params(config.network, config.network_params))
    return net.to(config.device)


def weight_average(net: nn.Module, halflife: int) -> AveragedModel | None:
    """The exponential moving average of ``net`` with this half-life in steps, or ``None``."""
    if not halflife:
        return None
    decay = 0.5 ** (1 / halflife)
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def epoch_order(n: int, samples_per_epoch: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of one epoch: the n training images tiled to ``samples_per_epoch`` and shuffled.

    Every image appears ``floor`` or ``ceil(samples_per_epoch / n)`` times, so sets of any size
    get the same number of training samples per epoch (the paper: 250,000).
    """
    return torch.randperm(samples_per_epoch, generator=generator) % n


def _checkpoint_meta(config: TrainConfig, shape: tuple[int, ...]) -> dict:
    """What identifies a run's checkpoint: its configuration and the training images' shape."""
    return {"config": config.to_dict(), "images": list(shape)}


def check_checkpoint(path: str | Path, config: TrainConfig, shape: tuple[int, ...]) -> None:
    """:class:`~models.checkpoint.StoredFileError` naming the file and the fix unless ``path``
    is a readable checkpoint of this configuration and data shape (what :func:`train` would
    resume)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        same = state["meta"] == _checkpoint_meta(config, shape)
    except Exception as err:
        raise StoredFileError(
            f"checkpoint {path} is corrupt ({type(err).__name__}): delete it to retrain"
        ) from err
    if not same:
        raise StoredFileError(
            f"checkpoint {path} is from another configuration: delete it to retrain"
        )


class _SigintFlag:
    """Turns SIGINT into a flag read between steps, so a checkpoint holds a whole step."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> _SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    net: nn.Module,
    images: torch.Tensor,
    config: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    checkpoint_s: float = CHECKPOINT_S,
) -> list[dict]:
    """Train ``net`` in place on ``images`` (n, C, H, W); resume from ``out_dir`` if possible.

    Each epoch draws its images with :func:`epoch_order`, takes steps of ``batch_size``
    images with the loss of ``config.objective`` and Adam; step k uses the learning rate
    :func:`learning_rate` ``(config, k)``. ``out_dir/checkpoint.pt`` is written atomically
    (weights and their average, optimizer, both random generators, counters, history and
    the position inside the epoch) at the end of every epoch, when the cooldown starts,
    whenever ``checkpoint_s`` seconds of training have passed since the last one, and on
    SIGINT (Ctrl-C), which then raises :class:`TrainingInterrupted`. An existing checkpoint
    of the same configuration and data shape is resumed exactly, inside an epoch too; one
    that does not match raises ``ValueError``. With ``config.ema_halflife`` the weight
    average is copied into ``net`` at the end. The network is returned in eval mode and
    contiguous memory format, as it is after loading its weights, so evaluating it gives the
    numbers of a reload bit for bit.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, ``step`` (total steps so far), ``loss`` and ``psnr`` (means
        over the epoch's batches; PSNR of the denoised batch in dB), ``lr``, ``wall_s``,
        ``img_per_s``.

    Raises
    ------
    TrainingInterrupted : on SIGINT, after the checkpoint is written.
    TrainingDiverged : when an epoch's mean loss is not finite.
    """
    if images.ndim != 4 or images.shape[0] < 1 or not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor of shape (n, C, H, W) with n >= 1, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    if not checkpoint_s > 0:
        raise ValueError(f"checkpoint_s must be > 0 seconds (got {checkpoint_s})")
    device = torch.device(config.device)
    autocast = config.fast and device.type == "cuda"
    memory_format = torch.channels_last if config.fast else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)
    # Only the training step is compiled: checkpoints and evaluation use ``net`` itself.
    # Static shapes: with torch's default, a process that has compiled the network's code for
    # another shape before (a second run, a smaller last batch) recompiles it for dynamic
    # shapes, whose kernels round differently; the numbers would depend on the process's past.
    step_net = torch.compile(net, dynamic=False) if config.fast and device.type == "cpu" else net
    images = images.to(device)
    objective = config.make_objective()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    average = weight_average(net, config.ema_halflife)
    modules = {"model": net} | ({"average": average} if average is not None else {})
    _, data_seed, noise_seed = seeds(config.seed)
    generators = {
        "data": torch.Generator().manual_seed(data_seed),
        "noise": torch.Generator(device=device).manual_seed(noise_seed),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT
    meta = _checkpoint_meta(config, tuple(images.shape))
    state = {"epoch": 0, "step": 0, "history": [], "position": None}
    if path.exists():
        state = {"position": None} | load_checkpoint(path, meta, modules, optimizer, generators)

    n, per_epoch, batch = images.shape[0], config.samples_per_epoch, config.batch_size
    steps_per_epoch, max_steps = config.steps_per_epoch(), config.total_steps()
    cooldown_start = max_steps - config.cooldown_steps if config.cooldown_steps else None

    def save(position: dict | None) -> None:
        save_checkpoint(path, meta, modules, optimizer, generators, state | {"position": position})

    bar = tqdm(
        total=max_steps,
        initial=state["step"],
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    last_save = time.monotonic()
    with _SigintFlag() as sigint:
        while state["epoch"] < config.epochs and state["step"] < max_steps:
            start = time.perf_counter()
            resumed = state["position"]
            if resumed is None:
                order = epoch_order(n, per_epoch, generators["data"]).to(device)
                first, sums, taken, earlier_s = 0, torch.zeros(2, device=device), 0, 0.0
            else:
                order = resumed["order"].to(device)
                first, taken, earlier_s = resumed["k"], resumed["taken"], resumed["wall_s"]
                sums = resumed["sums"].to(device)
                state["position"] = None
            net.train()
            for k in range(first, steps_per_epoch):
                if state["step"] == max_steps:
                    break
                x = images[order[k * batch : (k + 1) * batch]]
                x = x.contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    sigma, mse = objective.terms(step_net, x, generators["noise"])
                loss = (objective.weight(sigma) * mse).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, state["step"])
                optimizer.step()
                if average is not None:
                    average.update_parameters(net)
                psnr = -10 * torch.log10(mse.detach().clamp_min(1e-12)).mean()
                sums += torch.stack([loss.detach(), psnr])
                taken += 1
                state["step"] += 1
                bar.update()
                if progress and (k % 20 == 0 or k == steps_per_epoch - 1):
                    mean_loss, mean_psnr = (sums / taken).tolist()
                    bar.set_postfix(
                        epoch=state["epoch"] + 1, loss=f"{mean_loss:.3g}", psnr=f"{mean_psnr:.2f}"
                    )
                inside = k + 1 < steps_per_epoch and state["step"] < max_steps
                due = time.monotonic() - last_save >= checkpoint_s
                if inside and (sigint.raised or due or state["step"] == cooldown_start):
                    wall_s = earlier_s + time.perf_counter() - start
                    save(
                        {
                            "order": order.cpu(),
                            "k": k + 1,
                            "sums": sums.cpu(),
                            "taken": taken,
                            "wall_s": wall_s,
                        }
                    )
                    last_save = time.monotonic()
                    if sigint.raised:
                        bar.close()
                        raise TrainingInterrupted(state["step"], path)
            mean_loss, mean_psnr = (sums / taken).tolist()
            if not math.isfinite(mean_loss):
                bar.close()
                raise TrainingDiverged(state["step"], mean_loss)
            lr = optimizer.param_groups[0]["lr"]
            state["epoch"] += 1
            wall = earlier_s + time.perf_counter() - start
            state["history"].append(
                {
                    "epoch": state["epoch"],
                    "step": state["step"],
                    "loss": mean_loss,
                    "psnr": mean_psnr,
                    "lr": lr,
                    "wall_s": wall,
                    "img_per_s": min(taken * batch, per_epoch) / wall,
                }
            )
            save(None)
            last_save = time.monotonic()
            if sigint.raised and state["epoch"] < config.epochs and state["step"] < max_steps:
                bar.close()
                raise TrainingInterrupted(state["step"], path)
    bar.close()
    if average is not None:
        net.load_state_dict(average.module.state_dict())
    # Evaluation after training must see the memory layout a reload gives.
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    return state["history"]
