"""torchrun/DDP with real processes on the CPU (gloo): 2 processes follow the 1-process run,
write the same run folder, and a killed rank ends the run cleanly and resumably."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# fp64: in fp32, the gradients of ResNet-20 on Fashion-MNIST are only good to ~1e-2 (relative, against
# fp64) in some BN biases, and 20 SGD steps amplify any change of summation order: one process with 1
# thread and with 2 threads already end 20 steps 1e-2 apart (measured). In fp64, 2 processes and 1 agree
# to 1e-11, which is what this checks: the same global batch, augmentation, BN statistics and gradient.
COMMON = ["train", "--max-steps", "20", "--batch-size", "32", "--precision", "fp64", "--no-compile", "--sync-bn",
          "--lr", "0.02",
          "--val-split", "1000", "--eval-batch-size", "500", "--log-every", "5", "--quiet"]


def resnetlab(*args, processes: int = 1, timeout: int = 300, wait: bool = True):
    launcher = [sys.executable, "-m", "resnetlab"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
         "-m", "resnetlab"]
    command = [*launcher, *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def weights(folder: Path) -> dict:
    return torch.load(folder / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    for processes in (1, 2):
        result = resnetlab(*COMMON, "--out", root / f"p{processes}", processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
    return root / "p1", root / "p2"


def test_two_processes_with_sync_bn_end_with_the_weights_of_one(one_and_two):
    one, two = (weights(folder) for folder in one_and_two)
    assert one.keys() == two.keys()  # GlobalBatchNorm2d keeps BatchNorm2d's state: checkpoints interchange
    for name, reference in one.items():
        if reference.is_floating_point():
            error = (two[name] - reference).abs().max() / reference.abs().max().clamp_min(1e-12)
            assert error <= 1e-8, (name, error.item())  # the issue asks 1e-4; fp64 gives ~1e-11
        else:
            assert torch.equal(two[name], reference), name


def test_one_and_two_processes_write_the_same_run_folder(one_and_two):
    one, two = one_and_two
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    rows = [[json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            for folder in one_and_two]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] == [20]
    assert rows[0][0].keys() == rows[1][0].keys()
    # metrics are reduced over ranks: the 2-process run counts every test image once
    assert abs(rows[0][0]["test_acc1"] - rows[1][0]["test_acc1"]) <= 0.2
    assert abs(rows[0][0]["train_loss"] - rows[1][0]["train_loss"]) <= 1e-3
    configs = [json.loads((folder / "config.json").read_text())["resolved"] for folder in one_and_two]
    assert configs[0]["world_size"] == 1 and configs[1]["world_size"] == 2


def worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the workers that torchrun started (found through /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if "RANK" in environ and environ.get("TORCHELASTIC_RUN_ID") is not None and _descends(parent, launcher.pid):
            found[int(environ["RANK"])] = int(entry.name)
    return found


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return False


def test_a_killed_rank_ends_the_run_within_a_minute_and_resume_completes_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--max-steps", "300", "--batch-size", "32", "--precision", "fp32", "--no-compile",
            "--val-split", "1000", "--eval-batch-size", "500", "--save-every", "10", "--log-every", "10", "--quiet"]
    launcher = resnetlab(*args, "--out", out, processes=2, wait=False)
    deadline = time.time() + 240
    while not (out / "last.pt").is_file():
        assert launcher.poll() is None and time.time() < deadline, launcher.stderr.read()[-3000:]
        time.sleep(0.5)
    ranks = worker_pids(launcher)
    assert set(ranks) == {0, 1}
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.time()
    stdout, stderr = launcher.communicate(timeout=120)
    assert time.time() - killed < 60
    assert launcher.returncode != 0
    # the surviving rank says what happened and what to do (its collective fails at once, or
    # torchrun's SIGTERM reaches it first), in one line of its own
    said = [line for line in stderr.splitlines() if line.startswith("resnetlab train: error: ")]
    assert said and ("lost another process of the run" in said[0] or "stopped by SIGTERM" in said[0]), stderr[-3000:]
    assert "--resume" in said[0]
    assert "Traceback" not in "\n".join(line for line in stderr.splitlines() if "[rank0]" in line)

    stopped_at = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 10 <= stopped_at < 300
    resumed = resnetlab(*args, "--out", out, "--resume", processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 300
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 300
