"""The dashboard's figures: what the store holds, and how the served version was evaluated.

Store figures come from :func:`recgraph.data.stats.store_summary` (aggregates
in the database) and are reused for ``stats_cache_seconds``, since they scan
whole tables; one request counts while the others wait for its result.

Evaluation curves come from the served version's registry manifest: its
``metrics`` map holds keys ``[question/][retriever/]metric@k`` (what
``recgraph quickstart`` and ``evaluate`` runs publish), which become one curve
per question, retriever and metric, as ``recgraph evaluate --plot`` draws them.
Live request rates and latencies are not here: the page reads ``/metrics``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from recgraph.data.stats import store_summary
from recgraph.data.store import Store
from recgraph.serving.loader import LoadedModel
from recgraph.settings import Settings

#: A metric at a cut-off, the last part of a manifest metric key: ``ndcg@20``.
_METRIC_AT_K = re.compile(r"^(?P<metric>[A-Za-z_][\w.-]*)@(?P<k>\d+)$")
#: The series name of a key with a question but no retriever: the pipeline's own answer.
PIPELINE = "pipeline"


class StatsService:
    """Store figures (cached) and evaluation curves for the dashboard."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None

    def store_figures(self) -> dict[str, Any]:
        """:func:`store_summary` of the store, at most ``stats_cache_seconds`` old."""
        with self._lock:
            cached = self._cached
            age = time.time() - cached["computed_at"] if cached else None
            if cached is None or age is None or age > self.settings.stats_cache_seconds:
                cached = {**store_summary(self._store), "computed_at": time.time()}
                self._cached = cached
            return cached

    def evaluation(self, loaded: LoadedModel) -> dict[str, Any]:
        """The evaluation of ``loaded`` from its manifest (empty curves when it has none)."""
        manifest = loaded.manifest
        curves, other = evaluation_curves(manifest.get("metrics") or {})
        return {
            "version": loaded.version,
            "curves": curves,
            "other": other,
            "data": manifest.get("data"),
            "created_at": manifest.get("created_at"),
            "notes": manifest.get("notes"),
        }


def evaluation_curves(
    metrics: dict[str, Any],
) -> tuple[dict[str, dict[str, dict[str, list[list[float]]]]], dict[str, Any]]:
    """Split manifest metrics into curves and the rest.

    ``feed/ease/ndcg@20`` is a point of the curve question ``feed``, retriever
    ``ease``, metric ``ndcg``; ``feed/ndcg@20`` belongs to the pipeline's own
    curve; ``ndcg@20`` to question ``all``. Curves are sorted by k; values
    that are not finite numbers are left out.

    Returns
    -------
    curves, other
        ``question -> retriever -> metric -> [[k, value], ...]``, and every
        key that is not a metric at a cut-off, as it was.
    """
    curves: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    other: dict[str, Any] = {}
    for key, value in metrics.items():
        parts = str(key).split("/")
        match = _METRIC_AT_K.match(parts[-1])
        if match is None or not _finite_number(value):
            other[str(key)] = value
            continue
        question = parts[0] if len(parts) > 1 else "all"
        series = "/".join(parts[1:-1]) if len(parts) > 2 else PIPELINE
        points = curves.setdefault(question, {}).setdefault(series, {})
        points.setdefault(match["metric"], []).append([int(match["k"]), float(value)])
    for by_series in curves.values():
        for by_metric in by_series.values():
            for points in by_metric.values():
                points.sort()
    return curves, other


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )
