"""Stage-2 batch scoring of every user's candidates, on both engines.

The default scorer is a trained pipeline's ranker (:class:`PipelineScorer`,
``recgraph candidates --job rank --model PIPELINE_DIR``): each process loads
the saved pipeline once (the ranker from ``ranker.json`` + ``state.npz``, its
feature context from ``features.npz``, the retrievers from their JSON + npz),
and for each partition of whole users computes the ranking features of every
row, exactly as the question does when it serves: each retriever's rank and
score of the candidate from its own ``depth`` list (``score_pairs`` for what
it did not propose, :func:`recgraph.pipeline.ranking.candidate_pool`), and
the graph, popularity and time features of
:class:`~recgraph.ranking.features.CandidateFeatures`. Every row's features
and score depend on its user alone, so the engines give the same scores
however the users are partitioned. Other scorers plug in by the contract
below.

**The contract.** A *score partition* is a callable
``score_partition(rows: pandas.DataFrame) -> numpy.ndarray``:

- ``rows`` holds the candidate rows of **whole users** (never half a user's
  list), with at least the columns of a candidates file (``user,
  candidate, score, rank, sources``), users contiguous and each user's rows
  in rank order;
- it returns one float per row, higher is better; it computes its features
  itself, for the partition at hand (vectorised over the rows: the features
  of the ranking issue, graph ones from a memory-mapped CSR or a broadcast
  table);
- it must be picklable (Spark ships it to executors with cloudpickle) and
  should load its model lazily, once per process (a module-level cache, as
  :mod:`.egoml_job` does for boosters), never per call.

A scorer package exposes a factory ``make_scorer(**options) -> score
partition`` and the job names it as ``module:function`` (``--param
scorer=mypackage.batch:make_scorer --param model=DIR``); without ``scorer``
the job uses :func:`make_scorer` of this module.

Each user's rows are re-ordered by the new scores (ties keep the old rank),
cut to ``k`` and written in the candidates layout; ``sources`` are kept.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.errors import ConfigError
from recgraph.jobs.candidates.output import OUTPUT_COLUMNS, output_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recgraph.pipeline.question import QuestionModel

ScorePartition = Callable[[pd.DataFrame], np.ndarray]
#: Saved pipelines' questions, loaded once per process (driver or executor).
_QUESTIONS: dict[tuple[str, str], QuestionModel] = {}


def load_question(pipeline: str | Path, question: str) -> QuestionModel:
    """A saved pipeline's question, from this process's cache; it must have a ranker."""
    key = (str(Path(pipeline).resolve()), question)
    model = _QUESTIONS.get(key)
    if model is None:
        from recgraph.pipeline import Pipeline

        try:
            loaded = Pipeline.load(pipeline)
        except FileNotFoundError as exc:
            raise ConfigError(f"{exc} (the rank job's --model is a saved pipeline)") from None
        if question not in loaded.questions:
            raise ConfigError(
                f"{pipeline}: the pipeline has no trained {question!r} question "
                f"(it has {', '.join(loaded.questions) or 'none'})"
            )
        model = loaded.questions[question]
        if model.ranking is None:
            raise ConfigError(
                f"{pipeline}: the {question} question has no trained ranker "
                f"({model.ranking_note or f'add [{question}.ranker] to the pipeline file'})"
            )
        _QUESTIONS[key] = model
    return model


def pipeline_scores(model: QuestionModel, rows: pd.DataFrame, now: float | None) -> np.ndarray:
    """The question's ranker score of each row (``-inf`` for a user or candidate it never saw).

    Rows of one user are one list of the pool; features come from
    :meth:`~recgraph.pipeline.question.QuestionModel.pool` with the rows'
    candidates, as when the question serves.
    """
    stage = model.ranking
    assert stage is not None and model.users is not None and model.items is not None
    users = model.users.index(rows["user"].to_numpy(), missing=-1)
    items = model.items.index(rows["candidate"].to_numpy(), missing=-1)
    scores = np.full(len(rows), -np.inf)
    known = np.flatnonzero((users >= 0) & (items >= 0))
    if not len(known):
        return scores
    u = users[known]
    first = np.r_[True, u[1:] != u[:-1]]
    group = np.cumsum(first) - 1
    position = np.arange(len(u)) - np.flatnonzero(first)[group]
    ids = np.full((int(first.sum()), int(position.max()) + 1), -1, dtype=np.int64)
    ids[group, position] = items[known]
    pool = model.pool(
        u[first],
        stage.spec.depth,
        eligible=model.rules.eligible(now=now),
        candidates=ids,
    )
    scores[known] = stage.scores(pool)
    return scores


@dataclass(frozen=True)
class PipelineScorer:
    """A score partition from a saved pipeline's ranker (picklable: a path and two settings).

    Attributes
    ----------
    pipeline
        The saved pipeline folder (``recgraph train --output``), on a path
        every executor reads.
    question
        ``who_to_follow`` (account candidates) or ``feed``.
    now
        Unix seconds the question's freshness window ends at, fixed on the
        driver so that every executor filters alike.
    """

    pipeline: str
    question: str = "who_to_follow"
    now: float | None = None

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        return pipeline_scores(load_question(self.pipeline, self.question), rows, self.now)


def make_scorer(
    pipeline: str, question: str = "who_to_follow", now: float | None = None
) -> PipelineScorer:
    """The default scorer: a pipeline's ranker, checked (loaded) once on the driver."""
    load_question(pipeline, question)
    return PipelineScorer(str(pipeline), question, time.time() if now is None else float(now))


def load_scorer(spec: str, options: dict[str, Any] | None = None) -> ScorePartition:
    """``module:factory`` called with ``options``: the score-partition callable."""
    module_name, sep, name = spec.partition(":")
    if not sep:
        raise ConfigError(f"scorer {spec!r}: expected module:function")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"scorer {spec!r} cannot be loaded: {exc}") from None
    return factory(**(options or {}))


def whole_users(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Re-cut a stream of frames ordered by user so that no user spans two frames."""
    carry: pd.DataFrame | None = None
    for frame in frames:
        if carry is not None and len(carry):
            frame = pd.concat([carry, frame], ignore_index=True)
        if not len(frame):
            continue
        users = frame["user"].to_numpy()
        tail = users == users[-1]
        carry = frame[tail]
        if (~tail).any():
            yield frame[~tail].reset_index(drop=True)
    if carry is not None and len(carry):
        yield carry.reset_index(drop=True)


def rerank(rows: pd.DataFrame, score_partition: ScorePartition, k: int) -> pd.DataFrame:
    """Score whole users' rows, order each user's by the new score (ties: old rank), keep ``k``."""
    scores = np.asarray(score_partition(rows), dtype=np.float64)
    if scores.shape != (len(rows),):
        raise ValueError(f"the scorer returned {scores.shape} scores for {len(rows)} rows")
    users = rows["user"].to_numpy()
    order = np.lexsort((rows["rank"].to_numpy(), -scores, users))
    ranked = rows.iloc[order].reset_index(drop=True)
    ranked["score"] = scores[order]
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    position = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)]))
    ranked["rank"] = (position + 1).astype(np.int32)
    return ranked[position < k][list(OUTPUT_COLUMNS)].reset_index(drop=True)


def rank_local(
    candidates: str | Path, output: str | Path, score_partition: ScorePartition, k: int
) -> tuple[int, int]:
    """Re-rank a candidates file in this process, a record batch of whole users at a time.

    Returns ``(rows, users)`` written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(candidates)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    schema = output_schema()

    def frames() -> Iterator[pd.DataFrame]:
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches():
                yield batch.to_pandas()

    written = users = 0
    with pq.ParquetWriter(str(output), schema) as writer:
        for rows in whole_users(frames()):
            ranked = rerank(rows, score_partition, k)
            writer.write_table(pa.Table.from_pandas(ranked, schema=schema, preserve_index=False))
            written += len(ranked)
            users += int((ranked["rank"] == 1).sum())
    return written, users


def rank_spark(candidates: DataFrame, score_partition: ScorePartition, k: int) -> DataFrame:
    """Re-rank on Spark: users hashed to partitions, each partition scored a chunk of whole users."""
    schema = candidates.select(*OUTPUT_COLUMNS).schema

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for rows in whole_users(batches):
            yield rerank(rows, score_partition, k)

    return (
        candidates.select(*OUTPUT_COLUMNS)
        .repartition("user")
        .sortWithinPartitions("user", "rank")
        .mapInPandas(score, schema)
    )
