"""Image datasets: CIFAR pickles, npz, folders, synthetic32, subsets and mixtures, on tiny fixtures."""
from __future__ import annotations

import pickle
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gbench.plugins
from gbench.errors import GbenchError
from gbench.datasets.images import (
    ImageDataset,
    ImageMixture,
    clear_cache,
    load_cifar,
    load_image_folder,
    load_npz,
    synthetic_images,
)

REAL_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.npz"  # ../shared beside the repo


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.delenv("GBENCH_DATA_ROOT", raising=False)
    clear_cache()
    yield
    clear_cache()


# -- fixtures in the original pickled formats ------------------------------------------------------


def pattern(n: int, offset: int) -> np.ndarray:
    """(n, 3072) rows whose value at channel c, row y, column x is known: see ``expected``."""
    i, c, y, x = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((offset + i) * 7 + c * 61 + y * 5 + x * 3).astype(np.uint8).reshape(n, 3072)


def expected(n: int, offset: int) -> np.ndarray:
    i, c, y, x = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((offset + i) * 7 + c * 61 + y * 5 + x * 3).astype(np.uint8)  # (n, 3, 32, 32)


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for b, fname in enumerate(names):
        dump(d / fname, {
            b"batch_label": f"training batch {b + 1} of 5".encode() if b < 5 else b"testing batch 1 of 1",
            b"labels": [(b * per_batch + i) % 10 for i in range(per_batch)],
            b"data": pattern(per_batch, b * per_batch),
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)],
        })
    dump(d / "batches.meta", {
        b"num_cases_per_batch": per_batch,
        b"label_names": [s.encode() for s in "airplane automobile bird cat deer dog frog horse ship truck".split()],
        b"num_vis": 3072,
    })
    return d


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for fname, n, off in (("train", n_train, 0), ("test", n_test, 100)):
        dump(d / fname, {
            b"filenames": [f"{fname}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{fname} batch 1 of 1".encode(),
            b"fine_labels": [(off + 17 * i) % 100 for i in range(n)],
            b"coarse_labels": [(off + i) % 20 for i in range(n)],
            b"data": pattern(n, off),
        })
    dump(d / "meta", {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    })
    return d


def test_cifar10_pickles_round_trip_pixel_exact(tmp_path):
    write_cifar10(tmp_path)
    ds = load_cifar("cifar10", root=tmp_path)
    assert ds.kind == "image" and ds.name == "cifar10" and ds.data_shape == (3, 32, 32)
    train, test = ds.images("train"), ds.images("test")
    assert train.dtype == torch.uint8 and train.shape == (20, 3, 32, 32) and test.shape == (4, 3, 32, 32)
    assert np.array_equal(train.numpy(), expected(20, 0)) and np.array_equal(test.numpy(), expected(4, 20))
    # the 3072 row is the R plane, then G, then B, each 32x32 row-major
    row = pattern(4, 0)[1]
    assert train[1, 0, 0, 0] == row[0] and train[1, 1, 0, 0] == row[1024] and train[1, 2, 0, 0] == row[2048]
    assert train[1, 2, 5, 7] == row[2048 + 5 * 32 + 7] and train[1, 0, 31, 30] == row[31 * 32 + 30]
    assert ds.labels("train").tolist() == [i % 10 for i in range(20)]
    assert ds.labels("test").tolist() == [(20 + i) % 10 for i in range(4)]
    assert ds.label_names[0] == "airplane" and len(ds.label_names) == 10
    assert ds.provenance["format"] == "cifar-python" and ds.provenance["lossy"] is False
    assert ds.provenance["splits"] == {"train": 20, "test": 4}
    assert load_cifar("cifar10", root=tmp_path) is ds  # cached per process


def test_cifar100_pickles_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    ds = load_cifar("cifar100", root=str(tmp_path))
    assert ds.images("train").shape == (6, 3, 32, 32) and ds.images("test").shape == (3, 3, 32, 32)
    assert np.array_equal(ds.images("train").numpy(), expected(6, 0))
    assert np.array_equal(ds.images("test").numpy(), expected(3, 100))
    assert ds.labels("train").tolist() == [(17 * i) % 100 for i in range(6)]
    assert ds.labels("test").tolist() == [(100 + 17 * i) % 100 for i in range(3)]
    assert ds.label_names[:2] == ["fine0", "fine1"] and len(ds.label_names) == 100


def test_data_root_from_environment_and_registry(tmp_path, monkeypatch, fresh_plugins):
    write_cifar10(tmp_path)
    monkeypatch.setenv("GBENCH_DATA_ROOT", str(tmp_path))
    assert load_cifar("cifar10").images("test").shape == (4, 3, 32, 32)
    factory = gbench.plugins.get_plugins().datasets.get("cifar10")
    assert factory().provenance["source"] == str((tmp_path / "cifar-10-batches-py").resolve())


def test_missing_data_is_one_line_naming_the_path(tmp_path, monkeypatch):
    nowhere = tmp_path / "nowhere"
    monkeypatch.setenv("GBENCH_DATA_ROOT", str(nowhere))
    for name, sub in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(GbenchError) as err:
            load_cifar(name)
        msg = str(err.value)
        assert "\n" not in msg and str(nowhere / sub) in msg and "GBENCH_DATA_ROOT" in msg and "npz" in msg
    with pytest.raises(GbenchError, match="no npz file at .*missing.npz") as err:
        load_cifar("cifar10", npz=str(tmp_path / "missing.npz"))
    assert "\n" not in str(err.value)
    # one batch missing: the message names it
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(GbenchError, match="data_batch_3"):
        load_cifar("cifar10", root=tmp_path)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    calls = []

    def offline(root, train, download):
        calls.append((root, train, download))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore")

    monkeypatch.setattr("gbench.datasets.images._torchvision_datasets", lambda: SimpleNamespace(CIFAR10=offline))
    with pytest.raises(GbenchError) as err:
        load_cifar("cifar10", root=tmp_path / "dl", download=True)
    assert calls == [(str(tmp_path / "dl"), True, True)]
    assert "\n" not in str(err.value) and "download" in str(err.value) and str(tmp_path / "dl") in str(err.value)


# -- npz -------------------------------------------------------------------------------------------


def test_npz_nhwc_and_nchw(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x_train=x_train, y_train=np.arange(5), x_test=x_test, y_test=np.arange(2),
             lossy=np.array(True), source_note=np.array("made up"))
    ds = load_cifar("cifar10", npz=str(tmp_path / "tiny.npz"))
    assert ds.name == "cifar10" and ds.provenance["layout"] == "NHWC"
    assert np.array_equal(ds.images("train").numpy(), x_train.transpose(0, 3, 1, 2))
    assert np.array_equal(ds.images("test").numpy(), x_test.transpose(0, 3, 1, 2))
    assert ds.labels("train").tolist() == list(range(5)) and ds.labels("train").dtype == torch.int64
    assert ds.provenance["lossy"] is True and ds.provenance["source_note"] == "made up"
    assert ds.provenance["file"]["bytes"] == (tmp_path / "tiny.npz").stat().st_size and "sha256" in ds.provenance["file"]

    np.savez(tmp_path / "nchw.npz", x_train=x_train.transpose(0, 3, 1, 2), y_train=np.arange(5))
    monkeypatch.setenv("GBENCH_DATA_ROOT", str(tmp_path))  # a relative npz is found under the data root
    ds2 = load_cifar("cifar100", npz="nchw.npz")
    assert ds2.provenance["layout"] == "NCHW" and np.array_equal(ds2.images().numpy(), x_train.transpose(0, 3, 1, 2))
    with pytest.raises(GbenchError, match="no 'test' split"):
        ds2.images("test")
    with pytest.raises(GbenchError, match="no 'valid' split"):
        ds.images("valid")

    np.savez(tmp_path / "float.npz", x_train=x_train.astype(np.float32))
    with pytest.raises(GbenchError, match="uint8"):
        load_npz(tmp_path / "float.npz")
    np.savez(tmp_path / "nox.npz", images=x_train)
    with pytest.raises(GbenchError, match="no 'x_train'"):
        load_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "bady.npz", x_train=x_train, y_train=np.arange(4))
    with pytest.raises(GbenchError, match="y_train"):
        load_npz(tmp_path / "bady.npz")


def _first_image(npz: Path, member: str) -> np.ndarray:
    """The first image of an array in an .npz without decompressing all of it."""
    with zipfile.ZipFile(npz) as z, z.open(member + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        assert not fortran
        n = int(np.prod(shape[1:]))
        return np.frombuffer(f.read(n * dtype.itemsize), dtype).reshape(shape[1:])


@pytest.mark.skipif(not REAL_NPZ.is_file(), reason="shared/data/cifar10.npz is not here")
def test_real_cifar10_npz():
    ds = load_cifar("cifar10", npz=str(REAL_NPZ))
    train, test = ds.images("train"), ds.images("test")
    assert train.shape == (50000, 3, 32, 32) and test.shape == (10000, 3, 32, 32) and train.dtype == torch.uint8
    assert np.array_equal(train[0].numpy(), _first_image(REAL_NPZ, "x_train").transpose(2, 0, 1))
    assert np.array_equal(test[0].numpy(), _first_image(REAL_NPZ, "x_test").transpose(2, 0, 1))
    assert ds.labels("train").shape == (50000,) and ds.label_names[0] == "airplane"
    assert ds.provenance["lossy"] is True and "JPEG" in ds.provenance["source_note"]
    assert ds.provenance["file"]["bytes"] == REAL_NPZ.stat().st_size and "sha256" not in ds.provenance["file"]
    assert load_cifar("cifar10", npz=str(REAL_NPZ)) is ds


# -- folders of images -----------------------------------------------------------------------------


def write_png(path: Path, value: int, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    arr = ((np.arange(h * w * 3).reshape(h, w, 3) + value) % 256).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return arr


def test_image_folder_with_splits_and_classes(tmp_path):
    a0 = write_png(tmp_path / "train" / "cat" / "0.png", 1)
    a1 = write_png(tmp_path / "train" / "cat" / "1.png", 2)
    a2 = write_png(tmp_path / "train" / "dog" / "0.png", 3)
    t0 = write_png(tmp_path / "test" / "dog" / "0.png", 4)
    ds = load_cifar("cifar10", folder=str(tmp_path))
    assert ds.images("train").shape == (3, 3, 32, 32) and ds.images("test").shape == (1, 3, 32, 32)
    assert np.array_equal(ds.images("train").numpy(), np.stack([a0, a1, a2]).transpose(0, 3, 1, 2))
    assert np.array_equal(ds.images("test")[0].numpy(), t0.transpose(2, 0, 1))
    assert ds.label_names == ["cat", "dog"]
    assert ds.labels("train").tolist() == [0, 0, 1] and ds.labels("test").tolist() == [1]
    assert ds.provenance["format"] == "image-folder" and ds.provenance["lossy"] is False


def test_image_folder_flat_and_errors(tmp_path, fresh_plugins):
    flat = tmp_path / "flat"
    write_png(flat / "a.png", 5)
    write_png(flat / "b.png", 6, mode="L")  # greyscale becomes RGB
    ds = gbench.plugins.get_plugins().datasets.get("image-folder")(folder=str(flat), name="mine")
    assert ds.name == "mine" and ds.splits == ("train",) and ds.images().shape == (2, 3, 32, 32)
    assert ds.labels("train") is None
    with pytest.raises(GbenchError, match="no 'test' split"):
        ds.images("test")

    write_png(tmp_path / "mixed" / "a.png", 1)
    write_png(tmp_path / "mixed" / "b.png", 1, size=(16, 16))
    with pytest.raises(GbenchError, match=r"b\.png is 16x16"):
        load_image_folder(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GbenchError, match="no images"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(GbenchError, match="no image folder at .*absent"):
        load_cifar("cifar100", folder=str(tmp_path / "absent"))


# -- training sets, mixtures, synthetic32, registration -------------------------------------------


def constant(name: str, value: int, n_train: int, n_test: int, size: int = 8) -> ImageDataset:
    return ImageDataset(
        name,
        {"train": np.full((n_train, 3, size, size), value, np.uint8), "test": np.full((n_test, 3, size, size), value, np.uint8)},
        provenance={"source": "test"},
    )


def test_training_set_subsets():
    x = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 4, 4), np.uint8)
    ds = ImageDataset("idx", {"train": x})
    ids = lambda t: t[:, 0, 0, 0].tolist()  # noqa: E731
    a, b, c = ds.training_set(10, 1), ds.training_set(10, 1), ds.training_set(10, 2)
    assert a.dtype == torch.uint8 and a.shape == (10, 3, 4, 4)
    assert ids(a) == ids(b) and ids(a) != ids(c) and len(set(ids(a))) == 10
    assert ids(ds.training_set(20, 1))[:10] == ids(a)  # smaller subsets are prefixes
    for size in (0, 50, 1000):
        assert sorted(ids(ds.training_set(size, 3))) == list(range(50))
    a[:] = 0  # callers get their own copy
    assert ids(ds.training_set(10, 1)) == ids(b)
    with pytest.raises(GbenchError, match="uint8"):
        ImageDataset("bad", {"train": x.astype(np.float32)})


def test_image_mixture_proportions():
    a, b = constant("a", 10, 500, 30), constant("b", 200, 300, 30)
    mix = ImageMixture.mix([a, b], [3, 1])
    assert mix.name == "0.75*a+0.25*b" and mix.kind == "image" and mix.data_shape == (3, 8, 8)
    x = mix.training_set(400, 0)
    vals = x[:, 0, 0, 0]
    assert x.shape == (400, 3, 8, 8) and (vals == 10).sum() == 300 and (vals == 200).sum() == 100
    assert torch.equal(x, mix.training_set(400, 0)) and not torch.equal(x, mix.training_set(400, 1))
    assert (vals[:300] == 10).sum() < 300  # parts are shuffled together
    ref = mix.images("test")[:, 0, 0, 0]  # largest N with 0.75 N <= 30: N = 40 -> 30 + 10
    assert (ref == 10).sum() == 30 and (ref == 200).sum() == 10
    # a part smaller than its share is cycled, so the proportions hold
    small = ImageMixture.mix([a, constant("c", 99, 50, 5)], [0.5, 0.5])
    assert (small.training_set(400, 0)[:, 0, 0, 0] == 99).sum() == 200
    assert small.provenance["weights"] == [0.5, 0.5] and len(small.provenance["parts"]) == 2


def test_image_mixture_rejects_mismatched_parts():
    with pytest.raises(GbenchError, match="share one image shape"):
        ImageMixture.mix([constant("a", 1, 4, 1), constant("b", 2, 4, 1, size=16)], [1, 1])
    with pytest.raises(GbenchError, match="positive"):
        ImageMixture.mix([constant("a", 1, 4, 1)], [0])
    from gbench.datasets.toy import ring8

    with pytest.raises(GbenchError, match="ring8"):
        ImageMixture.mix([constant("a", 1, 4, 1), ring8()], [1, 1])


def test_synthetic32_is_deterministic_and_fast():
    started = time.perf_counter()
    ds = synthetic_images(n_train=2048, n_test=256, seed=0)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5, f"synthetic32 took {elapsed:.2f} s"
    assert ds.name == "synthetic32" and ds.data_shape == (3, 32, 32) and ds.images("test").shape == (256, 3, 32, 32)
    assert sorted(set(ds.labels("train").tolist())) == [0, 1, 2, 3]
    train = ds.images("train")
    assert train.float().std() > 20  # not blank
    clear_cache()
    assert torch.equal(synthetic_images(n_train=2048, n_test=256, seed=0).images("train"), train)
    assert torch.equal(synthetic_images(n_train=2048, n_test=16, seed=0).images("train"), train)
    assert not torch.equal(synthetic_images(n_train=2048, n_test=256, seed=1).images("train"), train)


def test_image_datasets_are_registered(fresh_plugins):
    gbench.plugins.reset_plugins()
    plugins = gbench.plugins.get_plugins()
    assert not [p.error for p in plugins.info if p.name == "gbench.datasets.images" and p.error]
    names = plugins.datasets.names()
    assert {"cifar10", "cifar100", "image-folder", "synthetic32"} <= set(names)
    ds = plugins.datasets.get("synthetic32")(n_train=64, n_test=8, seed=0)
    assert ds.kind == "image" and ds.training_set(32, 0).shape == (32, 3, 32, 32)
