"""Training and evaluation: `fit`, `train_one_epoch`, `evaluate`. No argparse, no globals.

The hot loop never waits for the device: losses and correct counts are summed in tensors and
read every `log_every` steps; a non-finite loss or gradient is recorded (with its step) in a
tensor and checked at those points and before every checkpoint, so no checkpoint ever holds
weights that saw one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import dist
from .checkpoint import (atomic_save, atomic_write_text, load_checkpoint, remove_stale_temporaries, rng_state,
                         set_rng_state)
from .data import Dataset, InMemoryLoader, load_dataset
from .data.augment import Normalize
from .data.folder import IMAGENET_MEAN, IMAGENET_STD, FolderDataset, FolderLoader
from .recipes import TrainConfig, lr_at
from .zoo import create_model


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/inf."""


# --- What the machine supports -----------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {name!r}")
    return device


def bf16_is_native(device: torch.device) -> bool:
    """Whether the device computes in bfloat16 natively (faster than fp32): CUDA compute
    capability >= 8.0, or a CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if bf16_is_native(device) else "fp32"
    return precision


def to_precision(images: torch.Tensor, precision: str) -> torch.Tensor:
    """Images as the network's weights expect them: float64 for fp64 (weights too), else as they are."""
    return images.double() if precision == "fp64" else images


def autocast(device: torch.device, precision: str):
    """bf16 autocast (weights and their gradients stay fp32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- Evaluation ----------------------------------------------------------------------------------


@dataclass
class EvalResult:
    loss: float
    acc1: float
    acc5: float
    count: int

    def as_dict(self, prefix: str = "test_") -> dict:
        return {f"{prefix}loss": self.loss, f"{prefix}acc1": self.acc1, f"{prefix}acc5": self.acc5}


class Scores:
    """Running loss, top-1 and top-5 counts of logits against labels, summed over processes
    at the end."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct1 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.correct5 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.count = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        self.correct1 += hits[:, 0].sum()
        self.correct5 += hits.any(dim=1).sum()
        self.count += len(labels)

    def result(self) -> EvalResult:
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.device)
        totals = dist.all_reduce_sum(torch.stack([self.loss_sum, self.correct1.double(), self.correct5.double(), count]))
        loss, c1, c5, n = totals.tolist()
        if n == 0:
            raise ValueError("evaluate: the loader gave no images")
        return EvalResult(loss / n, 100.0 * c1 / n, 100.0 * c5 / n, int(n))


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, precision: str = "fp32", tta_flip: bool = False,
             device: torch.device | str = "cpu") -> EvalResult:
    """Loss, top-1 and top-5 accuracy (in %) over a loader of (images, labels) batches.
    tta_flip averages the logits of each image and its mirror image; 5-D batches
    (N, views, C, H, W) average the logits of the views (ten-crop)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores = Scores(device)
    try:
        for images, labels in loader:
            views = 1
            if images.ndim == 5:  # several views of each image (ten-crop): average their logits
                views = images.shape[1]
                images = images.flatten(0, 1)
            images = to_precision(images, precision)
            with autocast(device, precision):
                logits = model(images)
                if tta_flip:
                    logits = (logits + model(images.flip(3))) / 2
            if views > 1:
                logits = logits.view(-1, views, logits.shape[-1]).mean(1)
            scores.add(logits, labels)
    finally:
        model.train(was_training)
    return scores.result()


# --- Progress --------------------------------------------------------------------------------------


class Progress:
    """One updating line on a terminal; plain lines every update otherwise (logs, CI)."""

    def __init__(self, total_steps: int, first_step: int = 0, enabled: bool = True, stream=None):
        self.total, self.first_step, self.enabled = total_steps, first_step, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, step: int, epoch: int, loss: float, acc: float, img_per_s: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        done = max(step - self.first_step, 1)
        eta = elapsed / done * (self.total - step)
        text = (f"epoch {epoch + 1} step {step}/{self.total} loss {loss:.4f} acc {acc:.2f}% "
                f"{img_per_s:.0f} img/s ETA {_clock(eta)}")
        if self.tty:
            width = 30
            filled = int(width * step / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- Training --------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything that changes during a run, besides the model and optimizer."""

    step: int = 0
    best_acc1: float = -1.0
    # sums since the last evaluation, kept on the device (no host sync per step)
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    seen: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    first_bad_step: torch.Tensor = field(default_factory=lambda: torch.full((), -1, dtype=torch.int64))
    train_time: float = 0.0  # seconds spent in training steps since the last evaluation
    elapsed: float = 0.0  # seconds of the whole run, over resumes

    def to(self, device) -> "TrainState":
        for name in ("loss_sum", "correct", "seen", "first_bad_step"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def reset_interval(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()
        self.seen.zero_()
        self.train_time = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "best_acc1": self.best_acc1, "loss_sum": self.loss_sum.cpu(),
                "correct": self.correct.cpu(), "seen": self.seen.cpu(),
                "first_bad_step": self.first_bad_step.cpu(), "train_time": self.train_time, "elapsed": self.elapsed}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainState":
        return cls(**state)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # fused: one kernel for the whole update of all parameters (CPU and CUDA); foreach elsewhere.
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, **({"fused": True} if fused else {"foreach": True}))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               state: TrainState, *, lr: float, label_smoothing: float, precision: str, device: torch.device,
               accum_steps: int = 1) -> None:
    """One optimizer step over a batch (split into accum_steps micro-batches)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    micro_batches = list(zip(images.chunk(accum_steps), labels.chunk(accum_steps)))
    for index, (x, y) in enumerate(micro_batches):
        sync = index == len(micro_batches) - 1
        with dist.no_sync(model, enabled=not sync), autocast(device, precision):
            logits = model(to_precision(x, precision))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        (loss * (len(y) / len(labels))).backward()
        state.loss_sum += loss.detach().double() * len(y)
        state.correct += logits.detach().argmax(1).eq(y).sum()
        state.seen += len(y)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros((), device=device)
    bad = ~torch.isfinite(grad_norm) | ~torch.isfinite(state.loss_sum)
    state.first_bad_step.copy_(torch.where(bad & (state.first_bad_step < 0), state.step, state.first_bad_step))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1


def _check_finite(state: TrainState) -> None:
    bad = int(state.first_bad_step.item())
    if bad >= 0:
        raise TrainingDiverged(f"the loss or a gradient became NaN/inf at step {bad + 1}; "
                               "stopped, the last checkpoint holds the last good weights")


def train_one_epoch(model, optimizer, loader: InMemoryLoader, state: TrainState, cfg: TrainConfig, *,
                    epoch: int, total_steps: int, precision: str, device: torch.device,
                    progress: Progress | None = None, on_step=None) -> None:
    """Train from the current position in `epoch` to its end (or total_steps)."""
    model.train()
    steps_per_epoch = len(loader)
    start = state.step - epoch * steps_per_epoch
    tick = time.perf_counter()
    interval_start, interval_images = tick, 0
    for images, labels in loader.batches(epoch, start):
        lr = lr_at(cfg, state.step, total_steps)
        train_step(model, optimizer, images, labels, state, lr=lr, label_smoothing=cfg.label_smoothing,
                   precision=precision, device=device, accum_steps=cfg.accum_steps)
        interval_images += cfg.batch_size
        if state.step % cfg.log_every == 0 or state.step == total_steps:
            now = time.perf_counter()
            _check_finite(state)  # the only host sync, every log_every steps
            seen = max(int(state.seen.item()), 1)
            if progress is not None:
                progress.update(state.step, epoch, state.loss_sum.item() / seen,
                                100.0 * state.correct.item() / seen,
                                interval_images / (now - interval_start))
            interval_start, interval_images = now, 0
        if on_step is not None:
            state.train_time += time.perf_counter() - tick
            on_step(state.step)
            tick = time.perf_counter()
        if state.step >= total_steps:
            break
    state.train_time += time.perf_counter() - tick


class RunFolder:
    """The run folder of DESIGN.md: metrics.jsonl, config.json, last.pt, best.pt, curves.png."""

    def __init__(self, path: str | Path | None, enabled: bool = True):
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and self.path is not None
        self.tensorboard = None

    def file(self, name: str) -> Path:
        return self.path / name

    def prepare(self, resume: bool) -> None:
        if not self.enabled:
            return
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {self.path} exists and is not a folder")
        if resume:
            if not self.file("last.pt").is_file():
                raise ValueError(f"--resume: no checkpoint {self.file('last.pt')} to resume from")
            remove_stale_temporaries(self.path)
        elif self.path.exists() and any(self.path.iterdir()):
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


@dataclass
class FitResult:
    test_acc1: float
    best_acc1: float
    steps: int
    metrics: list[dict]
    out: Path | None


def build_model(cfg: TrainConfig, dataset: Dataset, device: torch.device) -> nn.Module:
    in_chans, height, width = dataset.image_shape
    model = create_model(cfg.model, num_classes=dataset.num_classes, in_chans=in_chans, **cfg.model_overrides)
    minimum = model.cfg.total_stride
    if min(height, width) < minimum:
        raise ValueError(f"{cfg.model} needs images of at least {minimum}x{minimum}; {cfg.data} has "
                         f"{height}x{width}: use a CIFAR-family model (resnet20 .. resnet110)")
    if cfg.sync_bn and dist.world_size() > 1:
        model = dist.convert_sync_batchnorm(model, device)
    return model.to(device)


def pick_channels_last(cfg: TrainConfig) -> bool:
    # Measured faster for training on this project's CPU (fp32 and bf16, docs/benchmarks.md)
    # and the layout cuDNN's tensor-core kernels use on GPUs.
    return True if cfg.channels_last is None else cfg.channels_last


# Steps from which compiling pays: compiling the training graph costs ~10-40 s here, and the
# compiled step is ~15% faster (bench/training.py), so below ~2000 steps it is a loss.
COMPILE_MIN_STEPS = 2000


def pick_compile(cfg: TrainConfig, device: torch.device, total_steps: int) -> bool:
    if cfg.compile is not None:
        return cfg.compile
    return total_steps >= COMPILE_MIN_STEPS and compiler_available(device)


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile's inductor can generate code here: Triton on CUDA, a C++ compiler
    on the CPU."""
    if not torch._dynamo.is_dynamo_supported():
        return False
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return shutil.which(os.environ.get("CXX", "g++")) is not None


def make_normalize(cfg: TrainConfig, dataset) -> Normalize:
    if isinstance(dataset, FolderDataset):
        return Normalize(torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1))
    return Normalize.fit(dataset.train.images, per_pixel=cfg.normalize == "per-pixel")


def make_loaders(cfg: TrainConfig, dataset, normalize: Normalize, device, channels_last: bool):
    common = dict(channels_last=channels_last, device=device, rank=dist.rank(), world_size=dist.world_size())
    if isinstance(dataset, FolderDataset):
        train = FolderLoader(dataset.train, cfg.batch_size, normalize, shuffle=True, drop_last=True,
                             lighting=True, seed=cfg.seed, **common)
        test = FolderLoader(dataset.test, cfg.eval_batch_size, normalize, shuffle=False, drop_last=False,
                            lighting=False, **common)
        return train, test
    train = InMemoryLoader(dataset.train, cfg.batch_size, normalize, shuffle=True, drop_last=True,
                           augment=cfg.augment, pad=cfg.pad, seed=cfg.seed, **common)
    test = InMemoryLoader(dataset.test, cfg.eval_batch_size, normalize, shuffle=False, drop_last=False,
                          **common)
    return train, test


def fit(cfg: TrainConfig, *, resume: bool = False, dataset: Dataset | None = None,
        progress: bool = True, stop_after: int | None = None) -> FitResult:
    """Train `cfg.model` on `cfg.data` as the config says, writing the run folder `cfg.out`.

    resume: continue from `cfg.out`/last.pt exactly where it stopped.
    dataset: an already loaded Dataset (tests); by default `cfg.data` is loaded.
    stop_after: stop (as if killed, after saving) at this step; for tests of resume.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    run = RunFolder(cfg.out, enabled=dist.is_main())
    checkpoint = None
    if dist.is_main():
        run.prepare(resume)
    dist.barrier()
    if resume:
        if cfg.out is None:
            raise ValueError("--resume needs --out, the run folder to continue")
        checkpoint = load_checkpoint(Path(cfg.out) / "last.pt")
        # The run continues with its own settings; only where and how often it writes may change.
        saved = TrainConfig.from_dict(checkpoint["config"])
        for name in FREE_ON_RESUME:
            setattr(saved, name, getattr(cfg, name))
        cfg = saved
    precision = resolve_precision(cfg.precision, device)
    cfg.precision = precision
    cfg.channels_last = pick_channels_last(cfg)
    torch.manual_seed(cfg.seed)

    if dataset is None:
        dataset = load_dataset(cfg.data, cfg.data_dir, val_split=cfg.val_split, seed=cfg.seed, image_size=cfg.image_size)
    normalize = make_normalize(cfg, dataset)
    model = build_model(cfg, dataset, device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if precision == "fp64":
        model = model.double()
    train_loader, test_loader = make_loaders(cfg, dataset, normalize, device, cfg.channels_last)
    optimizer = make_optimizer(model, cfg)
    state = TrainState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = TrainState.from_state_dict(checkpoint["state"])
        set_rng_state(checkpoint["rng"])
        run.truncate_metrics(state.step)
    state.to(device)
    ddp_model = dist.wrap(model, device)

    steps_per_epoch = len(train_loader)
    total_steps = cfg.total_steps(steps_per_epoch)
    cfg.compile = pick_compile(cfg, device, total_steps)
    # Only the training forward is compiled: evaluation stays eager, so `resnetlab eval` of a
    # checkpoint reproduces the recorded test accuracy exactly.
    train_model = torch.compile(ddp_model) if cfg.compile else ddp_model
    epochs = -(-total_steps // steps_per_epoch)
    meta = {
        "model": cfg.model, "overrides": dict(cfg.model_overrides), "num_classes": dataset.num_classes,
        "in_chans": dataset.image_shape[0], "image_size": list(dataset.image_shape), "classes": dataset.classes,
        "normalize": normalize.state_dict(), "data": cfg.data,
    }
    resolved = {**cfg.to_dict(), "resolved": {
        "precision": precision, "channels_last": cfg.channels_last, "compile": cfg.compile, "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps, "world_size": dist.world_size(), "versions": versions(),
        "train_images": len(dataset.train), "test_images": len(dataset.test),
    }}
    run.write_config(resolved)
    bar = Progress(total_steps, state.step, enabled=progress and dist.is_main())
    bar.message(f"training {cfg.model} on {cfg.data} ({len(dataset.train)} images, {steps_per_epoch} steps/epoch) "
                f"for {total_steps} steps, recipe {cfg.recipe}, {precision}"
                f"{', channels_last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}, {dist.world_size()} process(es), {device}")
    run_start = time.perf_counter() - state.elapsed

    def save(name: str) -> None:
        _check_finite(state)
        state.elapsed = time.perf_counter() - run_start
        if run.enabled:
            atomic_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state.state_dict(),
                "rng": rng_state(), "config": cfg.to_dict(), "meta": meta, "step": state.step,
                "epoch": state.step // steps_per_epoch, "versions": versions(),
            }, run.file(name))

    def evaluate_and_log(epoch: int) -> dict:
        _check_finite(state)
        result = evaluate(ddp_model, test_loader.batches(0), precision=precision, tta_flip=cfg.tta_flip, device=device)
        sums = dist.all_reduce_sum(torch.stack([state.loss_sum, state.correct.double(), state.seen.double()]))
        loss_sum, correct, seen = sums.tolist()
        seen = max(seen, 1)
        row = {
            "epoch": epoch, "step": state.step, "train_loss": loss_sum / seen,
            "train_err": 100.0 * (1 - correct / seen), **result.as_dict(),
            "test_err": 100.0 - result.acc1,
            "lr": lr_at(cfg, max(state.step - 1, 0), total_steps), "elapsed_s": time.perf_counter() - run_start,
            "train_img_per_s": seen / max(state.train_time, 1e-9),
        }
        run.log(row)
        bar.message(f"epoch {epoch} step {state.step}: train loss {row['train_loss']:.4f} err {row['train_err']:.2f}% | "
                    f"test loss {result.loss:.4f} acc1 {result.acc1:.2f}% acc5 {result.acc5:.2f}% | "
                    f"{row['train_img_per_s']:.0f} img/s, {row['elapsed_s']:.0f} s")
        state.reset_interval()
        if result.acc1 > state.best_acc1:
            state.best_acc1 = result.acc1
            save("best.pt")
        save("last.pt")
        run.plot()
        return row

    def on_step(step: int) -> None:
        if cfg.eval_every and step % cfg.eval_every == 0 and step % steps_per_epoch:
            evaluate_and_log(step // steps_per_epoch)
        elif step % cfg.save_every == 0 and step % steps_per_epoch:
            save("last.pt")
        if stop_after is not None and step >= stop_after:
            save("last.pt")
            raise _Stop

    last_row = None
    try:
        for epoch in range(state.step // steps_per_epoch, epochs):
            train_one_epoch(train_model, optimizer, train_loader, state, cfg, epoch=epoch, total_steps=total_steps,
                            precision=precision, device=device, progress=bar, on_step=on_step)
            last_row = evaluate_and_log(epoch + 1 if state.step % steps_per_epoch == 0 else epoch)
            if state.step >= total_steps:
                break
    except _Stop:
        pass
    metrics = run.read_metrics()
    final = last_row["test_acc1"] if last_row else float("nan")
    return FitResult(final, state.best_acc1, state.step, metrics, run.path)


class _Stop(Exception):
    pass


# Settings that a resumed run may change without changing what it computes.
FREE_ON_RESUME = ("out", "save_every", "log_every", "data_dir", "device")


def versions() -> dict:
    from . import __version__

    return {"resnetlab": __version__, "torch": str(torch.__version__), "python": sys.version.split()[0]}
