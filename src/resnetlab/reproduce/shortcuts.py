"""Table 3's shortcut options A, B and C on ResNet-20/32 (section 3.3)."""

from __future__ import annotations

from ..measure import markdown
from .report import final_errors, mean_spread, param_count
from .runs import RUN_RECIPES, Run, Settings, run_config, train_all

# Table 3: ResNet-34's ImageNet top-1 error (%, 10-crop) with each option.
TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19}


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
            finals = [final_errors(metrics[f"{model}-{option}-seed{seed}"]) for seed in range(seeds)]
            rows.append([model, option, f"{param_count(model, num_classes=10, shortcut=option):,}",
                         mean_spread([f[0] for f in finals]), mean_spread([f[1] for f in finals]),
                         f"{TABLE3[option]:.2f}"])
    return (f"{epochs} epochs per run ({RUN_RECIPES[settings.recipe]}), {seeds} seed(s); error in % at the end "
            f"of training.\n\n"
            + markdown(["network", "shortcut", "params", "training error", "test error",
                        "Table 3: ResNet-34 on ImageNet, top-1 error"], rows) + "\n")
