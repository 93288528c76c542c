"""Deployment: a model optimized for inference, and ONNX export checked with ONNX Runtime."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .device import room_for_many_networks
from .model import ResNet

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = (*DTYPES, "int8")  # int8: quantized, on backend="openvino"
BACKENDS = ("torch", "onnxruntime", "openvino")


def fold_batchnorm(model: ResNet) -> ResNet:
    """Fold every eval-mode BatchNorm into the conv before it, in place: conv(x) * gamma / sigma
    + (beta - mu * gamma / sigma) is one conv with a bias, so inference runs one op instead of two.

    Every conv-BN pair of the network is named convX/bnX (bn1 follows conv1, the shortcut's bn
    follows its conv); the folded BN becomes an Identity, so forward() is unchanged."""
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: training-mode BN uses batch statistics")
    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                conv_name = "conv" + name.removeprefix("bn")
                conv = getattr(module, conv_name, None)
                if not isinstance(conv, nn.Conv2d):
                    raise ValueError(f"{name} of {type(module).__name__} has no conv {conv_name} to fold into")
                setattr(module, conv_name, fuse_conv_bn_eval(conv, child))
                setattr(module, name, nn.Identity())
    return model


class InferenceModel(nn.Module):
    """An inference-only view of a ResNet: takes fp32 (or any float) images in any layout and
    returns fp32 logits, while the network inside runs in `dtype` and `memory_format`.

    Input is checked against the original network (shape, channels, size) before any cast, so
    bad input gets the same error as from the eager model."""

    def __init__(self, model: ResNet, network: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format,
                 compiled: bool = False):
        super().__init__()
        self.model = model  # the converted network: its config, check_input, weights
        self.network = network  # what runs: `model` itself, its compiled form or ONNX Runtime sessions
        self.dtype = dtype
        self.memory_format = memory_format
        self.num_classes = model.num_classes
        self.compiled = compiled  # network is torch.compile's: its calls need _compiling's settings
        self.eval()

    @property
    def cfg(self):
        return self.model.cfg

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.model.check_input(x)
        x = x.to(dtype=self.dtype, memory_format=self.memory_format)
        with _compiling(freeze=x.device.type == "cpu") if self.compiled else contextlib.nullcontext():
            return self.network(x).float()

    def train(self, mode: bool = True) -> "InferenceModel":
        if mode:
            raise RuntimeError("an InferenceModel cannot be trained (its BN is folded); optimize a copy after training")
        return super().train(False)


def optimize_for_inference(model: ResNet, *, dtype: torch.dtype | str = torch.float32, channels_last: bool = True,
                           fold_bn: bool = True, compile: bool = False, backend: str = "torch",
                           calibration=None) -> InferenceModel:
    """A copy of `model` for inference (the original is untouched): BN folded into the convs,
    weights in `dtype` and channels_last, optionally compiled. fp32 gives the same logits as the
    eager model (to ~1e-5 relative); bf16 the same top-1 up to near-ties.

    bf16 converts the weights rather than using autocast: measured faster here (ResNet-50,
    batch 1: 46 vs 32 img/s; batch 16: 67 vs 65) as no weight is cast again on every call.
    compile uses inductor with freezing on the CPU: the weights become constants, so oneDNN
    pre-packs them and fuses the bias, ReLU and residual add into each conv (docs/benchmarks.md
    has the figures).

    backend="onnxruntime" runs the folded fp32 network with ONNX Runtime's CPU provider instead:
    the fastest fp32 on the CPUs measured here (its NCHWc kernels). Each image size is exported
    and checked against torch the first time it is seen, as torch.compile compiles on its first
    call.

    backend="openvino" runs fp32, bf16 or int8 with OpenVINO on the CPU. int8 (dtype="int8",
    OpenVINO only) is NNCF's post-training static quantization calibrated on `calibration`: an
    N x C x H x W tensor of the user's images, normalised as the network's inputs, or an
    iterable of such batches (a few hundred images); it keeps the top-1 of fp32 up to
    near-ties."""
    if not isinstance(model, ResNet):
        raise TypeError(f"expected a resnetlab ResNet, got {type(model).__name__}")
    precision = _precision(dtype)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision == "int8" and backend != "openvino":
        raise ValueError("int8 runs on backend='openvino' (NNCF's quantization, the fastest measured here)")
    if backend != "torch":
        _check_engine_options(model, backend, precision, compile)
    if precision == "int8":
        from .openvino_backend import calibration_batches

        calibration = calibration_batches(calibration, model.cfg.in_chans, model.cfg.total_stride)
    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model)
    # the other engines take fp32 NCHW and choose their own precision and layout
    dtype = DTYPES[precision] if backend == "torch" else torch.float32
    memory_format = torch.channels_last if channels_last and backend == "torch" else torch.contiguous_format
    model = model.to(dtype=dtype, memory_format=memory_format).requires_grad_(False)
    network = model
    if backend == "onnxruntime":
        network = OnnxRuntimeNetwork(model)
    elif backend == "openvino":
        from .openvino_backend import OpenVinoNetwork

        network = OpenVinoNetwork(model, precision, calibration if precision == "int8" else None)
    elif compile:
        network = torch.compile(model)
    return InferenceModel(model, network, dtype, memory_format, compiled=compile and backend == "torch")


def _precision(dtype: torch.dtype | str) -> str:
    """"fp32", "bf16", "fp16" or "int8" from a name or a torch dtype."""
    if isinstance(dtype, str):
        if dtype not in PRECISIONS:
            raise ValueError(f"unknown dtype {dtype!r}: expected one of {', '.join(PRECISIONS)}")
        return dtype
    names = {value: name for name, value in DTYPES.items()}
    if dtype not in names:
        raise ValueError(f"expected dtype float32, bfloat16 or float16 (or the name 'int8'), got {dtype}")
    return names[dtype]


def _compiling(freeze: bool) -> contextlib.ExitStack:
    """Settings for the calls that may compile; `freeze` on the CPU, where oneDNN pre-packs.

    Freezing must be on while dynamo traces, not only while inductor compiles: dynamo decides
    then whether the parameters become constants of the graph, and `torch.compile(options=
    {"freezing": True})` turns it on too late for that (the graph keeps its weights as inputs,
    and no conv is pre-packed or fused)."""
    import torch._inductor.config

    settings = contextlib.ExitStack()
    settings.enter_context(room_for_many_networks())
    if freeze:
        settings.enter_context(torch._inductor.config.patch(freezing=True))
    return settings


def _check_engine_options(model: ResNet, backend: str, precision: str, compile: bool) -> None:
    """ONNX Runtime runs fp32, OpenVINO fp32, bf16 and int8; both on the CPU, optimizing the
    graph themselves; a missing package is named before any work."""
    supported = ("fp32",) if backend == "onnxruntime" else ("fp32", "bf16", "int8")
    if precision not in supported:
        raise ValueError(f"the {backend} backend runs {' and '.join(supported)} only, got {precision}; "
                         "use backend='torch' for it")
    if compile:
        raise ValueError(f"compile is for backend='torch'; {backend} optimizes the graph itself")
    if next(model.parameters()).device.type != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU: move the model there first (model.cpu())")
    if backend == "onnxruntime":
        _import_onnxruntime()
    else:
        from .openvino_backend import import_openvino

        import_openvino()


class OnnxRuntimeNetwork(nn.Module):
    """`model` as ONNX Runtime sessions, one per image size, each exported with export_onnx
    (a dynamic batch, checked against torch) the first time that size is seen."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._model = [model]  # in a list: the weights belong to the InferenceModel, not to this module too
        self.sessions = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[1:])
        if size not in self.sessions:
            self.sessions[size] = self._session(size)
        (logits,) = self.sessions[size].run(["logits"], {"images": x.numpy()})  # fp32 NCHW: InferenceModel's
        return torch.from_numpy(logits)

    def _session(self, input_size: tuple[int, ...]):
        import tempfile

        onnxruntime = _import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the threads torch would use, not every core
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(self._model[0], Path(folder) / "model.onnx", input_size=input_size, verify=False)
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        _check_session(self._model[0], session, input_size)  # export_onnx's check, on the session kept
        return session


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


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("ONNX Runtime is not installed: pip install 'resnetlab[onnx]'") from None
    return onnxruntime


def _verify_onnx(model: nn.Module, path: Path, input_size, rtol: float) -> None:
    session = _import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _check_session(model, session, input_size, rtol)


def _check_session(model: nn.Module, session, input_size, rtol: float = 1e-4) -> None:
    for batch in (1, 3):  # a batch size other than the example's: the dynamic dimension works
        x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        (got,) = session.run(["logits"], {"images": x.numpy()})
        error = (torch.from_numpy(got) - expected).abs().max() / expected.abs().max().clamp_min(1e-12)
        if not error <= rtol:
            raise RuntimeError(f"ONNX Runtime's logits differ from torch's (relative error {error:.2e} > {rtol})")
