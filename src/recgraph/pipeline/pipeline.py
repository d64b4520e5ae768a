r"""The serving pipeline: configured retrievers, merged with provenance, with a fallback chain.

A :class:`Pipeline` answers the two questions of a :class:`~recgraph.pipeline.config.PipelineConfig`
("who to follow" on the follow graph, "what to read" on the interactions).
Each question is a :class:`QuestionModel`:

1. **candidates**: every retriever of the question proposes ``candidates``
   targets per user through :func:`recgraph.retrieval.feed.recommend_feed`,
   which removes what the user already has (dislikes included), applies the
   freshness window, and gives users the model has never seen its cold-start
   list. Candidates at or below a retriever's ``min_score`` are dropped;
2. **merge**: the lists become one. With ``rrf`` (reciprocal rank fusion) an
   item scores

   .. math::

       s(i) = \sum_{r \,:\, i \in L_r} \frac{w_r}{k_{rrf} + \mathrm{rank}_r(i)}

   over the retrievers ``r`` whose list ``L_r`` holds it (rank 1 = best);
   ``score`` sums :math:`w_r s_r(i)`; ``priority`` keeps the first
   retriever's order and lets the next fill the gaps. Every item keeps the
   set of retrievers that proposed it (a bit mask, :attr:`Recommendations.sources`);
3. **fallback**: a user who is unknown, or has fewer than
   ``cold_start_min_interactions`` training interactions, is answered by the
   fallback chain alone, in ``priority`` order; for everyone else the chain
   fills what the retrievers left empty (say, a user whose follows reach
   fewer than ``k`` accounts);
4. **reasons** (only for what is shown): the first retriever of an item that
   can explain it says why, "followed by @a and @b" for the neighbourhood
   models, "because you liked X" for the item models, and the popularity
   fallback says "popular: new user".

Feedback that arrived after training is excluded through ``exclude`` (the
service reads it from the store). A pipeline saves as a folder of retriever
folders plus JSON and npz, never pickle, and publishes through
:class:`~recgraph.serving.registry.ModelRegistry` like a single model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recgraph.data.interactions import IdMap, Interactions
from recgraph.errors import ConfigError, InputError, NotFittedError
from recgraph.pipeline.config import (
    QUESTION_GRAPH,
    QUESTIONS,
    PipelineConfig,
    QuestionConfig,
    RetrieverSpec,
    load_pipeline_config,
    parse_pipeline,
)
from recgraph.progress import track
from recgraph.retrieval.base import Retriever, RetrieverConfig
from recgraph.retrieval.explanation import FROM_HISTORY
from recgraph.retrieval.feed import FeedConfig, recommend_feed
from recgraph.retrieval.popular import Popular
from recgraph.retrieval.registry import create_retriever

if TYPE_CHECKING:
    from recgraph.data.store import Store

PIPELINE_FILE = "pipeline.json"
NAMES_FILE = "names.npz"
QUESTION_STATE_FILE = "question.npz"
PIPELINE_FORMAT = 1
#: Longest title shown in a reason.
REASON_TITLE_CHARS = 60


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class Recommendations:
    """A batch of merged results, arrays of shape ``(n_users, k)``, best first.

    Attributes
    ----------
    ids, scores
        Target indices (``-1`` past the end) and merged scores.
    sources
        Bit mask of the retrievers that proposed each target (bit ``j`` =
        :attr:`QuestionModel.retriever_keys` ``[j]``).
    origin
        ``0`` when the target came from the question's retrievers, ``j >= 1``
        when the ``j``-th retriever of the fallback chain supplied it.
    cold
        Per user: served by the fallback chain alone (unknown or cold).
    """

    ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    origin: np.ndarray
    cold: np.ndarray


@dataclass(frozen=True)
class Recommendation:
    """One result as the service returns it.

    ``retrievers`` are the ids of every retriever that proposed it; ``reason``
    a sentence for people and ``reason_code`` one word for programs
    (``connections``, ``liked``, ``popular``, ``new_user``, ``model``);
    ``via`` the external ids the reason names; ``fallback`` whether the
    fallback chain supplied it.
    """

    id: str
    score: float
    retrievers: tuple[str, ...]
    reason: str
    reason_code: str
    via: tuple[str, ...] = ()
    fallback: bool = False
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "score": self.score,
            "retrievers": list(self.retrievers),
            "reason": self.reason,
            "reason_code": self.reason_code,
            "via": list(self.via),
            "fallback": self.fallback,
        }


@dataclass(frozen=True)
class Answer:
    """Results for one user, and how the user was treated."""

    user: str
    known: bool
    cold: bool
    results: list[Recommendation] = field(default_factory=list)


@dataclass(frozen=True)
class _Reason:
    text: str
    code: str
    via: tuple[str, ...] = ()


# ---------------------------------------------------------------------- merging
def merge_lists(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    sources: Sequence[np.ndarray],
    *,
    k: int,
    method: str,
    weights: Sequence[float] | None = None,
    rrf_k: float = 60.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge ranked lists row by row, keeping each item's provenance.

    Parameters
    ----------
    ids, scores, sources
        One ``(n, c_j)`` array each per list: targets (``-1`` = empty slot),
        their scores, and their source bit masks.
    k
        Results per row.
    method
        ``rrf``, ``score`` or ``priority`` (see the module docstring). With
        ``priority`` a merged item keeps the score of the list that placed it.
    weights
        Per list (default 1).
    rrf_k
        The rank offset of reciprocal rank fusion.

    Returns
    -------
    ids, scores, sources, origin
        ``(n, k)`` arrays; ``origin`` is the index of the list that placed
        each item (for ``rrf`` / ``score``: the one that gave it most).
    """
    n = ids[0].shape[0] if ids else 0
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_sources = np.zeros((n, k), dtype=np.int64)
    out_origin = np.zeros((n, k), dtype=np.int64)
    weights = [1.0] * len(ids) if weights is None else list(weights)
    parts: dict[str, list[np.ndarray]] = {
        "row": [],
        "item": [],
        "rank": [],
        "list": [],
        "raw": [],
        "bits": [],
        "gain": [],
    }
    for j, (list_ids, list_scores, list_sources, weight) in enumerate(
        zip(ids, scores, sources, weights, strict=True)
    ):
        rows, ranks = np.nonzero(list_ids >= 0)
        raw = list_scores[rows, ranks].astype(np.float64)
        if method == "rrf" and len(ids) > 1:
            gain = weight / (rrf_k + ranks + 1.0)
        elif method == "score":
            gain = weight * raw
        else:
            gain = raw
        parts["row"].append(rows)
        parts["item"].append(list_ids[rows, ranks])
        parts["rank"].append(ranks)
        parts["list"].append(np.full(len(rows), j, dtype=np.int64))
        parts["raw"].append(raw)
        parts["bits"].append(list_sources[rows, ranks].astype(np.int64))
        parts["gain"].append(gain)
    if not parts["row"] or not sum(len(r) for r in parts["row"]):
        return out_ids, out_scores, out_sources, out_origin
    row, item, rank, lst, raw, bits, gain = (
        np.concatenate(parts[name])
        for name in ("row", "item", "rank", "list", "raw", "bits", "gain")
    )
    width = np.int64(item.max()) + 1
    key = row.astype(np.int64) * width + item
    groups, inverse = np.unique(key, return_inverse=True)
    merged_bits = np.zeros(len(groups), dtype=np.int64)
    np.bitwise_or.at(merged_bits, inverse, bits)
    # the entry that places each group: first list, best rank (priority) or largest gain
    if method == "priority":
        order = np.lexsort((rank, lst, inverse))
    else:
        order = np.lexsort((lst, -gain, inverse))
    first = order[np.r_[True, inverse[order][1:] != inverse[order][:-1]]]
    group_row = groups // width
    group_item = groups % width
    origin = lst[first]
    if method == "priority":
        value = raw[first]
        ranking = np.lexsort((group_item, rank[first], origin, group_row))
    else:
        value = np.bincount(inverse, weights=gain, minlength=len(groups))
        ranking = np.lexsort((group_item, -value, group_row))
    sorted_rows = group_row[ranking]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    slot = np.arange(len(ranking)) - starts
    keep = slot < k
    chosen, rows_out, slots_out = ranking[keep], sorted_rows[keep], slot[keep]
    out_ids[rows_out, slots_out] = group_item[chosen]
    out_scores[rows_out, slots_out] = value[chosen]
    out_sources[rows_out, slots_out] = merged_bits[chosen]
    out_origin[rows_out, slots_out] = origin[chosen]
    return out_ids, out_scores, out_sources, out_origin


# ---------------------------------------------------------------------- names
class Names:
    """Handles of accounts and titles of items, to resolve queries and write reasons.

    ``handle`` and ``title`` are ``""`` where the store has none.
    """

    def __init__(
        self,
        account_ids: Sequence[str] | np.ndarray = (),
        handles: Sequence[str | None] | np.ndarray = (),
        item_ids: Sequence[str] | np.ndarray = (),
        titles: Sequence[str | None] | np.ndarray = (),
    ) -> None:
        self.account_ids = _text_array(account_ids)
        self.handles = _text_array(handles)
        self.item_ids = _text_array(item_ids)
        self.titles = _text_array(titles)
        if len(self.handles) != len(self.account_ids) or len(self.titles) != len(self.item_ids):
            raise ValueError("names: every id needs a handle / title entry ('' when none)")
        self._handle_of = {a: h for a, h in zip(self.account_ids, self.handles, strict=True) if h}
        self._account_of_handle = {h.lower(): a for a, h in self._handle_of.items()}
        self._title_of = {i: t for i, t in zip(self.item_ids, self.titles, strict=True) if t}

    @classmethod
    def from_frames(cls, accounts: pd.DataFrame | None, items: pd.DataFrame | None) -> Names:
        """From :meth:`Store.accounts_frame` / :meth:`Store.items_frame` (or ``None``)."""
        accounts = accounts if accounts is not None else pd.DataFrame()
        items = items if items is not None else pd.DataFrame()
        return cls(
            accounts.get("external_id", pd.Series(dtype=object)).tolist(),
            accounts.get("handle", pd.Series([None] * len(accounts), dtype=object)).tolist(),
            items.get("external_id", pd.Series(dtype=object)).tolist(),
            items.get("title", pd.Series([None] * len(items), dtype=object)).tolist(),
        )

    def handle(self, account: str) -> str | None:
        return self._handle_of.get(account)

    def title(self, item: str) -> str | None:
        return self._title_of.get(item)

    def account_for_handle(self, text: str) -> str | None:
        """The account whose handle is ``text`` (any case, leading ``@`` ignored)."""
        return self._account_of_handle.get(text.strip().removeprefix("@").lower())

    def show_account(self, account: str) -> str:
        """``@handle`` when known, else the id."""
        handle = self.handle(account)
        return f"@{handle}" if handle else account

    def show_item(self, item: str) -> str:
        """The title (shortened) when known, else the id."""
        title = self.title(item)
        if not title:
            return item
        return title if len(title) <= REASON_TITLE_CHARS else title[: REASON_TITLE_CHARS - 1] + "…"

    def save(self, path: Path) -> None:
        np.savez(
            path,
            account_ids=_unicode(self.account_ids),
            handles=_unicode(self.handles),
            item_ids=_unicode(self.item_ids),
            titles=_unicode(self.titles),
        )

    @classmethod
    def load(cls, path: Path) -> Names:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["account_ids"].tolist(),
                data["handles"].tolist(),
                data["item_ids"].tolist(),
                data["titles"].tolist(),
            )


def _text_array(values: Sequence | np.ndarray) -> np.ndarray:
    return np.asarray(
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
        dtype=object,
    )


def _unicode(values: np.ndarray) -> np.ndarray:
    """A unicode array ``np.savez`` stores without pickle (``<U1`` when empty)."""
    return np.asarray(values, dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def _joined(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------- one question
class QuestionModel:
    """The retrievers of one question, fitted on one graph, merged with a fallback chain.

    Parameters
    ----------
    question
        ``who_to_follow`` or ``feed``.
    config
        Its :class:`QuestionConfig`.
    """

    def __init__(self, question: str, config: QuestionConfig) -> None:
        if question not in QUESTIONS:
            raise ConfigError(f"unknown question {question!r}; expected one of {QUESTIONS}")
        self.question = question
        self.config = config
        self.specs: dict[str, RetrieverSpec] = {spec.key: spec for spec in config.all_specs()}
        #: Bit ``j`` of a result's source mask is ``retriever_keys[j]``.
        self.retriever_keys: list[str] = list(self.specs)
        if len(self.retriever_keys) > 62:
            raise ConfigError(f"{question}: at most 62 retrievers per question")
        self.main_keys = [spec.key for spec in config.retrievers]
        self.chain_keys = [spec.key for spec in config.chain()]
        self.models: dict[str, Retriever] = {}
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.graph_kind: str | None = None
        #: Positive training interactions per user: who is cold.
        self.history: np.ndarray = np.zeros(0, dtype=np.int64)
        #: Creation time of each item (NaN: unknown), for the freshness window.
        self.item_created_at: np.ndarray | None = None
        self._feed_config = FeedConfig(
            cold_start_min_interactions=0, max_age_days=config.max_age_days, explain_top=0
        )

    def __repr__(self) -> str:
        return f"QuestionModel({self.question}: {', '.join(self.retriever_keys)})"

    # ------------------------------------------------------------------ training
    def new_retrievers(self) -> dict[str, Retriever]:
        """Unfitted retrievers from the specs; parameter errors name the question and model."""
        out = {}
        for key, spec in self.specs.items():
            try:
                out[key] = create_retriever(spec.name, spec.params)
            except ConfigError as exc:
                raise ConfigError(f"{self.question}.retrievers[{key}]: {exc}") from None
        return out

    def fit(self, data: Interactions, item_created_at: np.ndarray | None = None) -> QuestionModel:
        """Fit every retriever (listed and fallback-only) on ``data``."""
        expected = QUESTION_GRAPH[self.question]
        if (data.graph_kind == "items") != (expected == "items"):
            raise ConfigError(
                f"{self.question} answers from a {'users x items' if expected == 'items' else 'follow'} "
                f"graph; got a {data.graph_kind} graph"
            )
        models = self.new_retrievers()
        for key in track(list(models), f"training {self.question}"):
            try:
                models[key].fit(data)
            except ConfigError as exc:
                raise ConfigError(f"{self.question}.retrievers[{key}]: {exc}") from None
        self.models = models
        self.users, self.items, self.graph_kind = data.users, data.items, data.graph_kind
        self.history = np.diff(data.positives().csr("binary").indptr).astype(np.int64)
        if item_created_at is not None and len(item_created_at) != data.n_items:
            raise ValueError("item_created_at needs one entry per item of the graph")
        self.item_created_at = item_created_at
        if self.config.max_age_days is not None and item_created_at is None:
            raise ConfigError(
                f"{self.question}.max_age_days needs item creation times (items.created_at)"
            )
        return self

    @property
    def is_fitted(self) -> bool:
        return bool(self.models)

    def _check_fitted(self) -> None:
        if not self.models:
            raise NotFittedError(f"the {self.question} question is not trained")

    # ------------------------------------------------------------------ inference
    def user_index(self, user: str) -> int:
        """Index of an external user id, ``-1`` when the models never saw it."""
        self._check_fitted()
        assert self.users is not None
        return self.users.get(user, -1)

    def target_indices(self, targets: Iterable[str]) -> np.ndarray:
        """Indices of the known external target ids (unknown ones are left out)."""
        assert self.items is not None
        indices = self.items.index(list(targets), missing=-1)
        return indices[indices >= 0]

    def recommend(
        self,
        users: Sequence[int] | np.ndarray,
        k: int | None = None,
        *,
        exclude: Sequence[Sequence[int]] | None = None,
        allowed: np.ndarray | None = None,
        now: float | None = None,
    ) -> Recommendations:
        """Merged top ``k`` for a batch of users (indices; ``-1`` for unknown ones).

        Parameters
        ----------
        users
            User indices in :attr:`users`, ``-1`` for users the models never saw.
        k
            Results per user (default: the question's ``k``).
        exclude
            Per user, target indices to leave out on top of what the models
            saw (feedback that arrived after training).
        allowed
            A boolean mask over targets: only these may be returned (the
            evaluation harness's candidates).
        now
            Unix seconds the freshness window ends at (default: now).
        """
        self._check_fitted()
        cfg = self.config
        k = cfg.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        users = np.where(users < 0, -1, users)
        n = len(users)
        known = users >= 0
        history = np.zeros(n, dtype=np.int64)
        history[known] = self.history[users[known]]
        cold = ~known | (history < cfg.cold_start_min_interactions)
        exclude = [list(x) for x in exclude] if exclude is not None else None
        if exclude is not None and len(exclude) != n:
            raise ValueError(f"exclude has {len(exclude)} rows, expected one per user ({n})")

        ids = np.full((n, 0), -1, dtype=np.int64)
        scores = np.full((n, 0), -np.inf, dtype=np.float32)
        sources = np.zeros((n, 0), dtype=np.int64)
        warm = np.flatnonzero(~cold)
        if len(warm):
            # one retriever needs no more than k: merging is what wants the longer lists
            count = cfg.candidates if len(self.main_keys) > 1 else k
            lists = [
                self._candidates(key, users[warm], count, exclude, warm, allowed, now)
                for key in self.main_keys
            ]
            if len(lists) == 1:  # already ranked, best first: nothing to merge
                merged = tuple(part[:, :k] for part in lists[0])
            else:
                merged = merge_lists(
                    [x[0] for x in lists],
                    [x[1] for x in lists],
                    [x[2] for x in lists],
                    k=k,
                    method=cfg.merge,
                    weights=[self.specs[key].weight for key in self.main_keys],
                    rrf_k=cfg.rrf_k,
                )
            ids = np.full((n, k), -1, dtype=np.int64)
            scores = np.full((n, k), -np.inf, dtype=np.float32)
            sources = np.zeros((n, k), dtype=np.int64)
            width = merged[0].shape[1]
            ids[warm, :width], scores[warm, :width], sources[warm, :width] = merged[:3]
        origin = np.zeros(ids.shape, dtype=np.int64)

        short = np.flatnonzero((ids >= 0).sum(axis=1) < k) if ids.shape[1] else np.arange(n)
        if len(short) and self.chain_keys:
            fetch = min(max(2 * k, k + 10), 10_000)
            chain = [
                self._candidates(key, users[short], fetch, exclude, short, allowed, now)
                for key in self.chain_keys
            ]
            base_ids = ids[short] if ids.shape[1] else np.full((len(short), 0), -1, np.int64)
            base_scores = scores[short] if ids.shape[1] else np.zeros((len(short), 0), np.float32)
            base_sources = sources[short] if ids.shape[1] else np.zeros((len(short), 0), np.int64)
            filled = merge_lists(
                [base_ids] + [x[0] for x in chain],
                [base_scores] + [x[1] for x in chain],
                [base_sources] + [x[2] for x in chain],
                k=k,
                method="priority",
            )
            if ids.shape[1] != k:
                ids = np.full((n, k), -1, dtype=np.int64)
                scores = np.full((n, k), -np.inf, dtype=np.float32)
                sources = np.zeros((n, k), dtype=np.int64)
                origin = np.zeros((n, k), dtype=np.int64)
            ids[short], scores[short], sources[short], origin[short] = filled
        elif ids.shape[1] != k:
            ids = np.full((n, k), -1, dtype=np.int64)
            scores = np.full((n, k), -np.inf, dtype=np.float32)
            sources = np.zeros((n, k), dtype=np.int64)
            origin = np.zeros((n, k), dtype=np.int64)
        return Recommendations(ids=ids, scores=scores, sources=sources, origin=origin, cold=cold)

    def _candidates(
        self,
        key: str,
        users: np.ndarray,
        count: int,
        exclude: list[list[int]] | None,
        rows: np.ndarray,
        allowed: np.ndarray | None,
        now: float | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One retriever's list for ``users``: ids, scores and its source bit, ``(n, count)``."""
        model = self.models[key]
        count = min(count, model.n_items)
        results = recommend_feed(
            model,
            users,
            count,
            config=self._feed_config,
            now=now,
            item_created_at=self.item_created_at,
            exclude=None if exclude is None else [exclude[r] for r in rows],
        )
        ids = np.full((len(users), count), -1, dtype=np.int64)
        scores = np.full((len(users), count), -np.inf, dtype=np.float32)
        min_score = self.specs[key].min_score
        for row, found in enumerate(results):
            chosen = [
                r
                for r in found
                if (min_score is None or r.score > min_score)
                and (allowed is None or allowed[r.item])
            ]
            ids[row, : len(chosen)] = [r.item for r in chosen]
            scores[row, : len(chosen)] = [r.score for r in chosen]
        bit = np.int64(1) << np.int64(self.retriever_keys.index(key))
        sources = np.where(ids >= 0, bit, np.int64(0))
        return ids, scores, sources

    # ------------------------------------------------------------------ explanations
    def answer(
        self,
        user: str,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        names: Names | None = None,
        now: float | None = None,
    ) -> Answer:
        """Results for one external user id, with reasons (what the service returns)."""
        self._check_fitted()
        assert self.items is not None
        names = names or Names()
        index = self.user_index(user)
        excluded = self.target_indices(exclude)
        if index >= 0 and len(excluded):
            # what the models saw in training they exclude already: pass on only the news
            seen = self.models[self.main_keys[0]].seen_items(index)
            excluded = excluded[~np.isin(excluded, seen)]
        result = self.recommend([index], k, exclude=[excluded] if len(excluded) else None, now=now)
        ids, scores = result.ids[0], result.scores[0]
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid]
        sources, origin = result.sources[0][valid], result.origin[0][valid]
        cold = bool(result.cold[0])
        reasons = self._reasons(index, ids, sources, origin, cold, names)
        target_ids = self.items.external(ids)
        show = names.handle if self.question == "who_to_follow" else names.title
        results = [
            Recommendation(
                id=str(target),
                score=float(score),
                retrievers=tuple(key for j, key in enumerate(self.retriever_keys) if bits >> j & 1),
                reason=reason.text,
                reason_code=reason.code,
                via=reason.via,
                fallback=bool(o > 0),
                label=show(str(target)),
            )
            for target, score, bits, o, reason in zip(
                target_ids, scores, sources, origin, reasons, strict=True
            )
        ]
        return Answer(user=user, known=index >= 0, cold=cold, results=results)

    def _reasons(
        self,
        user: int,
        ids: np.ndarray,
        sources: np.ndarray,
        origin: np.ndarray,
        cold: bool,
        names: Names,
    ) -> list[_Reason]:
        """A reason per result: the first retriever that proposed it and can explain it."""
        reasons: list[_Reason | None] = [None] * len(ids)
        for position in range(len(ids)):
            if origin[position] > 0:
                key = self.chain_keys[origin[position] - 1]
                if user < 0 or isinstance(self.models[key], Popular):
                    reasons[position] = _popular_reason(cold)
        if user >= 0 and self.config.explain_top:
            for key in self.main_keys + self.chain_keys:
                bit = np.int64(1) << np.int64(self.retriever_keys.index(key))
                todo = [
                    p
                    for p in range(len(ids))
                    if reasons[p] is None
                    and sources[p] & bit
                    and (origin[p] == 0 or self.chain_keys[origin[p] - 1] == key)
                ]
                if todo:
                    explained = self._explain(key, user, ids[todo], names)
                    for p, reason in zip(todo, explained, strict=True):
                        reasons[p] = reason
        out = []
        for position, reason in enumerate(reasons):
            if reason is None:
                first = next(
                    key for j, key in enumerate(self.retriever_keys) if sources[position] >> j & 1
                )
                model = self.models[first]
                reason = (
                    _popular_reason(cold)
                    if isinstance(model, Popular) or user < 0
                    else _Reason(f"picked for you by {first}", "model")
                )
            out.append(reason)
        return out

    def _explain(self, key: str, user: int, ids: np.ndarray, names: Names) -> list[_Reason | None]:
        """What retriever ``key`` says about ``ids`` for ``user``; ``None`` where it cannot say."""
        model = self.models[key]
        if not model.explains:
            return [None] * len(ids)
        top = self.config.explain_top
        try:
            explained = model.explain(int(user), ids, top)
        except Exception:  # an explanation is a courtesy: never fail a request over one
            return [None] * len(ids)
        assert self.users is not None and self.items is not None
        out: list[_Reason | None] = []
        for entry in explained:
            via = [str(x) for x in entry.via_ids[:top]]
            if not via:
                out.append(None)
            elif entry.relation != FROM_HISTORY:
                shown = [names.show_account(x) for x in via]
                out.append(_Reason(f"{entry.relation} {_joined(shown)}", "connections", tuple(via)))
            else:
                shown = [f"“{names.show_item(x)}”" for x in via]
                out.append(_Reason(f"because you liked {_joined(shown)}", "liked", tuple(via)))
        return out

    # ------------------------------------------------------------------ similar items
    def similar(
        self, item: int, k: int, key: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Targets most like target ``item``: ``(ids, scores, method)``, best first.

        ``method`` is ``similarity`` (an item-item matrix such as item_knn's),
        ``vectors`` (cosine of a model's item vectors) or ``co-occurrence``
        (cosine of the sets of users who have each item).
        """
        self._check_fitted()
        return self.models[key or self.main_keys[0]].similar_items(item, k)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> dict[str, Any]:
        """Write each retriever into ``path/<id>`` and the question's arrays; return its manifest."""
        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        for key, model in self.models.items():
            model.save(path / key)
        arrays = {"history": self.history}
        if self.item_created_at is not None:
            arrays["item_created_at"] = self.item_created_at
        np.savez(path / QUESTION_STATE_FILE, **arrays)
        return {
            "retrievers": {key: key for key in self.models},
            "graph_kind": self.graph_kind,
            "n_users": len(self.users) if self.users is not None else 0,
            "n_items": len(self.items) if self.items is not None else 0,
        }

    @classmethod
    def load(cls, question: str, config: QuestionConfig, path: Path) -> QuestionModel:
        out = cls(question, config)
        models = {}
        for key in out.specs:
            if not (path / key).exists():
                raise InputError(f"no saved retriever {key!r} here", path=path)
            models[key] = Retriever.load(path / key)
        out.models = models
        first = next(iter(models.values()))
        out.users, out.items, out.graph_kind = first.users, first.items, first.graph_kind
        with np.load(path / QUESTION_STATE_FILE, allow_pickle=False) as data:
            out.history = data["history"]
            out.item_created_at = data["item_created_at"] if "item_created_at" in data else None
        return out


def _popular_reason(cold: bool) -> _Reason:
    return _Reason("popular: new user", "new_user") if cold else _Reason("popular", "popular")


# ---------------------------------------------------------------------- the pipeline
class Pipeline:
    """Both questions, the names that make results readable, and how to save them.

    Parameters
    ----------
    config
        A :class:`PipelineConfig`, a mapping of its fields, or a TOML path;
        ``None`` is the shipped default pipeline.

    Examples
    --------
    >>> pipeline = Pipeline().fit_store(store)  # doctest: +SKIP
    >>> pipeline.suggest_accounts("@alice.bsky.social").results[0].reason  # doctest: +SKIP
    'followed by @bob.bsky.social and @carol.bsky.social'
    """

    #: What the model registry records as the model's name.
    name: ClassVar[str] = "pipeline"

    def __init__(
        self, config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None = None
    ):
        if isinstance(config, PipelineConfig):
            self.config = config
        elif isinstance(config, Mapping):
            self.config = parse_pipeline(config)
        else:
            self.config = load_pipeline_config(config)
        self.questions: dict[str, QuestionModel] = {}
        self.names = Names()
        self.trained_at: str | None = None
        self.snapshots: dict[str, Any] = {}
        for question in QUESTIONS:
            cfg = self.config.question(question)
            if cfg.enabled:
                QuestionModel(question, cfg).new_retrievers()  # unknown names / bad params fail now

    def __repr__(self) -> str:
        trained = ", ".join(self.questions) or "not trained"
        return f"Pipeline({trained})"

    # ------------------------------------------------------------------ training
    def fit(
        self,
        *,
        follows: Interactions | None = None,
        interactions: Interactions | None = None,
        accounts: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
    ) -> Pipeline:
        """Train each enabled question whose graph is given and not empty.

        Parameters
        ----------
        follows
            The follow (or friendship) graph, for ``who_to_follow``.
        interactions
            Users x items, for ``feed``.
        accounts, items
            :meth:`Store.accounts_frame` / :meth:`Store.items_frame`: handles
            and titles for reasons, item ``created_at`` for freshness.
        """
        from recgraph.serving.registry import data_snapshot

        graphs = {"who_to_follow": follows, "feed": interactions}
        questions: dict[str, QuestionModel] = {}
        snapshots: dict[str, Any] = {}
        for question, data in graphs.items():
            cfg = self.config.question(question)
            if not cfg.enabled or data is None or len(data) == 0:
                continue
            created = _item_times(data, items) if question == "feed" else None
            questions[question] = QuestionModel(question, cfg).fit(data, created)
            snapshots[question] = data_snapshot(data)
        if not questions:
            raise InputError(
                "nothing to train: the store has neither follows nor interactions "
                "(import data first, e.g. recgraph quickstart)"
            )
        self.questions = questions
        self.snapshots = {"rows": sum(s["rows"] for s in snapshots.values()), **snapshots}
        self.names = Names.from_frames(accounts, items)
        self.trained_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return self

    def fit_store(self, store: Store) -> Pipeline:
        """Train on a snapshot of everything ``store`` holds."""
        counts = store.counts()
        follows = store.follows_graph() if counts.get("follows") else None
        interactions = store.interactions_graph() if counts.get("interactions") else None
        return self.fit(
            follows=follows,
            interactions=interactions,
            accounts=store.accounts_frame(),
            items=store.items_frame(),
        )

    # ------------------------------------------------------------------ model-like surface
    @property
    def is_fitted(self) -> bool:
        return bool(self.questions)

    @property
    def graph_kind(self) -> str:
        """The graphs it answers from, e.g. ``follows+items``."""
        return "+".join(q.graph_kind or "?" for q in self.questions.values())

    @property
    def n_users(self) -> int:
        return max(
            (len(q.users) for q in self.questions.values() if q.users is not None), default=0
        )

    @property
    def n_items(self) -> int:
        feed = self.questions.get("feed")
        return len(feed.items) if feed is not None and feed.items is not None else 0

    def question(self, name: str) -> QuestionModel:
        """The trained question ``name``; :class:`NotFittedError` when it was not trained."""
        if name not in self.questions:
            raise NotFittedError(
                f"this pipeline has no trained {name!r} question "
                f"(trained: {', '.join(self.questions) or 'none'})"
            )
        return self.questions[name]

    # ------------------------------------------------------------------ answers
    def resolve_account(self, text: str) -> str:
        """The external id an account query means: an id or DID as given, or a handle's account.

        Unknown text is returned unchanged: it is a user the models never saw,
        and gets the fallback.
        """
        text = text.strip()
        for question in self.questions.values():
            if question.users is not None and text in question.users:
                return text
        return self.names.account_for_handle(text) or text.removeprefix("@")

    def suggest_accounts(
        self, account: str, k: int | None = None, *, exclude: Iterable[str] = ()
    ) -> Answer:
        """Who ``account`` (id, DID or handle) should follow, with reasons."""
        account = self.resolve_account(account)
        return self.question("who_to_follow").answer(account, k, exclude=exclude, names=self.names)

    def feed(
        self,
        user: str,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        now: float | None = None,
    ) -> Answer:
        """What ``user`` should read next, with reasons; ``exclude`` = items to leave out."""
        user = self.resolve_account(user)
        return self.question("feed").answer(user, k, exclude=exclude, names=self.names, now=now)

    def similar_items(self, item: str, k: int | None = None) -> list[Recommendation]:
        """Items like ``item``; :class:`KeyError` when the feed never saw it."""
        feed = self.question("feed")
        assert feed.items is not None
        index = feed.items.get(item, -1)
        if index < 0:
            raise KeyError(f"unknown item {item!r}")
        cfg = self.config.similar
        key = cfg.retriever if cfg.retriever in feed.models else None
        key = key or feed.main_keys[0]
        ids, scores, method = feed.similar(index, cfg.k if k is None else k, key)
        reason = {
            "similarity": "liked by the same people",
            "vectors": f"close in {key}'s item space",
            "co-occurrence": "often had by the same people",
        }[method]
        return [
            Recommendation(
                id=str(target),
                score=float(score),
                retrievers=(key,),
                reason=reason,
                reason_code=method,
                label=self.names.title(str(target)),
            )
            for target, score in zip(feed.items.external(ids), scores, strict=True)
        ]

    # ------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        """What ``pipeline.json`` holds."""
        return {
            "format_version": PIPELINE_FORMAT,
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "trained_at": self.trained_at,
            "questions": {
                name: {
                    "retrievers": list(q.models),
                    "graph_kind": q.graph_kind,
                    "n_users": len(q.users) if q.users is not None else 0,
                    "n_items": len(q.items) if q.items is not None else 0,
                }
                for name, q in self.questions.items()
            },
            "data": self.snapshots,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``pipeline.json``, ``names.npz`` and one folder per question of retriever folders."""
        if not self.is_fitted:
            raise NotFittedError("the pipeline is not trained: call fit() or fit_store()")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, question in self.questions.items():
            question.save(path / name)
        self.names.save(path / NAMES_FILE)
        # written last: its presence marks a complete pipeline
        tmp = path / f".{PIPELINE_FILE}.tmp"
        tmp.write_text(json.dumps(self.manifest(), indent=2))
        os.replace(tmp, path / PIPELINE_FILE)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Rebuild a saved pipeline (no pickle: JSON and npz only)."""
        path = Path(path)
        manifest_path = path / PIPELINE_FILE
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: no saved pipeline here")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc}", path=manifest_path) from None
        if manifest.get("format_version") != PIPELINE_FORMAT:
            raise InputError(
                f"format_version {manifest.get('format_version')} is not supported "
                f"(expected {PIPELINE_FORMAT})",
                path=manifest_path,
                field="format_version",
            )
        pipeline = cls.__new__(cls)
        pipeline.config = parse_pipeline(manifest["config"], source=str(manifest_path))
        pipeline.questions = {
            name: QuestionModel.load(name, pipeline.config.question(name), path / name)
            for name in manifest.get("questions", {})
        }
        pipeline.names = Names.load(path / NAMES_FILE) if (path / NAMES_FILE).exists() else Names()
        pipeline.trained_at = manifest.get("trained_at")
        pipeline.snapshots = manifest.get("data") or {}
        return pipeline

    @classmethod
    def from_retriever(cls, model: Retriever) -> Pipeline:
        """A one-retriever pipeline around a fitted model (to serve a plain registry version)."""
        if not model.is_fitted:
            raise NotFittedError(f"model {model.name!r} is not fitted")
        question = "feed" if model.graph_kind == "items" else "who_to_follow"
        spec = {"name": model.name, "params": model.config.model_dump(mode="json")}
        cfg = {question: {"retrievers": [spec], "fallback": [model.name]}}
        other = "who_to_follow" if question == "feed" else "feed"
        cfg[other] = {"enabled": False, "retrievers": [{"name": "popular"}]}
        pipeline = cls.__new__(cls)
        pipeline.config = parse_pipeline(cfg)
        q = QuestionModel(question, pipeline.config.question(question))
        q.models = {model.name: model}
        q.users, q.items, q.graph_kind = model.users, model.items, model.graph_kind
        q.history = np.diff(model.seen_matrix().indptr).astype(np.int64)
        pipeline.questions = {question: q}
        pipeline.names = Names()
        pipeline.trained_at = None
        pipeline.snapshots = {}
        return pipeline


def _item_times(data: Interactions, items: pd.DataFrame | None) -> np.ndarray | None:
    """Creation time of each item of ``data`` (NaN when unknown), or None without a frame."""
    if items is None or "created_at" not in items.columns or not len(items):
        return None
    created = pd.to_numeric(items["created_at"], errors="coerce").to_numpy(np.float64)
    lookup = dict(zip(items["external_id"].astype(str), created, strict=True))
    return np.asarray([lookup.get(str(i), np.nan) for i in data.items.ids], dtype=np.float64)


# ---------------------------------------------------------------------- evaluation adapter
class QuestionRetrieverConfig(RetrieverConfig):
    """A question of a pipeline as one retriever: ``question`` and the pipeline's fields."""

    question: str = "who_to_follow"
    pipeline: dict[str, Any] = {}


class QuestionRetriever(Retriever):
    """One question of a pipeline behind the :class:`Retriever` protocol, to evaluate it.

    ``fit`` trains the question's retrievers; ``recommend`` returns the merged
    lists with the fallback chain, exactly as the service ranks them.
    """

    name = "pipeline"
    config_class = QuestionRetrieverConfig
    config: QuestionRetrieverConfig

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(config, **params)
        pipeline_config = (
            parse_pipeline(self.config.pipeline) if self.config.pipeline else PipelineConfig()
        )
        self.question_model = QuestionModel(
            self.config.question, pipeline_config.question(self.config.question)
        )
        self.name = f"pipeline:{self.config.question}"  # type: ignore[misc]

    def _fit(self, train: Interactions) -> None:
        self.question_model.fit(train)

    def recommend(
        self,
        users: Sequence[int] | np.ndarray | int,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
        candidates: np.ndarray | Sequence[int] | sp.spmatrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        users = self._check_users(users)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        rows = None
        if exclude is not None:
            matrix = sp.csr_matrix(exclude) if sp.issparse(exclude) else None
            rows = (
                [matrix[i].indices for i in range(matrix.shape[0])]
                if matrix is not None
                else [list(x) for x in exclude]
            )
        allowed = None
        if candidates is not None and not sp.issparse(candidates):
            allowed = self._allowed(candidates, len(users))
        result = self.question_model.recommend(users, k, exclude=rows, allowed=allowed)
        return result.ids, result.scores


# ---------------------------------------------------------------------- train and publish
@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_pipeline` did: the trained pipeline, its version, and timings."""

    pipeline: Pipeline
    version: str
    promoted: bool
    fit_seconds: float


def train_pipeline(
    store: Store,
    registry: Any,
    config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    notes: str | None = None,
    promote: bool = True,
) -> TrainResult:
    """Train a pipeline on a snapshot of ``store`` and publish it to ``registry``.

    Parameters
    ----------
    store
        The store to train on (everything it holds).
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
    """
    import time

    start = time.perf_counter()
    pipeline = Pipeline(config).fit_store(store)
    fit_seconds = time.perf_counter() - start
    version = registry.publish(
        pipeline, metrics=metrics, data=pipeline.snapshots, notes=notes, promote=promote
    )
    return TrainResult(
        pipeline=pipeline,
        version=version,
        promoted=registry.current_version() == version,
        fit_seconds=fit_seconds,
    )
