"""The run folder (`--out`): metrics.jsonl, config.json, last.pt, best.pt, curves.png.

Only the main process writes it, and only one process at a time: a writer holds an exclusive
flock on LOCK, which the kernel releases when the process ends, however it ends (a SIGKILLed
writer leaves no stale lock). Metric rows are appended and fsynced one by one; everything else is
replaced atomically (checkpoint.py), so a crash never leaves a half-written file. Readers (eval,
predict, a reproduction's report) never take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from .checkpoint import LAST, PREVIOUS, atomic_write_text, has_resume_point, remove_stale_temporaries

LOCK = ".lock"  # holds the writer's PID while its flock is held


class RunFolderBusy(ValueError):
    """Another process is writing the run folder."""


class RunFolder:
    def __init__(self, path: str | Path | None, enabled: bool = True):
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and self.path is not None
        self.tensorboard = None
        self._lock = None  # the open LOCK file while this process writes the folder

    def file(self, name: str) -> Path:
        return self.path / name

    def prepare(self, resume: bool) -> None:
        """Check that the folder can take this run: a new run needs an empty or new folder, a
        resumed one a checkpoint to continue from; it must be writable."""
        if not self.enabled:
            return
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {self.path} exists and is not a folder")
        if self.file(LOCK).is_file():  # a writer there may be alive: ask before reading anything
            self.lock()
        if resume:
            self.require_resume_point()
            remove_stale_temporaries(self.path)
        elif self.path.exists() and any(entry.name != LOCK for entry in self.path.iterdir()):
            raise ValueError(f"--out {self.path} already holds a run; pass --resume to continue it, "
                             "or choose another folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"--out {self.path} cannot be created: {error.strerror}") from None
        probe = self.path / ".write-test"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise ValueError(f"--out {self.path} is not writable: {error.strerror}") from None
        self.lock()

    def lock(self) -> None:
        """Become the folder's one writer, or raise RunFolderBusy naming the process that is."""
        if self._lock is not None:
            return
        file = open(self.file(LOCK), "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise RunFolderBusy(f"--out {self.path} is being written by another process (PID {holder}); "
                                "wait for it to end, or stop it, before writing this run") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._lock = file

    def release(self) -> None:
        """Stop being the folder's writer (the kernel does the same when the process ends)."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def require_resume_point(self) -> None:
        if not has_resume_point(self.path):
            raise ValueError(f"--resume: no checkpoint {self.file(LAST)} (or {PREVIOUS}) to resume from")

    def saved_config(self):
        """The TrainConfig of the run to resume, from its checkpoint (fit reads it again, and says
        what a damaged last.pt costs)."""
        from .checkpoint import load_resume_point
        from .recipes import TrainConfig

        self.require_resume_point()
        checkpoint, _ = load_resume_point(self.path)
        return TrainConfig.from_dict(checkpoint["config"])

    def write_config(self, config: dict) -> None:
        if self.enabled:
            atomic_write_text(self.file("config.json"), json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.enabled or not self.file("metrics.jsonl").is_file():
            return []
        rows = []
        for line in self.file("metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything after it is lost anyway
        return rows

    def truncate_metrics(self, step: int) -> None:
        """After a resume from `step`, drop the rows a crashed run wrote after its checkpoint."""
        if not self.enabled:
            return
        rows = [row for row in self.read_metrics() if row["step"] <= step]
        atomic_write_text(self.file("metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.file("metrics.jsonl"), "a") as file:
            file.write(json.dumps(row) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self._tensorboard(row)

    def _tensorboard(self, row: dict) -> None:
        if self.tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.tensorboard = False
                return
            self.tensorboard = SummaryWriter(str(self.path / "tensorboard"))
        if self.tensorboard:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, row["step"])
            self.tensorboard.flush()

    def plot(self) -> None:
        if self.enabled:
            from .plots import plot_curves

            plot_curves(self.read_metrics(), self.file("curves.png"))


def default_out(model: str, data: str) -> str:
    """A new run's folder when none is given: runs/MODEL-DATA-TIME."""
    return f"runs/{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
