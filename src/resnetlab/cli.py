"""The `resnetlab` command: parse arguments, call the library, print. No work happens here.

Usage errors exit with status 2 and one line; a failing command exits 1 with one line.
"""

from __future__ import annotations

import argparse
import json
import sys


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnetlab", description="Paper-faithful ResNets (He et al. 2015): models, summaries, training.")
    parser.add_argument("--version", action="version", version=f"resnetlab {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list every model name")
    models.set_defaults(run=cmd_models)

    summary = commands.add_parser("summary", help="Table-1-style summary: output sizes, params, multiply-adds")
    summary.add_argument("model", metavar="MODEL", help="a model name (see `resnetlab models`)")
    summary.add_argument("--input-size", type=_positive_int, metavar="N", help="image side (default 224, CIFAR family 32)")
    summary.add_argument("--stride-in-1x1", action="store_true", help="the paper's v1 bottleneck (stride on the first 1x1)")
    summary.add_argument("--shortcut", choices=["A", "B", "C", "none"], help="shortcut option (section 3.3)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of the table")
    summary.set_defaults(run=cmd_summary)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.run(args)
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
