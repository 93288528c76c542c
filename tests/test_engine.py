"""The trainer through its library API: it learns, its schedule is the recipe's, its run folder
is complete, evaluation reproduces the recorded accuracy, divergence stops the run."""

import json
import math

import pytest
import torch

from resnetlab.data import Dataset, Normalize, Split, load_dataset
from resnetlab.engine import TrainingDiverged, fit
from resnetlab.recipes import TrainConfig, lr_at, make_config
from resnetlab.scoring import evaluate
from resnetlab.zoo import create_model


@pytest.fixture(scope="module")
def fashion_subset():
    """2,000 training and 1,000 test images of the real Fashion-MNIST."""
    full = load_dataset("fashion-mnist", download=False)
    return Dataset("fashion-mnist", Split(full.train.images[:2000], full.train.labels[:2000]),
                   Split(full.test.images[:1000], full.test.labels[:1000]), full.classes)


def test_learns_on_a_small_subset(tmp_path, fashion_subset):
    cfg = make_config("fast", model="resnet20", max_steps=100, batch_size=64, eval_batch_size=500, lr=0.05,
                      out=str(tmp_path / "run"), log_every=40)
    result = fit(cfg, dataset=fashion_subset, progress=False)
    assert result.test_acc1 > 70.0  # chance is 10%
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    required = {"epoch", "step", "train_loss", "train_err", "test_loss", "test_acc1", "test_acc5", "lr",
                "elapsed_s", "train_img_per_s"}
    assert all(required <= set(row) for row in rows)
    assert [row["step"] for row in rows] == [31, 62, 93, 100]  # each epoch end, and the last step
    assert rows[-1]["train_err"] < rows[0]["train_err"]
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"metrics.jsonl", "config.json", "last.pt", "best.pt",
                                                              "curves.png"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "resnet20" and config["resolved"]["versions"]["torch"] == torch.__version__
    # best.pt holds the best test accuracy; evaluating it gives exactly the recorded number.
    best = max(rows, key=lambda row: row["test_acc1"])
    assert result.best_acc1 == best["test_acc1"]
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["step"] == best["step"]


def test_paper_cifar_schedule_is_section_4_2():
    cfg = make_config("paper-cifar", model="resnet56")
    total = cfg.total_steps(390)
    assert (cfg.batch_size, cfg.weight_decay, cfg.momentum, total) == (128, 1e-4, 0.9, 64000)
    assert [lr_at(cfg, s, total) for s in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    deep = make_config("paper-cifar", model="resnet110")
    assert lr_at(deep, 0, total) == lr_at(deep, 399, total) == 0.01 and lr_at(deep, 400, total) == 0.1
    assert cfg.normalize == "per-pixel" and cfg.augment == "crop-flip" and cfg.pad == 4


def test_onecycle_warms_up_then_decays_to_zero():
    cfg = make_config("fast", max_steps=1000)
    lrs = [lr_at(cfg, s, 1000) for s in range(1000)]
    peak = lrs.index(max(lrs))
    assert max(lrs) == cfg.lr and peak == round(cfg.warmup_fraction * 1000) - 1
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 0.01 * cfg.lr


@pytest.mark.parametrize("setting, message", [
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"schedule": "linear"}, "schedule must be one of"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"train_sizes": (16, 20), "train_size_until": (0.5,)}, "one --train-size-until fraction per --train-sizes"),
    ({"train_sizes": (16, 20), "train_size_until": (0.6, 0.3)}, "increasing fractions"),
])
def test_absurd_settings_are_named(setting, message):
    with pytest.raises(ValueError, match=message):
        make_config("fast", **setting).validate()
    with pytest.raises(ValueError, match="unknown recipe"):
        make_config("slow")


def test_batch_larger_than_the_dataset(tmp_path, fashion_subset):
    cfg = make_config("fast", batch_size=4096, max_steps=1, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="batch size 4096 is larger than the dataset"):
        fit(cfg, dataset=fashion_subset, progress=False)


def test_a_nan_loss_stops_the_run_with_its_step_and_keeps_the_good_checkpoint(tmp_path, fashion_subset):
    images = fashion_subset.train.images.clone()
    out = tmp_path / "run"
    cfg = make_config("fast", max_steps=60, batch_size=64, out=str(out), save_every=10, log_every=5,
                      precision="fp32", lr=1e-3)
    # Train 20 good steps and keep their checkpoint; then a learning rate of 1e30 makes the
    # weights overflow, and the run must stop without saving them.
    fit(cfg, dataset=fashion_subset, progress=False, stop_after=20)
    good = torch.load(out / "last.pt", weights_only=True)
    assert good["step"] == 20
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    checkpoint["config"]["lr"] = 1e30
    checkpoint["config"]["warmup_fraction"] = 0.0
    torch.save(checkpoint, out / "last.pt")
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at step (2[1-9]|[3-5]\d)"):
        fit(cfg, dataset=fashion_subset, progress=False, resume=True)
    kept = torch.load(out / "last.pt", weights_only=True)
    assert kept["step"] == 20
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert torch.equal(images, fashion_subset.train.images)


def test_existing_out_is_never_overwritten(tmp_path, fashion_subset):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        fit(make_config("fast", max_steps=1, out=str(out)), dataset=fashion_subset, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="no checkpoint"):
        fit(make_config("fast", max_steps=1, out=str(tmp_path / "new")), dataset=fashion_subset, progress=False,
            resume=True)


def test_evaluate_top1_top5_by_hand():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)

    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [0, 9, 1, 2, 3, 4]])
    labels = torch.tensor([0, 0, 2])
    result = evaluate(Fixed(), [(logits.view(3, 6, 1, 1), labels)])
    assert result.acc1 == pytest.approx(100 / 3) and result.acc5 == pytest.approx(200 / 3)
    assert math.isclose(result.loss, torch.nn.functional.cross_entropy(logits, labels).item(), rel_tol=1e-6)
    assert TrainConfig().model == "resnet20"


def test_test_time_views_average_the_logits_of_the_shifted_and_mirrored_images():
    torch.manual_seed(0)
    images, labels = torch.randn(4, 2, 6, 5), torch.tensor([0, 1, 2, 3])
    weight = torch.randn(2 * 6 * 5, 4)

    class Linear(torch.nn.Module):  # a network whose logits tell the views apart
        def forward(self, x):
            assert not torch.is_grad_enabled()  # evaluation keeps no graph
            return x.flatten(1) @ weight

    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")
    views = [padded[:, :, 1 + dy:7 + dy, 1 + dx:6 + dx] for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]
    assert torch.equal(views[2][:, :, :-1], images[:, :, 1:])  # moved up by one pixel, the last row repeated
    views += [view.flip(3) for view in views]
    with torch.no_grad():
        expected = torch.stack([Linear()(view) for view in views]).mean(0)
    result = evaluate(Linear(), [(images, labels)], tta_flip=True, tta_shift=True)
    loss = torch.nn.functional.cross_entropy(expected, labels).item()
    assert math.isclose(result.loss, loss, rel_tol=1e-5)
    single = evaluate(Linear(), [(images, labels)])
    assert not math.isclose(single.loss, loss, rel_tol=1e-3)


def test_compiled_training_follows_the_eager_run(tmp_path, fashion_subset):
    """And the run compiles however many networks this process compiled before: all ResNets
    share one forward, and dynamo runs it eager once its cache holds recompile_limit entries
    (lowered here to 1, and filled by another network)."""
    from torch._dynamo.utils import counters

    runs = {}
    for compile_ in (False, True):
        cfg = make_config("fast", model="resnet20", max_steps=12, batch_size=64, precision="fp64", lr=0.02,
                          compile=compile_, eval_batch_size=500, out=str(tmp_path / f"compile-{compile_}"))
        with torch._dynamo.config.patch(recompile_limit=1):
            if compile_:
                torch.compile(create_model("plain20", num_classes=10, in_chans=1), backend="eager")(
                    torch.zeros(2, 1, 28, 28))
            counters.clear()
            fit(cfg, dataset=fashion_subset, progress=False)
        assert bool(counters["stats"]["unique_graphs"]) is compile_
        checkpoint = torch.load(tmp_path / f"compile-{compile_}" / "last.pt", weights_only=True)
        assert checkpoint["config"]["compile"] is compile_
        runs[compile_] = checkpoint["model"]
    # fp64: fused kernels round differently, and SGD amplifies any rounding difference (in fp32 the
    # two runs drift apart as two eager runs with 1 and 2 threads do); in fp64 they stay together.
    for name, eager in runs[False].items():
        if eager.is_floating_point():
            assert (runs[True][name] - eager).abs().max() <= 1e-9 * eager.abs().max() + 1e-12, name


def test_progressive_resizing_trains_on_smaller_images_first_and_compiles_each_size_once(
        tmp_path, fashion_subset, monkeypatch):
    """--train-sizes 16,20 --train-size-until 0.25,0.5: the network sees 16x16 images for the first
    quarter of the steps, 20x20 for the second, then 28x28; the compiled forward makes one static
    graph per size (no shape-generic recompilation); evaluation stays at full size."""
    from torch._dynamo.utils import counters

    from resnetlab import engine

    seen, real_step = [], engine.train_step
    monkeypatch.setattr(engine, "train_step", lambda model, optimizer, images, *a, **k: (
        seen.append(tuple(images.shape[2:])), real_step(model, optimizer, images, *a, **k))[-1])
    cfg = make_config("fast", model="resnet20", max_steps=16, batch_size=64, eval_batch_size=500, compile=True,
                      train_sizes=(16, 20), train_size_until=(0.25, 0.5), out=str(tmp_path / "run"))
    counters.clear()
    result = fit(cfg, dataset=fashion_subset, progress=False)
    assert seen == [(16, 16)] * 4 + [(20, 20)] * 4 + [(28, 28)] * 8
    assert counters["stats"]["unique_graphs"] == 3
    assert 10.0 < result.test_acc1 <= 100.0  # scored on the full-size test images
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert TrainConfig.from_dict(saved).train_size_until == (0.25, 0.5)


def test_scaling_down_is_pillows_antialiased_bilinear_resize_and_keeps_the_layout():
    import numpy as np
    from PIL import Image

    from resnetlab.data.augment import scale_down

    images = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)
    small = scale_down(images, 20)
    assert small.shape == (2, 3, 20, 20) and small.is_contiguous(memory_format=torch.channels_last)
    for n, c in ((0, 0), (1, 2)):
        pillow = np.asarray(Image.fromarray(images[n, c].numpy(), mode="F").resize((20, 20), Image.BILINEAR))
        assert np.abs(small[n, c].numpy() - pillow).max() < 1e-5
    assert scale_down(images, 28) is images


def test_compile_is_chosen_for_long_runs_where_inductor_can_build(monkeypatch):
    from resnetlab import device as machine

    cpu = torch.device("cpu")
    cfg = TrainConfig()
    monkeypatch.setattr(machine, "compiler_available", lambda device: True)
    assert machine.pick_compile(cfg, cpu, machine.COMPILE_MIN_STEPS)
    assert not machine.pick_compile(cfg, cpu, machine.COMPILE_MIN_STEPS - 1)
    monkeypatch.setattr(machine, "compiler_available", lambda device: False)
    assert not machine.pick_compile(cfg, cpu, 10**6)
    assert machine.pick_compile(TrainConfig(compile=True), cpu, 1)
    assert not machine.pick_compile(TrainConfig(compile=False), cpu, 10**6)


def test_a_checkpoint_of_an_earlier_version_loads_and_resumes(tmp_path, fashion_subset):
    """Earlier versions kept an `optimizer: "sgd"` field in the config; their checkpoints still
    load, evaluate and resume."""
    from resnetlab.checkpoint import load_model

    out = tmp_path / "run"
    cfg = make_config("fast", max_steps=8, batch_size=64, out=str(out), save_every=4, eval_batch_size=500)
    fit(cfg, dataset=fashion_subset, progress=False, stop_after=4)
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    checkpoint["config"]["optimizer"] = "sgd"
    torch.save(checkpoint, out / "last.pt")
    model, meta = load_model(out / "last.pt")
    assert TrainConfig.from_dict(meta["config"]).lr == cfg.lr and meta["step"] == 4
    assert fit(cfg, dataset=fashion_subset, progress=False, resume=True).steps == 8


def test_the_run_length_is_epochs_or_steps():
    assert make_config("paper-cifar", epochs=3).max_steps is None
    assert make_config("paper-cifar").max_steps == 64000
    with pytest.raises(ValueError, match="as epochs or as max_steps, not both"):
        make_config("fast", epochs=3, max_steps=10)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        make_config("fast", data="imagenet")
    with pytest.raises(ValueError, match="unknown model"):
        make_config("fast", model="resnet21")


def test_tensorboard_gets_every_metric_of_metrics_jsonl(tmp_path, fashion_subset):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = make_config("fast", max_steps=6, batch_size=64, eval_every=3, eval_batch_size=500, out=str(out))
    fit(cfg, dataset=fashion_subset, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for key in ("test_acc1", "train_loss", "lr"):
        logged = [(event.step, event.value) for event in events.Scalars(key)]
        assert logged == [(row["step"], pytest.approx(row[key], rel=1e-6)) for row in rows], key


def test_the_weight_average_is_the_ema_of_weights_and_batchnorm_statistics():
    from resnetlab.ema import WeightAverage
    from resnetlab.zoo import create_model

    torch.manual_seed(0)
    network = create_model("resnet20", in_chans=1)
    average = WeightAverage(network, decay=0.9)
    start = {k: v.clone() for k, v in network.state_dict().items()}
    with torch.no_grad():
        for value in network.state_dict().values():
            value.add_(1) if value.is_floating_point() else value.fill_(5)
    average.update(step=100)  # past the warm-up: the decay itself
    for key, value in average.state_dict().items():
        if value.is_floating_point():  # weights, BN scale/shift and running statistics
            assert torch.allclose(value, start[key] + 0.1), key
        else:  # BN's batch counters are copied
            assert torch.equal(value, network.state_dict()[key]), key
    assert average.decay_at(1) == pytest.approx(2 / 11) and average.decay_at(10**6) == 0.9
    assert not average.average.training and not any(p.requires_grad for p in average.average.parameters())


def test_a_run_with_a_weight_average_evaluates_and_saves_the_average(tmp_path, fashion_subset):
    """The checkpoint's `model` is the average (what eval, predict and export read), its
    `training_weights` what resume continues; evaluating last.pt gives the recorded accuracy."""
    from resnetlab.checkpoint import load_model

    out = tmp_path / "run"
    cfg = make_config("fast", model="resnet20", max_steps=40, batch_size=64, eval_batch_size=500, lr=0.05,
                      ema_decay=0.95, out=str(out))
    result = fit(cfg, dataset=fashion_subset, progress=False)
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    assert set(checkpoint["model"]) == set(checkpoint["training_weights"])
    assert not torch.equal(checkpoint["model"]["fc.weight"], checkpoint["training_weights"]["fc.weight"])
    model, meta = load_model(out / "last.pt")
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in model.state_dict().items())
    saved = TrainConfig.from_dict(meta["config"])  # as the run evaluated: its precision and layout
    _, test_loader = fashion_subset.loaders(saved, Normalize.from_state_dict(meta["normalize"]),
                                            device="cpu", channels_last=saved.channels_last)
    model = model.to(memory_format=torch.channels_last if saved.channels_last else torch.contiguous_format)
    scores = evaluate(model, test_loader.batches(0), precision=saved.precision, tta_flip=saved.tta_flip)
    assert scores.acc1 == result.test_acc1
