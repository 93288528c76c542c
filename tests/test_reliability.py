"""Nothing lost, no code run: SIGKILL at six points (one in the middle of a checkpoint write)
and resume give bitwise the weights of an uninterrupted run; a full disk keeps the last good
checkpoint; a pickle that would run code is refused by every load path, API and CLI."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# with a moving average of the weights and progressive resizing (smaller images until step 12):
# their state and schedule must resume exactly too
ARGS = ["train", "--max-steps", "30", "--save-every", "5", "--eval-every", "10", "--log-every", "5",
        "--batch-size", "64", "--val-split", "1000", "--eval-batch-size", "1000", "--ema-decay", "0.9",
        "--train-sizes", "20", "--train-size-until", "0.4", "--quiet"]

# Runs the CLI with one fault injected: the process SIGKILLs itself at a chosen point, or the
# disk "fills up". Test-only patching, so that production code has no fault hooks.
INJECT = r"""
import io, os, signal, sys
import torch
import resnetlab.checkpoint as checkpoint, resnetlab.engine as engine, resnetlab.runfolder as runfolder
from resnetlab.cli import main

point, nth = sys.argv[1], int(sys.argv[2])
count = {"n": 0}

def due():
    count["n"] += 1
    return count["n"] == nth

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_write, real_replace = checkpoint._atomic_write, os.replace
def write(path, writer):
    if str(path).endswith("last.pt") and point in ("mid-write", "disk-full") and due():
        def full(file):  # the disk fills up halfway through the write
            file.write(b"partial")
            raise OSError(28, "No space left on device")
        if point == "disk-full":
            return real_write(path, full)
        def half(file):
            buffer = io.BytesIO(); writer(buffer); data = buffer.getvalue()
            file.write(data[:len(data) // 2]); file.flush(); os.fsync(file.fileno())
            die()
        return real_write(path, half)
    return real_write(path, writer)
checkpoint._atomic_write = write

def replace(src, dst):
    if str(dst).endswith("last.pt") and point == "before-rename" and due():
        die()
    return real_replace(src, dst)
checkpoint.os.replace = replace

real_step = torch.optim.SGD.step
def step(self, *a, **k):
    if point == "mid-step" and due():  # after backward, before the update
        die()
    return real_step(self, *a, **k)
torch.optim.SGD.step = step

real_evaluate = engine.evaluate
def evaluate(*a, **k):
    if point == "mid-eval" and due():
        die()
    return real_evaluate(*a, **k)
engine.evaluate = evaluate

real_log = runfolder.RunFolder.log
def log(self, row):
    real_log(self, row)
    if point == "after-metrics" and due():  # the row is written, its checkpoint is not
        die()
runfolder.RunFolder.log = log

sys.exit(main(sys.argv[3:]))
"""


def inject(point: str, nth: int, *args):
    return subprocess.run([sys.executable, "-c", INJECT, point, str(nth), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "resnetlab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def step_of(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["step"]
    except Exception:
        return -1


def science(folder: Path) -> list[dict]:  # every metric but the clock
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("elapsed_s", "train_img_per_s")} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    result = cli(*ARGS, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_six_kills_and_resumes_end_with_bitwise_the_uninterrupted_weights(tmp_path, uninterrupted):
    out = tmp_path / "run"
    steps = []
    for index, (point, nth) in enumerate([("mid-step", 7), ("mid-write", 1), ("mid-eval", 1), ("after-metrics", 1),
                                          ("before-rename", 2)]):
        result = inject(point, nth, *ARGS, "--out", out, *(["--resume"] if index else []))
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        steps.append(step_of(out / "last.pt"))
        assert steps[-1] >= 0, f"after a kill at {point}, last.pt must still load"
    # a sixth kill from outside, at whatever moment the process has reached
    process = subprocess.Popen([sys.executable, "-m", "resnetlab", *ARGS, "--out", str(out), "--resume"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while step_of(out / "last.pt") <= steps[-1] and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert steps == sorted(steps) and steps[-1] < 30  # the run moved forward and was not finished

    result = cli(*ARGS, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    whole, resumed = (torch.load(f / "last.pt", weights_only=True) for f in (uninterrupted, out))
    assert resumed["step"] == whole["step"] == 30
    for weights in ("model", "training_weights"):  # the average, and the weights it averages
        for key, value in whole[weights].items():
            assert torch.equal(value, resumed[weights][key]), (weights, key)
    for a, b in zip(whole["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert science(out) == science(uninterrupted)
    assert not list(out.glob(".*.tmp")), "the temporary file of the interrupted write is cleaned up on resume"


def test_a_full_disk_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = inject("disk-full", 3, *ARGS, "--out", out)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], "one line, no traceback"
    assert "No space left on device" in result.stderr and "last.pt" in result.stderr
    assert step_of(out / "last.pt") == 10  # saves at 5, 10 (with the evaluation); the third one failed
    assert not list(out.glob(".*.tmp"))
    assert cli(*ARGS, "--out", out, "--resume").returncode == 0
    assert step_of(out / "last.pt") == 30


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.fixture
def evil(tmp_path):
    """A checkpoint-shaped pickle whose loading would create `marker`."""
    import resnetlab

    marker = tmp_path / "code-ran"
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    torch.save({"model": resnetlab.create_model("resnet20").state_dict(), "config": {}, "step": 1,
                "meta": _RunsCode(marker)}, path)
    return path, marker


def test_a_pickle_that_runs_code_is_refused_by_every_cli_command(evil, tmp_path):
    path, marker = evil
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    for args in (["eval", "--checkpoint", path], ["predict", "--checkpoint", path, image],
                 ["export", "--checkpoint", path, "--format", "onnx", "--out", tmp_path / "x.onnx"],
                 ["export", "--checkpoint", path, "--format", "safetensors", "--out", tmp_path / "x.safetensors"],
                 ["train", "--out", path.parent, "--resume"]):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert "refused to load" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not marker.exists(), f"code ran for {args}"


def test_a_pickle_that_runs_code_is_refused_by_every_api_load_path(evil):
    import resnetlab
    from resnetlab.checkpoint import load_checkpoint, load_model
    from resnetlab.evaluation import evaluate_checkpoint, predict_files

    path, marker = evil
    pretrained = path.with_name("weights.pth")
    pretrained.write_bytes(path.read_bytes())
    for call in (lambda: resnetlab.create_model("resnet20", pretrained=str(pretrained)),
                 lambda: resnetlab.load_pretrained(resnetlab.create_model("resnet20"), str(pretrained)),
                 lambda: load_checkpoint(path), lambda: load_model(path), lambda: evaluate_checkpoint(path),
                 lambda: predict_files(path, [path])):
        with pytest.raises(ValueError, match="refused to load"):
            call()
        assert not marker.exists()
