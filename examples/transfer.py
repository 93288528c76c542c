"""Transfer learning on real images, end to end through the `resnetlab` command.

1. Pretrain resnet20 on Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat).
2. Write an image folder of classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) from the real
   test images: a few dozen PNGs per class for training, others for validation.
3. Train on that folder for the same number of steps: fine-tuned from step 1's checkpoint
   (`--pretrained`, the finetune recipe, at several learning rates), as a linear probe
   (`--freeze-backbone`), and from scratch (the fast recipe, and the finetune recipe's settings).

Prints a markdown table of the final validation accuracy of each run (docs/results.md).

    python examples/transfer.py --out runs/transfer          # about 10 minutes on 2 CPU cores
    python examples/transfer.py --out /tmp/transfer --quick  # a pipeline check (the tests run it)
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--lrs", default="0.001,0.003,0.01,0.03,0.1", help="fine-tuning learning rates")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_epochs, args.per_class, args.steps, args.lrs = 1, 8, 6, "0.01"

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
              "--eval-batch-size", 250, "--no-compile",
              "--no-tta-flip"]
    best = source / "best.pt"
    runs = {f"fine-tuned, finetune recipe, lr {lr}": ["--pretrained", best, "--lr", lr] for lr in args.lrs.split(",")}
    runs["linear probe (--freeze-backbone), lr 0.1"] = ["--pretrained", best, "--freeze-backbone", "--lr", "0.1"]
    runs["from scratch, fast recipe (lr 0.2)"] = ["--recipe", "fast", "--image-size", 28]
    runs["from scratch, finetune recipe's settings, lr 0.01"] = ["--recipe", "finetune", "--normalize", "per-channel",
                                                                 "--image-size", 28]
    rows = []
    for index, (label, extra) in enumerate(runs.items()):
        out = args.out / f"run{index}"
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1]) if (out / "last.pt").is_file() else \
            train(*common, *extra, "--out", out)
        rows.append([label, f"{row['test_acc1']:.2f}%", f"{row['train_err']:.2f}%"])
    print(f"Pretrained resnet20 on Fashion-MNIST classes 0-4: {pretrained_acc:.2f}% test accuracy.\n"
          f"Image folder of classes 5-9: {args.per_class} training images per class; every run trains "
          f"{args.steps} steps of batch 32 on it.\n")
    print(markdown(["run", "validation top-1", "training error (last steps)"], rows))


if __name__ == "__main__":
    main()
