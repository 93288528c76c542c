"""What the CLI's eval, predict and export do with a trained checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .checkpoint import load_model
from .data import load_dataset
from .data.augment import Normalize
from .device import resolve_device
from .recipes import TrainConfig
from .scoring import EvalResult, Scores, evaluate


def evaluate_checkpoint(path, *, data: str | None = None, data_dir=None, ten_crop: bool = False,
                        multi_scale: bool = False, device: str = "auto", precision: str | None = None) -> dict:
    """Evaluate a checkpoint on the test split it was trained against (or `data`), with the
    run's own evaluation settings (batch size, precision, flip averaging), so that the
    accuracy equals the one recorded in metrics.jsonl. Also each class's accuracy and the
    confusion matrix, drawn as confusion.png beside the checkpoint.

    precision ("fp32", "bf16" or "int8"): evaluate the network optimized for inference in that
    precision instead (int8: OpenVINO, calibrated on the run's own training images), so that
    what deployment costs in accuracy shows."""
    device = resolve_device(device)
    model, meta = load_model(path, device)
    cfg = TrainConfig.from_dict(meta["config"])
    data = data or cfg.data
    dataset = load_dataset(data, data_dir or cfg.data_dir, val_split=cfg.val_split if data == cfg.data else 0,
                           seed=cfg.seed, image_size=cfg.image_size)
    if dataset.num_classes != meta["num_classes"]:
        raise ValueError(f"{data} has {dataset.num_classes} classes, the checkpoint's model {meta['num_classes']}")
    normalize = Normalize.from_state_dict(meta["normalize"])
    view = "single view" + (", shift-averaged" if cfg.tta_shift else "") + (", flip-averaged" if cfg.tta_flip else "")
    if multi_scale:
        result = evaluate_multi_scale(model, dataset, normalize, device=device)
        return _report(path, data, "test", meta, "multi-scale", result, dataset.classes)
    if ten_crop:
        dataset, view = dataset.ten_crop(), "ten-crop"
    channels_last = bool(cfg.channels_last)
    autocast = cfg.precision if cfg.precision != "auto" else "fp32"
    if precision is not None:
        model, autocast = optimized(model, precision, dataset, normalize), "fp32"
        view += f", optimized for inference in {precision}"
    elif channels_last:
        model = model.to(memory_format=torch.channels_last)
    _, test_loader = dataset.loaders(cfg, normalize, device=device, channels_last=channels_last)
    result = evaluate(model, test_loader.batches(0), precision=autocast, tta_flip=cfg.tta_flip and not ten_crop,
                      tta_shift=cfg.tta_shift and not ten_crop,
                      device=device, num_classes=dataset.num_classes)
    return _report(path, data, "held-out" if cfg.val_split else "test", meta, view, result, dataset.classes)


def _report(path, data: str, split: str, meta: dict, view: str, result: EvalResult, classes: list[str]) -> dict:
    """What `resnetlab eval` prints: the scores, each class's, and the confusion matrix (also
    drawn as confusion.png in the checkpoint's folder, where it can be written)."""
    from .plots import plot_confusion

    picture = Path(path).parent / "confusion.png"
    try:
        plot_confusion(result.confusion, classes, picture, title=f"{data} {split}, {view}")
    except OSError as error:
        warnings.warn(f"confusion matrix not drawn: {error}", stacklevel=3)
        picture = None
    return {"checkpoint": str(path), "data": data, "split": split, "step": meta["step"], "images": result.count,
            "view": view, **result.as_dict(), "per_class": result.per_class(classes),
            "confusion": result.confusion.tolist(), "confusion_png": str(picture) if picture else None}


def optimized(model, precision: str, dataset, normalize: Normalize):
    """The checkpoint's network for inference in `precision`: int8 on OpenVINO, calibrated on
    256 of the run's own training images; fp32 and bf16 on torch."""
    from .inference import optimize_for_inference

    if precision != "int8":
        return optimize_for_inference(model, dtype=precision)
    return optimize_for_inference(model, dtype="int8", backend="openvino",
                                  calibration=dataset.calibration_images(normalize).split(64))


@torch.no_grad()
def evaluate_multi_scale(model, dataset, normalize, *, device, scales=None) -> EvalResult:
    """Fully convolutional multi-scale testing (section 3.4): each whole image with its shorter
    side at every scale (224, 256, 384, 480, 640 for 224 crops; proportional otherwise) and its
    mirror; the logits of all views averaged."""
    from .data.folder import MULTI_SCALES, multi_scale_views

    samples = dataset.multi_scale_samples()
    scales = scales or [round(s * dataset.crop / 224) for s in MULTI_SCALES]
    scores = Scores(device, len(dataset.classes))
    for path, label in samples:
        logits = []
        for view in multi_scale_views(path, scales):
            x = normalize(view.unsqueeze(0).to(device))
            logits += [model(x), model(x.flip(3))]
        scores.add(torch.stack(logits).mean(0), torch.tensor([label], device=device))
    return scores.result()


def _load_image(file, meta) -> torch.Tensor:
    """One image file as the network takes it: resized and centre-cropped to the training size."""
    from torchvision.transforms import functional as TF

    from .data.folder import load_rgb

    channels, height, width = meta["image_size"]
    image = load_rgb(str(file))
    if channels == 1:
        image = image.convert("L")
    image = TF.resize(image, min(height, width))
    image = TF.center_crop(image, [height, width])
    return TF.pil_to_tensor(image)


def image_files(paths) -> list[Path]:
    """The files to classify: each path that is a file, and every image file under each folder
    (recursively, by name order), as torchvision's image folders recognise them by suffix."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"image not found: {path}")
    if not files:
        raise ValueError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return files


@torch.no_grad()
def predict_files(path, paths, *, top_k: int = 3, device: str = "auto", precision: str = "fp32",
                  data_dir=None, batch_size: int = 64) -> list[dict]:
    """Top-k classes of each image file (folders are searched recursively), resized and cropped to
    the training image size, by the checkpoint's network optimized for inference (BN folded,
    channels_last, `precision`; int8 calibrates on the run's training data, found as training
    found it or in data_dir). One record per file, in order; a file that cannot be decoded gets
    an "error" instead of "top", and the others are still classified."""
    from .inference import optimize_for_inference

    device = resolve_device(device)
    files = image_files(paths)
    model, meta = load_model(path, device)
    normalize = Normalize.from_state_dict(meta["normalize"])
    if precision == "int8":  # calibrated on the run's own training images, where they are
        cfg = TrainConfig.from_dict(meta["config"])
        dataset = load_dataset(cfg.data, data_dir or cfg.data_dir, image_size=cfg.image_size)
        model = optimized(model, precision, dataset, normalize)
    else:
        model = optimize_for_inference(model, dtype=precision)
    records = []
    for chunk in range(0, len(files), batch_size):
        batch = []  # (its record, the image) for each file of the chunk that decodes
        for file in files[chunk:chunk + batch_size]:
            records.append({"image": str(file)})
            try:
                batch.append((records[-1], _load_image(file, meta)))
            except (ValueError, OSError) as error:
                records[-1]["error"] = str(error)
        if batch:
            probabilities = model(normalize(torch.stack([image for _, image in batch]).to(device))).softmax(1)
            top = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
            for (record, _), values, indices in zip(batch, top.values, top.indices):
                record["top"] = [{"class": meta["classes"][i], "index": int(i), "probability": p}
                                 for p, i in zip(values.tolist(), indices.tolist())]
    if not any("top" in record for record in records):
        raise ValueError(f"no image could be read: {records[0]['error']}"
                         + (f" (and {len(records) - 1} more)" if len(records) > 1 else ""))
    return records


EXPORT_FORMATS = ("onnx", "openvino", "safetensors", "torchvision", "timm", "hub")


def export_checkpoint(path, fmt: str, out) -> Path:
    """Write the checkpoint's model as safetensors (resnetlab layout), torchvision/timm weights
    (.pth, or .safetensors by suffix), ONNX (checked against torch with ONNX Runtime),
    OpenVINO IR (checked with OpenVINO) or a folder to share (hub: see export_hub)."""
    from .weights import export_state_dict

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    model, meta = load_model(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hub":
        return export_hub(model, meta, Path(path), out)
    if fmt == "onnx":
        from .inference import export_onnx

        export_onnx(model, out, input_size=tuple(meta["image_size"]), verify=True)
        return out
    if fmt == "openvino":  # IR: OUT.xml and OUT.bin, checked against torch
        from .openvino_backend import export_openvino

        return export_openvino(model, out, input_size=tuple(meta["image_size"]), verify=True)
    layout = "resnetlab" if fmt == "safetensors" else fmt
    state = {k: v.contiguous() for k, v in export_state_dict(model, layout).items()}
    if fmt == "safetensors" or out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out), metadata={"model": meta["model"], "layout": layout,
                                             "num_classes": str(meta["num_classes"]),
                                             "in_chans": str(meta["in_chans"])})
    else:
        torch.save(state, out)
    return out


def export_hub(model, meta: dict, checkpoint: Path, out: Path) -> Path:
    """A folder to share the model as the Hugging Face hub shares models: model.safetensors
    (resnetlab layout), config.json (the network, classes, normalisation and image size, what
    `--pretrained DIR` reads back) and README.md, a model card with the run's data, recipe,
    metrics and command. `create_model(pretrained=DIR)`, `--pretrained DIR` and, once uploaded,
    `hf-hub:ORG/NAME` load it."""
    import json

    from safetensors.torch import save_file

    from .checkpoint import versions
    from .runfolder import RunFolder
    from .weights import HF_FILENAME, HUB_CONFIG, export_state_dict

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in export_state_dict(model, "resnetlab").items()}
    save_file(state, str(out / HF_FILENAME), metadata={"model": meta["model"], "layout": "resnetlab"})
    cfg = TrainConfig.from_dict(meta["config"])
    rows = RunFolder(checkpoint.parent).read_metrics()
    final = next((row for row in reversed(rows) if row["step"] == meta["step"]), rows[-1] if rows else None)
    config = {"library": "resnetlab", "architecture": meta["model"], "model_overrides": meta.get("overrides", {}),
              "num_classes": meta["num_classes"], "in_chans": meta["in_chans"], "image_size": meta["image_size"],
              "classes": meta["classes"],
              "normalize": {key: value.tolist() for key, value in meta["normalize"].items()},
              "trained": {"data": cfg.data, "recipe": cfg.recipe, "steps": meta["step"],
                          "test_acc1": final["test_acc1"] if final else None,
                          "test_acc5": final["test_acc5"] if final else None},
              "versions": versions()}
    (out / HUB_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (out / "README.md").write_text(_model_card(meta, cfg, final, out))
    return out


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload a folder written by export_hub to the Hugging Face hub as ORG/NAME (created if
    missing), with huggingface_hub's login; returns the repository's address. Offline, without
    the package or without a login it says so in one line (a RuntimeError) and uploads nothing."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--push needs a repository ORG/NAME, got {repo_id!r}")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise RuntimeError("--push needs huggingface_hub: pip install 'resnetlab[hub]'") from None
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(f"--push: huggingface_hub is offline (HF_HUB_OFFLINE); {folder} is written, push it "
                           "once online")
    if huggingface_hub.get_token() is None:
        raise RuntimeError(f"--push: not logged in to the Hugging Face hub (`hf auth login`, or HF_TOKEN); "
                           f"{folder} is written")
    api = huggingface_hub.HfApi()
    try:
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="resnetlab export --format hub")
    except Exception as error:  # the hub's HTTP and connection errors: one line, the folder kept
        raise RuntimeError(f"--push to {repo_id} failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                           f"{folder} is written") from None
    return str(url)


def _model_card(meta: dict, cfg: TrainConfig, final: dict | None, out: Path) -> str:
    overrides = "".join(f", {key}={value!r}" for key, value in meta.get("overrides", {}).items())
    command = (f"resnetlab train --model {cfg.model} --data {cfg.data} --recipe {cfg.recipe} --seed {cfg.seed} "
               f"--batch-size {cfg.batch_size} --lr {cfg.lr} "
               + (f"--max-steps {meta['config']['max_steps']}" if meta["config"].get("max_steps") else
                  f"--epochs {cfg.epochs}"))
    metrics = (f"test top-1 accuracy **{final['test_acc1']:.2f}%**, top-5 {final['test_acc5']:.2f}% "
               f"(step {final['step']:,}, epoch {final['epoch']}), from the run's metrics.jsonl"
               if final else "no metrics were found beside the checkpoint")
    return f"""---
library_name: resnetlab
tags: [image-classification, resnet]
---

# {meta['model']} trained on {cfg.data}

- **Architecture:** `{meta['model']}` from resnetlab, as in He et al. 2015, "Deep Residual Learning for Image
  Recognition" (https://arxiv.org/abs/1512.03385); {meta['num_classes']} classes, {meta['in_chans']} input
  channel(s), images of {meta['image_size'][1]}x{meta['image_size'][2]}.
- **Data:** {cfg.data}; classes: {', '.join(meta['classes'])}.
- **Recipe:** `{cfg.recipe}`: batch {cfg.batch_size}, lr {cfg.lr}, weight decay {cfg.weight_decay},
  {meta['step']:,} steps.
- **Metrics:** {metrics}.
- **Made by:** `{command}`

## Use

```python
import resnetlab
model = resnetlab.create_model("{meta['model']}", num_classes={meta['num_classes']},
                               in_chans={meta['in_chans']}{overrides},
                               pretrained="{out.name}")   # this folder, or "hf-hub:ORG/NAME" once uploaded
```

Normalise inputs with config.json's `normalize` (x / 255 - mean) / std; `resnetlab train --pretrained
{out.name}` fine-tunes from it with that normalisation.
"""
