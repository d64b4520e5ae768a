"""What an evaluation found, as a table, as JSON and as a plot.

The JSON is a contract: every model is compared through it. Its shape is

    {"kind": "items", "dropped_test_rows": 0,
     "results": [{"model": "popular", "params": {}, "fit_seconds": 0.1,
                  "recommend_seconds": 0.4,
                  "metrics": {"recall@20": 0.1, "ndcg@20": 0.1, ...}}]}

with one ``metrics`` key per metric and k, plus extra keys that explain the
figures (how many users were scored, why test rows were dropped).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recgraph.evaluation.metrics import METRICS, metric_key
from recgraph.files import write_json

#: Why a test row was not scored; the order in which reasons are checked.
DROP_REASONS = (
    "dislike",
    "user_not_in_train",
    "target_not_in_train",
    "self_loop",
    "already_in_train",
    "duplicate",
)


#: Column headings short enough for an 80-column table.
_SHORT_NAMES = {"coverage": "cover"}


@dataclass
class ModelResult:
    """One model's figures: mean metrics over the evaluated users, and timings."""

    model: str
    params: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    recommend_seconds: float
    metric_seconds: float
    #: Recommended ids that were not allowed (seen, self, not a candidate, a
    #: repeat): a model bug. They were blanked before scoring.
    invalid_recommendations: int = 0
    #: Per-user values (``"recall@20" -> array`` aligned with the report's
    #: ``users``), for paired comparisons; not written to JSON.
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": self.params,
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "metrics": self.metrics,
            "metric_seconds": self.metric_seconds,
            "invalid_recommendations": self.invalid_recommendations,
            "config": self.config,
        }


@dataclass
class EvaluationReport:
    """Everything :func:`recgraph.evaluation.evaluate` measured."""

    kind: str
    ks: tuple[int, ...]
    n_train_rows: int
    n_test_rows: int
    n_candidates: int
    dropped_by_reason: dict[str, int]
    #: Users with at least one test target: the rows of every average.
    users: np.ndarray
    n_test_targets: int
    results: list[ModelResult] = field(default_factory=list)
    #: More sections of the report by name (e.g. ``two_stage``: a pipeline's
    #: candidate recall and nDCG before and after re-ranking per depth).
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped_test_rows(self) -> int:
        return int(sum(self.dropped_by_reason.values()))

    @property
    def n_users(self) -> int:
        return len(self.users)

    def result(self, model: str) -> ModelResult:
        """The first result of ``model`` (by name)."""
        for result in self.results:
            if result.model == model:
                return result
        raise KeyError(f"no result for model {model!r}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dropped_test_rows": self.dropped_test_rows,
            "results": [result.to_dict() for result in self.results],
            "ks": list(self.ks),
            "dropped_by_reason": dict(self.dropped_by_reason),
            "n_train_rows": self.n_train_rows,
            "n_test_rows": self.n_test_rows,
            "n_test_targets": self.n_test_targets,
            "n_users": self.n_users,
            **self.sections,
            "n_candidates": self.n_candidates,
        }

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        if path is not None:
            return write_json(path, self.to_dict(), indent=indent).rstrip("\n")
        return json.dumps(self.to_dict(), indent=indent)

    # ------------------------------------------------------------------ table
    def table(self):
        """A rich table: one row per model and k, one column per metric."""
        from rich import box
        from rich.table import Table

        title = (
            f"{self.kind}: {self.n_users:,} users scored, {self.n_test_targets:,} test targets, "
            f"{self.n_candidates:,} candidates"
        )
        # Compact, so that 6 metrics and 2 timings fit an 80-column terminal.
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
            show_edge=False,
        )
        table.add_column("model", no_wrap=True)
        table.add_column("k", justify="right", no_wrap=True)
        for metric in METRICS:
            table.add_column(_SHORT_NAMES.get(metric, metric), justify="right", no_wrap=True)
        table.add_column("fit s", justify="right", no_wrap=True)
        table.add_column("rec s", justify="right", no_wrap=True)
        for result in self.results:
            for i, k in enumerate(self.ks):
                cells = [f"{result.metrics[metric_key(m, k)]:.4f}" for m in METRICS]
                first = i == 0
                table.add_row(
                    result.model if first else "",
                    str(k),
                    *cells,
                    f"{result.fit_seconds:.2f}" if first else "",
                    f"{result.recommend_seconds:.2f}" if first else "",
                    end_section=i == len(self.ks) - 1,
                )
        return table

    def dropped_summary(self) -> str:
        """One line: how many test rows were not scored, and why."""
        reasons = ", ".join(f"{n:,} {r}" for r, n in self.dropped_by_reason.items() if n)
        line = f"dropped {self.dropped_test_rows:,} of {self.n_test_rows:,} test rows"
        return f"{line} ({reasons})" if reasons else line

    # ------------------------------------------------------------------ plot
    def plot(self, path: str | os.PathLike) -> Path:
        """Write a PNG: recall@k and nDCG@k against k, one line per model."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # A bare Figure on the Agg canvas: no pyplot state, no display needed.
        fig = Figure(figsize=(10, 4), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for axis, metric, label in zip(
            axes, ("recall", "ndcg"), ("Recall@k", "nDCG@k"), strict=True
        ):
            for result in self.results:
                values = [result.metrics[metric_key(metric, k)] for k in self.ks]
                axis.plot(self.ks, values, marker="o", label=result.model)
            axis.set_xlabel("k")
            axis.set_ylabel(label)
            axis.set_title(f"{label} ({self.kind}, {self.n_users:,} users)")
            axis.set_xticks(list(self.ks))
            axis.set_ylim(bottom=0)
            axis.grid(alpha=0.3)
        axes[0].legend()
        path = Path(path)
        fig.savefig(path, dpi=120)
        return path
