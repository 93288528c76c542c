"""The training loop: `fit` trains a config's network and writes its run folder.

The loop never waits for the device: losses and correct counts are summed in tensors and read
every `log_every` steps; a non-finite loss or gradient is recorded (with its step) in a tensor
and checked at those points and before every checkpoint, so no checkpoint ever holds weights
that saw one. SIGINT (Ctrl-C) and SIGTERM (a scheduler's notice) stop the loop after the current
step with a checkpoint at that step. No argparse, no globals.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import dist
from .checkpoint import BEST, LAST, load_resume_point, save_checkpoint, set_rng_state, training_checkpoint, versions
from .data import Normalize, load_dataset
from .data.augment import scale_down
from .device import (
    autocast,
    pick_channels_last,
    pick_compile,
    resolve_device,
    resolve_precision,
    room_for_many_networks,
    to_precision,
)
from .ema import WeightAverage
from .progress import Progress
from .recipes import CUSTOM, TrainConfig, lr_at, resumed_config, train_size_at
from .runfolder import RunFolder
from .scoring import evaluate
from .weights import load_pretrained, read_source
from .zoo import create_model


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/inf."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM, after a checkpoint at the step it reached. The
    message says where it stopped and the command that continues the run; `exit_code` is the
    shell's 128 + signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message, exit_code)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.args[0]


class ResumeWarning(UserWarning):
    """A resumed run differs from a plain continuation: it goes back to previous.pt (a damaged
    last.pt), or its length, and so its lr schedule, changes."""


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

    def check_finite(self) -> None:
        """Raise TrainingDiverged if a step saw a NaN/inf (one host sync)."""
        bad = int(self.first_bad_step.item())
        if bad >= 0:
            raise TrainingDiverged(f"the loss or a gradient became NaN/inf at step {bad + 1}; "
                                   "stopped, the last checkpoint holds the last good weights")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # fused: one kernel for the whole update of all parameters (CPU and CUDA); foreach elsewhere.
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    trainable = [p for p in model.parameters() if p.requires_grad]  # all but a frozen backbone
    return torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
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
    grad_norm = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads
                 else torch.zeros((), device=device))
    bad = ~torch.isfinite(grad_norm) | ~torch.isfinite(state.loss_sum)
    state.first_bad_step.copy_(torch.where(bad & (state.first_bad_step < 0), state.step, state.first_bad_step))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1


def build_model(cfg: TrainConfig, dataset, device: torch.device, pretrained=None,
                network: nn.Module | None = None) -> nn.Module:
    """The run's network for the dataset's classes and channels: fresh, or its backbone from
    `pretrained` with a fresh classifier; or `network`, a module given from Python."""
    in_chans, height, width = dataset.image_shape
    if network is not None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"model must be a model name or an nn.Module, got {type(network).__name__}")
        model = network
    elif cfg.model.startswith(CUSTOM):
        name = cfg.model.removeprefix(CUSTOM)
        raise ValueError(f"this run trains a network given as an nn.Module ({name}), which only Python can "
                         f"rebuild: resume it with resnetlab.train(model={name}(...), out=..., resume=True)")
    else:
        model = create_model(cfg.model, num_classes=dataset.num_classes, in_chans=in_chans, **cfg.model_overrides)
        minimum = model.cfg.total_stride
        if min(height, width) < minimum:
            raise ValueError(f"{cfg.model} needs images of at least {minimum}x{minimum}; {cfg.data} has "
                             f"{height}x{width}: use a CIFAR-family model (resnet20 .. resnet110)")
    if pretrained is not None:
        load_pretrained(model, pretrained, classifier=False)
    if cfg.sync_bn and dist.world_size() > 1:
        model = dist.convert_sync_batchnorm(model, device)
    if cfg.freeze_backbone:
        model.freeze_backbone()
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.double() if cfg.precision == "fp64" else model


def _check_logits(network: nn.Module, images: torch.Tensor, num_classes: int) -> None:
    """That a module given from Python gives one logit per class: one forward pass in eval mode
    (which changes no BatchNorm statistics) on two of the data's images."""
    name = type(network).__name__
    parameter = next(network.parameters(), None)
    if parameter is None:
        raise ValueError(f"{name} has no parameters to train")
    images, mode = images[:2].to(parameter.dtype), network.training
    try:
        with torch.no_grad():
            logits = network.eval()(images)
    except Exception as error:
        raise ValueError(f"{name} failed on a batch of the data's images, shape {tuple(images.shape)}: "
                         f"{error}") from error
    finally:
        network.train(mode)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(images), num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must return class logits of shape (N, {num_classes}) for the data's "
                         f"{num_classes} classes; it returned {got} for N={len(images)}")


@dataclass
class FitResult:
    test_acc1: float
    best_acc1: float
    steps: int
    metrics: list[dict]
    out: Path | None
    trained_steps: int = 0  # steps trained by this call (0: a finished run, resumed)
    model: nn.Module | None = None  # the trained network as evaluated (the average, if kept), eval mode


@dataclass
class _Run:
    """What the loop works on: everything `_start` builds for a run."""

    cfg: TrainConfig
    network: nn.Module  # the ResNet itself, whose weights the checkpoints hold
    model: nn.Module  # the network as evaluated: wrapped for DDP under torchrun, eager; the average if kept
    train_model: nn.Module  # the network trained, wrapped, compiled where cfg.compile says
    optimizer: torch.optim.Optimizer
    state: TrainState
    train_loader: object
    test_loader: object
    folder: RunFolder
    bar: Progress
    meta: dict
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    average: WeightAverage | None = None
    clock_start: float = 0.0

    def save(self, name: str) -> None:
        self.state.check_finite()
        self.state.elapsed = time.perf_counter() - self.clock_start
        if self.folder.enabled:
            save_checkpoint(training_checkpoint(model=self.network, optimizer=self.optimizer, state=self.state,
                                                config=self.cfg.to_dict(), meta=self.meta,
                                                steps_per_epoch=self.steps_per_epoch, average=self.average),
                            self.folder.file(name), keep_previous=name == LAST)

    def evaluate_and_log(self) -> None:
        """Score the test split, append the metrics row, keep best.pt and last.pt, redraw curves.png."""
        self.state.check_finite()
        result = evaluate(self.model, self.test_loader.batches(0), precision=self.cfg.precision,
                          tta_flip=self.cfg.tta_flip, tta_shift=self.cfg.tta_shift, device=self.device)
        row = _metrics_row(self, result)
        self.folder.log(row)
        self.bar.message(_describe(row))
        self.state.reset_interval()
        if result.acc1 > self.state.best_acc1:
            self.state.best_acc1 = result.acc1
            self.save(BEST)
        self.save(LAST)
        self.folder.plot()


def fit(cfg: TrainConfig, *, resume: bool = False, dataset=None, progress: bool = True,
        stop_after: int | None = None, network: nn.Module | None = None) -> FitResult:
    """Train `cfg.model` on `cfg.data` as the config says, writing the run folder `cfg.out`.

    resume: continue the run in `cfg.out` exactly where it stopped, with its own settings; `cfg`
        gives only where and how often it writes (recipes.FREE_ON_RESUME) and its length, so a
        longer `max_steps`/`epochs` extends it. A finished run is left as it is.
    dataset: an already loaded dataset (tensors in memory, tests); by default `cfg.data` is loaded.
    stop_after: stop at this step after saving, as if killed; for tests of resume.
    network: the module to train instead of `cfg.model` (whose name is then CUSTOM + its class's).
    """
    run = _start(cfg, resume, dataset, progress, network)
    try:
        if run.state.step >= run.total_steps:  # a finished run, resumed: left as it is
            run.bar.message(f"the run in {cfg.out} has finished ({run.state.step} steps); pass a larger "
                            "--max-steps or --epochs to extend it")
            return _result(run, run.state.step)
        with room_for_many_networks(), _stop_requests() as stop:
            return _train(run, stop_after, stop)
    finally:
        run.folder.release()


@contextmanager
def _stop_requests():
    """A list that SIGINT and SIGTERM append their number to, for the loop to stop at the end of
    its current step. A second Ctrl-C interrupts at once (KeyboardInterrupt), as Ctrl-C usually
    does; the checkpoint being written then is a temporary file, so last.pt stays whole. Under
    torchrun the ranks must stop together, so dist's handlers stay in charge there."""
    requested: list[int] = []
    if dist.world_size() > 1 or threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        requested.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def _interrupted(run: _Run, signum: int) -> Interrupted:
    """Save the step reached and say how to go on."""
    run.save(LAST)
    name = signal.Signals(signum).name
    where = f"stopped by {name} at step {run.state.step:,} of {run.total_steps:,}"
    if not run.folder.enabled:
        return Interrupted(f"{where}; no run folder (--out), so nothing was saved", 128 + signum)
    command = f"resnetlab train --out {shlex.quote(str(run.folder.path))} --resume"
    if run.cfg.data_dir:
        command += f" --data-dir {shlex.quote(str(run.cfg.data_dir))}"
    return Interrupted(f"{where}; {run.folder.file(LAST)} holds that step. Continue the run with:\n  {command}",
                       128 + signum)


def _train(run: _Run, stop_after: int | None, stop: list[int]) -> FitResult:
    """The training loop, from the run's current step to its end (or `stop_after`, or a signal
    appended to `stop`)."""
    cfg, state, bar, first_step = run.cfg, run.state, run.bar, run.state.step
    run.clock_start = time.perf_counter() - state.elapsed
    interval_start, interval_images = time.perf_counter(), 0
    while state.step < run.total_steps:
        epoch = state.step // run.steps_per_epoch
        tick = time.perf_counter()
        for images, labels in run.train_loader.batches(epoch, start=state.step - epoch * run.steps_per_epoch):
            size = train_size_at(cfg, state.step, run.total_steps)
            if size is not None:
                images = scale_down(images, size)
            train_step(run.train_model, run.optimizer, images, labels, state,
                       lr=lr_at(cfg, state.step, run.total_steps), label_smoothing=cfg.label_smoothing,
                       precision=cfg.precision, device=run.device, accum_steps=cfg.accum_steps)
            if run.average is not None:
                run.average.update(state.step)
            state.train_time += time.perf_counter() - tick
            step, interval_images = state.step, interval_images + cfg.batch_size
            last = step == run.total_steps
            if step % cfg.log_every == 0 or last:  # the loop's only host sync
                state.check_finite()
                now = time.perf_counter()
                seen = max(int(state.seen.item()), 1)
                bar.update(step, epoch, state.loss_sum.item() / seen, 100.0 * state.correct.item() / seen,
                           interval_images / (now - interval_start))
                interval_start, interval_images = now, 0
            if step % run.steps_per_epoch == 0 or last or (cfg.eval_every and step % cfg.eval_every == 0):
                run.evaluate_and_log()
            elif step % cfg.save_every == 0:
                run.save(LAST)
            if last:
                break
            if stop:
                raise _interrupted(run, stop[0])
            if stop_after is not None and step >= stop_after:  # as if killed after this checkpoint
                run.save(LAST)
                return _result(run, first_step)
            tick = time.perf_counter()
    return _result(run, first_step)


def _start(cfg: TrainConfig, resume: bool, dataset, progress: bool, network: nn.Module | None = None) -> _Run:
    """Prepare the run folder, build the network, data, optimizer and state (from the
    checkpoint when resuming), decide what the machine does, write config.json."""
    cfg.validate()
    device = resolve_device(cfg.device)
    if resume and cfg.out is None:
        raise ValueError("--resume needs --out, the run folder to continue")
    folder = RunFolder(cfg.out, enabled=dist.is_main())
    if dist.is_main():
        folder.prepare(resume)
    try:
        return _build(cfg, resume, dataset, progress, device, folder, network)
    except BaseException:
        folder.release()  # a run that cannot start leaves the folder to the next writer at once
        raise


def _build(cfg: TrainConfig, resume: bool, dataset, progress: bool, device, folder: RunFolder,
           network: nn.Module | None) -> _Run:
    dist.barrier()
    checkpoint, saved = None, None
    if resume:
        checkpoint, lost = load_resume_point(cfg.out)
        if lost:
            warnings.warn(lost, ResumeWarning, stacklevel=3)
        saved = TrainConfig.from_dict(checkpoint["config"])
        cfg = resumed_config(saved, cfg)
    # A resumed run's weights are its checkpoint's (the pretrained source may be gone).
    source, source_meta = read_source(cfg.pretrained) if cfg.pretrained and checkpoint is None else (None, {})
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device),
                              channels_last=pick_channels_last(cfg),
                              image_size=cfg.image_size or int(source_meta.get("image_size", [224])[-1]))
    torch.manual_seed(cfg.seed)
    if dataset is None:
        dataset = load_dataset(cfg.data, cfg.data_dir, val_split=cfg.val_split, seed=cfg.seed,
                               image_size=cfg.image_size)
    normalize = _normalization(cfg, dataset, checkpoint, source_meta)
    model = build_model(cfg, dataset, device, source, network)
    train_loader, test_loader = dataset.loaders(cfg, normalize, device=device, channels_last=cfg.channels_last,
                                                rank=dist.rank(), world_size=dist.world_size())
    if network is not None:
        _check_logits(model, next(iter(test_loader.batches(0)))[0], dataset.num_classes)
    optimizer = make_optimizer(model, cfg)
    state = TrainState()
    steps_per_epoch = len(train_loader)
    total_steps = cfg.total_steps(steps_per_epoch)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint.get("training_weights", checkpoint["model"]))
        if average is not None:
            average.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = TrainState.from_state_dict(checkpoint["state"])
        set_rng_state(checkpoint["rng"])
    bar = Progress(total_steps, state.step, enabled=progress and dist.is_main())
    cfg = dataclasses.replace(cfg, compile=pick_compile(cfg, device, total_steps))
    meta = {
        "model": cfg.model, "overrides": dict(cfg.model_overrides), "num_classes": dataset.num_classes,
        "in_chans": dataset.image_shape[0], "image_size": list(dataset.image_shape), "classes": dataset.classes,
        "normalize": normalize.state_dict(), "data": cfg.data,
    }
    wrapped = dist.wrap(model, device)
    # Only the training forward is compiled: evaluation stays eager, so `resnetlab eval` of a
    # checkpoint reproduces the recorded test accuracy exactly. Static shapes: each image size of
    # progressive resizing gets its own specialised graph, not a slower shape-generic one.
    run = _Run(cfg, model, wrapped if average is None else average.average,
               torch.compile(wrapped, dynamic=False) if cfg.compile else wrapped, optimizer, state.to(device),
               train_loader, test_loader, folder, bar, meta, device, steps_per_epoch, total_steps, average)
    if state.step < total_steps:
        if saved is not None:
            folder.truncate_metrics(state.step)
            _say_how_the_schedule_changes(saved, cfg, state.step, steps_per_epoch)
        _write_config(run, dataset)
    return run


def _normalization(cfg: TrainConfig, dataset, checkpoint: dict | None, source_meta: dict) -> Normalize:
    """The input statistics: a resumed run's own, the pretrained weights' (a resnetlab
    checkpoint's own, else ImageNet's), or the dataset's."""
    if checkpoint is not None:
        return Normalize.from_state_dict(checkpoint["meta"]["normalize"])
    if cfg.normalize == "pretrained":
        source = Normalize.from_state_dict(source_meta["normalize"]) if "normalize" in source_meta else \
            Normalize.imagenet()
        return source.for_images(dataset.image_shape[0])
    return dataset.normalization(per_pixel=cfg.normalize == "per-pixel")


def _write_config(run: _Run, dataset) -> None:
    cfg = run.cfg
    run.folder.write_config({**cfg.to_dict(), "resolved": {
        "precision": cfg.precision, "channels_last": cfg.channels_last, "compile": cfg.compile,
        "steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps, "world_size": dist.world_size(),
        "versions": versions(), "train_images": len(dataset.train), "test_images": len(dataset.test),
    }})
    run.bar.message(f"training {cfg.model} on {cfg.data} ({len(dataset.train)} images, {run.steps_per_epoch} "
                    f"steps/epoch) for {run.total_steps} steps, recipe {cfg.recipe}, {cfg.precision}"
                    f"{', channels_last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}, "
                    f"{dist.world_size()} process(es), {run.device}")


def _metrics_row(run: _Run, result) -> dict:
    """One line of metrics.jsonl: the training sums since the last row (over all processes),
    the test scores, the lr of the last step, the clocks."""
    state, cfg = run.state, run.cfg
    sums = dist.all_reduce_sum(torch.stack([state.loss_sum, state.correct.double(), state.seen.double()]))
    loss_sum, correct, seen = sums.tolist()
    seen = max(seen, 1)
    return {
        "epoch": state.step // run.steps_per_epoch, "step": state.step, "train_loss": loss_sum / seen,
        "train_err": 100.0 * (1 - correct / seen), **result.as_dict(), "test_err": 100.0 - result.acc1,
        "lr": lr_at(cfg, max(state.step - 1, 0), run.total_steps), "elapsed_s": time.perf_counter() - run.clock_start,
        "train_img_per_s": seen / max(state.train_time, 1e-9),
    }


def _describe(row: dict) -> str:
    return (f"epoch {row['epoch']} step {row['step']}: "
            f"train loss {row['train_loss']:.4f} err {row['train_err']:.2f}% | "
            f"test loss {row['test_loss']:.4f} acc1 {row['test_acc1']:.2f}% acc5 {row['test_acc5']:.2f}% | "
            f"{row['train_img_per_s']:.0f} img/s, {row['elapsed_s']:.0f} s")


def _say_how_the_schedule_changes(saved: TrainConfig, cfg: TrainConfig, step: int, steps_per_epoch: int) -> None:
    """One line when a resumed run is given another length (as timm allows more epochs)."""
    before, after = saved.total_steps(steps_per_epoch), cfg.total_steps(steps_per_epoch)
    if before == after:
        return
    warnings.warn(f"extending the run from {before} to {after} steps: the {cfg.schedule} schedule now spans "
                  f"{after} steps (lr at step {step}: {lr_at(saved, step, before):.4g} -> "
                  f"{lr_at(cfg, step, after):.4g})", ResumeWarning, stacklevel=4)


def _result(run: _Run, first_step: int) -> FitResult:
    metrics = run.folder.read_metrics()
    final = metrics[-1]["test_acc1"] if metrics else float("nan")
    trained = run.average.average if run.average is not None else run.network
    return FitResult(final, run.state.best_acc1, run.state.step, metrics, run.folder.path,
                     run.state.step - first_step, trained.eval())
