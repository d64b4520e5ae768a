"""The retriever protocol every stage-1 candidate generator implements.

Batch first, as in ``implicit``: one user is a batch of one. A model

- subclasses :class:`Retriever`, names itself (``name``) and its typed config
  (``config_class``, a :class:`RetrieverConfig`);
- learns in ``_fit(train)`` and either scores whole rows in
  ``_score(users)`` (dense ``(len(users), n_items)``), or overrides
  ``recommend`` and uses :meth:`_mask_scores` and :func:`top_k`;
- puts its learned arrays in ``_state()`` and takes them back in
  ``_set_state()``, so that ``save``/``load`` never need pickle.

The base class remembers what each user already has (``seen``), which
``recommend(exclude_seen=True)`` removes along with the user itself on
account graphs, and dislikes always.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from recgraph.data.interactions import IdMap, Interactions
from recgraph.errors import ConfigError, NotFittedError
from recgraph.files import atomic_write

FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
STATE_FILE = "state.npz"
#: Upper bound on the floats of one dense score block (``batch x n_items``).
SCORE_BLOCK_FLOATS = 1 << 24


class RetrieverConfig(BaseModel):
    """Base of every model's config: typed, validated, JSON/TOML round-trippable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def make_config(
    config_class: type[RetrieverConfig],
    config: RetrieverConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    model_name: str = "",
) -> RetrieverConfig:
    """Validate a config from an object or mapping plus overrides; errors name the key."""
    if isinstance(config, RetrieverConfig):
        values = config.model_dump()
    else:
        values = dict(config or {})
    values.update(overrides or {})
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{model_name + '.' if model_name else ''}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        allowed = ", ".join(config_class.model_fields) or "(none)"
        raise ConfigError(f"invalid parameters: {problems} (known: {allowed})") from None


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row, best first; ties go to the lower index.

    Entries of ``-inf`` are never returned: their slots hold id ``-1`` and
    score ``-inf``. Deterministic, so a row scores the same alone or in a batch.
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if k_eff == 0 or n_rows == 0:
        return ids, out
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        greater = scores > kth[:, None]
        equal = scores == kth[:, None]
        need = k_eff - greater.sum(axis=1)
        take = greater | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))
        rows, cols = np.nonzero(take)
        chosen = cols.reshape(n_rows, k_eff)
    else:
        chosen = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    chosen_scores = np.take_along_axis(scores, chosen, axis=1)
    order = np.lexsort((chosen, -chosen_scores), axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    chosen_scores = np.take_along_axis(chosen_scores, order, axis=1)
    valid = chosen_scores > -np.inf
    ids[:, :k_eff] = np.where(valid, chosen, -1)
    out[:, :k_eff] = np.where(valid, chosen_scores, -np.inf)
    return ids, out


def rows_as_csr(
    rows: sp.spmatrix | Sequence[Sequence[int]] | None, n_rows: int, n_cols: int, what: str
) -> sp.csr_matrix | None:
    """Per-user id lists or a sparse matrix, as a CSR of shape ``(n_rows, n_cols)``."""
    if rows is None:
        return None
    if sp.issparse(rows):
        matrix = sp.csr_matrix(rows)
    else:
        if len(rows) != n_rows:
            raise ValueError(f"{what} has {len(rows)} rows, expected one per user ({n_rows})")
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if indptr[-1]
            else np.zeros(0, np.int64)
        )
        matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(n_rows, n_cols)
        )
    if matrix.shape != (n_rows, n_cols):
        raise ValueError(f"{what} has shape {matrix.shape}, expected {(n_rows, n_cols)}")
    return matrix


class Retriever(ABC):
    """Stage-1 candidate generator: ``fit`` once, ``recommend`` for batches of users."""

    #: Name used by ``recgraph evaluate --model`` and in saved manifests.
    name: ClassVar[str]
    config_class: ClassVar[type[RetrieverConfig]] = RetrieverConfig
    #: Which graph shapes the model handles: ``items``, ``follows``, ``friends``.
    supports: ClassVar[frozenset[str]] = frozenset({"items", "follows", "friends"})

    def __init__(
        self, config: RetrieverConfig | Mapping[str, Any] | None = None, **params: Any
    ) -> None:
        self.config = make_config(self.config_class, config, params, model_name=self.name)
        self._seen: sp.csr_matrix | None = None
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.graph_kind: str | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ training
    def fit(self, train: Interactions) -> Self:
        """Learn from ``train`` (dislikes are kept out of learning, but remembered as seen)."""
        if train.graph_kind not in self.supports:
            raise ConfigError(
                f"model {self.name!r} does not handle {train.graph_kind} data "
                f"(it handles: {', '.join(sorted(self.supports))})"
            )
        self._remember(train)
        self._fit(train)
        return self

    def partial_fit(self, new: Interactions) -> Self:
        """Continue training on new interactions; not every model can."""
        raise NotImplementedError(f"model {self.name!r} has no incremental training; call fit")

    def _remember(self, train: Interactions) -> None:
        self.users, self.items = train.users, train.items
        self.graph_kind = train.graph_kind
        self._seen = train.seen()

    @abstractmethod
    def _fit(self, train: Interactions) -> None:
        """Learn the model's state from ``train``."""

    # ------------------------------------------------------------------ inference
    @property
    def n_users(self) -> int:
        self._check_fitted()
        assert self._seen is not None
        return self._seen.shape[0]

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self._seen is not None
        return self._seen.shape[1]

    @property
    def is_fitted(self) -> bool:
        return self._seen is not None

    def _check_fitted(self) -> None:
        if self._seen is None:
            raise NotFittedError(f"model {self.name!r} is not fitted: call fit() or load()")

    def _check_users(self, users: Sequence[int] | np.ndarray | int) -> np.ndarray:
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.ndim != 1:
            raise ValueError("users must be a 1-D array of user indices")
        if len(users) and (users.min() < 0 or users.max() >= self.n_users):
            bad = users[(users < 0) | (users >= self.n_users)][0]
            raise IndexError(f"user index {bad} is outside 0..{self.n_users - 1}")
        return users

    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense scores ``(len(users), n_items)``; higher is better."""
        raise NotImplementedError(f"{type(self).__name__} must implement _score or recommend")

    def batch_size(self) -> int:
        """Users per dense score block, so a block stays near 64 MB."""
        return max(1, SCORE_BLOCK_FLOATS // max(1, self.n_items))

    def recommend(
        self,
        users: Sequence[int] | np.ndarray | int,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
        candidates: np.ndarray | Sequence[int] | sp.spmatrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` targets for each of ``users``.

        Parameters
        ----------
        users
            User indices (train id map).
        k
            How many per user.
        exclude_seen
            Drop what the user already has in train (dislikes included), and on
            account graphs the user itself.
        exclude
            More targets to drop: a sparse matrix with one row per user in
            ``users``, or one id list per user.
        candidates
            Targets allowed: one id array for all users, or a sparse matrix with
            a row per user (nonzero = allowed).

        Returns
        -------
        ids, scores
            Arrays of shape ``(len(users), k)``, best first. Slots with no
            candidate left hold id ``-1`` and score ``-inf``.
        """
        users = self._check_users(users)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        exclude_m = rows_as_csr(exclude, len(users), self.n_items, "exclude")
        allowed = self._allowed(candidates, len(users))
        ids = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        step = self.batch_size()
        for start in range(0, len(users), step):
            stop = min(start + step, len(users))
            batch = users[start:stop]
            block = np.array(self._score(batch), dtype=np.float32, copy=True)
            self._mask_scores(
                block,
                batch,
                exclude_seen=exclude_seen,
                exclude=None if exclude_m is None else exclude_m[start:stop],
                allowed=allowed if not sp.issparse(allowed) else allowed[start:stop],
            )
            ids[start:stop], scores[start:stop] = top_k(block, k)
        return ids, scores

    def _allowed(
        self, candidates: np.ndarray | Sequence[int] | sp.spmatrix | None, n_rows: int
    ) -> np.ndarray | sp.csr_matrix | None:
        """Normalise ``candidates`` to a boolean item mask or a per-user CSR."""
        if candidates is None:
            return None
        if sp.issparse(candidates):
            return rows_as_csr(candidates, n_rows, self.n_items, "candidates")
        candidates = np.asarray(candidates)
        if candidates.dtype == bool:
            if candidates.shape != (self.n_items,):
                raise ValueError(f"a boolean candidates mask needs {self.n_items} entries")
            return candidates
        mask = np.zeros(self.n_items, dtype=bool)
        candidates = candidates.astype(np.int64)
        if len(candidates) and (candidates.min() < 0 or candidates.max() >= self.n_items):
            raise IndexError("candidate id outside the item range")
        mask[candidates] = True
        return mask

    def _mask_scores(
        self,
        block: np.ndarray,
        users: np.ndarray,
        *,
        exclude_seen: bool,
        exclude: sp.csr_matrix | None,
        allowed: np.ndarray | sp.csr_matrix | None,
    ) -> None:
        """Set ``-inf`` on every target a user must not get (in place)."""
        assert self._seen is not None
        block[np.isnan(block)] = -np.inf
        if exclude_seen:
            seen = self._seen[users]
            rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
            block[rows, seen.indices] = -np.inf
            if self.graph_kind in ("follows", "friends"):
                block[np.arange(len(users)), users] = -np.inf
        if exclude is not None:
            rows = np.repeat(np.arange(len(users)), np.diff(exclude.indptr))
            block[rows, exclude.indices] = -np.inf
        if allowed is not None:
            if sp.issparse(allowed):
                keep = allowed.toarray().astype(bool)
                block[~keep] = -np.inf
            else:
                block[:, ~allowed] = -np.inf

    def seen_items(self, user: int) -> np.ndarray:
        """Targets ``user`` already has in train."""
        self._check_fitted()
        assert self._seen is not None
        return self._seen[int(user)].indices.copy()

    # ------------------------------------------------------------------ embeddings
    def user_vectors(self) -> np.ndarray | None:
        """User embeddings for an index, for models that have them."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings for an index, for models that have them."""
        return None

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (numeric or unicode; never objects)."""
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Take back what ``_state`` returned (models with learned arrays override it)."""
        return None

    def manifest(self) -> dict[str, Any]:
        """What ``model.json`` holds: name, format version and config."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "graph_kind": self.graph_kind,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``model.json`` and ``state.npz`` into the folder ``path``."""
        self._check_fitted()
        assert self._seen is not None and self.users is not None and self.items is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "seen.indptr": self._seen.indptr,
            "seen.indices": self._seen.indices,
            "ids.users": self.users.to_array(),
        }
        if self.items is not self.users:
            arrays["ids.items"] = self.items.to_array()
        for key, value in self._state().items():
            value = np.asarray(value)
            if value.dtype == object:
                raise TypeError(f"state array {key!r} has dtype object; it would need pickle")
            arrays[f"state.{key}"] = value
        with atomic_write(path / STATE_FILE) as handle:
            np.savez(handle, **arrays)
        with atomic_write(path / CONFIG_FILE, "w") as handle:
            handle.write(json.dumps(self.manifest(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Retriever:
        """Rebuild a saved model; the class comes from the registry by the saved name."""
        from recgraph.retrieval.registry import get_retriever_class

        path = Path(path)
        manifest_path = path / CONFIG_FILE
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: no saved model here")
        manifest = json.loads(manifest_path.read_text())
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{manifest_path}: format_version {version} is not supported (expected {FORMAT_VERSION})"
            )
        klass = get_retriever_class(manifest["model"])
        if cls is not Retriever and not issubclass(klass, cls):
            raise TypeError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        model = klass(manifest["config"])
        with np.load(path / STATE_FILE, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        users = IdMap.from_array(arrays["ids.users"])
        items = IdMap.from_array(arrays["ids.items"]) if "ids.items" in arrays else users
        n_users, n_items = int(manifest["n_users"]), int(manifest["n_items"])
        indices = arrays["seen.indices"]
        model._seen = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, arrays["seen.indptr"]),
            shape=(n_users, n_items),
        )
        model.users, model.items = users, items
        model.graph_kind = manifest.get("graph_kind")
        model._set_state(
            {k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}
        )
        return model
