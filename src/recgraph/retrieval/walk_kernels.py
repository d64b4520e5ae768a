r"""Compiled per-request kernels of the walk retrievers (``ppr``, ``salsa``, ``pixie``).

Every kernel is a numba ``@njit(cache=True, nogil=True)`` function over plain
arrays (:func:`kernel`): the compiled code is cached on disk (server workers
reuse it) and releases the GIL while it runs (a server's other threads answer
meanwhile). Where no cache location is writable (a read-only install with no
``NUMBA_CACHE_DIR``) numba refuses ``cache=True`` when the function is
decorated; the kernel is then compiled in each process instead.
A request's walk is a few hundred to a few tens of thousands of edge visits:
in numpy each step was a handful of array calls whose fixed cost (allocation,
dispatch, sorting to find distinct nodes) was most of the request; here it is
one loop.

**The graph.** A kernel reads the trained graph as int32 CSR both ways (row
pointers int64, the memory-mapped ``.npy`` arrays of
:class:`~recgraph.data.graph_csr.GraphCSR`) and the overlay of edges written
after training (:class:`~recgraph.data.graph_overlay.GraphOverlay`: sorted
row nodes, row pointers and neighbours per side), passed as one tuple
(:func:`graph_tuple`). One step from node ``v`` on side ``s`` reads

.. math::

    N_s(v) = \mathrm{sample}_c(\mathrm{row}_s(v)) \cup \mathrm{overlay}_s(v),
    \qquad \mathrm{sample}_c(r) = (r_0, r_t, r_{2t}, \dots, r_{(c-1)t}),\ t = \lfloor |r| / c \rfloor

(an evenly spaced sample of ``c = hub_cap`` edges when the row is longer, so a
step's work is bounded whatever the degree); "either way" reads both sides,
each neighbour once. The capped degree is
:math:`d_s(v) = \min(|\mathrm{row}_s(v)|, c) + |\mathrm{overlay}_s(v)|`.

**Scratch.** A kernel's dense per-node arrays (a float64 residual or sum, a
uint8 array of flags) come from the retriever's pool and are handed back as
they were given: zeroed, cleared only where the kernel wrote.

**Bits.** Sums are added in the order the former numpy code added them
(``np.add.at`` / ``bincount`` order; numpy's pairwise summation where it
summed with ``.sum()``, :func:`pairwise_sum`), so scores are the same floats
and ties break the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from recgraph.compiled import kernel, pairwise_sum
from recgraph.data.kernel_inputs import frozen

#: this file's sha256 as it was imported: the source this process's kernels compile from
#: (a Pixie kernel's cache stamp carries it, :mod:`~recgraph.retrieval.pixie_kernels`)
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

#: flag bits in a kernel's uint8 scratch
_SEEN = np.uint8(1)  # taken for the current owner / scored set
_QUEUED = np.uint8(2)  # in the next round's candidates
_LISTED = np.uint8(4)  # listed once in an output

OUT, IN, BOTH = 0, 1, 2


def graph_tuple(out, inn, overlay_out, overlay_in) -> tuple:
    """The tuple the kernels read a graph from: ``(out indptr, out indices, in indptr, in
    indices, overlay out nodes, indptr, indices, overlay in nodes, indptr, indices)``, as
    read-only int64 / int32 views (one compiled version whatever the arrays' origin)."""

    def view(array, dtype):
        return frozen(np.asarray(array, dtype=dtype))

    parts = []
    for indptr, indices in (out, inn):
        parts += [view(indptr, np.int64), view(indices, np.int32)]
    for side in (overlay_out, overlay_in):
        parts += [view(side[0], np.int64), view(side[1], np.int64), view(side[2], np.int64)]
    return tuple(parts)


# ---------------------------------------------------------------------- small helpers
@kernel
def sort_keys(keys):
    """Non-negative int64 ``keys`` sorted: an LSD radix sort, 11 bits a pass (as many passes
    as the largest key needs), a few times quicker than a comparison sort on a walk's 10^4
    keys; ``np.sort`` below 256 keys."""
    n = len(keys)
    if n < 256:
        return np.sort(keys)
    largest = keys.max()
    out = keys.copy()
    spare = np.empty(n, np.int64)
    shift = 0
    counts = np.empty(2049, np.int64)
    while shift == 0 or (largest >> shift) > 0:
        counts[:] = 0
        for i in range(n):
            counts[((out[i] >> shift) & 2047) + 1] += 1
        for b in range(2048):
            counts[b + 1] += counts[b]
        for i in range(n):
            b = (out[i] >> shift) & 2047
            spare[counts[b]] = out[i]
            counts[b] += 1
        out, spare = spare, out
        shift += 11
    return out


@kernel
def _grown(array, need):
    """``array`` with room for at least ``need`` entries (a copy when it had less)."""
    if need <= len(array):
        return array
    bigger = np.empty(max(need, 2 * len(array)), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


@kernel
def _side(graph, side):
    if side == OUT:
        return graph[0], graph[1], graph[4], graph[5], graph[6]
    return graph[2], graph[3], graph[7], graph[8], graph[9]


@kernel
def _overlay_span(nodes, indptr, node):
    """``(start, stop)`` of ``node``'s overlay row on one side (empty when it has none)."""
    if len(nodes) == 0:
        return 0, 0
    at = np.searchsorted(nodes, node)
    if at < len(nodes) and nodes[at] == node:
        return indptr[at], indptr[at + 1]
    return 0, 0


@kernel
def effective_cap(hub_cap, cap):
    """The cap of a gather asked for ``cap`` on a graph capped at ``hub_cap`` (0: none)."""
    if cap < 0:
        return hub_cap
    if hub_cap > 0 and cap > 0:
        return min(cap, hub_cap)
    return cap if cap > 0 else hub_cap


@kernel
def degree(graph, node, side, cap):
    """:math:`d_s(v)`: the capped trained degree plus the overlay's."""
    indptr, _, o_nodes, o_indptr, _ = _side(graph, side)
    d = indptr[node + 1] - indptr[node]
    if cap > 0 and d > cap:
        d = cap
    lo, hi = _overlay_span(o_nodes, o_indptr, node)
    return d + hi - lo


@kernel
def walk_degree(graph, node, mode, cap):
    """The degree a push threshold reads: one side's, or both sides' summed (``BOTH``)."""
    if mode == BOTH:
        return degree(graph, node, OUT, cap) + degree(graph, node, IN, cap)
    return degree(graph, node, mode, cap)


@kernel
def _append_side(graph, node, side, cap, buf, count, flags, distinct):
    """``node``'s sampled row then its overlay row on ``side`` into ``buf[count:]``; with
    ``distinct`` only neighbours not yet flagged ``_SEEN`` (flagging them)."""
    indptr, indices, o_nodes, o_indptr, o_indices = _side(graph, side)
    start = indptr[node]
    length = indptr[node + 1] - start
    stride = 1
    if cap > 0 and length > cap:
        stride = length // cap
        length = cap
    lo, hi = _overlay_span(o_nodes, o_indptr, node)
    for j in range(length + hi - lo):  # the sampled row, then the overlay's
        v = np.int64(indices[start + j * stride]) if j < length else o_indices[lo + j - length]
        if distinct:
            if flags[v] & _SEEN:
                continue
            flags[v] |= _SEEN
        buf[count] = v
        count += 1
    return count


@kernel
def neighbours(graph, node, mode, cap, buf, flags):
    """:math:`N(v)` for one node into ``buf`` (grown if needed): ``(buf, count)``. ``BOTH``
    reads both sides, each neighbour once (out side first), leaving ``flags`` as found."""
    need = degree(graph, node, OUT, cap) if mode != IN else 0
    if mode != OUT:
        need += degree(graph, node, IN, cap)
    buf = _grown(buf, need)
    if mode != BOTH:
        return buf, _append_side(graph, node, mode, cap, buf, 0, flags, False)
    count = _append_side(graph, node, OUT, cap, buf, 0, flags, True)
    count = _append_side(graph, node, IN, cap, buf, count, flags, True)
    for j in range(count):
        flags[buf[j]] &= ~_SEEN
    return buf, count


@kernel
def gather(graph, nodes, mode, cap, flags):
    """:func:`neighbours` of many nodes: ``(owner, neighbour)`` (owner: position in ``nodes``)."""
    owner = np.empty(64, np.int64)
    out = np.empty(64, np.int64)
    buf = np.empty(64, np.int64)
    total = 0
    for i in range(len(nodes)):
        buf, count = neighbours(graph, nodes[i], mode, cap, buf, flags)
        owner = _grown(owner, total + count)
        out = _grown(out, total + count)
        for j in range(count):
            owner[total + j] = i
            out[total + j] = buf[j]
        total += count
    return owner[:total], out[:total]


# ---------------------------------------------------------------------- ranking
@kernel
def _before(value_a, key_a, value_b, key_b):
    """Entry a ranks before entry b: larger value, ties to the lower key (NaN last)."""
    if value_a > value_b:
        return True
    if value_a == value_b:
        return key_a < key_b
    if value_a != value_a and value_b != value_b:  # two NaNs: NaN == NaN is False
        return key_a < key_b
    return value_b != value_b and value_a == value_a  # b is NaN, a is not


@kernel
def best_first(values, keys, count):
    """Positions of the ``count`` best entries, best first: largest value, ties to the
    lower key, NaN last (``np.lexsort((keys, -values))[:count]``; ``count < 0``: all).

    Below the length, a sorted buffer of the ``count`` best so far takes each entry
    that beats its last (``O(n)`` for a top 10 of 10^4 scored nodes)."""
    n = len(values)
    if count < 0 or count >= n:
        by_key = np.argsort(keys, kind="mergesort")
        ranked = np.empty(n, np.float64)
        for i in range(n):
            v = values[by_key[i]]
            ranked[i] = np.inf if v != v else -v  # NaN after every number
        return by_key[np.argsort(ranked, kind="mergesort")]
    top = np.empty(count, np.int64)
    filled = 0
    if count == 0:
        return top
    for i in range(n):
        if filled == count:
            last = top[count - 1]
            if not _before(values[i], keys[i], values[last], keys[last]):
                continue
            at = count - 1
        else:
            at = filled
            filled += 1
        while at > 0 and _before(values[i], keys[i], values[top[at - 1]], keys[top[at - 1]]):
            top[at] = top[at - 1]
            at -= 1
        top[at] = i
    return top[:filled]


@kernel
def _in_sorted(sorted_keys, key):
    if len(sorted_keys) == 0:
        return False
    at = np.searchsorted(sorted_keys, key)
    return at < len(sorted_keys) and sorted_keys[at] == key


@kernel
def top_allowed(targets, values, seen, forbidden, allowed, k):
    """One request's top ``k`` of a scored row: ``(ids, scores float32, kept)``.

    Targets with a positive float32 score, not in the sorted ``seen`` row nor in the sorted
    ``forbidden`` extras, and ``allowed`` (a mask over every target; empty: all), ranked
    by their float32 score, ties to the lower target; ``kept`` counts those eligible
    (fewer than ``k``: the caller fills the rest with ``neighborhood.zero_filled``).

    Targets in ascending order (a walk's row) meet ``seen`` in one galloping merge, a
    pointer that only moves forward: ``O(n log(d / n))`` for a seen row of ``d``, where a
    binary search per target cost ``O(n log d)`` random reads (an account following 10^5
    others: most of a request's ranking)."""
    n = len(targets)
    chosen = np.empty(n, np.int64)
    scores = np.empty(n, np.float32)
    kept = 0
    ascending = True
    for i in range(1, n):
        if targets[i] < targets[i - 1]:
            ascending = False
            break
    d = len(seen)
    at = 0  # ascending: the first seen entry not below the last target looked at
    for i in range(n):
        score = np.float32(values[i])  # the stored score: a float64 one below float32's
        if not score > 0:  # least is 0, a target not scored (as on the general path)
            continue
        t = targets[i]
        if ascending:
            if at < d and seen[at] < t:
                low, step = at, 1  # seen[low] < t: gallop, then search the last stride
                while low + step < d and seen[low + step] < t:
                    low += step
                    step *= 2
                high = min(low + step, d)
                at = low + 1 + np.searchsorted(seen[low + 1 : high], t)
            if at < d and seen[at] == t:
                continue
        elif _in_sorted(seen, t):
            continue
        if _in_sorted(forbidden, t):
            continue
        if len(allowed) and not allowed[t]:
            continue
        chosen[kept] = t
        scores[kept] = score
        kept += 1
    order = best_first(scores[:kept], chosen[:kept], min(k, kept))
    return chosen[order], scores[order], kept


# ---------------------------------------------------------------------- personalised PageRank
@kernel
def ppr_push(graph, user, mode, degree_mode, cap, alpha, epsilon, max_rounds, residual, flags):
    r"""Local push (Andersen, Chung and Lang) from ``user``, a round at a time.

    A residual :math:`r = e_u`; each round every node with
    :math:`r_v \ge \varepsilon\, d(v)` (``u`` in the first round whatever its degree)
    keeps :math:`\alpha r_v` as score and passes :math:`(1-\alpha) r_v / |N(v)|` to each
    neighbour (to ``u`` when it has none), all at once. Ends when no node is above its
    threshold or after ``max_rounds``, with :math:`p + \mathrm{PPR}(r) = \mathrm{PPR}(e_u)`.

    Returns ``(nodes, scores, residual nodes, residuals)``, each sorted by node, and
    leaves ``residual`` (a zeroed float64 array, one entry a node) and ``flags`` zeroed.
    """
    touched = np.empty(256, np.int64)  # a node each time its residual left zero
    n_touched = 0
    kept_nodes = np.empty(64, np.int64)
    kept_vals = np.empty(64, np.float64)
    n_kept = 0
    frontier = np.empty(1, np.int64)
    frontier[0] = user
    queue = np.empty(64, np.int64)
    n_queue = 0
    buf = np.empty(64, np.int64)
    residual[user] = 1.0
    touched[0] = user
    n_touched = 1
    for round_ in range(max_rounds):
        if round_:
            # the candidates reached at least epsilon this round; those above their
            # threshold push, in ascending order (as the numpy rounds did)
            count = 0
            for j in range(n_queue):
                v = queue[j]
                flags[v] &= ~_QUEUED
                limit = epsilon * max(walk_degree(graph, v, degree_mode, cap), 1)
                if residual[v] >= limit:
                    queue[count] = v
                    count += 1
            frontier = np.sort(queue[:count])
            n_queue = 0
        m = len(frontier)
        if m == 0:
            break
        mass = np.empty(m, np.float64)
        for i in range(m):
            mass[i] = residual[frontier[i]]
            residual[frontier[i]] = 0.0
        kept_nodes = _grown(kept_nodes, n_kept + m)
        kept_vals = _grown(kept_vals, n_kept + m)
        for i in range(m):
            kept_nodes[n_kept + i] = frontier[i]
            kept_vals[n_kept + i] = alpha * mass[i]
        n_kept += m
        dangling = np.empty(m, np.float64)
        n_dangling = 0
        for i in range(m + 1):
            if i < m:
                buf, count = neighbours(graph, frontier[i], mode, cap, buf, flags)
                if count == 0:
                    dangling[n_dangling] = mass[i]
                    n_dangling += 1
                    continue
                share = (1 - alpha) * mass[i] / count
            else:  # last, the mass of the nodes with no neighbour goes home
                share = (1 - alpha) * pairwise_sum(dangling[:n_dangling])
                if not share:
                    break
                buf[0], count = user, 1
            touched = _grown(touched, n_touched + count)
            queue = _grown(queue, n_queue + count)
            for j in range(count):
                v = buf[j]
                if residual[v] == 0.0:
                    touched[n_touched] = v
                    n_touched += 1
                residual[v] += share
                if not flags[v] & _QUEUED and residual[v] >= epsilon:
                    flags[v] |= _QUEUED
                    queue[n_queue] = v
                    n_queue += 1
    for j in range(n_queue):
        flags[queue[j]] &= ~_QUEUED
    # the scores: each node's kept values summed in round order
    order = np.argsort(kept_nodes[:n_kept], kind="mergesort")
    nodes = np.empty(n_kept, np.int64)
    scores = np.empty(n_kept, np.float64)
    n_nodes = 0
    for j in range(n_kept):
        v = kept_nodes[order[j]]
        if n_nodes and nodes[n_nodes - 1] == v:
            scores[n_nodes - 1] += kept_vals[order[j]]
        else:
            nodes[n_nodes] = v
            scores[n_nodes] = 0.0 + kept_vals[order[j]]
            n_nodes += 1
    # the residual left: every touched node still holding mass, once each
    r_nodes = np.empty(n_touched, np.int64)
    n_r = 0
    for j in range(n_touched):
        v = touched[j]
        if residual[v] > 0 and not flags[v] & _LISTED:
            flags[v] |= _LISTED
            r_nodes[n_r] = v
            n_r += 1
    r_nodes = sort_keys(r_nodes[:n_r])
    r_vals = np.empty(n_r, np.float64)
    for j in range(n_r):
        flags[r_nodes[j]] &= ~_LISTED
        r_vals[j] = residual[r_nodes[j]]
    for j in range(n_touched):
        residual[touched[j]] = 0.0
    return nodes[:n_nodes], scores[:n_nodes], r_nodes, r_vals


@kernel
def listed_sums(listed, sums, flags):
    """``(nodes, sums)`` of the ``listed`` nodes (each once), sorted by node, clearing
    ``sums`` and the ``_LISTED`` flag there."""
    nodes = sort_keys(listed)
    out = np.empty(len(nodes), np.float64)
    for j in range(len(nodes)):
        v = nodes[j]
        out[j] = sums[v]
        sums[v] = 0.0
        flags[v] &= ~_LISTED
    return nodes, out


@kernel
def sweep_choice(graph, r_nodes, residual, mode, cap, sweep, budget):
    """Positions of the residual nodes the sweep spreads: all when their edges (at most
    ``sweep`` a node and side) fit ``budget`` (0: no bound), else the largest residual per
    edge first (stable) while the running sum of edges stays within it, ascending."""
    n = len(r_nodes)
    edges = np.zeros(n, np.int64)
    for i in range(n):
        if mode != IN:
            edges[i] += min(degree(graph, r_nodes[i], OUT, cap), sweep)
        if mode != OUT:
            edges[i] += min(degree(graph, r_nodes[i], IN, cap), sweep)
    every = np.arange(n)
    if budget <= 0 or edges.sum() <= budget:
        return every
    ratio = np.empty(n, np.float64)
    for i in range(n):
        ratio[i] = -(residual[i] / max(edges[i], 1))
    order = np.argsort(ratio, kind="mergesort")
    spent = 0
    taken = 0
    for i in range(n):
        spent += edges[order[i]]
        if spent > budget:
            break
        taken += 1
    return np.sort(order[:taken])


@kernel
def ppr_sweep(graph, nodes, scores, r_nodes, r_vals, mode, cap, alpha, sweep, budget, sums, flags):
    r"""One last step of the residual: the pushed scores plus :math:`\alpha r_v` on every
    residual node and :math:`(1-\alpha) r_v / |N_{s}(v)|` on each of the (at most ``sweep``
    sampled) neighbours of the nodes :func:`sweep_choice` picks. ``(nodes, sums)`` sorted
    by node; ``sums`` (a zeroed float64 array a node) and ``flags`` are left zeroed."""
    spread = sweep_choice(graph, r_nodes, r_vals, mode, cap, sweep, budget)
    listed = np.empty(len(nodes) + len(r_nodes) + 64, np.int64)
    n_listed = 0
    for j in range(len(nodes)):
        v = nodes[j]
        sums[v] += scores[j]
        if not flags[v] & _LISTED:
            flags[v] |= _LISTED
            listed[n_listed] = v
            n_listed += 1
    for j in range(len(r_nodes)):
        v = r_nodes[j]
        sums[v] += alpha * r_vals[j]
        if not flags[v] & _LISTED:
            flags[v] |= _LISTED
            listed[n_listed] = v
            n_listed += 1
    sweep_cap = effective_cap(cap, sweep)
    buf = np.empty(64, np.int64)
    for i in range(len(spread)):
        buf, count = neighbours(graph, r_nodes[spread[i]], mode, sweep_cap, buf, flags)
        share = (1 - alpha) * r_vals[spread[i]] / max(count, 1)
        listed = _grown(listed, n_listed + count)
        for j in range(count):
            v = buf[j]
            sums[v] += share
            if not flags[v] & _LISTED:
                flags[v] |= _LISTED
                listed[n_listed] = v
                n_listed += 1
    out_nodes, out = listed_sums(listed[:n_listed], sums, flags)
    return out_nodes, out


@kernel
def ppr_explain(graph, nodes, scores, candidates, back, degree_mode, cap, epsilon, top, flags):
    """The inputs of a pushed score's explanations, for every candidate at once.

    A candidate's walk-side predecessors ``w`` (its sampled rows on the ``back`` side,
    both ways each once and ascending for ``BOTH``, then its overlay rows) that hold a
    score weigh :math:`p(w) / d(w)` (what ``w`` passed on in the last step), scaled to
    sum to the candidate's own score; at most ``top`` per candidate (``< 0``: all),
    largest first, ties to the lower node. Returns ``(bounds, via, contributions,
    own scores)`` with candidate ``j``'s entries at ``bounds[j]:bounds[j + 1]``.
    """
    for j in range(len(nodes)):
        flags[nodes[j]] |= _SEEN
    out_indptr, in_indptr = graph[0], graph[2]
    has_overlay = len(graph[4]) > 0 or len(graph[7]) > 0
    n_c = len(candidates)
    bounds = np.zeros(n_c + 1, np.int64)
    via_all = np.empty(64, np.int64)
    contrib_all = np.empty(64, np.float64)
    own = np.zeros(n_c, np.float64)
    buf = np.empty(64, np.int64)
    total = 0
    for c in range(n_c):
        candidate = candidates[c]
        at = np.searchsorted(nodes, candidate)
        if at < len(nodes) and nodes[at] == candidate:
            own[c] = scores[at]
        need = 0
        if back != IN:
            need += degree(graph, candidate, OUT, cap)
        if back != OUT:
            need += degree(graph, candidate, IN, cap)
        buf = _grown(buf, need)
        count = 0
        for side in (OUT, IN):
            if back == BOTH or back == side:
                # every neighbour (not distinct: _SEEN marks the scored set here)
                count = _append_side(graph, candidate, side, cap, buf, count, flags, False)
        via = np.empty(count, np.int64)
        n_via = 0
        for j in range(count):
            if flags[buf[j]] & _SEEN:
                via[n_via] = buf[j]
                n_via += 1
        via = via[:n_via]
        if back == BOTH and n_via:
            via = np.sort(via)
            distinct = 1
            for j in range(1, n_via):
                if via[j] != via[distinct - 1]:
                    via[distinct] = via[j]
                    distinct += 1
            via = via[:distinct]
        weight = np.empty(len(via), np.float64)
        for j in range(len(via)):
            w = via[j]
            # the threshold's degree, written out (a helper taking the arrays cost more)
            d = 0
            if degree_mode != IN:
                d += (
                    min(out_indptr[w + 1] - out_indptr[w], cap)
                    if cap > 0
                    else (out_indptr[w + 1] - out_indptr[w])
                )
            if degree_mode != OUT:
                d += (
                    min(in_indptr[w + 1] - in_indptr[w], cap)
                    if cap > 0
                    else (in_indptr[w + 1] - in_indptr[w])
                )
            if has_overlay:
                d = walk_degree(graph, w, degree_mode, cap)
            limit = epsilon * max(d, 1)
            weight[j] = scores[np.searchsorted(nodes, w)] / max(limit / epsilon, 1.0)
        summed = pairwise_sum(weight)
        factor = own[c] / summed if summed > 0 else 1.0
        contrib = weight * factor
        positive = np.flatnonzero(contrib > 0)
        picked = best_first(contrib[positive], via[positive], top)
        via_all = _grown(via_all, total + len(picked))
        contrib_all = _grown(contrib_all, total + len(picked))
        for j in range(len(picked)):
            via_all[total + j] = via[positive[picked[j]]]
            contrib_all[total + j] = contrib[positive[picked[j]]]
        total += len(picked)
        bounds[c + 1] = total
    for j in range(len(nodes)):
        flags[nodes[j]] &= ~_SEEN
    return bounds, via_all[:total], contrib_all[:total], own


# ---------------------------------------------------------------------- SALSA
@kernel
def salsa(graph, hubs, h0, cap, iterations, beta, flags):
    r"""SALSA on the hubs x authorities graph of a circle of trust.

    ``H``: each hub's sampled follows (``cap``) plus its overlay follows, each pair
    once (a repeated pair adds its weight). With :math:`D_h, D_a` its degrees,
    :math:`a = H^\top D_h^{-1} h` and
    :math:`h \leftarrow \beta h_0 + (1-\beta) H D_a^{-1} a + (1-\beta) \ell h_0`
    (:math:`\ell` the mass on hubs that follow nobody), ``iterations`` times ``a``; the
    products add their terms in the order scipy's CSR / CSC products do.

    Returns ``(authorities sorted, scores, hub of each pair, authority of each pair,
    h / D_h)``; ``flags`` is left zeroed.
    """
    n_hubs = len(hubs)
    owner, followed = gather(graph, hubs, OUT, cap, flags)
    # the distinct authorities, sorted, and each pair's column, from one radix sort of
    # (followed, pair) keys: no per-node table, whose random reads and writes (10^4 a
    # request, 8 bytes a node) cost more than the sort
    n_f = len(followed)
    shift = 0
    while (1 << shift) < n_f:
        shift += 1
    by_node = np.empty(n_f, np.int64)
    for j in range(n_f):
        by_node[j] = (followed[j] << shift) | j
    by_node = sort_keys(by_node)
    low = (1 << shift) - 1
    authorities = np.empty(n_f, np.int64)
    column = np.empty(n_f, np.int64)
    n_auth = 0
    for j in range(n_f):
        v = by_node[j] >> shift
        if n_auth == 0 or authorities[n_auth - 1] != v:
            authorities[n_auth] = v
            n_auth += 1
        column[by_node[j] & low] = n_auth - 1
    authorities = authorities[:n_auth]
    width = max(n_auth, 1)
    keys = np.empty(len(followed), np.int64)
    for j in range(len(followed)):
        keys[j] = owner[j] * width + column[j]
    unit = True
    for j in range(1, len(keys)):
        if keys[j] <= keys[j - 1]:
            unit = False
            break
    if not unit:
        keys = sort_keys(keys)
    hub_of = np.empty(len(keys), np.int64)
    authority_of = np.empty(len(keys), np.int64)
    weight = np.empty(len(keys), np.float64)
    n_pairs = 0
    for j in range(len(keys)):
        if n_pairs and keys[j] == keys[j - 1]:
            weight[n_pairs - 1] += 1.0
            continue
        hub_of[n_pairs] = keys[j] // width
        authority_of[n_pairs] = keys[j] % width
        weight[n_pairs] = 1.0
        n_pairs += 1
    hub_of, authority_of, weight = hub_of[:n_pairs], authority_of[:n_pairs], weight[:n_pairs]
    hub_degree = np.zeros(n_hubs, np.float64)
    authority_degree = np.zeros(n_auth, np.float64)
    for e in range(n_pairs):
        hub_degree[hub_of[e]] += weight[e]
        authority_degree[authority_of[e]] += weight[e]
    inverse_hub = np.zeros(n_hubs, np.float64)
    for i in range(n_hubs):
        if hub_degree[i] > 0:
            inverse_hub[i] = 1.0 / hub_degree[i]
    inverse_authority = np.zeros(n_auth, np.float64)
    for i in range(n_auth):
        if authority_degree[i] > 0:
            inverse_authority[i] = 1.0 / authority_degree[i]
    h = h0.copy()
    by_hub = h * inverse_hub
    a = np.zeros(n_auth, np.float64)
    for e in range(n_pairs):
        a[authority_of[e]] += weight[e] * by_hub[hub_of[e]]
    dangling = np.empty(n_hubs, np.float64)
    for _ in range(iterations - 1):
        n_dangling = 0
        for i in range(n_hubs):
            if hub_degree[i] == 0:
                dangling[n_dangling] = h[i]
                n_dangling += 1
        lost = (1 - beta) * pairwise_sum(dangling[:n_dangling])
        per_authority = a * inverse_authority
        back = np.zeros(n_hubs, np.float64)
        for e in range(n_pairs):
            back[hub_of[e]] += weight[e] * per_authority[authority_of[e]]
        for i in range(n_hubs):
            h[i] = beta * h0[i] + (1 - beta) * back[i] + lost * h0[i]
        by_hub = h * inverse_hub
        a = np.zeros(n_auth, np.float64)
        for e in range(n_pairs):
            a[authority_of[e]] += weight[e] * by_hub[hub_of[e]]
    return authorities, a, hub_of, authority_of, by_hub


# ---------------------------------------------------------------------- warming up
_WARM: list[bool] = []


def warm_up() -> None:
    """Run every kernel once on a tiny graph, with the argument types the retrievers pass,
    so a loaded model's first request finds them compiled (read from numba's on-disk cache,
    or compiled once and cached there). Once per process."""
    if _WARM:
        return
    indptr = np.array([0, 2, 3, 3], np.int64)
    indices = np.array([1, 2, 2], np.int32)
    in_indptr = np.array([0, 0, 1, 3], np.int64)
    in_indices = np.array([0, 0, 1], np.int32)
    overlay_out = (np.array([2], np.int64), np.array([0, 1], np.int64), np.array([0], np.int64))
    overlay_in = (np.array([0], np.int64), np.array([0, 1], np.int64), np.array([2], np.int64))
    graph = graph_tuple((indptr, indices), (in_indptr, in_indices), overlay_out, overlay_in)
    residual = np.zeros(3, np.float64)
    flags = np.zeros(3, np.uint8)
    for mode in (OUT, BOTH):
        nodes, scores, r_nodes, r_vals = ppr_push(
            graph, 0, mode, mode, 2, 0.3, 1e-4, 100, residual, flags
        )
        row_nodes, row_scores = ppr_sweep(
            graph, nodes, scores, r_nodes, r_vals, mode, 2, 0.3, 1000, 20_000, residual, flags
        )
        ppr_explain(graph, row_nodes, row_scores, np.array([1, 2], np.int64), mode, mode, 2,
                    1e-4, 3, flags)  # fmt: skip
        gather(graph, np.array([0, 1], np.int64), mode, 2, flags)
    frozen_mask = np.zeros(0, np.bool_)
    frozen_mask.flags.writeable = False  # a shared allowed mask, passed as it is
    for mask in (np.zeros(0, np.bool_), frozen_mask):
        top_allowed(row_nodes, row_scores, np.zeros(0, np.int64), np.array([0], np.int64),
                    mask, 1)  # fmt: skip
    best_first(row_scores, row_nodes, 1)
    effective_cap(2, -1)  # SALSA's cap, asked from Python
    salsa(graph, np.array([0, 1], np.int64), np.array([0.5, 0.5]), 2, 3, 0.15, flags)
    _WARM.append(True)


# ---------------------------------------------------------------------- one dense row
@kernel
def top_row(values, k):
    """:func:`~recgraph.retrieval.base.top_k` of one float32 row without NaN (a masked
    request's scores): the ``k`` best, ties to the lower index, best first, ``-inf`` slots
    as id ``-1``. The same selection (the k-th largest value, every entry above it, the
    lowest-indexed entries equal to it) and the same order (a stable sort by score of the
    chosen, taken in index order), in one call instead of a dozen array calls."""
    n = len(values)
    k_eff = min(k, n)
    ids = np.full(k, -1, np.int64)
    out = np.full(k, -np.inf, np.float32)
    if k_eff == 0:
        return ids, out
    if k_eff < n:
        kth = np.partition(values, n - k_eff)[n - k_eff]
        greater = 0
        for i in range(n):
            if values[i] != values[i]:  # NaN: partition put it last, the choice would fall short
                raise ValueError("top_row: a NaN score (mask scores first)")
            if values[i] > kth:
                greater += 1
        need = k_eff - greater
        chosen = np.empty(k_eff, np.int64)
        c = 0
        for i in range(n):
            v = values[i]
            if v > kth:
                chosen[c] = i
                c += 1
            elif v == kth and need > 0:
                chosen[c] = i
                c += 1
                need -= 1
    else:
        chosen = np.arange(n)
    negated = np.empty(k_eff, np.float32)
    for j in range(k_eff):
        negated[j] = -values[chosen[j]]
    order = np.argsort(negated, kind="mergesort")
    for j in range(k_eff):
        at = chosen[order[j]]
        if values[at] > -np.inf:
            ids[j] = at
            out[j] = values[at]
    return ids, out


#: whether :func:`top_row` is compiled in this process (:func:`warm_up_top_row`): requests
#: use it only then (:func:`~recgraph.retrieval.base.compiled_top_row`), never compiling it
TOP_ROW_WARM = False


def warm_up_top_row() -> None:
    """Compile (or read from the cache) :func:`top_row` for the row a request passes."""
    global TOP_ROW_WARM
    top_row(np.zeros(3, np.float32), 2)
    top_row(np.zeros(3, np.float32), 5)
    TOP_ROW_WARM = True
