r"""EGOML scoring of every pair, and the per-user vectors for online ``E(u, v)``, on two engines.

With the A/B split (:class:`~recgraph.retrieval.egoml.model.EgoML`)
:math:`E(u, v) = \sum_c e^{a_c(u)} e^{b_c(v)}`, one independent term per
common neighbour ``c``. The job:

- **per centre** ``c``: apply model A and model B to the member rows of its
  neighbours (``x = exp a``, ``y = exp b``: the boosters travel as LightGBM
  text and are applied with
  :func:`~recgraph.retrieval.egoml.model.booster_logits`, the model's own);
- **map**: emit ``x_u[c] * y_v[c]`` for each ordered pair of neighbours
  (and ``x_u[c] * y_c[c]`` for the centre itself on follow graphs);
- **reduce** by pair, drop what ``u`` already has, **top-k** per user.

The feature rows (centre table and member table of
:mod:`~recgraph.retrieval.egoml.features`) are computed where the model
lives, on the driver, in ``O(|E|)`` memory, and handed to Spark as Parquet
(``work_dir``, a path both see): the quadratic part, the pairs
(:math:`\sum_c \deg(c)^2`), is what runs distributed.

The local engine reuses the fitted model: ``x`` and ``y`` from its fit, a
block of users at a time ``X[users] Y^T`` (the same sums) and exact top-k.
Only the A/B variant splits into per-edge terms; the exact variant runs on
the local engine only.

Vectors: ``x_u`` and ``y_u`` of every user, in the format and under the keys
of :mod:`recgraph.retrieval.egoml.online`, written to Redis by the local
engine through :func:`~recgraph.retrieval.egoml.online.export_vectors` and
by Spark's executors in parallel (the same bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recgraph.errors import ConfigError
from recgraph.jobs.candidates.output import CandidateLists
from recgraph.jobs.candidates.topk import local_top_k
from recgraph.retrieval.egoml.model import EgoML, booster_logits
from recgraph.retrieval.egoml.online import (
    RedisVectorStore,
    encode_vector,
    export_vectors,
    vector_key,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Edges per feature chunk written by the driver.
FEATURE_CHUNK_EDGES = 1_000_000
#: Boosters rebuilt from text, per executor process (keyed by the text's hash).
_BOOSTERS: dict[int, object] = {}


def check_model(model: EgoML, engine: str) -> None:
    """A fitted EGOML; the Spark engine needs the A/B variant."""
    if not isinstance(model, EgoML):
        raise ConfigError(f"the egoml job needs an EGOML model, got {type(model).__name__}")
    model._check_fitted()
    if engine == "spark" and model.config.variant != "ab":
        raise ConfigError(
            "the Spark egoml job needs variant='ab' (the exact variant's pair feature does "
            "not split into per-centre terms); use --engine local"
        )


# ---------------------------------------------------------------------- local
def egoml_local(model: EgoML, k: int, n_threads: int = 0) -> CandidateLists:
    """Top ``k`` of every user by ``E(u, v)`` (scored pairs only), in blocks of users."""
    check_model(model, "local")
    graph = model.graph_
    assert graph is not None and model.users is not None
    if model.config.variant == "ab":
        model.vectors()  # built once, before the threads share it
    ids, scores = local_top_k(
        model.n_users,
        k,
        score_rows=lambda users: model.score_rows(users, drop_seen=True),
        forbidden_rows=model.forbidden,
        work=graph.wedge_counts(),
        budget=model.config.batch_lookups,
        n_threads=n_threads if model.config.variant == "ab" else 1,
        description="egoml candidates",
    )
    return CandidateLists(users=model.users, ids=ids, scores=scores, source="egoml")


def egoml_vectors_local(model: EgoML, redis_url: str, namespace: str) -> int:
    """Write every user's ``x_u`` and ``y_u`` to Redis from this process; returns users."""
    check_model(model, "spark")
    return export_vectors(model, RedisVectorStore(redis_url), namespace=namespace)


# ---------------------------------------------------------------------- spark
def write_feature_tables(model: EgoML, work_dir: str | Path) -> dict[str, str]:
    """Write what Spark needs from the model as Parquet under ``work_dir``; returns the paths.

    ``centres``: ``c`` and the centre features; ``members``: ``c``, ``m``
    (the member) and the member features of the edge ``(c, m)``; ``self``
    (follow graphs): ``c`` and the member features of ``c`` in its own ego
    graph; ``seen``: the ``(u, v)`` pairs users already have.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_model(model, "spark")
    graph = model.graph_
    assert graph is not None and model._seen is not None
    tables = model._serving_tables()
    root = Path(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    paths = {name: str(root / f"{name}.parquet") for name in ("centres", "members", "seen")}

    def columns(prefix: str, block: np.ndarray) -> dict[str, np.ndarray]:
        return {f"{prefix}{i}": block[:, i] for i in range(block.shape[1])}

    nodes = np.arange(graph.n_nodes, dtype=np.int64)
    pq.write_table(pa.table({"c": nodes, **columns("f", tables.centre)}), paths["centres"])
    member_schema = None
    with_edges = tables.member[: graph.n_edges]
    writer = None
    try:
        for start in range(0, max(graph.n_edges, 1), FEATURE_CHUNK_EDGES):
            stop = min(start + FEATURE_CHUNK_EDGES, graph.n_edges)
            chunk = pa.table(
                {
                    "c": graph.edge_rows[start:stop],
                    "m": graph.indices[start:stop].astype(np.int64),
                    **columns("g", with_edges[start:stop]),
                }
            )
            if writer is None:
                member_schema = chunk.schema
                writer = pq.ParquetWriter(paths["members"], member_schema)
            writer.write_table(chunk)
    finally:
        if writer is not None:
            writer.close()
    if tables.self_rows:
        paths["self"] = str(root / "self.parquet")
        own = tables.member[graph.n_edges : graph.n_edges + graph.n_nodes]
        pq.write_table(pa.table({"c": nodes, **columns("g", own)}), paths["self"])
    seen = model._seen.tocoo()
    pq.write_table(
        pa.table({"u": seen.row.astype(np.int64), "v": seen.col.astype(np.int64)}), paths["seen"]
    )
    return paths


def _booster(text: str | None):
    """A LightGBM booster from its text, built once per executor process."""
    if not text:
        return None
    key = hash(text)
    booster = _BOOSTERS.get(key)
    if booster is None:
        import lightgbm as lgb

        booster = _BOOSTERS[key] = lgb.Booster(model_str=text)
    return booster


def _apply_models(
    batches: Iterator[pd.DataFrame],
    centre_cols: list[str],
    member_cols: list[str],
    texts: dict[str, str | None],
    outputs: tuple[str, ...],
) -> Iterator[pd.DataFrame]:
    """Rows ``[centre features, member features]`` through the boosters: ``exp`` of the logits."""
    for batch in batches:
        rows = np.hstack(
            [
                batch[centre_cols].to_numpy(dtype=np.float32),
                batch[member_cols].to_numpy(dtype=np.float32),
            ]
        )
        out = pd.DataFrame({"c": batch["c"].to_numpy(np.int64)})
        if "m" in batch:
            out["m"] = batch["m"].to_numpy(np.int64)
        for name in outputs:
            key = "a" if name == "x" else "b"
            out[name] = np.exp(booster_logits(_booster(texts[key]), rows, 1))
        yield out


def egoml_spark(
    spark: SparkSession, model: EgoML, k: int, work_dir: str | Path
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Top ``k`` by ``E`` on Spark: ``(ranked, nodes, members)``.

    ``ranked`` holds ``(u, v, score, rank)`` in the model's numbering,
    ``nodes`` ``(idx, id[, y_self])`` and ``members`` ``(c, m, x, y)``, what
    :func:`egoml_vectors_spark` writes out.
    """
    from pyspark.sql import functions as F

    from recgraph.jobs.candidates.spark import top_k_per_user

    paths = write_feature_tables(model, work_dir)
    texts = {
        key: (model.boosters_[key].model_to_string() if key in model.boosters_ else None)
        for key in ("a", "b")
    }
    centres = spark.read.parquet(paths["centres"])
    centre_cols = [c for c in centres.columns if c != "c"]
    members = spark.read.parquet(paths["members"])
    member_cols = [c for c in members.columns if c not in ("c", "m")]

    def scored_members(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _apply_models(batches, centre_cols, member_cols, texts, ("x", "y"))

    edge_values = (
        members.join(centres, "c")
        .mapInPandas(scored_members, "c long, m long, x double, y double")
        .persist()
    )
    left = edge_values.select("c", F.col("m").alias("u"), "x")
    right = edge_values.select("c", F.col("m").alias("v"), "y")
    partials = (
        left.join(right, "c")
        .filter(F.col("u") != F.col("v"))
        .select("u", "v", (F.col("x") * F.col("y")).alias("p"))
    )
    if "self" in paths:
        own = spark.read.parquet(paths["self"])

        def scored_self(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            return _apply_models(batches, centre_cols, member_cols, texts, ("y",))

        y_self = (
            own.join(centres, "c")
            .mapInPandas(scored_self, "c long, y double")
            .withColumnRenamed("y", "y_self")
        )
        partials = partials.union(
            left.join(y_self, "c").select(
                "u", F.col("c").alias("v"), (F.col("x") * F.col("y_self")).alias("p")
            )
        )
    else:
        y_self = None
    seen = spark.read.parquet(paths["seen"])
    scores = (
        partials.groupBy("u", "v")
        .agg(F.sum("p").alias("score"))
        .join(seen, ["u", "v"], "left_anti")
    )
    ranked = top_k_per_user(scores, k)
    assert model.users is not None
    nodes = spark.createDataFrame(
        pd.DataFrame(
            {"idx": np.arange(model.n_users, dtype=np.int64), "id": model.users.ids.astype(str)}
        ),
        "idx long, id string",
    )
    if y_self is not None:
        nodes = nodes.join(y_self.select(F.col("c").alias("idx"), "y_self"), "idx", "left")
    return ranked, nodes, edge_values


def egoml_vectors_spark(
    members: DataFrame, nodes: DataFrame, redis_url: str, namespace: str
) -> int:
    """Write every user's ``x_u`` and ``y_u`` to Redis from the executors; returns users.

    ``x_u[c] = x`` of the edge ``(c, u)``; ``y_u`` the same with ``y``, plus
    ``y_u[u] = y_self`` on follow graphs. Indices sorted, as
    :func:`~recgraph.retrieval.egoml.online.encode_vector` expects; users
    without edges get empty vectors, as the local export writes them.
    """
    from pyspark.sql import functions as F

    has_self = "y_self" in nodes.columns
    grouped = members.groupBy(F.col("m").alias("idx")).agg(
        F.sort_array(F.collect_list(F.struct("c", "x"))).alias("xs"),
        F.sort_array(F.collect_list(F.struct("c", "y"))).alias("ys"),
    )
    frame = nodes.join(grouped, "idx", "left").select(
        "idx",
        "id",
        F.col("xs.c").alias("x_index"),
        F.col("xs.x").alias("x_value"),
        F.col("ys.c").alias("y_index"),
        F.col("ys.y").alias("y_value"),
        *(["y_self"] if has_self else []),
    )

    def write(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        store = RedisVectorStore(redis_url)
        for batch in batches:
            items = []
            for row in batch.itertuples(index=False):
                x_index, x_value = _array(row.x_index, np.int64), _array(row.x_value, np.float64)
                y_index, y_value = _array(row.y_index, np.int64), _array(row.y_value, np.float64)
                own = getattr(row, "y_self", None)
                if own is not None and not pd.isna(own):
                    at = int(np.searchsorted(y_index, row.idx))
                    y_index = np.insert(y_index, at, row.idx)
                    y_value = np.insert(y_value, at, float(own))
                items.append((vector_key(namespace, "x", row.id), encode_vector(x_index, x_value)))
                items.append((vector_key(namespace, "y", row.id), encode_vector(y_index, y_value)))
            store.put_many(items)
            yield pd.DataFrame({"written": [len(batch)]})

    return int(frame.mapInPandas(write, "written long").agg(F.sum("written")).first()[0] or 0)


def _array(values, dtype) -> np.ndarray:
    """A Spark array cell (``None`` for a user without edges) as a numpy array."""
    if values is None or (not hasattr(values, "__len__") and pd.isna(values)):
        return np.zeros(0, dtype=dtype)
    return np.asarray(values, dtype=dtype)
