"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    """Format one table cell: floats with 8 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """Return ``rows`` as an aligned plain-text table with the given ``columns``.

    Missing keys print as '-'; numbers are right-aligned, text left-aligned.
    """
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    numeric = [
        all(
            isinstance(row.get(col), int | float) and not isinstance(row.get(col), bool)
            for row in rows
            if row.get(col) is not None
        )
        for col in columns
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(columns)))
    out.append("-+-".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Print ``rows`` (dicts keyed by column name) as an aligned plain-text table."""
    print(format_table(rows, columns, title))
    print()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
