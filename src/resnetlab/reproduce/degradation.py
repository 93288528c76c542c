"""Figure 6 and Table 6: plain nets get worse with depth, deeper ResNets better (section 4.2).

One recipe (DEFAULT_RECIPE's or --recipe) for every network, several seeds; the table counts
every finished seed in OUT.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..measure import markdown
from ..runfolder import RunFolder
from .report import final_errors, mean_spread, param_count, reference_cell
from .runs import RUN_RECIPES, Run, Settings, quick_config, run_config, train_all

# Table 6 (CIFAR-10 test error %) and Table 3 (ImageNet top-1 error %, 10-crop) of the paper, and the
# test errors of a popular reproduction of Table 6 (akamaster/pytorch_resnet_cifar10).
TABLE6 = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97, "resnet110": 6.43}
AKAMASTER = {"resnet20": 8.27, "resnet32": 7.37, "resnet44": 6.90, "resnet56": 6.61, "resnet110": 6.32}
# Figure 6 compares plain nets and ResNets of 20..56 layers (plain nets stop at 56 in the paper's
# figure); Table 6 adds ResNet-110. 20 and 56 are the pair the paper's claim rests on.
DEFAULT_DEPTHS = (20, 56)
PLAIN_MAX_DEPTH = 56
DEGRADATION_EPOCHS = 30
# Fashion-MNIST test error (%) of ResNets trained 300 epochs without random erasing, from the
# Random Erasing paper's repository (zhunzhong07/Random-Erasing).
RANDOM_ERASING_FMNIST = {"resnet20": 4.39, "resnet32": 4.16, "resnet56": 4.39}


def degradation(settings: Settings) -> str:
    epochs = settings.epochs or DEGRADATION_EPOCHS
    seeds = settings.seeds or 2
    depths = sorted(settings.depths or DEFAULT_DEPTHS)
    models = [f"plain{d}" for d in depths if d <= PLAIN_MAX_DEPTH] + [f"resnet{d}" for d in depths]
    # Each seed's deepest (longest) runs first: with --jobs the long runs start at once and the
    # short ones fill in beside them, so a sitting ends with fewer deep runs half done. At one
    # depth the ResNet goes before its plain twin: Table 6's rows are the ResNets' alone.
    order = sorted(models, key=lambda model: (-_depth(model), model.startswith("plain")))
    runs = [Run(f"{model}-seed{seed}", run_config(settings, model, seed, epochs), responses=True)
            for seed in range(seeds) for model in order]
    if not settings.report_only:
        train_all(runs, settings)
    # The table is over every finished seed in OUT, so a later call with more depths and one
    # seed keeps the seeds an earlier call trained.
    lengths = {model: _length(runs, model, settings.quick) for model in models}
    finished = {model: _finished_seeds(settings, model, lengths[model]) for model in models}
    rows = []
    for model, curves in finished.items():
        finals = [final_errors(rows_) for rows_ in curves.values()]
        hours = [rows_[-1]["elapsed_s"] / 3600 for rows_ in curves.values()]
        rows.append([model, f"{param_count(model, num_classes=10) / 1e6:.2f}M",
                     mean_spread([f[0] for f in finals]), mean_spread([f[1] for f in finals]), str(len(finals)),
                     reference_cell(TABLE6, model), reference_cell(RANDOM_ERASING_FMNIST, model),
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
    return (quick_config(cfg) if quick else cfg).max_steps


def _finished_seeds(settings: Settings, model: str, max_steps: int) -> dict[int, list[dict]]:
    """seed -> metrics of every run of `model` in OUT that finished `max_steps`."""
    found = {}
    for folder in sorted((settings.out / "runs").glob(f"{model}-seed*")):
        rows = RunFolder(folder).read_metrics()
        seed = folder.name.removeprefix(f"{model}-seed")
        if seed.isdigit() and rows and rows[-1]["step"] == max_steps:
            found[int(seed)] = rows
    return found


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
        return [final_errors(rows)[index] for rows in finished[model].values()]

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
