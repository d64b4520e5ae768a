"""Stage-2 batch scoring of every user's candidates, on both engines: the ranker's plug.

The ranker (``recgraph.ranking``) does not exist yet; this module fixes the
contract it plugs into, and runs it the same way on both engines.

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

A ranker package exposes a factory ``make_scorer(**options) -> score
partition`` and the job names it as ``module:function`` (``--param
scorer=recgraph.ranking.batch:make_scorer --param model=DIR``).

Each user's rows are re-ordered by the new scores (ties keep the old rank),
cut to ``k`` and written in the candidates layout; ``sources`` are kept.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.errors import ConfigError
from recgraph.jobs.candidates.output import OUTPUT_COLUMNS, output_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ScorePartition = Callable[[pd.DataFrame], np.ndarray]


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
