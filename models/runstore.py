"""A store of trained networks keyed by their full configuration, so runs are reused.

Layout: ``root/<key>/`` holds ``config.json`` (what the key hashes), ``checkpoint.pt`` (the
last epoch, for resuming), ``model.pt`` (final weights) and ``metrics.json`` (training
history; written last, so its presence marks a finished run). Read-only stores of the same
layout (the weights shipped with the project) can stand behind the writable one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models import training
from models.checkpoint import StoredFileError, atomic_save, atomic_write


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


class RunStore:
    """Trained networks under ``root``, one folder per configuration.

    The key is the first 16 hex digits of the SHA-256 of the canonical JSON (sorted keys) of
    ``{"train": config.to_dict(), "data": data, "shape": images.shape}``, where ``data`` is
    the caller's description of the training images (family, parameters, n, part...).

    Parameters
    ----------
    root : folder of the writable store (created on the first training).
    shipped : read-only stores searched after ``root`` for a finished run with the same key
        (e.g. ``benchmarks/weights``); they are never written.
    """

    def __init__(self, root: str | Path, shipped: tuple[str | Path, ...] = ()) -> None:
        self.root = Path(root)
        self.shipped = tuple(Path(p) for p in shipped)

    def record(self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]) -> dict:
        """The dictionary a run is keyed by (also its ``config.json``)."""
        record = {"train": config.to_dict(), "data": data, "shape": list(shape)}
        try:
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"data description must be plain JSON (str, int, float, list, dict): {err}"
            ) from err
        return record

    def run_dir(self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]) -> Path:
        """The folder of the run with this configuration, data description and data shape."""
        digest = hashlib.sha256(_json_bytes(self.record(config, data, shape))).hexdigest()
        return self.root / digest[:16]

    def find(self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]) -> Path | None:
        """The folder of the finished run with this key: in ``root``, else a shipped store."""
        key = self.run_dir(config, data, shape).name
        for root in (self.root, *self.shipped):
            if (root / key / "metrics.json").exists():
                return root / key
        return None

    def load(
        self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]
    ) -> nn.Module | None:
        """The finished network of this run in eval mode, or ``None`` if it is not finished."""
        run = self.find(config, data, shape)
        return None if run is None else _load_weights(run, config)

    def check(self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]) -> None:
        """Check the stored files of this run, before any work; ``StoredFileError`` names the fix.

        A finished run must have readable ``metrics.json``, ``model.pt`` and a
        ``config.json`` holding this run's record; an unfinished one a readable checkpoint of
        this configuration (or none; its ``config.json`` is written again when it trains).
        """
        run = self.find(config, data, shape)
        if run is not None:
            read_metrics(run)
            _check_record(run, self.record(config, data, shape))
            _load_weights(run, config)
            return
        path = self.run_dir(config, data, shape) / training.CHECKPOINT
        if path.exists():
            training.check_checkpoint(path, config, shape)

    def get_or_train(
        self,
        config: training.TrainConfig,
        data: dict,
        images: torch.Tensor,
        progress: bool = True,
        checkpoint_s: float = training.CHECKPOINT_S,
    ) -> nn.Module:
        """The trained network for ``(config, data, images)``: loaded if finished, else trained.

        A run with only a checkpoint (interrupted) resumes from it. Returns the network in
        eval mode on ``config.device``.
        """
        shape = tuple(images.shape)
        net = self.load(config, data, shape)
        if net is not None:
            return net
        run = self.run_dir(config, data, shape)
        run.mkdir(parents=True, exist_ok=True)
        atomic_write(
            run / "config.json", lambda f: f.write(_json_bytes(self.record(config, data, shape)))
        )
        net = training.build_network(config)
        history = training.train(
            net, images, config, run, progress=progress, checkpoint_s=checkpoint_s
        )
        atomic_save(net.state_dict(), run / "model.pt")
        metrics = {
            "history": history,
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_wall_s": sum(epoch["wall_s"] for epoch in history),
            "device": str(config.device),
        }
        atomic_write(run / "metrics.json", lambda f: f.write(_json_bytes(metrics)))
        return net.eval()


def read_metrics(run: str | Path) -> dict:
    """The training record ``metrics.json`` of a finished run, checked for what callers read.

    ``StoredFileError`` names the file and the fix when it is unreadable, truncated or empty.
    """
    path = Path(run) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        last = metrics["history"][-1]
        for key in ("step", "loss", "psnr", "img_per_s"):
            float(last[key])
        int(metrics["parameters"])
        float(metrics["train_wall_s"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise StoredFileError(
            f"stored run file {path} is corrupt ({type(err).__name__}): delete the folder "
            f"{Path(run)} to retrain"
        ) from err
    return metrics


def _check_record(run: Path, record: dict) -> None:
    """``StoredFileError`` naming the file and the fix unless ``run/config.json`` holds
    ``record``."""
    path = run / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise StoredFileError(
            f"stored run file {path} is corrupt ({type(err).__name__}): delete the folder "
            f"{run} to retrain"
        ) from err
    if stored != json.loads(_json_bytes(record)):
        raise StoredFileError(
            f"stored run file {path} does not describe this run (another configuration): "
            f"delete the folder {run} to retrain"
        )


def _load_weights(run: Path, config: training.TrainConfig) -> nn.Module:
    net = training.build_network(config)
    path = run / "model.pt"
    try:
        net.load_state_dict(torch.load(path, map_location=config.device, weights_only=True))
    except Exception as err:
        raise StoredFileError(
            f"stored run file {path} is corrupt ({type(err).__name__}): delete the folder "
            f"{run} to retrain"
        ) from err
    return net.eval()


@dataclass(frozen=True)
class StoredRun:
    """A finished run of a store: what trained the network, on what, and how it went.

    ``config`` the training configuration, ``data`` the description of the training images
    the run is keyed by, ``shape`` their shape, ``metrics`` the training history
    (``metrics.json``), ``path`` the run folder.
    """

    config: training.TrainConfig
    data: dict
    shape: tuple[int, ...]
    metrics: dict
    path: Path


def load_run(path: str | Path, device: str | None = None) -> tuple[nn.Module, StoredRun]:
    """A finished stored network and its run record.

    Parameters
    ----------
    path : a run folder ``<store>/<key>`` (holding ``config.json``, ``model.pt`` and
        ``metrics.json``), e.g. ``benchmarks/weights/<key>``.
    device : where to put the network; default the device it was trained on.

    Returns
    -------
    net : the network in eval mode.
    run : its :class:`StoredRun` (``run.config`` is the :class:`~models.training.TrainConfig`).
    """
    run = Path(path)
    if not (run / "metrics.json").exists():
        raise StoredFileError(f"{run} is not a finished run (no metrics.json): train it first")
    try:
        record = json.loads((run / "config.json").read_text())
        metrics = read_metrics(run)
        train = dict(record["train"])
        if device is not None:
            train["device"] = device
        config = training.TrainConfig(**train)
        stored = StoredRun(config, record["data"], tuple(record["shape"]), metrics, run)
    except StoredFileError:
        raise  # already names the damaged file and the fix
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StoredFileError(
            f"stored run {run} is corrupt ({type(err).__name__}: {err}): delete the folder to "
            "retrain"
        ) from err
    return _load_weights(run, config), stored
