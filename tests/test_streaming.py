"""Streamed collections: the on-disk pixel store reads exactly what the array holds, a folder
loads to the same pixels either way, and a fit on the streamed set (batches through a
DataLoader with a worker) trains to the same weights as the in-memory fit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from labelfree.data import pixel_store
from labelfree.data.folder import load_folder
from labelfree.data.imageset import ImageSet
from labelfree.data.pixel_store import DiskPixels, decode_to_disk, should_stream


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(11, 5, 4, 3), dtype=np.uint8)
    path = tmp_path / "px.u8"
    path.write_bytes(arr.tobytes())
    return arr, DiskPixels(path, arr.shape)


@pytest.mark.parametrize(
    "key",
    [
        3,
        -1,
        slice(None),
        slice(2, 9),
        slice(1, 10, 3),
        slice(8, 2, -2),
        [4, 2, 2, 9, 0, 10],  # unsorted, a repeat, both ends
        np.array([7, 7, 7]),
        np.array([-1, 0]),
        np.arange(11) % 2 == 0,  # boolean mask
        np.array([], dtype=np.int64),
    ],
)
def test_disk_pixels_index_like_the_array(store, key):
    arr, px = store
    got = px[key]
    assert got.dtype == np.uint8 and np.array_equal(got, arr[key])


def test_disk_pixels_views_pickle_and_bounds(store):
    arr, px = store
    view = px.take(np.array([9, 1, 5]))
    assert view.shape == (3, 5, 4, 3) and np.array_equal(view[:], arr[[9, 1, 5]])
    assert np.array_equal(view.take(np.array([2, 0]))[:], arr[[5, 9]])
    again = pickle.loads(pickle.dumps(view))  # as a DataLoader worker receives it
    assert np.array_equal(again[[0, 2]], arr[[9, 5]])
    assert np.array_equal(np.asarray(px), arr)
    with pytest.raises(IndexError):
        px[11]
    with pytest.raises(IndexError):
        px[[0, 11]]


def test_imageset_on_a_store_subsets_lazily_and_fingerprints_as_in_memory(store):
    arr, px = store
    labels = np.arange(11) % 3
    lazy, ram = ImageSet(px, labels=labels), ImageSet(arr, labels=labels)
    assert lazy.streaming and not ram.streaming
    assert lazy.fingerprint() == ram.fingerprint()
    sub = lazy.subset([3, 1, 4])
    assert sub.streaming and np.array_equal(sub.images[:], arr[[3, 1, 4]])
    assert np.array_equal(sub.labels, labels[[3, 1, 4]])
    assert np.array_equal(
        lazy.tensor(np.array([2, 0])).numpy(), ram.tensor(np.array([2, 0])).numpy()
    )


def _folder(tmp_path, n=24, side=20):
    rng = np.random.default_rng(1)
    for i in range(n):
        sub = tmp_path / "imgs" / f"c{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)).save(
            sub / f"{i:03d}.png"
        )
    (tmp_path / "imgs" / "c0" / "bad.png").write_bytes(b"not a png")
    return tmp_path / "imgs"


def test_folder_streamed_equals_in_memory_and_the_store_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELFREE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 of 25"):
        ram = load_folder(root, image_size=16, on_error="skip", stream=False, progress=False)
    monkeypatch.setattr(pixel_store, "DECODE_CHUNK", 5)  # several chunks, one skip inside one
    with pytest.warns(UserWarning, match="skipped 1 of 25"):
        disk = load_folder(root, image_size=16, on_error="skip", stream=True, progress=False)
    assert disk.streaming and np.array_equal(disk.images[:], ram.images)
    assert disk.paths == ram.paths and np.array_equal(disk.labels, ram.labels)
    assert disk.meta["skipped"] == ram.meta["skipped"]

    def no_decoding(*a, **k):
        raise AssertionError("the store should have been reused")

    monkeypatch.setattr("labelfree.data.batch_decode.decode_files", no_decoding)
    with pytest.warns(UserWarning, match="skipped 1 of 25"):
        again = load_folder(root, image_size=16, on_error="skip", stream=True, progress=False)
    assert np.array_equal(again.images[:], ram.images)


def test_auto_streaming_rule(monkeypatch):
    monkeypatch.setattr("labelfree.data.imageset.available_memory", lambda: 64 << 30)
    assert not should_stream(1000, 64, None)  # 12 MB
    assert should_stream(60_000, 128, None)  # 2.9 GB > 1 GiB
    monkeypatch.setattr("labelfree.data.imageset.available_memory", lambda: 40 << 20)
    assert should_stream(1000, 64, None)  # 12 MB > a quarter of 40 MB
    assert should_stream(10, 8, True) and not should_stream(60_000, 128, False)


def test_a_failing_decode_leaves_no_store(tmp_path):
    root = _folder(tmp_path, n=3)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    with pytest.raises(ValueError, match="bad.png"):
        decode_to_disk(paths, 16, "fail", 1, False, tmp_path / "store")
    assert not list((tmp_path / "store").iterdir())


def test_streamed_fit_trains_to_the_same_weights(tmp_path, monkeypatch):
    """Batches read by a DataLoader worker from the store give the same network as batches
    indexed in memory (augmentation stays in the training process, on the same generator)."""
    import torch

    from labelfree.methods import get_method

    monkeypatch.setenv("LABELFREE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path, n=30)
    kw = dict(image_size=16, on_error="skip", progress=False)
    with pytest.warns(UserWarning):
        ram = load_folder(root, stream=False, **kw)
    with pytest.warns(UserWarning):
        disk = load_folder(root, stream=True, **kw)
    opts = dict(start="scratch", features="pixels", epochs=2, batch_size=8, k_pos=2, dim=8)
    opts.update(progress=False, device="cpu", workers=1)
    a = get_method("hadsell", **opts).fit(ram)
    b = get_method("hadsell", **opts).fit(disk)
    for (k, va), vb in zip(a.net_.state_dict().items(), b.net_.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert np.array_equal(a.embed(ram), b.embed(disk))
