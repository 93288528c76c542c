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


def plot_confusion(confusion, classes: list[str], path: str | Path, title: str = "") -> None:
    """The confusion matrix as a picture: rows the true class, columns the predicted one, each
    row as fractions of that class's images (so rare classes read like common ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion.double()
    fractions = counts / counts.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size), dpi=120)
    image = axis.imshow(fractions.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    axis.set_xticks(ticks, classes, rotation=60, ha="right", fontsize=7)
    axis.set_yticks(ticks, classes, fontsize=7)
    if len(classes) <= 20:  # the counts themselves, where they fit
        for row in ticks:
            for column in ticks:
                axis.text(column, row, int(counts[row, column]), ha="center", va="center", fontsize=6,
                          color="white" if fractions[row, column] > 0.5 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title or "confusion matrix")
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of the true class")
    figure.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
