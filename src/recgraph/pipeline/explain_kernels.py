"""Compiled: what a ranked feed's reasons count ("liked by 5 people with tastes like yours").

:func:`~recgraph.pipeline.explain._feed_reasons` counts, for a request, the
users whose likes overlap the user's, then how many of the closest liked each
result. In numpy each was a dozen calls on small arrays (expanding row ranges,
a table or a sort, a search, a bincount) whose fixed cost was most of the
reason's. :func:`overlaps` and :func:`similar_counts` are those counts as
loops: the same users, ascending, and the same integers; :func:`named_common`
is a follow graph's ("followed by @a, @b and 3 more people you follow").

Compiled as every kernel is (:func:`recgraph.compiled.kernel`); imported inside
the functions that run them, so importing the pipeline loads no numba.
"""

from __future__ import annotations

import numpy as np

from recgraph.compiled import kernel
from recgraph.data.kernel_inputs import KERNEL_INDICES, frozen
from recgraph.data.row_kernels import position


@kernel
def overlaps(indptr, indices, by_indptr, by_indices, user, n_users, dense_count):
    """The users other than ``user`` who liked any of ``user``'s items (``liked`` as
    ``indptr, indices``; ``liked_by_item`` as ``by_indptr, by_indices``), ascending, and how
    many of them each liked: a table over every user when there are at most
    ``dense_count`` users per entry read, else a sort of the entries."""
    lo, hi = indptr[user], indptr[user + 1]
    total = 0
    for k in range(lo, hi):
        item = indices[k]
        total += by_indptr[item + 1] - by_indptr[item]
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n_users <= dense_count * total:
        table = np.zeros(n_users, dtype=np.int64)
        for k in range(lo, hi):
            item = indices[k]
            for e in range(by_indptr[item], by_indptr[item + 1]):
                table[by_indices[e]] += 1
        table[user] = 0
        n_found = 0
        for other in range(n_users):
            if table[other]:
                n_found += 1
        users = np.empty(n_found, dtype=np.int64)
        counts = np.empty(n_found, dtype=np.int64)
        at = 0
        for other in range(n_users):
            if table[other]:
                users[at] = other
                counts[at] = table[other]
                at += 1
        return users, counts
    others = np.empty(total, dtype=np.int64)
    at = 0
    for k in range(lo, hi):
        item = indices[k]
        for e in range(by_indptr[item], by_indptr[item + 1]):
            others[at] = by_indices[e]
            at += 1
    others.sort()
    users = np.empty(total, dtype=np.int64)
    counts = np.zeros(total, dtype=np.int64)
    n_found = 0
    for k in range(total):
        if others[k] == user:
            continue
        if n_found and users[n_found - 1] == others[k]:
            counts[n_found - 1] += 1
        else:
            users[n_found] = others[k]
            counts[n_found] = 1
            n_found += 1
    return users[:n_found], counts[:n_found]


@kernel
def similar_counts(by_indptr, by_indices, items, similar):
    """For each of ``items``, how many of the users in ``similar`` (ascending) liked it."""
    out = np.zeros(len(items), dtype=np.int64)
    for j in range(len(items)):
        item = items[j]
        for e in range(by_indptr[item], by_indptr[item + 1]):
            if position(similar, by_indices[e]) >= 0:
                out[j] += 1
    return out


_WARM: list[bool] = []


def warm_up() -> None:
    """Run the three kernels once for each index dtype (read-only arrays, as a request
    passes them), so a loaded model's first request finds them compiled. Once per process."""
    if _WARM:
        return
    for index in KERNEL_INDICES:
        indptr = frozen(np.array([0, 1, 2], index))
        indices = frozen(np.array([1, 0], index))
        for dense_count in (8, 0):
            overlaps(indptr, indices, indptr, indices, 0, 2, dense_count)
        similar_counts(indptr, indices, frozen(np.array([0, 1])), frozen(np.array([1])))
        named_common(indptr, indices, indices, frozen(np.array([0, 1])), 2, 2)
    _WARM.append(True)


@kernel
def named_common(indptr, indices, followed, accounts, top, min_common):
    """For each of ``accounts``, its followers (row of ``indptr, indices``) that are in
    ``followed`` (ascending), as a reason names them: how many each has (``-1`` for all
    when an account is outside the rows: nothing read), and, for each account with at
    least ``min_common``, its first ``top`` of them (stored order), all laid end to end,
    with how many each named account names (0 for the others). Counted and cut in one
    pass."""
    n_rows = len(indptr) - 1
    counts = np.zeros(len(accounts), dtype=np.int64)
    cut = np.zeros(len(accounts), dtype=np.int64)
    for j in range(len(accounts)):
        if accounts[j] < 0 or accounts[j] >= n_rows:
            counts[:] = -1
            return np.zeros(0, dtype=np.int64), counts, cut
    out = np.empty(len(accounts) * max(top, 0), dtype=np.int64)
    at = 0
    for j in range(len(accounts)):
        account = accounts[j]
        n = 0
        for e in range(indptr[account], indptr[account + 1]):
            if position(followed, indices[e]) >= 0:
                if n < top:
                    out[at + n] = indices[e]
                n += 1
        counts[j] = n
        if n >= min_common:
            cut[j] = min(n, top)
            at += cut[j]
    return out[:at], counts, cut
