r"""Many ranked lists into one, each item keeping the set of lists that proposed it.

With ``rrf`` (reciprocal rank fusion) an item scores

.. math::

    s(i) = \sum_{r \,:\, i \in L_r} \frac{w_r}{k_{rrf} + \mathrm{rank}_r(i)}

over the lists ``r`` that hold it (rank 1 = best); ``score`` sums
:math:`w_r s_r(i)`; ``priority`` keeps the first list's order and lets the
next fill the gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

#: Whether :func:`_merge` runs the compiled kernel (:mod:`.merge_kernels`, the same bits);
#: ``False``: the numpy version below alone (what the kernel is tested against).
COMPILED = True


class MergeRule(NamedTuple):
    """How :func:`merge_lists` merges: results per row, method, list weights, RRF offset."""

    k: int
    method: str
    weights: Sequence[float] | None = None
    rrf_k: float = 60.0


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
    return _merge(ids, scores, sources, MergeRule(k, method, weights, rrf_k))[:4]


def merge_with_ranks(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    sources: Sequence[np.ndarray],
    **options: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`merge_lists` (the same ``options``), and where each merged item stood in each list.

    The fifth value holds, per list, ``(rank, score)``: ``(n, k)`` arrays of
    the item's 1-based rank in that list (0: not in it) and its score there
    (float64, NaN: not in it), read from the merge's own entries (a ranked
    pool needs them, and looking each item up again in every list cost a
    request more than the merge).
    """
    return _merge(ids, scores, sources, MergeRule(**options), provenance=True)


def _merge(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    sources: Sequence[np.ndarray],
    rule: MergeRule,
    provenance: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    k, method, weights, rrf_k = int(rule.k), rule.method, rule.weights, float(rule.rrf_k)
    n = ids[0].shape[0] if ids else 0
    if ids and COMPILED:
        from recgraph.pipeline.merge_kernels import merge_rows  # numba: not on import

        merged = merge_rows((ids, scores, sources), rule, provenance)
        if merged is not None:
            return merged
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_sources = np.zeros((n, k), dtype=np.int64)
    out_origin = np.zeros((n, k), dtype=np.int64)
    weights = [1.0] * len(ids) if weights is None else list(weights)
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("row", "item", "rank", "list", "raw", "bits", "gain")
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
    where = [(np.zeros((n, k), dtype=np.int64), np.full((n, k), np.nan)) for _ in ids if provenance]
    if not parts["row"] or not sum(len(r) for r in parts["row"]):
        return out_ids, out_scores, out_sources, out_origin, where
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
    if provenance:
        slot_of = np.full(len(groups), -1, dtype=np.int64)
        slot_of[chosen] = slots_out
        slot = slot_of[inverse]
        placed = slot >= 0
        for j, (rank_out, score_out) in enumerate(where):
            mine = placed & (lst == j)
            rank_out[row[mine], slot[mine]] = rank[mine] + 1
            score_out[row[mine], slot[mine]] = raw[mine]
    return out_ids, out_scores, out_sources, out_origin, where


def warm_up() -> None:
    """Compile (or read from numba's cache) the merge kernel for the types a request passes
    (a question calls this when its models are attached, so no request compiles it)."""
    ids = [np.array([[1, -1]], np.int64), np.array([[1, 2]], np.int64)]
    scores = [np.array([[0.5, 0.0]], np.float32), np.array([[0.2, 0.1]], np.float32)]
    sources = [np.array([[1, 0]], np.int64), np.array([[2, 2]], np.int64)]
    for method in ("rrf", "priority"):
        merge_with_ranks(ids, scores, sources, k=2, method=method, weights=[1.0, 1.0], rrf_k=60.0)
