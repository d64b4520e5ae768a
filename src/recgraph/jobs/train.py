"""Train a pipeline on a snapshot of the store and publish it: what ``recgraph train`` does.

The one place that goes from store to registry version, so that the CLI, the
quickstart and the scheduler (``recgraph run``) publish exactly the same thing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recgraph.data.snapshot import TrainingSnapshot
from recgraph.pipeline import Pipeline, PipelineConfig

if TYPE_CHECKING:
    from recgraph.data.store import Store
    from recgraph.serving.registry import ModelRegistry
    from recgraph.serving.retention import GcReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_pipeline` did: the trained pipeline, its version, and timings."""

    pipeline: Pipeline
    version: str
    promoted: bool
    fit_seconds: float
    gc: GcReport | None = None


def train_pipeline(
    store: Store,
    registry: ModelRegistry,
    config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    notes: str | None = None,
    promote: bool = True,
    keep: int | None = None,
    before_publish: Callable[[], None] | None = None,
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
    keep
        Registry retention after publishing: keep the newest ``keep`` versions
        and the current one, and remove versions left incomplete by killed
        runs (:func:`recgraph.serving.retention.gc`); ``0`` keeps everything. Default: the
        ``registry_keep`` setting (``$RECGRAPH_REGISTRY_KEEP``, else 5).
    before_publish
        Called once the fit is done, before anything is written: the training child
        (:mod:`recgraph.jobs.train_worker`) stops there if a stop came and was lost, and
        from there on lets a stop wait for the publish and retention to finish.
    """
    start = time.perf_counter()
    pipeline = Pipeline(config).fit(TrainingSnapshot.from_store(store))
    fit_seconds = time.perf_counter() - start
    if before_publish is not None:
        before_publish()
    version = registry.publish(
        pipeline, metrics=metrics, data=pipeline.snapshots, notes=notes, promote=promote
    )
    promoted = registry.current_version() == version
    if keep is None:
        from recgraph.settings import load_settings

        keep = load_settings().registry_keep
    report = None
    if keep > 0:
        from recgraph.serving.retention import gc

        try:
            report = gc(registry, keep)
        except OSError as exc:  # retention must never undo a publish that succeeded
            log.warning("registry retention failed (the new version stands): %s", exc)
        else:
            if report.removed or report.incomplete:
                log.info("registry retention: %s", report.describe())
    return TrainResult(
        pipeline=pipeline,
        version=version,
        promoted=promoted,
        fit_seconds=fit_seconds,
        gc=report,
    )
