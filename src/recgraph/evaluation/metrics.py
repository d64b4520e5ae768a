r"""Top-k metrics over full rankings, per user, vectorised.

Inputs are what a retriever returns and what the test set holds:

- ``recommended``: an integer array ``(n_users, k_max)``, best first, with
  ``-1`` in slots that hold nothing;
- ``truth``: a CSR matrix with one row per user of ``recommended``, whose
  nonzero columns are that user's test targets (binary relevance).

For a user with targets :math:`T` and hits :math:`h_r \in \{0, 1\}` at ranks
:math:`r = 1..k`:

- Recall@k :math:`= \sum_{r \le k} h_r / |T|`
- nDCG@k :math:`= \mathrm{DCG}/\mathrm{IDCG}` with
  :math:`\mathrm{DCG} = \sum_{r \le k} h_r / \log_2(r + 1)` and the ideal
  :math:`\mathrm{IDCG} = \sum_{r \le \min(k, |T|)} 1 / \log_2(r + 1)`
- HitRate@k :math:`= 1` if any :math:`h_r = 1` for :math:`r \le k`
- MRR@k :math:`= 1 / r^*`, the first hit's rank, or 0 without a hit in the top k
- MAP@k: AP@k :math:`= \sum_{r \le k} h_r \cdot P@r / \min(k, |T|)`, the
  mean of precision at each hit, over the most hits possible
- catalogue coverage@k: distinct targets in anybody's top k over the number
  of candidate targets (one figure for all users, see :class:`CoverageCounter`)

A user without targets has no defined value (NaN); the harness only scores
users with at least one target.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.data.sorted_keys import in_sorted

#: Per-user metrics, in report order; ``coverage`` is catalogue-wide.
USER_METRICS = ("recall", "ndcg", "hit", "mrr", "map")
METRICS = (*USER_METRICS, "coverage")


def metric_key(metric: str, k: int) -> str:
    """The report's name of a metric at a cut-off: ``recall@20``."""
    return f"{metric}@{k}"


def in_rows(recommended: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n_users, k_max)``: is ``recommended[u, r]`` a nonzero column of ``rows[u]``.

    Done by one sorted lookup of ``row * n_cols + col`` keys, so it costs
    ``O((nnz + n_users k) log nnz)`` and never builds a dense row.
    """
    recommended = np.asarray(recommended, dtype=np.int64)
    n_rows, n_cols = rows.shape
    if recommended.ndim != 2 or recommended.shape[0] != n_rows:
        raise ValueError(
            f"recommended has shape {recommended.shape}; expected ({n_rows}, k) like the truth rows"
        )
    rows = sp.csr_matrix(rows)
    rows.eliminate_zeros()
    row_of_entry = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(rows.indptr))
    keys = np.sort(row_of_entry * n_cols + rows.indices.astype(np.int64))
    valid = (recommended >= 0) & (recommended < n_cols)
    query = np.arange(n_rows, dtype=np.int64)[:, None] * n_cols + np.where(valid, recommended, 0)
    return valid & in_sorted(keys, query)


def capped_recall(recommended: np.ndarray, truth_rows: sp.spmatrix, k: int) -> float:
    """Mean over users with targets of ``hits@k / min(n_targets, k)``: recall that a perfect
    list of ``k`` reaches, as the walk retrievers are compared with exact PPR."""
    truth_rows = sp.csr_matrix(truth_rows)
    truth_rows.eliminate_zeros()
    hits = in_rows(first_occurrences(np.asarray(recommended)[:, :k]), truth_rows).sum(axis=1)
    targets = np.diff(truth_rows.indptr)
    has = targets > 0
    return float(np.mean(hits[has] / np.minimum(targets[has], k)))


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def metrics_from_hits(hits: np.ndarray, n_targets: np.ndarray, ks: tuple[int, ...] | list[int]):
    """Per-user metrics from a hit matrix ``(n_users, k_max)`` and target counts.

    Returns a dict ``"recall@10" -> float64 array (n_users,)`` for every
    metric of :data:`USER_METRICS` and every ``k`` in ``ks``.
    """
    hits = np.asarray(hits, dtype=bool)
    n_users, k_max = hits.shape
    n_targets = np.asarray(n_targets, dtype=np.float64)
    if n_targets.shape != (n_users,):
        raise ValueError(f"n_targets has shape {n_targets.shape}, expected ({n_users},)")
    for k in ks:
        if not 1 <= k <= k_max:
            raise ValueError(f"k={k} needs at least k recommendations per user (have {k_max})")
    has_targets = n_targets > 0
    safe_targets = np.where(has_targets, n_targets, 1.0)
    undefined = np.where(has_targets, 0.0, np.nan)  # NaN for users without targets

    discount = _discounts(k_max)
    cumulative_hits = np.cumsum(hits, axis=1)
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    gain = hits * discount
    cumulative_dcg = np.cumsum(gain, axis=1)
    ideal_dcg = np.r_[0.0, np.cumsum(discount)]  # ideal_dcg[m]: m hits at the top
    precision_at_hits = np.where(hits, cumulative_hits / ranks, 0.0)
    cumulative_precision = np.cumsum(precision_at_hits, axis=1)
    any_hit = hits.any(axis=1)
    first_hit_rank = np.where(any_hit, hits.argmax(axis=1) + 1, k_max + 1)

    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits_k = cumulative_hits[:, k - 1].astype(np.float64)
        best_possible = np.minimum(k, safe_targets)
        ideal = ideal_dcg[best_possible.astype(np.int64)]
        out[metric_key("recall", k)] = hits_k / safe_targets + undefined
        out[metric_key("ndcg", k)] = cumulative_dcg[:, k - 1] / ideal + undefined
        out[metric_key("hit", k)] = (hits_k > 0).astype(np.float64) + undefined
        out[metric_key("mrr", k)] = (
            np.where(first_hit_rank <= k, 1.0 / first_hit_rank, 0.0) + undefined
        )
        out[metric_key("map", k)] = cumulative_precision[:, k - 1] / best_possible + undefined
    return out


def user_metrics(
    recommended: np.ndarray, truth: sp.spmatrix, ks: tuple[int, ...] | list[int]
) -> dict[str, np.ndarray]:
    """Per-user Recall, nDCG, HitRate, MRR and MAP at each ``k``.

    Parameters
    ----------
    recommended
        ``(n_users, k_max)`` target ids, best first, ``-1`` for empty slots.
        An id that repeats in a row counts once (its first place).
    truth
        ``(n_users, n_targets)`` sparse; nonzero = a test target of the user.
    ks
        Cut-offs, each at most ``k_max``.

    Returns
    -------
    dict
        ``"recall@10"`` and so on to float64 arrays of length ``n_users``;
        NaN for users without targets.
    """
    truth = sp.csr_matrix(truth)
    truth.eliminate_zeros()
    recommended = first_occurrences(recommended)
    hits = in_rows(recommended, truth)
    return metrics_from_hits(hits, np.diff(truth.indptr), ks)


def first_occurrences(recommended: np.ndarray) -> np.ndarray:
    """``recommended`` with every repeat of an id in a row replaced by ``-1``.

    A list that names one target twice must not score its hit twice.
    """
    recommended = np.asarray(recommended, dtype=np.int64)
    if recommended.size == 0:
        return recommended
    order = np.argsort(recommended, axis=1, kind="stable")
    ordered = np.take_along_axis(recommended, order, axis=1)
    repeat_sorted = np.zeros(recommended.shape, dtype=bool)
    repeat_sorted[:, 1:] = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if not repeat_sorted.any():
        return recommended
    repeat = np.zeros(recommended.shape, dtype=bool)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    return np.where(repeat, -1, recommended)


def catalogue_coverage(recommended: np.ndarray, k: int, n_candidates: int) -> float:
    """Distinct targets in the users' top ``k`` over the ``n_candidates`` that could appear."""
    counter = CoverageCounter((k,), n_candidates)
    counter.add(recommended)
    return counter.coverage()[metric_key("coverage", k)]


class CoverageCounter:
    """Catalogue coverage@k accumulated over user batches.

    Keeps one set of recommended ids per ``k`` (as sorted unique arrays, so
    memory follows what was recommended, not the catalogue size).
    """

    def __init__(self, ks: tuple[int, ...] | list[int], n_candidates: int) -> None:
        self.ks = tuple(ks)
        self.n_candidates = int(n_candidates)
        self._seen = {k: np.zeros(0, dtype=np.int64) for k in self.ks}

    def add(self, recommended: np.ndarray) -> None:
        recommended = np.asarray(recommended, dtype=np.int64)
        for k in self.ks:
            top = recommended[:, :k]
            self._seen[k] = np.union1d(self._seen[k], top[top >= 0])

    def coverage(self) -> dict[str, float]:
        return {
            metric_key("coverage", k): (
                len(self._seen[k]) / self.n_candidates if self.n_candidates else 0.0
            )
            for k in self.ks
        }
