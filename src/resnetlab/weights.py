"""Safe weight loading and the key maps between resnetlab, torchvision and timm.

Nothing here unpickles code: .pt/.pth/.bin files go through `torch.load(weights_only=True)`,
.safetensors through safetensors. Foreign state dicts are renamed by one explicit key map
per layout, then checked key by key and shape by shape before anything is loaded.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .download import digest, fetch

LAYOUTS = ("resnetlab", "torchvision", "timm")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")

# --- Key maps --------------------------------------------------------------------------------
# One map per foreign layout: (pattern, replacement) pairs applied in order, resnetlab -> foreign
# for export and foreign -> resnetlab for loading. Block internals (conv1/bn1 .. conv3/bn3),
# the stem (conv1, bn1) and fc keep their names in all layouts; the stages and the projection
# shortcuts are renamed.
# torchvision (torchvision/models/resnet.py): stages "layer1".."layer4", shortcut "downsample.0/1".
_TORCHVISION_MAP = {
    "export": (
        (re.compile(r"^conv(\d)_x\."), lambda m: f"layer{int(m[1]) - 1}."),
        (re.compile(r"\.shortcut\.conv\."), ".downsample.0."),
        (re.compile(r"\.shortcut\.bn\."), ".downsample.1."),
    ),
    "import": (
        (re.compile(r"^layer(\d)\."), lambda m: f"conv{int(m[1]) + 1}_x."),
        (re.compile(r"\.downsample\.0\."), ".shortcut.conv."),
        (re.compile(r"\.downsample\.1\."), ".shortcut.bn."),
    ),
}
# timm (timm/models/resnet.py) kept torchvision's names for its ResNet, so its map is the same
# one; it has its own entry so that a divergence has one place to go.
_TIMM_MAP = _TORCHVISION_MAP
KEY_MAPS = {"torchvision": _TORCHVISION_MAP, "timm": _TIMM_MAP}


def _rename(key: str, layout: str, direction: str) -> str:
    for pattern, replacement in KEY_MAPS[layout][direction]:
        key = pattern.sub(replacement, key)
    return key


def to_resnetlab_keys(state_dict: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename a torchvision/timm state dict into resnetlab's layout."""
    if layout == "resnetlab":
        return dict(state_dict)
    return {_rename(k, layout, "import"): v for k, v in state_dict.items()}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"resnetlab" for conv2_x.* keys, "torchvision" for layer1.* keys (timm's are the same)."""
    keys = list(state_dict)
    if any(k.startswith("conv2_x.") for k in keys):
        return "resnetlab"
    if any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    sample = ", ".join(keys[:3]) or "no keys at all"
    raise ValueError(
        "unrecognised weight layout: expected ResNet keys like 'conv2_x.0.conv1.weight' (resnetlab) "
        f"or 'layer1.0.conv1.weight' (torchvision/timm), got {sample}"
    )


def export_state_dict(model: nn.Module, layout: str = "torchvision") -> dict[str, torch.Tensor]:
    """The model's weights in another library's layout (strict-loadable by its model of the
    same name), or in resnetlab's own with layout="resnetlab"."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "resnetlab":
        return state
    exported = {_rename(k, layout, "export"): v for k, v in state.items()}
    if len(exported) != len(state):
        raise ValueError(f"the {layout} key map is not one-to-one on this model")
    return exported


# --- Reading files safely ------------------------------------------------------------------


def read_weights_file(path: str | Path) -> dict:
    """Read a .pt/.pth/.bin/.ckpt (tensors only, never pickled code) or .safetensors file."""
    path = Path(path)
    if path.is_dir():  # a shared model's folder (`resnetlab export --format hub`)
        if not (path / HF_FILENAME).is_file():
            raise FileNotFoundError(f"{path} is a folder without {HF_FILENAME}; expected a weights file or a "
                                    "folder written by `resnetlab export --format hub`")
        path = path / HF_FILENAME
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"expected a weights file ending in {', '.join(WEIGHT_SUFFIXES)}, got {path}")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, ValueError, OSError) as error:
            raise ValueError(f"corrupt or truncated safetensors file {path}: {error}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise ValueError(
                f"refused to load {path}: it holds pickled objects other than tensors (possibly code); "
                "only plain tensor state dicts are loaded"
            ) from None
        raise ValueError(f"corrupt weights file {path}: {error}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, TypeError) as error:
        # garbage that is not a zip file reaches the legacy unpickler, which fails in many ways
        raise ValueError(f"corrupt or truncated weights file {path}: {error!r}") from None


def _unwrap(obj) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a checkpoint: `model` (resnetlab), `state_dict` (common),
    or the dict itself; DDP's `module.` and torch.compile's `_orig_mod.` prefixes dropped."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"expected a non-empty state dict of tensors, got {type(obj).__name__}")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"expected a state dict of str -> tensor, got {key!r}: {type(value).__name__}")
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state


# --- Official weights ------------------------------------------------------------------------
# The defaults of each library. The 8 hex digits in each file name are the start of the
# file's SHA-256, checked after download and on every load from the cache.
OFFICIAL_WEIGHTS = {
    "torchvision": {
        "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
        "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        "resnet101": "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
        "resnet152": "https://download.pytorch.org/models/resnet152-f82ba261.pth",
    },
    "timm": {
        "resnet18": "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet18_a1_0-d63eafa0.pth",
        "resnet34": "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet34_a1_0-46f8f793.pth",
        "resnet50": "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a1_0-14fe96d1.pth",
        "resnet101": "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a1h-36d3f2aa.pth",
        "resnet152": "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a1h-dc400468.pth",
    },
}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


def download_official(source: str, name: str) -> Path:
    """The cached file of `source`'s ImageNet weights for `name`, downloaded into torch.hub's
    cache (TORCH_HOME) on first use; its SHA-256 is checked every time."""
    table = OFFICIAL_WEIGHTS[source]
    if name not in table:
        raise ValueError(f"{source} has no official weights for {name!r}; available: {', '.join(table)}")
    url = table[name]
    filename = url.rsplit("/", 1)[-1]
    hash_prefix = _HASH_IN_NAME.search(filename).group(1)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        try:
            fetch(url, cached, sha256_prefix=hash_prefix, progress=True)
        except OSError as error:
            raise OSError(f"{error}; offline, put {filename} in {cached.parent} (TORCH_HOME) or pass the file "
                          "itself as pretrained") from None
    if not digest(cached).startswith(hash_prefix):
        raise ValueError(
            f"cached weights {cached} do not match their published SHA-256 prefix {hash_prefix}: "
            "the file is corrupt or was replaced; delete it to download it again"
        )
    return cached


HF_HUB_PREFIX = "hf-hub:"
HF_FILENAME = "model.safetensors"  # safetensors only: no pickle from a hub


def download_hf_hub(source: str) -> Path:
    """The weights of `hf-hub:ORG/NAME` through huggingface_hub: its cache (HF_HUB_CACHE) and its
    offline mode (HF_HUB_OFFLINE=1) apply; only the repository's model.safetensors is read."""
    repo_id = source.removeprefix(HF_HUB_PREFIX)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"expected hf-hub:ORG/NAME, got {source!r}")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise ImportError("hf-hub: weights need huggingface_hub: pip install 'resnetlab[hub]'") from None
    try:
        return Path(hf_hub_download(repo_id, HF_FILENAME))
    except LocalEntryNotFoundError:
        raise OSError(f"{source}: {HF_FILENAME} is not in the Hugging Face cache and the hub cannot be reached "
                      "(offline?); download it once where the hub is reachable, or pass the file itself") from None
    except HfHubHTTPError as error:
        raise OSError(f"{source}: {error}") from None


def resolve_state_dict(source, model_name: str | None = None) -> dict[str, torch.Tensor]:
    """A tensor state dict from any `pretrained=` source (dict, path, "torchvision", "timm",
    "hf-hub:ORG/NAME")."""
    if source is True:
        source = "torchvision"
    if isinstance(source, str) and source in OFFICIAL_WEIGHTS:
        if model_name is None:
            raise ValueError(f"pretrained={source!r} needs a named model from create_model")
        source = download_official(source, model_name)
    elif isinstance(source, str) and source.startswith(HF_HUB_PREFIX):
        source = download_hf_hub(source)
    if isinstance(source, (str, Path)):
        return _unwrap(read_weights_file(source))
    if isinstance(source, Mapping):
        return _unwrap(source)
    raise TypeError(
        "pretrained must be a state dict, a weights file path, 'torchvision', 'timm' or 'hf-hub:ORG/NAME'; "
        f"got {type(source).__name__}"
    )


def read_source(source) -> tuple[object, dict]:
    """`source` read once for load_pretrained (a weights file becomes its contents), and the
    metadata of a resnetlab checkpoint (image size, normalisation, classes); {} for others,
    whose weights (official, hub) were trained on ImageNet."""
    if isinstance(source, (str, Path)) and str(source) not in OFFICIAL_WEIGHTS \
            and not str(source).startswith(HF_HUB_PREFIX):
        if Path(source).is_dir():  # a shared model's folder: its config.json is the metadata
            return read_weights_file(source), hub_meta(Path(source))
        loaded = read_weights_file(source)
        meta = loaded.get("meta") if isinstance(loaded, dict) else None
        return loaded, meta if isinstance(meta, dict) else {}
    return source, {}


HUB_CONFIG = "config.json"  # beside model.safetensors in a shared model's folder


def hub_meta(folder: Path) -> dict:
    """What a shared model's config.json tells a fine-tuning run, as a checkpoint's meta would:
    its normalisation, image size and classes ({} without the file)."""
    import json

    path = folder / HUB_CONFIG
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
        normalize = {key: torch.tensor(config["normalize"][key], dtype=torch.float32) for key in ("mean", "std")}
        return {"normalize": normalize, "image_size": list(config["image_size"]), "classes": list(config["classes"])}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a resnetlab model config ({error!r})") from None


# --- Loading into a model ---------------------------------------------------------------------


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """conv1 weights for `in_chans` inputs from RGB (or grey) ones: for 1 channel the sum over
    RGB (a grey image x gives what the RGB model gives on (x, x, x)); otherwise the input
    channels tiled and rescaled by their count / in_chans to keep the activation scale (a grey
    model on (x, x, x) gives what it gives on x)."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    tiled = weight.repeat(1, repeats, 1, 1)[:, :in_chans]
    return tiled * (weight.shape[1] / in_chans)


def _describe(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_pretrained(model: nn.Module, source, *, strict_classifier: bool = False,
                    classifier: bool = True) -> nn.Module:
    """Load weights from any source into a resnetlab model, in place.

    The layout is detected from the keys. Every key and shape is checked; a mismatch raises a
    ValueError naming the offending keys. A classifier of another size is left freshly
    initialised (with a warning) unless strict_classifier; classifier=False loads the backbone
    only (fine-tuning: the model keeps its fresh classifier). RGB or grey conv1 weights are
    adapted to the model's in_chans.
    """
    state = resolve_state_dict(source, getattr(model, "model_name", None))
    layout = detect_layout(state)
    state = to_resnetlab_keys(state, layout)
    target = model.state_dict()
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        state.update({k: v for k, v in target.items() if k.startswith("fc.")})
    # BN's num_batches_tracked only matters with momentum=None; files often lack it.
    missing = {k for k in target if k not in state and not k.endswith("num_batches_tracked")}
    unexpected = set(state) - set(target)
    name = getattr(model, "model_name", type(model).__name__)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_describe(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_describe(unexpected)})")
        raise ValueError(
            f"these {layout}-layout weights are not for {name}: " + "; ".join(parts)
            + " (weights of another architecture or shortcut option?)"
        )
    cfg = model.cfg
    conv1 = state["conv1.weight"]
    if conv1.shape[1] != cfg.in_chans and conv1.shape[1] in (1, 3):
        state["conv1.weight"] = adapt_input_conv(conv1, cfg.in_chans)
    fc_keys = [k for k in ("fc.weight", "fc.bias") if k in target]
    if fc_keys and any(state[k].shape != target[k].shape for k in fc_keys) and not strict_classifier:
        warnings.warn(
            f"pretrained classifier has {state['fc.weight'].shape[0]} classes, {name} has "
            f"{cfg.num_classes}: fc is left freshly initialised",
            stacklevel=2,
        )
        for k in fc_keys:
            state[k] = target[k]
    bad_shapes = {k for k, v in state.items() if v.shape != target[k].shape}
    if bad_shapes:
        detail = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in sorted(bad_shapes)[:5])
        raise ValueError(f"these weights do not fit {name}: {len(bad_shapes)} shape mismatches ({detail})")
    if layout != "resnetlab" and cfg.block == "bottleneck" and cfg.stride_in_1x1:
        warnings.warn(
            f"{layout} weights are trained with the stride on the 3x3 conv (v1.5) but {name} has "
            "stride_in_1x1=True (v1): the shapes fit, the features will not",
            stacklevel=2,
        )
    for k, v in target.items():
        state.setdefault(k, v)
    model.load_state_dict(state, strict=True)
    return model
