"""`resnetlab reproduce`: the paper's findings, re-measured on the data at hand.

  degradation  plain-20/56 vs ResNet-20/56 (Figure 6, Table 6): plain nets get worse with depth,
               deeper ResNets better. One recipe (DEFAULT_RECIPE's or --recipe) for every network, several seeds.
  shortcuts    ResNet-20/32 with shortcut options A, B and C (section 3.3, Table 3).
  bottleneck   ResNet-50 v1 (stride on the first 1x1) vs v1.5 (stride on the 3x3): cost and speed.
  cifar10      the exact paper-cifar recipe for ResNet-20..110 on CIFAR-10 (Table 6).
  responses    the std of each 3x3 layer's responses (Figure 7), of the degradation runs' final weights.

Every training run is an ordinary run folder under OUT/runs/; a reproduction that is stopped
resumes its unfinished run and skips the finished ones when started again with the same OUT.
The report (tables, figure, the command) is OUT/report.md (responses, which reads the degradation
runs' OUT: OUT/responses.md), and optionally a section of docs.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .bottleneck import bottleneck
from .cifar10 import cifar10
from .degradation import degradation
from .report import describe_device, update_docs
from .responses import responses
from .runs import DEFAULT_RECIPE, RUN_RECIPES, Settings
from .shortcuts import shortcuts

__all__ = ["DEFAULT_OUT", "DEFAULT_RECIPE", "EXPERIMENTS", "RUN_RECIPES", "Settings", "reproduce", "report_path"]

EXPERIMENTS = {"degradation": degradation, "shortcuts": shortcuts, "bottleneck": bottleneck, "cifar10": cifar10,
               "responses": responses}
# An experiment that reports on another one's runs keeps to its own files in that OUT.
REPORT_NAMES = {"responses": "responses"}
# ... and reads that experiment's OUT by default.
DEFAULT_OUT = {"responses": "degradation"}


def report_path(experiment: str, out: Path) -> Path:
    """Where `reproduce` writes the experiment's report in OUT."""
    return out / f"{REPORT_NAMES.get(experiment, 'report')}.md"


def reproduce(experiment: str, settings: Settings, docs: str | Path | None = None) -> str:
    """Run one experiment and write its report into OUT (report_path) and its section of `docs`;
    returns the section."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    settings = replace(settings, recipe=settings.recipe or DEFAULT_RECIPE.get(experiment))
    settings.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    body = EXPERIMENTS[experiment](settings)
    minutes = (time.perf_counter() - start) / 60
    command = "resnetlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else \
        f"resnetlab reproduce {experiment}"
    device = describe_device(settings.device)
    timing = ("a report of the runs in OUT, nothing trained" if settings.report_only else
              f"{minutes:.1f} min, nothing trained (the finished runs in OUT measured where not yet)"
              if experiment in REPORT_NAMES else
              f"{minutes:.1f} min (runs already finished in OUT are reused, not retrained)")
    section = (f"## {experiment}{' (--quick: checks the pipeline, not the science)' if settings.quick else ''}\n\n"
               f"`{command}` on {device}, torch {torch.__version__}: {timing}.\n\n{body}")
    report = report_path(experiment, settings.out)
    report.write_text(section)
    if docs is not None:
        update_docs(Path(docs), experiment, section, settings.out)
    report.with_suffix(".json").write_text(json.dumps({"experiment": experiment, "minutes": minutes,
                                                          "settings": {**vars(settings), "out": str(settings.out)}},
                                                         indent=2) + "\n")
    return section
