"""Every bad input through the real command line: exit code 2, one line on stderr that names the
file or option at fault, no traceback, and nothing already on disk changed.

The workspace (a fitted run, its index, an embeddings file and folders of broken images) is
built once per module; each case snapshots every file's bytes before and after.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_shape_folder

FAST = [
    "--method",
    "hadsell",
    "--start",
    "feature-head",
    "--features",
    "hog",
    "--epochs",
    "1",
    "--no-progress",
]


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    from labelfree.cli import main

    old = sys.argv
    sys.argv = ["labelfree", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A fitted run, its index and embeddings, and folders each holding one broken image."""
    root = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABELFREE_CACHE", str(root / "cache"))
        train = make_shape_folder(root / "train", n_per_class=6, seed=1)
        from labelfree.cli import main

        for args in (
            ["fit", "--data", train, "--out", root / "run", *FAST],
            ["index", "--model", root / "run", "--data", train, "--out", root / "idx"],
            ["embed", "--model", root / "run", "--data", train, "--out", root / "emb.npz"],
        ):
            mp.setattr(sys, "argv", ["labelfree", *map(str, args)])
            with pytest.raises(SystemExit) as exc:
                main()
                sys.exit(0)
            assert exc.value.code in (0, None)
    good = sorted((train / "disc").glob("*.png"))[:5]
    data = good[0].read_bytes()
    broken = {
        "truncated": data[: len(data) // 2],
        "text": b"this is not an image\n",
        "zero": b"",
        "bomb": _png_claiming(100_000, 100_000),
    }
    for kind, payload in broken.items():
        d = root / f"bad-{kind}" / "x"
        d.mkdir(parents=True)
        for g in good:
            (d / g.name).write_bytes(g.read_bytes())
        (d / f"{kind}.png").write_bytes(payload)
    d = root / "bad-tiny" / "x"
    d.mkdir(parents=True)
    for g in good:
        (d / g.name).write_bytes(g.read_bytes())
    Image.new("RGB", (1, 1), (9, 9, 9)).save(d / "tiny.png")
    (root / "empty").mkdir()
    few = root / "few"
    few.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(few / f"{i}.png")
    (root / "missing.csv").write_text("path\nnot-there.png\n")
    (root / "notes.txt").write_text("not a model\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "a.txt").write_text("hello\n")
    (root / "bad.toml").write_text("method = [\n")
    (root / "badval.toml").write_text('method = "hadsell"\n[options]\nk_pos = "abc"\n')
    torch.save({"format": "something-else"}, root / "foreign.pt")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "cache" not in p.parts
    }


CASES = [
    # options: types, ranges, names
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "k_pos=abc"], "k_pos"),
    (
        ["fit", "-d", "{train}", "--out", "{new}", "-o", "weighted=maybe", "--method", "mom"],
        "weighted",
    ),
    (["fit", "-d", "{train}", "--out", "{new}", "--dim", "0"], "dim"),
    (["fit", "-d", "{train}", "--out", "{new}", "--epochs", "-1"], "epochs"),
    (["fit", "-d", "{train}", "--out", "{new}", "--batch-size", "0"], "batch_size"),
    (["fit", "-d", "{train}", "--out", "{new}", "--lr", "0"], "lr"),
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "lr=nan"], "lr"),
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "alpha=1.5", "--method", "mom"], "alpha"),
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "bogus=1"], "bogus"),
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "k_pos"], "k_pos"),
    (["fit", "-d", "{train}", "--out", "{new}", "--method", "nope"], "nope"),
    (["fit", "-d", "{train}", "--out", "{new}", "--start", "imagenet"], "start"),
    (["fit", "-d", "{train}", "--out", "{new}", "-o", "features=backbone"], "features=backbone"),
    (["fit", "-d", "{train}", "--out", "{new}", "--device", "gpu"], "--device"),
    (["fit", "-d", "{train}", "--out", "{new}", "--image-size", "0"], "--image-size"),
    (["fit", "-d", "{train}", "--out", "{new}", "--image-size", "100000"], "--image-size"),
    (["fit", "-d", "digits:train", "--out", "{new}", "--image-size", "100000"], "--image-size"),
    (["fit", "-d", "{train}", "--out", "{new}", "--per-class", "0"], "--per-class"),
    (["fit", "-d", "{train}", "--out", "{new}", "--on-error", "ignore"], "--on-error"),
    (["fit", "-d", "{train}", "--out", "{new}", "--recipe", "{ws}/none.toml"], "none.toml"),
    (["fit", "-d", "{train}", "--out", "{new}", "--recipe", "{ws}/bad.toml"], "bad.toml"),
    (["fit", "-d", "{train}", "--out", "{new}", "--recipe", "{ws}/badval.toml"], "k_pos"),
    (["methods", "nope"], "nope"),
    # the command line itself (typer's own errors, as one line too)
    (["fit", "-d", "{train}", "--out", "{new}", "--lr", "abc"], "--lr"),
    (["fit", "-d", "{train}"], "--out"),
    (["fit", "-d", "{train}", "--out", "{new}", "--bogus-flag"], "--bogus-flag"),
    (["fit", "-d", "{train}", "--out", "{new}", "--epochs"], "--epochs"),
    (["nosuchcommand"], "nosuchcommand"),
    # data
    (["fit", "-d", "{ws}/empty", "--out", "{new}", *FAST], "empty"),
    (["fit", "-d", "{ws}/no-such-folder", "--out", "{new}", *FAST], "no-such-folder"),
    (["fit", "-d", "nosuchset:train", "--out", "{new}", *FAST], "nosuchset"),
    (["fit", "-d", "{ws}/few", "--out", "{new}", *FAST], "needs at least"),
    (["fit", "-d", "{ws}/missing.csv", "--out", "{new}", *FAST], "not-there.png"),
    (["embed", "-m", "{run}", "-d", "{ws}/bad-truncated", "--out", "{new}.npz"], "truncated.png"),
    (["embed", "-m", "{run}", "-d", "{ws}/bad-text", "--out", "{new}.npz"], "text.png"),
    (["embed", "-m", "{run}", "-d", "{ws}/bad-zero", "--out", "{new}.npz"], "zero.png"),
    (["embed", "-m", "{run}", "-d", "{ws}/bad-bomb", "--out", "{new}.npz"], "bomb.png"),
    (["embed", "-m", "{run}", "-d", "{ws}/bad-tiny", "--out", "{new}.npz"], "tiny.png"),
    (["evaluate", "-m", "{run}", "-d", "{ws}/bad-tiny/x"], "tiny.png"),
    # models and indexes
    (["evaluate", "-m", "{ws}/notes.txt", "-d", "{train}"], "notes.txt"),
    (["evaluate", "-m", "{ws}/foreign.pt", "-d", "{train}"], "foreign.pt"),
    (["evaluate", "-m", "{ws}/none.pt", "-d", "{train}"], "none.pt"),
    (["evaluate", "-m", "{run}", "-d", "{train}", "--rerank", "roul"], "roul"),
    (["evaluate", "-m", "{run}", "-d", "{train}", "--features", "backbone"], "--features"),
    (["search", "--index", "{ws}/no-index", "-q", "{img}"], "no-index"),
    (["search", "--index", "{ws}/foreign", "-q", "{img}"], "foreign"),
    (["search", "--index", "{ws}/idx", "-q", "{ws}/nope.png"], "nope.png"),
    (["search", "--index", "{ws}/idx", "-q", "{img}", "--rerank", "magic"], "--rerank"),
    (["report", "{ws}/foreign"], "foreign"),
    # outputs that exist or cannot be written
    (["fit", "-d", "{train}", "--out", "{run}", *FAST], "--out"),
    (["index", "-m", "{run}", "-d", "{train}", "--out", "{ws}/idx"], "--out"),
    (["embed", "-m", "{run}", "-d", "{train}", "--out", "{ws}/emb.npz"], "--out"),
    (["embed", "-m", "{run}", "-d", "{train}", "--out", "{ws}/emb.txt"], "--out"),
    (["fit", "-d", "{train}", "--out", "{run}/model.pt/sub", *FAST], "model.pt"),
    (["fit", "-d", "{train}", "--out", "/proc/labelfree-test-run", *FAST], "/proc"),
    # streaming applies to files only
    (["fit", "-d", "digits:train", "--out", "{new}", "--stream", *FAST], "--stream"),
]


@pytest.mark.parametrize("args, names", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_bad_input(args, names, ws, capsys, monkeypatch):
    monkeypatch.setenv("LABELFREE_CACHE", str(ws / "cache"))
    img = next((ws / "train" / "bar").glob("*.png"))
    new = ws / "new-output"
    fmt = {"ws": ws, "train": ws / "train", "run": ws / "run", "new": new, "img": img}
    before = _snapshot(ws)
    code, out, err = _run([a.format(**fmt) for a in args], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert names.lower() in err.lower(), err
    assert _snapshot(ws) == before, "a bad input changed files on disk"
    assert not new.exists() and not Path(f"{new}.npz").exists()


def test_device_without_cuda_is_refused_before_work(ws, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("LABELFREE_CACHE", str(ws / "cache"))
    before = _snapshot(ws)
    code, _, err = _run(
        ["fit", "-d", ws / "train", "--out", ws / "new-output", "--device", "cuda"], capsys
    )
    assert code == 2 and "--device cuda: CUDA is not available" in err
    assert len(err.strip().splitlines()) == 1 and _snapshot(ws) == before


@pytest.mark.parametrize("kind", ["truncated", "text", "zero", "tiny"])
def test_skip_policy_drops_the_bad_file_and_names_it(kind, ws, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LABELFREE_CACHE", str(ws / "cache"))
    out = tmp_path / "e.npz"
    args = ["embed", "-m", ws / "run", "-d", ws / f"bad-{kind}", "--out", out, "--on-error", "skip"]
    code, _, err = _run(args, capsys)
    assert code == 0, err
    z = np.load(out)
    assert z["embeddings"].shape[0] == 5  # the five good images
    assert f"{kind}.png" in " ".join(err.split()) and "Traceback" not in err
