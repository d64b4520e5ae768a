"""``materialized``: serve candidates computed offline, from the store or Redis, at request time.

``recgraph candidates --publish store|redis`` writes each user's top
candidates (with scores and the jobs that proposed them) as one JSON payload
per user, under a **name** (the job by default) and a **version**; a
version becomes visible in one write (the store's ``meta`` row, or one Redis
key), as Gorse switches its caches, and the version before it is kept until
the next switch so that a request in flight still finds its rows.

The retriever never holds the graph: ``fit`` keeps the id maps of the
training data (what the pipeline needs to speak in indices) and an empty
history, so a graph far larger than the serving process's memory is served
from the lists alone. ``recommend`` reads the lists of the requested users
(one batched read), maps them to indices, and removes

- ``exclude`` (what the pipeline read at request time: follows, likes and
  dislikes written since the lists were made);
- with ``exclude_seen``, the user itself (what the user had when the job
  ran was excluded by the job);
- candidates outside ``candidates`` and ids this model's maps do not know.

Redis layout (``prefix`` and ``name`` from the config)::

    {prefix}:{name}:current          -> the served version
    {prefix}:{name}:next             -> a counter handing out versions
    {prefix}:{name}:v{version}:{user} -> the user's payload

A pipeline names it like any retriever::

    [[who_to_follow.retrievers]]
    name = "materialized"
    params = { source = "adamic_adar", backend = "redis", redis_url = "redis://127.0.0.1:6379/0" }
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import IdMap, Interactions
from recgraph.retrieval.base import Request, Retriever, RetrieverConfig, TopK

#: Version of the JSON payload.
PAYLOAD_FORMAT = 1


# ---------------------------------------------------------------------- payloads
def encode_list(
    candidates: Sequence[str], scores: Sequence[float], sources: Sequence[Sequence[str]]
) -> str:
    """One user's ranked list as compact JSON: ``{"f": 1, "c": [...], "s": [...], "src": [...]}``."""
    if not len(candidates) == len(scores) == len(sources):
        raise ValueError("candidates, scores and sources differ in length")
    return json.dumps(
        {
            "f": PAYLOAD_FORMAT,
            "c": [str(c) for c in candidates],
            "s": [float(x) for x in scores],
            "src": [list(map(str, s)) for s in sources],
        },
        separators=(",", ":"),
    )


def decode_list(payload: str | bytes) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """The inverse of :func:`encode_list`: candidates, float64 scores, sources."""
    data = json.loads(payload)
    if data.get("f") != PAYLOAD_FORMAT:
        raise ValueError(f"candidate list payload format {data.get('f')!r} is not {PAYLOAD_FORMAT}")
    return list(data["c"]), np.asarray(data["s"], dtype=np.float64), data["src"]


# ---------------------------------------------------------------------- backends
class RedisCandidateLists:
    """Versioned candidate lists in Redis (see the module docstring for the keys)."""

    def __init__(self, url: str, prefix: str, name: str, batch: int = 1000) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.base = f"{prefix}:{name}"
        self.batch = batch

    def _key(self, version: int, user: str) -> str:
        return f"{self.base}:v{version}:{user}"

    def current_version(self) -> int | None:
        value = self.client.get(f"{self.base}:current")
        return None if value is None else int(value)

    def new_version(self) -> int:
        """A version number nobody has used (an atomic counter)."""
        return int(self.client.incr(f"{self.base}:next"))

    def write(self, version: int, items: Iterable[tuple[str, str]]) -> int:
        """Write ``(user, payload)`` pairs under ``version``, pipelined; returns how many."""
        pipe = self.client.pipeline(transaction=False)
        written = pending = 0
        for user, payload in items:
            pipe.set(self._key(version, user), payload)
            pending += 1
            if pending >= self.batch:
                pipe.execute()
                written += pending
                pending = 0
        if pending:
            pipe.execute()
            written += pending
        return written

    def switch(self, version: int) -> None:
        """Serve ``version`` from now on (one ``SET``); delete every version but it and the one before."""
        previous = self.current_version()
        self.client.set(f"{self.base}:current", int(version))
        keep = {f"v{version}:", f"v{previous}:"} if previous is not None else {f"v{version}:"}
        doomed = []
        for key in self.client.scan_iter(match=f"{self.base}:v*", count=1000):
            rest = key.decode()[len(self.base) + 1 :]
            if not any(rest.startswith(prefix) for prefix in keep):
                doomed.append(key)
                if len(doomed) >= self.batch:
                    self.client.unlink(*doomed)
                    doomed = []
        if doomed:
            self.client.unlink(*doomed)

    def read(self, users: Sequence[str]) -> dict[str, str]:
        version = self.current_version()
        if version is None or not len(users):
            return {}
        values = self.client.mget([self._key(version, u) for u in users])
        return {u: v.decode() for u, v in zip(users, values, strict=True) if v is not None}

    def delete_all(self) -> int:
        """Remove every key of this list name (tests, retired lists)."""
        keys = list(self.client.scan_iter(match=f"{self.base}:*", count=1000))
        return int(self.client.unlink(*keys)) if keys else 0


class StoreCandidateLists:
    """Versioned candidate lists in the store's ``candidate_lists`` table."""

    def __init__(self, database_url: str | None, name: str) -> None:
        from recgraph.data.store import Store

        self.store = Store.open(database_url)
        self.name = name

    def current_version(self) -> int | None:
        return self.store.candidate_list_version(self.name)

    def new_version(self) -> int:
        return self.store.next_candidate_list_version(self.name)

    def write(self, version: int, items: Iterable[tuple[str, str]]) -> int:
        users, payloads = [], []
        written = 0
        for user, payload in items:
            users.append(user)
            payloads.append(payload)
            if len(users) >= 10_000:
                written += self.store.write_candidate_lists(self.name, version, users, payloads)
                users, payloads = [], []
        if users:
            written += self.store.write_candidate_lists(self.name, version, users, payloads)
        return written

    def switch(self, version: int) -> None:
        self.store.switch_candidate_lists(self.name, version)

    def read(self, users: Sequence[str]) -> dict[str, str]:
        return self.store.candidate_lists(self.name, list(users))


def candidate_lists_backend(
    backend: str,
    name: str,
    *,
    database_url: str | None = None,
    redis_url: str = "redis://127.0.0.1:6379/0",
    prefix: str = "recgraph:candidates",
) -> RedisCandidateLists | StoreCandidateLists:
    """The reader/writer of the lists ``name`` on ``backend`` (``store`` or ``redis``)."""
    if backend == "redis":
        return RedisCandidateLists(redis_url, prefix, name)
    if backend == "store":
        return StoreCandidateLists(database_url, name)
    raise ValueError(f"unknown backend {backend!r}; choose store or redis")


# ---------------------------------------------------------------------- the retriever
class MaterializedConfig(RetrieverConfig):
    """Where the lists are: ``source`` is the published name (``--name``, default the job)."""

    source: str = Field(default="adamic_adar", min_length=1, max_length=40)
    backend: Literal["store", "redis"] = "store"
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "recgraph:candidates"


class MaterializedRetriever(Retriever):
    """Candidates read at request time from lists a batch job published (store or Redis)."""

    name = "materialized"
    config_class = MaterializedConfig
    config: MaterializedConfig
    supports: ClassVar[frozenset[str]] = frozenset({"items", "follows", "friends"})

    def __init__(self, config: RetrieverConfig | Mapping[str, Any] | None = None, **params: Any):
        super().__init__(config, **params)
        self._backend: RedisCandidateLists | StoreCandidateLists | None = None

    def fit_id_maps(
        self, users: IdMap, items: IdMap | None = None, graph_kind: str = "follows"
    ) -> MaterializedRetriever:
        """What ``fit`` keeps, from the id maps alone (a server can read them from the accounts table)."""
        items = users if items is None else items
        self.users, self.items, self.graph_kind = users, items, graph_kind
        self._seen = _empty_history(len(users), len(items))
        self._popularity = np.zeros(len(items), dtype=np.float32)
        return self

    def _remember(self, train: Interactions) -> None:
        """Keep the id maps only: no edge, no history (the lists were made elsewhere)."""
        self.fit_id_maps(train.users, train.items, train.graph_kind)

    def _fit(self, train: Interactions) -> None:
        return None

    def lists(self) -> RedisCandidateLists | StoreCandidateLists:
        """The backend, opened on first use (a loaded model connects lazily)."""
        if self._backend is None:
            cfg = self.config
            self._backend = candidate_lists_backend(
                cfg.backend,
                cfg.source,
                database_url=cfg.database_url,
                redis_url=cfg.redis_url,
                prefix=cfg.prefix,
            )
        return self._backend

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """The published lists of ``users``, filtered; see :meth:`Retriever.recommend`.

        Users without a published list get nothing (``-1``); the pipeline's
        fallback chain fills in.
        """
        assert self.users is not None and self.items is not None
        exclude_seen, exclude_m, allowed = request.exclude_seen, request.exclude, request.allowed
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        names = [str(x) for x in self.users.external(users)]
        payloads = self.lists().read(names)
        one_sided = self.graph_kind in ("follows", "friends")
        for row, (user, name) in enumerate(zip(users, names, strict=True)):
            payload = payloads.get(name)
            if payload is None:
                continue
            found, values, _ = decode_list(payload)
            index = self.items.index(found, missing=-1)
            keep = index >= 0
            if exclude_seen and one_sided:
                keep &= index != user
            if exclude_m is not None:
                keep &= ~np.isin(index, exclude_m[row].indices)
            if allowed is not None:
                mask = (
                    np.isin(index, allowed[row].indices)
                    if sp.issparse(allowed)
                    else allowed[np.maximum(index, 0)]
                )
                keep &= mask
            chosen = np.flatnonzero(keep)[:k]
            ids[row, : len(chosen)] = index[chosen]
            scores[row, : len(chosen)] = values[chosen]
        return ids, scores

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._backend = None


def _empty_history(n_users: int, n_items: int) -> sp.csr_matrix:
    """A history with no entry: ``n_users + 1`` integers, whatever the graph's size."""
    return sp.csr_matrix(
        (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(n_users + 1, np.int32)),
        shape=(n_users, n_items),
    )
