"""What the learned-embedding retrievers share: training knobs, index serving, saving.

A model (``lightgcn``, ``two_tower``, ``hetero_sage``, ``hetero_gin``) learns
``user_vectors_`` and ``item_vectors_``; :class:`EmbeddingRetriever` then

- answers ``recommend`` by searching an :mod:`recgraph.index` over the item
  vectors (``index``: ``exact`` by default, ``faiss_hnsw``, ``faiss_ivf`` or
  ``scann`` for large catalogues, with ``index_params``), exclusions pushed
  into the search; per-user candidate matrices take the dense path;
- scores pairs by the same dot product (or negated squared distance), which
  a stage-2 ranker reads as a feature (:meth:`score_pairs`);
- saves the vectors and the network weights in ``state.npz`` beside
  ``model.json`` (never pickle; Lightning checkpoints stay training artefacts).

Users and items first seen after training: :meth:`fold_in` gives them
vectors where the model can (each model's docstring says how); the rest keep
the fallback of the pipeline (popularity, :meth:`cold_start_scores`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Request, Retriever, RetrieverConfig, TopK

IndexName = Literal["exact", "faiss_flat", "faiss_hnsw", "faiss_ivf", "scann"]


class EmbeddingConfig(RetrieverConfig):
    """Training and serving knobs every embedding model has.

    ``validation_fraction`` of train is carved off (``validation_method``:
    ``random_per_user`` for items and ``edge_holdout`` for graphs unless
    given) to stop early on full-ranking nDCG@20; 0 trains ``epochs`` epochs
    on everything. The vectors are then computed on the whole train graph.
    """

    epochs: int = Field(default=100, ge=1)
    seed: int = 0
    validation_fraction: float = Field(default=0.1, ge=0, lt=1)
    validation_method: str | None = None
    #: Epochs between two validations.
    validate_every: int = Field(default=1, ge=1)
    #: Validations without a better nDCG@20 before training stops.
    patience: int = Field(default=5, ge=1)
    index: IndexName = "exact"
    index_params: dict[str, Any] = Field(default_factory=dict)
    #: Log the run to MLflow (needs the ``mlflow`` extra).
    track: bool = False
    #: Keep Lightning's best checkpoint here (default: a temporary folder).
    checkpoint_dir: str | None = None
    progress: bool = True
    accelerator: str = "auto"
    #: After early stopping, train again on all of train (validation slice
    #: included) for the epoch count validation chose: the served model then
    #: learns from every training row, at twice the training time. ``None``
    #: (a model's default where it says so): only after a temporal
    #: validation slice, which holds out the latest rows of train.
    refit: bool | None = False
    #: Torch intra-op threads while training (restored afterwards). One is
    #: the default: these small sparse products gain nothing from a second
    #: thread, and on a shared machine its spin-waits cost several times more.
    num_threads: int = Field(default=1, ge=1)


class EmbeddingRetriever(Retriever):
    """A retriever whose answers are nearest neighbours of learned vectors."""

    config: EmbeddingConfig
    #: ``ip`` (dot product) or ``l2`` (negated squared distance).
    metric: Literal["ip", "l2"] = "ip"

    user_vectors_: np.ndarray
    item_vectors_: np.ndarray
    #: Network weights (torch state dict as arrays), for fold-in and serving-time towers.
    weights_: dict[str, np.ndarray]
    #: What training did (epochs, best validation nDCG@20, seconds, device).
    training_: dict[str, Any]

    def __init__(self, config=None, **params: Any) -> None:
        super().__init__(config, **params)
        self._index = None
        self.weights_ = {}
        self.training_ = {}

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions) -> None:
        """Train (``_train``); with ``refit``, again on everything for the validated epochs."""
        cfg = self.config
        self._train(train)
        best = self.training_.get("best_epoch")
        refit = cfg.refit
        if refit is None:
            refit = str(cfg.validation_method or "").startswith("temporal")
        if not (refit and cfg.validation_fraction > 0 and best):
            return
        first = dict(self.training_)
        self.config = cfg.model_copy(update={"epochs": int(best), "validation_fraction": 0.0})
        try:
            self._train(train)
        finally:
            self.config = cfg
        self.training_ = {**self.training_, "validation_run": first}

    def _train(self, train: Interactions) -> None:  # pragma: no cover - every model has one
        raise NotImplementedError

    def _keep_module(self, module, summary) -> None:
        """Store the trained network's weights and the run's summary."""
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
        self.training_ = summary.as_dict()
        self._index = None

    def _set_vectors(self, users: np.ndarray, items: np.ndarray) -> None:
        self.user_vectors_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_vectors_ = np.ascontiguousarray(items, dtype=np.float32)
        self._index = None

    def _train_kwargs(self, name: str) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": name,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "validate_every": cfg.validate_every,
            "patience": cfg.patience,
            "progress": cfg.progress,
            "track": cfg.track,
            "checkpoint_dir": cfg.checkpoint_dir,
            "accelerator": cfg.accelerator,
            "params": cfg.model_dump(mode="json"),
        }

    # ------------------------------------------------------------------ inference
    def user_vectors(self) -> np.ndarray:
        return self.user_vectors_

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    def _score(self, users: np.ndarray) -> np.ndarray:
        queries = self.user_vectors()[users].astype(np.float64)
        items = self.item_vectors_.astype(np.float64)
        scores = queries @ items.T
        if self.metric == "l2":
            scores = 2 * scores - (items**2).sum(1)[None, :] - (queries**2).sum(1)[:, None]
        return scores

    def score_pairs(self, users, targets) -> np.ndarray:
        """Dot product (or negated squared distance) of each pair's vectors."""
        users, targets = self._check_pairs(users, targets)
        q = self.user_vectors()[users].astype(np.float64)
        x = self.item_vectors_[targets].astype(np.float64)
        if self.metric == "l2":
            return (-((q - x) ** 2).sum(1)).astype(np.float32)
        return np.einsum("ij,ij->i", q, x).astype(np.float32)

    def search_index(self):
        """The index over the item vectors (built on first use, rebuilt when they change)."""
        if self._index is None:
            from recgraph.index import create_index

            self._index = create_index(
                self.config.index, {"metric": self.metric, **self.config.index_params}
            ).build(self.item_vectors_)
        return self._index

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """Top ``k`` by index search (see :meth:`Retriever.recommend` for the arguments)."""
        if sp.issparse(request.allowed):  # one candidate set per user: dense scores
            return super()._recommend(users, k, request)
        excluded = self.forbidden(users, request.exclude_seen, request.exclude)
        allowed = request.allowed
        if len(users) == 0:
            return np.full((0, k), -1, np.int64), np.full((0, k), -np.inf, np.float32)
        return self.search_index().search(
            self.user_vectors()[users], k, exclude=excluded, allowed=allowed
        )

    # ------------------------------------------------------------------ new users and items
    def fold_in(self, new: Interactions) -> EmbeddingRetriever:
        """Give the users and items of ``new`` that training never saw a vector, where possible.

        Known users and items keep their vectors; their histories grow by
        ``new`` (so ``recommend`` excludes what they have now). What a new
        node gets is the model's :meth:`_fold_in_vectors`.
        """
        self._check_fitted()
        assert self.users is not None and self.items is not None
        n_users, n_items = self.n_users, self.n_items
        new = new.reindexed_onto(self.users, self.items)
        self._extend_history(new)
        self.users, self.items = new.users, new.items
        users, items = self._fold_in_vectors(new, n_users, n_items)
        self._set_vectors(users, items)
        return self

    def _fold_in_vectors(
        self, new: Interactions, n_old_users: int, n_old_items: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for every user and item after ``new`` (old rows unchanged).

        The default is the neighbour mean: a new user gets the mean vector of
        the items it has in ``new``, a new item the mean of its users' (after
        they are placed); nodes without any such neighbour get zeros, which
        rank nothing above anything (the fallback answers for them).
        """
        seen = self.seen_matrix()
        users = _grow(self.user_vectors_, new.n_users)
        items = _grow(self.item_vectors_, new.n_items)
        if new.n_users > n_old_users:
            rows = seen[n_old_users:]
            users[n_old_users:] = _row_means(rows, items)
        if new.n_items > n_old_items:
            cols = sp.csr_matrix(seen.T)[n_old_items:]
            items[n_old_items:] = _row_means(cols, users)
        return users, items

    # ------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        out = super().manifest()
        out["metric"] = self.metric
        return out

    def _state(self) -> dict[str, np.ndarray]:
        state = {"user_vectors": self.user_vectors_, "item_vectors": self.item_vectors_}
        state.update({f"weights.{k}": v for k, v in self.weights_.items()})
        return state

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._set_vectors(state["user_vectors"], state["item_vectors"])
        self.weights_ = {
            k[len("weights.") :]: v for k, v in state.items() if k.startswith("weights.")
        }


def _grow(vectors: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, vectors.shape[1]), np.float32)
    out[: len(vectors)] = vectors
    return out


def _row_means(rows: sp.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    counts = np.diff(rows.indptr).astype(np.float32)
    counts[counts == 0] = 1.0
    return np.asarray(rows @ vectors) / counts[:, None]


def state_dict_tensors(weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Saved weights as torch tensors, for ``module.load_state_dict``."""
    import torch

    return {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
