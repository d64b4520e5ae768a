r"""Neighbourhood retrievers for who-to-follow: the shared machinery.

Common neighbours, Adamic-Adar, resource allocation and Jaccard all score a
pair ``(u, v)`` by the two-hop paths ``u - w - v`` between them, each middle
node ``w`` weighted by a function of its degree:

.. math::

    s(u, v) = \sum_{w} F[u, w] \, f(\deg w) \, G[w, v] = (F \, \mathrm{diag}(f) \, G)[u, v]

where ``F`` is the first hop and ``G`` the second. This module builds ``F``,
``G`` and ``deg`` for each reading of a graph, computes exact scores as sparse
products ``F[batch] @ (diag(f) G)`` for batches of query users (in a thread
pool: scipy's sparse product and numpy's sorting release the GIL), and picks
the top ``k`` of each sparse score row without ever making a dense
``n x n`` matrix (:func:`sparse_top_k`).

Readings (``path`` in the config), with ``A`` the follow matrix
(``A[u, w] = 1`` when ``u`` follows ``w``):

==============  =============  =============  ==========================================
``path``        ``F``          ``G``          candidates ``v`` of ``u``
==============  =============  =============  ==========================================
``out_out``     ``A``          ``A``          followed by the accounts ``u`` follows
``in_out``      ``A.T``        ``A``          followed by the followers of ``u``
``out_in``      ``A``          ``A.T``        following the accounts ``u`` follows
``in_in``       ``A.T``        ``A.T``        following the followers of ``u``
``undirected``  ``A or A.T``   ``A or A.T``   linked either way to ``u``'s links
==============  =============  =============  ==========================================

``out_out`` is the classic "who to follow": accounts followed by the accounts
you follow. The three others walk the follower side on one or both hops. On a
friendship graph ``A`` is symmetric and every reading is the same.

Degree of a middle node (``degree`` in the config), used by Adamic-Adar
(``1 / log deg w``) and resource allocation (``1 / deg w``):

- ``exit`` (default): the number of ways the path can leave ``w`` on the
  second hop, i.e. the row count of ``G``: the out-degree of ``w`` for
  ``out_out`` / ``in_out``, its in-degree for ``out_in`` / ``in_in``. This is
  resource allocation's own reading: ``w`` shares what it got from ``u``
  equally among the accounts it passes it on to.
- ``entry``: the number of ways the path can arrive at ``w`` on the first
  hop (column count of ``F``), e.g. follower count for ``out_out``: it
  discounts celebrities that everybody follows.
- ``total``: distinct neighbours of ``w`` in either direction.

On an undirected graph all three are the ordinary degree, so the scores
equal NetworkX's ``common_neighbors``, ``adamic_adar_index``,
``resource_allocation_index`` and ``jaccard_coefficient``. Self-loops are
dropped when fitting (they are no relation to recommend through).

Hubs. A middle node with more than ``hub_cap`` exit edges (bots, celebrity
accounts) would add that many paths for every user that reaches it; with
``hub_policy="sample"`` only ``hub_cap`` of its exit edges (a seeded uniform
sample, not re-weighted) are expanded, with ``"skip"`` none. The work per
query user is then at most ``|F[u]| * hub_cap`` paths. Degrees (and so the
weights) stay the true ones; ``hub_cap=0`` is exact, and so is the
default 10 000 on any graph without a node of larger degree. A user's own
first hop is capped the same way (``first_hop_cap``, default 10 000: a seeded
sample of a huge follow list), so every two-hop expansion is bounded by
``first_hop_cap * hub_cap`` paths.
``benchmarks/neighborhood.py`` reports what smaller caps cost in recall.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.graph_csr import load_array, load_binary_csr, save_array, save_csr
from recgraph.data.interactions import Interactions
from recgraph.data.kernel_inputs import KERNEL_FLOATS, KERNEL_INDICES, frozen
from recgraph.data.sorted_keys import distinct_sorted, find_sorted, in_sorted, sorted_groups
from recgraph.data.sparse_rows import (
    DENSE_LOOKUP,
    one_user,
    row_entries,
    row_products,
    row_sums,
)
from recgraph.progress import progress_bar
from recgraph.retrieval.base import Request, Retriever, RetrieverConfig, TopK
from recgraph.retrieval.explanation import Explanation, make_explanation
from recgraph.retrieval.sparse_top_k import _binary, sparse_top_k

Reading = Literal["out_out", "in_out", "out_in", "in_in", "undirected"]
DegreeSide = Literal["exit", "entry", "total"]
HubPolicy = Literal["sample", "skip"]

#: What a candidate is to the middle nodes of its paths, per reading ("followed by X and Y").
RELATION: dict[str, str] = {
    "out_out": "followed by",
    "in_out": "followed by",
    "out_in": "follows",
    "in_in": "follows",
    "undirected": "connected to",
    "friends": "friends with",
}


# ---------------------------------------------------------------------- config
class GraphWalkConfig(RetrieverConfig):
    """Settings every neighbourhood model shares: the hub cap and the threads.

    ``hub_cap`` bounds how many exit edges of one node are expanded (``0``:
    all, exact; a number rather than ``None`` so that TOML can say it); ``hub_policy`` says what happens to the rest of a hub's
    edges: a seeded uniform ``sample`` of ``hub_cap`` is kept, or the hub is
    ``skip``-ped as a middle node. ``n_threads=0`` uses every core.
    """

    hub_cap: int = Field(default=10_000, ge=0)
    hub_policy: HubPolicy = "sample"
    seed: int = 0
    n_threads: int = Field(default=0, ge=0)


class NeighborhoodConfig(GraphWalkConfig):
    """Config of the two-hop models (see the module docstring for ``path`` and ``degree``).

    ``batch_paths`` bounds the two-hop paths expanded per batch of query
    users, which bounds the memory of one batch (a few tens of bytes a path).
    ``first_hop_cap`` bounds the first hop the same way: a user with a
    larger first hop (a huge follow list) expands a seeded uniform sample of
    that many of its edges (always sampled, never skipped: the user still
    gets answers; ``0``: all). With both caps one user's work is at most
    ``first_hop_cap * hub_cap`` paths. Degrees and Jaccard's set sizes stay
    the true ones.
    """

    path: Reading = "out_out"
    degree: DegreeSide = "exit"
    batch_paths: int = Field(default=1 << 20, ge=1)
    first_hop_cap: int = Field(default=10_000, ge=0)


# ---------------------------------------------------------------------- explanations
def best_first(values: np.ndarray, keys: np.ndarray, count: int | None) -> np.ndarray:
    """Positions of the ``count`` largest ``values``, best first, ties to the lower key:
    ``np.lexsort((keys, -values))[:count]`` (``None``: all of them).

    With ``count`` below the length, only the entries at least as large as the
    ``count``-th largest are sorted (a popular candidate's thousands of middle nodes,
    a walk's 10^4 scored accounts for a top 10 or a circle of 200).
    """
    negative = -values
    if count is not None and 0 < count < len(values):
        kth = np.partition(negative, count - 1)[count - 1]  # NaN sorts last, as in the lexsort
        if not np.isnan(kth):
            keep = np.flatnonzero(negative <= kth)
            return keep[np.lexsort((keys[keep], negative[keep]))][:count]
    order = np.lexsort((keys, negative))
    return order if count is None else order[:count]


def top_contributions(
    middles: np.ndarray, values: np.ndarray, top: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Middle nodes by contribution, best first, ties to the lower index; at most ``top``."""
    order = best_first(values, middles, top)
    return middles[order].astype(np.int64), values[order].astype(np.float32)


def simple_adjacency(train: Interactions) -> sp.csr_matrix:
    """Binary adjacency of the positive edges, self-loops dropped (symmetric for friends)."""
    adjacency = train.positives().csr("binary").tocsr(copy=True)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    adjacency.sort_indices()
    return adjacency.astype(np.float32)


def reading_matrices(
    adjacency: sp.csr_matrix, path: Reading
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The first and second hop matrices ``(F, G)`` of a reading."""
    if path == "undirected":
        both = (adjacency + adjacency.T).tocsr()
        both.data[:] = 1.0
        both.sort_indices()
        return both, both
    if path == "out_out":  # no transpose to build (and hold while building)
        return adjacency, adjacency
    transposed = adjacency.T.tocsr()
    transposed.sort_indices()
    first = adjacency if path.startswith("out") else transposed
    second = adjacency if path.endswith("out") else transposed
    return first, second


def middle_degrees(first: sp.csr_matrix, second: sp.csr_matrix, side: DegreeSide) -> np.ndarray:
    """Degree of each node as a middle node of a path (see the module docstring)."""
    if side == "exit":
        return np.diff(second.indptr).astype(np.float64)
    if side == "entry":
        return np.bincount(first.indices, minlength=first.shape[1]).astype(np.float64)
    both = (first + first.T + second + second.T).tocsr()
    return np.diff(both.indptr).astype(np.float64)


def cap_rows(matrix: sp.csr_matrix, cap: int, policy: HubPolicy, seed: int) -> sp.csr_matrix:
    """At most ``cap`` entries per row: a seeded uniform sample of each longer row, or none.

    Rows within the cap are untouched, so a cap above the largest row changes
    nothing; ``cap=0`` means no cap. Kept entries keep their values (no
    re-weighting).
    """
    lengths = np.diff(matrix.indptr)
    if not cap or not len(lengths) or lengths.max() <= cap:
        return matrix
    keep = np.ones(matrix.nnz, dtype=bool)
    for row, chosen in hub_samples(lengths, cap, policy, seed):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        keep[start:stop] = False
        keep[start + chosen] = True
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)[keep]
    capped = sp.csr_matrix(
        (matrix.data[keep], (rows, matrix.indices[keep])), shape=matrix.shape, dtype=matrix.dtype
    )
    capped.sort_indices()
    return capped


def hub_samples(
    lengths: np.ndarray, cap: int, policy: HubPolicy, seed: int
) -> Iterator[tuple[int, np.ndarray]]:
    """The rows longer than ``cap``, in order, with the positions :func:`cap_rows` keeps.

    Positions index the row's entries in storage (column) order; ``"skip"``
    keeps none. One seeded generator runs over the long rows in order, so
    whoever knows only the row lengths (the Spark jobs) draws the same sample.
    """
    rng = np.random.default_rng(seed)
    for row in np.flatnonzero(lengths > cap):
        if policy == "sample":
            yield int(row), rng.choice(int(lengths[row]), size=cap, replace=False)
        else:
            yield int(row), np.zeros(0, dtype=np.int64)


def resolve_threads(n_threads: int) -> int:
    """``0`` means every core this process may use."""
    if n_threads:
        return n_threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def first_free(
    excluded: np.ndarray, need: int, n_cols: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The ``need`` lowest columns of ``n_cols`` outside the sorted, distinct ``excluded``
    (and inside the boolean mask ``allowed``, when given), ascending: the zero-score
    columns :func:`sparse_top_k` fills a short row with, without its sparse matrices."""
    if allowed is None:
        # the first ``need`` free columns lie below need + |excluded|
        span = np.arange(min(n_cols, need + len(excluded)), dtype=np.int64)
    else:
        span = np.flatnonzero(allowed)
    return span[~in_sorted(excluded, span)][:need]


def zero_filled(
    ids: np.ndarray,
    scores: np.ndarray,
    barred: np.ndarray,
    k: int,
    n_cols: int,
    allowed: np.ndarray | None = None,
) -> TopK:
    """One request's list when fewer than ``k`` targets score above 0: ``ids``/``scores``
    (those targets, best first), then the lowest columns neither ``barred`` nor listed (and
    ``allowed``, when given) at 0, then ``-1``: what :func:`sparse_top_k` fills a short row
    with, without the sparse products over every column the general path makes (100-240 ms
    a request at 10^7 accounts, ~4 ms for a short ego-Facebook walk)."""
    taken = len(ids)
    out_ids = np.full(k, -1, dtype=np.int64)
    out_scores = np.full(k, -np.inf, dtype=np.float32)
    out_ids[:taken], out_scores[:taken] = ids, scores
    excluded = distinct_sorted(np.concatenate([barred.astype(np.int64), ids]))
    free = first_free(excluded, k - taken, n_cols, allowed)
    out_ids[taken : taken + len(free)] = free
    out_scores[taken : taken + len(free)] = 0.0
    return out_ids[None, :], out_scores[None, :]


def run_batches(
    spans: Sequence[tuple[int, int]],
    work: Callable[[int, int], None],
    n_threads: int,
    description: str,
    total: int,
) -> None:
    """Run ``work(start, stop)`` for every span, on a thread pool when there is more than one.

    The work functions write into disjoint slices of preallocated arrays; the
    heavy calls inside them (scipy's sparse products, numpy's partition and
    sort) release the GIL, so threads use the cores. One span (a served
    request) runs at once, without a progress bar.
    """
    if len(spans) == 1:
        work(*spans[0])
        return
    with progress_bar(description, total=total, unit="users") as advance:
        if n_threads <= 1 or not spans:
            for start, stop in spans:
                work(start, stop)
                advance(stop - start)
            return
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            futures = [pool.submit(work, start, stop) for start, stop in spans]
            for future, (start, stop) in zip(futures, spans, strict=True):
                future.result()
                advance(stop - start)


def spans_by_work(
    work: np.ndarray, budget: int, max_rows: int | None = None
) -> list[tuple[int, int]]:
    """Cut ``0..len(work)`` into consecutive spans whose summed ``work`` stays within ``budget``.

    A single row above the budget gets a span of its own.
    """
    n = len(work)
    if n == 0:
        return []
    cumulative = np.cumsum(np.maximum(work, 1), dtype=np.int64)
    spans = []
    start = 0
    done = 0
    while start < n:
        stop = int(np.searchsorted(cumulative, done + budget, side="right"))
        stop = max(stop, start + 1)
        if max_rows is not None:
            stop = min(stop, start + max_rows)
        spans.append((start, stop))
        done = int(cumulative[stop - 1])
        start = stop
    return spans


# ---------------------------------------------------------------------- models
class GraphRetriever(Retriever):
    """Base of the account-graph models: learns the simple adjacency, saves it, rebuilds from it.

    Everything else a model needs (hop matrices, weights, the capped
    expansion) is derived in :meth:`_build` (the hub sample is seeded); a
    subclass may save what it derived as files that ``load`` maps instead.
    """

    supports: ClassVar[frozenset[str]] = frozenset({"follows", "friends"})
    explains: ClassVar[bool] = True
    no_evidence_score: ClassVar[float | None] = 0.0
    adjacency_: sp.csr_matrix

    def _fit(self, train: Interactions) -> None:
        self.adjacency_ = simple_adjacency(train)
        self._build()

    @abstractmethod
    def _build(self) -> None:
        """Derive the model's matrices from ``adjacency_`` and the config."""

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "adjacency.indptr": self.adjacency_.indptr,
            "adjacency.indices": self.adjacency_.indices,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """The adjacency back; :meth:`_load_files` then maps or derives the rest.

        On a graph without self-loops the adjacency is the seen matrix, which
        ``load`` has memory-mapped already: that matrix is used, not a copy."""
        n = self.n_users
        indices, indptr = state["adjacency.indices"], state["adjacency.indptr"]
        seen = self._seen
        if (
            seen is not None
            and seen.shape == (n, n)
            and np.array_equal(seen.indptr, indptr)
            and np.array_equal(seen.indices, indices)
            and bool((np.asarray(seen.data) == 1).all())
        ):
            self.adjacency_ = seen
            return
        self.adjacency_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(n, n)
        )

    def _load_files(self, path: Path) -> None:
        self._build()

    def _explanation(
        self, user: int, candidate: int, score: float, via: np.ndarray, contributions: np.ndarray
    ) -> Explanation:
        assert self.users is not None
        return make_explanation(
            self.users, self.users, user, candidate, score, via, contributions, self.relation
        )

    @property
    @abstractmethod
    def relation(self) -> str:
        """What a candidate is to the nodes that explain it ("followed by", ...)."""


class TwoHopRetriever(GraphRetriever):
    r"""Base of the two-hop models: exact sparse scores ``F[u] diag(f) G``, batched and threaded.

    A subclass names itself, sets its config class and gives the middle-node
    weight :meth:`middle_weights` (and, for normalised scores such as
    Jaccard, :meth:`_normalise`).
    """

    config_class: ClassVar[type[RetrieverConfig]] = NeighborhoodConfig
    config: NeighborhoodConfig

    def _build(self) -> None:
        cfg = self.config
        first, second = reading_matrices(self.adjacency_, cfg.path)
        self.second_ = second
        self.degree_ = middle_degrees(first, second, cfg.degree)
        # Jaccard's set sizes are the true ones, whatever the caps below thin
        self.first_sizes_ = np.diff(first.indptr).astype(np.float32)
        # the user's own list is capped too (seeded apart from the hub sample)
        self.first_ = cap_rows(first, cfg.first_hop_cap, "sample", cfg.seed + 1)
        self.weights_ = self.middle_weights(self.degree_).astype(np.float32)
        capped = cap_rows(second, cfg.hub_cap, cfg.hub_policy, cfg.seed)
        expansion = (sp.diags(self.weights_) @ capped).tocsr().astype(np.float32)
        del capped
        expansion.sort_indices()
        self.expansion_t_ = expansion.T.tocsr()
        self.expansion_t_.sort_indices()
        # [E; -inf I]: multiplying [F[users], forbidden] by it vetoes the forbidden pairs
        # inside the product, cheaper than a sparse sum with the unsorted product after it
        veto = sp.identity(self.n_users, dtype=np.float32, format="csr") * np.float32(-np.inf)
        self._set_expansion(sp.vstack([expansion, veto], format="csr"))
        self._derive()

    def _set_expansion(self, with_veto: sp.csr_matrix) -> None:
        """``[E; -inf I]`` and ``E`` as a view of its first rows: the weighted expansion is
        held once (it was a second copy, 8 bytes a follow), mapped or not."""
        n = self.n_users
        self._expansion_with_veto = with_veto
        stop = int(with_veto.indptr[n])
        self.expansion_ = sp.csr_matrix(
            (with_veto.data[:stop], with_veto.indices[:stop], with_veto.indptr[: n + 1]),
            shape=(n, with_veto.shape[1]),
            copy=False,
        )
        self.expansion_.has_canonical_format = True  # rows of a canonical matrix

    def _derive(self) -> None:
        """The per-node arrays, from the matrices (built or mapped)."""
        self.weights_ = self.middle_weights(self.degree_).astype(np.float32)
        self._expansion_cast: sp.csr_matrix | None = None  # score_rows(dtype=float64)
        self.second_sizes_ = np.bincount(
            self.second_.indices, minlength=self.second_.shape[1]
        ).astype(np.float32)
        self._paths_per_middle = np.diff(self.expansion_.indptr).astype(np.int64)

    # ------------------------------------------------------------------ files
    #: Folder of the derived matrices, memory-mapped on load (every worker shares one copy).
    DERIVED = "two_hop"

    def _save_files(self, path: Path) -> None:
        """The derived matrices as ``.npy`` files, so that a loaded model maps them instead of
        building its own copies (~40 bytes a follow per server worker, before)."""
        folder = path / self.DERIVED
        parts, known = {}, {"adjacency": self.adjacency_}
        for name, matrix in (("first", self.first_), ("second", self.second_)):
            parts[name] = next((k for k, m in known.items() if m is matrix), "file")
            if parts[name] == "file":
                save_csr(folder, name, matrix)
            known[name] = matrix
        save_csr(folder, "expansion_veto", self._expansion_with_veto)
        save_csr(folder, "expansion_t", self.expansion_t_)
        save_array(folder / "degree.npy", self.degree_)
        save_array(folder / "first_sizes.npy", self.first_sizes_)
        (folder / "parts.json").write_text(json.dumps(parts, sort_keys=True) + "\n")

    def _load_files(self, path: Path) -> None:
        folder = path / self.DERIVED
        if not (folder / "parts.json").exists():  # saved before the files: derive them
            self._build()
            return
        parts = json.loads((folder / "parts.json").read_text())
        n = self.n_users
        named = {"adjacency": self.adjacency_}
        for name in ("first", "second"):  # in this order: "second" may name "first"
            given = named.get(parts[name])
            named[name] = given if given is not None else load_binary_csr(folder, name, (n, n))
        self.first_, self.second_ = named["first"], named["second"]
        self._set_expansion(load_binary_csr(folder, "expansion_veto", (2 * n, n)))
        self.expansion_t_ = load_binary_csr(folder, "expansion_t", (n, n))
        self.degree_ = load_array(folder / "degree.npy", mmap=False)
        self.first_sizes_ = load_array(folder / "first_sizes.npy", mmap=False)
        self._derive()

    def _warm_up_request_kernels(self) -> None:
        from recgraph.data import row_kernels  # numba: not on import
        from recgraph.retrieval import score_kernels

        # (its own _recommend: never the dense rows' top_row or masked_top)
        row_kernels.warm_up()  # a request's pair products (score_pairs, explain)
        if self._scores_are_sums:  # (Jaccard's never call it)
            score_kernels.warm_up_paths(self.first_, self.expansion_)  # _recommend_one's list

    @abstractmethod
    def middle_weights(self, degree: np.ndarray) -> np.ndarray:
        """``f(deg w)``: the weight of one path through each middle node."""

    def _normalise(self, common: np.ndarray, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Turn summed path weights of pairs into the model's score (identity here)."""
        return common

    @property
    def _scores_are_sums(self) -> bool:
        """Whether this model keeps :meth:`_normalise` as the identity (not Jaccard): its
        scores are the path sums themselves, which the one-request kernel adds."""
        return type(self)._normalise is TwoHopRetriever._normalise

    @property
    def relation(self) -> str:
        """What a candidate is to the middle nodes of its paths."""
        return RELATION["friends" if self.graph_kind == "friends" else self.config.path]

    def path_counts(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        """Two-hop paths the product expands for each user (after the hub cap): the work."""
        users = self._check_users(users)
        return np.asarray(self.first_[users] @ self._paths_per_middle, dtype=np.int64).ravel()

    def score_rows(
        self, users: Sequence[int] | np.ndarray, dtype: type = np.float32
    ) -> sp.csr_matrix:
        """Exact scores of ``users`` against every account, as a sparse ``(len(users), n)`` matrix.

        Nothing is masked (seen accounts and the user itself included);
        accounts without a path score 0 and are not stored. ``np.float64``
        sums the same (float32) path weights in double precision, as the
        distributed jobs of :mod:`recgraph.jobs.candidates` do.
        """
        return self._scores(self._check_users(users), None, dtype)

    def _scores(
        self, users: np.ndarray, forbidden: sp.csr_matrix | None, dtype: type = np.float32
    ) -> sp.csr_matrix:
        """Score rows, with ``-inf`` on the nonzero entries of ``forbidden`` when given."""
        if forbidden is None:
            expansion = self.expansion_
            if dtype != np.float32:
                if self._expansion_cast is None or self._expansion_cast.dtype != dtype:
                    self._expansion_cast = self.expansion_.astype(dtype)
                expansion = self._expansion_cast
            block = (self.first_[users] @ expansion).tocsr()
        else:
            paths = sp.hstack([self.first_[users], forbidden], format="csr")
            block = (paths @ self._expansion_with_veto).tocsr()
        if not self._scores_are_sums and block.nnz:
            scored = np.flatnonzero(block.data > 0)
            rows = users[np.searchsorted(block.indptr, scored, side="right") - 1]
            block.data[scored] = self._normalise(
                block.data[scored], rows, block.indices[scored]
            ).astype(block.dtype)
        return block

    def score_pairs(
        self, users: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Exact scores of the pairs ``(users[i], targets[i])`` (float32)."""
        users = self._check_users(users)
        targets = self._check_users(targets)
        if len(users) != len(targets):
            raise ValueError("users and targets differ in length")
        user = one_user(users)
        part = None
        if user is not None:
            # a request's pairs (one user): its paths read once from the expansion's rows,
            # the same products in the same order as the row-per-pair product below
            part = row_products(self.first_, user, self.expansion_t_, targets, self.expansion_)
        if part is not None:
            sums = row_sums(part[0], part[2]).astype(np.float32)
        else:
            common = self.first_[users].multiply(self.expansion_t_[targets])
            sums = np.asarray(common.sum(axis=1), dtype=np.float32).ravel()
        return self._normalise(sums, users, targets).astype(np.float32)

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """Top ``k`` accounts for each of ``users``; see :meth:`Retriever.recommend`.

        Users are scored in batches of at most ``batch_paths`` two-hop paths,
        on ``n_threads`` threads, and each sparse score row is cut to its top
        ``k`` by :func:`sparse_top_k`: exact, and never ``n x n``.
        """
        exclude_seen, exclude_m, allowed = request.exclude_seen, request.exclude, request.allowed
        if len(users) == 1 and allowed is None:
            fast = self._recommend_one(int(users[0]), k, exclude_seen, exclude_m)
            if fast is not None:
                return fast
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        spans = spans_by_work(self.path_counts(users), self.config.batch_paths)

        def work(start: int, stop: int) -> None:
            batch = users[start:stop]
            forbidden = self.forbidden(
                batch, exclude_seen, None if exclude_m is None else exclude_m[start:stop]
            )
            ids[start:stop], scores[start:stop] = sparse_top_k(
                self._scores(batch, forbidden),
                k,
                allowed=allowed[start:stop] if sp.issparse(allowed) else allowed,
            )

        run_batches(
            spans,
            work,
            resolve_threads(self.config.n_threads),
            f"{self.name} top-{k}",
            len(users),
        )
        return ids, scores

    def _recommend_one(
        self, user: int, k: int, exclude_seen: bool, exclude: sp.csr_matrix | None
    ) -> TopK | None:
        """One request's top ``k`` from its own paths, without sparse matrices.

        The paths' weights are added per account in float32, path by path in
        the order the product ``F[u] @ E`` adds them (the user's row as stored,
        each middle's row as stored), so the scores are its bits; the order is
        :func:`sparse_top_k`'s (best first, ties to the lower index), with
        zero-score accounts after the scored ones when fewer than ``k`` score
        above 0 (:func:`zero_filled`). ``None`` (the general path) for
        normalised scores.
        """
        if not self._scores_are_sums:
            return None
        blocked = []
        if exclude_seen:  # what _seen_or_self holds for this user, without building it
            seen = self._seen
            assert seen is not None
            blocked += [seen.indices[seen.indptr[user] : seen.indptr[user + 1]], np.array([user])]
        if exclude is not None:
            blocked.append(exclude.indices[exclude.indptr[0] : exclude.indptr[1]])
        if self._dense_paths(user):
            from recgraph.retrieval import score_kernels  # numba: not on import

            # the sums, the bar, the cut and the short list's zeros in one compiled call
            first, expansion = self.first_, self.expansion_
            bar = [np.asarray(b, np.int64) for b in blocked] or [np.zeros(0, np.int64)]
            ids, scores = score_kernels.paths_top(
                frozen(first.indptr), frozen(first.indices), frozen(first.data), user,
                frozen(expansion.indptr), frozen(expansion.indices), frozen(expansion.data),
                expansion.shape[1], np.concatenate(bar), k,
            )  # fmt: skip
            return ids[None, :], scores[None, :]
        reached, sums = path_sums_numpy(self.first_, self.expansion_, user)  # (not dense)
        keep = sums > 0
        # sorted runs (the seen row, thousands long for a heavy user, comes sorted)
        barred = distinct_sorted(np.concatenate(blocked), runs=True) if blocked else reached[:0]
        if blocked:
            keep &= ~in_sorted(barred, reached)
        reached, sums = reached[keep].astype(np.int64), sums[keep].astype(np.float32)
        if len(sums) < k:
            order = np.lexsort((reached, -sums))
            return zero_filled(reached[order], sums[order], barred, k, self.expansion_.shape[1])
        order = best_first(sums, reached, k)
        return reached[order][None, :], sums[order][None, :]

    def _dense_paths(self, user: int) -> bool:
        """Whether ``user``'s paths are summed compiled, dense over the accounts: many paths
        against the accounts, and arrays of the kinds the kernels are compiled for."""
        first, expansion = self.first_, self.expansion_
        lo, hi = first.indptr[user], first.indptr[user + 1]
        middles = first.indices[lo:hi]
        paths = int((expansion.indptr[middles + 1] - expansion.indptr[middles]).sum())
        return (
            expansion.shape[1] <= DENSE_LOOKUP * paths
            and first.dtype == expansion.dtype
            and first.dtype in KERNEL_FLOATS
            and first.indptr.dtype in KERNEL_INDICES
            and first.indices.dtype == first.indptr.dtype
            and expansion.indptr.dtype in KERNEL_INDICES
            and expansion.indices.dtype == expansion.indptr.dtype
        )

    def forbidden(
        self, users: np.ndarray, exclude_seen: bool = True, exclude: sp.csr_matrix | None = None
    ) -> sp.csr_matrix | None:
        """What these users must not get: seen accounts and themselves, plus ``exclude``."""
        forbidden = self._seen_or_self(users) if exclude_seen else None
        if exclude is not None:
            # binary, so that whatever values the caller stored, the product vetoes with -inf
            exclude = _binary(exclude)
            forbidden = exclude if forbidden is None else _binary(forbidden + exclude)
        return forbidden

    def _seen_or_self(self, users: np.ndarray) -> sp.csr_matrix:
        """Binary rows of what each of ``users`` has seen, and itself: built per batch
        from the (shared) seen matrix instead of held whole (8 bytes a follow)."""
        assert self._seen is not None
        n = len(users)
        own = sp.csr_matrix(
            (np.ones(n, np.float32), (np.arange(n), users)), shape=(n, self._seen.shape[1])
        )
        return _binary(self._seen[users] + own)

    # ------------------------------------------------------------------ explanations
    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """The middle nodes behind each candidate's score, best first.

        Parameters
        ----------
        user
            User index.
        candidates
            Target indices (e.g. the ids ``recommend`` returned).
        top
            Middle nodes per candidate (``None``: all, and then the
            contributions sum to the score).

        Returns
        -------
        list of Explanation
            One per candidate, in order: for ``out_out`` the accounts the
            user follows that follow the candidate ("followed by X and Y").
        """
        user = int(self._check_users([user])[0])
        candidates = self._check_users(candidates)
        first = self.first_
        lo, hi = first.indptr[user], first.indptr[user + 1]
        middles = first.indices[lo:hi]
        # the pair products score_pairs reads are the paths themselves when the user's first
        # hop is binary (1 x weight): read once, from whichever side is smaller, for both the
        # scores and the middles (re-reading every middle's row was most of a heavy user's
        # explanation)
        part = None
        if bool((first.data[lo:hi] == 1).all()):
            part = row_products(first, user, self.expansion_t_, candidates, self.expansion_)
        if part is not None:
            indptr, vias, values = part
            sums = row_sums(indptr, values).astype(np.float32)
            users = np.full(len(candidates), user)
            scores = self._normalise(sums, users, candidates).astype(np.float32)
        else:
            indptr, rows, values = self._through(middles, candidates)
            vias = middles[rows]
            scores = self.score_pairs(np.full(len(candidates), user), candidates)
        out = []
        for j, candidate in enumerate(candidates):
            lo, hi = indptr[j], indptr[j + 1]
            via = vias[lo:hi]
            contrib = values[lo:hi].astype(np.float64)
            # a normalised score (Jaccard) shares its value out in proportion to the paths
            total = contrib.sum()
            if total > 0:
                contrib *= float(scores[j]) / total
            via, contrib = top_contributions(via, contrib, top)
            out.append(self._explanation(user, candidate, scores[j], via, contrib))
        return out

    def _through(
        self, middles: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``expansion_[middles][:, candidates]`` by column, as CSC arrays ``(indptr, rows,
        values)``: per candidate, the positions in ``middles`` of its paths, ascending.

        Read from the middles' rows (a few thousand entries): slicing the
        expansion's columns scans all of it. Repeated candidates take scipy's way.
        """
        order = np.argsort(candidates, kind="stable")
        ranked = candidates[order]
        if len(ranked) > 1 and not (np.diff(ranked) > 0).all():
            through = self.expansion_[middles][:, candidates].tocsc()
            return through.indptr, through.indices, through.data
        pos, owner = row_entries(self.expansion_, middles)
        at, hit = find_sorted(ranked, self.expansion_.indices[pos])
        column, owner, pos = order[at[hit]], owner[hit], pos[hit]
        by_column = np.argsort(column, kind="stable")  # owners stay ascending within each
        indptr = np.zeros(len(candidates) + 1, dtype=np.int64)
        np.cumsum(np.bincount(column, minlength=len(candidates)), out=indptr[1:])
        return indptr, owner[by_column], self.expansion_.data[pos[by_column]]


def path_sums_numpy(
    first: sp.csr_matrix, expansion: sp.csr_matrix, user: int
) -> tuple[np.ndarray, np.ndarray]:
    """The accounts ``user``'s two-hop paths reach (ascending) and each one's sum of path
    weights, added in the order ``F[u] @ E`` adds them: work in the paths, not the accounts
    (:func:`~recgraph.retrieval.score_kernels.paths_top` sums over every account, for users
    with many paths)."""
    lo, hi = first.indptr[user], first.indptr[user + 1]
    pos, owner = row_entries(expansion, first.indices[lo:hi])
    targets = expansion.indices[pos]
    products = np.multiply(first.data[lo:hi][owner], expansion.data[pos])
    # each account's paths in their order (a stable sort of the targets, which come in
    # sorted runs, one per middle), added one by one: a search of every path's target
    # in the reached accounts was a fifth of a request
    order, reached, group = sorted_groups(targets)
    sums = np.zeros(len(reached), dtype=products.dtype)
    np.add.at(sums, group, products[order])
    return reached, sums
