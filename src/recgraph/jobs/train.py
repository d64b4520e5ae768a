"""Train a pipeline on a snapshot of the store and publish it: what ``recgraph train`` does.

The one place that goes from store to registry version, so that the CLI, the
quickstart and the scheduler (``recgraph run``) publish exactly the same thing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recgraph.data.snapshot import TrainingSnapshot
from recgraph.pipeline import Pipeline, PipelineConfig

if TYPE_CHECKING:
    from recgraph.data.store import Store
    from recgraph.serving.registry import ModelRegistry


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_pipeline` did: the trained pipeline, its version, and timings."""

    pipeline: Pipeline
    version: str
    promoted: bool
    fit_seconds: float


def train_pipeline(
    store: Store,
    registry: ModelRegistry,
    config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    notes: str | None = None,
    promote: bool = True,
) -> TrainResult:
    """Train a pipeline on a snapshot of ``store`` and publish it to ``registry``.

    Parameters
    ----------
    store
        The store to train on (everything it holds, read once).
    registry
        A :class:`~recgraph.serving.registry.ModelRegistry`.
    config
        The pipeline (see :class:`Pipeline`); default the shipped one.
    metrics
        Evaluation results to keep in the version's manifest.
    notes
        Why this version exists, for people.
    promote
        Make it the current version, which a running service then loads.
    """
    start = time.perf_counter()
    pipeline = Pipeline(config).fit(TrainingSnapshot.from_store(store))
    fit_seconds = time.perf_counter() - start
    version = registry.publish(
        pipeline, metrics=metrics, data=pipeline.snapshots, notes=notes, promote=promote
    )
    return TrainResult(
        pipeline=pipeline,
        version=version,
        promoted=registry.current_version() == version,
        fit_seconds=fit_seconds,
    )
