r"""Common neighbours, Adamic-Adar, resource allocation and Jaccard for every user, on two engines.

The score of :mod:`recgraph.retrieval.neighborhood`,
:math:`s(u, v) = \sum_w F[u, w] f(\deg w) G[w, v]`, is a MapReduce job:

- **map over centres** ``w``: pair each ``u`` with ``F[u, w] = 1`` with each
  ``v`` of the (hub-capped) row ``G[w]``, and emit ``(u, v, f(deg w))``;
- **reduce over pairs**: sum the emissions of each ``(u, v)`` (Jaccard then
  divides by the union of the two neighbourhoods);
- **top-k per user**, without what ``u`` already follows and ``u`` itself.

Both engines take every setting from the model's own config (``path``,
``degree``, ``hub_cap``, ``hub_policy``, ``first_hop_cap``, ``seed``) and
mean the same by it:

- ``local`` fits the retriever itself and reuses its matrices: a block of
  users at a time, ``F[users] @ (diag(f) capped(G))`` in double precision is
  the map and the reduce of that block (:func:`~.topk.local_top_k`);
- ``spark`` builds ``F`` and ``G`` as edge DataFrames, the weights with the
  model's own ``middle_weights`` in a pandas UDF (rounded to float32 as the
  model stores them), and the hub sample with
  :func:`~recgraph.retrieval.neighborhood.hub_samples` on the driver from
  the hubs' row lengths alone: the same seeded draws as ``cap_rows``, so
  both engines expand the same paths. The sample is ``hubs x hub_cap``
  positions made on the driver: small for the follow side (few accounts
  follow more than 10^4), large for readings whose exit side is followers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.data.interactions import Interactions
from recgraph.jobs.candidates.output import CandidateLists
from recgraph.jobs.candidates.topk import local_top_k
from recgraph.retrieval.neighborhood import NeighborhoodConfig, TwoHopRetriever, hub_samples
from recgraph.retrieval.registry import create_retriever

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The jobs of this module, by retriever name.
TWO_HOP_JOBS = ("common_neighbors", "adamic_adar", "resource_allocation", "jaccard")


def two_hop_model(job: str, params: dict[str, Any] | None = None) -> TwoHopRetriever:
    """An unfitted neighbourhood retriever: its config is the job's config."""
    if job not in TWO_HOP_JOBS:
        raise ValueError(f"not a two-hop job: {job!r} (one of {', '.join(TWO_HOP_JOBS)})")
    model = create_retriever(job, params)
    assert isinstance(model, TwoHopRetriever)
    return model


# ---------------------------------------------------------------------- local
def two_hop_local(
    graph: Interactions, job: str, k: int, params: dict[str, Any] | None = None
) -> CandidateLists:
    """Top ``k`` of every account on one machine, with the retriever's own matrices.

    Exact, hub-capped as configured, in blocks of ``batch_paths`` two-hop
    paths on ``n_threads`` threads; scores are float64 sums of the model's
    float32 path weights.
    """
    model = two_hop_model(job, params).fit(graph)
    cfg = model.config
    n = model.n_users
    ids, scores = local_top_k(
        n,
        k,
        score_rows=lambda users: model.score_rows(users, dtype=np.float64),
        forbidden_rows=model.forbidden,
        work=model.path_counts(np.arange(n)),
        budget=cfg.batch_paths,
        n_threads=cfg.n_threads,
        description=f"{job} candidates",
    )
    assert model.users is not None
    return CandidateLists(users=model.users, ids=ids, scores=scores, source=job)


# ---------------------------------------------------------------------- spark
def two_hop_spark(
    spark: SparkSession,
    edges: DataFrame,
    directed: bool,
    job: str,
    k: int,
    params: dict[str, Any] | None = None,
) -> DataFrame:
    """Top ``k`` of every account as numbered ``(u, v, score, rank)`` rows.

    Parameters
    ----------
    spark
        The session.
    edges
        ``(src, dst)`` node numbers (longs): follows, or each friendship once.
    directed
        Follows (``True``) or friendships.
    job, k, params
        The retriever name, candidates per user and its config overrides.
    """
    from pyspark.sql import functions as F

    from recgraph.jobs.candidates.spark import top_k_per_user

    model = two_hop_model(job, params)
    cfg = model.config
    assert isinstance(cfg, NeighborhoodConfig)
    adjacency = edges.filter(F.col("src") != F.col("dst")).select("src", "dst")
    if not directed:
        adjacency = adjacency.union(adjacency.select(F.col("dst"), F.col("src")))
    adjacency = adjacency.distinct().persist()
    first, second = _hops(adjacency, cfg.path)
    weights = _middle_weights(model, first, second, cfg.degree)
    capped = _cap_hubs(spark, second, cfg.hub_cap, cfg.hub_policy, cfg.seed)
    # the user's own first hop is capped too, seeded apart (as the retriever's _build);
    # weights and Jaccard's set sizes stay those of the whole first hop
    own = first.select(F.col("u").alias("w"), F.col("w").alias("v"))
    own = _cap_hubs(spark, own, cfg.first_hop_cap, "sample", cfg.seed + 1)
    first_capped = own.select(F.col("w").alias("u"), F.col("v").alias("w"))
    paths = first_capped.join(capped.join(weights, "w"), "w")
    scores = paths.groupBy("u", "v").agg(F.sum("weight").alias("score"))
    scores = scores.filter(F.col("u") != F.col("v")).join(
        adjacency.select(F.col("src").alias("u"), F.col("dst").alias("v")), ["u", "v"], "left_anti"
    )
    if job == "jaccard":
        first_sizes = first.groupBy("u").agg(F.count("*").cast("double").alias("su"))
        second_sizes = second.groupBy("v").agg(F.count("*").cast("double").alias("tv"))
        scores = (
            scores.join(first_sizes, "u")
            .join(second_sizes, "v")
            .select(
                "u",
                "v",
                (F.col("score") / (F.col("su") + F.col("tv") - F.col("score"))).alias("score"),
            )
        )
    return top_k_per_user(scores, k)


def _hops(adjacency: DataFrame, path: str) -> tuple[DataFrame, DataFrame]:
    """``F`` as ``(u, w)`` and ``G`` as ``(w, v)`` edges of a reading (see neighborhood.py)."""
    from pyspark.sql import functions as F

    out = adjacency.select(F.col("src").alias("a"), F.col("dst").alias("b"))
    into = adjacency.select(F.col("dst").alias("a"), F.col("src").alias("b"))
    if path == "undirected":
        both = out.union(into).distinct()
        first_edges = second_edges = both
    else:
        first_edges = out if path.startswith("out") else into
        second_edges = out if path.endswith("out") else into
    first = first_edges.select(F.col("a").alias("u"), F.col("b").alias("w"))
    second = second_edges.select(F.col("a").alias("w"), F.col("b").alias("v"))
    return first, second


def _middle_weights(
    model: TwoHopRetriever, first: DataFrame, second: DataFrame, side: str
) -> DataFrame:
    """``(w, weight)``: the model's ``f(deg w)`` as the model stores it (float32), as a double."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    if side == "exit":
        degree = second.groupBy("w").count()
    elif side == "entry":
        degree = first.groupBy("w").count()
    else:
        pairs = (
            first.select(F.col("w").alias("a"), F.col("u").alias("b"))
            .union(first.select(F.col("u").alias("a"), F.col("w").alias("b")))
            .union(second.select(F.col("w").alias("a"), F.col("v").alias("b")))
            .union(second.select(F.col("v").alias("a"), F.col("w").alias("b")))
            .distinct()
        )
        degree = pairs.groupBy(F.col("a").alias("w")).count()

    @pandas_udf("double")
    def weight(count: pd.Series) -> pd.Series:
        values = model.middle_weights(count.to_numpy(dtype=np.float64))
        return pd.Series(np.asarray(values, dtype=np.float32).astype(np.float64))

    return degree.select("w", weight(F.col("count")).alias("weight"))


def _cap_hubs(
    spark: SparkSession, second: DataFrame, cap: int, policy: str, seed: int
) -> DataFrame:
    """``(w, v)`` rows with each ``w`` longer than ``cap`` cut to the sample ``cap_rows`` keeps.

    Used for ``G`` (hubs) and, renamed, for ``F`` (a user's own first hop).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not cap:
        return second
    lengths = second.groupBy("w").agg(F.count("*").alias("length"))
    hubs = lengths.filter(F.col("length") > cap).orderBy("w").collect()
    if not hubs:
        return second
    hub_ids = np.array([row["w"] for row in hubs], dtype=np.int64)
    hub_lengths = np.array([row["length"] for row in hubs], dtype=np.int64)
    kept_w, kept_pos = [], []
    for position, chosen in hub_samples(hub_lengths, cap, policy, seed):  # type: ignore[arg-type]
        kept_w.append(np.full(len(chosen), hub_ids[position], dtype=np.int64))
        kept_pos.append(np.asarray(chosen, dtype=np.int64))
    hub_frame = spark.createDataFrame(pd.DataFrame({"w": hub_ids}), "w long")
    ordinary = second.join(F.broadcast(hub_frame), "w", "left_anti")
    if policy != "sample":
        return ordinary
    kept = spark.createDataFrame(
        pd.DataFrame({"w": np.concatenate(kept_w), "pos": np.concatenate(kept_pos)}),
        "w long, pos long",
    )
    by_column = Window.partitionBy("w").orderBy("v")
    hub_rows = second.join(F.broadcast(hub_frame), "w").withColumn(
        "pos", F.row_number().over(by_column) - 1
    )
    sampled = hub_rows.join(kept, ["w", "pos"]).select("w", "v")
    return ordinary.union(sampled)
