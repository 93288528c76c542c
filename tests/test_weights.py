"""Weights: proof of equality with torchvision and timm, safe file loading, the official-weights
download path (run against local files), in_chans/num_classes adaptation, clear errors."""

import hashlib
import pickle
import warnings

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import resnetlab
from conftest import IMAGENET_MODELS, randomize_batchnorm, relative_error
from resnetlab import weights


def torchvision_model(name, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(getattr(torchvision.models, name)(), seed).eval()


def timm_model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_batchnorm(timm.create_model(name, **kwargs), seed).eval()


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_torchvision_weights_give_torchvision_logits(name):
    theirs = torchvision_model(name)
    ours = resnetlab.create_model(name, pretrained=theirs.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(ours(x), theirs(x)) <= 1e-5
    # ... and back: the export loads into torchvision strictly and gives the same logits.
    again = getattr(torchvision.models, name)()
    again.load_state_dict(resnetlab.export_state_dict(ours, "torchvision"), strict=True)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), theirs(x))


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_timm_weights_give_timm_logits_and_features(name):
    theirs = timm_model(name, seed=1)
    ours = resnetlab.create_model(name, pretrained=theirs.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    exported = resnetlab.export_state_dict(ours, "timm")
    again = timm.create_model(name)
    again.load_state_dict(exported, strict=True)
    features = timm.create_model(name, features_only=True).eval()
    features.load_state_dict({k: v for k, v in exported.items() if not k.startswith("fc.")}, strict=True)
    with torch.no_grad():
        assert relative_error(ours(x), theirs(x)) <= 1e-5
        assert torch.equal(again.eval()(x), theirs(x))
        ours_stages, timm_stages = ours.stage_outputs(x), features(x)
        assert len(ours_stages) == len(timm_stages) == 5
        for a, b in zip(ours_stages, timm_stages):
            assert relative_error(a, b) <= 1e-5


def test_layout_detection_and_wrappers():
    tv = torchvision_model("resnet18")
    assert weights.detect_layout(tv.state_dict()) == "torchvision"
    ours = resnetlab.create_model("resnet18", pretrained=tv.state_dict())
    assert weights.detect_layout(ours.state_dict()) == "resnetlab"
    # A resnetlab checkpoint, a DDP-wrapped and a compiled state dict all load.
    for wrapped in (
        {"model": ours.state_dict(), "step": 3},
        {"state_dict": {f"module.{k}": v for k, v in tv.state_dict().items()}},
        {f"_orig_mod.{k}": v for k, v in tv.state_dict().items()},
    ):
        other = resnetlab.create_model("resnet18", pretrained=wrapped)
        assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), ours.state_dict().values()))
    with pytest.raises(ValueError, match="unrecognised weight layout"):
        weights.detect_layout({"encoder.weight": torch.zeros(1)})


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".safetensors"])
def test_weight_files_of_every_format(tmp_path, suffix):
    tv = torchvision_model("resnet34")
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(tv.state_dict(), str(path))
    else:
        torch.save(tv.state_dict(), path)
    ours = resnetlab.create_model("resnet34", pretrained=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(ours(x), tv(x)) <= 1e-5
    assert resnetlab.create_model("resnet34", pretrained=str(path)) is not None


def test_in_chans_1_equals_rgb_model_on_repeated_grey(tmp_path):
    tv = torchvision_model("resnet50")
    rgb = resnetlab.create_model("resnet50", pretrained=tv.state_dict()).eval()
    grey = resnetlab.create_model("resnet50", in_chans=1, pretrained=tv.state_dict()).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert relative_error(grey(x), rgb(x.repeat(1, 3, 1, 1))) <= 1e-5


def test_in_chans_tiles_and_rescales():
    rgb = torch.randn(8, 3, 7, 7)
    five = weights.adapt_input_conv(rgb, 5)
    assert five.shape == (8, 5, 7, 7)
    assert torch.allclose(five[:, :3], rgb * 3 / 5) and torch.allclose(five[:, 3:], rgb[:, :2] * 3 / 5)


def test_other_num_classes_reinitialises_fc_with_a_warning():
    tv = torchvision_model("resnet18")
    with pytest.warns(UserWarning, match="fc is left freshly initialised"):
        model = resnetlab.create_model("resnet18", num_classes=10, pretrained=tv.state_dict())
    assert model.fc.weight.shape == (10, 512)
    assert torch.equal(model.conv5_x[1].conv2.weight, tv.layer4[1].conv2.weight)


def test_v1_model_with_public_v15_weights_warns():
    tv = torchvision_model("resnet50")
    with pytest.warns(UserWarning, match="v1.5"):
        resnetlab.create_model("resnet50", stride_in_1x1=True, pretrained=tv.state_dict())


@pytest.mark.parametrize(
    "model, weights_of, message",
    [
        ("resnet50", "resnet18", r"not for resnet50: \d+ missing \(conv2_x.0.bn3"),
        ("resnet34", "resnet18", r"not for resnet34: \d+ missing \(conv2_x.2"),
        ("plain18", "resnet18", r"not for plain18: 18 unexpected \(conv3_x.0.shortcut"),
    ],
)
def test_weights_of_another_architecture_are_refused(model, weights_of, message):
    source = getattr(torchvision.models, weights_of)().state_dict()
    with pytest.raises(ValueError, match=message):
        resnetlab.create_model(model, pretrained=source)


def test_shape_mismatch_is_named():
    state = resnetlab.create_model("resnet18").state_dict()
    state["conv2_x.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    with pytest.raises(ValueError, match=r"conv2_x.0.conv1.weight \(64, 64, 5, 5\) vs \(64, 64, 3, 3\)"):
        resnetlab.create_model("resnet18", pretrained=state)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path, container):
    marker = tmp_path / "code-ran"
    payload = {"conv1.weight": torch.zeros(1), "evil": _RunsCode(marker)}
    path = tmp_path / "evil.pth"
    if container == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="refused to load"):
        resnetlab.create_model("resnet18", pretrained=path)
    assert not marker.exists()
    if container == "raw pickle":  # the payload is real: unpickled the unsafe way, it runs
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_corrupt_truncated_and_missing_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(torchvision.models.resnet18().state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file")
    cut = tmp_path / "cut.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(cut))
    cut.write_bytes(cut.read_bytes()[:-100])
    for path, message in [
        (truncated, "corrupt or truncated weights file"),
        (garbage, "corrupt or truncated safetensors file"),
        (cut, "corrupt or truncated safetensors file"),
    ]:
        with pytest.raises(ValueError, match=message):
            resnetlab.create_model("resnet18", pretrained=path)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        resnetlab.create_model("resnet18", pretrained=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="expected a weights file ending in"):
        resnetlab.create_model("resnet18", pretrained=tmp_path / "weights.txt")
    with pytest.raises(TypeError, match="pretrained must be"):
        resnetlab.create_model("resnet18", pretrained=3.5)
    with pytest.raises(ValueError, match="state dict of str -> tensor"):
        resnetlab.create_model("resnet18", pretrained={"conv1.weight": [1, 2]})


def _publish(tmp_path, state_dict, stem):
    """Save weights as a file named like an official release (stem-<sha256 prefix>.pth)."""
    staging = tmp_path / "staging.pth"
    torch.save(state_dict, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    published = tmp_path / "server" / f"{stem}-{digest[:8]}.pth"
    published.parent.mkdir(exist_ok=True)
    staging.rename(published)
    return published


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_official_weights_download_and_hash_check(tmp_path, monkeypatch, source):
    """The real download code, served from a local file:// URL into a private torch.hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    tv = torchvision_model("resnet18")
    published = _publish(tmp_path, tv.state_dict(), "resnet18")
    monkeypatch.setitem(weights.OFFICIAL_WEIGHTS[source], "resnet18", published.as_uri())
    model = resnetlab.create_model("resnet18", pretrained=source).eval()
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / published.name
    assert cached.is_file()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(model(x), tv(x)) <= 1e-5
    # A cached file that no longer matches its published hash is refused.
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="do not match their published SHA-256"):
        resnetlab.create_model("resnet18", pretrained=source)


def test_download_with_a_wrong_hash_is_refused_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    published = _publish(tmp_path, torchvision.models.resnet18().state_dict(), "resnet18")
    forged = published.with_name("resnet18-00000000.pth")
    published.rename(forged)
    monkeypatch.setitem(weights.OFFICIAL_WEIGHTS["torchvision"], "resnet18", forged.as_uri())
    with pytest.raises(RuntimeError, match="invalid hash value"):
        resnetlab.create_model("resnet18", pretrained="torchvision")
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / forged.name).exists()


def test_official_weights_exist_only_for_imagenet_models():
    with pytest.raises(ValueError, match="torchvision has no official weights for 'resnet20'"):
        resnetlab.create_model("resnet20", pretrained="torchvision")


def test_export_rejects_unknown_layout():
    with pytest.raises(ValueError, match="layout must be one of"):
        resnetlab.export_state_dict(resnetlab.create_model("resnet18"), "keras")


def test_no_warning_when_everything_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resnetlab.create_model("resnet18", pretrained=torchvision.models.resnet18().state_dict())
