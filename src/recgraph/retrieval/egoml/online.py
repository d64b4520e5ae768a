"""Online EGOML: ``E(u, v)`` for any pair from two sparse vectors in a key-value store.

With the A/B trick, ``E(u, v) = <x_u, y_v>`` where ``x_u`` and ``y_v`` are
sparse vectors indexed by centre (``u``'s and ``v``'s neighbours). Each
user's two vectors are written once to a store; answering a pair then reads
two values and intersects two sorted index arrays, ``O(|N(u)| + |N(v)|)``,
with no graph and no model in memory.

Stores:

- :class:`DictVectorStore` (default): an in-process dict;
- :class:`RedisVectorStore`: Redis by URL (``redis://127.0.0.1:6379/0``),
  one binary value per vector (``int64`` centre indices then ``float64``
  values, little-endian, no pickle), written in pipelined batches.

Keys are ``{namespace}:{side}:{user id}`` with ``side`` ``x`` or ``y`` and the
user's external id; centre indices belong to the model that wrote them, so a
new model version should write under a new namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import IdMap
from recgraph.progress import progress_bar

Vector = tuple[np.ndarray, np.ndarray]


def encode_vector(indices: np.ndarray, values: np.ndarray) -> bytes:
    """``indices`` (int64) then ``values`` (float64), little-endian: no pickle."""
    indices = np.asarray(indices, dtype="<i8")
    values = np.asarray(values, dtype="<f8")
    if indices.shape != values.shape:
        raise ValueError("indices and values differ in length")
    return indices.tobytes() + values.tobytes()


def decode_vector(blob: bytes) -> Vector:
    """The inverse of :func:`encode_vector`."""
    if len(blob) % 16:
        raise ValueError(f"a vector blob has a multiple of 16 bytes, got {len(blob)}")
    n = len(blob) // 16
    return (
        np.frombuffer(blob, dtype="<i8", count=n).astype(np.int64),
        np.frombuffer(blob, dtype="<f8", count=n, offset=8 * n).astype(np.float64),
    )


def sparse_dot(a: Vector, b: Vector) -> float:
    """``<a, b>`` of two sparse vectors with sorted, unique indices, in linear time."""
    a_idx, a_val = a
    b_idx, b_val = b
    if not len(a_idx) or not len(b_idx):
        return 0.0
    _, ia, ib = np.intersect1d(a_idx, b_idx, assume_unique=True, return_indices=True)
    return float(np.dot(a_val[ia], b_val[ib]))


class VectorStore(Protocol):
    """Where per-user vectors live: bytes by key, written in bulk."""

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...


class DictVectorStore:
    """The default store: a dict in this process."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        self.data.update(items)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.data.get(key) for key in keys]

    def __len__(self) -> int:
        return len(self.data)


class RedisVectorStore:
    """Vectors in Redis (the ``redis`` package), by URL; writes are pipelined.

    Parameters
    ----------
    url
        ``redis://host:port/db``; ``redis://127.0.0.1:6379/0`` by default.
    batch
        Keys per pipeline round trip when writing.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", batch: int = 1000) -> None:
        import redis

        self.url = url
        self.batch = batch
        self.client = redis.Redis.from_url(url)

    def ping(self) -> bool:
        """Whether the server answers (``False`` instead of raising)."""
        import redis

        try:
            return bool(self.client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for key, blob in items:
            pipe.set(key, blob)
            pending += 1
            if pending >= self.batch:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(self.client.mget(list(keys))) if keys else []

    def delete_namespace(self, namespace: str) -> int:
        """Remove every key of ``namespace`` (for tests and retired model versions)."""
        removed = 0
        for key in self.client.scan_iter(match=f"{namespace}:*", count=1000):
            removed += int(self.client.delete(key))
        return removed


def vector_key(namespace: str, side: str, user: str) -> str:
    """The key of one user's ``x`` or ``y`` vector: ``{namespace}:{side}:{user id}``."""
    return f"{namespace}:{side}:{user}"


class HasVectors(Protocol):
    """What :func:`export_vectors` needs of a fitted A/B EGOML model."""

    users: IdMap | None

    def vectors(self) -> tuple[sp.csr_matrix, sp.csr_matrix]: ...


def export_vectors(model: HasVectors, store: VectorStore, namespace: str = "egoml") -> int:
    """Write ``x_u`` and ``y_u`` of every user of an A/B model; returns how many users."""
    x, y = model.vectors()
    assert model.users is not None
    ids = model.users.ids
    n = x.shape[0]
    step = 4096
    with progress_bar("egoml: export vectors", total=n, unit="users") as advance:
        for start in range(0, n, step):
            stop = min(start + step, n)
            items = []
            for u in range(start, stop):
                for side, matrix in (("x", x), ("y", y)):
                    lo, hi = matrix.indptr[u], matrix.indptr[u + 1]
                    blob = encode_vector(matrix.indices[lo:hi], matrix.data[lo:hi])
                    items.append((vector_key(namespace, side, str(ids[u])), blob))
            store.put_many(items)
            advance(stop - start)
    return n


class OnlineScorer:
    """``E(u, v)`` from a vector store: the function behind an API endpoint.

    Parameters
    ----------
    store
        Where :func:`export_vectors` wrote the vectors.
    namespace
        The key prefix it used.
    """

    def __init__(self, store: VectorStore, namespace: str = "egoml") -> None:
        self.store = store
        self.namespace = namespace

    def vectors(self, user: str) -> tuple[Vector, Vector]:
        """``(x_u, y_u)`` of one external id; ``KeyError`` when the store lacks it."""
        blobs = self.store.get_many(
            [vector_key(self.namespace, "x", str(user)), vector_key(self.namespace, "y", str(user))]
        )
        if blobs[0] is None or blobs[1] is None:
            raise KeyError(f"no EGOML vectors for user {user!r} in namespace {self.namespace!r}")
        return decode_vector(blobs[0]), decode_vector(blobs[1])

    def score(self, user: str, target: str) -> float:
        """``E(user, target) = <x_user, y_target>``; two reads and one sorted merge."""
        blobs = self.store.get_many(
            [
                vector_key(self.namespace, "x", str(user)),
                vector_key(self.namespace, "y", str(target)),
            ]
        )
        for blob, who in zip(blobs, (user, target), strict=True):
            if blob is None:
                raise KeyError(f"no EGOML vectors for user {who!r} in namespace {self.namespace!r}")
        assert blobs[0] is not None and blobs[1] is not None
        return sparse_dot(decode_vector(blobs[0]), decode_vector(blobs[1]))

    def score_many(self, user: str, targets: Sequence[str]) -> np.ndarray:
        """``E(user, t)`` for several targets with one bulk read (unknown targets score 0)."""
        keys = [vector_key(self.namespace, "x", str(user))] + [
            vector_key(self.namespace, "y", str(t)) for t in targets
        ]
        blobs = self.store.get_many(keys)
        if blobs[0] is None:
            raise KeyError(f"no EGOML vectors for user {user!r} in namespace {self.namespace!r}")
        x = decode_vector(blobs[0])
        return np.array(
            [0.0 if blob is None else sparse_dot(x, decode_vector(blob)) for blob in blobs[1:]],
            dtype=np.float64,
        )
