"""A LightGBM booster's trees evaluated by compiled loops, to the same doubles.

A request's ranker scores a few hundred rows with a few dozen small trees:
LightGBM's ``predict`` spent most of its time around the trees (building a
predictor and its parameters per call, turning each dense row into sparse
pairs and back), ~0.45 CPU ms a request for ~0.05 ms of tree walking.
:class:`CompiledTrees` reads the booster's own text model (thresholds and leaf
values written with 17 digits, so they parse to the same doubles) into flat
arrays, and decides each split as LightGBM's ``Tree::GetLeaf`` and
``NumericalDecision`` do (values read as float64 against the double thresholds),
summing the trees' outputs in LightGBM's order (from 0.0, tree after tree): the
scores are bit-identical. Trees of up to 64 leaves (the ranker's are 15) are
scored by bit vectors (:func:`predict_masks`, a block of rows a split at a time),
wider ones by walks (:func:`predict_raw`, a block of rows a tree at a time); on a
request's ~300 rows and ~70 15-leaf trees that is ~0.09 CPU ms against ~0.5 for
a row-by-row walk (benchmarks: the issue-14 report). The few models they do not
cover (categorical splits, linear trees, more than one tree per iteration) are
left to LightGBM, and every compiled model is checked against LightGBM on probe
rows when built (any difference: LightGBM answers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recgraph.compiled import kernel

#: LightGBM's ``kZeroThreshold`` (a float): dense values no larger in magnitude are zero.
ZERO_THRESHOLD = float(np.float32(1e-35))
#: Objectives whose ``predict`` output is the raw sum of the trees.
RAW_OUTPUT = ("lambdarank", "rank_xendcg")
_DEFAULT_LEFT = 2  # decision_type bit
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2  # (decision_type >> 2) & 3


#: Rows scored together, tree by tree (their values, float64, stay in L1: 128 x 40 x 8 B).
BLOCK_ROWS = 128
#: :func:`_pack`'s per-node flags: a NaN goes left; a zero is missing (goes the default way).
_NAN_LEFT, _ZERO_MISSING = 1, 2


@kernel
def _read_block(rows, first, general, values, out):
    """The block of rows from ``first`` (its size returned: :data:`BLOCK_ROWS` or what is
    left) as LightGBM's predictor reads a dense row, into ``values`` (feature by row):
    float64, zero when no larger than :data:`ZERO_THRESHOLD`, a NaN zero too unless
    ``general`` (see :func:`predict_raw`); their ``out`` set to ``0.0``, where the trees'
    sum starts."""
    m = min(BLOCK_ROWS, rows.shape[0] - first)
    for r in range(m):
        for f in range(rows.shape[1]):
            value = np.float64(rows[first + r, f])
            keep = abs(value) > ZERO_THRESHOLD or (general and np.isnan(value))
            values[f, r] = value if keep else 0.0
        out[first + r] = 0.0
    return m


@kernel
def predict_raw(rows, feature, threshold, right, flags, leaf_value, roots, depths, general, out):
    """Per row of ``rows`` (float32 or float64), the sum of the trees' leaf values in tree
    order (from ``0.0``, as LightGBM adds them), each leaf found as LightGBM's
    ``Tree::GetLeaf`` and ``NumericalDecision`` find it.

    The trees are in :func:`_pack`'s layout (each tree's nodes in pre-order, so a node's
    left child is the next node; a leaf is a node whose threshold, NaN, sends every row
    right, to itself). Each value is first read as LightGBM's predictor reads a dense row
    (float64, zero when no larger than :data:`ZERO_THRESHOLD`). Unless ``general``, every
    node's missing type is ``None``, which reads a NaN as 0: the rows' NaNs are zeros
    from the start and a step is one comparison. Tree by tree, :data:`BLOCK_ROWS` rows step
    down together as many times as the tree is deep, each step without a branch: one row's
    walk is a chain of dependent loads, the rows' chains do not wait on each other, and no
    branch depends on a row's values (a request's rows go left and right at random and stop
    at different depths: in a row-by-row walk mispredicted branches and the chain's
    latency were most of the time). ``general``: a step also reads the node's ``flags``
    (:data:`_NAN_LEFT`, :data:`_ZERO_MISSING`).
    """
    n, width = rows.shape
    n_trees = len(roots)
    values = np.empty((width, BLOCK_ROWS), dtype=np.float64)
    node = np.empty(BLOCK_ROWS, dtype=np.int64)
    for first in range(0, n, BLOCK_ROWS):
        m = _read_block(rows, first, general, values, out)
        for t in range(n_trees):
            root = np.int64(roots[t])
            for r in range(m):
                node[r] = root
            if general:
                for _ in range(depths[t]):
                    for r in range(m):
                        j = node[r]
                        value = values[feature[j], r]
                        kind = flags[j]
                        zero = ((kind & _ZERO_MISSING) != 0) & (value == 0.0)
                        default = (np.isnan(value) | zero) & ((kind & _NAN_LEFT) != 0)
                        go_left = np.int64(((value <= threshold[j]) & (not zero)) | default)
                        k = np.int64(right[j])
                        node[r] = k + (j + 1 - k) * go_left
            else:
                for _ in range(depths[t]):
                    for r in range(m):
                        j = node[r]
                        go_left = np.int64(values[feature[j], r] <= threshold[j])
                        k = np.int64(right[j])
                        node[r] = k + (j + 1 - k) * go_left
            for r in range(m):
                out[first + r] += leaf_value[node[r]]


#: Trees with at most this many leaves are scored by :func:`predict_masks` (a leaf a bit).
MASK_LEAVES = 64
#: De Bruijn's sequence for 64: ``(x & -x) * DE_BRUIJN >> 58`` is unique per lowest set bit.
_DE_BRUIJN = 0x03F79D71B4CB0A89
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
_LOWEST_BIT[[((1 << i) * _DE_BRUIJN % (1 << 64)) >> 58 for i in range(64)]] = np.arange(64)


@kernel
def predict_masks(rows, feature, threshold, keep, flags, split_start, leaf_value, leaf_start,
                  general, out):  # fmt: skip
    """:func:`predict_raw`'s sums (the same doubles, added in the same order) for trees of
    at most :data:`MASK_LEAVES` leaves, by QuickScorer's bit vectors (Lucchese et al.,
    SIGIR 2015) instead of walks: a tree's leaves numbered left to right, a row starts with
    every leaf possible and each split the row does not go left at (its values compared as
    :func:`predict_raw` compares them) clears the leaves of its left subtree (``keep``:
    the others' bits); the row's leaf is the leftmost still set, the lowest bit (the one
    its walk would reach: every split on that path sent it that way, and a leaf further
    left lies in the left subtree of a split on the path that sent it right). Every split
    is read, a tree's splits in any order, but a split is one comparison for a block of
    :data:`BLOCK_ROWS` rows whose values of its feature are contiguous: no load waits on
    another, no branch on a value, and the block's comparisons run in SIMD lanes (~3x the
    walks' speed on a request's ~300 rows, 15-leaf trees). ``split_start`` and
    ``leaf_start``: each tree's first split and first leaf (``leaf_value`` in left-to-right
    order)."""
    n, width = rows.shape
    n_trees = len(split_start) - 1
    values = np.empty((width, BLOCK_ROWS), dtype=np.float64)
    mask = np.empty(BLOCK_ROWS, dtype=np.uint64)
    everything = ~np.uint64(0)
    for first in range(0, n, BLOCK_ROWS):
        m = _read_block(rows, first, general, values, out)
        for t in range(n_trees):
            mask[:m] = everything
            for s in range(split_start[t], split_start[t + 1]):
                column = values[feature[s]]
                edge, kept = threshold[s], keep[s]
                if general:
                    kind = flags[s]
                    zero_missing, nan_left = (kind & _ZERO_MISSING) != 0, (kind & _NAN_LEFT) != 0
                    for r in range(m):
                        value = column[r]
                        zero = zero_missing & (value == 0.0)
                        left = ((value <= edge) & (not zero)) | (
                            (np.isnan(value) | zero) & nan_left
                        )
                        mask[r] &= kept | (np.uint64(0) - np.uint64(left))
                else:
                    for r in range(m):
                        mask[r] &= kept | (np.uint64(0) - np.uint64(column[r] <= edge))
            base = leaf_start[t]
            for r in range(m):
                lowest = mask[r] & (np.uint64(0) - mask[r])
                leaf = _LOWEST_BIT[(lowest * np.uint64(_DE_BRUIJN)) >> np.uint64(58)]
                out[first + r] += leaf_value[base + leaf]


_WALK_ARGS = ("feature", "threshold", "right", "flags", "leaf_value", "roots", "depths")
_MASK_ARGS = ("feature", "threshold", "keep", "flags", "split_start", "leaf_value", "leaf_start")


class CompiledTrees:
    """The first ``iterations`` trees of a booster in :func:`_pack`'s layout (see the module
    docstring).

    Build with :meth:`from_booster`, which returns ``None`` when the model is
    one the kernel does not cover or its scores differ from LightGBM's on
    probe rows.
    """

    def __init__(self, arrays: dict[str, np.ndarray], n_features: int) -> None:
        self.arrays = arrays
        self.n_features = n_features
        #: some node's missing type is not ``None`` (the kernels' ``general``)
        self.general = bool(arrays["missing"].any())
        #: the trees as :func:`predict_masks` reads them, or ``None`` (a tree too wide)
        self.masks = _masks(arrays)
        # the kernel's arrays, in its order: read once, not per request
        if self.masks is not None:
            self._kernel, names, found = predict_masks, _MASK_ARGS, self.masks
        else:
            self._kernel, names, found = predict_raw, _WALK_ARGS, arrays
        self._kernel_args = tuple(found[k] for k in names)

    @classmethod
    def from_booster(
        cls,
        booster: Any,
        iterations: int | None = None,
        raw_score: bool = True,
        text: str | None = None,
    ) -> CompiledTrees | None:
        """The booster's trees as LightGBM's ``predict(num_iteration=iterations,
        raw_score=raw_score)`` reads them (``iterations`` ``None`` or ``<= 0``: all). Without
        ``raw_score`` LightGBM transforms the sum by the objective (``binary``: a sigmoid):
        only an objective whose output is its raw score (``lambdarank``) compiles then. A
        model averaging its trees (``average_output``: random forest) is left to LightGBM.
        ``text``: the text model the booster was read from, when the caller has it (saves
        LightGBM writing it again, ~1.5 ms a load; the probe still compares with the
        booster's own ``predict``)."""
        trees, header = _parse_model(booster.model_to_string() if text is None else text)
        if trees is None or int(header.get("num_tree_per_iteration", "1")) != 1:
            return None
        if "average_output" in header:
            return None
        objective = header.get("objective", "").split()
        if not raw_score and (not objective or objective[0] not in RAW_OUTPUT):
            return None
        if iterations is not None and iterations > 0:
            trees = trees[:iterations]
        n_features = int(header["max_feature_idx"]) + 1
        flat = _flatten(trees)
        compiled = cls(_pack(flat), n_features)
        probe = _probe_rows(flat, n_features)
        expected = booster.predict(
            probe, num_iteration=iterations, num_threads=1, raw_score=raw_score
        )
        if not np.array_equal(compiled.predict(probe), expected):
            return None
        return compiled

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Raw scores (float64) of ``rows``, ``(n, n_features)``."""
        rows = np.ascontiguousarray(rows)  # one compiled layout (C), none at a request
        if rows.dtype != np.float32 and rows.dtype != np.float64:
            rows = rows.astype(np.float32)  # what LightGBM's predict converts other types to
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(
                f"rows have {rows.shape[-1]} features, the trees read {self.n_features}"
            )
        out = np.empty(rows.shape[0], dtype=np.float64)
        self._kernel(rows, *self._kernel_args, self.general, out)
        return out


def _parse_model(text: str) -> tuple[list[dict[str, str]] | None, dict[str, str]]:
    """The trees' ``key=value`` blocks and the header of a LightGBM text model (a flag line
    such as ``average_output``: its name, value ``""``); ``None`` trees when any tree is
    categorical or linear."""
    body = text.split("end of trees", 1)[0]
    blocks = body.split("\nTree=")
    header = {
        key: value for key, _, value in (line.partition("=") for line in blocks[0].splitlines())
    }
    trees = []
    for block in blocks[1:]:
        fields = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)
        if int(fields.get("num_cat", "0")) or int(fields.get("is_linear", "0")):
            return None, header
        trees.append(fields)
    return trees, header


def _flatten(trees: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Concatenated node and leaf arrays, with each tree's first node and leaf."""

    def numbers(fields: dict[str, str], key: str, dtype: type) -> np.ndarray:
        value = fields.get(key, "").split()
        return np.array([float(v) for v in value] if dtype is np.float64 else value, dtype=dtype)

    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "decision", "left", "right", "leaf_value")
    }
    node_start, leaf_start = [0], [0]
    for fields in trees:
        leaves = int(fields["num_leaves"])
        splits = leaves - 1
        parts["leaf_value"].append(numbers(fields, "leaf_value", np.float64)[:leaves])
        if splits:
            parts["feature"].append(numbers(fields, "split_feature", np.int64))
            parts["threshold"].append(numbers(fields, "threshold", np.float64))
            parts["decision"].append(numbers(fields, "decision_type", np.int64))
            parts["left"].append(numbers(fields, "left_child", np.int64))
            parts["right"].append(numbers(fields, "right_child", np.int64))
        node_start.append(node_start[-1] + splits)
        leaf_start.append(leaf_start[-1] + leaves)
    out = {key: np.concatenate(values) if values else np.zeros(0) for key, values in parts.items()}
    for key in ("feature", "decision", "left", "right"):
        out[key] = out[key].astype(np.int64)
    out["threshold"] = out["threshold"].astype(np.float64)
    out["leaf_value"] = out["leaf_value"].astype(np.float64)
    out["node_start"] = np.array(node_start, dtype=np.int64)
    out["leaf_start"] = np.array(leaf_start, dtype=np.int64)
    return out


@kernel
def _preorder(left, right, node_start, leaf_start, index, leaf, right_of, roots, depths):
    """Per packed node (:func:`_pack`), each tree's nodes in pre-order: its split's or
    leaf's index in :func:`_flatten`'s arrays (``index``, ``leaf``) and where a row it sends
    right goes (``right_of``: its right child, a leaf itself); per tree its first packed
    node and its depth (splits on its longest path). A compiled loop: ~1000 nodes walked in
    Python were ~1.5 ms of a load."""
    stack_node = np.empty(len(index) + 1, np.int64)
    stack_depth = np.empty(len(index) + 1, np.int64)
    stack_parent = np.empty(len(index) + 1, np.int64)
    at = 0
    for t in range(len(node_start) - 1):
        base, leaves = node_start[t], leaf_start[t]
        roots[t] = at
        deepest = 0
        stack_node[0] = 0 if node_start[t + 1] > base else -1
        stack_depth[0], stack_parent[0] = 0, -1
        top = 1
        while top:
            top -= 1
            child, depth, parent = stack_node[top], stack_depth[top], stack_parent[top]
            if parent >= 0:
                right_of[parent] = at
            if child < 0:
                index[at], leaf[at], right_of[at] = leaves + ~child, True, at
                deepest = max(deepest, depth)
            else:
                index[at], leaf[at] = base + child, False
                # the left child is next (pushed last); the right one records its index
                stack_node[top], stack_depth[top], stack_parent[top] = (
                    right[base + child],
                    depth + 1,
                    at,
                )
                stack_node[top + 1], stack_depth[top + 1], stack_parent[top + 1] = (
                    left[base + child],
                    depth + 1,
                    -1,
                )
                top += 2
            at += 1
        depths[t] = deepest


def _pack(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`_flatten`'s trees in :func:`predict_raw`'s layout: one node array per field
    over the whole ensemble, each tree's nodes in pre-order (a split's left child right
    after it, ``right`` its right child's index), a leaf a node with threshold NaN
    (no value is ``<=`` it: a row goes ``right``, to the leaf itself) and its value in
    ``leaf_value`` (0 at splits); ``roots`` and ``depths`` (splits on the longest path)
    per tree; ``flags`` (:data:`_NAN_LEFT`, :data:`_ZERO_MISSING`) and ``missing`` (the
    node's missing type) per node, as LightGBM's ``NumericalDecision`` reads
    ``decision_type``: a NaN is read as 0 unless the missing type is ``NaN``; a NaN (type
    ``NaN`` or ``Zero``) or a zero (type ``Zero``) goes the default way."""
    node_start, leaf_start = flat["node_start"], flat["leaf_start"]
    n_trees = len(node_start) - 1
    size = int(node_start[-1] + leaf_start[-1])
    index, leaf = np.empty(size, np.int64), np.empty(size, np.bool_)
    right, roots, depths = (
        np.empty(size, np.int32),
        np.empty(n_trees, np.int32),
        np.empty(n_trees, np.int32),
    )
    _preorder(
        flat["left"], flat["right"], node_start, leaf_start, index, leaf, right, roots, depths
    )
    split = np.where(leaf, 0, index)  # a leaf's split fields: any (unread or never decisive)
    kind = flat["decision"][split] if len(flat["decision"]) else np.zeros(len(index), np.int64)
    missing = np.where(leaf, 0, (kind >> 2) & 3)
    default_left = (kind & _DEFAULT_LEFT) != 0
    threshold = np.where(leaf, np.nan, flat["threshold"][split] if len(flat["threshold"]) else 0.0)
    nan_left = np.where(missing == _MISSING_NONE, threshold >= 0.0, default_left)
    flags = np.where(leaf, 0, nan_left * _NAN_LEFT + (missing == _MISSING_ZERO) * _ZERO_MISSING)
    return {
        "feature": np.where(leaf, 0, flat["feature"][split] if len(flat["feature"]) else 0).astype(
            np.int32
        ),
        "threshold": threshold.astype(np.float64),
        "right": right,
        "flags": flags.astype(np.int32),
        "missing": missing.astype(np.int8),
        "leaf_value": np.where(leaf, flat["leaf_value"][np.where(leaf, index, 0)], 0.0),
        "roots": roots,
        "depths": depths,
    }


def _masks(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """:func:`_pack`'s trees as :func:`predict_masks` reads them (``None`` when a tree has
    more than :data:`MASK_LEAVES` leaves): per split, in pre-order, its feature, threshold,
    flags and ``keep``, every bit but its left subtree's leaves (numbered left to right in
    its tree: pre-order meets leaves left to right, and a split's left subtree is the nodes
    between it and its right child); per tree its first split and first leaf."""
    right = packed["right"].astype(np.int64)
    at = np.arange(len(right))
    leaf = right == at
    roots = packed["roots"].astype(np.int64)
    sizes = np.diff(np.append(roots, len(right)))
    before = np.concatenate([[0], np.cumsum(leaf)])  # leaves before each packed node
    leaves = before[np.append(roots[1:], len(right))] - before[roots]
    if len(leaves) and leaves.max() > MASK_LEAVES:
        return None
    split = np.flatnonzero(~leaf)
    root_leaves = np.repeat(before[roots], sizes)[split]
    low = (before[split + 1] - root_leaves).astype(np.uint64)  # left subtree: [low, high)
    high = (before[right[split]] - root_leaves).astype(np.uint64)
    left_bits = ((np.uint64(1) << (high - low)) - np.uint64(1)) << low  # high <= 63: a leaf right
    splits_of = np.repeat(np.arange(len(roots)), sizes)[split]
    return {
        "feature": packed["feature"][split],
        "threshold": packed["threshold"][split],
        "keep": ~left_bits,
        "flags": packed["flags"][split],
        "split_start": np.searchsorted(splits_of, np.arange(len(roots) + 1)).astype(np.int64),
        "leaf_value": packed["leaf_value"][leaf],
        "leaf_start": np.append(before[roots], before[-1]).astype(np.int64),
    }


def _probe_rows(flat: dict[str, np.ndarray], n_features: int, n: int = 256) -> np.ndarray:
    """float32 rows whose values sit on, just around and far from the trees' thresholds,
    with zeros, NaNs and values below LightGBM's zero threshold: where a different decision
    would show. ``2 * n'`` rows, ``n'`` the larger of ``n`` and the most distinct thresholds
    of one feature: the edge rows, where every distinct threshold of a feature (float32, as a
    request's features are) is in some row of its own, as itself or one float32 step below or
    above (a feature's splits in different rows from a row chosen at random, its distinct
    thresholds first, while rows last), so a node the compiled walk decides otherwise than
    LightGBM does meets a value on its edge; then a copy of them with NaNs, zeros and tiny
    values written over ~22% of every column (written before the thresholds only, a feature
    split ``n'`` times would have none)."""
    rng = np.random.default_rng(0)
    features = flat["feature"]
    if len(features):
        # the splits by feature, then threshold (two sorts: a radix one on small ints, ~5x
        # faster than lexsort), and each split's rank in its feature: distinct thresholds
        # first (a threshold's first split), then the repeats
        by_value = np.argsort(flat["threshold"])
        small = features[by_value].astype(np.min_scalar_type(n_features))
        order = by_value[np.argsort(small, kind="stable")]
        feature, on = features[order], flat["threshold"][order]
        repeat = np.append(False, (feature[1:] == feature[:-1]) & (on[1:] == on[:-1]))
        first = np.searchsorted(feature, feature)  # each feature's first split
        last = np.searchsorted(feature, feature, side="right")
        distinct = np.append(0, np.cumsum(~repeat))  # distinct before each split
        repeats = np.append(0, np.cumsum(repeat))
        at = np.arange(len(order))
        own = distinct[last] - distinct[first]  # the feature's distinct thresholds
        rank = np.where(repeat, own + repeats[at] - repeats[first], distinct[at] - distinct[first])
        n = max(n, int(own.max()))
    rows = rng.normal(0, 10, (n, n_features)).astype(np.float32)
    _write_gaps(rows, rng)
    if len(features):
        place = rank < n  # a row a split, none written twice
        start = rng.integers(0, n, n_features)[feature]
        row = (rank + start) % n
        on = on.astype(np.float32)
        step = rng.integers(0, 3, len(features))  # on, below, above
        away = np.where(step == 1, np.float32(-np.inf), np.float32(np.inf))
        edge = np.where(step == 0, on, np.nextafter(on, away))
        rows[row[place], feature[place]] = edge[place]
    gaps = rows.copy()
    _write_gaps(gaps, rng)
    return np.vstack([rows, gaps])


def _write_gaps(rows: np.ndarray, rng: np.random.Generator) -> None:
    """NaNs over ~10% of ``rows``' values, zeros over ~10%, values below LightGBM's zero
    threshold (``1e-38``) over ~2%."""
    special = rng.random(rows.shape)
    rows[special < 0.1] = np.nan
    rows[(special >= 0.1) & (special < 0.2)] = 0.0
    rows[(special >= 0.2) & (special < 0.22)] = np.float32(1e-38)


def warm_up() -> None:
    """Compile (or read from numba's cache) :func:`predict_masks` and :func:`predict_raw`
    for float32 rows, the type a request's features are, so a loaded model's first request
    does not."""
    flat = {
        "feature": np.zeros(1, np.int64),
        "threshold": np.zeros(1, np.float64),
        "decision": np.zeros(1, np.int64),
        "left": np.array([-1], np.int64),
        "right": np.array([-2], np.int64),
        "leaf_value": np.zeros(2, np.float64),
        "node_start": np.array([0, 1], np.int64),
        "leaf_start": np.array([0, 2], np.int64),
    }
    trees = CompiledTrees(_pack(flat), 1)
    trees.predict(np.zeros((1, 1), np.float32))
    predict_raw(np.zeros((1, 1), np.float32), *(trees.arrays[k] for k in _WALK_ARGS), False,
                np.zeros(1))  # fmt: skip
