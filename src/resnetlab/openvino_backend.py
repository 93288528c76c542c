"""The OpenVINO backend of `optimize_for_inference`: fp32, bf16 and int8 on the CPU.

int8 is post-training static quantization by NNCF (OpenVINO's own quantizer), calibrated on
the user's images: the fastest inference measured on the Intel CPUs here (docs/benchmarks.md).
The network is converted once per image size (a dynamic batch), as torch.compile compiles on
its first call; int8 runs at the size it was calibrated at.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # OpenVINO's INFERENCE_PRECISION_HINT


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise RuntimeError("OpenVINO is not installed: pip install 'resnetlab[openvino]'") from None
    return openvino


def calibration_batches(calibration, in_chans: int, min_size: int) -> list[torch.Tensor]:
    """The calibration images as fp32 CPU batches, each N x C x H x W of one size; a ValueError
    or TypeError names what is wrong (shape, dtype, channels, size)."""
    if calibration is None:
        raise ValueError("int8 needs calibration: a tensor N x C x H x W of your images (normalised as the "
                         "network's inputs), or an iterable of such batches; a few hundred images are enough")
    batches = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    if not batches:
        raise ValueError("calibration is empty: expected at least one batch of images")
    sizes = set()
    for index, batch in enumerate(batches):
        where = "calibration" if isinstance(calibration, torch.Tensor) else f"calibration batch {index}"
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"{where}: expected a torch.Tensor N x C x H x W, got {type(batch).__name__}")
        if batch.ndim != 4 or len(batch) == 0:
            raise ValueError(f"{where}: expected a non-empty N x C x H x W batch, got shape {tuple(batch.shape)}")
        if not batch.is_floating_point():
            raise TypeError(f"{where}: expected floating-point images (normalised as the network's inputs), "
                            f"got {batch.dtype}")
        if batch.shape[1] != in_chans:
            raise ValueError(f"{where}: expected {in_chans} channels, got {batch.shape[1]}")
        if min(batch.shape[2:]) < min_size:
            raise ValueError(f"{where}: images of {batch.shape[2]}x{batch.shape[3]} are smaller than the "
                             f"network's total stride {min_size}")
        sizes.add(tuple(batch.shape[1:]))
    if len(sizes) > 1:
        raise ValueError(f"calibration images must all have one size, got {sorted(sizes)}")
    return [batch.detach().float().cpu().contiguous() for batch in batches]


class OpenVinoNetwork(nn.Module):
    """`model` compiled by OpenVINO for the CPU in `precision`, one compiled model per image
    size (fp32 and bf16) or at the calibration's size (int8)."""

    def __init__(self, model: nn.Module, precision: str, calibration: list[torch.Tensor] | None = None):
        super().__init__()
        self._model = [model]  # in a list: the weights belong to the InferenceModel, not to this module too
        self.precision = precision
        self.calibration = calibration
        self.compiled = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[1:])
        if self.calibration is not None and size != tuple(self.calibration[0].shape[1:]):
            calibrated = tuple(self.calibration[0].shape[1:])
            raise ValueError(f"this int8 network was calibrated on {calibrated[1]}x{calibrated[2]} images, got "
                             f"{size[1]}x{size[2]}: calibrate on images of the size it will see")
        if size not in self.compiled:
            self.compiled[size] = self._compile(size)
        compiled = self.compiled[size]
        return torch.from_numpy(compiled(x.numpy())[compiled.output(0)].copy())

    def _compile(self, size: tuple[int, ...]):
        openvino = import_openvino()
        network = convert(self._model[0], size)
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}  # the threads torch would use
        if self.precision == "int8":
            # the layers NNCF leaves unquantized run in OpenVINO's default precision (bf16 where native)
            network = quantize(network, self.calibration)
        else:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        return openvino.Core().compile_model(network, "CPU", config)


def convert(model: nn.Module, size: tuple[int, ...]):
    """`model` (fp32, eval) as an OpenVINO model with a dynamic batch and images of `size`."""
    openvino = import_openvino()
    with torch.no_grad(), warnings.catch_warnings():
        # OpenVINO traces with torch.jit (deprecated in torch, warned on every call), and forward's
        # input check reads shapes, traced as the constants they are for this size
        warnings.simplefilter("ignore")
        return openvino.convert_model(model.float().eval(), example_input=torch.zeros(1, *size),
                                      input=[(-1, *size)])


def quantize(network, calibration: list[torch.Tensor]):
    """NNCF's post-training static quantization of an OpenVINO model (its default preset: int8
    weights per channel, activations per tensor, fast bias correction), calibrated on `calibration`."""
    import logging

    try:
        import nncf
    except ImportError:
        raise RuntimeError("int8 needs NNCF: pip install 'resnetlab[openvino]'") from None
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
        return nncf.quantize(network, nncf.Dataset([batch.numpy() for batch in calibration]),
                             subset_size=len(calibration))


def export_openvino(model: nn.Module, path: str | Path, *, input_size=(3, 224, 224), verify: bool = True,
                    rtol: float = 1e-4) -> Path:
    """Write `model` (eval, fp32) as OpenVINO IR (path.xml and path.bin, fp32 weights: OpenVINO
    would store fp16 by default) with a dynamic batch. With verify, OpenVINO in fp32 must
    reproduce torch's logits (relative error <= rtol) before the files are reported written."""
    openvino = import_openvino()
    path = Path(path).with_suffix(".xml")
    network = convert(model, tuple(input_size))
    openvino.save_model(network, str(path), compress_to_fp16=False)  # fp32 weights: the logits of torch
    if verify:
        compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for batch in (1, 3):
            x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                expected = model(x)
            got = torch.from_numpy(compiled(x.numpy())[compiled.output(0)])
            error = (got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)
            if not error <= rtol:
                path.unlink(missing_ok=True)
                path.with_suffix(".bin").unlink(missing_ok=True)
                raise RuntimeError(f"OpenVINO's logits differ from torch's (relative error {error:.2e} > {rtol})")
    return path
