"""The merge of :mod:`~recgraph.pipeline.merge` as one compiled loop per row.

A request merges two or three lists of a few hundred entries: numpy's
version (a dozen whole-batch sorts, ``unique``, ``bitwise_or.at``, fancy
assignments) cost ~0.25 CPU ms a request, mostly per-call overhead. Here
each row's entries are grouped by item with one stable sort and everything
else is a scan, in the order numpy's version reads them, so the results are
the same bits:

- entries are read list by list, each list's in rank order (numpy's entry
  order restricted to one row);
- a group's value is ``0.0`` plus its gains in that order (``bincount``);
- the entry that places a group is its first with the largest gain, or with
  ``priority`` its first (lowest list, then best rank), as the ``lexsort``
  picks it;
- groups are ordered by value (largest first), ties by item; with
  ``priority`` by list, rank, item.

A NaN score or gain (numpy sorts those last, a comparison here would not)
makes the kernel decline: :func:`merge_rows` then returns ``None`` and the
numpy version merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recgraph.compiled import kernel

RRF, SCORE, PLAIN = 0, 1, 2  # how an entry's gain is read (PLAIN: its raw score)


@kernel
def merge_kernel(ids, scores, sources, list_of, rank_of, weights, gain_kind, priority, rrf_k, k,
                 out_ids, out_scores, out_sources, out_origin, where_rank, where_score):  # fmt: skip
    """Merge each row of ``ids`` (the lists side by side; ``list_of`` / ``rank_of``: each
    column's list and 0-based rank) into the ``out_*`` arrays (pre-filled: ``-1``,
    ``-inf``, 0, 0) and ``where_*`` (``(lists, n, k)``: 0, NaN). False on a NaN."""
    n, width = ids.shape
    # per entry of a row, and per group (one item) of it: integer and float scratch rows
    ints = np.empty((8, width), np.int64)
    item, entry_list, entry_rank, bits = ints[0], ints[1], ints[2], ints[3]
    group_item, group_bits, group_first, group_of = ints[4], ints[5], ints[6], ints[7]
    floats = np.empty((4, width), np.float64)
    raw, gain, group_value, sort_key = floats[0], floats[1], floats[2], floats[3]
    for r in range(n):
        m = 0
        for c in range(width):
            if ids[r, c] < 0:
                continue
            j = list_of[c]
            item[m] = ids[r, c]
            entry_list[m] = j
            entry_rank[m] = rank_of[c]
            raw[m] = scores[r, c]
            if gain_kind == RRF:
                gain[m] = weights[j] / (rrf_k + np.float64(rank_of[c]) + 1.0)
            elif gain_kind == SCORE:
                gain[m] = weights[j] * raw[m]
            else:
                gain[m] = raw[m]
            if np.isnan(gain[m]) or np.isnan(raw[m]):
                return False
            bits[m] = sources[r, c]
            m += 1
        if m == 0:
            continue
        by_item = np.argsort(item[:m], kind="mergesort")  # stable: entry order within an item
        groups = 0
        for p in range(m):
            e = by_item[p]
            if p == 0 or item[e] != item[by_item[p - 1]]:
                group_item[groups] = item[e]
                group_value[groups] = 0.0
                group_bits[groups] = 0
                group_first[groups] = e
                groups += 1
            g = groups - 1
            group_of[e] = g
            group_value[g] += gain[e]
            group_bits[g] |= bits[e]
            if not priority and gain[e] > gain[group_first[g]]:
                group_first[g] = e
        # groups are in item order: a stable sort on the rest of the key keeps it for ties
        if priority:
            top_rank = 0
            for g in range(groups):
                top_rank = max(top_rank, entry_rank[group_first[g]])
            for g in range(groups):
                e = group_first[g]
                sort_key[g] = np.float64(entry_list[e] * (top_rank + 1) + entry_rank[e])
                group_value[g] = raw[e]
        else:
            for g in range(groups):
                if np.isnan(group_value[g]):  # inf - inf: numpy sorts it last
                    return False
                sort_key[g] = -group_value[g]
        order = np.argsort(sort_key[:groups], kind="mergesort")
        shown = min(k, groups)
        slot_of_group = np.full(groups, -1, np.int64)
        for s in range(shown):
            g = order[s]
            slot_of_group[g] = s
            out_ids[r, s] = group_item[g]
            out_scores[r, s] = group_value[g]
            out_sources[r, s] = group_bits[g]
            out_origin[r, s] = entry_list[group_first[g]]
        if where_rank.shape[0]:
            for e in range(m):
                s = slot_of_group[group_of[e]]
                if s >= 0:
                    where_rank[entry_list[e], r, s] = entry_rank[e] + 1
                    where_score[entry_list[e], r, s] = raw[e]
    return True


def merge_rows(
    lists: tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]],
    rule: Any,
    provenance: bool,
) -> tuple | None:
    """:func:`~recgraph.pipeline.merge._merge`'s results from :func:`merge_kernel`, or
    ``None`` where the kernel declines (see the module docstring). ``lists``: the lists'
    ``(ids, scores, sources)``; ``rule``: a :class:`~recgraph.pipeline.merge.MergeRule`."""
    ids, scores, sources = lists
    k, method, rrf_k = int(rule.k), rule.method, float(rule.rrf_k)
    weights = [1.0] * len(ids) if rule.weights is None else rule.weights
    if len(weights) != len(ids):  # the kernel reads weights[list] unchecked
        raise ValueError(f"{len(weights)} merge weights for {len(ids)} lists")
    n, lists = ids[0].shape[0], len(ids)
    if method == "rrf" and lists > 1:
        gain_kind = RRF
    elif method == "score":
        gain_kind = SCORE
    else:
        gain_kind = PLAIN
    widths = [a.shape[1] for a in ids]
    list_of = np.repeat(np.arange(lists, dtype=np.int64), widths)
    rank_of = np.concatenate([np.arange(w, dtype=np.int64) for w in widths])
    all_ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids], axis=1)
    all_scores = np.concatenate([np.asarray(a, dtype=np.float64) for a in scores], axis=1)
    all_sources = np.concatenate([np.asarray(a, dtype=np.int64) for a in sources], axis=1)
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_sources = np.zeros((n, k), dtype=np.int64)
    out_origin = np.zeros((n, k), dtype=np.int64)
    where_rank = np.zeros((lists if provenance else 0, n, k), dtype=np.int64)
    where_score = np.full((lists if provenance else 0, n, k), np.nan)
    done = merge_kernel(
        all_ids, all_scores, all_sources, list_of, rank_of,
        np.asarray(weights, dtype=np.float64), gain_kind, method == "priority", rrf_k,
        k, out_ids, out_scores, out_sources, out_origin, where_rank, where_score,
    )  # fmt: skip
    if not done:
        return None
    where = [(where_rank[j], where_score[j]) for j in range(where_rank.shape[0])]
    return out_ids, out_scores, out_sources, out_origin, where


@kernel
def pool_ranks(full):
    """Per row of ``full`` (``-inf`` where the pool has no candidate), each entry's 1-based
    rank by value, largest first, ties to the lower column: ``argsort(-full, stable)``
    inverted, as :func:`~recgraph.pipeline.ranking._pool_ranks` computes it with numpy (a
    stable order has one answer). ``None`` on a NaN (numpy sorts it last, a comparison
    here would not): numpy then ranks."""
    n, width = full.shape
    ranks = np.empty((n, width), np.int64)
    negated = np.empty(width, np.float64)
    for r in range(n):
        for c in range(width):
            if np.isnan(full[r, c]):
                return None
            negated[c] = -full[r, c]
        order = np.argsort(negated, kind="mergesort")
        for p in range(width):
            ranks[r, order[p]] = p + 1
    return ranks


def warm_up_pool_ranks() -> None:
    """Compile (or read from numba's cache) :func:`pool_ranks` for the rows a request ranks."""
    pool_ranks(np.zeros((1, 3)))
