"""Deployment: ONNX export, checked with ONNX Runtime against torch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, *, input_size=(3, 224, 224), verify: bool = True,
                rtol: float = 1e-4) -> Path:
    """Write `model` (eval mode, fp32) as ONNX with a dynamic batch dimension. With verify,
    ONNX Runtime must reproduce torch's logits on a random batch of 2 (relative error <= rtol)
    before the file is kept."""
    path = Path(path)
    model = model.eval().float()
    example = torch.randn(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.with_name(path.name + ".tmp")
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch}}, verbose=False)
        program.save(str(tmp))
        if verify:
            _verify_onnx(model, tmp, input_size, rtol)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".data").unlink(missing_ok=True)
    return path


def _verify_onnx(model: nn.Module, path: Path, input_size, rtol: float) -> None:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("checking the ONNX file needs onnxruntime: pip install 'resnetlab[onnx]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # a batch size other than the example's: the dynamic dimension works
        x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        (got,) = session.run(["logits"], {"images": x.numpy()})
        error = (torch.from_numpy(got) - expected).abs().max() / expected.abs().max().clamp_min(1e-12)
        if not error <= rtol:
            raise RuntimeError(f"ONNX Runtime's logits differ from torch's (relative error {error:.2e} > {rtol})")
