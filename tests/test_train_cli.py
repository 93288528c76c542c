"""The trainer as users run it: real processes on the real Fashion-MNIST, killed with SIGKILL
and resumed, then eval, predict and export on what they wrote."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from resnetlab.data import load_dataset

# 24 steps: the trained weights themselves (--ema-decay 0), the better network of so short a run
# (26.7% against the average's 23.2%), for the int8 test's comparison with fp32. The average's
# CLI path is tested in test_reliability.py.
TRAIN = ["train", "--max-steps", "24", "--save-every", "4", "--log-every", "4", "--batch-size", "64",
         "--eval-batch-size", "2000", "--ema-decay", "0", "--quiet"]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "resnetlab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def trained(tmp_path_factory, name, args):
    """A run trained to its end by the real command."""
    out = tmp_path_factory.mktemp("runs") / name
    result = cli(*args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return trained(tmp_path_factory, "whole", TRAIN)


def step_of(path):
    try:
        return torch.load(path, weights_only=True)["step"]
    except Exception:  # not written yet
        return -1


def test_sigkill_and_resume_give_bitwise_the_same_weights(tmp_path, finished_run):
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "resnetlab", *TRAIN, "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while step_of(out / "last.pt") < 8 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    killed_at = step_of(out / "last.pt")
    assert 8 <= killed_at < 24
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    whole = torch.load(finished_run / "last.pt", weights_only=True)
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert resumed["step"] == whole["step"] == 24
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for a, b in zip(whole["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])

    def science(path):  # every metric but the clock
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in ("elapsed_s", "train_img_per_s")} for row in rows]

    assert science(out) == science(finished_run)


def final_state(out):
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    momenta = [buffers["momentum_buffer"] for buffers in checkpoint["optimizer"]["state"].values()]
    return checkpoint["step"], checkpoint["model"], momenta


# Stochastic depth draws from the RNG in every step: a resume that did not restore the RNG state
# would end with other weights.
STOCHASTIC = [*TRAIN, "--drop-path-rate", "0.2"]


@pytest.fixture(scope="module")
def stochastic_run(tmp_path_factory):
    return trained(tmp_path_factory, "stochastic", STOCHASTIC)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_the_step_reached_and_resume_bitwise(tmp_path, stochastic_run, signum, code):
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "resnetlab", *STOCHASTIC, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while step_of(out / "last.pt") < 5 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    stopped_at = step_of(out / "last.pt")
    assert 5 <= stopped_at < 24
    name = signal.Signals(signum).name
    assert f"stopped by {name} at step {stopped_at} of 24; {out / 'last.pt'} holds that step." in stderr
    command = stderr.strip().splitlines()[-1].strip()
    assert command == f"resnetlab train --out {out} --resume"
    result = cli(*command.split()[1:])  # the command it printed, as given
    assert result.returncode == 0, result.stderr
    step, weights, momenta = final_state(out)
    whole_step, whole_weights, whole_momenta = final_state(stochastic_run)
    assert step == whole_step == 24
    assert all(torch.equal(weights[key], whole_weights[key]) for key in whole_weights)
    assert all(torch.equal(a, b) for a, b in zip(momenta, whole_momenta))


def test_a_second_writer_is_refused_and_writes_nothing(tmp_path):
    from resnetlab.runfolder import RunFolder

    out = tmp_path / "busy"
    process = subprocess.Popen([sys.executable, "-m", "resnetlab", *TRAIN, "--max-steps", "2000", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while step_of(out / "last.pt") < 4 and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        config = (out / "config.json").stat().st_mtime_ns
        for args in (["--resume"], []):  # a scheduler restarting the job, a user starting it again
            second = cli(*TRAIN, "--max-steps", "2000", "--out", out, *args)
            assert second.returncode == 1
            assert second.stderr.strip() == (f"resnetlab train: error: --out {out} is being written by another "
                                             f"process (PID {process.pid}); wait for it to end, or stop it, before "
                                             "writing this run")
        assert (out / "config.json").stat().st_mtime_ns == config  # the second writer wrote nothing
        assert (out / ".lock").read_text() == f"{process.pid}\n"
        assert cli("eval", "--checkpoint", out / "last.pt", "--json").returncode == 0  # readers are never blocked
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    folder = RunFolder(out)
    folder.prepare(resume=True)  # its holder gone, the folder takes a writer again
    assert (out / ".lock").read_text() == f"{os.getpid()}\n"
    folder.release()


def test_eval_reproduces_the_recorded_accuracy(finished_run):
    recorded = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    result = cli("eval", "--checkpoint", finished_run / "last.pt", "--json")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(result.stdout)
    assert evaluated["test_acc1"] == recorded["test_acc1"]
    assert evaluated["test_acc5"] == recorded["test_acc5"]
    assert evaluated["images"] == 10000


def test_predict_on_image_files(tmp_path, finished_run):
    from PIL import Image

    from resnetlab.checkpoint import load_model
    from resnetlab.data.augment import Normalize

    test = load_dataset("fashion-mnist", download=False).test
    files = []
    for i in range(4):
        files.append(tmp_path / f"item{i}.png")
        Image.fromarray(test.images[i, 0].numpy()).save(files[-1])
    result = cli("predict", "--checkpoint", finished_run / "best.pt", *files, "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    model, meta = load_model(finished_run / "best.pt")
    with torch.no_grad():
        probabilities = model(Normalize.from_state_dict(meta["normalize"])(test.images[:4])).softmax(1)
    expected = probabilities.argmax(1)
    # predict runs the BN-folded channels_last network: the eager model's probabilities
    got = torch.tensor([p["top"][0]["probability"] for p in predictions])
    assert torch.allclose(got, probabilities.max(1).values, atol=1e-5)
    assert [p["top"][0]["index"] for p in predictions] == expected.tolist()
    bf16 = cli("predict", "--checkpoint", finished_run / "best.pt", *files, "--json", "--precision", "bf16")
    assert [p["top"][0]["index"] for p in json.loads(bf16.stdout)] == expected.tolist()
    assert predictions[0]["top"][0]["class"] == meta["classes"][expected[0]]
    assert all(len(p["top"]) == 2 for p in predictions)
    missing = cli("predict", "--checkpoint", finished_run / "best.pt", tmp_path / "absent.png")
    assert missing.returncode == 1 and "image not found" in missing.stderr


def test_predict_on_a_folder_skips_a_bad_file(tmp_path, finished_run):
    from PIL import Image

    test = load_dataset("fashion-mnist", download=False).test
    folder = tmp_path / "photos"
    (folder / "shelf").mkdir(parents=True)
    names = ["a.png", "shelf/b.jpg", "shelf/c.png"]
    for i, name in enumerate(names):
        Image.fromarray(test.images[i, 0].numpy()).save(folder / name)
    (folder / "shelf" / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image: not looked at")
    result = cli("predict", "--checkpoint", finished_run / "best.pt", folder, "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [record["image"] for record in records] == [str(folder / name) for name in
                                                        ["a.png", "shelf/b.jpg", "shelf/broken.png", "shelf/c.png"]]
    assert "error" in records[2] and all("top" in records[i] for i in (0, 1, 3))
    assert result.stderr.strip().splitlines() == [f"resnetlab predict: skipped {folder / 'shelf/broken.png'}: "
                                                  f"{records[2]['error']}"]
    text = cli("predict", "--checkpoint", finished_run / "best.pt", folder / "shelf")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 2
    only_bad = cli("predict", "--checkpoint", finished_run / "best.pt", folder / "shelf" / "broken.png")
    assert only_bad.returncode == 1 and "no image could be read" in only_bad.stderr


def test_export_hub_shares_a_model_that_loads_back_three_ways(tmp_path, finished_run):
    import os

    import resnetlab
    from resnetlab.checkpoint import load_model

    shared = tmp_path / "resnet20-fmnist"
    result = cli("export", "--checkpoint", finished_run / "last.pt", "--format", "hub", "--out", shared)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in shared.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    model, meta = load_model(finished_run / "last.pt")
    final = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    config = json.loads((shared / "config.json").read_text())
    assert config["architecture"] == "resnet20" and config["classes"] == meta["classes"]
    assert config["trained"]["test_acc1"] == final["test_acc1"]
    card = (shared / "README.md").read_text()
    assert f"test top-1 accuracy **{final['test_acc1']:.2f}%**" in card and "arxiv.org/abs/1512.03385" in card
    assert ("resnetlab train --model resnet20 --data fashion-mnist --recipe fast --seed 0 --batch-size 64 --lr 0.2 "
            "--max-steps 24") in card
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        again = resnetlab.create_model("resnet20", num_classes=10, in_chans=1, pretrained=shared).eval()
        assert torch.equal(again(x), expected)
    # --pretrained DIR fine-tunes with the shared model's own normalisation
    tuned = cli("train", "--pretrained", shared, "--max-steps", "2", "--batch-size", "16", "--eval-batch-size", "2000",
                "--quiet", "--out", tmp_path / "tuned")
    assert tuned.returncode == 0, tuned.stderr
    tuned_meta = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)["meta"]
    assert torch.equal(tuned_meta["normalize"]["mean"], meta["normalize"]["mean"])
    # hf-hub:ORG/NAME once uploaded: a Hugging Face cache filled by the test, read offline
    snapshot = tmp_path / "hub" / "models--someone--resnet20-fmnist" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "README.md"):
        (snapshot / name).write_bytes((shared / name).read_bytes())
    (tmp_path / "hub" / "models--someone--resnet20-fmnist" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--resnet20-fmnist" / "refs" / "main").write_text("0" * 40)
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "expected.pt")
    script = ("import sys, torch, resnetlab\n"
              "m = resnetlab.create_model('resnet20', num_classes=10, in_chans=1, "
              "pretrained='hf-hub:someone/resnet20-fmnist').eval()\n"
              "x, y = torch.load(sys.argv[1]), torch.load(sys.argv[2])\n"
              "with torch.no_grad():\n"
              "    print(torch.equal(m(x), y))\n")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    hub = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.pt"), str(tmp_path / "expected.pt")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert hub.returncode == 0 and hub.stdout.strip() == "True", hub.stderr


def test_export_push_says_in_one_line_why_it_cannot_upload_and_keeps_the_folder(tmp_path, finished_run):
    """No network here: offline, and online without a login, the folder is written and the push
    refused in one line; --push without --format hub is a usage error."""
    import os

    export = ("export", "--checkpoint", finished_run / "last.pt", "--format", "hub")
    home = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE")}
    for name, env, message in (("offline", dict(home, HF_HUB_OFFLINE="1"), "huggingface_hub is offline"),
                               ("no-login", dict(home, HF_HOME=str(tmp_path / "hf")), "not logged in")):
        result = subprocess.run([sys.executable, "-m", "resnetlab", *map(str, export), "--out", str(tmp_path / name),
                                 "--push", "someone/resnet20-fmnist"], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert (tmp_path / name / "model.safetensors").is_file()
    wrong = cli("export", "--checkpoint", finished_run / "last.pt", "--format", "onnx", "--out", tmp_path / "m.onnx",
                "--push", "someone/x")
    assert wrong.returncode == 2 and "--push uploads a hub folder" in wrong.stderr


@pytest.mark.parametrize("fmt, name", [("safetensors", "model.safetensors"), ("torchvision", "tv.pth"),
                                       ("timm", "timm.safetensors"), ("onnx", "model.onnx"),
                                       ("openvino", "model.xml")])
def test_export_round_trips(tmp_path, finished_run, fmt, name):
    import resnetlab
    from resnetlab.checkpoint import load_model

    target = tmp_path / name
    result = cli("export", "--checkpoint", finished_run / "last.pt", "--format", fmt, "--out", target)
    assert result.returncode == 0, result.stderr
    model, meta = load_model(finished_run / "last.pt")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    if fmt == "openvino":
        import openvino

        compiled = openvino.Core().compile_model(str(target), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = torch.from_numpy(compiled(x.numpy())[compiled.output(0)])
        assert target.with_suffix(".bin").is_file()
        assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4
    elif fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"images": x.numpy()})
        got = torch.from_numpy(got)
        assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4
    else:
        again = resnetlab.create_model("resnet20", num_classes=10, in_chans=1, pretrained=target).eval()
        with torch.no_grad():
            assert torch.equal(again(x), expected)


def test_out_folder_is_never_overwritten(finished_run):
    before = (finished_run / "metrics.jsonl").read_text()
    result = cli(*TRAIN, "--out", finished_run)
    assert result.returncode != 0
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert (finished_run / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "2", "--max-steps", "3"], "not allowed with argument"),
    (["train", "--model", "resnet21"], "unknown model 'resnet21'"),
    (["train", "--lr", "-1"], "lr must be a positive number"),
    (["train", "--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--train-sizes", "16,x"], "expected comma-separated image sizes"),
    (["train", "--train-sizes", "16,20", "--train-size-until", "0.5"], "one --train-size-until fraction per"),
    (["eval"], "the following arguments are required: --checkpoint"),
])
def test_train_usage_errors(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_one_epoch_of_resnet20_is_well_above_85_percent(tmp_path):
    result = cli("train", "--epochs", "1", "--out", tmp_path / "epoch", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "epoch" / "metrics.jsonl").read_text().splitlines()[-1])
    # Measured: 87.61% on the Intel Xeon (docs/results.md) and 86.55% on the AMD EPYC (the same
    # seed: other bf16 kernels take another path); 85% is the bar asked for, chance is 10%.
    assert row["epoch"] == 1 and row["test_acc1"] > 86.0


def write_image_folder(root, size=40):
    """Two classes (bright squares vs dark ones), images in every mode PIL has for photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "P", "RGBA", "CMYK", "I;16"]
    for split, count in (("train", 12), ("val", 6)):
        for label, level in (("bright", 200), ("dark", 40)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(level, 20, (size, size + 3 * i, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                mode = modes[i % len(modes)]
                if mode == "I;16":
                    image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 256)
                else:
                    image = image.convert(mode)
                image.save(folder / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}")


def test_image_folder_training_and_ten_crop(tmp_path):
    write_image_folder(tmp_path / "folder")
    out = tmp_path / "run"
    result = cli("train", "--data", "imagefolder", "--data-dir", tmp_path / "folder", "--image-size", "32",
                 "--max-steps", "6", "--batch-size", "8", "--eval-batch-size", "4", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    single = json.loads(cli("eval", "--checkpoint", out / "last.pt", "--json").stdout)
    ten = cli("eval", "--checkpoint", out / "last.pt", "--ten-crop", "--json")
    assert ten.returncode == 0, ten.stderr
    ten = json.loads(ten.stdout)
    assert ten["images"] == single["images"] == 12 and ten["view"] == "ten-crop"
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert single["test_acc1"] == recorded["test_acc1"]
    scales = json.loads(cli("eval", "--checkpoint", out / "last.pt", "--multi-scale", "--json").stdout)
    assert scales["images"] == 12 and scales["view"] == "multi-scale"
    # An unreadable file is reported by name.
    (tmp_path / "folder" / "val" / "dark" / "broken.png").write_bytes(b"not a png")
    broken = cli("eval", "--checkpoint", out / "last.pt")
    assert broken.returncode == 1 and "broken.png" in broken.stderr and "Traceback" not in broken.stderr


def test_image_folder_runs_resume_bitwise(tmp_path):
    """Each image's crop, scale and flip come from (seed, epoch, step, position), not from the
    worker that decodes it: a run stopped mid-epoch and resumed ends with the weights of an
    uninterrupted one."""
    from resnetlab.engine import fit
    from resnetlab.recipes import make_config

    write_image_folder(tmp_path / "folder")
    runs = {name: make_config(data="imagefolder", data_dir=str(tmp_path / "folder"), image_size=32, batch_size=8,
                              eval_batch_size=4, precision="fp32", max_steps=5, out=str(tmp_path / name))
            for name in ("whole", "resumed")}
    fit(runs["whole"], progress=False)
    fit(runs["resumed"], progress=False, stop_after=4)  # 3 steps per epoch: stopped in the second
    fit(runs["resumed"], progress=False, resume=True)
    whole, again = (torch.load(tmp_path / name / "last.pt", weights_only=True)["model"] for name in runs)
    for key, value in whole.items():
        assert torch.equal(value, again[key]), key


def test_resuming_a_finished_run_changes_nothing(finished_run):
    names = ("last.pt", "best.pt", "previous.pt", "metrics.jsonl", "config.json")
    files = {name: (finished_run / name).read_bytes() for name in names}
    for _ in range(2):
        result = cli(*TRAIN, "--out", finished_run, "--resume")
        assert result.returncode == 0, result.stderr
        assert "after 24 steps" in result.stdout and "already finished: nothing trained" in result.stdout
    assert {name: (finished_run / name).read_bytes() for name in files} == files


def test_resume_refuses_a_flag_that_contradicts_the_run(finished_run):
    before = (finished_run / "last.pt").read_bytes()
    for flag, value in [("--model", "resnet56"), ("--data", "mnist"), ("--lr", "0.5"), ("--recipe", "paper-cifar")]:
        result = cli(*TRAIN, "--out", finished_run, "--resume", flag, value)
        assert result.returncode == 2, (flag, result.stderr)
        assert f"{flag} {value} contradicts the run being resumed" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert (finished_run / "last.pt").read_bytes() == before


def test_resume_with_more_steps_extends_the_run_and_says_how(tmp_path, finished_run):
    import shutil

    out = tmp_path / "extended"
    shutil.copytree(finished_run, out)
    args = [a for a in TRAIN if a not in ("--max-steps", "24")]
    result = cli(*args, "--max-steps", "28", "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert "extending the run from 24 to 28 steps" in result.stderr
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 28
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows][-2:] == [24, 28]
    assert json.loads((out / "config.json").read_text())["max_steps"] == 28


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, finished_run):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(finished_run, out)
    whole = torch.load(finished_run / "last.pt", weights_only=True)
    previous = torch.load(out / "previous.pt", weights_only=True)["step"]
    assert previous == 20  # one save (every 4 steps) behind last.pt
    (out / "last.pt").write_bytes(b"storage fault")
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming from previous.pt at step {previous}" in result.stderr
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert resumed["step"] == 24
    for key, value in whole["model"].items():  # the lost steps trained again, exactly
        assert torch.equal(value, resumed["model"][key]), key


def test_eval_gives_each_class_and_the_confusion_matrix(finished_run):
    result = cli("eval", "--checkpoint", finished_run / "best.pt", "--json")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(result.stdout)
    confusion = torch.tensor(evaluated["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10000
    assert confusion.trace().item() / 100 == pytest.approx(evaluated["test_acc1"])
    classes = load_dataset("fashion-mnist", download=False).classes
    assert [row["class"] for row in evaluated["per_class"]] == classes
    assert all(row["images"] == 1000 for row in evaluated["per_class"])
    assert [row["acc1"] for row in evaluated["per_class"]] == pytest.approx((confusion.diag() / 10).tolist())
    assert (finished_run / "confusion.png").stat().st_size > 10_000
    table = cli("eval", "--checkpoint", finished_run / "best.pt")
    assert "| Ankle boot | 1000 |" in table.stdout and "confusion matrix: " in table.stdout


def test_eval_and_predict_in_int8_calibrate_on_the_runs_own_images(finished_run, tmp_path):
    from PIL import Image

    fp32 = json.loads(cli("eval", "--checkpoint", finished_run / "best.pt", "--precision", "fp32", "--json").stdout)
    result = cli("eval", "--checkpoint", finished_run / "best.pt", "--precision", "int8", "--json")
    assert result.returncode == 0, result.stderr
    int8 = json.loads(result.stdout)
    assert int8["view"].endswith("optimized for inference in int8") and int8["images"] == 10000
    assert abs(int8["test_acc1"] - fp32["test_acc1"]) < 2.0
    test = load_dataset("fashion-mnist", download=False).test
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "item.png")
    predicted = cli("predict", "--checkpoint", finished_run / "best.pt", tmp_path / "item.png", "--precision", "int8",
                    "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)[0]["top"][0]["class"] in load_dataset("fashion-mnist", download=False).classes
