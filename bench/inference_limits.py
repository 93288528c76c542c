"""What limits resnetlab's fastest inference: the time of every distinct convolution inside the
optimized, compiled network (torch.profiler), against the matmul peak and against a matmul of
the same shape.

Usage: python bench/inference_limits.py [--model resnet50] [--batch 16] [--dtype bf16]
                                        [--rounds 5] [--seconds 1] [--calls 10]
                                        [--default-malloc]
The network runs as `optimize_for_inference(model, dtype=..., compile=True)` makes it: BN
folded, channels_last, weights frozen so that oneDNN pre-packs them and fuses each conv's bias,
ReLU and residual add. Next to each conv, a matmul of its im2col shape (rows = batch x output
pixels, depth = in_channels x kernel area, columns = out_channels): where that matmul is as
slow as the conv, the limit is the matrix engine's efficiency at that shape, not the
convolution algorithm.
"""

from __future__ import annotations

import collections

import torch

import resnetlab
from common import common_arguments, conv_layers, header, interleaved_rates, markdown
from resnetlab.inference import DTYPES


def conv_times(network, images: torch.Tensor, calls: int) -> tuple[dict[tuple, list], float]:
    """Per distinct conv inside `network`: [ms per batch in all its calls, calls per batch];
    and the whole batch's ms, both under the profiler. oneDNN's fused convs name their input
    and weight by shape: the first two 4-d shapes, after the residual for the in-place add."""
    from torch.profiler import profile

    with torch.no_grad():
        network(images)
        with profile(record_shapes=True) as prof:
            for _ in range(calls):
                network(images)
    convs, total = collections.defaultdict(lambda: [0.0, 0]), 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        total += event.self_cpu_time_total / 1e3 / calls
        if "convolution" not in event.key:
            continue
        shapes = [shape for shape in event.input_shapes if len(shape) == 4]
        x, weight = shapes[1:3] if event.key.endswith("_") else shapes[:2]  # in place: (residual, x, w)
        entry = convs[(x[1], weight[0], weight[2], x[2])]
        entry[0] += event.self_cpu_time_total / 1e3 / calls
        entry[1] += event.count // calls
    return dict(convs), total


def same_shape_matmul(layer, batch: int, dtype: torch.dtype, device):
    in_channels, out_channels, kernel, _, _, out_side = layer
    rows, depth = batch * out_side**2, in_channels * kernel**2
    a = torch.randn(rows, depth, device=device, dtype=dtype)
    b = torch.randn(depth, out_channels, device=device, dtype=dtype)
    return (lambda: a @ b), 2 * rows * depth * out_channels


def main() -> None:
    parser = common_arguments(__doc__, seconds=1.0)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))  # the measured peaks
    parser.add_argument("--calls", type=int, default=10, help="profiled batches")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type != "cpu":  # the profile's CPU time of a GPU op is its launch, not its run
        parser.error(f"this script profiles the CPU's kernels; on {device.type} run inference.py for the speed")
    peak = header(f"What limits {args.model} inference", device, args)[args.dtype]
    dtype = DTYPES[args.dtype]

    model = resnetlab.create_model(args.model).to(device).eval()
    network = resnetlab.optimize_for_inference(model, dtype=dtype, compile=True)
    images = torch.randn(args.batch, 3, 224, 224, device=device)
    flops = 2 * resnetlab.summary(model, input_size=(3, 224, 224)).macs
    with torch.no_grad():
        whole = interleaved_rates({"network": (lambda: network(images), args.batch)}, device,
                                  rounds=args.rounds, seconds=args.seconds)["network"]
    network_ms = 1e3 * args.batch / whole
    print(f"## {args.model}, batch {args.batch}, {args.dtype}, optimized and compiled\n")
    print(f"{whole:,.1f} img/s, {network_ms:.1f} ms per batch, {whole * flops / 1e9:,.0f} GFLOP/s: "
          f"{100 * whole * flops / peak:.0f}% of the {args.dtype} matmul peak\n")

    convs, profiled_ms = conv_times(network, images, args.calls)
    # the profile names a conv by its input and weight: find its stride and output in the network
    layers = {}
    for layer in conv_layers(model, (3, 224, 224)):
        in_channels, out_channels, kernel, _, side, _ = layer
        layers[in_channels, out_channels, kernel, side] = layer
    rows, conv_ms = [], 0.0
    for shape, (ms, count) in sorted(convs.items(), key=lambda kv: (-kv[0][3], kv[0])):
        layer = layers[shape]
        matmul, conv_flops = same_shape_matmul(layer, args.batch, dtype, device)
        matmul_rate = interleaved_rates({"matmul": (matmul, conv_flops)}, device, rounds=3, seconds=0.3)["matmul"]
        conv_rate = conv_flops * count / (ms / 1e3)
        conv_ms += ms
        in_channels, out_channels, kernel, stride, side, _ = layer
        rows.append([f"{in_channels}->{out_channels}, {kernel}x{kernel}/{stride}, {side}x{side}", count,
                     f"{ms / count:.2f}", f"{conv_rate / 1e12:.2f} ({100 * conv_rate / peak:.0f}%)",
                     f"{matmul_rate / 1e12:.2f} ({100 * matmul_rate / peak:.0f}%)"])
    print(f"Inside the network (torch.profiler, {args.calls} batches: {profiled_ms:.1f} ms per batch):\n")
    print(markdown(["conv (input side)", "count", "ms per call", "TFLOP/s (share of peak)",
                    "same-shape matmul TFLOP/s"], rows))
    print(f"\nconvs: {conv_ms:.1f} ms of {profiled_ms:.1f} ms per batch; the rest is the max pool, the "
          f"average pool, the input's cast and layout, the classifier and the compiled graph's wrapper")


if __name__ == "__main__":
    main()
