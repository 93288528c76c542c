"""`resnetlab reproduce --quick`: every experiment runs end to end through the real command,
writes its report, figure and run folders, and reuses finished runs. This checks the pipeline,
not the science (docs/results.md holds the full runs)."""

import json
import re
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_cifar


def reproduce(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "resnetlab", "reproduce", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def table_rows(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and not set(line) <= set("|-") and cells[0] not in ("network", "ResNet-50"):
            rows[" ".join(cells[:2]) if cells[1] in "ABC" else cells[0]] = cells
    return rows


def test_degradation_quick_writes_figure_table_and_reuses_runs(tmp_path):
    out = tmp_path / "degradation"
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n\nkept text\n")
    result = reproduce("degradation", "--quick", "--seeds", "2", "--out", out, "--docs", docs)
    assert result.returncode == 0, result.stderr
    assert "resnet56-seed1: starting, 4 steps" in result.stderr
    assert re.search(r"^plain20-seed0: finished, training error [\d.]+%, test error [\d.]+%", result.stderr, re.M)
    report = (out / "report.md").read_text()
    rows = table_rows(report)
    assert set(rows) == {"plain20", "plain56", "resnet20", "resnet56"}
    assert rows["plain20"][1] == rows["resnet20"][1] == "0.27M"  # option A: a ResNet has its plain twin's params
    assert re.fullmatch(r"[\d.]+ \([\d.]+-[\d.]+\)", rows["resnet56"][3])  # mean (min-max) over 2 seeds
    assert re.fullmatch(r"\d+\.\d", rows["resnet56"][7])  # hours per run, by the runs' own clocks
    assert re.search(r"The 8 finished runs took \d+\.\d h in all", report)
    assert (out / "degradation.png").stat().st_size > 10_000
    assert len(list((out / "runs").glob("*/metrics.jsonl"))) == 8
    started = sorted((out / "runs").iterdir(), key=lambda folder: (folder / "config.json").stat().st_mtime_ns)
    # Each seed's deepest runs first, the ResNet before its plain twin.
    assert [folder.name for folder in started[:4]] == ["resnet56-seed0", "plain56-seed0", "resnet20-seed0",
                                                       "plain20-seed0"]
    text = docs.read_text()
    assert "kept text" in text and "<!-- reproduce:degradation -->" in text
    assert "figures/reproduce-degradation.png" in text
    assert (tmp_path / "figures" / "reproduce-degradation.png").is_file()

    # A second call reuses the finished runs: nothing is retrained, the table is the same.
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").glob("*/last.pt")}
    start = time.perf_counter()
    again = reproduce("degradation", "--quick", "--seeds", "2", "--out", out, "--docs", docs)
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stderr and "finished," not in again.stderr
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert table_rows((out / "report.md").read_text()) == rows
    assert docs.read_text().count("<!-- reproduce:degradation -->") == 1
    assert time.perf_counter() - start < 60


def test_degradation_depths_give_table_6_and_reuse_the_seeds_of_earlier_calls(tmp_path):
    out = tmp_path / "degradation"
    first = reproduce("degradation", "--quick", "--seeds", "2", "--out", out)
    assert first.returncode == 0, first.stderr
    result = reproduce("degradation", "--quick", "--seeds", "1", "--depths", "20,32,56,110", "--out", out)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    rows = table_rows(report)
    # plain nets stop at 56 as in Figure 6; ResNet-110 joins for Table 6
    assert set(rows) == {"plain20", "plain32", "plain56", "resnet20", "resnet32", "resnet56", "resnet110"}
    assert rows["resnet20"][4] == "2" and rows["resnet110"][4] == "1"  # seed 1 of the first call is kept
    assert rows["resnet110"][1] == "1.73M" and rows["resnet110"][5] == "6.43" and rows["resnet32"][6] == "4.16"
    verdict = [line for line in report.splitlines() if line.startswith("- ")]
    assert len(verdict) == 3 and all(re.match(r"- (yes|\*\*no\*\*): ", line) for line in verdict)
    assert "plain-56 above plain-20" in verdict[0] and "ResNet-56 below ResNet-20" in verdict[1]
    assert len(list((out / "runs").glob("*/metrics.jsonl"))) == 8 + 3

    # Figure 7 from the same runs: each finished degradation run measured its layer responses.
    assert len(list((out / "runs").glob("*/responses.json"))) == 8 + 3
    kept = json.loads((out / "runs" / "resnet56-seed0" / "responses.json").read_text())
    (out / "runs" / "resnet56-seed0" / "responses.json").unlink()  # a run finished before they were measured
    docs = tmp_path / "results.md"
    figure7 = reproduce("responses", "--quick", "--out", out, "--docs", docs)
    assert figure7.returncode == 0, figure7.stderr
    assert json.loads((out / "runs" / "resnet56-seed0" / "responses.json").read_text()) == kept  # from last.pt
    section = (out / "responses.md").read_text()
    assert table_rows(report) == rows  # degradation's report is left alone
    figure_rows = table_rows(section)
    assert list(figure_rows) == ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]
    assert [figure_rows[model][1] for model in figure_rows] == ["19", "55", "19", "55", "109"]
    claims = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(claims) == 3 and all(re.match(r"- (yes|\*\*no\*\*): ", line) for line in claims)
    assert "ResNet-20 responds less than plain-20" in claims[0] and "deeper ResNet" in claims[2]
    assert (out / "responses.png").stat().st_size > 10_000
    assert "<!-- reproduce:responses -->" in docs.read_text()
    assert (tmp_path / "figures" / "reproduce-responses.png").is_file()


def test_responses_without_finished_runs_says_what_is_missing(tmp_path):
    result = reproduce("responses", "--quick", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    section = (tmp_path / "responses.md").read_text()
    assert "No run has its responses yet." in section and "claims are not checked yet" in section
    assert "Not measured (no finished run with its weights): plain20, plain56, resnet20, resnet56, resnet110" in section
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report.md").exists()


def test_report_only_reports_the_finished_runs_and_trains_nothing(tmp_path):
    out = tmp_path / "degradation"
    empty = reproduce("degradation", "--quick", "--report-only", "--out", out)
    assert empty.returncode == 0, empty.stderr
    assert "not checked yet: plain20, plain56, resnet20, resnet56 have no finished run" in empty.stdout
    assert "finished run took" not in empty.stdout and "finished runs took" not in empty.stdout
    assert not (out / "runs").exists() and not (out / "degradation.png").exists()

    assert reproduce("degradation", "--quick", "--seeds", "1", "--out", out).returncode == 0
    result = reproduce("degradation", "--quick", "--seeds", "2", "--depths", "20,32,56", "--report-only", "--out", out)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    rows = table_rows(report)
    assert rows["resnet56"][4] == "1" and rows["plain32"][2:5] == ["-", "-", "0"] and rows["plain32"][7] == "-"
    assert "The 4 finished runs took" in report and "a report of the runs in OUT, nothing trained" in report
    assert " min (runs already finished" not in report  # a report-only call has no wall time of its own
    assert "Not finished yet: plain20-seed0" not in report  # the finished runs are not listed
    assert "resnet32-seed0 at step 0 of 4" in report and "resnet56-seed1 at step 0 of 4" in report
    verdict = [line for line in report.splitlines() if line.startswith("- ")]
    assert len(verdict) == 3 and "plain-56 above plain-20" in verdict[0]  # 20 and 56 have finished
    assert re.search(r"ResNet-56 minus ResNet-20 in training error over the second half of training: seed 0 "
                     r"below at \d of \d evaluations", report)
    assert sorted(p.parent.name for p in (out / "runs").glob("*/metrics.jsonl")) == [
        "plain20-seed0", "plain56-seed0", "resnet20-seed0", "resnet56-seed0"]


def test_degradation_trains_the_fast_recipe_by_default_says_so_and_keeps_to_it(tmp_path):
    out = tmp_path / "degradation-fast"
    result = reproduce("degradation", "--quick", "--seeds", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "the `fast` recipe of `resnetlab train`" in report and "section 4.2" not in report
    config = json.loads((out / "runs" / "resnet56-seed0" / "config.json").read_text())
    assert config["recipe"] == "fast" and config["tta_flip"] is False and config["schedule"] == "onecycle"
    other = reproduce("degradation", "--quick", "--seeds", "1", "--recipe", "paper-cifar", "--out", out)
    assert other.returncode != 0 and "holds a run of the fast recipe, not paper-cifar" in other.stderr
    paper = reproduce("degradation", "--quick", "--seeds", "1", "--recipe", "paper-cifar", "--out", tmp_path / "paper")
    assert paper.returncode == 0, paper.stderr
    assert "section 4.2's recipe" in (tmp_path / "paper" / "report.md").read_text()
    config = json.loads((tmp_path / "paper" / "runs" / "resnet56-seed0" / "config.json").read_text())
    assert config["recipe"] == "paper-cifar" and config["milestones"] == [2, 3]
    wrong = reproduce("cifar10", "--quick", "--recipe", "fast", "--out", tmp_path / "cifar")
    assert wrong.returncode == 2 and "--recipe is for degradation and shortcuts" in wrong.stderr


def test_a_run_folder_of_another_schedule_is_not_reused(tmp_path):
    from dataclasses import replace

    from resnetlab.reproduce import runs

    settings = runs.Settings(out=tmp_path, quick=True, recipe="paper-cifar")
    cfg = runs.run_config(settings, "resnet20", 0, 3)
    runs.train(runs.Run("resnet20-seed0", cfg), tmp_path, quick=True)
    folder = tmp_path / "runs" / "resnet20-seed0"
    with pytest.raises(ValueError, match="holds a run of 4 steps .*use another --out"):
        runs.check_same_schedule(folder, replace(cfg, max_steps=8))


def test_an_unfinished_run_carried_to_another_machine_ends_as_if_never_stopped(tmp_path, capsys):
    """A reproduction longer than a machine is kept goes on elsewhere from three files of each
    unfinished run (config.json, metrics.jsonl, last.pt): docs/run-logs keeps them."""
    import shutil

    from resnetlab.engine import fit
    from resnetlab.reproduce import runs

    settings = runs.Settings(out=tmp_path, quick=True, recipe="fast")
    run = runs.Run("resnet20-seed0", runs.run_config(settings, "resnet20", 0, 3))
    whole = runs.train(run, tmp_path / "whole", quick=True)

    here, cfg = runs.placed(run, tmp_path / "here", quick=True)
    fit(cfg, dataset=runs.run_dataset(cfg, quick=True), progress=False, stop_after=2)  # the machine goes
    there = tmp_path / "there" / "runs" / run.name
    there.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "last.pt"):
        shutil.copyfile(here / name, there / name)
    shutil.rmtree(tmp_path / "here")
    first = json.loads((there / "metrics.jsonl").read_text().splitlines()[0])

    capsys.readouterr()
    resumed = runs.train(run, tmp_path / "there", quick=True)
    assert resumed[0] == first  # continued from step 2, not trained again from the start
    said = capsys.readouterr().err.splitlines()
    assert said[0] == "resnet20-seed0: resuming at step 2 of 4"
    assert re.fullmatch(r"resnet20-seed0: finished, training error [\d.]+%, test error [\d.]+% \(0\.0 h by its clock\)",
                        said[-1])
    assert [row["step"] for row in resumed] == [row["step"] for row in whole] == [2, 4]
    assert [(row["train_err"], row["test_err"]) for row in resumed] == [(row["train_err"], row["test_err"])
                                                                         for row in whole]
    ended = torch.load(there / "last.pt", weights_only=True)["model"]
    reference = torch.load(tmp_path / "whole" / "runs" / run.name / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ended[key], reference[key]) for key in reference)


def test_interrupted_runs_go_on_before_new_ones_start(tmp_path):
    from resnetlab.engine import fit
    from resnetlab.reproduce import runs

    settings = runs.Settings(out=tmp_path, quick=True, recipe=runs.DEFAULT_RECIPE["degradation"])
    run = runs.Run("resnet20-seed0", runs.run_config(settings, "resnet20", 0, 30))
    _, cfg = runs.placed(run, tmp_path, quick=True)
    fit(cfg, dataset=runs.run_dataset(cfg, quick=True), progress=False, stop_after=2)  # the machine goes
    result = reproduce("degradation", "--quick", "--seeds", "1", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    begun = [line for line in result.stderr.splitlines() if ": resuming" in line or ": starting" in line]
    assert begun == ["resnet20-seed0: resuming at step 2 of 4", "resnet56-seed0: starting, 4 steps",
                     "plain56-seed0: starting, 4 steps", "plain20-seed0: starting, 4 steps"]


def test_the_deeper_net_is_compared_at_every_evaluation_of_the_second_half():
    from resnetlab.reproduce.degradation import _second_half_gap

    def curve(*errors):
        return [{"step": 10 * (i + 1), "train_err": err} for i, err in enumerate(errors)]

    finished = {"resnet20": {0: curve(50, 40, 30, 20), 1: curve(50, 40, 30, 20)},
                "resnet56": {0: curve(60, 45, 25, 21), 2: curve(1, 1, 1, 1)}}
    # steps 30 and 40 are past half of 40; seed 1 and seed 2 have no partner
    assert _second_half_gap(finished, "resnet", 56, 20) == (
        "ResNet-56 minus ResNet-20 in training error over the second half of training: seed 0 below at 1 of 2 "
        "evaluations, -2.00 points on average, -5.00 at the widest (iteration 30).")
    finished["resnet56"] = {2: curve(1, 1, 1, 1)}
    assert _second_half_gap(finished, "resnet", 56, 20).endswith(": no seed has finished both.")


def test_shortcuts_quick_counts_the_projection_parameters(tmp_path):
    result = reproduce("shortcuts", "--quick", "--out", tmp_path / "shortcuts", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    rows = table_rows((tmp_path / "shortcuts" / "report.md").read_text())
    for model in ("resnet20", "resnet32"):
        params = [int(rows[f"{model} {option}"][2].replace(",", "")) for option in "ABC"]
        assert params[0] < params[1] < params[2]  # A: no parameters; B: projections where shapes change; C: all
    assert rows["resnet20 A"][5] == "25.03"  # next to Table 3
    config = json.loads((tmp_path / "shortcuts" / "runs" / "resnet32-C-seed0" / "config.json").read_text())
    assert config["recipe"] == "paper-cifar"  # section 4.2's recipe unless --recipe says otherwise


def test_bottleneck_quick_v1_costs_less_than_v15(tmp_path):
    result = reproduce("bottleneck", "--quick", "--out", tmp_path / "bottleneck")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "bottleneck" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| v1")]
    macs = [float(row.split("|")[2].split()[0]) for row in rows]
    assert macs == [3.858, 4.089]  # Table 1's 3.8 G for the paper's v1; 4.1 G for v1.5 (PAPER.md)
    assert all(float(row.split("|")[4]) > 0 and float(row.split("|")[5]) > 0 for row in rows)


def test_cifar10_quick_on_a_tiny_cifar_in_the_real_format(tmp_path):
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", n_per_batch=40)
    result = reproduce("cifar10", "--quick", "--data-dir", tmp_path / "data", "--out", tmp_path / "cifar")
    assert result.returncode == 0, result.stderr
    rows = table_rows((tmp_path / "cifar" / "report.md").read_text())
    assert list(rows) == ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    assert rows["resnet110"][3] == "6.43" and rows["resnet110"][1] == "1.73M"
    config = json.loads((tmp_path / "cifar" / "runs" / "resnet110-seed0" / "config.json").read_text())
    assert config["recipe"] == "paper-cifar" and config["normalize"] == "per-pixel"
    assert config["warmup_lr"] == 0.01  # section 4.2's warm-up for 110 layers


@pytest.mark.parametrize("args, message", [
    (["mnist"], "invalid choice"),
    (["degradation", "--epochs", "0"], "positive integer"),
    (["degradation", "--depths", "20,21"], "expected CIFAR-family depths among 20, 32, 44, 56, 110"),
    (["degradation", "--depths", "twenty"], "comma-separated depths"),
    (["shortcuts", "--report-only"], "--report-only is for degradation"),
])
def test_reproduce_usage_errors(args, message):
    result = reproduce(*args)
    assert result.returncode == 2 and message in result.stderr
