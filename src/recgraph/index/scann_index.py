"""ScaNN (Guo et al., 2020): partitioning, anisotropic quantization, then exact re-ranking.

Needs ``scann`` (the ``scann`` extra); it is imported only when an index is
built or loaded, so this module and its config load without it. ScaNN takes no
filter, so exclusions go through :func:`~recgraph.index.base.overfetch_search`:
fetch more than ``k``, drop the excluded, fetch again if too few are left;
nothing excluded is ever returned.

Saved with ScaNN's own serialisation into the folder ``scann/`` (protobuf and
``.npy`` files, relative paths, no document ids and so no pickle).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field

from recgraph.errors import ConfigError
from recgraph.index.base import (
    Excluded,
    Hits,
    Index,
    IndexConfig,
    Mask,
    overfetch_search,
    partition_count,
)

SCANN_DIR = "scann"
#: Batches at least this large use ScaNN's multi-threaded batch search.
PARALLEL_BATCH = 32
#: Below this many items the index is always brute force (quantization needs training data).
MIN_PARTITIONED_ITEMS = 256


def import_scann() -> ModuleType:
    """The ``scann`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import scann
    except ImportError as exc:
        raise ConfigError(
            "index 'scann' needs the scann package: pip install 'recgraph[scann]' "
            f"(import failed: {exc})"
        ) from exc
    return scann


class ScannConfig(IndexConfig):
    """How ScaNN partitions, quantizes and re-ranks.

    ``n_leaves`` k-means partitions (default ``sqrt(n_items)``), of which a
    query searches ``leaves_to_search`` (default ``n_leaves / 20``, at least
    1); inside them, items are scored by anisotropic product quantization
    (``dims_per_block`` dimensions per 4-bit code; ``anisotropic_threshold``
    weights the error parallel to the item for ``ip``), and the best
    ``reorder`` of those are re-scored exactly. Below ``brute_force_below``
    items the index is exact brute force (partitioning does not pay there).
    """

    n_leaves: int | None = Field(default=None, ge=1)
    leaves_to_search: int | None = Field(default=None, ge=1)
    training_sample_size: int = Field(default=100_000, ge=100)
    dims_per_block: int = Field(default=2, ge=1)
    anisotropic_threshold: float = Field(default=0.2, ge=0.0)
    reorder: int = Field(default=200, ge=1)
    brute_force_below: int = Field(default=10_000, ge=0)


class ScannIndex(Index):
    r"""ScaNN: search a few k-means leaves by quantized scores, re-rank the best exactly.

    The anisotropic loss quantizes an item :math:`x` to :math:`\tilde x` weighting
    the error parallel to :math:`x` by :math:`h_\parallel` and the orthogonal
    error by :math:`h_\perp < h_\parallel`, because the parallel part is what
    changes the inner products of the queries that rank :math:`x` high.
    """

    name = "scann"
    config_class = ScannConfig
    config: ScannConfig

    def n_leaves_for(self, n_items: int) -> int:
        """``n_leaves`` if set, else ``sqrt(n)``; never more than the items."""
        return partition_count(self.config.n_leaves, n_items, round(math.sqrt(n_items)))

    def leaves_to_search_for(self, n_leaves: int) -> int:
        if self.config.leaves_to_search is not None:
            return min(self.config.leaves_to_search, n_leaves)
        return max(1, n_leaves // 20)

    @property
    def brute_force(self) -> bool:
        return self.n_items < max(self.config.brute_force_below, MIN_PARTITIONED_ITEMS)

    def _build(self, vectors: np.ndarray) -> None:
        scann = import_scann()
        distance = "dot_product" if self.metric == "ip" else "squared_l2"
        builder = scann.scann_ops_pybind.builder(vectors, 10, distance)
        if self.brute_force:
            builder = builder.score_brute_force()
        else:
            n_leaves = self.n_leaves_for(len(vectors))
            builder = builder.tree(
                num_leaves=n_leaves,
                num_leaves_to_search=self.leaves_to_search_for(n_leaves),
                training_sample_size=min(self.config.training_sample_size, len(vectors)),
            )
            threshold = self.config.anisotropic_threshold if self.metric == "ip" else float("nan")
            builder = builder.score_ah(
                self.config.dims_per_block, anisotropic_quantization_threshold=threshold
            )
            builder = builder.reorder(self.config.reorder)
        self.searcher_ = builder.build()

    def _raw_search(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered ScaNN search for ``fetch`` hits; empty slots ``-1`` / ``-inf``."""
        fetch = min(fetch, self.n_items)
        knobs: dict[str, int] = {"final_num_neighbors": fetch}
        if not self.brute_force:
            # search-time knobs come from the config, so they can be tuned on a built index
            knobs["pre_reorder_num_neighbors"] = max(self.config.reorder, fetch)
            knobs["leaves_to_search"] = self.leaves_to_search_for(self.n_leaves_for(self.n_items))
        if len(queries) >= PARALLEL_BATCH:
            found, distances = self.searcher_.search_batched_parallel(queries, **knobs)
        else:
            found, distances = self.searcher_.search_batched(queries, **knobs)
        found = np.asarray(found, dtype=np.int64).reshape(len(queries), -1)
        distances = np.asarray(distances, dtype=np.float32).reshape(len(queries), -1)
        empty = np.isnan(distances)
        scores = distances if self.metric == "ip" else -distances
        return np.where(empty, -1, found), np.where(empty, -np.inf, scores).astype(np.float32)

    def _search(self, queries: np.ndarray, k: int, exclude: Excluded, allowed: Mask) -> Hits:
        return overfetch_search(self._raw_search, queries, k, self.n_items, exclude, allowed)

    def _save_state(self, path: Path) -> None:
        folder = path / SCANN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.searcher_.serialize(str(folder), relative_path=True)

    def _load_state(self, path: Path) -> None:
        scann = import_scann()
        folder = path / SCANN_DIR
        if not (folder / "scann_assets.pbtxt").exists():
            raise FileNotFoundError(f"{folder}: no saved ScaNN searcher here")
        self.searcher_ = scann.scann_ops_pybind.load_searcher(
            str(folder), assets_backcompat_shim=False
        )

    def config_summary(self) -> dict[str, Any]:
        """The effective partitioning, after the automatic defaults are resolved."""
        if self.brute_force:
            return {"mode": "brute_force"}
        n_leaves = self.n_leaves_for(self.n_items)
        return {
            "mode": "tree+ah",
            "n_leaves": n_leaves,
            "leaves_to_search": self.leaves_to_search_for(n_leaves),
        }
