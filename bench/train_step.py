"""Training-step throughput of one network under each precision/layout/compile setting.

Usage: python bench/train_step.py [--model resnet20] [--side 28] [--in-chans 1] [--steps 15]
Prints img/s of a bare SGD step (forward, loss, backward, update) on a fixed random batch.
"""

import argparse
import time

import torch
import torch.nn.functional as F

import resnetlab


def measure(args, batch: int, channels_last: bool, bf16: bool, compile_: bool) -> float:
    torch.manual_seed(0)
    model = resnetlab.create_model(args.model, in_chans=args.in_chans).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, args.in_chans, args.side, args.side)
    y = torch.randint(0, model.num_classes, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_ else model

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return batch * args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    print(f"{args.model}, {args.in_chans}x{args.side}x{args.side}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| setting | img/s |\n|---|---|")
    for label, batch, cl, bf16, comp in [
        ("fp32, NCHW", 128, False, False, False),
        ("fp32, channels_last", 128, True, False, False),
        ("bf16 autocast, NCHW", 128, False, True, False),
        ("bf16 autocast, channels_last", 128, True, True, False),
        ("bf16, channels_last, batch 512", 512, True, True, False),
        ("bf16, channels_last, torch.compile", 128, True, True, True),
    ]:
        print(f"| {label} | {measure(args, batch, cl, bf16, comp):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
