"""A LightGBM booster's trees evaluated by one compiled loop, to the same doubles.

A request's ranker scores a few hundred rows with a few dozen small trees:
LightGBM's ``predict`` spent most of its time around the trees (building a
predictor and its parameters per call, turning each dense row into sparse
pairs and back), ~0.45 CPU ms a request for ~0.05 ms of tree walking.
:class:`CompiledTrees` reads the booster's own text model (thresholds and leaf
values written with 17 digits, so they parse to the same doubles) into flat
arrays, and :func:`predict_raw` walks them as LightGBM's ``Tree::GetLeaf`` and
``NumericalDecision`` do, summing the trees' outputs in LightGBM's order: the
scores are bit-identical. The few models it does not cover (categorical
splits, linear trees, more than one tree per iteration) are left to LightGBM,
and every compiled model is checked against LightGBM on probe rows when built
(any difference: LightGBM answers).
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
_MISSING_ZERO, _MISSING_NAN = 1, 2  # (decision_type >> 2) & 3


@kernel
def predict_raw(
    rows, feature, threshold, decision, left, right, leaf_value, node_start, leaf_start, out
):
    """Per row of ``rows`` (float32 or float64), the sum of the trees' leaf values in tree
    order, each leaf found as LightGBM finds it.

    Each value is first read as LightGBM's predictor reads a dense row (float64, zero
    when no larger than :data:`ZERO_THRESHOLD`), then each node's decision is taken
    without a branch (a request's rows go left and right at random: mispredicted
    branches were most of the walk's time).
    """
    n, width = rows.shape
    n_trees = len(node_start) - 1
    values = np.empty(width, dtype=np.float64)
    for i in range(n):
        for f in range(width):
            value = np.float64(rows[i, f])
            values[f] = value if abs(value) > ZERO_THRESHOLD or np.isnan(value) else 0.0
        total = 0.0
        for t in range(n_trees):
            base = node_start[t]
            if node_start[t + 1] == base:  # one leaf, no split
                total += leaf_value[leaf_start[t]]
                continue
            node = 0
            while node >= 0:
                j = base + node
                value = values[feature[j]]
                kind = decision[j]
                missing = (kind >> 2) & 3
                nan = np.isnan(value)
                # a NaN reads as 0 unless the node sends NaNs its default way
                plain = 0.0 if nan else value
                default = (missing == _MISSING_NAN and nan) or (
                    missing == _MISSING_ZERO and plain == 0.0
                )
                go_left = ((kind & _DEFAULT_LEFT) != 0) if default else (plain <= threshold[j])
                node = left[j] if go_left else right[j]
            total += leaf_value[leaf_start[t] + ~node]
        out[i] = total


class CompiledTrees:
    """The first ``iterations`` trees of a booster as flat arrays (see the module docstring).

    Build with :meth:`from_booster`, which returns ``None`` when the model is
    one the kernel does not cover or its scores differ from LightGBM's on
    probe rows.
    """

    def __init__(self, arrays: dict[str, np.ndarray], n_features: int) -> None:
        self.arrays = arrays
        self.n_features = n_features

    @classmethod
    def from_booster(
        cls, booster: Any, iterations: int | None = None, raw_score: bool = True
    ) -> CompiledTrees | None:
        """The booster's trees as LightGBM's ``predict(num_iteration=iterations,
        raw_score=raw_score)`` reads them (``iterations`` ``None`` or ``<= 0``: all). Without
        ``raw_score`` LightGBM transforms the sum by the objective (``binary``: a sigmoid):
        only an objective whose output is its raw score (``lambdarank``) compiles then. A
        model averaging its trees (``average_output``: random forest) is left to LightGBM."""
        trees, header = _parse_model(booster.model_to_string())
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
        compiled = cls(_flatten(trees), n_features)
        probe = _probe_rows(compiled.arrays, n_features)
        expected = booster.predict(
            probe, num_iteration=iterations, num_threads=1, raw_score=raw_score
        )
        if not np.array_equal(compiled.predict(probe), expected):
            return None
        return compiled

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Raw scores (float64) of ``rows``, ``(n, n_features)``."""
        rows = np.ascontiguousarray(rows)
        if rows.dtype not in (np.float32, np.float64):
            rows = rows.astype(np.float32)  # what LightGBM's predict converts other types to
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(
                f"rows have {rows.shape[-1]} features, the trees read {self.n_features}"
            )
        out = np.empty(rows.shape[0], dtype=np.float64)
        a = self.arrays
        predict_raw(
            rows, a["feature"], a["threshold"], a["decision"], a["left"], a["right"],
            a["leaf_value"], a["node_start"], a["leaf_start"], out,
        )  # fmt: skip
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


def _probe_rows(arrays: dict[str, np.ndarray], n_features: int, n: int = 256) -> np.ndarray:
    """float32 rows whose values sit on, just around and far from the trees' thresholds,
    with zeros and NaNs: where a different decision would show."""
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 10, (n, n_features)).astype(np.float32)
    features, thresholds = arrays["feature"], arrays["threshold"]
    if len(features):
        picks = rng.integers(0, len(features), (n, 4))
        for i in range(n):
            for j in picks[i]:
                t = np.float32(thresholds[j])
                rows[i, features[j]] = rng.choice(
                    [t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))]
                )
    special = rng.random((n, n_features))
    rows[special < 0.1] = np.nan
    rows[(special >= 0.1) & (special < 0.2)] = 0.0
    rows[(special >= 0.2) & (special < 0.22)] = np.float32(1e-38)
    return rows


def warm_up() -> None:
    """Compile (or read from numba's cache) :func:`predict_raw` for float32 rows, the type
    a request's features are, so a loaded model's first request does not."""
    trees = {
        "feature": np.zeros(1, np.int64),
        "threshold": np.zeros(1, np.float64),
        "decision": np.zeros(1, np.int64),
        "left": np.array([-1], np.int64),
        "right": np.array([-2], np.int64),
        "leaf_value": np.zeros(2, np.float64),
        "node_start": np.array([0, 1], np.int64),
        "leaf_start": np.array([0, 2], np.int64),
    }
    CompiledTrees(trees, 1).predict(np.zeros((1, 1), np.float32))
