"""The evaluation runner: fit each model on train, rank everything, score test.

The protocol follows LensKit's full-ranking evaluation, made leak-proof:

- **Candidates** are every target seen in train (either end for friendships),
  minus what the user already has in train (any kind, dislikes included) and,
  on account graphs, the user itself. Models get them as
  ``recommend(..., candidates=...)``; whatever a model returns outside them is
  blanked before scoring (and counted as ``invalid_recommendations``), so
  nothing outside the candidate set can ever count as a hit.
- **Targets** are the positive test rows (dislikes are not targets). A test
  row is dropped before scoring, and counted by reason, when its user never
  occurs in train, its target is no candidate (never in train, the user
  itself, or already the user's in train), or it repeats a pair. For
  friendships a test edge is a target for both of its ends.
- **Users** with at least one target are scored, in batches, so that neither
  users x items nor nodes x nodes is ever held densely here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.item_features import ItemFeatures
from recgraph.errors import InputError
from recgraph.evaluation.metrics import (
    METRICS,
    CoverageCounter,
    first_occurrences,
    in_rows,
    metric_key,
    metrics_from_hits,
)
from recgraph.evaluation.report import DROP_REASONS, EvaluationReport, ModelResult
from recgraph.progress import progress_bar
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.registry import create_retriever

DEFAULT_KS = (10, 20, 50)
#: Users per recommend call: large enough to amortise, small enough that the
#: ``(batch, k)`` arrays stay tiny (models bound their own score blocks).
DEFAULT_BATCH_USERS = 1024


@dataclass(frozen=True)
class EvaluationTargets:
    """What every model is scored against, computed once per (train, test).

    Attributes
    ----------
    truth
        ``(n_users, n_items)`` CSR of the train id maps; nonzero = a target.
    users
        Users with at least one target, ascending.
    candidates
        Boolean mask of the targets seen in train (before per-user exclusions).
    dropped_by_reason
        Test rows not scored, by reason (keys of ``DROP_REASONS``, in order).
    """

    truth: sp.csr_matrix
    users: np.ndarray
    candidates: np.ndarray
    dropped_by_reason: dict[str, int]
    n_test_rows: int


def align_to_train(test: Interactions, train: Interactions) -> Interactions:
    """``test`` indexed with ``train``'s id maps (ids unknown to train appended).

    Splits already share maps and pass through untouched; a test set read on
    its own is re-indexed by external id, so index ``i`` means the same node.
    """
    if test.graph_kind != train.graph_kind:
        raise ValueError(f"train holds {train.graph_kind} but test holds {test.graph_kind}")
    return test.reindexed_onto(train.users, train.items)


def _lookup(mask: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``mask[indices]``, False for indices past the end of ``mask``."""
    out = np.zeros(len(indices), dtype=bool)
    inside = indices < len(mask)
    out[inside] = mask[indices[inside]]
    return out


def _pairs_in(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each ``(rows[i], cols[i])`` is a nonzero of ``matrix`` (all in range)."""
    return in_rows(cols[:, None], matrix[rows])[:, 0]


def evaluation_targets(train: Interactions, test: Interactions) -> EvaluationTargets:
    """Candidates, per-user test targets and the dropped-row count, by reason.

    ``test`` must use ``train``'s id maps or extend them (see
    :func:`align_to_train`). Each dropped row is counted under the first
    reason that applies, in the order of ``DROP_REASONS``.
    """
    test = align_to_train(test, train)
    n_users, n_items = train.n_users, train.n_items
    src, dst = test.src, test.dst
    candidates = train.active_targets()
    keep = np.ones(len(test), dtype=bool)
    dropped: dict[str, int] = {}

    def drop(reason: str, rows: np.ndarray) -> None:
        rows = rows & keep
        dropped[reason] = int(rows.sum())
        keep[rows] = False

    drop("dislike", test.kind == Kind.DISLIKE)
    drop("user_not_in_train", ~_lookup(train.active_users(), src))
    drop("target_not_in_train", ~_lookup(candidates, dst))
    drop("self_loop", (src == dst) if test.one_sided else np.zeros(len(test), dtype=bool))
    in_train = np.zeros(len(test), dtype=bool)
    in_train[keep] = _pairs_in(train.seen(), src[keep], dst[keep])
    drop("already_in_train", in_train)
    repeat = np.zeros(len(test), dtype=bool)
    kept_rows = np.flatnonzero(keep)
    _, first = np.unique(test.pair_keys()[kept_rows], return_index=True)
    repeat[kept_rows] = True
    repeat[kept_rows[first]] = False
    drop("duplicate", repeat)
    assert tuple(dropped) == DROP_REASONS

    t_src, t_dst = src[keep], dst[keep]
    if test.one_sided and not test.directed:
        t_src, t_dst = np.r_[t_src, t_dst], np.r_[t_dst, t_src]
    truth = sp.csr_matrix(
        (np.ones(len(t_src), dtype=np.float32), (t_src, t_dst)), shape=(n_users, n_items)
    )
    truth.sum_duplicates()
    truth.data[:] = 1.0
    truth.sort_indices()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    return EvaluationTargets(
        truth=truth,
        users=users,
        candidates=candidates,
        dropped_by_reason=dropped,
        n_test_rows=len(test),
    )


def _allowed_only(
    ids: np.ndarray, users: np.ndarray, train: Interactions, candidates: np.ndarray
) -> np.ndarray:
    """``ids`` with everything a model must not return blanked to ``-1``.

    Blanked: ids out of range, not a candidate, seen in train, the user
    itself on account graphs, and repeats within a row.
    """
    ids = np.asarray(ids, dtype=np.int64)
    valid = (ids >= 0) & (ids < train.n_items)
    safe = np.where(valid, ids, 0)
    valid &= candidates[safe]
    if train.one_sided:
        valid &= ids != users[:, None]
    valid &= ~in_rows(safe, train.seen()[users])
    return first_occurrences(np.where(valid, ids, -1))


def _as_models(
    models: Retriever | str | Sequence[Retriever | str],
    params: Mapping[str, Mapping[str, Any]] | None,
) -> list[Retriever]:
    if isinstance(models, Retriever | str):
        models = [models]
    params = params or {}
    built = []
    for model in models:
        if isinstance(model, str):
            model = create_retriever(model, params.get(model))
        built.append(model)
    if not built:
        raise ValueError("no model to evaluate")
    return built


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    return ks


def evaluate(
    models: Retriever | str | Sequence[Retriever | str],
    train: Interactions,
    test: Interactions,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = DEFAULT_BATCH_USERS,
    progress: bool = True,
    item_features: ItemFeatures | None = None,
) -> EvaluationReport:
    """Fit each model on ``train`` and score its full ranking against ``test``.

    Parameters
    ----------
    models
        Retrievers (unfitted or not; each is fitted on ``train``) or names
        from the registry.
    train, test
        The two sides of a split; ``test`` shares or extends ``train``'s id
        maps, or is re-indexed by external id.
    ks
        Cut-offs; every metric is reported at each.
    params
        Per-model parameters for models given by name: ``{"popular":
        {"weight": "value"}}``.
    batch_size
        Users per ``recommend`` call.
    progress
        Show a progress bar per model (on a terminal, see
        :mod:`recgraph.progress`).
    item_features
        Titles, genres and creation times of the items, for the models that
        read them (``Retriever.fit(train, item_features=...)``).

    Returns
    -------
    EvaluationReport
        Mean metrics over the users with test targets, timings, and the
        dropped test rows by reason.
    """
    ks = _check_ks(ks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    retrievers = _as_models(models, params)
    targets = evaluation_targets(train, test)
    users = targets.users
    report = EvaluationReport(
        kind=train.graph_kind,
        ks=ks,
        n_train_rows=len(train),
        n_test_rows=targets.n_test_rows,
        n_candidates=int(targets.candidates.sum()),
        dropped_by_reason=targets.dropped_by_reason,
        users=users,
        n_test_targets=int(targets.truth.nnz),
    )
    if not len(users):
        raise InputError(
            f"no test rows left to score: {report.dropped_summary()}; "
            "does the test file belong to this training file?"
        )
    for model in retrievers:
        report.results.append(
            _evaluate_one(model, train, targets, ks, batch_size, progress, item_features)
        )
    return report


def _evaluate_one(
    model: Retriever,
    train: Interactions,
    targets: EvaluationTargets,
    ks: tuple[int, ...],
    batch_size: int,
    progress: bool,
    item_features: ItemFeatures | None = None,
) -> ModelResult:
    start = time.perf_counter()
    model.fit(train, item_features=item_features)
    fit_seconds = time.perf_counter() - start

    users, truth, k_max = targets.users, targets.truth, max(ks)
    coverage = CoverageCounter(ks, int(targets.candidates.sum()))
    per_user: dict[str, np.ndarray] = {}
    recommend_seconds = metric_seconds = 0.0
    invalid = 0
    bar = progress_bar(f"evaluate {model.name}", len(users), "users") if progress else None
    with bar or nullcontext(lambda n=1: None) as advance:
        for begin in range(0, len(users), batch_size):
            batch = users[begin : begin + batch_size]
            start = time.perf_counter()
            ids, _ = model.recommend(batch, k=k_max, candidates=targets.candidates)
            recommend_seconds += time.perf_counter() - start
            if np.shape(ids) != (len(batch), k_max):
                raise ValueError(
                    f"model {model.name!r} returned ids of shape {np.shape(ids)} "
                    f"for {len(batch)} users at k={k_max}"
                )
            start = time.perf_counter()
            allowed = _allowed_only(ids, batch, train, targets.candidates)
            invalid += int((np.asarray(ids) >= 0).sum() - (allowed >= 0).sum())
            truth_rows = truth[batch]
            values = metrics_from_hits(in_rows(allowed, truth_rows), np.diff(truth_rows.indptr), ks)
            for key, value in values.items():
                per_user.setdefault(key, np.empty(len(users)))[begin : begin + len(batch)] = value
            coverage.add(allowed)
            metric_seconds += time.perf_counter() - start
            advance(len(batch))

    means = {key: float(np.mean(value)) for key, value in per_user.items()}
    means.update(coverage.coverage())
    metrics = {key: means[key] for key in _metric_order(ks)}
    return ModelResult(
        model=model.name,
        params=model.config.model_dump(mode="json", exclude_defaults=True),
        config=model.config.model_dump(mode="json"),
        metrics=metrics,
        fit_seconds=fit_seconds,
        recommend_seconds=recommend_seconds,
        metric_seconds=metric_seconds,
        invalid_recommendations=invalid,
        per_user=per_user,
    )


def _metric_order(ks: tuple[int, ...]) -> list[str]:
    return [metric_key(metric, k) for k in ks for metric in METRICS]
