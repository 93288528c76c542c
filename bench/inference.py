"""Inference throughput of ResNet-18/50 at 224x224: timm, torchvision and resnetlab, eager and
optimized, against the machine's measured matmul peak; and whether the optimized models agree.

On the CPU, OpenVINO as its documentation shows it (fp32, bf16, and int8 by NNCF on 64 images,
from torchvision's model) and torch's own int8 (torchao's PT2E quantization, compiled) are
measured beside resnetlab's OpenVINO backend, with the ratio of resnetlab's fastest row to
OpenVINO int8 by hand.

Usage: python bench/inference.py [--models resnet18,resnet50] [--batches 1,16] [--device cpu]
                                 [--rounds 5] [--seconds 1] [--data-dir DIR] [--checkpoint FILE]
                                 [--no-compile] [--default-malloc]
Every row of a table is measured in the same run, taking turns (bench/common.py). The agreement
check uses one set of weights in all three libraries (timm's initialisation, with BN statistics
calibrated on real images so that the logits are those of a working network) and 256
Fashion-MNIST test images scaled to 224x224. Untrained weights leave many near-ties between
the top two classes, which bf16 and int8 rounding may swap; --checkpoint (e.g. runs/main-job/best.pt)
adds the agreement of a trained network over its whole test set.
"""

from __future__ import annotations

import contextlib
import io
import logging

import torch
import torch.nn.functional as F

import resnetlab
from common import common_arguments, header, interleaved_rates, markdown

torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on every device
torch.backends.cudnn.allow_tf32 = False


def fixed_images(data_dir, count: int, device) -> torch.Tensor:
    """`count` real images: Fashion-MNIST test images, scaled to 224x224, as 3 channels."""
    from resnetlab.data import load_dataset

    images = load_dataset("fashion-mnist", data_dir).test.images[:count].float() / 255
    images = F.interpolate(images, size=224, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return ((images - 0.5) / 0.25).contiguous().to(device)


def calibrated(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Running BN statistics from `images`, as training would leave them."""
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        model.train()(images)
    return model.eval()


def networks(name: str, images: torch.Tensor, device) -> dict[str, torch.nn.Module]:
    import timm
    import torchvision

    torch.manual_seed(0)
    reference = calibrated(timm.create_model(name).to(device), images[:64])
    tv = getattr(torchvision.models, name)().to(device).eval()
    tv.load_state_dict(reference.state_dict())
    ours = resnetlab.create_model(name, pretrained=reference.state_dict()).to(device).eval()
    return {"timm": reference, "torchvision": tv, "resnetlab": ours}


def agreement(nets: dict, images: torch.Tensor) -> list[list]:
    """Relative logit error against timm (fp32), top-1 agreement and the logits' cosine
    similarity with it (mean and smallest over the images). int8 calibrates on 64 other images
    than the 256 compared."""
    rows = []
    with torch.inference_mode():
        expected = torch.cat([nets["timm"](chunk) for chunk in images.split(32)])
        variants = [("resnetlab optimized fp32", {}), ("resnetlab optimized bf16", dict(dtype="bf16"))]
        if expected.device.type == "cpu":  # as in main(): ONNX Runtime and OpenVINO run on the CPU here
            calibration = calibration_images(images.device)
            variants += [("resnetlab optimized fp32, onnxruntime", dict(backend="onnxruntime")),
                         ("resnetlab optimized int8, openvino", dict(backend="openvino", dtype="int8",
                                                                     calibration=calibration))]
        for label, options in variants:
            model = resnetlab.optimize_for_inference(nets["resnetlab"], **options)
            got = torch.cat([model(chunk) for chunk in images.split(32)])
            error = ((got - expected).abs().max() / expected.abs().max()).item()
            agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
            cosine = F.cosine_similarity(got, expected, dim=1)
            rows.append([label, f"{error:.1e}", f"{100 * agree:.1f}%", f"{cosine.mean():.4f}", f"{cosine.min():.4f}"])
    return rows


def calibration_images(device, count: int = 64) -> torch.Tensor:
    """`count` Fashion-MNIST training images prepared as fixed_images prepares test images."""
    from resnetlab.data import load_dataset

    images = load_dataset("fashion-mnist").train.images[:count].float() / 255
    images = F.interpolate(images, size=224, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return ((images - 0.5) / 0.25).contiguous().to(device)


def openvino_by_hand(model: torch.nn.Module, calibration: torch.Tensor) -> dict[str, object]:
    """OpenVINO as its documentation shows it, on torchvision's network: convert the torch model,
    compile it for the CPU in fp32 and bf16, and NNCF's default post-training quantization on 64
    images for int8."""
    import nncf
    import openvino

    core = openvino.Core()
    threads = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
    network = openvino.convert_model(model, example_input=calibration[:1], input=[(-1, 3, 224, 224)])
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
        quantized = nncf.quantize(network, nncf.Dataset([calibration.numpy()]), subset_size=1)
    return {"fp32": core.compile_model(network, "CPU", {**threads, "INFERENCE_PRECISION_HINT": "f32"}),
            "bf16": core.compile_model(network, "CPU", {**threads, "INFERENCE_PRECISION_HINT": "bf16"}),
            "int8": core.compile_model(quantized, "CPU", threads)}


def torch_int8_by_hand(model: torch.nn.Module, calibration: torch.Tensor):
    """torch's own int8, the other candidate for resnetlab's int8 backend: torchao's PT2E
    post-training quantization with X86InductorQuantizer (its default config) on torchvision's
    network, calibrated on the same images, compiled by inductor with freezing. The export is
    strict: the non-strict one fails on torchvision's ResNet-50 ("Input partition has more than
    one output node", pytorch/ao#4478)."""
    import torch._inductor.config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (calibration[:2],), dynamic_shapes={"x": {0: batch}}, strict=True)
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported.module(), quantizer)
    with torch.no_grad():
        prepared(calibration)
    compiled = torch.compile(convert_pt2e(prepared), dynamic=False)  # one graph per batch size, as the others

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch._inductor.config.patch(freezing=True), torch.no_grad():
            return compiled(x)
    return run


def trained_agreement(path, device) -> list[list]:
    """bf16 and int8 against fp32 (all three optimized as `resnetlab eval --precision` runs them:
    int8 on OpenVINO, calibrated on 256 of the run's training images) over the whole test set of
    a trained checkpoint: top-1, top-1 agreement, the logits' mean and smallest cosine similarity."""
    from resnetlab.checkpoint import load_model
    from resnetlab.data import load_dataset
    from resnetlab.data.augment import Normalize
    from resnetlab.evaluation import optimized

    model, meta = load_model(path, device)
    dataset = load_dataset(meta["data"])
    test = dataset.test
    normalize = Normalize.from_state_dict(meta["normalize"])
    precisions = ("fp32", "bf16", "int8") if device.type == "cpu" else ("fp32", "bf16")  # OpenVINO: the CPU
    logits = {}
    for precision in precisions:
        network = optimized(model, precision, dataset, normalize)
        logits[precision] = torch.cat([network(normalize(chunk.to(device))).cpu() for chunk in test.images.split(1000)])
    rows = []
    for precision, got in logits.items():
        cosine = F.cosine_similarity(got, logits["fp32"], dim=1)
        rows.append([f"{meta['model']} ({path}), {len(test)} test images, one view", precision,
                     f"{100 * (got.argmax(1) == test.labels).float().mean():.2f}%",
                     f"{100 * (got.argmax(1) == logits['fp32'].argmax(1)).float().mean():.2f}%",
                     f"{cosine.mean():.4f}", f"{cosine.min():.4f}"])
    return rows


def main() -> None:
    parser = common_arguments(__doc__, seconds=1.0)
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--checkpoint", default=None,
                        help="a trained checkpoint for the bf16 and int8 agreement check (--models '' for it alone)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the compiled rows (compiling takes minutes)")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = header("Inference, 224x224", device, args)
    if args.checkpoint:
        print(markdown(["trained network", "precision", "top-1", "top-1 agreement with fp32", "mean cosine",
                        "smallest cosine"], trained_agreement(args.checkpoint, device)) + "\n")
    models = [name for name in args.models.split(",") if name]  # --models '': the --checkpoint check alone
    images = fixed_images(args.data_dir, 256, device) if models else None
    optimize = resnetlab.optimize_for_inference
    for name in models:
        nets = networks(name, images, device)
        flops = 2 * resnetlab.summary(nets["resnetlab"], input_size=(3, 224, 224)).macs
        print(f"## {name} ({flops / 1e9:.2f} GFLOP per image)\n")
        print(markdown(["resnetlab optimized vs timm fp32, 256 real images", "max relative logit error",
                        "top-1 agreement", "mean cosine similarity", "smallest cosine similarity"],
                       agreement(nets, images)) + "\n")
        engines = {}
        if device.type == "cpu":  # built once per network: quantizing takes seconds
            calibration = calibration_images(device)
            by_hand = openvino_by_hand(nets["torchvision"], calibration)
            engines = {f"OpenVINO {p} by hand": (p, lambda x, c=c: c(x.numpy())) for p, c in by_hand.items()}
            if not args.no_compile:
                engines["torch int8 by hand (torchao PT2E, compiled)"] = (
                    "int8", torch_int8_by_hand(nets["torchvision"], calibration))
            for precision in ("fp32", "bf16", "int8"):
                ours = optimize(nets["resnetlab"], backend="openvino", dtype=precision,
                                calibration=calibration if precision == "int8" else None)
                engines[f"resnetlab optimized {precision}, openvino"] = (precision, ours)
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, 3, 224, 224, device=device)
            variants = {
                "timm eager (fp32, NCHW)": ("fp32", nets["timm"]),
                "torchvision eager": ("fp32", nets["torchvision"]),
                "resnetlab eager": ("fp32", nets["resnetlab"]),
                "resnetlab optimized fp32": ("fp32", optimize(nets["resnetlab"])),
                "resnetlab optimized fp32, compiled": ("fp32", optimize(nets["resnetlab"],
                                                                       compile=not args.no_compile)),
                "resnetlab optimized bf16": ("bf16", optimize(nets["resnetlab"], dtype="bf16")),
                "resnetlab optimized bf16, compiled": ("bf16", optimize(nets["resnetlab"], dtype="bf16",
                                                                        compile=not args.no_compile)),
            }
            if args.no_compile:
                variants = {label: v for label, v in variants.items() if "compiled" not in label}
            if device.type == "cpu":  # ONNX Runtime's CUDA provider is not part of the onnx extra
                variants["resnetlab optimized fp32, onnxruntime"] = ("fp32", optimize(nets["resnetlab"],
                                                                                       backend="onnxruntime"))
            variants.update(engines)
            runners = {label: (lambda model=model: model(x), batch) for label, (_, model) in variants.items()}
            with torch.inference_mode():
                rates = interleaved_rates(runners, device, rounds=args.rounds, seconds=args.seconds)
            base = rates["timm eager (fp32, NCHW)"]
            rows = [[label, f"{rate:,.1f}", f"{rate / base:.2f}x", f"{rate * flops / 1e9:,.0f}",
                     f"{100 * rate * flops / peak[variants[label][0]]:.0f}% ({variants[label][0]})"
                     if variants[label][0] in peak else "-"]
                    for label, rate in rates.items()]
            print(f"batch {batch}:\n")
            print(markdown(["network", "img/s", "vs timm", "GFLOP/s", "share of matmul peak"], rows) + "\n", flush=True)
            if engines:
                fastest = max(r for label, r in rates.items() if label.startswith("resnetlab"))
                print(f"resnetlab's fastest / OpenVINO int8 by hand: {fastest / rates['OpenVINO int8 by hand']:.2f}x\n")


if __name__ == "__main__":
    main()
