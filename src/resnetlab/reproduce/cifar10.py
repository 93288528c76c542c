"""Section 4.2's recipe exactly on CIFAR-10, ResNet-20..110 (Table 6)."""

from __future__ import annotations

from dataclasses import replace

from ..measure import markdown
from ..recipes import make_config
from .degradation import AKAMASTER, TABLE6
from .report import final_errors, mean_spread, param_count
from .runs import Run, Settings, run_config, train_all


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
        finals = [final_errors(metrics[f"{model}-seed{seed}"]) for seed in range(seeds)]
        rows.append([model, f"{param_count(model) / 1e6:.2f}M", mean_spread([f[1] for f in finals]),
                     f"{TABLE6[model]:.2f}", f"{AKAMASTER[model]:.2f}"])
    schedule = f"{settings.epochs} epochs" if settings.epochs else "64k iterations (the paper's schedule)"
    return (f"{schedule}, {seeds} seed(s); test error in %, single view, at the end of training.\n\n"
            + markdown(["network", "params", "test error", "Table 6", "akamaster reproduction"], rows) + "\n")
