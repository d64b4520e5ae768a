r"""Degree-capped subgraph samples on two engines, bit for bit the samples of :mod:`recgraph.data.sampling`.

Sample ``i`` keeps the edge ``s -> t`` when ``r_i(s, t) * in_degree(t) <= c``
and ``r_i(s, t) * out_degree(s) <= c``, with the draw ``r_i`` a fixed hash of
the two external ids and ``i`` (the rule, step by step, is the docstring of
:mod:`recgraph.data.sampling`). Nothing depends on row order or chunking, so
the engines agree exactly:

- ``local`` reads the graph (:func:`~.graph_input.read_graph`) and runs
  :func:`~recgraph.data.sampling.degree_capped_samples`, the sampler the GNNs
  train on, writing one Parquet row group per sample;
- ``spark`` keeps each pair once (``distinct``), counts degrees with two
  ``groupBy``\ s (friendships: both ends in one count, as the local sampler
  does), hashes the ids with Spark's own ``md5`` (the last four bytes of the
  digest, read big-endian, which is :func:`~recgraph.data.sampling.id_hash`)
  and applies :func:`~recgraph.data.sampling.keep_mask` to every sample in a
  pandas UDF (the splitmix64 arithmetic wraps modulo 2^64, which numpy does
  and Spark's ANSI longs refuse). Only numbers cross to Python and back: the
  UDF returns one long per edge whose bit ``i`` says whether sample ``i``
  keeps it (62 samples a long), and Spark explodes the set bits into rows,
  so the ids never leave the JVM.

Output (both engines): Parquet rows ``sample`` (int32), ``src``, ``dst``
(external ids as text), one file (local) or a folder of parts (Spark); read
either with :func:`read_samples`.

Friendship files must list each pair once (what :class:`~.graph_input.GraphSource`
documents): the local sampler keeps a pair's first row and its orientation,
which a file listing both orientations leaves to row order that Spark does
not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.data.sampling import SamplingConfig, degree_capped_samples, keep_mask
from recgraph.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from recgraph.data.interactions import Interactions

#: The job's name in :data:`~.runner.JOBS`.
SAMPLES_JOB = "samples"
#: Columns of a samples file, in order.
SAMPLE_COLUMNS = ("sample", "src", "dst")
#: Samples whose keep-bits one long of the Spark job holds (62: no sign bit, room to spare).
SAMPLES_PER_MASK = 62


def sampling_config(params: dict[str, Any] | None) -> SamplingConfig:
    """``num_samples`` and ``max_degree`` from the job's ``--param`` values."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"num_samples", "max_degree"})
    if unknown:
        raise ConfigError(
            f"samples: unknown parameter {unknown[0]!r} (known: num_samples, max_degree)"
        )
    try:
        return SamplingConfig(**{key: int(value) for key, value in params.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"samples: {exc}") from None


def samples_schema():
    """The Arrow schema of a samples file."""
    import pyarrow as pa

    return pa.schema([("sample", pa.int32()), ("src", pa.string()), ("dst", pa.string())])


# ---------------------------------------------------------------------- local
def samples_local(graph: Interactions, config: SamplingConfig, path: str | Path) -> int:
    """Write every sample of ``graph`` to one Parquet file (a row group per sample); returns rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recgraph.progress import track

    names = pa.array(graph.users.ids.astype(str), type=pa.string())
    schema = samples_schema()
    rows = 0
    samples = degree_capped_samples(graph, config)
    with pq.ParquetWriter(str(path), schema) as writer:
        for sample in track(samples, "degree-capped samples", total=config.num_samples):
            count = len(sample.src)
            writer.write_table(
                pa.Table.from_arrays(
                    [
                        pa.array(np.full(count, sample.index, dtype=np.int32)),
                        names.take(pa.array(sample.src)),
                        names.take(pa.array(sample.dst)),
                    ],
                    schema=schema,
                )
            )
            rows += count
    return rows


# ---------------------------------------------------------------------- spark
def id_hash_column(column: Column) -> Column:
    """:func:`~recgraph.data.sampling.id_hash` in Spark SQL: md5's last 4 bytes, big-endian."""
    from pyspark.sql import functions as F

    return F.conv(F.substring(F.md5(column.cast("string")), 25, 8), 16, 10).cast("long")


def samples_spark(edges: DataFrame, directed: bool, config: SamplingConfig) -> DataFrame:
    """``(sample, src, dst)`` of every sample, from raw ``(src, dst)`` edges of external ids."""
    from pyspark.sql import functions as F

    pairs = edges.select(
        F.col("src").cast("string").alias("src"), F.col("dst").cast("string").alias("dst")
    ).distinct()
    out_degree = pairs.groupBy(F.col("src").alias("id")).agg(F.count("*").alias("n"))
    in_degree = pairs.groupBy(F.col("dst").alias("id")).agg(F.count("*").alias("n"))
    if directed:
        src_degree, dst_degree = out_degree, in_degree
    else:
        both = out_degree.union(in_degree).groupBy("id").agg(F.sum("n").alias("n"))
        src_degree = dst_degree = both
    frame = (
        pairs.join(src_degree.select(F.col("id").alias("src"), F.col("n").alias("ds")), "src")
        .join(dst_degree.select(F.col("id").alias("dst"), F.col("n").alias("dd")), "dst")
        .select(
            "src",
            "dst",
            id_hash_column(F.col("src")).alias("hs"),
            id_hash_column(F.col("dst")).alias("hd"),
            F.col("ds").cast("double"),
            F.col("dd").cast("double"),
        )
    )
    groups = [
        (first, min(SAMPLES_PER_MASK, config.num_samples - first))
        for first in range(0, config.num_samples, SAMPLES_PER_MASK)
    ]
    masked = frame.select(
        "src",
        "dst",
        *(
            _keep_bits(first, count, config.max_degree)("hs", "hd", "ds", "dd").alias(f"m{g}")
            for g, (first, count) in enumerate(groups)
        ),
    )
    # the set bits as sample numbers, in SQL (shiftright by a lambda variable)
    chosen = [
        F.expr(
            f"transform(filter(sequence(0, {count - 1}), j -> (shiftright(m{g}, j) & 1) = 1), "
            f"j -> j + {first})"
        )
        for g, (first, count) in enumerate(groups)
    ]
    samples = chosen[0] if len(chosen) == 1 else F.concat(*chosen)
    return masked.select(F.explode(samples).alias("sample"), "src", "dst")  # ints


def _keep_bits(first: int, count: int, max_degree: float):
    """A pandas UDF: per edge, bit ``j`` set when sample ``first + j`` keeps it (``keep_mask``)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("long")  # type: ignore[call-overload]
    def keep_bits(hs: pd.Series, hd: pd.Series, ds: pd.Series, dd: pd.Series) -> pd.Series:
        src_hash, dst_hash = hs.to_numpy(np.uint64), hd.to_numpy(np.uint64)
        src_deg, dst_deg = ds.to_numpy(np.float64), dd.to_numpy(np.float64)
        bits = np.zeros(len(hs), dtype=np.int64)
        for j in range(count):
            keep = keep_mask(first + j, src_hash, dst_hash, src_deg, dst_deg, max_degree)
            bits |= keep.astype(np.int64) << np.int64(j)
        return pd.Series(bits)

    return keep_bits


def write_samples_spark(frame: DataFrame, path: str | Path) -> int:
    """Write the samples as a Parquet folder, ordered by sample within each part; returns rows."""
    frame.sortWithinPartitions("sample").write.mode("overwrite").parquet(str(path))
    return int(frame.sparkSession.read.parquet(str(path)).count())


def read_samples(path: str | Path) -> pd.DataFrame:
    """A samples file or folder (either engine's) as a frame ordered by sample, src, dst."""
    import pyarrow.parquet as pq

    frame = pq.read_table(str(path)).to_pandas()
    frame["sample"] = frame["sample"].astype(np.int32)
    return frame.sort_values(list(SAMPLE_COLUMNS), kind="stable").reset_index(drop=True)
