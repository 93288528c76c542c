"""The `resnetlab` command: parse arguments, call the library, print. No work happens here.

Usage errors exit with status 2 and one line; a failing command exits 1 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings

from .model import SHORTCUTS


class UsageError(Exception):
    """A command-line argument that the library rejected (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_models(args) -> None:
    from .zoo import get_config, list_models

    for name in list_models():
        cfg = get_config(name)
        print(f"{name:<12} {cfg.stem:<9} {cfg.block:<10} shortcut {cfg.shortcut:<4} layers {list(cfg.layers)}")


def cmd_summary(args) -> None:
    from .summary import summary
    from .zoo import create_model

    overrides = {"stride_in_1x1": True} if args.stride_in_1x1 else {}
    if args.shortcut:
        overrides["shortcut"] = args.shortcut
    try:
        model = create_model(args.model, **overrides)
        size = args.input_size or (224 if model.cfg.stem == "imagenet" else 32)
        table = summary(model, (model.cfg.in_chans, size, size))
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    if args.json:
        rows = [dict(stage=r.stage, output_size=list(r.output_size), blocks=r.blocks, params=r.params, macs=r.macs)
                for r in table.rows]
        print(json.dumps({"model": args.model, "input_size": list(table.input_size), "params": table.params,
                          "macs": table.macs, "rows": rows}, indent=2))
    else:
        print(table)


# --- train -----------------------------------------------------------------------------------------

# TrainConfig fields with a hand-written flag (the documented CLI's names) or none on the command line.
_TRAIN_SPECIAL = {"model_overrides", "recipe", "epochs", "max_steps", "out"}
# Choices listed in the help but checked by TrainConfig.validate, whose error names the close matches.
_NAMED_BY_THE_LIBRARY = {"model", "data"}
_MODEL_FLAGS = {  # model overrides, as flags of their own
    "shortcut": dict(choices=SHORTCUTS, help="shortcut option (section 3.3)"),
    "stride_in_1x1": dict(action=argparse.BooleanOptionalAction, help="the paper's v1 bottleneck"),
    "zero_init_last": dict(action=argparse.BooleanOptionalAction, help="zero each residual branch's last BN"),
    "drop_path_rate": dict(type=float, metavar="P", help="stochastic depth rate of the last block"),
}


def _depths(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated depths like 20,32,44,56, got {text!r}") from None
    from .zoo import get_config, list_models

    known = [int(name.removeprefix("resnet")) for name in list_models() if name.startswith("resnet")
             and get_config(name).stem == "cifar"]
    if not depths or any(d not in known for d in depths):
        raise argparse.ArgumentTypeError(f"expected CIFAR-family depths among {', '.join(map(str, known))}, "
                                         f"got {text!r}")
    return depths


def _comma_separated(convert, example: str):
    """An argparse type for a list of numbers like `example`, as a tuple."""
    def parse(text: str) -> tuple:
        try:
            return tuple(convert(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {example}, got {text!r}") from None
    return parse


_TUPLE_FLAGS = {"milestones": (_comma_separated(int, "steps like 32000,48000"), "S1,S2"),
                "train_sizes": (_comma_separated(int, "image sizes like 16,20"), "S1,S2"),
                "train_size_until": (_comma_separated(float, "fractions like 0.3,0.6"), "F1,F2")}


def _add_config_flags(groups: dict) -> None:
    """One flag per TrainConfig field, in its group, with the field's help and choices, so every
    setting of a recipe can be overridden."""
    from .recipes import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        if f.name in _TRAIN_SPECIAL:
            continue
        flag, meta, kind = "--" + f.name.replace("_", "-"), f.metadata, str(f.type)
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        spec = dict(help=meta["help"], metavar=None if choices else meta["metavar"] or f.name.upper())
        if f.name in _TUPLE_FLAGS:
            parse, metavar = _TUPLE_FLAGS[f.name]
            spec.update(type=parse, metavar=metavar)
        elif "bool" in kind:
            spec = dict(help=meta["help"], action=argparse.BooleanOptionalAction, default=None)
        elif "int" in kind:
            spec.update(type=int, metavar="N")
        elif "float" in kind:
            spec.update(type=float, metavar="X")
        if choices and f.name in _NAMED_BY_THE_LIBRARY:
            spec["help"] += f"; one of {', '.join(choices)}"
        elif choices:
            spec["choices"] = list(choices)
        groups[meta["group"]].add_argument(flag, **spec)


def cmd_train(args) -> None:
    from . import dist
    from .device import resolve_device
    from .engine import fit
    from .recipes import TrainConfig
    from .runfolder import RunFolder, default_out

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in _TRAIN_SPECIAL and getattr(args, f.name, None) is not None}
    overrides = {name: getattr(args, name) for name in _MODEL_FLAGS if getattr(args, name) is not None}
    if overrides:
        given["model_overrides"] = overrides
    given.update({name: getattr(args, name) for name in ("epochs", "max_steps", "recipe")
                  if getattr(args, name) is not None})
    if args.resume and not args.out:
        raise UsageError("--resume needs --out, the run folder to continue")
    try:
        device = resolve_device(given.get("device", TrainConfig.device))
    except ValueError as error:
        raise UsageError(str(error)) from None
    dist.init(device.type)
    # every process must agree on the default folder (its name has the time in it)
    given["out"] = args.out or dist.broadcast_from_main(
        default_out(given.get("model", TrainConfig.model), given.get("data", TrainConfig.data)))
    # a damaged run folder: a failure, not usage
    saved = RunFolder(given["out"]).saved_config() if args.resume else None
    try:
        cfg = _train_config(given, saved)
    except ValueError as error:
        raise UsageError(str(error)) from None
    main_process = dist.is_main()
    try:
        with dist.stop_on_sigterm():
            result = fit(cfg, resume=args.resume, progress=not args.quiet)
    except RuntimeError as error:
        raise dist.explain_failure(error) from None
    finally:
        dist.shutdown()
    if main_process:
        finished = "" if result.trained_steps else (" (the run had already finished: nothing trained; a larger "
                                                    "--max-steps or --epochs extends it)")
        print(f"test accuracy {result.test_acc1:.2f}% (best {result.best_acc1:.2f}%) after {result.steps} steps; "
              f"run folder {result.out}{finished}")


def _train_config(given: dict, saved):
    """The run's config: the recipe with the flags given; resuming (`saved`), the run's own
    settings with the flags that may change (a contradicting flag is a usage error)."""
    from .recipes import make_config, resume_request

    if saved is None:
        return make_config(given.pop("recipe", None), **given)
    return resume_request(saved, given)


# --- eval, predict, export ------------------------------------------------------------------------


def cmd_eval(args) -> None:
    from .evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, data=args.data, data_dir=args.data_dir, ten_crop=args.ten_crop,
                                 multi_scale=args.multi_scale, device=args.device, precision=args.precision)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['data']} {result['split']}: top-1 {result['test_acc1']:.2f}%  "
              f"top-5 {result['test_acc5']:.2f}%  "
              f"loss {result['test_loss']:.4f}  ({result['images']} images, {result['view']})\n")
        from .measure import markdown

        print(markdown(["class", "images", "top-1"], [[row["class"], row["images"], f"{row['acc1']:.2f}%"]
                                                       for row in result["per_class"]]))
        if result["confusion_png"]:
            print(f"\nconfusion matrix: {result['confusion_png']}")


def cmd_predict(args) -> None:
    from .evaluation import predict_files

    predictions = predict_files(args.checkpoint, args.images, top_k=args.top_k, device=args.device,
                                precision=args.precision, data_dir=args.data_dir)
    for item in predictions:  # a file that cannot be read is said on stderr and skipped
        if "error" in item:
            print(f"resnetlab predict: skipped {item['image']}: {item['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(predictions, indent=2))
        return
    for item in predictions:
        if "top" in item:
            best = ", ".join(f"{p['class']} {100 * p['probability']:.1f}%" for p in item["top"])
            print(f"{item['image']}: {best}")


def cmd_export(args) -> None:
    from .evaluation import export_checkpoint

    if args.push and args.format != "hub":
        raise UsageError("--push uploads a hub folder: use it with --format hub")
    path = export_checkpoint(args.checkpoint, args.format, args.out)
    print(f"wrote {path}")
    if args.push:
        from .evaluation import push_to_hub

        print(f"pushed to {push_to_hub(path, args.push)}")


def cmd_reproduce(args) -> None:
    from pathlib import Path

    from .reproduce import DEFAULT_OUT, DEFAULT_RECIPE, Settings, report_path, reproduce

    if args.report_only and args.experiment != "degradation":
        raise UsageError("--report-only is for degradation, the experiment that runs over several sittings")
    if args.recipe and args.experiment not in DEFAULT_RECIPE:  # the experiments whose runs take a recipe
        raise UsageError(f"--recipe is for {' and '.join(DEFAULT_RECIPE)}; {args.experiment} has its own recipe")
    folder = DEFAULT_OUT.get(args.experiment, args.experiment)
    out = Path(args.out or f"runs/reproduce-{folder}{'-quick' if args.quick else ''}")
    settings = Settings(out=out, data_dir=args.data_dir, device=args.device, epochs=args.epochs, seeds=args.seeds,
                        depths=args.depths, jobs=args.jobs, quick=args.quick, compile=args.compile,
                        report_only=args.report_only, recipe=args.recipe)
    print(reproduce(args.experiment, settings, docs=args.docs))
    print(f"report: {report_path(args.experiment, out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnetlab",
                     description="Paper-faithful ResNets (He et al. 2015): models, summaries, training.")
    parser.add_argument("--version", action="version", version=f"resnetlab {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    models = commands.add_parser("models", help="list every model name")
    models.set_defaults(run=cmd_models)
    for add in (_add_summary, _add_train, _add_eval, _add_predict, _add_reproduce, _add_export):
        add(commands)
    return parser


def _add_summary(commands) -> None:
    summary = commands.add_parser("summary", help="Table-1-style summary: output sizes, params, multiply-adds")
    summary.add_argument("model", metavar="MODEL", help="a model name (see `resnetlab models`)")
    summary.add_argument("--input-size", type=_positive_int, metavar="N",
                         help="image side (default 224, CIFAR family 32)")
    summary.add_argument("--stride-in-1x1", action="store_true",
                         help="the paper's v1 bottleneck (stride on the first 1x1)")
    summary.add_argument("--shortcut", choices=SHORTCUTS, help="shortcut option (section 3.3)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of the table")
    summary.set_defaults(run=cmd_summary)


def _add_train(commands) -> None:
    from .recipes import GROUPS, RECIPES

    train = commands.add_parser("train", help="train a model (default: resnet20 on Fashion-MNIST, recipe fast)",
                                description="Train a network. Every flag overrides the recipe's default; "
                                            "with --resume, a run continues with its own settings.")
    groups = {name: train.add_argument_group(name) for name in GROUPS}
    groups["run"].add_argument("--recipe", choices=list(RECIPES),
                               help="the defaults every other flag overrides (default fast; finetune with "
                                    "--pretrained)")
    length = groups["optimisation"].add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, metavar="N", help="training epochs")
    length.add_argument("--max-steps", type=_positive_int, metavar="N", help="training steps (instead of epochs)")
    groups["run"].add_argument("--out", metavar="DIR",
                               help="run folder (default runs/MODEL-DATA-TIME); never overwritten")
    groups["run"].add_argument("--resume", action="store_true",
                               help="continue the run in --out from its last.pt (a longer --max-steps/--epochs "
                                    "extends it)")
    groups["run"].add_argument("--quiet", action="store_true", help="no progress output")
    _add_config_flags(groups)
    for name, spec in _MODEL_FLAGS.items():
        groups["model"].add_argument("--" + name.replace("_", "-"), **spec)
    train.set_defaults(run=cmd_train)


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on its test set")
    evaluate.add_argument("--checkpoint", required=True, metavar="FILE")
    evaluate.add_argument("--data", metavar="NAME", help="another dataset than the one it was trained on")
    evaluate.add_argument("--data-dir", metavar="DIR")
    views = evaluate.add_mutually_exclusive_group()
    views.add_argument("--ten-crop", action="store_true", help="10-crop testing (image folders, section 3.4)")
    views.add_argument("--multi-scale", action="store_true",
                       help="fully convolutional multi-scale testing (image folders, section 3.4)")
    evaluate.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="default: cuda where available")
    evaluate.add_argument("--precision", choices=["fp32", "bf16", "int8"],
                          help="evaluate the network optimized for inference in this precision (int8: OpenVINO, "
                               "calibrated on the run's training images); default: as the run evaluated")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=cmd_eval)


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="classify image files (or every image in folders) with a checkpoint")
    predict.add_argument("--checkpoint", required=True, metavar="FILE")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                         help="image files, and folders searched recursively for images")
    predict.add_argument("--top-k", type=_positive_int, default=3, metavar="K")
    predict.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="default: cuda where available")
    predict.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                         help="fp32: the training logits; bf16: faster where the machine has native bf16; "
                              "int8: OpenVINO, calibrated on the run's training images")
    predict.add_argument("--data-dir", metavar="DIR", help="int8: where the run's training data is")
    predict.add_argument("--json", action="store_true",
                         help="one JSON record per image: its top classes, or the error that skipped it")
    predict.set_defaults(run=cmd_predict)


def _add_reproduce(commands) -> None:
    from .reproduce import EXPERIMENTS, RUN_RECIPES

    reproduce = commands.add_parser("reproduce", help="reproduce a finding of the paper (tables and figures)")
    reproduce.add_argument("experiment", choices=list(EXPERIMENTS))
    reproduce.add_argument("--out", metavar="DIR",
                           help="folder for the runs and the report (default runs/reproduce-EXPERIMENT; responses "
                                "reads the degradation runs, runs/reproduce-degradation); finished runs in it are "
                                "reused, an interrupted one resumes")
    reproduce.add_argument("--data-dir", metavar="DIR", help="where the dataset is (cifar10: the python batches)")
    reproduce.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="default: cuda where available")
    reproduce.add_argument("--epochs", type=_positive_int, metavar="N",
                           help="epochs per run (default: the experiment's)")
    reproduce.add_argument("--seeds", type=_positive_int, metavar="N",
                           help="seeds per network (default: the experiment's)")
    reproduce.add_argument("--depths", type=_depths, metavar="D1,D2,...",
                           help="degradation: the 6n+2 depths of plain nets and ResNets (default 20,56; "
                                "plain nets stop at 56 as in Figure 6; 20,32,44,56,110 gives Table 6)")
    reproduce.add_argument("--recipe", choices=list(RUN_RECIPES),
                           help="degradation and shortcuts: the runs' recipe on the experiment's epochs (default: fast "
                                "for degradation; paper-cifar, section 4.2's with its lr drops at 50%% and 75%% "
                                "of the run, for shortcuts)")
    reproduce.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                           help="training runs at once (processes)")
    reproduce.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                           help="torch.compile the training (default: decided per run, as by train)")
    reproduce.add_argument("--quick", action="store_true",
                           help="a few steps on a data subset: checks the pipeline only")
    reproduce.add_argument("--report-only", action="store_true",
                           help="degradation: report the runs finished in OUT so far and train nothing "
                                "(for an experiment that runs over several sittings)")
    reproduce.add_argument("--docs", metavar="FILE",
                           help="also write the report as a section of FILE (docs/results.md)")
    reproduce.set_defaults(run=cmd_reproduce)


def _add_export(commands) -> None:
    from .evaluation import EXPORT_FORMATS

    export = commands.add_parser("export",
                                 help="write a checkpoint's model as ONNX, safetensors or another library's weights")
    export.add_argument("--checkpoint", required=True, metavar="FILE")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", required=True, metavar="PATH")
    export.add_argument("--push", metavar="ORG/NAME", help="with --format hub: upload the folder to the Hugging "
                        "Face hub (needs huggingface_hub and a login)")
    export.set_defaults(run=cmd_export)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"resnetlab: warning: {message}\n"


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .host import keep_freed_memory

    warnings.formatwarning = _one_line_warning
    keep_freed_memory()  # or every step page-faults its activations in afresh: see resnetlab/host.py
    from .engine import Interrupted

    try:
        args.run(args)
    except Interrupted as stop:
        print(f"resnetlab {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except UsageError as error:
        print(f"resnetlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        print(f"resnetlab {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
