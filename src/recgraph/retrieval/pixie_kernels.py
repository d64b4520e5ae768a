r"""Compiled per-request kernels of Pixie (:mod:`recgraph.retrieval.pixie`).

Beside :mod:`~recgraph.retrieval.walk_kernels` (the graph tuple, the scratch
conventions, PPR and SALSA): the walks draw from a splitmix64 stream seeded
by ``(seed, user)``, so a user's walk is the same on every call and thread.
A walk step from item ``i`` picks a user ``u`` uniformly among the
:math:`d_{in}(i)` who have it (trained edges then overlay edges, no sample),
then an item uniformly among ``u``'s :math:`d_{out}(u)`.

**Cached with their callees.** These kernels call jitted functions of
:mod:`~recgraph.retrieval.walk_kernels` (the graph tuple's helpers, the radix
sort, :func:`~recgraph.retrieval.walk_kernels.listed_sums`), whose code numba
compiles into theirs. numba's on-disk cache stamps an entry with the decorated
function's own file only, so a cached Pixie kernel would go on running the old
code of a changed ``walk_kernels.py``; one module for both would pass 900
lines. So this file's kernels are cached through numba's own cache locators
with ``walk_kernels.py``'s digest added to their stamp
(:class:`_StampedWithCallees`): a change in either file makes the entry stale
and the kernel compiles again, once. The digest is
:data:`~recgraph.retrieval.walk_kernels.SOURCE_DIGEST`, taken when that module
was imported: the source its functions in this process compile from, not the
file as it is on disk later. A loaded Pixie model then reads them (0.02 CPU s)
instead of compiling them in each process (3.3-3.9 CPU s on the 2-core
development machine). The locators are numba's internals: where they are not
as this file expects (another numba), or ``NUMBA_CACHE_LOCATOR_CLASSES`` names
the locators, Pixie's kernels are compiled uncached in each process, as before.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from recgraph.compiled import kernel, patch_locators
from recgraph.retrieval import walk_kernels
from recgraph.retrieval.walk_kernels import (
    _LISTED,
    _SEEN,
    _grown,
    _overlay_span,
    _side,
    graph_tuple,
    listed_sums,
    sort_keys,
)
from recgraph.retrieval.walk_kernels import warm_up as warm_up_walks

_THIS_FILE = os.path.abspath(__file__)
#: the modules whose functions this file's kernels call (compiled into them)
CALLEE_MODULES = (walk_kernels,)
#: their sources' digests as imported (the code this process compiles), frozen with this module
_CALLEES_DIGEST = "".join(module.SOURCE_DIGEST for module in CALLEE_MODULES).encode()


def callees_digest() -> bytes:
    """The digest of :data:`CALLEE_MODULES`' sources as they were imported."""
    return _CALLEES_DIGEST


class _StampedWithCallees:
    """Mixed into each of numba's cache locators, for this file's kernels only: the source
    stamp is this file's and :func:`callees_digest`, so an entry cached before a change in
    ``walk_kernels.py`` is stale (numba compiles the kernel again and replaces it)."""

    #: marks the classes made here, so that a second import adds none
    callees_stamped = True

    def get_source_stamp(self):
        return (super().get_source_stamp(), callees_digest())

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) != _THIS_FILE:
            return None  # every other function: numba's own locators, unchanged
        return super().from_function(py_func, py_file)


#: whether this file's kernels are cached on disk (with :func:`callees_digest` in the stamp)
#: (a callees-stamped copy of each numba locator put first in numba's list, once a process)
CACHED = patch_locators(_StampedWithCallees, "CalleesStamped", "callees_stamped", in_place=False)
#: this file's kernels: cached as every kernel is, or compiled per process (never a cache
#: entry that a changed ``walk_kernels.py`` would leave stale)
pixie_kernel = kernel if CACHED else njit(nogil=True)


@pixie_kernel
def _mix(z):
    """splitmix64's finaliser: a well-mixed 64-bit word of ``z``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@pixie_kernel
def _next(state):
    """``(new state, a uniform float in [0, 1))`` of a splitmix64 stream."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    return state, np.float64(_mix(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@pixie_kernel
def seed_state(seed, user):
    """The stream of ``(seed, user)``: the same walk for a user on every call and thread."""
    return _mix(
        np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) ^ _mix(np.uint64(user) + np.uint64(1))
    )


@pixie_kernel
def random_neighbour(graph, node, side, draw):
    """One neighbour of ``node`` on ``side``, uniform over its trained and overlay edges
    (``draw`` in [0, 1); no sample: a walk step reads the whole row); ``-1`` if none."""
    indptr, indices, o_nodes, o_indptr, o_indices = _side(graph, side)
    start = indptr[node]
    base = indptr[node + 1] - start
    lo, hi = _overlay_span(o_nodes, o_indptr, node)
    total = base + hi - lo
    if total == 0:
        return -1
    offset = min(np.int64(draw * total), total - 1)
    if offset < base:
        return np.int64(indices[start + offset])
    return o_indices[lo + offset - base]


@pixie_kernel
def pixie_walk(
    graph, items, budget, width, restart, seed, user, visit_threshold, early, visits_of, flags
):
    r"""Pixie's walks: ``width[q]`` walkers from query item ``q`` side by side, each
    ``ceil(budget[q] / width[q])`` steps item -> a random user who has it -> a random
    item of that user's (recorded as a visit of ``q``), back to ``q`` with probability
    ``restart`` (or when stuck). With ``early > 0`` the walk stops (checked every fourth
    step) once ``early`` items have ``visit_threshold`` visits from all query items
    (``visits_of``: a zeroed float64 array an item, left zeroed; ``flags`` likewise).

    Returns ``(keys, counts)``: each visited ``q * n_items + item`` once, ascending,
    with its visits. ``(seed, user)`` seeds the draws (:func:`seed_state`).
    """
    state = seed_state(seed, user)
    n_items = len(graph[2]) - 1  # the in side's rows: every item
    walkers = int(width.sum())
    home = np.empty(walkers, np.int64)
    limit = np.empty(walkers, np.int64)
    at = 0
    rounds = 0
    for q in range(len(items)):
        needed = -(-budget[q] // width[q])
        rounds = max(rounds, needed)
        for _ in range(width[q]):
            home[at] = q
            limit[at] = needed
            at += 1
    position = items[home]
    keys = np.empty(1024, np.int64)
    n_keys = 0
    crossed = 0
    # a step in stages over every walker (each stage's reads independent of each other, so
    # the memory system serves many at once), written out here: a helper taking the arrays
    # cost more than the step itself
    out_indptr, out_indices, in_indptr, in_indices = graph[0], graph[1], graph[2], graph[3]
    o_out_nodes, o_out_indptr, o_out_indices = graph[4], graph[5], graph[6]
    o_in_nodes, o_in_indptr, o_in_indices = graph[7], graph[8], graph[9]
    starts = np.empty(walkers, np.int64)
    stops = np.empty(walkers, np.int64)
    lows = np.zeros(walkers, np.int64)
    highs = np.zeros(walkers, np.int64)
    users = np.empty(walkers, np.int64)
    live = np.empty(walkers, np.int64)
    for step in range(rounds):
        keys = _grown(keys, n_keys + walkers)
        n_live = 0
        for w in range(walkers):
            if step < limit[w]:
                live[n_live] = w
                n_live += 1
        # item -> a user who has it (uniform over its trained and overlay edges)
        for j in range(n_live):
            node = position[live[j]]
            starts[j] = in_indptr[node]
            stops[j] = in_indptr[node + 1]
        if len(o_in_nodes):
            for j in range(n_live):
                node = position[live[j]]
                at = np.searchsorted(o_in_nodes, node)
                if at < len(o_in_nodes) and o_in_nodes[at] == node:
                    lows[j], highs[j] = o_in_indptr[at], o_in_indptr[at + 1]
                else:
                    lows[j] = highs[j] = 0
        for j in range(n_live):
            base = stops[j] - starts[j]
            total = base + highs[j] - lows[j]
            state, draw = _next(state)
            users[j] = -1
            if total > 0:
                offset = min(np.int64(draw * total), total - 1)
                if offset < base:
                    users[j] = in_indices[starts[j] + offset]
                else:
                    users[j] = o_in_indices[lows[j] + offset - base]
        # user -> an item of theirs
        for j in range(n_live):
            user = users[j]
            if user >= 0:
                starts[j] = out_indptr[user]
                stops[j] = out_indptr[user + 1]
            else:
                starts[j] = stops[j] = 0
        if len(o_out_nodes):
            for j in range(n_live):
                user = users[j]
                at = np.searchsorted(o_out_nodes, user)
                if user >= 0 and at < len(o_out_nodes) and o_out_nodes[at] == user:
                    lows[j], highs[j] = o_out_indptr[at], o_out_indptr[at + 1]
                else:
                    lows[j] = highs[j] = 0
        elif len(o_in_nodes):
            lows[:n_live] = 0
            highs[:n_live] = 0
        for j in range(n_live):
            w = live[j]
            base = stops[j] - starts[j]
            total = base + highs[j] - lows[j]
            target = -1
            if users[j] >= 0 and total > 0:
                state, draw = _next(state)
                offset = min(np.int64(draw * total), total - 1)
                if offset < base:
                    target = np.int64(out_indices[starts[j] + offset])
                else:
                    target = o_out_indices[lows[j] + offset - base]
            state, draw = _next(state)
            if target < 0 or draw < restart:
                position[w] = items[home[w]]
            else:
                position[w] = target
            if target < 0:
                continue
            keys[n_keys] = home[w] * n_items + target
            n_keys += 1
            if early > 0:
                visits_of[target] += 1.0
                if visits_of[target] >= visit_threshold and not flags[target] & _SEEN:
                    flags[target] |= _SEEN
                    crossed += 1
        if early > 0 and step % 4 == 3 and crossed >= early:
            break
    keys = sort_keys(keys[:n_keys])
    if early > 0:
        for j in range(n_keys):
            item = keys[j] % n_items
            visits_of[item] = 0.0
            flags[item] = 0
    distinct = np.empty(n_keys, np.int64)
    counts = np.empty(n_keys, np.float64)
    n = 0
    for j in range(n_keys):
        if n and distinct[n - 1] == keys[j]:
            counts[n - 1] += 1.0
        else:
            distinct[n] = keys[j]
            counts[n] = 1.0
            n += 1
    return distinct[:n], counts[:n]


@pixie_kernel
def pixie_combine(nodes, counts, boost, sums, flags):
    r"""Each item's score from its visits per query item (``nodes``/``counts``, query item
    by query item): :math:`(\sum_q \sqrt{V_q})^2` with ``boost``, else :math:`\sum_q V_q`,
    added in query order. ``(items sorted, scores)``; ``sums`` and ``flags`` left zeroed."""
    listed = np.empty(len(nodes), np.int64)
    n = 0
    for j in range(len(nodes)):
        v = nodes[j]
        sums[v] += np.sqrt(counts[j]) if boost else counts[j]
        if not flags[v] & _LISTED:
            flags[v] |= _LISTED
            listed[n] = v
            n += 1
    listed, out = listed_sums(listed[:n], sums, flags)
    return listed, out * out if boost else out


_WARM: list[bool] = []


def warm_up() -> None:
    """:func:`~recgraph.retrieval.walk_kernels.warm_up` for Pixie's kernels (and the shared
    ones its requests run): once per process, on a tiny graph."""
    warm_up_walks()
    if _WARM:
        return
    graph = graph_tuple(
        (np.array([0, 1, 2], np.int64), np.array([1, 0], np.int32)),
        (np.array([0, 1, 2], np.int64), np.array([1, 0], np.int32)),
        (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)),
        (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)),
    )
    sums, flags = np.zeros(2, np.float64), np.zeros(2, np.uint8)
    one = np.array([1], np.int64)
    keys, counts = pixie_walk(
        graph, one, np.array([8], np.int64), one, 0.5, 0, 7, 4.0, 1, sums, flags
    )
    pixie_combine(keys % 2, counts, True, sums, flags)
    _WARM.append(True)
