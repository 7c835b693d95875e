"""Tests for decoding, folder / list / bundled / benchmark loaders and the registry.

Every file-based fixture is a tiny tree built in ``tmp_path`` at run time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from labelfree.data import (
    DataError,
    ImageSet,
    available_datasets,
    cars196,
    cub200,
    decode_image,
    digits,
    load_data,
    load_folder,
    load_list,
    mnist5k,
    resize_square,
    sop,
)
from labelfree.data.batch_decode import native_side
from labelfree.data.decode import to_uint8

# --------------------------------------------------------------------------------------------
# helpers


def _save_rgb(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> Path:
    """A solid colour image of ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return path


# --------------------------------------------------------------------------------------------
# decode_image: every mode becomes (H, W, 3) uint8 RGB


def test_decode_L(tmp_path: Path) -> None:
    p = tmp_path / "l.png"
    Image.new("L", (7, 5), 77).save(p)
    img = decode_image(p)
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    assert (img == 77).all()


def test_decode_LA_composites_over_white(tmp_path: Path) -> None:
    p = tmp_path / "la.png"
    im = Image.new("LA", (4, 2), (100, 255))
    im.putpixel((0, 0), (100, 0))  # fully transparent
    im.save(p)
    img = decode_image(p)
    assert img.shape == (2, 4, 3)
    assert (img[0, 0] == 255).all()
    assert (img[1, 3] == 100).all()


def test_decode_RGBA_composites_over_white(tmp_path: Path) -> None:
    p = tmp_path / "rgba.png"
    im = Image.new("RGBA", (6, 3), (255, 0, 0, 255))
    im.putpixel((1, 1), (0, 0, 255, 0))
    im.putpixel((2, 1), (0, 0, 0, 128))  # half-transparent black over white -> mid grey
    im.save(p)
    img = decode_image(p)
    assert img.shape == (3, 6, 3)
    assert tuple(img[0, 0]) == (255, 0, 0)
    assert tuple(img[1, 1]) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in img[1, 2])


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_decode_P_with_transparency(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"p.{ext}"
    im = Image.new("P", (5, 4), 1)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    im.putpixel((0, 0), 0)
    im.info["transparency"] = 0  # palette index 0 (red) is transparent
    im.save(p, transparency=0)
    with Image.open(p) as check:
        assert check.mode == "P"
    img = decode_image(p)
    assert img.shape == (4, 5, 3)
    assert tuple(img[0, 0]) == (255, 255, 255)
    assert tuple(img[3, 4]) == (0, 255, 0)


def test_decode_P_without_transparency(tmp_path: Path) -> None:
    p = tmp_path / "p.png"
    im = Image.new("P", (3, 3), 2)
    im.putpalette([0, 0, 0, 0, 0, 0, 10, 20, 30] + [0, 0, 0] * 253)
    im.save(p)
    img = decode_image(p)
    assert img.shape == (3, 3, 3)
    assert tuple(img[1, 1]) == (10, 20, 30)


def test_decode_CMYK(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(p)  # no cyan, full magenta + yellow
    with Image.open(p) as check:
        assert check.mode == "CMYK"
    img = decode_image(p)
    assert img.shape == (4, 4, 3)
    assert tuple(img[0, 0]) == (255, 0, 0)


def test_decode_CMYK_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 0, 0, 0)).save(p)
    img = decode_image(p)
    assert img.shape == (8, 16, 3)
    assert img.min() > 240  # no ink = white


def test_decode_I16_scales_full_range(tmp_path: Path) -> None:
    p = tmp_path / "deep.png"
    arr = np.zeros((2, 3), dtype=np.uint16)
    arr[0] = [0, 32768, 65535]
    arr[1] = [257, 1000, 65535]
    Image.fromarray(arr).save(p)
    with Image.open(p) as check:
        assert check.mode.startswith("I")
    img = decode_image(p)
    assert img.shape == (2, 3, 3)
    assert list(img[0, :, 0]) == [0, 128, 255]
    assert img[1, 0, 0] == 1 and img[1, 1, 0] == 4  # 1000 * 255 / 65535 = 3.9


def test_decode_I16B(tmp_path: Path) -> None:
    p = tmp_path / "big_endian.tif"
    arr = np.array([[0, 65535], [32768, 65535]], dtype=">u2")
    Image.frombytes("I;16B", (2, 2), arr.tobytes()).save(p)
    with Image.open(p) as check:
        assert check.mode == "I;16B"
    img = decode_image(p)
    assert img.shape == (2, 2, 3)
    assert list(img[:, :, 1].ravel()) == [0, 255, 128, 255]


def test_decode_I32_twelve_bit_data(tmp_path: Path) -> None:
    p = tmp_path / "i32.tif"
    arr = np.array([[0, 4095], [2048, 100]], dtype=np.int32)
    Image.fromarray(arr).save(p)
    with Image.open(p) as check:
        assert check.mode == "I"
    img = decode_image(p)
    assert list(img[:, :, 2].ravel()) == [0, 255, 128, 6]


def test_decode_F(tmp_path: Path) -> None:
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)).save(p)
    img = decode_image(p)
    assert list(img[:, :, 0].ravel()) == [0, 128, 255, 64]


def test_decode_mode_1(tmp_path: Path) -> None:
    p = tmp_path / "bilevel.png"
    im = Image.new("1", (5, 5), 0)
    im.putpixel((2, 2), 1)
    im.save(p)
    with Image.open(p) as check:
        assert check.mode == "1"
    img = decode_image(p)
    assert img.shape == (5, 5, 3)
    assert tuple(img[2, 2]) == (255, 255, 255) and tuple(img[0, 0]) == (0, 0, 0)


def test_decode_applies_exif_orientation(tmp_path: Path) -> None:
    p = tmp_path / "phone.jpg"
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))  # red block at the top-left as stored
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(p, exif=exif, quality=95)
    img = decode_image(p)
    assert img.shape == (40, 20, 3)  # width and height swapped
    # after a clockwise quarter turn the stored top-left corner is at the top-right
    assert img[2, 17, 0] > 200 and img[2, 17, 2] < 60
    assert img[2, 2, 2] > 200


def test_decode_failure_names_the_file(tmp_path: Path) -> None:
    bad = _corrupt(tmp_path / "broken.jpg")
    with pytest.raises(DataError, match="broken.jpg"):
        decode_image(bad)
    with pytest.raises(DataError, match="missing.png"):
        decode_image(tmp_path / "missing.png")
    truncated = tmp_path / "cut.png"
    _save_rgb(tmp_path / "whole.png", (1, 2, 3), (50, 50))
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    with pytest.raises(DataError, match="cut.png"):
        decode_image(truncated)


def test_to_uint8_rules() -> None:
    assert list(to_uint8(np.array([0, 200, 255], dtype=np.uint16))) == [0, 200, 255]
    assert list(to_uint8(np.array([-10, 0, 10], dtype=np.int32))) == [0, 128, 255]
    assert list(to_uint8(np.array([0.0, 100.0, 255.0], dtype=np.float32))) == [0, 100, 255]
    assert list(to_uint8(np.array([np.nan, 0.0, 1.0], dtype=np.float32))) == [0, 0, 255]
    assert list(to_uint8(np.array([-1.0, 0.0, 3.0]))) == [0, 64, 255]


def test_resize_square_takes_the_central_square() -> None:
    img = np.zeros((20, 60, 3), dtype=np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:40] = (0, 255, 0)
    img[:, 40:] = (0, 0, 255)
    out = resize_square(img, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    # the central third survives; the filter may blend a little of the neighbours at the edges
    assert (out[:, 2:8] == np.array([0, 255, 0], dtype=np.uint8)).all()
    assert (out[..., 1] > 200).all() and (out[..., 0] < 60).all() and (out[..., 2] < 60).all()
    tall = np.zeros((50, 10, 3), dtype=np.uint8)
    tall[20:30] = 200
    up = resize_square(tall, 30)
    assert up.shape == (30, 30, 3)
    assert (up[3:27] == 200).all()
    same = np.ones((8, 8, 3), dtype=np.uint8)
    assert resize_square(same, 8) is same
    with pytest.raises(ValueError):
        resize_square(same, 0)


# --------------------------------------------------------------------------------------------
# load_folder


def _class_tree(root: Path) -> None:
    _save_rgb(root / "dog" / "b.png", (0, 0, 200))
    _save_rgb(root / "cat" / "x" / "deep.png", (200, 0, 0))  # nested below the class folder
    _save_rgb(root / "dog" / "a.png", (0, 200, 0))
    _save_rgb(root / "cat" / "z.JPG", (200, 0, 0))


def test_folder_class_subfolders_become_labels(tmp_path: Path) -> None:
    _class_tree(tmp_path / "data")
    ds = load_folder(tmp_path / "data", image_size=8, progress=False)
    assert isinstance(ds, ImageSet)
    assert ds.images.shape == (4, 8, 8, 3)
    assert ds.class_names == ["cat", "dog"]
    rel = [Path(p).relative_to(tmp_path / "data").as_posix() for p in ds.paths]
    assert rel == ["cat/x/deep.png", "cat/z.JPG", "dog/a.png", "dog/b.png"]
    assert list(ds.labels) == [0, 0, 1, 1]
    assert ds.images[2, 4, 4, 1] == 200  # dog/a.png is green
    assert ds.meta["skipped"] == []


def test_folder_loose_images_mean_no_labels(tmp_path: Path) -> None:
    _class_tree(tmp_path)
    _save_rgb(tmp_path / "loose.png", (9, 9, 9))
    ds = load_folder(tmp_path, image_size=8, progress=False)
    assert len(ds) == 5 and ds.labels is None and ds.class_names is None


def test_folder_single_subfolder_means_no_labels(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "only" / "a.png", (1, 1, 1))
    _save_rgb(tmp_path / "only" / "b.png", (1, 1, 1))
    assert load_folder(tmp_path, image_size=8, progress=False).labels is None


def test_folder_numeric_class_names_sort_by_value(tmp_path: Path) -> None:
    for name in ["10", "2", "1"]:
        _save_rgb(tmp_path / name / "a.png", (1, 1, 1))
    ds = load_folder(tmp_path, image_size=4, progress=False)
    assert ds.class_names == ["1", "2", "10"]
    assert list(ds.labels) == [0, 2, 1]  # paths sort as 1/, 10/, 2/


def test_folder_extensions_case_and_hidden_files(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "a.PNG", (1, 1, 1))
    Image.new("RGB", (5, 5)).save(tmp_path / "b.JpEg", format="JPEG")
    Image.new("L", (5, 5)).save(tmp_path / "c.pgm")
    Image.new("RGB", (5, 5)).save(tmp_path / "d.BMP")
    Image.new("RGB", (5, 5)).save(tmp_path / "e.webp")
    Image.new("RGB", (5, 5)).save(tmp_path / "f.tiff")
    (tmp_path / "notes.txt").write_text("not an image")
    _corrupt(tmp_path / "._a.PNG")  # macOS resource fork: ignored
    _corrupt(tmp_path / ".cache" / "x.png")  # hidden folder: ignored
    ds = load_folder(tmp_path, image_size=4, progress=False)
    assert [Path(p).name for p in ds.paths] == [
        "a.PNG",
        "b.JpEg",
        "c.pgm",
        "d.BMP",
        "e.webp",
        "f.tiff",
    ]


def test_folder_mixed_modes_and_sizes(tmp_path: Path) -> None:
    Image.new("L", (30, 10), 50).save(tmp_path / "a.png")
    Image.new("RGBA", (10, 30), (0, 0, 0, 0)).save(tmp_path / "b.png")
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(tmp_path / "c.png")
    Image.new("CMYK", (12, 12)).save(tmp_path / "d.tif")
    ds = load_folder(tmp_path, image_size=16, progress=False)
    assert ds.images.shape == (4, 16, 16, 3)
    assert (ds.images[0] == 50).all()
    assert (ds.images[1] == 255).all()  # transparent over white
    assert (ds.images[2] == 255).all()


def test_folder_native_size(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "a.png", (1, 2, 3), (9, 7))
    _save_rgb(tmp_path / "b.png", (1, 2, 3), (9, 7))
    assert load_folder(tmp_path, image_size=None, progress=False).image_size == (7, 9)
    _save_rgb(tmp_path / "c.png", (1, 2, 3), (5, 5))
    with pytest.raises(DataError, match="image_size"):
        load_folder(tmp_path, image_size=None, progress=False)


def test_folder_threads_match_serial(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(12):
        arr = rng.integers(0, 256, (rng.integers(10, 30), rng.integers(10, 30), 3), np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i:02d}.png")
    a = load_folder(tmp_path, image_size=8, workers=1, progress=False)
    b = load_folder(tmp_path, image_size=8, workers=3, progress=False)
    assert np.array_equal(a.images, b.images) and a.paths == b.paths


def test_folder_corrupt_file_fail(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "a.png", (1, 1, 1))
    bad = _corrupt(tmp_path / "b.jpg")
    _save_rgb(tmp_path / "c.png", (1, 1, 1))
    with pytest.raises(DataError, match=str(bad)):
        load_folder(tmp_path, progress=False)


def test_folder_corrupt_file_skip(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "a.png", (1, 1, 1))
    bad = _corrupt(tmp_path / "b.jpg")
    bad2 = _corrupt(tmp_path / "d.jpg")
    _save_rgb(tmp_path / "c.png", (1, 1, 1))
    with pytest.warns(UserWarning, match="skipped 2 of 4") as rec:
        ds = load_folder(tmp_path, image_size=8, on_error="skip", progress=False)
    assert len(rec) == 1 and "b.jpg" in str(rec[0].message)
    assert len(ds) == 2
    assert [Path(p).name for p in ds.paths] == ["a.png", "c.png"]
    assert ds.meta["skipped"] == [str(bad), str(bad2)]


def test_folder_skip_keeps_labels_aligned(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "a" / "1.png", (10, 10, 10))
    _corrupt(tmp_path / "a" / "2.png")
    _save_rgb(tmp_path / "b" / "1.png", (20, 20, 20))
    with pytest.warns(UserWarning):
        ds = load_folder(tmp_path, image_size=4, on_error="skip", progress=False)
    assert list(ds.labels) == [0, 1]
    assert ds.images[1, 0, 0, 0] == 20


def test_folder_all_corrupt_under_skip(tmp_path: Path) -> None:
    _corrupt(tmp_path / "a.jpg")
    with pytest.raises(DataError, match="none of the 1 images"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_folder(tmp_path, on_error="skip", progress=False)


def test_folder_empty_missing_and_bad_options(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="contains no images") as exc:
        load_folder(empty)
    assert str(empty) in str(exc.value)
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=str(empty)):
        load_folder(empty)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")
    _save_rgb(tmp_path / "x" / "a.png", (1, 1, 1))
    with pytest.raises(DataError, match="on_error"):
        load_folder(tmp_path / "x", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="image_size"):
        load_folder(tmp_path / "x", image_size=0)


# --------------------------------------------------------------------------------------------
# load_list


def _list_tree(root: Path) -> None:
    _save_rgb(root / "imgs" / "a.png", (10, 0, 0))
    _save_rgb(root / "imgs" / "b.png", (20, 0, 0))
    _save_rgb(root / "imgs" / "c.png", (30, 0, 0))


def test_list_csv_with_header_relative_paths_and_labels(tmp_path: Path) -> None:
    _list_tree(tmp_path)
    lst = tmp_path / "lists" / "train.csv"
    lst.parent.mkdir()
    lst.write_text("path,label\n../imgs/b.png,sparrow\n\n# comment\n../imgs/a.png,crow\n")
    lst.write_text(lst.read_text() + f"{tmp_path / 'imgs' / 'c.png'},sparrow\n")
    ds = load_list(lst, image_size=6, progress=False)
    assert ds.images.shape == (3, 6, 6, 3)
    assert ds.class_names == ["crow", "sparrow"]
    assert list(ds.labels) == [1, 0, 1]
    assert list(ds.images[:, 0, 0, 0]) == [20, 10, 30]  # file order kept
    assert Path(ds.paths[0]).name == "b.png"


def test_list_tsv_without_header_or_labels(tmp_path: Path) -> None:
    _list_tree(tmp_path)
    lst = tmp_path / "all.tsv"
    lst.write_text("imgs/a.png\nimgs/c.png\n")
    ds = load_list(lst, image_size=4, progress=False)
    assert len(ds) == 2 and ds.labels is None
    lst2 = tmp_path / "tabbed.txt"
    lst2.write_text("imgs/a.png\t3\nimgs/c.png\t10\nimgs/b.png\t3\n")
    ds2 = load_list(lst2, image_size=4, progress=False)
    assert ds2.class_names == ["3", "10"] and list(ds2.labels) == [0, 1, 0]


def test_list_missing_file_names_list_and_line(tmp_path: Path) -> None:
    _list_tree(tmp_path)
    lst = tmp_path / "l.csv"
    lst.write_text("file,class\nimgs/a.png,x\nimgs/gone.png,y\nimgs/b.png,y\n")
    with pytest.raises(DataError, match=r"l\.csv line 3.*gone\.png"):
        load_list(lst, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        ds = load_list(lst, image_size=4, on_error="skip", progress=False)
    assert len(ds) == 2 and list(ds.labels) == [0, 1]
    assert ds.class_names == ["x", "y"]
    assert ds.meta["skipped"] == [str(tmp_path / "imgs" / "gone.png")]


def test_list_corrupt_image_names_line(tmp_path: Path) -> None:
    _list_tree(tmp_path)
    _corrupt(tmp_path / "imgs" / "bad.jpg")
    lst = tmp_path / "l.csv"
    lst.write_text("imgs/a.png\nimgs/bad.jpg\n")
    with pytest.raises(DataError, match=r"line 2.*bad\.jpg"):
        load_list(lst, progress=False)


def test_list_errors(tmp_path: Path) -> None:
    _list_tree(tmp_path)
    with pytest.raises(DataError, match="nope.csv"):
        load_list(tmp_path / "nope.csv")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("imgs/a.png,x\nimgs/b.png\n")
    with pytest.raises(DataError, match="line 2: no label"):
        load_list(mixed, progress=False)
    wide = tmp_path / "wide.csv"
    wide.write_text("imgs/a.png,x,extra\n")
    with pytest.raises(DataError, match="line 1"):
        load_list(wide, progress=False)
    header_only = tmp_path / "h.csv"
    header_only.write_text("path,label\n")
    with pytest.raises(DataError, match="names no images"):
        load_list(header_only, progress=False)


# --------------------------------------------------------------------------------------------
# bundled sets


def test_mnist5k_splits() -> None:
    train = mnist5k("train")
    test = mnist5k("test")
    assert len(train) == 2500 and len(test) == 2500
    assert train.image_size == (28, 28) and train.name == "mnist5k:train"
    assert train.meta["hflip"] is False  # mirrored digits change identity
    assert train.class_names == ["0", "1", "2", "3", "4"]
    assert test.class_names == ["5", "6", "7", "8", "9"]
    assert np.bincount(train.labels).tolist() == [500] * 5
    assert np.bincount(test.labels).tolist() == [500] * 5
    full = mnist5k("all")
    assert len(full) == 5000 and full.class_names == [str(d) for d in range(10)]
    # canonical order: the train split is exactly the digits 0-4 of the full set, in order
    assert np.array_equal(full.images[full.labels < 5], train.images)
    assert np.array_equal(full.images[full.labels >= 5], test.images)
    assert np.array_equal(full.labels[full.labels >= 5] - 5, test.labels)
    img = train.images[0]
    assert (img[..., 0] == img[..., 1]).all() and img.max() > 200
    assert mnist5k("test", image_size=16).images.shape == (2500, 16, 16, 3)
    with pytest.raises(DataError, match="split"):
        mnist5k("val")


def test_digits_splits() -> None:
    train, test, full = digits("train"), digits("test"), digits("all")
    assert len(train) + len(test) == len(full) == 1797
    assert train.image_size == (32, 32)
    assert train.class_names == ["0", "1", "2", "3", "4"] and test.name == "digits:test"
    assert set(test.labels.tolist()) == {0, 1, 2, 3, 4}
    assert full.images.max() == 255 and full.images.min() == 0
    assert np.array_equal(full.images[full.labels >= 5], test.images)
    native = digits("all", image_size=8)
    assert native.image_size == (8, 8)
    # 8x8 originals: values 0..16 mapped to 0..255
    assert set(np.unique(native.images)) <= {round(v * 255 / 16) for v in range(17)}


# --------------------------------------------------------------------------------------------
# benchmarks: fixture trees in the published layouts


def _cub_tree(root: Path) -> None:
    classes = {1: "001.Albatross", 2: "002.Auklet", 101: "101.Sparrow", 102: "102.Tern"}
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in classes.items()))
    images, labels = [], []
    img_id = 0
    # list the test classes first to check that output follows image ids, not file order
    for cls in [101, 1, 102, 2]:
        for k in range(2):
            img_id += 1
            rel = f"{classes[cls]}/{classes[cls].split('.')[1]}_{k}.jpg"
            _save_rgb(root / "images" / rel, (cls, k * 100, 0), (14, 10))
            images.append(f"{img_id} {rel}\n")
            labels.append(f"{img_id} {cls}\n")
    (root / "images.txt").write_text("".join(images))
    (root / "image_class_labels.txt").write_text("".join(labels))


def test_cub200_splits(tmp_path: Path) -> None:
    root = tmp_path / "CUB_200_2011"
    _cub_tree(root)
    train = cub200(root, "train", image_size=8, progress=False)
    test = cub200(root, "test", image_size=8, progress=False)
    assert len(train) == 4 and len(test) == 4
    assert train.class_names == ["001.Albatross", "002.Auklet"]
    assert test.class_names == ["101.Sparrow", "102.Tern"]
    assert list(train.labels) == [0, 0, 1, 1] and list(test.labels) == [0, 0, 1, 1]
    assert train.meta["class_ids"] == [1, 2] and test.meta["class_ids"] == [101, 102]
    assert train.name == "cub200:train"
    assert [Path(p).name for p in train.paths] == [
        "Albatross_0.jpg",
        "Albatross_1.jpg",
        "Auklet_0.jpg",
        "Auklet_1.jpg",
    ]
    assert abs(int(test.images[0, 4, 4, 0]) - 101) < 8  # red channel carries the class id
    assert len(cub200(root, "all", image_size=8, progress=False)) == 8


def test_cub200_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "CUB_200_2011"
    with pytest.raises(DataError) as exc:
        cub200(root, "train")
    msg = str(exc.value)
    assert "images.txt" in msg and "image_class_labels.txt" in msg and "images/" in msg
    assert "CUB_200_2011.tgz" in msg and "does not exist" in msg
    _cub_tree(root)
    (root / "image_class_labels.txt").unlink()
    with pytest.raises(DataError, match="missing .*image_class_labels.txt"):
        cub200(root, "train")
    (root / "image_class_labels.txt").write_text("1 101\n2 oops\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt line 2 is malformed"):
        cub200(root, "train")
    with pytest.raises(DataError, match="split"):
        cub200(root, "val")


def test_cub200_missing_image(tmp_path: Path) -> None:
    root = tmp_path / "CUB_200_2011"
    _cub_tree(root)
    gone = root / "images" / "002.Auklet" / "Auklet_1.jpg"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)) as exc:
        cub200(root, "train", progress=False)
    assert "images.txt line 8" in str(exc.value)
    assert len(cub200(root, "test", image_size=8, progress=False)) == 4  # unaffected
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        ds = cub200(root, "train", image_size=8, on_error="skip", progress=False)
    assert len(ds) == 3 and list(ds.labels) == [0, 0, 1]
    assert ds.meta["skipped"] == [str(gone)]


def _cars_tree(root: Path) -> None:
    (root / "car_ims").mkdir(parents=True)
    classes = [1, 99, 98, 196, 1]
    dtype = [("relative_im_path", "O"), ("bbox_x1", "O"), ("class", "O"), ("test", "O")]
    annos = np.zeros((1, len(classes)), dtype=dtype)
    for k, cls in enumerate(classes):
        rel = f"car_ims/{k + 1:06d}.jpg"
        _save_rgb(root / rel, (cls, 0, 0), (16, 9))
        annos[0, k] = (rel, np.array([[3]]), np.array([[cls]], np.uint8), np.array([[k % 2]]))
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"car model {c}" for c in range(1, 197)]
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annos, "class_names": names})


def test_cars196_splits(tmp_path: Path) -> None:
    root = tmp_path / "cars196"
    _cars_tree(root)
    train = cars196(root, "train", image_size=8, progress=False)
    test = cars196(root, "test", image_size=8, progress=False)
    assert [Path(p).name for p in train.paths] == ["000001.jpg", "000003.jpg", "000005.jpg"]
    assert train.class_names == ["car model 1", "car model 98"]
    assert list(train.labels) == [0, 1, 0]
    assert [Path(p).name for p in test.paths] == ["000002.jpg", "000004.jpg"]
    assert test.class_names == ["car model 99", "car model 196"]
    assert list(test.labels) == [0, 1] and test.meta["class_ids"] == [99, 196]


def test_cars196_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "cars196"
    root.mkdir()
    with pytest.raises(DataError) as exc:
        cars196(root, "train")
    assert "cars_annos.mat" in str(exc.value) and "car_ims/" in str(exc.value)
    _cars_tree(root)
    scipy.io.savemat(root / "cars_annos.mat", {"something_else": np.zeros(3)})
    with pytest.raises(DataError, match="annotations"):
        cars196(root, "train")
    (root / "cars_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="cannot read .*cars_annos.mat"):
        cars196(root, "train")


def test_cars196_missing_image(tmp_path: Path) -> None:
    root = tmp_path / "cars196"
    _cars_tree(root)
    (root / "car_ims" / "000004.jpg").unlink()
    with pytest.raises(DataError, match=r"000004\.jpg.*annotation 4"):
        cars196(root, "test", progress=False)


def _sop_tree(root: Path) -> None:
    (root / "bicycle_final").mkdir(parents=True)
    (root / "cabinet_final").mkdir()
    header = "image_id class_id super_class_id path\n"
    train = [(1, 1, 1, "bicycle_final/1_0.JPG"), (2, 1, 1, "bicycle_final/1_1.JPG")]
    train += [(3, 2, 2, "cabinet_final/2_0.JPG")]
    test = [(1, 11319, 1, "bicycle_final/11319_0.JPG"), (2, 11320, 2, "cabinet_final/x.JPG")]
    for name, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = [header] + [f"{a} {b} {c} {d}\n" for a, b, c, d in rows]
        (root / name).write_text("".join(lines))
        for _, cls, _, rel in rows:
            Image.new("RGB", (11, 8), (cls % 256, 0, 0)).save(root / rel, format="JPEG")


def test_sop_splits(tmp_path: Path) -> None:
    root = tmp_path / "Stanford_Online_Products"
    _sop_tree(root)
    train = sop(root, "train", image_size=8, progress=False)
    test = sop(root, "test", image_size=8, progress=False)
    assert len(train) == 3 and list(train.labels) == [0, 0, 1]
    assert train.class_names == ["1", "2"] and train.meta["class_ids"] == [1, 2]
    assert len(test) == 2 and test.class_names == ["11319", "11320"]
    assert list(test.labels) == [0, 1] and test.name == "sop:test"
    assert len(sop(root, "all", image_size=8, progress=False)) == 5


def test_sop_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "Stanford_Online_Products"
    with pytest.raises(DataError) as exc:
        sop(root, "test")
    msg = str(exc.value)
    assert "Ebay_train.txt" in msg and "Ebay_test.txt" in msg
    assert "Stanford_Online_Products.zip" in msg
    _sop_tree(root)
    (root / "Ebay_test.txt").unlink()
    with pytest.raises(DataError, match="missing .*Ebay_test.txt"):
        sop(root, "train")
    (root / "Ebay_test.txt").write_text(
        "id class super path\n1 11319 1 bicycle_final/11319_0.JPG\n"
    )
    with pytest.raises(DataError, match="line 1 should be the header"):
        sop(root, "test")
    (root / "Ebay_test.txt").write_text(
        "image_id class_id super_class_id path\n1 11319 bicycle_final/11319_0.JPG\n"
    )
    with pytest.raises(DataError, match="Ebay_test.txt line 2 is malformed"):
        sop(root, "test")
    (root / "cabinet_final" / "x.JPG").unlink()
    (root / "Ebay_test.txt").write_text(
        "image_id class_id super_class_id path\n1 11320 2 cabinet_final/x.JPG\n"
    )
    with pytest.raises(DataError, match=r"x\.JPG.*Ebay_test.txt line 2"):
        sop(root, "test", progress=False)


# --------------------------------------------------------------------------------------------
# registry


def test_available_datasets() -> None:
    names = available_datasets()
    for expected in ["mnist5k:train", "mnist5k:test", "digits:all", "cub200:test", "sop:train"]:
        assert expected in names


def test_load_data_bundled() -> None:
    assert len(load_data("mnist5k:train")) == 2500
    assert len(load_data("mnist5k")) == 5000  # no split: all
    ds = load_data("digits:test", image_size=16)
    assert ds.image_size == (16, 16) and ds.class_names[0] == "5"
    few = load_data("mnist5k:test", per_class=7, seed=1)
    assert len(few) == 35 and np.bincount(few.labels).tolist() == [7] * 5
    again = load_data("mnist5k:test", per_class=7, seed=1)
    assert np.array_equal(few.images, again.images)
    with pytest.raises(DataError, match="split"):
        load_data("mnist5k:val")


def test_load_data_paths(tmp_path: Path) -> None:
    _class_tree(tmp_path / "pics")
    ds = load_data(str(tmp_path / "pics"), progress=False)
    assert ds.image_size == (10, 10) and ds.class_names == ["cat", "dog"]  # native, not 64
    assert load_data(tmp_path / "pics", image_size=8, per_class=1, progress=False).images.shape == (
        2,
        8,
        8,
        3,
    )
    lst = tmp_path / "pics.txt"
    lst.write_text("pics/dog/a.png\npics/dog/b.png\n")
    assert len(load_data(str(lst), image_size=8, progress=False)) == 2
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="not a list"):
        load_data(str(tmp_path / "x.png"))


def _sized(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, dtype=np.uint8)).save(path)


def test_folders_and_lists_keep_their_native_size_up_to_the_cap(tmp_path: Path) -> None:
    for i, (w, h) in enumerate([(20, 30), (24, 24), (40, 30), (26, 50), (31, 22)]):
        _sized(tmp_path / "mixed" / f"{i}.png", w, h)  # shorter sides 20 24 30 26 22
    assert load_data(str(tmp_path / "mixed"), progress=False).image_size == (24, 24)  # median
    for i in range(3):
        _sized(tmp_path / "big" / f"{i}.png", 300, 200)
    assert load_data(str(tmp_path / "big"), progress=False).image_size == (64, 64)  # the cap
    assert load_data(str(tmp_path / "big"), image_size=100, progress=False).image_size == (
        100,
        100,
    )  # asked for: no cap
    lst = tmp_path / "l.txt"
    lst.write_text("mixed/0.png\nmixed/1.png\nmixed/3.png\n")  # 20 24 26
    assert load_data(str(lst), progress=False).image_size == (24, 24)
    assert native_side([str(tmp_path / "nothing.png")], cap=64) == 64  # unreadable: the cap


def test_load_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'") as exc:
        load_data("imagenet:train")
    assert "mnist5k:train" in str(exc.value) and "cub200:test" in str(exc.value)
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(DataError, match="neither a known dataset .* nor an existing path"):
        load_data(str(missing))
    with pytest.raises(DataError, match="neither a known dataset"):
        load_data("photos.csv")
    with pytest.raises(DataError, match="on_error"):
        load_data("mnist5k", on_error="maybe")


def test_load_data_benchmarks_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABELFREE_DATA_ROOT", raising=False)
    _cub_tree(tmp_path / "CUB_200_2011")
    _sop_tree(tmp_path / "Stanford_Online_Products")
    with pytest.raises(DataError, match="LABELFREE_DATA_ROOT"):
        load_data("cub200:train")
    with pytest.raises(DataError, match="needs a split"):
        load_data("cub200", root=tmp_path)
    # root = the dataset folder itself, or its parent
    direct = load_data("cub200:test", root=tmp_path / "CUB_200_2011", image_size=8, progress=False)
    parent = load_data("cub200:test", root=str(tmp_path), image_size=8, progress=False)
    assert direct.paths == parent.paths and len(direct) == 4
    monkeypatch.setenv("LABELFREE_DATA_ROOT", str(tmp_path))
    ds = load_data("sop:train", per_class=1, progress=False)
    assert ds.image_size == (64, 64) and len(ds) == 2
    with pytest.raises(DataError, match="Cars196: .*cars_annos.mat"):
        load_data("cars196:train")


def test_mnist_numbers_classes_and_digit_images_are_disjoint_between_splits():
    from labelfree.data.bundled import _mnist5k_arrays
    from labelfree.data.numbers import DIGIT, PER_CLASS, _small_digits, mnist_numbers

    train, test = mnist_numbers("train"), mnist_numbers("test")
    assert len(train.class_names) == 50 and len(test.class_names) == 50
    assert not set(train.class_names) & set(test.class_names)
    assert len(train) == len(test) == 50 * PER_CLASS
    assert np.bincount(train.labels).tolist() == [PER_CLASS] * 50
    src_tr, src_te = train.meta["sources"], test.meta["sources"]
    assert not set(src_tr.ravel()) & set(src_te.ravel())  # no written digit in both splits
    _, digit = _mnist5k_arrays()
    small = _small_digits()
    for s in (train, test):
        for i in range(0, len(s), 97):
            number = s.class_names[s.labels[i]]
            left, right = s.meta["sources"][i]
            assert (str(digit[left]), str(digit[right])) == (number[0], number[1])
            img = s.images[i, :, :, 0]
            # the right half holds exactly the right digit's pixels, at some vertical offset
            half = img[:, DIGIT : 2 * DIGIT]
            rows = [
                t
                for t in range(img.shape[0] - DIGIT + 1)
                if np.array_equal(half[t : t + DIGIT], small[right])
            ]
            assert rows
    both = mnist_numbers("all")
    assert np.array_equal(both.images[: len(train)], train.images)
    assert len(both.class_names) == 100
