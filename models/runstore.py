"""A store of trained networks keyed by their full configuration, so runs are reused.

Layout: ``root/<key>/`` holds ``config.json`` (what the key hashes), ``checkpoint.pt`` (the
last epoch, for resuming), ``model.pt`` (final weights) and ``metrics.json`` (training
history; written last, so its presence marks a finished run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from models import training
from models.checkpoint import atomic_save, atomic_write


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


class RunStore:
    """Trained networks under ``root``, one folder per configuration.

    The key is the first 16 hex digits of the SHA-256 of the canonical JSON (sorted keys) of
    ``{"train": config.to_dict(), "data": data, "shape": images.shape}``, where ``data`` is
    the caller's description of the training images (family, parameters, n, part...).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

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

    def load(
        self, config: training.TrainConfig, data: dict, shape: tuple[int, ...]
    ) -> nn.Module | None:
        """The finished network of this run in eval mode, or ``None`` if it is not finished."""
        run = self.run_dir(config, data, shape)
        if not (run / "metrics.json").exists():
            return None
        net = training.build_network(config)
        try:
            net.load_state_dict(
                torch.load(run / "model.pt", map_location=config.device, weights_only=True)
            )
        except Exception as err:
            raise ValueError(
                f"stored run {run} is corrupt ({type(err).__name__}): delete the folder to retrain"
            ) from err
        return net.eval()

    def get_or_train(
        self,
        config: training.TrainConfig,
        data: dict,
        images: torch.Tensor,
        progress: bool = True,
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
        history = training.train(net, images, config, run, progress=progress)
        atomic_save(net.state_dict(), run / "model.pt")
        metrics = {
            "history": history,
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_wall_s": sum(epoch["wall_s"] for epoch in history),
            "device": str(config.device),
        }
        atomic_write(run / "metrics.json", lambda f: f.write(_json_bytes(metrics)))
        return net.eval()
