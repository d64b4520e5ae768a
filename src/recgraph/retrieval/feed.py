"""Feed behaviour on top of any item retriever: cold start, exclusions, freshness, reasons.

A feed is not a ranking benchmark. What a user is shown must follow rules the
model knows nothing about:

- **cold start**: a user with fewer than ``cold_start_min_interactions``
  interactions (default 30) gets what nearly everyone likes: the items with
  the highest learnt item bias (``biased_mf``, ``bpr``), or the most popular
  items for models without a bias. Results say ``reason="cold_start"``;
- **never twice**: nothing the user already saw, liked or disliked (the
  model's seen matrix, which keeps dislikes, plus ``exclude`` for feedback
  the model has not been trained on yet);
- **freshness**: with ``max_age_days`` only items younger than that are
  eligible (posts are stale on a messenger after a few days); off by default,
  for catalogues such as films;
- **explanations**: for models with an ``explain(user, items, n)`` method
  (``item_knn``, ``als``, ``ease``), the user's liked items that contributed
  most to each recommendation.

The model's own ``recommend`` is used unchanged for everybody else, so any
:class:`~recgraph.retrieval.base.Retriever` works here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recgraph.retrieval.base import Retriever, rows_as_csr, top_k

Reason = Literal["personalised", "cold_start"]
SECONDS_PER_DAY = 86400.0


class FeedConfig(BaseModel):
    """The rules of a feed.

    ``max_age_days = None`` switches the freshness window off; ``explain_top``
    is how many contributing items an explanation names (0: none).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cold_start_min_interactions: int = Field(default=30, ge=0)
    max_age_days: float | None = Field(default=None, gt=0)
    explain_top: int = Field(default=3, ge=0)


@dataclass(frozen=True)
class FeedResult:
    """One recommended item and why.

    Attributes
    ----------
    item
        Item index in the model's id map.
    item_id
        Its external id.
    score
        The model's score (item bias or popularity for ``cold_start``).
    reason
        ``personalised`` or ``cold_start``.
    because
        External ids of the user's liked items that contributed most, best
        first (empty when the model cannot explain).
    """

    item: int
    item_id: str
    score: float
    reason: Reason
    because: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the service returns)."""
        return {
            "item": self.item_id,
            "score": self.score,
            "reason": self.reason,
            "because": list(self.because),
        }


def cold_start_scores(model: Retriever) -> np.ndarray:
    """What a user without history gets, per item (:meth:`Retriever.cold_start_scores`)."""
    return np.asarray(model.cold_start_scores(), dtype=np.float32)


def fresh_items(
    item_created_at: np.ndarray | Sequence[float], now: float, max_age_days: float
) -> np.ndarray:
    """Boolean mask of items created within ``max_age_days`` before ``now`` (NaN: not eligible)."""
    created = np.asarray(item_created_at, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (created >= now - max_age_days * SECONDS_PER_DAY) & (created <= now)


def recommend_feed(
    model: Retriever,
    users: Sequence[int] | np.ndarray | int,
    k: int = 10,
    *,
    config: FeedConfig | dict | None = None,
    now: float | None = None,
    item_created_at: np.ndarray | Sequence[float] | None = None,
    exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
) -> list[list[FeedResult]]:
    """The next ``k`` items for each user, following the feed rules of the module docstring.

    Parameters
    ----------
    model
        A fitted item retriever.
    users
        User indices in ``model.users``; ``-1`` for a user the model has never
        seen (``model.users.index(ids, missing=-1)`` builds these), who gets
        the cold-start list.
    k
        Items per user (fewer when fewer are eligible).
    config
        A :class:`FeedConfig` or its fields.
    now
        Unix seconds the freshness window ends at (default: the wall clock).
    item_created_at
        Creation time (unix seconds, NaN when unknown) of every item in
        ``model.items``; needed when ``max_age_days`` is set.
    exclude
        Items each user must not get beyond what the model saw: feedback that
        arrived after training (one id list per user, or a sparse matrix).

    Returns
    -------
    list of list of FeedResult
        One list per user, best first.
    """
    cfg = config if isinstance(config, FeedConfig) else FeedConfig.model_validate(config or {})
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = np.atleast_1d(np.asarray(users, dtype=np.int64))
    n_users, n_items = model.n_users, model.n_items
    if len(users) and users.max() >= n_users:
        raise IndexError(f"user index {users.max()} is outside 0..{n_users - 1}")
    users = np.where(users < 0, -1, users)
    exclude_m = rows_as_csr(exclude, len(users), n_items, "exclude")
    eligible = _eligible(cfg, n_items, now, item_created_at)

    known = users >= 0
    history = np.zeros(len(users), dtype=np.int64)
    history[known] = np.diff(model.seen_matrix().indptr)[users[known]]
    warm = np.flatnonzero(known & (history >= cfg.cold_start_min_interactions))
    cold = np.flatnonzero(~np.isin(np.arange(len(users)), warm))

    results: list[list[FeedResult]] = [[] for _ in users]
    item_ids = model.items.ids
    if len(warm):
        ids, scores = model.recommend(
            users[warm],
            k,
            exclude_seen=True,
            exclude=None if exclude_m is None else exclude_m[warm],
            candidates=eligible,
        )
        explain = model.explain if cfg.explain_top and model.explains else None
        for row, position in enumerate(warm):
            valid = ids[row] >= 0
            chosen, chosen_scores = ids[row][valid], scores[row][valid]
            reasons = (
                explain(int(users[position]), chosen, cfg.explain_top)
                if explain is not None and len(chosen)
                else [None for _ in chosen]
            )
            results[position] = [
                FeedResult(
                    item=int(item),
                    item_id=str(item_ids[item]),
                    score=float(score),
                    reason="personalised",
                    because=tuple(str(x) for x in because.via_ids) if because else (),
                )
                for item, score, because in zip(chosen, chosen_scores, reasons, strict=True)
            ]
    if len(cold):
        base = cold_start_scores(model)
        block = np.repeat(base[None, :], len(cold), axis=0)
        if eligible is not None:
            block[:, ~eligible] = -np.inf
        for row, position in enumerate(cold):
            if users[position] >= 0:
                block[row, model.seen_items(int(users[position]))] = -np.inf
            if exclude_m is not None:
                block[row, exclude_m[position].indices] = -np.inf
        ids, scores = top_k(block, k)
        for row, position in enumerate(cold):
            results[position] = [
                FeedResult(
                    item=int(item),
                    item_id=str(item_ids[item]),
                    score=float(score),
                    reason="cold_start",
                )
                for item, score in zip(ids[row], scores[row], strict=True)
                if item >= 0
            ]
    return results


def _eligible(
    cfg: FeedConfig,
    n_items: int,
    now: float | None,
    item_created_at: np.ndarray | Sequence[float] | None,
) -> np.ndarray | None:
    """The freshness mask, or ``None`` when the window is off."""
    if cfg.max_age_days is None:
        return None
    if item_created_at is None:
        raise ValueError("a freshness window (max_age_days) needs item_created_at")
    if len(item_created_at) != n_items:
        raise ValueError(
            f"item_created_at has {len(item_created_at)} entries, the model has {n_items} items"
        )
    return fresh_items(item_created_at, time.time() if now is None else now, cfg.max_age_days)
