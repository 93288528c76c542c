"""Fine-tuning from pretrained weights: every source (a resnetlab checkpoint, an official
release, the Hugging Face hub) gives the backbone and a fresh classifier; the finetune recipe
takes the source's statistics and image size; a frozen backbone does not move."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import resnetlab
from resnetlab.data import Dataset, Split, load_dataset
from resnetlab.engine import build_model, fit
from resnetlab.recipes import make_config


@pytest.fixture(scope="module")
def fashion_subset():
    full = load_dataset("fashion-mnist", download=False)
    return Dataset("fashion-mnist", Split(full.train.images[:1024], full.train.labels[:1024]),
                   Split(full.test.images[:500], full.test.labels[:500]), full.classes)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, fashion_subset):
    """A briefly trained resnet20, the weights every test starts from."""
    out = tmp_path_factory.mktemp("source") / "run"
    fit(make_config("fast", max_steps=8, batch_size=64, eval_batch_size=500, out=str(out), precision="fp32"),
        dataset=fashion_subset, progress=False)
    return out


def five_classes(dataset: Dataset) -> Dataset:
    """Classes 5-9 of the subset, relabelled 0-4: a new task for the same images' domain."""
    def split(part: Split) -> Split:
        keep = part.labels >= 5
        return Split(part.images[keep], part.labels[keep] - 5)
    return Dataset("fashion-mnist", split(dataset.train), split(dataset.test), dataset.classes[5:])


def test_the_backbone_comes_from_the_checkpoint_and_the_classifier_is_fresh(source_run, fashion_subset):
    source = torch.load(source_run / "last.pt", weights_only=True)["model"]
    cfg = make_config(pretrained=str(source_run / "last.pt"), max_steps=1)
    for dataset in (fashion_subset, five_classes(fashion_subset)):  # the same and another class count
        model = build_model(cfg, dataset, torch.device("cpu"), pretrained=cfg.pretrained)
        state = model.state_dict()
        for key, value in source.items():
            if key.startswith("fc."):
                assert state[key].shape[0] == dataset.num_classes and not torch.equal(state[key][:5], value[:5])
            else:
                assert torch.equal(state[key], value), key


def test_pretrained_chooses_the_finetune_recipe_with_the_sources_statistics(tmp_path, source_run, fashion_subset):
    cfg = make_config(pretrained=str(source_run / "last.pt"), max_steps=4, out=str(tmp_path / "ft"),
                      eval_batch_size=500)
    assert cfg.recipe == "finetune" and cfg.normalize == "pretrained" and cfg.image_size is None
    assert make_config("fast", pretrained="torchvision").recipe == "fast"  # an explicit recipe wins
    fit(cfg, dataset=five_classes(fashion_subset), progress=False)
    checkpoint = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    source = torch.load(source_run / "last.pt", weights_only=True)
    assert torch.equal(checkpoint["meta"]["normalize"]["mean"], source["meta"]["normalize"]["mean"])
    assert checkpoint["meta"]["classes"] == fashion_subset.classes[5:]
    assert checkpoint["config"]["image_size"] == 28  # the source's image size


def test_a_frozen_backbone_does_not_move(tmp_path, source_run, fashion_subset):
    cfg = make_config(pretrained=str(source_run / "last.pt"), freeze_backbone=True, max_steps=6, batch_size=64,
                      out=str(tmp_path / "probe"), eval_batch_size=500, lr=0.1)
    fit(cfg, dataset=five_classes(fashion_subset), progress=False)
    source = torch.load(source_run / "last.pt", weights_only=True)["model"]
    probed = torch.load(tmp_path / "probe" / "last.pt", weights_only=True)["model"]
    moved = [key for key in source if not key.startswith("fc.") and not torch.equal(source[key], probed[key])]
    assert moved == []  # weights and BatchNorm statistics alike
    fresh = build_model(cfg, five_classes(fashion_subset), torch.device("cpu"), pretrained=cfg.pretrained)
    assert not torch.equal(fresh.state_dict()["fc.weight"], probed["fc.weight"])  # the classifier learned


def test_the_official_weights_fine_tune_a_grey_dataset(tmp_path, monkeypatch):
    """torchvision's RGB ResNet-18 (published on a local file:// server) starts a run on
    1-channel images: conv1 is summed over RGB, the statistics are ImageNet's, averaged."""
    import hashlib

    import torchvision

    from resnetlab import weights

    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    staging = tmp_path / "staging.pth"
    torch.save(tv.state_dict(), staging)
    published = tmp_path / "server" / f"resnet18-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    published.parent.mkdir()
    staging.rename(published)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setitem(weights.OFFICIAL_WEIGHTS["torchvision"], "resnet18", published.as_uri())
    images = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
    dataset = Dataset("mnist", Split(images, torch.arange(16) % 4), Split(images, torch.arange(16) % 4), list("abcd"))
    cfg = make_config(model="resnet18", pretrained="torchvision", max_steps=2, batch_size=8, eval_batch_size=16,
                      out=str(tmp_path / "run"), precision="fp32")
    fit(cfg, dataset=dataset, progress=False)
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["meta"]["normalize"]["mean"].flatten().tolist() == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    model = build_model(cfg, dataset, torch.device("cpu"), pretrained="torchvision")
    assert torch.allclose(model.conv1.weight, tv.conv1.weight.sum(1, keepdim=True))


def test_hf_hub_weights_come_from_its_cache_offline(tmp_path):
    """A Hugging Face cache the test fills itself, read with HF_HUB_OFFLINE=1: nothing is
    downloaded."""
    model = resnetlab.create_model("resnet20")
    snapshot = tmp_path / "hub" / "models--someone--resnet20-fmnist" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    (tmp_path / "hub" / "models--someone--resnet20-fmnist" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--resnet20-fmnist" / "refs" / "main").write_text("0" * 40)
    script = (
        "import sys, torch, resnetlab\n"
        "m = resnetlab.create_model('resnet20', pretrained='hf-hub:someone/resnet20-fmnist')\n"
        "print(all(torch.equal(v, torch.load(sys.argv[1], weights_only=True)[k]) for k, v in m.state_dict().items()))\n"
        "try:\n"
        "    resnetlab.create_model('resnet20', pretrained='hf-hub:someone/absent')\n"
        "except OSError as error:\n"
        "    print(error)\n"
    )
    torch.save(model.state_dict(), tmp_path / "expected.pt")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "expected.pt")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    same, missing = result.stdout.strip().splitlines()
    assert same == "True"
    assert "hf-hub:someone/absent: model.safetensors is not in the Hugging Face cache" in missing


def cli(*args):
    return subprocess.run([sys.executable, "-m", "resnetlab", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["train", "--freeze-backbone"], "--freeze-backbone needs --pretrained"),
    (["train", "--normalize", "pretrained"], "needs --pretrained"),
    (["train", "--pretrained", "hf-hub:only-a-name", "--max-steps", "1"], "expected hf-hub:ORG/NAME"),
    (["train", "--device", "tpu"], "device must be auto, cpu or cuda"),
])
def test_finetune_usage_errors(args, message, tmp_path):
    result = cli(*args, "--out", tmp_path / "run")
    assert result.returncode in (1, 2), result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_every_train_flag_has_help_and_the_finite_ones_list_their_choices():
    from resnetlab.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = [action for action in train._actions if action.option_strings and action.dest != "help"]
    assert all(action.help for action in flags), [a.dest for a in flags if not a.help]
    choices = {action.dest: action.choices for action in flags}
    helps = {action.dest: action.help for action in flags}
    # model and data list their choices in the help; the library's error names the close matches
    assert "resnet56" in helps["model"] and "imagefolder" in helps["data"] and "finetune" in choices["recipe"]
    assert set(choices["schedule"]) == {"step", "onecycle", "cosine"} and "crop-flip" in choices["augment"]
    assert [group.title for group in train._action_groups][2:] == ["model", "data", "optimisation", "evaluation",
                                                                   "machine", "run"]
    assert json.loads(json.dumps(choices["normalize"])) == ["per-channel", "per-pixel", "pretrained"]


def test_the_transfer_example_runs_end_to_end(tmp_path):
    """examples/transfer.py --quick: pretrain on classes 0-4, write an image folder of classes
    5-9 from the real test images, fine-tune, probe and train from scratch on it (the pipeline;
    docs/results.md has the full run's numbers)."""
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "transfer.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--quick"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| [\d.]+ \|", line)]
    assert len(rows) == 1 and re.fullmatch(r"\| 0\.1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", rows[0])
    assert sorted(p.name for p in (tmp_path / "folder" / "train").iterdir()) == ["Ankle boot", "Bag", "Sandal",
                                                                                "Shirt", "Sneaker"]
    assert len(list((tmp_path / "folder" / "train" / "Bag").glob("*.png"))) == 8
    checkpoint = torch.load(tmp_path / "runs" / "fine-tuned-lr0.1-seed0" / "last.pt", weights_only=True)
    assert checkpoint["config"]["pretrained"].endswith("best.pt") and checkpoint["meta"]["in_chans"] == 3
