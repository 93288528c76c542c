"""Training configuration and the named recipes.

`TrainConfig` holds every setting of a run; a recipe is a set of defaults for it, and every
field can be overridden (from Python or the CLI). The resolved config is saved as config.json.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

SCHEDULES = ("step", "onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp64")  # fp64: for numerical checks (tests), slow


@dataclass
class TrainConfig:
    # what to train, on what
    model: str = "resnet20"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_split: int = 0  # >0: hold out this many training images as the test split
    model_overrides: dict = field(default_factory=dict)  # shortcut, stride_in_1x1, ...
    # how long: max_steps wins over epochs when both are set
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128  # the global batch, over all processes
    accum_steps: int = 1
    # optimisation: SGD with momentum, as in the paper
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    schedule: str = "step"
    milestones: tuple[int, ...] = ()  # "step": lr divided by 10 at these steps
    warmup_steps: int = 0  # linear warm-up from 0, or a constant warmup_lr
    warmup_fraction: float = 0.0  # warm-up as a fraction of the run (used when warmup_steps is 0)
    warmup_lr: float | None = None  # a constant lr during warm-up; None: ramp up linearly
    final_lr_fraction: float = 0.0  # onecycle/cosine: the lr at the last step, as a fraction of lr
    # data
    augment: str = "crop-flip"  # in-memory data (data.batches.AUGMENTS); image folders use the paper's (section 3.4)
    pad: int = 4
    image_size: int = 224  # crop size for image folders
    normalize: str = "per-channel"  # or "per-pixel" (the paper's mean image)
    # evaluation
    eval_every: int | None = None  # steps; None: at each epoch end
    eval_batch_size: int = 1000
    tta_flip: bool = False  # also average over the mirrored test image
    # the machine
    precision: str = "fp32"
    channels_last: bool | None = None  # None: decided by the device (device.pick_channels_last)
    compile: bool | None = None  # torch.compile the training forward; None: decided by the run (device.pick_compile)
    device: str = "cpu"
    sync_bn: bool = False
    seed: int = 0
    # the run folder
    out: str | None = None
    save_every: int = 500  # steps between last.pt saves (also at each epoch end)
    log_every: int = 50  # steps between progress updates (the only host syncs)
    recipe: str = "fast"

    def validate(self) -> "TrainConfig":
        """Raise a ValueError naming the first absurd setting; returns self."""
        from .data import DATASETS
        from .data.batches import AUGMENTS
        from .zoo import get_config

        get_config(self.model)  # an unknown name: a ValueError with the close matches
        checks = [
            (self.data in DATASETS, f"unknown dataset {self.data!r}; expected one of {', '.join(DATASETS)}"),
            (self.recipe in RECIPES, f"unknown recipe {self.recipe!r}; expected one of {', '.join(RECIPES)}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.normalize in ("per-channel", "per-pixel"),
             f"normalize must be per-channel or per-pixel, got {self.normalize!r}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (0 <= self.warmup_fraction < 1, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}"),
            (self.warmup_lr is None or self.warmup_lr > 0, f"warmup_lr must be positive, got {self.warmup_lr}"),
            (0 <= self.final_lr_fraction <= 1, f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}"),
            (self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.eval_every is None or self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.val_split >= 0, f"val_split must be >= 0, got {self.val_split}"),
            (self.pad >= 0, f"pad must be >= 0, got {self.pad}"),
            (self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            (all(m > 0 for m in self.milestones), f"milestones must be positive steps, got {self.milestones}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config of a checkpoint or config.json, including those of earlier versions."""
        values = {k: v for k, v in values.items() if k != "resolved"}  # config.json's derived facts
        if values.pop("optimizer", "sgd") != "sgd":  # a field of earlier versions that only allowed "sgd"
            raise ValueError("this run was made with another optimizer than SGD, which resnetlab does not train")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step `step` (0-based): a pure function, so a resumed run
    follows exactly the same schedule."""
    warmup = cfg.warmup_steps or round(cfg.warmup_fraction * total_steps)
    if step < warmup:
        if cfg.warmup_lr is not None:  # the paper's constant 0.01 for ResNet-110 (section 4.2)
            return cfg.warmup_lr
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** sum(step >= m for m in cfg.milestones)
    progress = (step - warmup) / max(total_steps - warmup, 1)
    floor = cfg.lr * cfg.final_lr_fraction
    if cfg.schedule == "cosine":
        return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    # onecycle after its warm-up: a linear decay to the floor.
    return cfg.lr - (cfg.lr - floor) * progress


# --- Named recipes ---------------------------------------------------------------------------

def paper_cifar(depth_hint: str = "resnet20") -> dict:
    """Section 4.2 exactly: batch 128, lr 0.1 / 10 at 32k and 48k, stop at 64k iterations,
    weight decay 1e-4, momentum 0.9, pad-4 crop and flip, per-pixel mean subtracted; for 110
    layers and more, lr 0.01 for the first 400 iterations (until training error < 80%)."""
    recipe = dict(
        batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
        milestones=(32000, 48000), max_steps=64000, augment="crop-flip", pad=4,
        normalize="per-pixel", label_smoothing=0.0, precision="fp32", tta_flip=False,
    )
    depth = "".join(c for c in depth_hint if c.isdigit())
    if depth and int(depth) >= 110:
        recipe.update(warmup_steps=400, warmup_lr=0.01)
    return recipe


def paper_imagenet(_: str = "") -> dict:
    """Section 3.4: SGD batch 256, lr 0.1 divided by 10 when the error plateaus (here at
    epochs 30 and 60 of 90, i.e. the 60e4 iterations of the paper at 1.28M images), weight
    decay 1e-4, momentum 0.9, scale augmentation 256-480, 224 crop, flip, PCA lighting."""
    steps_per_epoch = 1_281_167 // 256
    return dict(
        batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
        milestones=(30 * steps_per_epoch, 60 * steps_per_epoch), epochs=90, max_steps=None,
        normalize="per-channel", precision="fp32", image_size=224, eval_batch_size=100,
    )


def fast(_: str = "") -> dict:
    """The main job's default: a short one-cycle schedule tuned for accuracy per minute on a
    small CPU (docs/results.md has the measurements that chose it)."""
    return dict(
        epochs=15, max_steps=None, batch_size=128, lr=0.2, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="onecycle", warmup_fraction=0.06, final_lr_fraction=0.0,
        label_smoothing=0.1, augment="crop-flip", pad=4, normalize="per-channel",
        precision="auto", tta_flip=True,
    )


RECIPES = {"paper-cifar": paper_cifar, "paper-imagenet": paper_imagenet, "fast": fast}


def make_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """A validated TrainConfig: the recipe's defaults (recipe "fast" unless named) for
    overrides["model"], then the overrides that are not None.

    The run's length: `epochs` given without `max_steps` replaces a recipe's step count (the
    paper's recipes count steps); giving both is an error."""
    recipe = recipe or "fast"
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "max_steps" in overrides:
        raise ValueError("give the run's length as epochs or as max_steps, not both")
    values = RECIPES[recipe](overrides.get("model", TrainConfig.model))
    if "epochs" in overrides:
        values["max_steps"] = None
    values.update(overrides)
    values["recipe"] = recipe
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}")
    return TrainConfig(**values).validate()


# --- Resuming --------------------------------------------------------------------------------

# What a resumed run may change without changing what it computes: where and how often it
# writes, where the data is, which device runs it. Its length may change too: a longer run
# extends it (as timm's --resume with more epochs does).
FREE_ON_RESUME = ("out", "save_every", "log_every", "data_dir", "device")
RUN_LENGTH = ("epochs", "max_steps")
# Settings a run resolves from the machine: "auto"/None in a request matches what it chose.
MACHINE_CHOICES = {"precision": "auto", "channels_last": None, "compile": None}


def resumed_config(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The config a resumed run continues with: its own, with `requested`'s free settings and
    length."""
    return dataclasses.replace(saved, **{name: getattr(requested, name) for name in FREE_ON_RESUME + RUN_LENGTH})


def resume_request(saved: TrainConfig, given: dict) -> TrainConfig:
    """The config to resume `saved` with, from settings given explicitly (the command line's
    flags). A setting that contradicts the run is a ValueError: a resumed run keeps what it
    computes, and changes only what FREE_ON_RESUME and RUN_LENGTH name."""
    given = {k: v for k, v in given.items() if v is not None}
    for name, value in given.items():
        if name in FREE_ON_RESUME + RUN_LENGTH or value == getattr(saved, name, value):
            continue
        if MACHINE_CHOICES.get(name, object()) == value:
            continue
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} {value} contradicts the run being resumed ({name} {getattr(saved, name)!r}); "
                         "a resumed run keeps its settings: only --epochs or --max-steps (to extend it), --out, "
                         "--save-every, --log-every, --data-dir and --device may change")
    if "epochs" in given and "max_steps" in given:
        raise ValueError("give the run's length as epochs or as max_steps, not both")
    length = {}
    if "epochs" in given:
        length = {"epochs": given["epochs"], "max_steps": None}
    elif "max_steps" in given:
        length = {"max_steps": given["max_steps"]}
    free = {name: given[name] for name in FREE_ON_RESUME if name in given}
    return dataclasses.replace(saved, **free, **length).validate()
