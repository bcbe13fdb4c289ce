"""Result files written atomically (temp file, then rename), with their provenance."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import atomic_write

__all__ = ["atomic_write", "provenance", "save_figure", "write_csv", "write_json"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON (arrays become lists, non-finite floats null)."""
    text = json.dumps(_jsonable(data), indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Write a CSV table with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


def save_figure(path: str | os.PathLike, fig) -> None:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


# Distributions whose versions every result records (the project and what it runs on).
DEPENDENCIES = (
    "gahb-toolkit",
    "torch",
    "numpy",
    "scipy",
    "PyWavelets",
    "scikit-image",
    "matplotlib",
    "tqdm",
    "curvelets",
    "bm3d",  # optional: None means the BM3D reference was absent from the run
)


def provenance(device: str | torch.device, options: dict | None = None) -> dict:
    """Describe the code, the machine, the command and its resolved options, for every result.

    ``git`` holds the commit of the working tree and whether it had uncommitted changes
    (None outside a git checkout); ``versions`` the installed version of every dependency;
    ``options`` the configuration the run resolved (profile defaults and command line).
    """
    return {
        "command": "python -m " + " ".join([_module_name()] + sys.argv[1:]),
        "options": options,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "versions": {name: _version(name) for name in DEPENDENCIES},
        "device": str(device),
        "machine": {
            "node": platform.node(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }


EXCLUDE_RESULTS = ":(exclude)benchmarks/results"


def git_state() -> dict | None:
    """The commit of the project's checkout and whether its code differs from it.

    ``dirty`` is true when tracked files outside ``benchmarks/results`` have uncommitted
    changes; None outside a git checkout.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            # Result files are not code: rewriting them does not make the code dirty.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", EXCLUDE_RESULTS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None:
        return Path(sys.argv[0]).name
    return spec.name.removesuffix(".__main__")
