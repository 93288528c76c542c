"""Training speed by depth: the CIFAR-family plain nets and ResNets of Figure 6 and Table 6, as
`resnetlab reproduce degradation` trains them on Fashion-MNIST.

Usage: python bench/training_depth.py [--threads 1] [--depths 20,32,44,56,110] [--rounds 5]
                                      [--seconds 2] [--data-dir DIR] [--default-malloc] [--no-compile]
Rows (measured in one run, taking turns; bench/common.py): resnetlab's trainer step
(bench/training.py: bf16 where the machine computes it natively, channels_last, compiled) for
each network at batch 128 with the paper's CIFAR recipe, and a plain fp32 NCHW PyTorch loop of the
deepest ResNet as the baseline. `--threads 1` (the default) is what each of the two runs of
`resnetlab reproduce degradation --jobs 2` gets on a 2-core machine. The last column is the
training compute of one run of the reproduction's 30-epoch schedule (14,040 steps), evaluation
left out.
"""

from __future__ import annotations

import itertools

import torch

import resnetlab
from common import common_arguments, header, interleaved_rates, markdown
from resnetlab.data import load_dataset
from resnetlab.device import resolve_precision, room_for_many_networks
from resnetlab.recipes import make_config
from training import plain_loop, trainer_step

BATCH = 128
RUN_STEPS = 14040  # 30 epochs of 468 steps: the degradation reproduction's schedule


def main() -> None:
    parser = common_arguments(__doc__, seconds=2.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--depths", default="20,32,44,56,110", help="6n+2 depths; plain nets up to 56, as Figure 6")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = header("Training speed by depth", device, args)
    precision = resolve_precision("auto", device)

    dataset = load_dataset("fashion-mnist", args.data_dir)
    depths = sorted(int(d) for d in args.depths.split(","))
    models = [f"plain{d}" for d in depths if d <= 56] + [f"resnet{d}" for d in depths]
    cfg = make_config("paper-cifar", model=models[0], batch_size=BATCH, data=dataset.name)
    normalize = dataset.normalization(per_pixel=cfg.normalize == "per-pixel")
    loader, _ = dataset.loaders(cfg, normalize, device=device, channels_last=False)
    batches = list(itertools.islice(loader.batches(0), 8))
    common = (batches, dataset.num_classes, dataset.image_shape[0], device)
    deepest = f"resnet{depths[-1]}"
    baseline = f"{deepest}, plain loop (fp32, NCHW)"
    runners = {baseline: ("fp32", plain_loop(deepest, *common))}
    for model in models:
        runners[model] = (precision, trainer_step(make_config("paper-cifar", model=model, batch_size=BATCH,
                                                              data=dataset.name),
                                                  *common, precision=precision, channels_last=True,
                                                  compile=not args.no_compile))
    with room_for_many_networks():  # dynamo's cache would run the ninth network eager
        rates = interleaved_rates({label: (step, BATCH) for label, (_, step) in runners.items()}, device,
                                  rounds=args.rounds, seconds=args.seconds)

    rows = []
    for label, rate in rates.items():
        name = label.split(",")[0]
        net = resnetlab.create_model(name, num_classes=dataset.num_classes, in_chans=dataset.image_shape[0])
        flops = 3 * 2 * resnetlab.summary(net, input_size=dataset.image_shape).macs  # backward ~ 2 forwards
        params = sum(p.numel() for p in net.parameters())
        dtype = runners[label][0]
        rows.append([label, f"{params / 1e6:.2f}M", f"{flops / 1e9:.2f}", f"{rate:,.0f}",
                     f"{rate / rates.get('resnet20', rate):.2f}x", f"{rate * flops / 1e9:,.0f}",
                     f"{100 * rate * flops / peak[dtype]:.0f}% ({dtype})",
                     f"{RUN_STEPS * BATCH / rate / 3600:.1f} h"])
    setting = f"{precision}, channels_last{'' if args.no_compile else ', compiled'}"
    print(f"## Trainer step by depth ({setting}; batch {BATCH}, 1x28x28, {torch.get_num_threads()} threads)\n")
    print(markdown(["network", "params", "GFLOP per image (forward + backward)", "img/s", "vs resnet20",
                    "GFLOP/s", "share of matmul peak", "30-epoch run"], rows))
    print(f"\n{deepest}: trainer step / plain fp32 loop: {rates[deepest] / rates[baseline]:.2f}x")


if __name__ == "__main__":
    main()
