"""What limits resnetlab's fastest training step of a Fashion-MNIST network (ResNet-20 unless
--model says otherwise): where a step's time goes, and how fast each convolution of the network
runs forward and backward on its own.

Usage: python bench/training_limits.py [--model resnet20] [--threads N] [--steps 20] [--rounds 5]
                                       [--seconds 0.5] [--data-dir DIR] [--default-malloc]
Part 1 profiles the trainer step of bench/training.py (bf16 autocast, channels_last, compiled:
what `resnetlab train` runs on this machine) with torch.profiler and sorts the time into the
convolutions (oneDNN, forward and backward), inductor's generated kernels (BatchNorm, ReLU,
residual adds, pooling, loss: every elementwise and reduction pass over the activations), the
optimizer and the rest. Part 2 times every distinct convolution of the network at batch 128 on
its own, in bf16 channels_last as the step runs them: forward, input gradient and weight
gradient, with their share of the bf16 matmul peak.
"""

from __future__ import annotations

import collections
import itertools

import torch
import torch._inductor.config

import resnetlab
from common import common_arguments, conv_layers, header, interleaved_rates, markdown
from resnetlab.data import load_dataset
from resnetlab.recipes import make_config
from training import trainer_step

BATCH = 128


def categorize(name: str) -> str:
    if name == "aten::mkldnn_convolution":
        return "conv forward (oneDNN)"
    if name == "aten::convolution_backward":
        return "conv backward (oneDNN)"
    if "cpp_fused" in name:
        return "inductor kernels (BN, ReLU, adds, pooling, loss)"
    if name in ("aten::_fused_sgd_", "aten::linalg_vector_norm", "aten::_foreach_norm", "aten::stack"):
        return "optimizer and gradient norm"
    return "the rest (launches, casts, allocation, Python)"


def step_profile(step, steps: int) -> dict[str, float]:
    """Milliseconds per step in each category, by the ops' self time."""
    from torch.profiler import profile

    for _ in range(3):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    times = collections.Counter()
    for event in prof.key_averages():
        times[categorize(event.key)] += event.self_cpu_time_total / 1e3 / steps
    return dict(times)


def conv_runners(in_channels: int, out_channels: int, kernel: int, stride: int, side: int, out_side: int, device):
    """Forward, input gradient and weight gradient of one conv, bf16 channels_last."""
    def tensor(*shape):
        return torch.randn(*shape, device=device, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    x = tensor(BATCH, in_channels, side, side)  # as the loader lays out a batch
    # as model.to(memory_format=...) lays out a weight: with one input channel, the strides of
    # .contiguous() would be NCHW's (both layouts fit them) and oneDNN would pick a slower path
    weight = torch.randn(out_channels, in_channels, kernel, kernel, device=device, dtype=torch.bfloat16)
    weight = weight.to(memory_format=torch.channels_last)
    grad = tensor(BATCH, out_channels, out_side, out_side)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, [stride] * 2, [kernel // 2] * 2,
                                                           [1, 1], False, [0, 0], 1, mask)
    flops = 2 * BATCH * out_side**2 * out_channels * in_channels * kernel**2
    return {"forward": lambda: torch.nn.functional.conv2d(x, weight, stride=stride, padding=kernel // 2),
            "input gradient": backward([True, False, False]),
            "weight gradient": backward([False, True, False])}, flops


def main() -> None:
    parser = common_arguments(__doc__, seconds=0.5)
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--model", default="resnet20", help="a CIFAR-family network (resnet20, resnet56, plain56 ..)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; `resnetlab reproduce --jobs 2` gives each run half)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type != "cpu":  # the profile's CPU time of a GPU op is its launch, not its run
        parser.error(f"this script profiles the CPU's kernels; on {device.type} run training.py for the speed")
    peak = header(f"What limits the {args.model} training step", device, args)["bf16"]

    dataset = load_dataset("fashion-mnist", args.data_dir)
    cfg = make_config("fast", model=args.model, batch_size=BATCH, data=dataset.name)
    normalize = dataset.normalization(per_pixel=cfg.normalize == "per-pixel")
    loader, _ = dataset.loaders(cfg, normalize, device=device, channels_last=False)
    batches = list(itertools.islice(loader.batches(0), 8))
    torch._inductor.config.cpp.enable_kernel_profile = True  # name inductor's kernels in the profile
    step = trainer_step(cfg, batches, dataset.num_classes, dataset.image_shape[0], device, precision="bf16",
                        channels_last=True, compile=True)
    times = step_profile(step, args.steps)
    total = sum(times.values())
    print(f"## Where a step goes (bf16, channels_last, compiled; batch {BATCH}; torch.profiler, {args.steps} steps)\n")
    by_time = sorted(times.items(), key=lambda kv: -kv[1])
    rows = [[name, f"{ms:.1f}", f"{100 * ms / total:.0f}%"] for name, ms in by_time]
    print(markdown(["part", "ms per step", "share"], rows + [["step (under the profiler)", f"{total:.1f}", "100%"]]))

    model = resnetlab.create_model(args.model, num_classes=dataset.num_classes, in_chans=dataset.image_shape[0])
    print(f"\n## Each convolution on its own (bf16, channels_last, batch {BATCH}; ms per call, "
          f"share of the bf16 matmul peak)\n")
    rows, totals = [], collections.Counter()
    layers = conv_layers(model, dataset.image_shape)
    for layer, count in sorted(layers.items(), key=lambda kv: (-kv[0][4], kv[0])):
        cin, cout, _, stride, side, _ = layer
        runners, flops = conv_runners(*layer, device)
        rates = interleaved_rates({part: (call, 1) for part, call in runners.items()}, device,
                                  rounds=args.rounds, seconds=args.seconds)
        cells = []
        for part, calls_per_second in rates.items():
            # the first conv's input gradient is never needed (the images need no gradient)
            if part == "input gradient" and cin == dataset.image_shape[0]:
                cells.append("not needed")
                continue
            totals[part] += count * 1e3 / calls_per_second
            cells.append(f"{1e3 / calls_per_second:.2f} ({100 * calls_per_second * flops / peak:.0f}%)")
        rows.append([f"{cin}->{cout}, {side}x{side}, stride {stride}", count, *cells])
    rows.append(["all convs of a step", sum(layers.values()), *(f"{totals[part]:.1f}" for part in runners)])
    print(markdown(["conv", "count", *runners], rows))


if __name__ == "__main__":
    main()
