"""Datasets and batched augmentation: the real file formats (written here in their real layout),
clear errors for broken files, and batches that are a pure function of (seed, epoch, step)."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import write_cifar
from resnetlab.data import InMemoryLoader, Split, load_dataset
from resnetlab.data.augment import Normalize, random_crop, random_erasing_mask, random_flip
from resnetlab.data.cifar import load_cifar
from resnetlab.data.idx import FILES, read_idx


def write_idx(path, array, gz=True):
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_mnist_like(folder, n_train=50, n_test=20, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, num_classes, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, num_classes, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / f"{stem}.gz", array)
    return arrays


def test_idx_files_from_data_dir(tmp_path):
    arrays = make_mnist_like(tmp_path / "fm")
    data = load_dataset("fashion-mnist", tmp_path / "fm", download=False)
    assert data.train.images.shape == (50, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert torch.equal(data.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]))
    assert data.classes[0] == "T-shirt/top" and data.num_classes == 10


def test_the_real_fashion_mnist_is_installed():
    data = load_dataset("fashion-mnist", download=False)
    assert data.train.images.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10


@pytest.mark.parametrize("damage, message", [
    ("truncate", "truncated or corrupt IDX file"),
    ("magic", "is not an IDX images file"),
    ("gzip", "corrupt or truncated IDX file"),
    ("header", "truncated IDX file"),
])
def test_broken_idx_files_are_named(tmp_path, damage, message):
    make_mnist_like(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "magic":
        target.write_bytes(gzip.compress(struct.pack(">I", 0x0801) + raw[4:]))
    elif damage == "gzip":
        target.write_bytes(target.read_bytes()[:40])
    else:
        target.write_bytes(gzip.compress(raw[:6]))
    with pytest.raises(ValueError, match=message) as error:
        load_dataset("fashion-mnist", tmp_path, download=False)
    assert "train-images-idx3-ubyte" in str(error.value)


def test_idx_labels_out_of_range(tmp_path):
    make_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 3, 12] + [1] * 17))
    with pytest.raises(ValueError, match=r"test labels must be in \[0, 9\], found 0..12"):
        load_dataset("fashion-mnist", tmp_path, download=False)


def test_idx_count_mismatch_and_missing_files(tmp_path):
    make_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(49))
    with pytest.raises(ValueError, match="50 images but 49 labels"):
        load_dataset("fashion-mnist", tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="expected train-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path / "empty", download=False)
    assert read_idx(tmp_path / "train-labels-idx1-ubyte.gz", expect_images=False).shape == (49,)
    assert len(FILES) == 4


def test_cifar_reader_on_small_real_format_pickles(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    train_x, train_y, test_x, test_y, classes = load_cifar("cifar10", tmp_path)
    assert train_x.shape == (40, 3, 32, 32) and test_x.shape == (8, 3, 32, 32)
    assert classes[3] == "class3"
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    assert torch.equal(train_x[8:16].reshape(8, -1), torch.from_numpy(raw[b"data"]))
    assert train_y[8:16].tolist() == raw[b"labels"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_cifar_download_is_verified_and_an_offline_failure_says_what_to_do(tmp_path, monkeypatch):
    """The real download path, served from a local file:// archive."""
    import hashlib
    import tarfile

    from resnetlab.data import cifar

    write_cifar(tmp_path / "server" / "cifar-10-batches-py")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "server" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    layout = dict(cifar.LAYOUTS["cifar10"], url=archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", layout)
    train_x, *_ = load_cifar("cifar10", tmp_path / "data", download=True)
    assert train_x.shape[1:] == (3, 32, 32) and (tmp_path / "data" / archive.name).is_file()

    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", dict(layout, md5="0" * 32))
    with pytest.raises(OSError, match="does not match its published MD5.*pass --data-dir"):
        load_cifar("cifar10", tmp_path / "tampered", download=True)
    assert not (tmp_path / "tampered" / archive.name).exists()
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", dict(layout, url=(tmp_path / "absent.tar.gz").as_uri()))
    with pytest.raises(OSError, match="could not download .*absent.tar.gz.*pass --data-dir DIR"):
        load_cifar("cifar10", tmp_path / "offline", download=True)


def test_cifar_pickle_with_code_is_refused_and_never_run(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "ran"
    batch = pickle.loads((folder / "data_batch_1").read_bytes())
    batch[b"extra"] = _Payload(marker)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"refused to load (builtins|__builtin__)\.exec"):
        load_cifar("cifar10", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    ("truncate", "corrupt or truncated CIFAR batch"),
    ("labels", r"labels must be in \[0, 9\]"),
    ("shape", r"expected uint8 data of shape \(N, 3072\)"),
])
def test_broken_cifar_batches(tmp_path, damage, message):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    target = folder / "test_batch"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:500])
    else:
        batch = pickle.loads(target.read_bytes())
        if damage == "labels":
            batch[b"labels"][0] = 10
        else:
            batch[b"data"] = batch[b"data"][:, :100]
        target.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=message):
        load_cifar("cifar10", tmp_path)


def test_random_crop_matches_a_per_sample_loop():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    crops = random_crop(images, 4, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 9, (16, 1), generator=generator)
    dx = torch.randint(0, 9, (16, 1), generator=generator)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(16):
        y, x = dy[i, 0].item(), dx[i, 0].item()
        assert torch.equal(crops[i], padded[i, :, y:y + 8, x:x + 8])
    assert len({(a.item(), b.item()) for a, b in zip(dy, dx)}) > 1  # offsets differ per sample


def test_random_flip_mirrors_about_half():
    images = torch.arange(1000 * 4).view(1000, 1, 1, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = (flipped == images.flip(3)).all(dim=(1, 2, 3))
    assert torch.equal(flipped[~mirrored], images[~mirrored])
    assert 400 < mirrored.sum() < 600


def test_random_erasing_erases_one_rectangle_in_about_half_the_images():
    n, h, w = 2000, 28, 28
    keep = random_erasing_mask(n, h, w, torch.Generator().manual_seed(0))
    assert keep.shape == (n, 1, h, w) and keep.dtype == torch.bool
    assert torch.equal(keep, random_erasing_mask(n, h, w, torch.Generator().manual_seed(0)))
    erased = ~keep[:, 0]
    hit = erased.any((1, 2))
    assert 900 < hit.sum() < 1100  # probability 0.5
    share = erased.flatten(1).float().mean(1)[hit]
    assert share.min() >= 0.01 and share.max() <= 0.45  # 2-40% of the pixels, up to rounding and clipping
    for mask in erased[hit][:50]:  # each is one solid rectangle
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert mask.sum() == len(rows) * len(cols)
    split = Split(torch.full((8, 1, h, w), 200, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    normalize = Normalize(torch.tensor([100.0 / 255]).view(1, 1, 1), torch.tensor([0.5]).view(1, 1, 1))
    loader = InMemoryLoader(split, 8, normalize, shuffle=False, drop_last=True, augment="crop-flip-erase", pad=0)
    images, _ = next(loader.batches(0))
    values = images.unique()  # erased pixels become the mean: 0 after normalisation
    assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx((200 - 100) / 255 / 0.5)


def test_normalize_statistics():
    images = torch.randint(0, 256, (100, 2, 4, 4), dtype=torch.uint8)
    per_channel = Normalize.fit(images, per_pixel=False)
    x = per_channel(images)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    per_pixel = Normalize.fit(images, per_pixel=True)
    assert torch.allclose(per_pixel(images).mean(0), torch.zeros(2, 4, 4), atol=1e-5)


@pytest.mark.parametrize("augment", ["crop-flip", "crop-flip-erase"])
def test_loader_is_a_function_of_seed_epoch_and_step_and_shares_split_the_global_batch(augment):
    split = Split(torch.randint(0, 256, (100, 1, 8, 8), dtype=torch.uint8), torch.arange(100) % 10)
    normalize = Normalize.fit(split.images, per_pixel=False)

    def loader(**kwargs):
        return InMemoryLoader(split, 20, normalize, shuffle=True, drop_last=True, augment=augment, seed=3, **kwargs)

    full = list(loader().batches(epoch=2))
    assert len(full) == 5
    resumed = list(loader().batches(epoch=2, start=3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[3:], resumed))
    halves = [list(loader(rank=r, world_size=2).batches(epoch=2)) for r in (0, 1)]
    for step, (x, y) in enumerate(full):
        assert torch.equal(torch.cat([halves[0][step][0], halves[1][step][0]]), x)
        assert torch.equal(torch.cat([halves[0][step][1], halves[1][step][1]]), y)
    other_epoch = list(loader().batches(epoch=3))
    assert not torch.equal(other_epoch[0][1], full[0][1])
    with pytest.raises(ValueError, match="larger than the dataset"):
        InMemoryLoader(split, 101, normalize, shuffle=True, drop_last=True)
