"""Publish a candidates file for serving: one payload per user in the store or Redis, versioned.

Reads the Parquet output of either engine a record batch at a time (each
user's rows are contiguous in a file, ordered by rank), encodes each user's
list with :func:`~recgraph.retrieval.materialized.encode_list`, writes it
under a new version, and only then switches the served version in one write
(:class:`~recgraph.retrieval.materialized.RedisCandidateLists` /
:class:`~recgraph.retrieval.materialized.StoreCandidateLists`). A publish
that fails half-way leaves the served version as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recgraph.errors import InputError
from recgraph.progress import progress_bar
from recgraph.retrieval.materialized import candidate_lists_backend, encode_list


@dataclass(frozen=True)
class PublishTarget:
    """Where lists go: ``backend`` ``store`` (``database_url``) or ``redis`` (``redis_url``, ``prefix``)."""

    backend: str
    name: str
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "recgraph:candidates"
    top_n: int | None = None

    def describe(self) -> str:
        if self.backend == "redis":
            return f"{self.redis_url} ({self.prefix}:{self.name})"
        return f"the store ({self.database_url or 'default'})"


@dataclass(frozen=True)
class PublishResult:
    users: int
    version: int


def iter_user_lists(path: str | Path, top_n: int | None = None) -> Iterator[tuple[str, str]]:
    """``(user, payload)`` for every user of a candidates file (or Spark folder)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError("no such candidates file", path=str(path))
    files = sorted(p for p in path.rglob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        pending: tuple[str, list, list, list] | None = None
        for batch in pq.ParquetFile(file).iter_batches(
            columns=["user", "candidate", "score", "rank", "sources"]
        ):
            users = np.asarray(batch.column("user").to_pylist(), dtype=object)
            candidates = batch.column("candidate").to_pylist()
            scores = batch.column("score").to_numpy(zero_copy_only=False)
            sources = batch.column("sources").to_pylist()
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            ends = np.r_[starts[1:], len(users)]
            for start, end in zip(starts, ends, strict=True):
                user = str(users[start])
                part = (candidates[start:end], list(scores[start:end]), sources[start:end])
                if pending is not None and pending[0] == user:
                    pending = (
                        user,
                        pending[1] + part[0],
                        pending[2] + part[1],
                        pending[3] + part[2],
                    )
                    continue
                if pending is not None:
                    yield _payload(pending, top_n)
                pending = (user, *part)
        if pending is not None:
            yield _payload(pending, top_n)


def _payload(entry: tuple[str, list, list, list], top_n: int | None) -> tuple[str, str]:
    user, candidates, scores, sources = entry
    cut = slice(None) if top_n is None else slice(0, top_n)
    return user, encode_list(candidates[cut], scores[cut], [s or [] for s in sources[cut]])


def publish_candidates(path: str | Path, target: PublishTarget) -> PublishResult:
    """Write every user's list of a candidates file to ``target`` and serve it (atomic switch)."""
    lists = candidate_lists_backend(
        target.backend,
        target.name,
        database_url=target.database_url,
        redis_url=target.redis_url,
        prefix=target.prefix,
    )
    version = lists.new_version()
    with progress_bar(f"publish {target.name}", total=None, unit="users") as advance:

        def counted() -> Iterator[tuple[str, str]]:
            for item in iter_user_lists(path, target.top_n):
                advance(1)
                yield item

        users = lists.write(version, counted())
    lists.switch(version)
    return PublishResult(users=users, version=version)
