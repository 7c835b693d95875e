"""Shared fixtures: an isolated feature cache and tiny image folders made at run time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LABELFREE_CACHE", str(tmp_path_factory.mktemp("cache")))


def make_shape_folder(root: Path, n_per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Class sub-folders of small synthetic images: discs, bars and crosses at random places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for cls in ("disc", "bar", "cross"):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
            r = rng.integers(size // 8, size // 4)
            if cls == "disc":
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            elif cls == "bar":
                m = (abs(yy - cy) <= 2) & (abs(xx - cx) <= r)
            else:
                m = ((abs(yy - cy) <= 1) & (abs(xx - cx) <= r)) | (
                    (abs(xx - cx) <= 1) & (abs(yy - cy) <= r)
                )
            img = (rng.random((size, size, 3)) * 40).astype(np.uint8)
            img[m] = rng.integers(150, 256, size=3)
            Image.fromarray(img).save(d / f"{cls}_{i:02d}.png")
    return root


@pytest.fixture
def shape_folders(tmp_path):
    return (
        make_shape_folder(tmp_path / "train", seed=1),
        make_shape_folder(tmp_path / "eval", n_per_class=8, seed=2),
    )


def run_cli(args: list[str], monkeypatch) -> int:
    """Run the ``labelfree`` entry point in-process; returns its exit code."""
    from labelfree.cli import main

    monkeypatch.setattr(sys, "argv", ["labelfree", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
