"""Training throughput: a plain fp32 NCHW PyTorch loop against resnetlab's trainer, step by
step from the plain loop to what `resnetlab train` runs, against the measured matmul peak.

Usage: python bench/training.py [--device cpu] [--rounds 5] [--seconds 2] [--data-dir DIR]
                                [--skip-resnet50] [--no-compile] [--default-malloc]
Rows (measured in one run, taking turns; bench/common.py):
  plain loop        model(x), cross_entropy, zero_grad, backward, SGD step: fp32, NCHW, the
                    batches already normalised in memory (no augmentation: a lower bound on
                    what a plain loop costs)
  trainer step ...  resnetlab.engine.train_step (NaN guard, on-device metrics, fused SGD)
                    with the precision / layout / compile settings named
  whole trainer     the loader (crop, flip, normalise, channels_last) feeding the trainer step,
                    as `resnetlab train` runs it (evaluation and checkpoints excluded)
ResNet-20 trains on Fashion-MNIST (batch 128, 1x28x28); ResNet-50 on random 224x224 images
(batch 32): this machine has no ImageNet, and the speed of a step does not depend on the pixels.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

import resnetlab
from common import common_arguments, header, interleaved_rates, markdown
from resnetlab.data import Dataset, Split, load_dataset
from resnetlab.device import resolve_precision
from resnetlab.engine import TrainState, make_optimizer, train_step
from resnetlab.recipes import make_config

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def synthetic(side: int, count: int, classes: int = 1000) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator),
                  torch.randint(0, classes, (count,), generator=generator))
    return Dataset("synthetic", split, split, [str(i) for i in range(classes)])


def plain_loop(name: str, batches, num_classes: int, in_chans: int, device):
    torch.manual_seed(0)
    model = resnetlab.create_model(name, num_classes=num_classes, in_chans=in_chans).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batches = itertools.cycle([(x.contiguous(), y) for x, y in batches])

    def step():
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def trainer_step(cfg, batches, num_classes: int, in_chans: int, device, *, precision: str, channels_last: bool,
                 compile: bool, loader=None):
    """What fit() runs per step; with `loader`, the batches come from it (data included)."""
    torch.manual_seed(0)
    model = resnetlab.create_model(cfg.model, num_classes=num_classes, in_chans=in_chans).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)
    forward = torch.compile(model) if compile else model
    state = TrainState().to(device)
    if loader is not None:
        source = (batch for epoch in itertools.count() for batch in loader.batches(epoch))
    else:
        source = itertools.cycle([(x.contiguous(memory_format=memory_format), y) for x, y in batches])

    def step():
        x, y = next(source)
        train_step(forward, optimizer, x, y, state, lr=0.01, label_smoothing=cfg.label_smoothing,
                   precision=precision, device=device)
    return step


def table(name: str, dataset: Dataset, batch_size: int, device, args, peak) -> None:
    cfg = make_config("fast", model=name, batch_size=batch_size)
    precision = resolve_precision("auto", device)
    num_classes, in_chans = dataset.num_classes, dataset.image_shape[0]
    normalize = dataset.normalization(per_pixel=cfg.normalize == "per-pixel")
    train, _ = dataset.loaders(cfg, normalize, device=device, channels_last=True)
    plain_batches, _ = dataset.loaders(cfg, normalize, device=device, channels_last=False)
    batches = list(itertools.islice(plain_batches.batches(0), 8))
    common = (batches, num_classes, in_chans, device)
    compile = not args.no_compile
    fastest = f"trainer step, {precision}, channels_last{', compiled' if compile else ''}"
    whole = f"whole trainer ({precision}, channels_last{', compiled' if compile else ''}, data included)"
    runners = {
        "plain loop (fp32, NCHW)": ("fp32", plain_loop(name, *common)),
        "trainer step, fp32, NCHW": ("fp32", trainer_step(cfg, *common, precision="fp32", channels_last=False,
                                                          compile=False)),
        "trainer step, fp32, channels_last": ("fp32", trainer_step(cfg, *common, precision="fp32", channels_last=True,
                                                                   compile=False)),
        f"trainer step, {precision}, channels_last": (precision, trainer_step(cfg, *common, precision=precision,
                                                                              channels_last=True, compile=False)),
        fastest: (precision, trainer_step(cfg, *common, precision=precision, channels_last=True, compile=compile)),
        whole: (precision, trainer_step(cfg, *common, precision=precision, channels_last=True, compile=compile,
                                        loader=train)),
    }
    rates = interleaved_rates({label: (step, batch_size) for label, (_, step) in runners.items()}, device,
                              rounds=args.rounds, seconds=args.seconds)
    model = resnetlab.create_model(name, num_classes=num_classes, in_chans=in_chans)
    flops = 3 * 2 * resnetlab.summary(model, input_size=dataset.image_shape).macs  # backward ~ 2 forwards
    base = rates["plain loop (fp32, NCHW)"]
    rows = [[label, f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}", f"{rate / base:.2f}x",
             f"{rate * flops / 1e9:,.0f}", f"{100 * rate * flops / peak[runners[label][0]]:.0f}% ({runners[label][0]})"]
            for label, rate in rates.items()]
    side = dataset.image_shape[1]
    print(f"## {name}, batch {batch_size}, {in_chans}x{side}x{side} ({flops / 1e9:.2f} GFLOP per image, "
          f"forward + backward)\n")
    print(markdown(["loop", "img/s", "vs plain loop", "GFLOP/s", "share of matmul peak"], rows))
    print(f"\nwhole trainer / its bare step: {100 * rates[whole] / rates[fastest]:.0f}%\n", flush=True)


def main() -> None:
    parser = common_arguments(__doc__, seconds=2.0)
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (compiling takes minutes)")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = header("Training", device, args)
    table("resnet20", load_dataset("fashion-mnist", args.data_dir), 128, device, args, peak)
    if not args.skip_resnet50:
        table("resnet50", synthetic(224, 64), 32, device, args, peak)


if __name__ == "__main__":
    main()
