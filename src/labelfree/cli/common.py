"""What every command shares: the app, consoles, option types, data loading, tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from labelfree.data.imageset import DataError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Learn visual similarity without labels. Data specs: a folder of images (class "
    "sub-folders optional, used only for evaluation), a CSV list (path[,label]), or a bundled / "
    "benchmark name such as mnist5k:train, mnist5k:test, digits:train, cub200:test "
    "(see `labelfree datasets`).",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DataOpt = Annotated[
    str,
    typer.Option("--data", "-d", help="Images: a folder, a CSV list, or a name (mnist5k:train)."),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Resize (shorter side) and centre-crop images to this size. Default: the "
        "images' own (median) size, at most 64, for folders and lists; native for bundled sets."
    ),
]
RootOpt = Annotated[
    str | None,
    typer.Option(
        help="Root folder of a benchmark (cub200, cars196, sop); default "
        "$LABELFREE_DATA_ROOT/<standard folder name>."
    ),
]
OnErrorOpt = Annotated[
    str,
    typer.Option(
        help="Unreadable image files: 'fail' (stop, naming the file) or 'skip' "
        "(drop them with a warning and a count)."
    ),
]
StreamOpt = Annotated[
    bool | None,
    typer.Option(
        "--stream/--no-stream",
        help="Folders and list files: decode once into an on-disk store (in $LABELFREE_CACHE) "
        "and read batches from it, so a collection larger than memory trains in bounded memory. "
        "Default: only when the decoded pixels exceed 1 GiB or a quarter of the free memory.",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="A run folder (uses its model.pt) or a model file.")
]


# Every method, for `fit --help` without importing torch (a test checks it against the registry).
METHOD_NAMES = "mom (default) | diffusion | hadsell | dnc | instdisc | deepcluster | exemplar-cnn | stml | cliquecnn | posets | roul | fse | dense | dense-sym | evc | cpfs | deepmatching"


def _check_positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise DataError(f"{option} {value}: must be >= 1")


def _load(
    spec: str,
    image_size: int | None,
    root: str | None,
    on_error: str,
    per_class: int | None = None,
    stream: bool | None = None,
):
    from labelfree.data.registry import load_data

    if on_error not in ("fail", "skip"):
        raise DataError(f"--on-error {on_error!r}: choose 'fail' or 'skip'")
    _check_positive("--image-size", image_size)
    _check_positive("--per-class", per_class)
    return load_data(
        spec,
        image_size=image_size,
        root=root,
        on_error=on_error,
        per_class=per_class,
        stream=stream,
    )


def _read_recipe(path: Path) -> dict[str, Any]:
    import tomllib

    if not path.exists():
        raise DataError(f"--recipe {path}: no such file")
    try:
        rec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"--recipe {path}: not valid TOML ({exc})") from exc
    unknown = set(rec) - {"method", "options", "image_size", "data", "source", "notes"}
    if unknown:
        raise DataError(f"--recipe {path}: unknown keys {', '.join(sorted(unknown))}")
    return rec


def _model_path(model: Path) -> Path:
    return model / "model.pt" if model.is_dir() else model


def _parse_options(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs as strings: the method converts each by its type annotation."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--option {pair!r}: expected KEY=VALUE (e.g. -o k_pos=5)")
        out[key.strip().replace("-", "_")] = value
    return out


def print_metrics(
    representations: dict[str, dict[str, float]],
    title: str = "",
    shown: tuple[str, ...] | None = None,
) -> None:
    """The terminal table of ``shown`` metrics per representation (retrieval: the less
    saturated metrics first, METHODS.md §0; object frames: the probe errors)."""
    from labelfree.evaluate.results import RETRIEVAL_SUMMARY
    from labelfree.report.html import metrics_table_rows

    cols, rows = metrics_table_rows(representations, shown or RETRIEVAL_SUMMARY)
    table = Table(title=title or None)
    for c in cols:
        table.add_column(c, justify="left" if c == "representation" else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)
