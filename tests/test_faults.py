"""Fault injection through the four command lines: damaged stored runs, unwritable folders,
bad options, Ctrl-C and divergence.

Each case checks the exit status (2: found before any work, 1: a fault during the run, 130:
Ctrl-C), that stderr is one line naming the option or the file and the fix, and that nothing
was written under ``--out`` (nor in the run store) when the run was refused.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import io

from benchmarks import generalization as gen
from benchmarks import optimality as opt
from benchmarks import rates, speed

ROOT = Path(__file__).resolve().parent.parent
# A network run of 200 steps: long enough to interrupt, a few seconds on 2 cores.
OPT = [
    "--family",
    "cartoons",
    "--size",
    "16",
    "--n-test",
    "4",
    "--n-train",
    "20",
    "--sigmas",
    "0.01:1:5",
    "--channels",
    "4",
    "--blocks",
    "2",
    "--batch-size",
    "8",
    "--steps",
    "200",
    "--lr-halvings",
    "0",
    "--symmetry-shifts",
    "0",
    "--no-progress",
]
GEN = [
    "--family",
    "gaussian",
    "--size",
    "16",
    "--sizes-n",
    "1",
    "--channels",
    "4",
    "--blocks",
    "2",
    "--batch-size",
    "16",
    "--samples-per-epoch",
    "64",
    "--epochs",
    "50",
    "--n-samples",
    "2",
    "--n-eval",
    "4",
    "--n-test",
    "4",
    "--sigmas",
    "0.01:1:3",
    "--max-steps",
    "200",
    "--no-progress",
]
RATES = ["--alphas", "2", "--sizes", "32", "--n-images", "2", "--sigmas", "0.02,0.05,0.1"]
RATES += ["--denoisers", "wavelet", "--no-progress"]
SPEED = ["--n-train", "50", "--n-query", "4", "--repeats", "1", "--train-steps", "1"]
MAINS = {
    "optimality": opt.main,
    "generalization": gen.main,
    "rates": rates.main,
    "speed": speed.main,
}
BASES = {"optimality": OPT, "generalization": GEN, "rates": RATES, "speed": SPEED}
STORES = {"optimality", "generalization"}  # the command lines with a run store


def refused(main, argv, capsys) -> tuple[int, str]:
    """Run a command line that must stop: its exit status and its stderr (one line)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return exc.value.code, err


def faces_folder(path: Path, n: int) -> Path:
    """A folder of n independent noise images (the faces family reads any folder)."""
    path.mkdir()
    rng = np.random.default_rng(n)
    for i in range(n):
        io.imsave(path / f"{i:03d}.png", (rng.random((12, 10)) * 255).astype(np.uint8))
    return path


def command(name: str, argv: list[str]) -> subprocess.Popen:
    """``python -m benchmarks.<name> argv`` in a fresh process, from the project's root."""
    return subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished tiny run of the optimality and the generalization benchmarks, with results.

    The networks train in fresh processes, as the Ctrl-C case's runs do (a process that
    compiled the training step for other shapes before may fall back to eager steps, which
    round differently).
    """
    root = tmp_path_factory.mktemp("stored")
    out = {}
    for name in sorted(STORES):
        argv = [*BASES[name], "--runs", str(root / "runs" / name), "--out", str(root / name)]
        finished(command(name, argv))
        out[name] = argv
    return root, out


def _results(folder: Path, name: str) -> dict:
    path = folder / "cartoons" / "results.json" if name == "optimality" else folder / "results.json"
    return json.loads(path.read_text())


# --- a network loaded from the store gives the numbers of the run that trained it ----------


@pytest.mark.parametrize("name", sorted(STORES))
def test_reloaded_network_gives_the_trained_numbers_bit_for_bit(stored, tmp_path, name):
    root, argvs = stored
    argv = [*argvs[name][:-1], str(tmp_path / "again")]
    MAINS[name](argv)
    trained, loaded = _results(root / name, name), _results(tmp_path / "again", name)
    if name == "optimality":
        assert not trained["network"]["reused"] and loaded["network"]["reused"]
        assert trained["network"]["steps"] == loaded["network"]["steps"] == 200
        assert loaded["mse"] == trained["mse"] and loaded["sse"] == trained["sse"]
        assert loaded["kl_curves"] == trained["kl_curves"]
        assert loaded["effective_dimension"] == trained["effective_dimension"]
    else:
        for first, again in zip(trained["runs"], loaded["runs"], strict=True):
            for part in ("A", "B"):
                assert not first["networks"][part]["reused"] and again["networks"][part]["reused"]
            assert again["denoising"] == first["denoising"]
            assert again["similarity"] == first["similarity"]


# --- damaged stored files: exit 2 before any work, naming the file and the fix -------------

DAMAGES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
}
STORED_CASES = [
    (name, file, damage)
    for name in sorted(STORES)
    for file in ("model.pt", "metrics.json", "config.json", "checkpoint.pt")
    for damage in DAMAGES
] + [(name, "metrics.json", "no history") for name in sorted(STORES)]


@pytest.mark.parametrize(("name", "file", "damage"), STORED_CASES)
def test_a_damaged_stored_file_is_refused_before_any_work(
    stored, tmp_path, capsys, name, file, damage
):
    root, argvs = stored
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / name, runs)
    run = sorted(runs.iterdir())[0]
    if file == "checkpoint.pt":  # an interrupted run: only its checkpoint is read
        (run / "metrics.json").unlink()
        (run / "model.pt").unlink()
    path = run / file
    if damage == "no history":
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps(metrics | {"history": []}))
    else:
        DAMAGES[damage](path)
    argv = list(argvs[name])
    argv[argv.index("--runs") + 1] = str(runs)
    argv[argv.index("--out") + 1] = str(tmp_path / "out")
    status, err = refused(MAINS[name], argv, capsys)
    assert status == 2 and str(path) in err and "delete" in err, err
    assert "--help" not in err, "a damaged file is not an option error"
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# --- unwritable output and run store: exit 2 before any work --------------------------------

UNWRITABLE = [(name, "--out") for name in sorted(MAINS)] + [(n, "--runs") for n in sorted(STORES)]


@pytest.mark.parametrize(("name", "option"), UNWRITABLE)
def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, capsys, name, option):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file: nothing can be created below it")
    folders = {"--out": tmp_path / "out", "--runs": tmp_path / "runs"}
    folders[option] = blocker / "folder"
    argv = [*BASES[name], "--out", str(folders["--out"])]
    if name in STORES:
        argv += ["--runs", str(folders["--runs"])]
    status, err = refused(MAINS[name], argv, capsys)
    assert status == 2 and f"cannot write to {option} {folders[option]}" in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    assert blocker.read_text().startswith("a regular file")


# --- bad options: exit 2, one line naming the option, nothing written -----------------------

BAD_OPTIONS = [
    # optimality
    ("optimality", ["--family", "nosuch"], "unknown family"),
    (
        "optimality",
        ["--size", "2", "--family", "gaussian,disks", "--network", "none"]
        + ["--slope-window", "0.01,1"],
        "at 2 px: ",
    ),
    (
        "optimality",
        ["--family", "faces", "--faces-dir", "FACES6", "--size", "8"],
        "holds 1 held-out image(s)",
    ),
    ("optimality", ["--family", "faces", "--faces-dir", "/nonexistent/faces"], "not found"),
    ("optimality", ["--lr", "inf"], "argument --lr: 'inf' is not a finite number"),
    ("optimality", ["--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    ("optimality", ["--alpha", "inf"], "argument --alpha: 'inf' is not a finite number"),
    ("optimality", ["--steps", "19", "--lr-halvings", "9"], "use --steps 10 or 20"),
    ("optimality", ["--sigmas", "0.1,0.1,0.2"], "need at least 3 distinct noise levels"),
    ("optimality", ["--sigmas", "0.1"], "need at least 3 distinct noise levels"),
    ("optimality", ["--slope-window", "2,3"], "holds 0 of the --sigmas levels"),
    ("optimality", ["--device", "foo"], "unknown device 'foo'"),
    ("optimality", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("optimality", ["--n-test", "1"], "need at least 2 images"),
    ("optimality", ["--checkpoint-minutes", "0"], "--checkpoint-minutes must be > 0"),
    ("optimality", ["--local-score-images", "-1"], "need --local-score-images >= 0"),
    ("optimality", ["--checkpoint-minutes", "inf"], "is not a finite number"),
    ("optimality", ["--size", "18"], "multiple of 4"),
    ("optimality", ["--symmetry-shifts", "3"], "--symmetry-shifts must be 0 or a divisor"),
    ("optimality", ["--objective", "kl", "--sigma-law", "log_normal"], "option of the edm"),
    # generalization
    ("generalization", ["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    ("generalization", ["--lr", "inf"], "argument --lr: 'inf' is not a finite number"),
    ("generalization", ["--sigma0", "nan"], "argument --sigma0: 'nan' is not a finite"),
    ("generalization", ["--steps", "1000"], "--steps 1000 is more than the 50 epoch(s)"),
    ("generalization", ["--steps", "0"], "--steps must be an integer >= 1"),
    (
        "generalization",
        ["--family", "disks", "--size", "2", "--blocks", "1"],
        "disk_posterior cannot denoise its images",
    ),
    (
        "generalization",
        ["--family", "faces", "--faces-dir", "FACES6"],
        "holds 1 held-out images; need >= 2",
    ),
    ("generalization", ["--family", "faces", "--sizes-n", "1,100"], "but family 'faces' holds"),
    ("generalization", ["--device", "foo"], "unknown device 'foo'"),
    ("generalization", ["--checkpoint-minutes", "0"], "--checkpoint-minutes must be > 0"),
    ("generalization", ["--sigmas", "0.1,0.1,0.2"], "need at least 3 distinct noise levels"),
    ("generalization", ["--sigmas", "0.01:1:1"], "need at least 3 distinct noise levels"),
    ("generalization", ["--size", "12", "--blocks", "3"], "multiple of 8"),
    # rates
    ("rates", ["--window", "0.01,inf"], "window needs finite ends"),
    ("rates", ["--alphas", "inf"], "holds a number that is not finite"),
    ("rates", ["--sizes", "30", "--denoisers", "curvelet"], "size 30 does not suit 'curvelet'"),
    ("rates", ["--sigmas", "0,0.05,0.1"], "sigma must be > 0"),
    ("rates", ["--sigmas", "0.05"], "need at least 3 distinct noise levels"),
    ("rates", ["--n-images", "1"], "--n-images must be >= 2"),
    ("rates", ["--denoisers", "nosuch"], "unknown denoiser 'nosuch'"),
    ("rates", ["--seed", "-1"], "seed must be an integer >= 0"),
    # speed
    ("speed", ["--device", "foo"], "unknown device 'foo'"),
    ("speed", ["--n-train", "0"], "--n-train must be >= 1"),
    ("speed", ["--n-query", "0"], "--n-query must be >= 1"),
    ("speed", ["--repeats", "0"], "--repeats, --train-steps and --train-batch must be >= 1"),
    ("speed", ["--threads", "0"], "--threads must be >= 1"),
    ("speed", ["--sigmas", "inf"], "argument --sigmas: 'inf' is not a finite number"),
    ("speed", ["--sigmas", "0"], "sigma must be > 0"),
    ("speed", ["--train-size", "12"], "--train-size 12 cannot pass the UNet's 3 levels"),
    ("speed", ["--family", "faces", "--n-train", "100000"], "use --n-train <= 40"),
    ("speed", ["--family", "nosuch"], "invalid choice"),
    ("speed", ["--size", "7", "--family", "cartoons"], "cartoon size must be even"),
]


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    BAD_OPTIONS,
    ids=[f"{name}:{' '.join(argv)}" for name, argv, _ in BAD_OPTIONS],
)
def test_a_bad_option_is_refused_with_one_line_and_nothing_written(
    tmp_path, capsys, name, argv, message
):
    if "FACES6" in argv:  # 6 faces: the faces family holds 1 of them out
        argv = [str(faces_folder(tmp_path / "faces", 6)) if a == "FACES6" else a for a in argv]
    out, runs = tmp_path / "out", tmp_path / "runs"
    stores = ["--runs", str(runs)] if name in STORES else []
    status, err = refused(MAINS[name], [*BASES[name], *argv, "--out", str(out), *stores], capsys)
    assert status == 2 and message in err, err
    assert "Traceback" not in err and not out.exists() and not runs.exists()


# --- faults during the run: Ctrl-C (exit 130, resumable) and divergence (exit 1) -----------


def test_ctrl_c_during_training_exits_130_and_the_same_command_resumes_exactly(stored, tmp_path):
    """SIGINT while a tiny network trains: the checkpoint is written, one line says how to
    resume, and the same command then gives the numbers of the uninterrupted run."""
    root, _ = stored
    runs, out = tmp_path / "runs", tmp_path / "out"
    # Checkpoints every 0.06 s of training: the first one shows that training is under way.
    argv = [*OPT, "--checkpoint-minutes", "0.001", "--runs", str(runs), "--out", str(out)]
    proc = command("optimality", argv)
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/checkpoint.pt")) and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert "interrupted at training step" in line and "run the same command again" in line
    (run,) = runs.iterdir()
    assert (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists()
    assert str(run / "checkpoint.pt") in line and not out.exists()
    finished(command("optimality", argv))  # the same command, in a fresh process
    resumed = _results(out, "optimality")
    uninterrupted = _results(root / "optimality", "optimality")
    assert resumed["network"]["steps"] == 200 and not resumed["network"]["reused"]
    assert resumed["mse"] == uninterrupted["mse"]


def test_divergence_exits_1_with_the_step_and_the_loss(tmp_path, capsys):
    argv = [*OPT, "--steps", "6", "--lr", "1e30", "--runs", str(tmp_path / "runs")]
    status, err = refused(opt.main, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert status == 1 and "training diverged at step 6 (loss nan)" in err, err
    assert "lower --lr" in err and not (tmp_path / "out").exists()


def test_every_fault_kind_is_counted_in_the_results_notes():
    """docs/results.md states how many fault and bad-input cases this file covers."""
    cases = len(STORED_CASES) + len(UNWRITABLE) + len(BAD_OPTIONS) + 2  # + Ctrl-C, divergence
    text = (ROOT / "docs" / "results.md").read_text()
    assert f"{cases} fault and bad-input cases" in text
