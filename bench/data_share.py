"""What share of a training step goes to data loading and augmentation (Fashion-MNIST).

Times, over the same steps of one epoch: (a) the in-memory loader alone (index, crop, flip,
normalise, channels_last), (b) the whole trainer step with that data. Prints both and the share.
Usage: python bench/data_share.py [--steps 100] [--model resnet20] [--precision auto]
"""

import argparse
import time

import torch

from resnetlab.data import load_dataset
from resnetlab.engine import TrainState, make_loaders, make_normalize, make_optimizer, resolve_precision, train_step
from resnetlab.recipes import make_config
from resnetlab.zoo import create_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    cfg = make_config("fast", model=args.model, precision=args.precision)
    device = torch.device("cpu")
    precision = resolve_precision(cfg.precision, device)
    dataset = load_dataset(cfg.data)
    normalize = make_normalize(cfg, dataset)
    train, _ = make_loaders(cfg, dataset, normalize, device, channels_last=True)

    start = time.perf_counter()
    for step, _ in zip(range(args.steps), train.batches(0)):
        pass
    data_s = time.perf_counter() - start

    model = create_model(cfg.model, num_classes=10, in_chans=1).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    state = TrainState()
    batches = train.batches(1)
    for _ in range(5):  # warm-up
        x, y = next(batches)
        train_step(model, optimizer, x, y, state, lr=0.1, label_smoothing=0.1, precision=precision, device=device)
    start = time.perf_counter()
    for _, (x, y) in zip(range(args.steps), batches):
        train_step(model, optimizer, x, y, state, lr=0.1, label_smoothing=0.1, precision=precision, device=device)
    state.loss_sum.item()
    total_s = time.perf_counter() - start
    print(f"{args.model}, batch {cfg.batch_size}, {precision}, channels_last, {args.steps} steps, "
          f"{torch.get_num_threads()} threads")
    print(f"data + augmentation alone: {1000 * data_s / args.steps:.2f} ms/step")
    print(f"trainer step with data:    {1000 * total_s / args.steps:.2f} ms/step "
          f"({cfg.batch_size * args.steps / total_s:.0f} img/s)")
    print(f"data share of a step:      {100 * data_s / total_s:.1f}%")


if __name__ == "__main__":
    main()
