"""Transfer learning on real images, end to end through the `resnetlab` command.

1. Pretrain resnet20 on Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat).
2. Write an image folder of classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) from the real
   test images: a few dozen PNGs per class for training, others for validation.
3. Train on that folder for the same number of steps and with the same recipe (finetune), at
   several learning rates: fine-tuned from step 1's checkpoint (`--pretrained`), as a linear
   probe (`--freeze-backbone`), and from scratch.

Prints a markdown table of the final validation accuracy of each run (docs/results.md).

    python examples/transfer.py --out runs/transfer          # about 10 minutes on 2 CPU cores
    python examples/transfer.py --out /tmp/transfer --quick  # a pipeline check (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from resnetlab.data import Dataset, Split, load_dataset
from resnetlab.engine import fit
from resnetlab.measure import markdown
from resnetlab.recipes import make_config


def subset(split: Split, classes: range, limit: int | None = None) -> Split:
    """The images of `classes`, relabelled from 0, at most `limit` per class (the first ones)."""
    keep = torch.cat([(split.labels == c).nonzero().flatten()[:limit] for c in classes]).sort().values
    return Split(split.images[keep], split.labels[keep] - classes.start)


def split_per_class(split: Split, train: int, val: int) -> tuple[Split, Split]:
    """Disjoint random parts of each class: `train` images for training, `val` for validation."""
    generator = torch.Generator().manual_seed(0)
    parts = {"train": [], "val": []}
    for label in split.labels.unique().tolist():
        indices = (split.labels == label).nonzero().flatten()
        indices = indices[torch.randperm(len(indices), generator=generator)]
        parts["train"].append(indices[:train])
        parts["val"].append(indices[train:train + val])
    return tuple(Split(split.images[torch.cat(p)], split.labels[torch.cat(p)]) for p in parts.values())


def write_folder(root: Path, split: Split, names: list[str]) -> None:
    for index, (image, label) in enumerate(zip(split.images, split.labels.tolist())):
        folder = root / names[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{index:05d}.png")


def train(*args) -> dict:
    """One `resnetlab train` run; its last metrics row."""
    out = Path(args[args.index("--out") + 1])
    result = subprocess.run([sys.executable, "-m", "resnetlab", "train", *map(str, args), "--quiet"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"resnetlab train {' '.join(map(str, args))} failed:\n{result.stderr}")
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline, not the numbers")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=40, help="training images per class in the folder")
    parser.add_argument("--steps", type=int, default=100, help="training steps on the folder, for every run")
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1,0.3", help="learning rates")
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell (the classifier's init, the data order)")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_epochs, args.per_class, args.steps, args.lrs, args.seeds = 1, 8, 6, "0.1", 1

    fashion = load_dataset("fashion-mnist")
    first, second = range(0, 5), range(5, 10)
    pretrain = Dataset("fashion-mnist", subset(fashion.train, first, 600 if args.quick else None),
                       subset(fashion.test, first, 100 if args.quick else None), fashion.classes[:5])
    source = args.out / "pretrain"
    if not (source / "best.pt").is_file():
        cfg = make_config("fast", epochs=args.pretrain_epochs, out=str(source), compile=False if args.quick else None)
        fit(cfg, dataset=pretrain, progress=False)
    pretrained_acc = json.loads((source / "metrics.jsonl").read_text().splitlines()[-1])["test_acc1"]

    folder = args.out / "folder"
    if not folder.is_dir():
        train_split, val_split = split_per_class(subset(fashion.test, second), args.per_class,
                                                 50 if args.quick else 500)
        write_folder(folder / "train", train_split, fashion.classes[5:])
        write_folder(folder / "val", val_split, fashion.classes[5:])

    common = ["--data", "imagefolder", "--data-dir", folder, "--max-steps", args.steps, "--batch-size", 32,
              "--eval-batch-size", 250, "--no-compile", "--no-tta-flip", "--recipe", "finetune"]
    best = source / "best.pt"
    scratch = ["--normalize", "per-channel", "--image-size", 28]  # what --pretrained would have given
    rows = []
    for lr in args.lrs.split(","):
        row = [f"{lr}"]
        for name, extra in [("fine-tuned", ["--pretrained", best]), ("probe", ["--pretrained", best,
                                                                                "--freeze-backbone"]),
                            ("scratch", scratch)]:
            accuracies = []
            for seed in range(args.seeds):
                out = args.out / "runs" / f"{name}-lr{lr}-seed{seed}"  # finished runs are reused
                done = (out / "last.pt").is_file()
                last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1]) if done else \
                    train(*common, *extra, "--lr", lr, "--seed", seed, "--out", out)
                accuracies.append(last["test_acc1"])
            row.append(f"{statistics.mean(accuracies):.2f}" + (f" ({min(accuracies):.2f}-{max(accuracies):.2f})"
                                                               if len(accuracies) > 1 else ""))
        rows.append(row)
    print(f"Pretrained resnet20 on Fashion-MNIST classes 0-4: {pretrained_acc:.2f}% test accuracy.\n"
          f"Image folder of classes 5-9: {args.per_class} training images per class; every run trains "
          f"{args.steps} steps of batch 32 on it with the finetune recipe (cosine, 5% warm-up) at the lr of its row; "
          f"validation top-1 in %, mean (min-max) over {args.seeds} seed(s).\n")
    print(markdown(["lr", "fine-tuned (--pretrained)", "linear probe (--freeze-backbone)", "from scratch"], rows))


if __name__ == "__main__":
    main()
