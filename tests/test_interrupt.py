"""Interrupted runs, through the real command line in a subprocess (so real signals reach it).

* Ctrl-C (SIGINT) during training: exit code 130 (128 + SIGINT, the shell's and typer's
  convention for an interrupted command), no traceback, one stderr line naming the ``--resume``
  command, and the run folder keeps its last checkpoint.
* SIGKILL inside each stage of ``fit`` (g(x) features, distillation, structure step, training,
  evaluation), then ``--resume``: the same model weights, embeddings, metrics and log as an
  uninterrupted run with the same seed; what was on disk at the kill is complete and readable.
* SIGKILL while ``index --overwrite`` rebuilds an index: the previous folder stays
  byte-identical, and a re-run gives the index an uninterrupted build gives.

A kill lands in a chosen stage through the test hook of :mod:`labelfree.train.loop`
(``_test_kill_point``): ``LABELFREE_TEST_KILL_AT=<point>`` makes the process SIGKILL itself the
``LABELFREE_TEST_KILL_AFTER + 1``-th time it passes that point. Every subprocess gets its own
feature cache (``LABELFREE_CACHE``); a killed run and its resume share one, as they would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_shape_folder
from labelfree.data.imageset import DataError
from labelfree.search.index import EmbeddingIndex, save_index_folder
from labelfree.train.loop import load_checkpoint

KILLED = -signal.SIGKILL


def _env(cache: Path, kill_at: str | None = None, kill_after: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELFREE_TEST_")}
    env.update(LABELFREE_CACHE=str(cache), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if kill_at is not None:
        env.update(LABELFREE_TEST_KILL_AT=kill_at, LABELFREE_TEST_KILL_AFTER=str(kill_after))
    return env


def _cli(args: list, cache: Path, kill_at: str | None = None, kill_after: int = 0):
    return subprocess.run(
        [sys.executable, "-m", "labelfree.cli", *map(str, args)],
        env=_env(cache, kill_at, kill_after),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt-data")
    return (
        make_shape_folder(root / "train", n_per_class=10, size=16, seed=1),
        make_shape_folder(root / "eval", n_per_class=6, size=16, seed=2),
    )


def _fit_args(folders, out: Path) -> list:
    """Every stage, tiny: distilled start (2 epochs), 2 rounds × 2 epochs, evaluation."""
    train_dir, eval_dir = folders
    return [
        "fit", "--data", train_dir, "--eval", eval_dir, "--out", out, "--image-size", "16",
        "--method", "hadsell",
        "--start", "distill", "-o", "distill_epochs=2", "--epochs", "2", "--rounds", "2",
        "--batch-size", "16", "--seed", "3", "--device", "cpu", "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(folders, tmp_path_factory):
    """The uninterrupted run."""
    root = tmp_path_factory.mktemp("interrupt-reference")
    res = _cli(_fit_args(folders, root / "run"), root / "cache")
    assert res.returncode == 0, res.stderr
    return root / "run"


def _log(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


def _assert_same_run(run: Path, ref: Path) -> None:
    a = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    b = torch.load(ref / "model.pt", map_location="cpu", weights_only=False)
    assert a["net_state"].keys() == b["net_state"].keys()
    for k, v in b["net_state"].items():
        assert torch.equal(a["net_state"][k], v), k
    ea, eb = np.load(run / "eval_embeddings.npz"), np.load(ref / "eval_embeddings.npz")
    for k in ("embeddings", "labels", "paths"):
        assert np.array_equal(ea[k], eb[k]), k
    ma = json.loads((run / "metrics.json").read_text())
    mb = json.loads((ref / "metrics.json").read_text())
    assert ma["representations"] == mb["representations"]
    ma["run"].pop("fit_seconds"), mb["run"].pop("fit_seconds")
    assert ma["run"] == mb["run"]
    # one record per epoch, none lost or repeated by the kill
    assert _log(run) == _log(ref)


def _assert_readable(run: Path) -> None:
    """Whatever a kill left in the run folder is complete: every file parses."""
    for name in ("config.json", "metrics.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())
    for name, stage in (("distill.pt", "distill"), ("checkpoint.pt", "hadsell")):
        if (run / name).exists():
            load_checkpoint(run / name, stage)
    if (run / "model.pt").exists():
        torch.load(run / "model.pt", map_location="cpu", weights_only=False)


def _holds(name: str, rnd: int, epoch: int):
    """Check: the run folder's checkpoint ``name`` holds round ``rnd`` epoch ``epoch``."""

    def check(run: Path) -> bool:
        state = load_checkpoint(run / name)
        return (state["round"], state["epoch"]) == (rnd, epoch)

    return check


# stage: (kill point, passes before the kill, check of the folder the kill left)
STAGES = {
    # g(x) of the training images computed, not yet cached: no stage has begun
    "features": ("features", 0, lambda run: not (run / "distill.pt").exists()),
    # in the middle of distillation epoch 1: distill.pt holds epoch 0
    "distill": ("distill", 1, _holds("distill.pt", 0, 0)),
    # round 1's structure step (on the trained network): round 0 is checkpointed
    "structure": ("hadsell:structure", 1, _holds("checkpoint.pt", 0, 1)),
    # in the middle of round 0 epoch 1: the checkpoint holds epoch 0
    "train": ("hadsell", 1, _holds("checkpoint.pt", 0, 0)),
    # model.pt written, evaluation half done, metrics.json not written yet
    "evaluate": (
        "evaluate",
        1,
        lambda run: (run / "model.pt").exists() and not (run / "metrics.json").exists(),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_then_resume_repeats_the_uninterrupted_run(stage, folders, reference, tmp_path):
    point, after, left_as_expected = STAGES[stage]
    run, cache = tmp_path / "run", tmp_path / "cache"
    killed = _cli(_fit_args(folders, run), cache, kill_at=point, kill_after=after)
    assert killed.returncode == KILLED, killed.stderr
    assert left_as_expected(run), sorted(p.name for p in run.iterdir())
    _assert_readable(run)
    if (run / "log.jsonl").exists():  # a line cut short, as by a kill while appending it
        with open(run / "log.jsonl", "a") as fh:
            fh.write('{"stage": "hadsell", "round": 1, "ep')
    resumed = _cli([*_fit_args(folders, run), "--resume"], cache)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(run, reference)


def _default_sigint() -> None:
    # A shell may start background jobs with SIGINT ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_training_exits_cleanly_with_resume_hint(folders, tmp_path):
    run = tmp_path / "run"
    args = [
        "fit", "--data", folders[0], "--out", run, "--image-size", "16", "--method", "hadsell",
        "--start", "feature-head", "--features", "pixels", "--epochs", "5000",
        "--batch-size", "16", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelfree.cli", *map(str, args)],
        env=_env(tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():  # training has begun
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    hints = [line for line in stderr.splitlines() if "--resume" in line]
    assert len(hints) == 1, stderr
    assert "labelfree fit" in hints[0] and str(run) in hints[0], hints[0]
    assert load_checkpoint(run / "checkpoint.pt", "hadsell")["epoch"] >= 0


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_killed_index_rebuild_keeps_the_old_folder(folders, reference, tmp_path):
    import scipy.sparse as sp

    from labelfree.graph.manifold import mutual_knn_graph

    train_dir, eval_dir = folders
    cache = tmp_path / "cache"
    ref_idx, idx = tmp_path / "ref-index", tmp_path / "index"
    res = _cli(["index", "--model", reference, "--data", eval_dir, "--out", ref_idx], cache)
    assert res.returncode == 0, res.stderr
    # an existing index of other images, with the diffusion graph `search` caches beside it
    res = _cli(["index", "--model", reference, "--data", train_dir, "--out", idx], cache)
    assert res.returncode == 0, res.stderr
    sp.save_npz(idx / "graph.npz", mutual_knn_graph(np.load(idx / "embeddings.npy"), k=5))
    before = _snapshot(idx)

    rebuild = ["index", "--model", reference, "--data", eval_dir, "--out", idx, "--overwrite"]
    killed = _cli(rebuild, cache, kill_at="index")
    assert killed.returncode == KILLED, killed.stderr
    assert _snapshot(idx) == before
    assert len(EmbeddingIndex.load(idx)) == 30

    res = _cli(rebuild, cache)
    assert res.returncode == 0, res.stderr
    # the uninterrupted build, byte for byte (and no stale graph of the old embeddings)
    assert _snapshot(idx) == _snapshot(ref_idx)


def test_index_folder_swap_never_replaces_a_folder_without_an_index(tmp_path):
    idx = EmbeddingIndex(np.eye(3, dtype=np.float32))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="holds no search index"):
        save_index_folder(other, idx)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    save_index_folder(tmp_path / "new", idx, embeddings=np.eye(3, dtype=np.float32))
    save_index_folder(tmp_path / "new", idx)  # replaces: embeddings.npy is gone
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["index.faiss", "meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "notes"]  # no temporaries
