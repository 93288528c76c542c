"""ResNet-50 v1 against v1.5: multiply-adds, params and speed on this machine."""

from __future__ import annotations

import torch

from ..measure import markdown
from ..recipes import make_config
from .runs import Settings


def bottleneck(settings: Settings) -> str:
    """ResNet-50 v1 vs v1.5: multiply-adds and params (224x224), inference and training
    throughput on this machine (measured taking turns, resnetlab.measure)."""
    from ..device import resolve_device, resolve_precision
    from ..engine import TrainState, make_optimizer, train_step
    from ..inference import optimize_for_inference
    from ..measure import interleaved_rates
    from ..summary import summary
    from ..zoo import create_model

    device = resolve_device(settings.device)
    precision = resolve_precision("auto", device)
    side, infer_batch, train_batch = (64, 2, 2) if settings.quick else (224, 16, 32)
    cfg = make_config("fast", model="resnet50")
    runners, costs = {}, {}
    variants = [("v1 (stride on the 1x1, the paper)", True), ("v1.5 (stride on the 3x3, torchvision/timm)", False)]
    for label, v1 in variants:
        model = create_model("resnet50", stride_in_1x1=v1).to(device)
        report = summary(model, input_size=(3, 224, 224))
        costs[label] = (report.macs, report.params)
        x = torch.randn(infer_batch, 3, side, side, device=device)
        optimized = optimize_for_inference(model, dtype="bf16" if precision == "bf16" else "fp32")
        runners[(label, "inference")] = ((lambda m=optimized, x=x: m(x)), infer_batch)
        trained = create_model("resnet50", stride_in_1x1=v1).to(device).train().to(memory_format=torch.channels_last)
        optimizer = make_optimizer(trained, cfg)
        state = TrainState().to(device)
        images = torch.randn(train_batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 1000, (train_batch,), device=device)
        runners[(label, "training")] = ((lambda m=trained, o=optimizer, s=state, x=images, y=labels: train_step(
            m, o, x, y, s, lr=0.01, label_smoothing=0.0, precision=precision, device=device)), train_batch)
    rates = interleaved_rates(runners, device, rounds=1 if settings.quick else 3, seconds=0.1 if settings.quick else 3)
    rows = [[label, f"{macs / 1e9:.3f} G", f"{params:,}", f"{rates[(label, 'inference')]:.1f}",
             f"{rates[(label, 'training')]:.1f}"] for label, (macs, params) in costs.items()]
    return (f"Multiply-adds and params at 224x224 (1000 classes). Throughput at {side}x{side} on {device}, "
            f"{precision}, channels_last: inference of the optimized network (BN folded) at batch {infer_batch}, "
            f"the trainer's step at batch {train_batch}; img/s, median of interleaved rounds.\n\n"
            + markdown(["ResNet-50", "multiply-adds", "params", "inference img/s", "training img/s"], rows) + "\n")
