"""The command line end to end on tiny folders, and the clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

FAST = [
    "--method",
    "hadsell",
    "--start",
    "feature-head",
    "--features",
    "hog",
    "--epochs",
    "2",
    "--no-progress",
]


@pytest.mark.slow
def test_fit_folder_report_index_search(shape_folders, tmp_path, monkeypatch, capsys):
    train_dir, eval_dir = shape_folders
    out = tmp_path / "run"
    code = run_cli(
        ["fit", "--data", train_dir, "--eval", eval_dir, "--out", out, *FAST, "--image-size", "32"],
        monkeypatch,
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    reps = metrics["representations"]
    assert set(reps) == {"pixels", "hog", "hog-lda", "embedding"}
    for vals in reps.values():
        assert {"MAP@R", "R@1", "NMI", "R-precision", "mAP"} <= set(vals)
        assert 0 <= vals["MAP@R"] <= 1
    assert metrics["run"]["start"] == "feature-head"
    assert "k" in metrics["run"]["nmi_kmeans"]
    for f in ("report.html", "retrieval.png", "loss.png", "model.pt", "log.jsonl"):
        assert (out / f).exists(), f
    html = (out / "report.html").read_text()
    assert "hog-lda" in html and "embedding" in html and "retrieval.png" in html

    # refuses to overwrite; --overwrite replaces
    assert run_cli(["fit", "--data", train_dir, "--out", out, *FAST], monkeypatch) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        run_cli(
            ["fit", "--data", train_dir, "--eval", eval_dir, "--out", out, *FAST, "--overwrite"],
            monkeypatch,
        )
        == 0
    )

    # embed, index, search with an image outside the index
    assert (
        run_cli(
            ["embed", "--model", out, "--data", eval_dir, "--out", tmp_path / "e.npz"], monkeypatch
        )
        == 0
    )
    z = np.load(tmp_path / "e.npz")
    assert z["embeddings"].shape == (24, 64) and len(z["paths"]) == 24
    assert (
        run_cli(
            ["index", "--model", out, "--data", eval_dir, "--out", tmp_path / "idx"], monkeypatch
        )
        == 0
    )
    q = tmp_path / "query.png"
    Image.fromarray(np.asarray(Image.open(next((eval_dir / "disc").iterdir())))[::-1]).save(q)
    capsys.readouterr()
    assert (
        run_cli(
            ["search", "--index", tmp_path / "idx", "--query", q, "-k", "5", "--json"], monkeypatch
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 1 and len(res[0]["results"]) == 5
    search = ["search", "--index", tmp_path / "idx", "--query", q, "-k", "5", "--json"]
    assert run_cli([*search, "--rerank", "diffusion"], monkeypatch) == 0
    rr = json.loads(capsys.readouterr().out)
    assert len(rr[0]["results"]) == 5 and (tmp_path / "idx" / "graph.npz").exists()
    # the diffusion list is a re-ranking of indexed items, not a copy of the cosine list
    assert {r["item"] for r in rr[0]["results"]} <= set(map(str, z["paths"]))
    scores = [r["score"] for r in res[0]["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(str(eval_dir) in r["item"] for r in res[0]["results"])

    args = ["evaluate", "--model", out, "--data", eval_dir, "--rerank", "diffusion"]
    assert run_cli([*args, "--json", tmp_path / "m.json"], monkeypatch) == 0
    reps = json.loads((tmp_path / "m.json").read_text())["representations"]
    assert {"embedding", "embedding + diffusion", "hog + diffusion"} <= set(reps)
    assert reps["embedding + diffusion"]["rerank_ms_per_query"] > 0
    assert run_cli(["report", out], monkeypatch) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--data", "{empty}", "--out", "{tmp}/r"], "no images"),
        (["fit", "--data", "nosuchset:train", "--out", "{tmp}/r"], "nosuchset"),
        (["fit", "--data", "{tmp}/missing-folder", "--out", "{tmp}/r"], "missing-folder"),
        (
            ["fit", "--data", "mnist5k:train", "--method", "nope", "--out", "{tmp}/r"],
            "unknown method",
        ),
        (["fit", "--data", "mnist5k:train", "-o", "bogus=1", "--out", "{tmp}/r"], "bogus"),
        (["fit", "--data", "{few}", "--out", "{tmp}/r", "--no-progress"], "needs at least"),
        (["evaluate", "--model", "{tmp}/none.pt", "--data", "digits:test"], "no such model"),
    ],
)
def test_bad_input_gets_a_clear_error(args, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    few = tmp_path / "few"
    few.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(few / f"{i}.png")
    fmt = {"tmp": tmp_path, "empty": tmp_path / "empty", "few": few}
    code = run_cli([a.format(**fmt) for a in args], monkeypatch)
    assert code == 2
    assert message.lower() in capsys.readouterr().err.lower()
    assert not (tmp_path / "r" / "model.pt").exists()


def test_model_of_another_method_is_refused(tmp_path):
    import torch

    from labelfree.data.imageset import DataError
    from labelfree.methods import Hadsell
    from labelfree.methods.model_file import MODEL_FORMAT

    torch.save({"format": MODEL_FORMAT, "method": "mom"}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="written by method 'mom', not 'hadsell'"):
        Hadsell.load(tmp_path / "m.pt")


def test_fit_without_method_trains_the_default_method(tmp_path, monkeypatch):
    import labelfree.pipeline as pipeline
    from labelfree.methods.registry import DEFAULT_METHOD

    seen = {}
    monkeypatch.setattr(pipeline, "fit_run", lambda method, *a, **kw: seen.update(m=method) or {})
    args = ["fit", "--data", "digits:train", "--out", tmp_path / "r", "--epochs", "1"]
    assert run_cli(args, monkeypatch) == 0
    assert seen["m"].name == DEFAULT_METHOD == "mom"


def test_recipe_sets_method_and_options_and_command_line_overrides(tmp_path, monkeypatch):
    from pathlib import Path

    import labelfree.pipeline as pipeline

    seen = {}

    def fake_fit_run(method, train, out, **kw):
        seen["method"] = method
        return {}

    monkeypatch.setattr(pipeline, "fit_run", fake_fit_run)
    recipe = Path(__file__).parents[1] / "recipes" / "mom-cub.toml"
    code = run_cli(
        [
            "fit",
            "--data",
            "digits:train",
            "--out",
            tmp_path / "r",
            "--recipe",
            recipe,
            "--epochs",
            "3",
            "--image-size",
            "32",
        ],
        monkeypatch,
    )
    assert code == 0
    m = seen["method"]
    assert (
        m.name == "mom"
        and m.margin == 0.5
        and m.training.optimizer == "sgd"
        and m.training.lr_step == 10
    )
    assert m.training.epochs == 3  # the command line wins over the recipe's 100
    bad = tmp_path / "bad.toml"
    bad.write_text('method = "mom"\ncolour = 1\n')
    assert (
        run_cli(
            ["fit", "--data", "digits:train", "--out", tmp_path / "r2", "--recipe", bad],
            monkeypatch,
        )
        == 2
    )


@pytest.mark.slow
def test_evaluate_exemplar_protocol(tmp_path, monkeypatch, capsys):
    """`evaluate --protocol exemplar` scores g(x) and the embedding on frame sequences, and the
    g(x) row equals the protocol computed directly (independently of the CLI)."""
    from labelfree.data.registry import load_data
    from labelfree.data.sequences import mirror_images
    from labelfree.evaluate.exemplar import exemplar_protocol
    from labelfree.features.base import compute_features
    from labelfree.features.registry import get_extractor
    from labelfree.methods import load_model

    out = tmp_path / "run"
    fit = ["fit", "--data", "synthetic-poses:train", "--out", out, "--method", "hadsell"]
    assert run_cli([*fit, *FAST[:-2], "1", "--no-progress"], monkeypatch) == 0
    js = tmp_path / "ex.json"
    args = ["evaluate", "--model", out, "--data", "synthetic-poses:test", "--features", "hog"]
    code = run_cli([*args, "--protocol", "exemplar", "--json", js], monkeypatch)
    assert code == 0, capsys.readouterr().err
    reps = json.loads(js.read_text())["representations"]
    assert set(reps) == {"hog", "embedding"}
    test = load_data("synthetic-poses:test")
    ext = get_extractor("hog").fit(test)
    want = exemplar_protocol(
        compute_features(ext, test), test, compute_features(ext, mirror_images(test)), seed=0
    )
    assert reps["hog"]["roc_auc"] == pytest.approx(want["roc_auc"], abs=1e-9)
    # the embedding row is the same protocol on the saved model's embeddings (a one-epoch model:
    # its quality is not the point here; benchmarks/bench_sequences.py measures that)
    model = load_model(str(out / "model.pt"))
    want = exemplar_protocol(model.embed(test), test, model.embed(mirror_images(test)), seed=0)
    for key in ("roc_auc", "roc_auc_best", "roc_auc_image", "n_queries"):
        assert reps["embedding"][key] == pytest.approx(want[key], abs=1e-9), key
    assert run_cli([*args, "--protocol", "nope"], monkeypatch) == 2
