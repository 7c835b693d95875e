"""What a method's evaluation returns: rows of metrics per representation, the columns to show
and whether lower or higher is better — so the report and the CLI need no kind switches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Retrieval metrics in table order (the less saturated first, METHODS.md §0).
RETRIEVAL_COLUMNS = (
    "MAP@R",
    "R-precision",
    "R@1",
    "R@2",
    "R@4",
    "R@8",
    "R@10",
    "R@100",
    "NMI",
    "mAP",
)
#: The subset a terminal table shows.
RETRIEVAL_SUMMARY = ("MAP@R", "R-precision", "R@1", "R@10", "NMI", "mAP")


@dataclass
class Metrics:
    """An evaluation: ``representations`` maps a row name (``embedding``, an initial feature,
    a baseline) to its metrics; ``columns`` are shown in that order (``summary`` on a terminal);
    ``higher_is_better`` says which way the best value of a column lies; ``run`` holds
    settings and facts of the run; ``arrays`` what the method keeps for its output files (e.g.
    the evaluation embeddings), never written to metrics.json."""

    representations: dict[str, dict[str, float]]
    columns: tuple[str, ...]
    higher_is_better: bool = True
    summary: tuple[str, ...] = ()
    run: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    heading: str = "Metrics"
    note: str = ""
    #: columns whose best value lies the other way (e.g. an error beside accuracies)
    reversed_columns: tuple[str, ...] = ()

    def better_is_higher(self, column: str) -> bool:
        return self.higher_is_better != (column in self.reversed_columns)

    def to_json(self) -> dict[str, Any]:
        """The metrics.json form: ``{"representations": ..., "run": {..., "columns": ...}}``."""
        return {
            "representations": self.representations,
            "run": {
                **self.run,
                "columns": list(self.columns),
                "summary": list(self.summary or self.columns),
                "higher_is_better": self.higher_is_better,
                "reversed_columns": list(self.reversed_columns),
                "heading": self.heading,
                "note": self.note,
            },
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Metrics:
        """Read metrics.json back (runs written before the columns were recorded included)."""
        run = dict(d.get("run", {}))
        heading, note = run.pop("heading", "Metrics"), run.pop("note", "")
        flipped = tuple(run.pop("reversed_columns", ()))
        if "columns" in run:
            columns = tuple(run.pop("columns"))
            summary = tuple(run.pop("summary", columns))
            higher = bool(run.pop("higher_is_better", True))
        elif run.get("kind") == "frames":
            from labelfree.evaluate.landmarks import FRAME_METRICS

            columns, summary, higher = FRAME_METRICS, FRAME_METRICS, False
        else:
            columns, summary, higher = RETRIEVAL_COLUMNS, RETRIEVAL_SUMMARY, True
        reps = dict(d["representations"])
        return cls(
            reps,
            columns,
            higher,
            summary,
            run,
            heading=heading,
            note=note,
            reversed_columns=flipped,
        )
