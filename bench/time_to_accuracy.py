"""Time to 93%, 94% and 95% Fashion-MNIST test accuracy of the main job (`resnetlab train`), and
its steadiness: the largest drop of the test accuracy below the best so far, over the evaluations
after the first quarter of the run (a collapse mid-run shows here).

Usage: python bench/time_to_accuracy.py [RUN_FOLDER ...] [-- TRAIN FLAGS]
With no run folder, runs the main job first (`resnetlab train --out runs/time-to-accuracy-TIME`,
5-15 minutes on 2 cores) and reports it together with the wall time of the whole process.
The times are the run's own clock at each evaluation (metrics.jsonl `elapsed_s`: set-up,
training, evaluation and checkpoints included; process start-up and imports not).

Several folders (runs made on the same machine, e.g. two recipes): a second table gives how many
times faster each run reached each accuracy than the first folder's run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from common import markdown

TARGETS = (93.0, 94.0, 95.0)


def reached(rows: list[dict], target: float) -> dict | None:
    """The first evaluation at `target` or above."""
    return next((row for row in rows if row["test_acc1"] >= target), None)


def first_reaching(rows: list[dict], target: float) -> str:
    row = reached(rows, target)
    return f"{row['elapsed_s']:.0f} s (epoch {row['epoch']})" if row else "not reached"


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]


def speedups(folders: list[Path]) -> list:
    """Per run and target: the first run's time over this run's time ("-" where either missed it)."""
    first = metrics(folders[0])
    table = []
    for folder in folders[1:]:
        rows, cells = metrics(folder), []
        for target in TARGETS:
            base, this = reached(first, target), reached(rows, target)
            cells.append(f"{base['elapsed_s'] / this['elapsed_s']:.2f}x" if base and this else "-")
        table.append([str(folder), *cells])
    return table


def largest_drop(rows: list[dict]) -> float:
    """Points below the best accuracy so far, at worst, over the evaluations after the first quarter."""
    quarter = rows[-1]["step"] / 4
    best, drop = float("-inf"), 0.0
    for row in rows:
        best = max(best, row["test_acc1"])
        if row["step"] > quarter:
            drop = max(drop, best - row["test_acc1"])
    return drop


def report(folder: Path, wall_s: float | None = None) -> list:
    rows = metrics(folder)
    config = json.loads((folder / "config.json").read_text())
    resolved = config["resolved"]
    sizes = "".join(f", {size}px to {until:.0%}" for size, until in
                    zip(config.get("train_sizes", ()), config.get("train_size_until", ())))
    setting = (f"{config['model']}, {config['recipe']}, {config['epochs']} epochs, {config['augment']}{sizes}, "
               f"{resolved['precision']}"
               f"{', channels_last' if resolved['channels_last'] else ''}"
               f"{', compiled' if resolved.get('compile') else ''}, {config['device']}")
    final = rows[-1]
    return [str(folder), setting, *(first_reaching(rows, t) for t in TARGETS),
            f"{final['test_acc1']:.2f}% at {final['elapsed_s']:.0f} s", f"{largest_drop(rows):.2f}",
            f"{wall_s:.0f} s" if wall_s is not None else "-"]


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    folders = [Path(a) for a in (args[:args.index("--")] if "--" in args else args)]
    results = []
    if not folders:
        folder = Path("runs") / time.strftime("time-to-accuracy-%Y%m%d-%H%M%S")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "resnetlab", "train", "--out", str(folder), *extra], check=True)
        results.append(report(folder, time.perf_counter() - start))
    results += [report(folder) for folder in folders]
    print(markdown(["run", "setting", *(f"to {t:.0f}%" for t in TARGETS), "final", "largest drop (points)",
                    "whole process"], results))
    if len(folders) > 1:
        print(f"\ntimes faster than {folders[0]}:\n")
        print(markdown(["run", *(f"to {t:.0f}%" for t in TARGETS)], speedups(folders)))


if __name__ == "__main__":
    main()
