"""`resnetlab reproduce`: the paper's findings, re-measured on the data at hand.

  degradation  plain-20/56 vs ResNet-20/56 (Figure 6, Table 6): plain nets get worse with depth,
               deeper ResNets better. One recipe (DEFAULT_RECIPE's or --recipe) for every network, several seeds.
  shortcuts    ResNet-20/32 with shortcut options A, B and C (section 3.3, Table 3).
  bottleneck   ResNet-50 v1 (stride on the first 1x1) vs v1.5 (stride on the 3x3): cost and speed.
  cifar10      the exact paper-cifar recipe for ResNet-20..110 on CIFAR-10 (Table 6).

Every training run is an ordinary run folder under OUT/runs/; a reproduction that is stopped
resumes its unfinished run and skips the finished ones when started again with the same OUT.
The report (tables, figure, the command) is OUT/report.md, and optionally a section of docs.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from .checkpoint import has_resume_point, load_resume_point
from .engine import fit
from .measure import markdown
from .recipes import TrainConfig, make_config
from .runfolder import RunFolder

# Table 6 (CIFAR-10 test error %) and Table 3 (ImageNet top-1 error %, 10-crop) of the paper, and the
# test errors of a popular reproduction of Table 6 (akamaster/pytorch_resnet_cifar10).
TABLE6 = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97, "resnet110": 6.43}
AKAMASTER = {"resnet20": 8.27, "resnet32": 7.37, "resnet44": 6.90, "resnet56": 6.61, "resnet110": 6.32}
TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19}
# Figure 6 compares plain nets and ResNets of 20..56 layers (plain nets stop at 56 in the paper's
# figure); Table 6 adds ResNet-110. 20 and 56 are the pair the paper's claim rests on.
DEFAULT_DEPTHS = (20, 56)
PLAIN_MAX_DEPTH = 56
DEGRADATION_EPOCHS = 30
# Fashion-MNIST test error (%) of ResNets trained 300 epochs without random erasing, from the
# Random Erasing paper's repository (zhunzhong07/Random-Erasing).
RANDOM_ERASING_FMNIST = {"resnet20": 4.39, "resnet32": 4.16, "resnet56": 4.39}
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


# --- Training runs ---------------------------------------------------------------------------------


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


def _quick(cfg: TrainConfig) -> TrainConfig:
    return replace(cfg, max_steps=4, batch_size=32, eval_every=2, eval_batch_size=128, milestones=(2, 3),
                   compile=False, warmup_steps=min(cfg.warmup_steps, 1))


def _dataset(cfg: TrainConfig, quick: bool):
    from .data import Dataset, Split, load_dataset

    dataset = load_dataset(cfg.data, cfg.data_dir, val_split=cfg.val_split, seed=cfg.seed)
    if quick:
        dataset = Dataset(dataset.name, Split(dataset.train.images[:QUICK_TRAIN], dataset.train.labels[:QUICK_TRAIN]),
                          Split(dataset.test.images[:QUICK_TEST], dataset.test.labels[:QUICK_TEST]), dataset.classes)
    return dataset


def train(run: Run, root: Path, quick: bool, threads: int | None = None) -> list[dict]:
    """Train one run to its end (resuming an interrupted one; a finished one is only read)."""
    if threads:
        torch.set_num_threads(threads)
    folder, cfg = _placed(run, root, quick)
    resume = has_resume_point(folder)
    start = _check_same_schedule(folder, cfg) if resume else 0
    if _finished(folder, cfg):
        return RunFolder(folder).read_metrics()
    # A reproduction trains for hours, several runs at once: one line as each run starts and
    # ends says where it stands (the trainer's own progress line would interleave).
    _say(f"{run.name}: resuming at step {start:,} of {cfg.max_steps:,}" if start else
         f"{run.name}: starting, {cfg.max_steps:,} steps")
    rows = fit(cfg, resume=resume, dataset=_dataset(cfg, quick), progress=False).metrics
    _say(f"{run.name}: finished, training error {rows[-1]['train_err']:.2f}%, test error {rows[-1]['test_err']:.2f}% "
         f"({rows[-1]['elapsed_s'] / 3600:.1f} h by its clock)")
    return rows


def _placed(run: Run, root: Path, quick: bool) -> tuple[Path, TrainConfig]:
    """The run's folder under `root`, and the config it trains there."""
    folder = root / "runs" / run.name
    cfg = replace(run.cfg, out=str(folder))
    return folder, _quick(cfg) if quick else cfg


def _interrupted(run: Run, root: Path, quick: bool) -> bool:
    folder, cfg = _placed(run, root, quick)
    return has_resume_point(folder) and not _finished(folder, cfg)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finished(folder: Path, cfg: TrainConfig) -> bool:
    rows = RunFolder(folder).read_metrics()
    return bool(rows) and cfg.max_steps is not None and rows[-1]["step"] >= cfg.max_steps


def _check_same_schedule(folder: Path, cfg: TrainConfig) -> int:
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


def _params(model: str, **overrides) -> int:
    from .zoo import create_model

    return sum(p.numel() for p in create_model(model, **overrides).parameters())


def _final(rows: list[dict]) -> tuple[float, float]:
    return rows[-1]["train_err"], rows[-1]["test_err"]


def _mean_spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


# --- The experiments -------------------------------------------------------------------------------


def degradation(settings: Settings) -> str:
    epochs = settings.epochs or DEGRADATION_EPOCHS
    seeds = settings.seeds or 2
    depths = sorted(settings.depths or DEFAULT_DEPTHS)
    models = [f"plain{d}" for d in depths if d <= PLAIN_MAX_DEPTH] + [f"resnet{d}" for d in depths]
    # Each seed's deepest (longest) runs first: with --jobs the long runs start at once and the
    # short ones fill in beside them, so a sitting ends with fewer deep runs half done. At one
    # depth the ResNet goes before its plain twin: Table 6's rows are the ResNets' alone.
    order = sorted(models, key=lambda model: (-_depth(model), model.startswith("plain")))
    runs = [Run(f"{model}-seed{seed}", run_config(settings, model, seed, epochs))
            for seed in range(seeds) for model in order]
    if not settings.report_only:
        train_all(runs, settings)
    # The table is over every finished seed in OUT, so a later call with more depths and one
    # seed keeps the seeds an earlier call trained.
    lengths = {model: _length(runs, model, settings.quick) for model in models}
    finished = {model: _finished_seeds(settings, model, lengths[model]) for model in models}
    rows = []
    for model, curves in finished.items():
        finals = [_final(rows_) for rows_ in curves.values()]
        hours = [rows_[-1]["elapsed_s"] / 3600 for rows_ in curves.values()]
        rows.append([model, f"{_params(model, num_classes=10) / 1e6:.2f}M",
                     _mean_spread([f[0] for f in finals]), _mean_spread([f[1] for f in finals]), str(len(finals)),
                     _reference(TABLE6, model), _reference(RANDOM_ERASING_FMNIST, model),
                     f"{statistics.mean(hours):.1f}" if hours else "-"])
    runs_done = sum(len(curves) for curves in finished.values())
    hours_done = sum(rows_[-1]["elapsed_s"] for curves in finished.values() for rows_ in curves.values()) / 3600
    figure = settings.out / "degradation.png"
    curves = {model: seeds_[min(seeds_)] for model, seeds_ in finished.items() if seeds_}  # the first seed's
    if curves:
        plot_degradation(curves, figure, settings.data)
    return (f"{epochs} epochs per run ({RUN_RECIPES[settings.recipe]}), seeds "
            f"{_seed_list(finished)}; error in % at the end of training, mean (min-max) over the seeds. Training "
            f"error is measured over the batches since the previous evaluation (half an epoch), with augmentation, "
            f"as the paper's curves are.\n\n"
            + markdown(["network", "params", "training error", "test error", "seeds",
                        "Table 6 (CIFAR-10 test error)", "Random Erasing repo (Fashion-MNIST test error, 300 epochs)",
                        "hours per run"], rows)
            + (f"\n\nThe {runs_done} finished run{'' if runs_done == 1 else 's'} took {hours_done:.1f} h in all by "
               f"their own clocks (set-up and evaluation included, over however many sittings; `--jobs` runs that "
               f"many at once)." if runs_done else "")
            + _unfinished(runs, finished, lengths, settings.out)
            + "\n\n" + _degradation_verdict(finished, depths)
            + (f"\n\n![degradation]({figure.name})\n" if curves else "\n"))


def _unfinished(runs: list[Run], finished: dict[str, dict[int, list[dict]]], lengths: dict[str, int],
                out: Path) -> str:
    """A line naming the runs of this call that have not finished, with how far each got."""
    progress = []
    for run in (run for run in runs if run.cfg.seed not in finished[run.cfg.model]):
        rows = RunFolder(out / "runs" / run.name).read_metrics()
        progress.append(f"{run.name} at step {rows[-1]['step'] if rows else 0:,} of {lengths[run.cfg.model]:,}")
    return f"\n\nNot finished yet: {'; '.join(progress)}." if progress else ""


def _depth(model: str) -> int:
    return int(model.removeprefix("plain").removeprefix("resnet"))


def _length(runs: list[Run], model: str, quick: bool) -> int:
    """The steps a run of `model` trains (as `train` runs it)."""
    cfg = next(run.cfg for run in runs if run.cfg.model == model)
    return (_quick(cfg) if quick else cfg).max_steps


def _finished_seeds(settings: Settings, model: str, max_steps: int) -> dict[int, list[dict]]:
    """seed -> metrics of every run of `model` in OUT that finished `max_steps`."""
    found = {}
    for folder in sorted((settings.out / "runs").glob(f"{model}-seed*")):
        rows = RunFolder(folder).read_metrics()
        seed = folder.name.removeprefix(f"{model}-seed")
        if seed.isdigit() and rows and rows[-1]["step"] == max_steps:
            found[int(seed)] = rows
    return found


def _reference(table: dict[str, float], model: str) -> str:
    return f"{table[model]:.2f}" if model in table else "-"


def _seed_list(finished: dict[str, dict[int, list[dict]]]) -> str:
    seeds = sorted({seed for curves in finished.values() for seed in curves})
    return ", ".join(map(str, seeds)) or "none finished yet"


def _degradation_verdict(finished: dict[str, dict[int, list[dict]]], depths: list[int]) -> str:
    """The paper's claim, checked on the shallowest and deepest depth both families have."""
    shared = [d for d in depths if d <= PLAIN_MAX_DEPTH]
    if len(shared) < 2:
        return "(one depth only: nothing to compare)"
    low, high = shared[0], shared[-1]
    by_iteration = "".join(f"\n\n{_second_half_gap(finished, family, high, low)}" for family in ("plain", "resnet"))

    def errors(model: str, index: int) -> list[float]:
        return [_final(rows)[index] for rows in finished[model].values()]

    missing = [model for model in (f"plain{low}", f"plain{high}", f"resnet{low}", f"resnet{high}")
               if not finished[model]]
    if missing:
        verb = "has" if len(missing) == 1 else "have"
        return f"The paper's claim is not checked yet: {', '.join(missing)} {verb} no finished run." + by_iteration
    plain_train = statistics.mean(errors(f"plain{high}", 0)) - statistics.mean(errors(f"plain{low}", 0))
    plain_test = statistics.mean(errors(f"plain{high}", 1)) - statistics.mean(errors(f"plain{low}", 1))
    deep, shallow = errors(f"resnet{high}", 0), errors(f"resnet{low}", 0)
    test_gap = statistics.mean(errors(f"resnet{high}", 1)) - statistics.mean(errors(f"resnet{low}", 1))
    checks = [
        (plain_train > 0 and plain_test > 0,
         f"plain-{high} above plain-{low} in training and test error "
         f"({plain_train:+.2f} and {plain_test:+.2f} points)"),
        (max(deep) < min(shallow),
         f"ResNet-{high} below ResNet-{low} in training error, the seeds' ranges apart "
         f"({min(deep):.2f}-{max(deep):.2f} against {min(shallow):.2f}-{max(shallow):.2f})"),
        (test_gap <= 0.3, f"ResNet-{high}'s test error at most 0.3 points above ResNet-{low}'s ({test_gap:+.2f})"),
    ]
    return "The paper's claim on these runs:\n\n" + "\n".join(
        f"- {'yes' if ok else '**no**'}: {text}" for ok, text in checks) + by_iteration


def _second_half_gap(finished: dict[str, dict[int, list[dict]]], family: str, high: int, low: int) -> str:
    """How the deeper net's training error compares at every evaluation of the second half of
    training, seed by seed: one final number is a single noisy sample (each evaluation's training
    error is over half an epoch of batches), a whole half of the curve is not. The second half,
    a rule fixed in advance, leaves out the start, where a deeper net is slower whether or not it
    ends lower."""
    deep, shallow = finished[f"{family}{high}"], finished[f"{family}{low}"]
    parts = []
    for seed in sorted(set(deep) & set(shallow)):
        shallow_err = {row["step"]: row["train_err"] for row in shallow[seed]}
        half = deep[seed][-1]["step"] / 2
        gaps = [(row["train_err"] - shallow_err[row["step"]], row["step"]) for row in deep[seed]
                if row["step"] > half and row["step"] in shallow_err]
        if gaps:
            lower = sum(gap < 0 for gap, _ in gaps)
            widest, at = max(gaps, key=lambda g: abs(g[0]))
            mean = statistics.mean(gap for gap, _ in gaps)
            parts.append(f"seed {seed} below at {lower} of {len(gaps)} evaluations, {mean:+.2f} points on average, "
                         f"{widest:+.2f} at the widest (iteration {at:,})")
    name = {"plain": "plain", "resnet": "ResNet"}[family]
    return (f"{name}-{high} minus {name}-{low} in training error over the second half of training: "
            + ("; ".join(parts) if parts else "no seed has finished both") + ".")


def shortcuts(settings: Settings) -> str:
    epochs = settings.epochs or 3
    seeds = settings.seeds or 1
    runs = [Run(f"{model}-{option}-seed{seed}",
                run_config(settings, model, seed, epochs, model_overrides={"shortcut": option}))
            for seed in range(seeds) for model in ("resnet20", "resnet32") for option in "ABC"]
    metrics = train_all(runs, settings)
    rows = []
    for model in ("resnet20", "resnet32"):
        for option in "ABC":
            finals = [_final(metrics[f"{model}-{option}-seed{seed}"]) for seed in range(seeds)]
            rows.append([model, option, f"{_params(model, num_classes=10, shortcut=option):,}",
                         _mean_spread([f[0] for f in finals]), _mean_spread([f[1] for f in finals]),
                         f"{TABLE3[option]:.2f}"])
    return (f"{epochs} epochs per run ({RUN_RECIPES[settings.recipe]}), {seeds} seed(s); error in % at the end "
            f"of training.\n\n"
            + markdown(["network", "shortcut", "params", "training error", "test error",
                        "Table 3: ResNet-34 on ImageNet, top-1 error"], rows) + "\n")


def bottleneck(settings: Settings) -> str:
    """ResNet-50 v1 vs v1.5: multiply-adds and params (224x224), inference and training
    throughput on this machine (measured taking turns, resnetlab.measure)."""
    from .device import resolve_device, resolve_precision
    from .engine import TrainState, make_optimizer, train_step
    from .inference import optimize_for_inference
    from .measure import interleaved_rates
    from .summary import summary
    from .zoo import create_model

    device = resolve_device(settings.device)
    precision = resolve_precision("auto", device)
    side, infer_batch, train_batch = (64, 2, 2) if settings.quick else (224, 16, 32)
    cfg = make_config("fast", model="resnet50")
    runners, costs = {}, {}
    variants = [("v1 (stride on the 1x1, the paper)", True), ("v1.5 (stride on the 3x3, torchvision/timm)", False)]
    for label, v1 in variants:
        model = create_model("resnet50", stride_in_1x1=v1).to(device)
        report = summary(model, input_size=(3, 224, 224))
        costs[label] = (report.macs, report.params)
        x = torch.randn(infer_batch, 3, side, side, device=device)
        optimized = optimize_for_inference(model, dtype="bf16" if precision == "bf16" else "fp32")
        runners[(label, "inference")] = ((lambda m=optimized, x=x: m(x)), infer_batch)
        trained = create_model("resnet50", stride_in_1x1=v1).to(device).train().to(memory_format=torch.channels_last)
        optimizer = make_optimizer(trained, cfg)
        state = TrainState().to(device)
        images = torch.randn(train_batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 1000, (train_batch,), device=device)
        runners[(label, "training")] = ((lambda m=trained, o=optimizer, s=state, x=images, y=labels: train_step(
            m, o, x, y, s, lr=0.01, label_smoothing=0.0, precision=precision, device=device)), train_batch)
    rates = interleaved_rates(runners, device, rounds=1 if settings.quick else 3, seconds=0.1 if settings.quick else 3)
    rows = [[label, f"{macs / 1e9:.3f} G", f"{params:,}", f"{rates[(label, 'inference')]:.1f}",
             f"{rates[(label, 'training')]:.1f}"] for label, (macs, params) in costs.items()]
    return (f"Multiply-adds and params at 224x224 (1000 classes). Throughput at {side}x{side} on {device}, "
            f"{precision}, channels_last: inference of the optimized network (BN folded) at batch {infer_batch}, "
            f"the trainer's step at batch {train_batch}; img/s, median of interleaved rounds.\n\n"
            + markdown(["ResNet-50", "multiply-adds", "params", "inference img/s", "training img/s"], rows) + "\n")


def cifar10(settings: Settings) -> str:
    """Section 4.2 exactly (64k iterations unless --epochs), ResNet-20..110."""
    settings = replace(settings, data="cifar10", recipe="paper-cifar")
    models = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    seeds = settings.seeds or 1
    runs = []
    for seed in range(seeds):
        for model in models:
            # paper-cifar itself adds the lr-0.01 warm-up of 110 layers, in both schedules
            if settings.epochs:
                cfg = run_config(settings, model, seed, settings.epochs)
            else:
                cfg = make_config("paper-cifar", model=model, data="cifar10", data_dir=settings.data_dir, seed=seed,
                                  device=settings.device, eval_every=2000, log_every=200, compile=settings.compile)
            runs.append(Run(f"{model}-seed{seed}", cfg))
    metrics = train_all(runs, settings)
    rows = []
    for model in models:
        finals = [_final(metrics[f"{model}-seed{seed}"]) for seed in range(seeds)]
        rows.append([model, f"{_params(model) / 1e6:.2f}M", _mean_spread([f[1] for f in finals]),
                     f"{TABLE6[model]:.2f}", f"{AKAMASTER[model]:.2f}"])
    schedule = f"{settings.epochs} epochs" if settings.epochs else "64k iterations (the paper's schedule)"
    return (f"{schedule}, {seeds} seed(s); test error in %, single view, at the end of training.\n\n"
            + markdown(["network", "params", "test error", "Table 6", "akamaster reproduction"], rows) + "\n")


# --- Figure and report -----------------------------------------------------------------------------


def plot_degradation(curves: dict[str, list[dict]], path: Path, data: str) -> None:
    """Figure 6's layout: plain nets left, ResNets right, one colour per depth (the same in both
    panels); training error dashed, test error solid, against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({_depth(name) for name in curves})
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120, sharey=True)
    for axis, family, title in zip(axes, ("plain", "resnet"), ("plain", "ResNet")):
        for depth in depths:
            rows = curves.get(f"{family}{depth}")
            if not rows:
                continue
            steps = [row["step"] for row in rows]
            color = f"C{depths.index(depth)}"
            axis.plot(steps, [row["train_err"] for row in rows], "--", color=color, linewidth=1)
            axis.plot(steps, [row["test_err"] for row in rows], "-", color=color, linewidth=1.5,
                      label=f"{title}-{depth}")
        axis.set_title(f"{title} networks on {data}")
        axis.set_xlabel("iterations")
        axis.grid(alpha=0.3)
        if axis.lines:  # a panel whose family has no finished run yet (--report-only) has no legend
            axis.legend(title="dashed: training error; solid: test error", fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("error (%)")
    # The paper's scale, set by where training ends: the first iterations' high error and an unstable
    # net's excursions (plain-56 at the fast recipe's high lr) run off the top rather than flatten the rest.
    final = [rows[-1][key] for rows in curves.values() for key in ("train_err", "test_err")]
    axes[0].set_ylim(0, min(100, max(10, 2.5 * max(final))))
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)


def _describe_device(name: str) -> str:
    from .device import resolve_device

    device = resolve_device(name)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def update_docs(docs: Path, experiment: str, section: str, out: Path) -> None:
    """Put `section` between this experiment's markers in `docs` (appended the first time), its
    figures copied next to it under figures/."""
    import shutil

    for figure in out.glob("*.png"):
        target = docs.parent / "figures" / f"reproduce-{figure.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, target)
        section = section.replace(f"]({figure.name})", f"](figures/{target.name})")
    begin, end = f"<!-- reproduce:{experiment} -->", f"<!-- /reproduce:{experiment} -->"
    text = docs.read_text() if docs.is_file() else ""
    block = f"{begin}\n{section.strip()}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    docs.write_text(text)


EXPERIMENTS = {"degradation": degradation, "shortcuts": shortcuts, "bottleneck": bottleneck, "cifar10": cifar10}


def reproduce(experiment: str, settings: Settings, docs: str | Path | None = None) -> str:
    """Run one experiment and write OUT/report.md (and its section of `docs`); returns the section."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    settings = replace(settings, recipe=settings.recipe or DEFAULT_RECIPE.get(experiment))
    settings.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    body = EXPERIMENTS[experiment](settings)
    minutes = (time.perf_counter() - start) / 60
    command = "resnetlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else \
        f"resnetlab reproduce {experiment}"
    device = _describe_device(settings.device)
    timing = ("a report of the runs in OUT, nothing trained" if settings.report_only else
              f"{minutes:.1f} min (runs already finished in OUT are reused, not retrained)")
    section = (f"## {experiment}{' (--quick: checks the pipeline, not the science)' if settings.quick else ''}\n\n"
               f"`{command}` on {device}, torch {torch.__version__}: {timing}.\n\n{body}")
    (settings.out / "report.md").write_text(section)
    if docs is not None:
        update_docs(Path(docs), experiment, section, settings.out)
    (settings.out / "report.json").write_text(json.dumps({"experiment": experiment, "minutes": minutes,
                                                          "settings": {**vars(settings), "out": str(settings.out)}},
                                                         indent=2) + "\n")
    return section
