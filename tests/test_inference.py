"""optimize_for_inference and ONNX export: every ImageNet-family network gives the eager fp32
logits with folded BN, channels_last, torch.compile and ONNX Runtime; bf16 gives the same top-1."""

import pytest
import torch

import resnetlab
from conftest import calibrate_batchnorm, randomize_batchnorm, relative_error
from resnetlab.inference import InferenceModel, fold_batchnorm, optimize_for_inference

IMAGENET_FAMILY = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34"]


def trained_like(name: str, x: torch.Tensor) -> torch.nn.Module:
    """A network with non-trivial BN statistics and affine parameters (as after training), so
    that a wrongly folded BN shows in the logits."""
    model = resnetlab.create_model(name, num_classes=10)
    return randomize_batchnorm(calibrate_batchnorm(model, x)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", IMAGENET_FAMILY)
def test_every_optimization_gives_the_eager_logits(name, images):
    model = trained_like(name, images)
    with torch.no_grad():
        expected = model(images)
    for options in [dict(fold_bn=True, channels_last=False), dict(fold_bn=False, channels_last=True),
                    dict(), dict(compile=True)]:
        optimized = optimize_for_inference(model, **options)
        assert relative_error(optimized(images), expected) < 1e-4, options
    onnxruntime_model = optimize_for_inference(model, backend="onnxruntime")  # export_onnx, then a session
    assert relative_error(onnxruntime_model(images), expected) < 1e-4

    bf16 = optimize_for_inference(model, dtype=torch.bfloat16)
    got = bf16(images)
    assert got.dtype == torch.float32
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert relative_error(got, expected) < 0.05  # bf16 keeps 8 bits of mantissa: ~1% is expected


# The two deepest convert and quantize for about a minute each: `make test-slow` runs them.
OPENVINO_CASES = [pytest.param(name, marks=pytest.mark.slow) if name in ("resnet101", "resnet152") else name
                  for name in IMAGENET_FAMILY]


@pytest.mark.parametrize("name", OPENVINO_CASES)
def test_openvino_gives_the_eager_logits_and_int8_the_top1(name, images):
    """OpenVINO fp32 gives the eager logits; int8 (NNCF, calibrated on images like the inputs)
    keeps the top-1 and the logits' direction, and so does bf16 (on two networks: it is
    OpenVINO's precision hint, the same for all)."""
    x = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = trained_like(name, x)
    with torch.no_grad():
        expected = model(x)
    fp32 = optimize_for_inference(model, backend="openvino")
    assert relative_error(fp32(x), expected) < 1e-4
    for precision in ("bf16", "int8") if name in ("resnet18", "resnet50") else ("int8",):
        calibration = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        got = optimize_for_inference(model, backend="openvino", dtype=precision, calibration=calibration)(x)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        agreement = (got.argmax(1) == expected.argmax(1)).float().mean().item()
        cosine = torch.nn.functional.cosine_similarity(got, expected, dim=1).min().item()
        assert agreement >= 14 / 16 and cosine >= 0.99, (precision, agreement, cosine)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="weight pre-packing is oneDNN's")
def test_compiling_on_the_cpu_prepacks_every_conv_of_every_model(images):
    """Freezing must be in force when dynamo traces, or the weights stay graph inputs and
    inductor packs no conv for oneDNN (what options={"freezing": True} alone gives). And every
    optimized model compiles, however many came before it: all ResNets share one forward, and
    dynamo runs it eager once its cache holds recompile_limit entries (lowered here to 1)."""
    from torch._dynamo.utils import counters

    for seed in (0, 1):
        torch.manual_seed(seed)
        model = trained_like("resnet18", images)
        counters.clear()
        with torch._dynamo.config.patch(recompile_limit=1):
            optimize_for_inference(model, compile=True)(images)
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] == convs, seed


def test_onnxruntime_exports_each_image_size_once(images):
    model = trained_like("resnet18", images)
    optimized = optimize_for_inference(model, backend="onnxruntime")
    for x in (images, images[:1], images[:, :, :32, :48]):  # a new batch size reuses the export
        with torch.no_grad():
            assert relative_error(optimized(x), model(x)) < 1e-4
    assert sorted(optimized.network.sessions) == [(3, 32, 48), (3, 64, 64)]
    assert not optimized.network.state_dict()  # the weights are the InferenceModel's, held once


def test_the_original_model_is_left_untouched(images):
    model = trained_like("resnet18", images)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimized = optimize_for_inference(model, dtype="bf16")
    assert isinstance(optimized, InferenceModel) and not optimized.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in optimized.modules())
    assert optimized.model.conv1.weight.dtype == torch.bfloat16
    assert optimized.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_folding_needs_eval_mode_and_a_conv_before_every_bn():
    model = resnetlab.create_model("resnet18")
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(model)
    model.eval().conv2_x[0].conv1 = torch.nn.Identity()
    with pytest.raises(ValueError, match="no conv conv1"):
        fold_batchnorm(model)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(dtype=torch.int8), ValueError, "float32, bfloat16 or float16"),
    (dict(dtype="half-ish"), ValueError, "expected one of fp32, bf16, fp16"),
    (dict(backend="tensorrt"), ValueError, "expected one of torch, onnxruntime"),
    (dict(backend="onnxruntime", dtype="bf16"), ValueError, "fp32 only"),
    (dict(backend="onnxruntime", compile=True), ValueError, "compile is for backend='torch'"),
    (dict(dtype="int8"), ValueError, "int8 runs on backend='openvino'"),
    (dict(dtype="int8", backend="openvino"), ValueError, "int8 needs calibration"),
    (dict(dtype="int8", backend="openvino", calibration=torch.randn(3, 64, 64)), ValueError,
     r"expected a non-empty N x C x H x W batch, got shape \(3, 64, 64\)"),
    (dict(dtype="int8", backend="openvino", calibration=torch.zeros(2, 3, 64, 64, dtype=torch.uint8)), TypeError,
     "expected floating-point images"),
    (dict(dtype="int8", backend="openvino", calibration=torch.randn(2, 1, 64, 64)), ValueError,
     "expected 3 channels, got 1"),
    (dict(dtype="int8", backend="openvino", calibration=torch.randn(2, 3, 16, 16)), ValueError,
     "smaller than the network's total stride 32"),
    (dict(dtype="int8", backend="openvino", calibration=[torch.randn(2, 3, 64, 64), torch.randn(2, 3, 32, 32)]),
     ValueError, "must all have one size"),
    (dict(dtype="int8", backend="openvino", calibration=[]), ValueError, "calibration is empty"),
    (dict(dtype="int8", backend="openvino", calibration=[[1, 2]]), TypeError, "calibration batch 0: expected a torch"),
    (dict(backend="openvino", compile=True), ValueError, "compile is for backend='torch'; openvino"),
])
def test_bad_options_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        optimize_for_inference(resnetlab.create_model("resnet18"), **kwargs)


def test_bad_input_gets_the_eager_models_error(images):
    optimized = optimize_for_inference(resnetlab.create_model("resnet18"), dtype="bf16")
    with pytest.raises(TypeError, match="floating-point"):
        optimized((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="3 input channels"):
        optimized(images[:, :1])
    with pytest.raises(TypeError, match="resnetlab ResNet"):
        optimize_for_inference(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="cannot be trained"):
        optimized.train()


def test_a_missing_openvino_is_one_clear_line():
    import subprocess
    import sys

    script = ("import sys; sys.modules['openvino'] = None\n"
              "import resnetlab\n"
              "try:\n"
              "    resnetlab.optimize_for_inference(resnetlab.create_model('resnet18'), backend='openvino')\n"
              "except RuntimeError as error:\n"
              "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "OpenVINO is not installed: pip install 'resnetlab[openvino]'", result.stderr


def test_int8_runs_at_its_calibration_size(images):
    model = trained_like("resnet18", images)
    int8 = optimize_for_inference(model, dtype="int8", backend="openvino", calibration=images.split(3))
    assert int8(images).shape == (6, 10)
    with pytest.raises(ValueError, match="calibrated on 64x64 images, got 32x32"):
        int8(images[:, :, :32, :32])
