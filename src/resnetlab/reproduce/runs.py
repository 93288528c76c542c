"""The training runs of a reproduction: one ordinary run folder each under OUT/runs/, trained to
its end, resumed where it stopped, reused once finished, several at a time with --jobs."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from ..checkpoint import has_resume_point, load_resume_point
from ..engine import fit
from ..recipes import TrainConfig, make_config
from ..runfolder import RunFolder

# The recipes a run of degradation or shortcuts can follow, on the experiment's number of epochs,
# and how the report names them.
RUN_RECIPES = {
    "paper-cifar": "section 4.2's recipe, its lr drops at 50% and 75% of the run",
    "fast": "the `fast` recipe of `resnetlab train`: one-cycle lr peaking at 0.2 after a 6% warm-up, Nesterov, "
            "weight decay 5e-4, label smoothing 0.1, the test error of the weights' moving average, single view",
}
# Each experiment's recipe unless --recipe says otherwise. Degradation trains `fast`: on 30 epochs
# section 4.2's recipe leaves ResNet-56 behind ResNet-20 (it starts near chance at lr 0.1 and has not
# caught up when the lr drops), where `fast`, the same for every network, has it below ResNet-20 in
# training error on both seeds (docs/results.md). Shortcuts keeps the paper's.
DEFAULT_RECIPE = {"degradation": "fast", "shortcuts": "paper-cifar"}


@dataclass
class Settings:
    out: Path
    data: str = "fashion-mnist"
    data_dir: str | None = None
    device: str = "auto"
    epochs: int | None = None  # None: the experiment's default
    seeds: int | None = None
    depths: tuple[int, ...] | None = None  # degradation: the 6n+2 depths (None: 20 and 56)
    jobs: int = 1  # training runs at once (separate processes; useful on a GPU)
    quick: bool = False  # a few steps on a small subset: checks the pipeline, not the science
    compile: bool | None = None  # None: as any run decides (device.pick_compile)
    report_only: bool = False  # degradation: report the runs finished in OUT so far, train nothing
    recipe: str | None = None  # degradation and shortcuts: one of RUN_RECIPES (None: DEFAULT_RECIPE's)


@dataclass
class Run:
    name: str  # folder under OUT/runs
    cfg: TrainConfig
    responses: bool = False  # measure Figure 7's layer responses when the run has finished


def run_config(settings: Settings, model: str, seed: int, epochs: int, **overrides) -> TrainConfig:
    """One run of `epochs` with the recipe of `settings.recipe` (RUN_RECIPES), evaluated every half
    epoch. paper-cifar: section 4.2's recipe (SGD 0.9, lr 0.1 divided by 10 at 50% and 75% of the
    run, weight decay 1e-4, batch 128, pad-4 crop and flip, per-pixel mean), precision and compile
    as the machine decides ("auto"), as for any run. fast: `resnetlab train`'s default recipe,
    scored on a single view."""
    if settings.recipe not in RUN_RECIPES:
        raise ValueError(f"unknown recipe {settings.recipe!r} for a reproduction; expected one of "
                         f"{', '.join(RUN_RECIPES)}")
    steps_per_epoch = _train_size(settings) // 128
    total = epochs * steps_per_epoch
    own = (dict(milestones=(total // 2, total * 3 // 4), precision="auto") if settings.recipe == "paper-cifar"
           else dict(tta_flip=False))
    return make_config(settings.recipe, model=model, data=settings.data, data_dir=settings.data_dir, seed=seed,
                       max_steps=total, eval_every=max(steps_per_epoch // 2, 1), device=settings.device,
                       log_every=100, compile=settings.compile, **own, **overrides)


def _train_size(settings: Settings) -> int:
    if settings.quick:
        return QUICK_TRAIN
    return {"fashion-mnist": 60000, "cifar10": 50000}.get(settings.data, 50000)


QUICK_TRAIN, QUICK_TEST = 512, 256


def quick_config(cfg: TrainConfig) -> TrainConfig:
    return replace(cfg, max_steps=4, batch_size=32, eval_every=2, eval_batch_size=128, milestones=(2, 3),
                   compile=False, warmup_steps=min(cfg.warmup_steps, 1))


def run_dataset(cfg: TrainConfig, quick: bool):
    from ..data import Dataset, Split, load_dataset

    dataset = load_dataset(cfg.data, cfg.data_dir, val_split=cfg.val_split, seed=cfg.seed)
    if quick:
        dataset = Dataset(dataset.name, Split(dataset.train.images[:QUICK_TRAIN], dataset.train.labels[:QUICK_TRAIN]),
                          Split(dataset.test.images[:QUICK_TEST], dataset.test.labels[:QUICK_TEST]), dataset.classes)
    return dataset


def train(run: Run, root: Path, quick: bool, threads: int | None = None) -> list[dict]:
    """Train one run to its end (resuming an interrupted one; a finished one is only read)."""
    if threads:
        torch.set_num_threads(threads)
    folder, cfg = placed(run, root, quick)
    resume = has_resume_point(folder)
    start = check_same_schedule(folder, cfg) if resume else 0
    if is_finished(folder, cfg):
        _responses(run, folder, cfg, quick)
        return RunFolder(folder).read_metrics()
    # A reproduction trains for hours, several runs at once: one line as each run starts and
    # ends says where it stands (the trainer's own progress line would interleave).
    say(f"{run.name}: resuming at step {start:,} of {cfg.max_steps:,}" if start else
         f"{run.name}: starting, {cfg.max_steps:,} steps")
    rows = fit(cfg, resume=resume, dataset=run_dataset(cfg, quick), progress=False).metrics
    say(f"{run.name}: finished, training error {rows[-1]['train_err']:.2f}%, test error {rows[-1]['test_err']:.2f}% "
         f"({rows[-1]['elapsed_s'] / 3600:.1f} h by its clock)")
    _responses(run, folder, cfg, quick)
    return rows


def _responses(run: Run, folder: Path, cfg: TrainConfig, quick: bool) -> None:
    """A finished run's layer responses (responses.json), where the experiment asks for them and
    the run does not have them yet: its final weights are measured once, then only read."""
    if run.responses:
        from .responses import finished_responses

        finished_responses(folder, cfg, quick)


def placed(run: Run, root: Path, quick: bool) -> tuple[Path, TrainConfig]:
    """The run's folder under `root`, and the config it trains there."""
    folder = root / "runs" / run.name
    cfg = replace(run.cfg, out=str(folder))
    return folder, quick_config(cfg) if quick else cfg


def _interrupted(run: Run, root: Path, quick: bool) -> bool:
    folder, cfg = placed(run, root, quick)
    return has_resume_point(folder) and not is_finished(folder, cfg)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def is_finished(folder: Path, cfg: TrainConfig) -> bool:
    rows = RunFolder(folder).read_metrics()
    return bool(rows) and cfg.max_steps is not None and rows[-1]["step"] >= cfg.max_steps


def check_same_schedule(folder: Path, cfg: TrainConfig) -> int:
    """A run folder is reused only for the schedule it was started with (a resumed run keeps
    its own lr milestones, so another length would not be the schedule asked for). Returns the
    step its checkpoint is at."""
    checkpoint = load_resume_point(folder)[0]
    saved = TrainConfig.from_dict(checkpoint["config"])
    if saved.recipe != cfg.recipe:
        raise ValueError(f"{folder} holds a run of the {saved.recipe} recipe, not {cfg.recipe}; use another --out "
                         "for another recipe")
    if (saved.max_steps, saved.milestones) != (cfg.max_steps, cfg.milestones):
        raise ValueError(f"{folder} holds a run of {saved.max_steps} steps (lr drops at {list(saved.milestones)}), "
                         f"not the {cfg.max_steps} asked for; use another --out for another schedule")
    return checkpoint["step"]


def train_all(runs: list[Run], settings: Settings) -> dict[str, list[dict]]:
    """Train every run, `settings.jobs` at a time (each in its own process when > 1), the
    interrupted ones first: a sitting that ends then leaves as few runs half done as it can
    (each one a checkpoint to carry to the next machine)."""
    runs = sorted(runs, key=lambda run: not _interrupted(run, settings.out, settings.quick))
    if settings.jobs <= 1:
        return {run.name: train(run, settings.out, settings.quick) for run in runs}
    threads = max(1, (os.cpu_count() or 1) // settings.jobs)
    with ProcessPoolExecutor(settings.jobs, mp_context=get_context("spawn")) as pool:
        futures = {run.name: pool.submit(train, run, settings.out, settings.quick, threads) for run in runs}
        return {name: future.result() for name, future in futures.items()}
