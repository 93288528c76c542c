"""curves.png: error against iterations as in the paper's Figures 4 and 6 (training error
dashed, test error solid)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(metrics: list[dict], path: str | Path, title: str | None = None) -> None:
    if not metrics:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in metrics]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    axis.plot(steps, [row["train_err"] for row in metrics], "--", color="C0", label="training error")
    axis.plot(steps, [100.0 - row["test_acc1"] for row in metrics], "-", color="C0", label="test error")
    axis.set_xlabel("iterations")
    axis.set_ylabel("error (%)")
    axis.set_title(title or f"final test error {100.0 - metrics[-1]['test_acc1']:.2f}%")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
