"""Training configuration and the named recipes.

`TrainConfig` holds every setting of a run; a recipe is a set of defaults for it, and every
field can be overridden (from Python or the CLI). The resolved config is saved as config.json.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

SCHEDULES = ("step", "onecycle", "cosine")
CUSTOM = "custom:"  # the model name of a network given as an nn.Module (resnetlab.train): its class name follows
TENSORS = "tensors"  # the data name of images given as tensors in memory (resnetlab.train)
PRECISIONS = ("auto", "fp32", "bf16", "fp64")  # fp64: for numerical checks (tests), slow
NORMALIZATIONS = ("per-channel", "per-pixel", "pretrained")
GROUPS = ("model", "data", "optimisation", "evaluation", "machine", "run")  # of the command line's flags


def _setting(default, group: str, help: str, choices=None, metavar: str | None = None, **kwargs):
    """A TrainConfig field with what the command line shows for it: its group, its help and,
    where the values are a finite set, its choices (a tuple, or a function that lists them)."""
    metadata = {"group": group, "help": help, "choices": choices, "metavar": metavar}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def _model_names() -> list[str]:
    from .zoo import list_models

    return list_models()


def _datasets() -> tuple[str, ...]:
    from .data import DATASETS

    return DATASETS


def _augments() -> tuple[str, ...]:
    from .data.batches import AUGMENTS

    return AUGMENTS


@dataclass
class TrainConfig:
    model: str = _setting("resnet20", "model", "the network (see `resnetlab models`)", _model_names)
    model_overrides: dict = _setting({}, "model", "shortcut, stride_in_1x1, zero_init_last, drop_path_rate")
    pretrained: str | None = _setting(
        None, "model", "start from these weights: torchvision, timm, a weights file or checkpoint "
        "(.pt/.pth/.bin/.safetensors), or hf-hub:ORG/NAME; the classifier is made fresh for the data's classes",
        metavar="SOURCE")
    freeze_backbone: bool = _setting(
        False, "model", "train the classifier only (a linear probe); the backbone's BatchNorm keeps its statistics")
    data: str = _setting("fashion-mnist", "data", "the dataset", _datasets)
    data_dir: str | None = _setting(None, "data", "where the dataset is (imagefolder: a folder with train/ and val/)",
                                    metavar="DIR")
    val_split: int = _setting(0, "data", "hold out this many training images as the test split (the paper's 45k/5k)")
    augment: str = _setting("crop-flip", "data", "augmentation of in-memory data (image folders use section 3.4's)",
                            _augments)
    pad: int = _setting(4, "data", "pixels of padding before the random crop")
    image_size: int | None = _setting(
        224, "data", "crop size for image folders (None in the finetune recipe: the pretrained weights' size)")
    train_sizes: tuple[int, ...] = _setting(
        (), "data", "progressive resizing: train on the images scaled down to these sizes first (the height; "
        "the width in proportion), each until its fraction of the run in --train-size-until, then at full size",
        metavar="S1,S2")
    train_size_until: tuple[float, ...] = _setting((), "data", "where each of --train-sizes ends, as fractions "
                                                   "of the run", metavar="F1,F2")
    normalize: str = _setting("per-channel", "data", "per-channel statistics, the paper's per-pixel mean image, or "
                              "the pretrained weights' statistics", NORMALIZATIONS)
    # how long: an explicit epochs replaces a recipe's max_steps (make_config)
    epochs: int = _setting(10, "optimisation", "training epochs")
    max_steps: int | None = _setting(None, "optimisation", "training steps (instead of epochs)")
    batch_size: int = _setting(128, "optimisation", "the global batch, over all processes")
    accum_steps: int = _setting(1, "optimisation", "micro-batches per step (gradient accumulation)")
    # SGD with momentum, as in the paper
    lr: float = _setting(0.1, "optimisation", "the peak learning rate")
    momentum: float = _setting(0.9, "optimisation", "SGD momentum")
    nesterov: bool = _setting(False, "optimisation", "Nesterov momentum")
    weight_decay: float = _setting(1e-4, "optimisation", "L2 weight decay")
    label_smoothing: float = _setting(0.0, "optimisation", "label smoothing of the loss")
    ema_decay: float = _setting(0.0, "optimisation", "evaluate and save a moving average of the weights and "
                                "BatchNorm statistics with this decay per step, e.g. 0.999 (0: off)")
    schedule: str = _setting("step", "optimisation", "lr schedule: step (divided by 10 at the milestones), "
                             "onecycle (warm-up, then linear decay) or cosine", SCHEDULES)
    milestones: tuple[int, ...] = _setting((), "optimisation", "steps where the step schedule divides lr by 10")
    warmup_steps: int = _setting(0, "optimisation", "steps of linear warm-up from 0 (or of a constant --warmup-lr)")
    warmup_fraction: float = _setting(0.0, "optimisation", "warm-up as a fraction of the run (if no --warmup-steps)")
    warmup_lr: float | None = _setting(None, "optimisation", "a constant lr during warm-up (section 4.2's 0.01)")
    final_lr_fraction: float = _setting(0.0, "optimisation", "onecycle/cosine: the last step's lr, as a fraction")
    eval_every: int | None = _setting(None, "evaluation", "steps between evaluations (default: each epoch end)")
    eval_batch_size: int = _setting(1000, "evaluation", "batch size of evaluation")
    tta_flip: bool = _setting(False, "evaluation", "also average over the mirrored test image")
    tta_shift: bool = _setting(False, "evaluation", "also average over the test image moved by one pixel up, down, "
                               "left and right (with --tta-flip: 10 views)")
    precision: str = _setting("fp32", "machine", "auto: bf16 where the device computes it natively; fp64 for "
                              "numerical checks", PRECISIONS)
    channels_last: bool | None = _setting(None, "machine", "channels_last memory format (default: on)")
    compile: bool | None = _setting(None, "machine", "torch.compile the training forward (default: for runs of "
                                    "2,000 steps or more, where inductor can build)")
    device: str = _setting("auto", "machine", "auto (cuda where available, else cpu), cpu, cuda or cuda:N",
                           metavar="auto|cpu|cuda")
    sync_bn: bool = _setting(False, "machine", "BatchNorm statistics over the global batch (torchrun)")
    seed: int = _setting(0, "machine", "the seed of the weights, the data order and the augmentation")
    out: str | None = _setting(None, "run", "run folder (default runs/MODEL-DATA-TIME); never overwritten")
    save_every: int = _setting(500, "run", "steps between last.pt saves (also at each epoch end)")
    log_every: int = _setting(50, "run", "steps between progress lines (the loop's only host syncs)")
    recipe: str = _setting("fast", "run", "the defaults every other flag overrides",
                           lambda: tuple(RECIPES))

    def validate(self) -> "TrainConfig":
        """Raise a ValueError naming the first absurd setting; returns self."""
        from .data import DATASETS
        from .data.batches import AUGMENTS
        from .zoo import get_config

        custom = self.model.startswith(CUSTOM)
        if not custom:
            get_config(self.model)  # an unknown name: a ValueError with the close matches
        checks = [
            (self.data in DATASETS or self.data == TENSORS,
             f"unknown dataset {self.data!r}; expected one of {', '.join(DATASETS)}"),
            (not custom or not (self.model_overrides or self.pretrained or self.freeze_backbone),
             "model_overrides, pretrained and freeze_backbone are settings of resnetlab's own networks; "
             "a network given as an nn.Module comes as it is"),
            (self.recipe in RECIPES, f"unknown recipe {self.recipe!r}; expected one of {', '.join(RECIPES)}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.normalize in NORMALIZATIONS,
             f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}"),
            (self.normalize != "pretrained" or self.pretrained is not None,
             "normalize 'pretrained' (the pretrained weights' statistics) needs --pretrained"),
            (not self.freeze_backbone or self.pretrained is not None,
             "--freeze-backbone needs --pretrained: a frozen random backbone learns nothing"),
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
            (self.image_size is None or self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            (all(m > 0 for m in self.milestones), f"milestones must be positive steps, got {self.milestones}"),
            (len(self.train_sizes) == len(self.train_size_until),
             f"give one --train-size-until fraction per --train-sizes size, got {len(self.train_sizes)} sizes "
             f"and {len(self.train_size_until)} fractions"),
            (all(s >= 1 for s in self.train_sizes), f"train_sizes must be >= 1, got {self.train_sizes}"),
            (all(0 <= a < b <= 1 for a, b in zip((0,) + self.train_size_until, self.train_size_until)),
             f"train_size_until must be increasing fractions in (0, 1], got {self.train_size_until}"),
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
        for name in ("milestones", "train_sizes", "train_size_until"):  # JSON has lists
            if name in values:
                values[name] = tuple(values[name])
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


def train_size_at(cfg: TrainConfig, step: int, total_steps: int) -> int | None:
    """The image size (height) of optimizer step `step` under progressive resizing, None for the
    full size: a pure function of the step, like lr_at, so a resumed run needs no new state."""
    for size, until in zip(cfg.train_sizes, cfg.train_size_until):
        if step < round(until * total_steps):
            return size
    return None


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
    small CPU, 18 epochs so that the whole run fits in 15 minutes on 2 cores, evaluating the
    moving average of the weights, which has no mid-run dips (docs/results.md has the
    measurements that chose it)."""
    return dict(
        epochs=18, max_steps=None, batch_size=128, lr=0.2, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="onecycle", warmup_fraction=0.06, final_lr_fraction=0.0,
        label_smoothing=0.1, ema_decay=0.998, augment="crop-flip", pad=4, normalize="per-channel",
        precision="auto", tta_flip=True,
    )


def finetune(_: str = "") -> dict:
    """Fine-tuning pretrained weights (--pretrained): a short warm-up and a cosine decay, a
    fresh classifier, the source's normalisation and image size. lr 0.1 at batch 32 measured
    best on the transfer experiment of docs/results.md (`python examples/transfer.py`)."""
    return dict(
        epochs=10, max_steps=None, batch_size=32, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        schedule="cosine", warmup_fraction=0.05, final_lr_fraction=0.0, label_smoothing=0.1, augment="crop-flip",
        pad=4, normalize="pretrained", image_size=None, precision="auto", tta_flip=False,
    )


RECIPES = {"paper-cifar": paper_cifar, "paper-imagenet": paper_imagenet, "fast": fast, "finetune": finetune}


def make_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """A validated TrainConfig: the recipe's defaults for overrides["model"], then the overrides
    that are not None. The recipe, unless named: "finetune" with `pretrained`, else "fast".

    The run's length: `epochs` given without `max_steps` replaces a recipe's step count (the
    paper's recipes count steps); giving both is an error."""
    recipe = recipe or ("finetune" if overrides.get("pretrained") else "fast")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    values = RECIPES[recipe](overrides.get("model", TrainConfig.model))
    values.update(overrides, **run_length(overrides))
    values["recipe"] = recipe
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}")
    return TrainConfig(**values).validate()


def run_length(given: dict) -> dict:
    """The length settings that `given` asks for: an epochs without max_steps replaces any step
    count (the paper's recipes count steps); both at once is an error."""
    if "epochs" in given and "max_steps" in given:
        raise ValueError("give the run's length as epochs or as max_steps, not both")
    if "epochs" in given:
        return {"epochs": given["epochs"], "max_steps": None}
    return {"max_steps": given["max_steps"]} if "max_steps" in given else {}


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
    length = run_length(given)
    free = {name: given[name] for name in FREE_ON_RESUME if name in given}
    return dataclasses.replace(saved, **free, **length).validate()
