"""`labelfree fit` and `labelfree demo`: train a method and write its run folder."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from labelfree.cli.common import (
    METHOD_NAMES,
    DataOpt,
    ImageSizeOpt,
    OnErrorOpt,
    RootOpt,
    StreamOpt,
    _load,
    _parse_options,
    _read_recipe,
    app,
    console,
    print_metrics,
)
from labelfree.cli.errors import RESUME_HINT, resume_command
from labelfree.data.imageset import DataError
from labelfree.methods.registry import DEFAULT_METHOD


@app.command()
def fit(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Run folder to create.")],
    method: Annotated[
        str | None,
        typer.Option(help=f"Method: {METHOD_NAMES}. `labelfree methods NAME` lists its options."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="A TOML recipe (recipes/*.toml): method and options of a published setup; "
            "options given on the command line override it."
        ),
    ] = None,
    eval: Annotated[
        str | None,
        typer.Option(
            "--eval", "-e", help="Labelled held-out images to evaluate on (any data spec)."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            "--from",
            help="scratch | distill (CNN distilled from g(x), default) | feature-head (MLP over "
            "g(x)). Under torchrun write --from: torchrun reads --start as its --start-method.",
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="Initial features g(x): pixels | hog | hog-lda (default) | backbone."),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="CNN: small (default) | resnet18 | hf:<dir> | timm:<name> | torchvision:<name>."
        ),
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Embedding dimension (64).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per round (10).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Structure/representation rounds (1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tuples per step (128).")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default depends on --start).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (0; CPU runs repeat).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE, repeatable (e.g. -o loss=contrastive -o k_pos=5); "
            "`labelfree methods` lists them.",
        ),
    ] = None,
    image_size: ImageSizeOpt = None,
    per_class: Annotated[
        int | None, typer.Option(help="Keep at most N images per class (needs labels).")
    ] = None,
    data_root: RootOpt = None,
    on_error: OnErrorOpt = "fail",
    stream: StreamOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a label-free method on DATA and write model, metrics and report to OUT."""
    from labelfree.methods import get_method
    from labelfree.pipeline import fit_run
    from labelfree.runs import check_run_dir

    opts: dict[str, Any] = {}
    if recipe is not None:
        rec = _read_recipe(recipe)
        method = method or rec.get("method")
        opts.update(rec.get("options", {}))
        image_size = image_size or rec.get("image_size")
    method = method or DEFAULT_METHOD
    named = dict(
        start=start,
        features=features,
        backbone=backbone,
        dim=dim,
        epochs=epochs,
        rounds=rounds,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
    )
    opts.update({k: v for k, v in named.items() if v is not None})
    opts["progress"] = progress
    opts.update(_parse_options(option or []))
    m = get_method(method, **opts)  # types, ranges and the device, before any work starts
    check_run_dir(out, overwrite=overwrite, resume=resume)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)):
        raise DataError(f"--recipe image_size {image_size!r}: expected an integer")
    train_set = _load(data, image_size, data_root, on_error, per_class, stream)
    eval_set = None
    if eval is not None:
        size = image_size or train_set.image_size[0]
        eval_set = _load(eval, size, data_root, on_error, stream=stream)
    console.print(
        f"[bold]{method}[/] on {train_set.name} ({len(train_set)} images), start={m.get_params().get('start', 'scratch')}"
    )
    RESUME_HINT["command"] = resume_command(sys.argv[1:])
    result = fit_run(m, train_set, out, eval_set=eval_set, overwrite=overwrite, resume=resume)
    from labelfree.train import distributed as dist

    if dist.rank() != 0:
        return
    if result:
        shown = tuple(result["run"]["summary"])
        print_metrics(result["representations"], f"{eval_set.name} (held out)", shown)
        console.print(f"report: {Path(out) / 'report.html'}")
    console.print(f"model: {Path(out) / 'model.pt'}")


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Demo folder (replaced if it holds an earlier demo).")
    ] = Path("demo-run"),
    epochs: Annotated[
        int | None, typer.Option(help="Fine-tuning epochs (default: the method's own).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the default method on mnist5k digits 0-4 (labels unused), evaluate on the unseen digits 5-9: g(x), the learned embedding, and the embedding with diffusion re-ranking."""  # noqa: E501
    from labelfree.data.registry import load_data
    from labelfree.evaluate.rerank import rerank_metrics
    from labelfree.methods import get_method
    from labelfree.pipeline import fit_run

    marker = out / ".labelfree-demo"
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise DataError(f"--out {out}: folder exists and is not a labelfree demo; choose another")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker.touch()
    t0 = time.perf_counter()
    train_set, test_set = load_data("mnist5k:train"), load_data("mnist5k:test")
    console.print(
        f"demo: {DEFAULT_METHOD} (the default method) on {train_set.name} ({len(train_set)} "
        f"images, labels unused), evaluated on {test_set.name} ({len(test_set)} images of "
        "unseen digits)"
    )
    opts = {} if epochs is None else {"epochs": epochs}
    m = get_method(DEFAULT_METHOD, seed=seed, progress=progress, **opts)
    run_dir = out / DEFAULT_METHOD
    res = fit_run(m, train_set, run_dir, eval_set=test_set)
    reps = res["representations"]
    table = {f"g(x) {k}": v for k, v in reps.items() if k != "embedding"}
    table[DEFAULT_METHOD] = reps["embedding"]
    emb = np.load(run_dir / "eval_embeddings.npz")["embeddings"]
    table[f"{DEFAULT_METHOD} + re-ranking"] = rerank_metrics(emb, test_set.labels)
    console.print(f"  fit {res['run']['fit_seconds']:.0f} s, report {run_dir / 'report.html'}")
    print_metrics(table, title="mnist5k digits 5-9 (held out), 500 images per class")
    console.print(
        f"{DEFAULT_METHOD}: the embedding learnt from a {m.encoder.start} start; + re-ranking: "
        "with diffusion over the evaluation set's own kNN graph (labelfree evaluate --rerank "
        f"diffusion). total {time.perf_counter() - t0:.0f} s; run in {run_dir}/"
    )
