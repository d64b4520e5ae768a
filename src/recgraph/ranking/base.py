"""The ranker protocol: stage 2, which re-orders the candidates the retrievers proposed.

A retriever ranks a whole catalogue from one signal; a ranker orders a few
hundred candidates per user from many (every retriever's score and rank,
popularity now and over time, the candidate's age, the user's activity, graph
features of the pair). Batch first, as the retrievers are: a
:class:`RankingBatch` holds many users' candidate rows at once.

A ranker

- names itself (``name``) and its typed config (``config_class``, a
  :class:`RankerConfig`), separate from what it learns;
- learns in ``fit(train, valid)`` from labelled rows grouped by user, with a
  validation batch of other users for early stopping;
- scores rows with ``score(batch)``: one float per row, higher is better;
- saves as ``ranker.json`` plus ``state.npz`` (and files of its own, such as
  a LightGBM booster as text), never pickle.

Registries load by name without this module importing them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict

from recgraph.errors import NotFittedError
from recgraph.files import load_arrays, save_arrays, saved_folder
from recgraph.lazy_registry import open_saved, saved_header
from recgraph.settings import validated_config

FORMAT_VERSION = 1
CONFIG_FILE = "ranker.json"
STATE_FILE = "state.npz"


class RankerConfig(BaseModel):
    """Base of every ranker's config: typed, validated, JSON/TOML round-trippable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class RankingBatch:
    """Candidate rows of many users, each user's rows contiguous.

    Attributes
    ----------
    users, items
        ``(m,)`` user and candidate indices of each row.
    features
        ``(m, n_features)`` float32, columns named by ``feature_names``.
    feature_names
        One name per column, the same at fit and score time.
    labels
        ``(m,)`` 0/1 (1: the user went on to like the candidate), or ``None``.
    groups
        ``(m,)`` the list each row belongs to (default: its user); one user
        may appear in several lists, e.g. once per label fold.
    """

    users: np.ndarray
    items: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = len(self.users)
        if len(self.items) != m or self.features.shape != (m, len(self.feature_names)):
            raise ValueError(
                f"a ranking batch needs {m} items and a ({m}, {len(self.feature_names)}) "
                f"feature matrix; got {len(self.items)} and {self.features.shape}"
            )
        if self.labels is not None and len(self.labels) != m:
            raise ValueError("labels need one entry per row")
        if self.groups is not None and len(self.groups) != m:
            raise ValueError("groups need one entry per row")
        keys = self.group_keys
        if m and np.any(np.diff(keys) != 0):
            starts = np.r_[0, np.flatnonzero(np.diff(keys) != 0) + 1]
            if len(np.unique(keys[starts])) != len(starts):
                raise ValueError("each user's rows must be contiguous")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def group_keys(self) -> np.ndarray:
        return self.users if self.groups is None else self.groups

    def group_sizes(self) -> np.ndarray:
        """Rows per list, in order (what LambdaRank calls the query groups)."""
        keys = self.group_keys
        if not len(keys):
            return np.zeros(0, dtype=np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(keys) != 0) + 1, len(keys)]
        return np.diff(starts)

    def rows(self, mask: np.ndarray) -> RankingBatch:
        """The rows selected by a boolean mask (groups stay contiguous)."""
        return RankingBatch(
            self.users[mask],
            self.items[mask],
            self.features[mask],
            self.feature_names,
            None if self.labels is None else self.labels[mask],
            None if self.groups is None else self.groups[mask],
        )

    @classmethod
    def concat(cls, batches: Sequence[RankingBatch]) -> RankingBatch:
        """One batch of several, each keeping its lists apart (``groups`` renumbered)."""
        if not batches:
            raise ValueError("nothing to concatenate")
        names = batches[0].feature_names
        groups, offset = [], 0
        for batch in batches:
            if batch.feature_names != names:
                raise ValueError("batches with different features")
            sizes = batch.group_sizes()
            groups.append(np.repeat(np.arange(offset, offset + len(sizes)), sizes))
            offset += len(sizes)
        labelled = all(b.labels is not None for b in batches)
        return cls(
            np.concatenate([b.users for b in batches]),
            np.concatenate([b.items for b in batches]),
            np.concatenate([b.features for b in batches]),
            names,
            np.concatenate([b.labels for b in batches]) if labelled else None,
            np.concatenate(groups),
        )


class Ranker(ABC):
    """Stage-2 model: learns to order candidate rows grouped by user."""

    name: ClassVar[str]
    config_class: ClassVar[type[RankerConfig]] = RankerConfig
    #: Saved-name -> class lookup, installed by :mod:`recgraph.ranking.registry`.
    class_for_name: ClassVar[Callable[[str], type[Ranker]] | None] = None

    def __init__(self, config: RankerConfig | Mapping[str, Any] | None = None, **params: Any):
        self.config = validated_config(self.config_class, config, params, name=self.name)
        self.feature_names: tuple[str, ...] | None = None
        #: What fitting measured (validation figures, rounds), kept in the manifest.
        self.fit_report: dict[str, Any] = {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    @property
    def is_fitted(self) -> bool:
        return self.feature_names is not None

    def fit(self, train: RankingBatch, valid: RankingBatch | None = None) -> Self:
        """Learn from labelled rows; ``valid`` (other users) decides when to stop."""
        for name, batch in (("train", train), ("valid", valid)):
            if batch is not None and batch.labels is None:
                raise ValueError(f"the {name} batch has no labels")
            if batch is not None and batch.feature_names != train.feature_names:
                raise ValueError("train and valid batches have different features")
        self._fit(train, valid)
        self.feature_names = train.feature_names
        return self

    @abstractmethod
    def _fit(self, train: RankingBatch, valid: RankingBatch | None) -> None: ...

    def score(self, batch: RankingBatch) -> np.ndarray:
        """One score per row (float32), higher is better."""
        if self.feature_names is None:
            raise NotFittedError(f"ranker {self.name!r} is not fitted: call fit() or load()")
        if batch.feature_names != self.feature_names:
            missing = sorted(set(self.feature_names) - set(batch.feature_names))
            extra = sorted(set(batch.feature_names) - set(self.feature_names))
            raise ValueError(
                f"ranker {self.name!r} was trained on other features "
                f"(missing: {', '.join(missing) or 'none'}; new: {', '.join(extra) or 'none'})"
            )
        if not len(batch):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self._score(batch), dtype=np.float32)

    @abstractmethod
    def _score(self, batch: RankingBatch) -> np.ndarray: ...

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        return None

    def _save_files(self, path: Path) -> None:
        return None

    def _load_files(self, path: Path) -> None:
        return None

    def manifest(self) -> dict[str, Any]:
        return {
            **saved_header("ranker", self.name, self.config, FORMAT_VERSION),
            "feature_names": list(self.feature_names or ()),
            "fit_report": self.fit_report,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``ranker.json`` and ``state.npz`` (and the ranker's own files) into ``path``."""
        if self.feature_names is None:
            raise NotFittedError(f"ranker {self.name!r} is not fitted: nothing to save")
        with saved_folder(path, CONFIG_FILE, self.manifest) as folder:
            save_arrays(folder / STATE_FILE, self._state())
            self._save_files(folder)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranker:
        """Rebuild a saved ranker; the class comes from the registry by the saved name."""
        path = Path(path)
        ranker, manifest = open_saved(Ranker, cls, path / CONFIG_FILE, "ranker", FORMAT_VERSION)
        ranker._set_state(load_arrays(path / STATE_FILE))
        ranker.feature_names = tuple(manifest["feature_names"])
        ranker.fit_report = manifest.get("fit_report") or {}
        ranker._load_files(path)
        return ranker


def ndcg_at(scores: np.ndarray, labels: np.ndarray, groups: Sequence[int], k: int) -> float:
    """Mean nDCG@k over groups with at least one positive (binary gains), for validation."""
    total, counted, start = 0.0, 0, 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for size in groups:
        stop = start + int(size)
        y = labels[start:stop]
        if y.any():
            order = np.argsort(-scores[start:stop], kind="stable")[:k]
            dcg = float((y[order] * discounts[: len(order)]).sum())
            ideal = float(discounts[: min(int(y.sum()), k)].sum())
            total += dcg / ideal
            counted += 1
        start = stop
    return total / counted if counted else 0.0


#: Rows up to which :func:`feature_matrix` stacks the columns in one float64 array (a
#: request's few hundred: one conversion instead of one call per column); above, column by
#: column (a training batch: no float64 copy of the whole matrix).
STACKED_ROWS = 4096


def feature_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """``np.stack(columns, axis=1).astype(np.float32)`` (each value through float64, then
    float32), C-ordered: for a request, the float64 stack built by one call; for a batch
    written column by column into one array, the same floats, without a float64 copy of
    the whole matrix. Refuses what the stack refused: no columns, or columns of different
    shapes (``ValueError``)."""
    if not columns:
        raise ValueError("no feature columns to stack")
    shapes = [c.shape if isinstance(c, np.ndarray) else np.shape(c) for c in columns]
    rows = shapes[0]
    for j, shape in enumerate(shapes):
        if shape != rows or len(rows) != 1:
            raise ValueError(f"feature column {j} has shape {shape}, column 0 {rows}")
    if rows[0] <= STACKED_ROWS:
        return np.array(columns, dtype=np.float64).T.astype(np.float32, order="C")
    out = np.empty((rows[0], len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        out[:, j] = column if column.dtype.kind == "f" else column.astype(np.float64)
    return out
