"""The command line, run as a user runs it: a real process."""

import json
import subprocess
import sys

import pytest


def resnetlab(*args):
    return subprocess.run([sys.executable, "-m", "resnetlab", *args], capture_output=True, text=True, timeout=120)


def test_no_arguments_prints_help():
    result = resnetlab()
    assert result.returncode == 0
    assert "summary" in result.stdout and "usage" in result.stdout


def test_summary_prints_table1():
    result = resnetlab("summary", "resnet50")
    assert result.returncode == 0, result.stderr
    assert "conv5_x" in result.stdout and "25,557,032" in result.stdout and "4.089 G" in result.stdout
    v1 = resnetlab("summary", "resnet50", "--stride-in-1x1", "--json")
    assert json.loads(v1.stdout)["macs"] == 3857973248


def test_models_lists_every_name():
    import resnetlab as lib

    result = resnetlab("models")
    assert [line.split()[0] for line in result.stdout.splitlines()] == lib.list_models()


@pytest.mark.parametrize(
    "args, message",
    [
        (["summary", "resnet5"], "unknown model 'resnet5'; did you mean"),
        (["summary"], "the following arguments are required: MODEL"),
        (["summary", "resnet50", "--input-size", "-3"], "expected a positive integer"),
        (["summary", "resnet50", "--input-size", "8"], "at least 32x32"),
        (["summary", "resnet50", "--shortcut", "D"], "invalid choice: 'D'"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    result = resnetlab(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_is_installed():
    import shutil

    script = shutil.which("resnetlab") or str(__import__("pathlib").Path(sys.executable).with_name("resnetlab"))
    result = subprocess.run([script, "summary", "resnet18"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "11,689,512" in result.stdout
