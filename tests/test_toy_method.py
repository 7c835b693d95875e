"""Adding a method needs nothing but its file: a toy method defined here trains, saves, loads,
evaluates, indexes and reports through the command line, and passes the check suite's basics."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from conftest import run_cli
from labelfree.methods import Method, get_method, register_method, unregister_method
from labelfree.methods.encoder import Encoder
from labelfree.options import AT_LEAST_1
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure


@dataclass
class ToyStructure(Structure):
    """``positives`` (N, k): each item's nearest neighbours in the current representation."""

    positives: np.ndarray


class Toy(Method):
    """Toy: each item's nearest neighbour in the current representation is its positive, a
    random item its negative; squared-distance triplet loss with a margin."""

    name = "toy"
    option_ranges = {"k": AT_LEAST_1}

    def __init__(
        self,
        *,
        k: int = 1,
        margin: float = 0.2,
        encoder: Encoder = Encoder(),
        training: Training = Training(),
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        k: neighbours a positive is drawn from.
        margin: triplet margin.
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.k, self.margin = k, margin

    def min_items(self) -> int:
        return self.k + 2

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> ToyStructure:
        from labelfree.graph.knn import knn

        return ToyStructure(knn(reps, self.k)[1])

    def batches(
        self, structure: ToyStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict]:
        pos = structure.positives
        n = len(pos)
        a = rng.permutation(n)
        p = pos[a, rng.integers(0, pos.shape[1], size=n)]
        neg = rng.integers(0, n, size=n)
        out = []
        for s in range(0, n, self.training.batch_size):
            items, inv = np.unique(
                np.concatenate(
                    [
                        a[s : s + self.training.batch_size],
                        p[s : s + self.training.batch_size],
                        neg[s : s + self.training.batch_size],
                    ]
                ),
                return_inverse=True,
            )
            m = len(a[s : s + self.training.batch_size])
            out.append({"indices": items, "a": inv[:m], "p": inv[m : 2 * m], "n": inv[2 * m :]})
        return out

    def batch_loss(self, emb: torch.Tensor, batch: dict, structure: ToyStructure) -> torch.Tensor:
        a, p, n = emb[batch["a"]], emb[batch["p"]], emb[batch["n"]]
        d_ap = (a - p).pow(2).sum(1)
        d_an = (a - n).pow(2).sum(1)
        return torch.relu(d_ap - d_an + self.margin).mean()


@pytest.fixture
def toy():
    register_method(Toy)
    yield Toy
    unregister_method("toy")


def test_toy_method_through_the_command_line(toy, shape_folders, tmp_path, monkeypatch, capsys):
    train_dir, eval_dir = shape_folders
    run = tmp_path / "run"
    args = ["fit", "--method", "toy", "--data", train_dir, "--eval", eval_dir, "--out", run]
    opts = ["--start", "feature-head", "--features", "hog", "--epochs", "2", "--no-progress"]
    assert run_cli([*args, *opts, "-o", "k=2", "-o", "margin=0.3"], monkeypatch) == 0, (
        capsys.readouterr().err
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["method"] == "toy" and "embedding" in metrics["representations"]
    assert (run / "report.html").exists()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["params"]["k"] == 2 and cfg["params"]["margin"] == 0.3

    assert (
        run_cli(
            ["evaluate", "--model", run, "--data", eval_dir, "--json", tmp_path / "m.json"],
            monkeypatch,
        )
        == 0
    )
    again = json.loads((tmp_path / "m.json").read_text())["representations"]["embedding"]
    assert again["MAP@R"] == metrics["representations"]["embedding"]["MAP@R"]
    assert (
        run_cli(
            ["index", "--model", run, "--data", eval_dir, "--out", tmp_path / "idx"], monkeypatch
        )
        == 0
    )
    assert run_cli(["methods", "toy"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "k: int = 1  (>= 1)" in out and "neighbours a positive is drawn from" in out
    assert run_cli([*args[:-1], tmp_path / "r2", *opts, "-o", "k=0"], monkeypatch) == 2
    assert "option k=0: must be >= 1" in capsys.readouterr().err


def test_a_taken_name_is_refused(toy):
    class Other(Toy):
        pass

    with pytest.raises(ValueError, match="method name 'toy' is taken"):
        register_method(Other)
    assert type(get_method("toy")) is Toy
