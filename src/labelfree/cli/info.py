"""`labelfree report`, `methods` and `datasets`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from labelfree.cli.common import app, console


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder written by `labelfree fit --eval`.")
    ],
) -> None:
    """(Re)write the HTML report of a run from its files."""
    from labelfree.report.html import write_report
    from labelfree.runs import load_metrics

    load_metrics(run_dir)
    console.print(f"report: {write_report(run_dir)}")


@app.command()
def methods(
    name: Annotated[
        str | None, typer.Argument(help="A method: list its options (type, default, help).")
    ] = None,
) -> None:
    """List the methods; with NAME, every option of that method with its type, default,
    allowed values and help (give them to `fit` as -o KEY=VALUE)."""
    from labelfree.methods import available_methods, get_method_class

    if name is None:
        for n in available_methods():
            klass = get_method_class(n)
            doc = (klass.__doc__ or "").strip().splitlines()
            console.print(f"[bold]{n}[/]: {doc[0] if doc else ''}")
        console.print("`labelfree methods NAME` lists a method's options.")
        return
    klass = get_method_class(name)
    doc = (klass.__doc__ or "").strip().splitlines()
    console.print(f"[bold]{name}[/]: {escape(doc[0]) if doc else ''}")
    console.print("options (fit -o KEY=VALUE):")
    for s in klass.option_specs():
        allowed = ", ".join(s.choices) if s.choices else (str(s.range) if s.range else "")
        console.print(
            f"  [bold]{s.name}[/]: {s.type_name} = {escape(repr(s.default))}"
            + (f"  [dim]({escape(allowed)})[/]" if allowed else ""),
            highlight=False,
        )
        console.print(f"      {escape(s.help)}", highlight=False)


@app.command()
def datasets() -> None:
    """List the bundled and benchmark dataset names."""
    from labelfree.data.registry import available_datasets

    for name in available_datasets():
        console.print(name)
