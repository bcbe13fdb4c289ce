"""Atomic files and training checkpoints that resume exactly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn


class StoredFileError(ValueError):
    """A stored file (checkpoint, weights, training record) that cannot be used as it is.

    Its message names the file and the fix; it is not an option error, so command lines
    report it without pointing at ``--help``.
    """


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so a reader (or a resumed run after a
    kill) sees either the old file or the complete new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; results are for everyone
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    atomic_write(path, lambda file: torch.save(obj, file))


def save_checkpoint(
    path: str | Path,
    meta: dict,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    progress: dict,
) -> None:
    """Write everything a run needs to continue bit for bit, atomically.

    ``meta`` identifies the run (configuration, data shape); ``modules`` names the modules
    with state (the network, its weight average); ``progress`` holds counters and history
    (plain JSON-like values).
    """
    atomic_save(
        {
            "meta": meta,
            "modules": {name: module.state_dict() for name, module in modules.items()},
            "optimizer": optimizer.state_dict(),
            "generators": {name: g.get_state() for name, g in generators.items()},
            "progress": progress,
        },
        path,
    )


def load_checkpoint(
    path: str | Path,
    meta: dict,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> dict:
    """Restore the states written by :func:`save_checkpoint` in place; return ``progress``.

    Raises :class:`StoredFileError` if the file cannot be read or was written for another
    ``meta``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["meta"] != meta:
            raise ValueError("its configuration differs")
        if set(state["modules"]) != set(modules):
            raise ValueError("its modules differ")
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        if set(state["generators"]) != set(generators):
            raise ValueError("its random generators differ")
        for name, g in generators.items():
            g.set_state(state["generators"][name])
        return state["progress"]
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise StoredFileError(
            f"checkpoint {path} is corrupt or from another configuration ({reason}): "
            "delete it to retrain"
        ) from err
