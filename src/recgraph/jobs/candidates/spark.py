"""What the Spark engine of every job shares: the session, inputs, numbering, top-k, output.

pyspark is imported only here and in the jobs' Spark functions, never at
module import time of the rest of recgraph, so the package works without the
``spark`` extra.

Sessions. :func:`spark_session` starts (or joins) a session on a master
(``local[2]``, ``spark://host:7077``, ``yarn``; ``None`` keeps what
``spark-submit`` configured). It adds the JDBC drivers it finds (Debian's
``libpostgresql-jdbc-java`` and ``libmariadb-java`` put them in
``/usr/share/java``; ``RECGRAPH_JDBC_JARS`` names others) and, on a master
that is not local, ships recgraph itself to the executors as a zip
(:func:`package_zip`), so ``recgraph candidates --master spark://...`` runs
from a checkout without a manual ``--py-files``.

Numbering. Accounts are numbered by sorted external id, as the local engine
does (:mod:`.graph_input`): a range-partitioned sort, materialised once with
``localCheckpoint`` so that both passes over it (counting each partition,
then numbering) see the same partitions.
"""

from __future__ import annotations

import glob
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recgraph.errors import ConfigError, InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Where Debian's JDBC driver packages install their jars.
JDBC_JAR_PATTERNS = ("/usr/share/java/postgresql.jar", "/usr/share/java/mariadb-java-client.jar")
#: Settings every session gets unless the caller gives others.
DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def require_pyspark() -> None:
    """Raise a :class:`ConfigError` naming the extra when pyspark is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the Spark engine needs pyspark and Java: pip install 'recgraph[spark]'"
        ) from None


def jdbc_jars() -> list[str]:
    """JDBC driver jars found on this machine (and in ``$RECGRAPH_JDBC_JARS``, comma-separated)."""
    found = [path for pattern in JDBC_JAR_PATTERNS for path in glob.glob(pattern)]
    extra = os.environ.get("RECGRAPH_JDBC_JARS", "")
    found += [path for path in extra.split(",") if path.strip()]
    return found


def spark_session(
    master: str | None = None,
    app_name: str = "recgraph",
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """A SparkSession on ``master`` with the JDBC drivers and, off local mode, recgraph shipped.

    Parameters
    ----------
    master
        ``local[2]``, ``spark://host:7077``, ``yarn``, ...; ``None`` leaves it
        to ``spark-submit`` (or Spark's default, ``local[*]``).
    app_name
        Shown in the Spark UI.
    conf
        More settings (``spark.executor.memory``, ``spark.sql.shuffle.partitions``, ...).
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {**DEFAULT_CONF, **(conf or {})}
    jars = jdbc_jars()
    if jars and "spark.jars" not in settings:
        settings["spark.jars"] = ",".join(jars)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    actual = session.sparkContext.master
    if not actual.startswith("local"):
        session.sparkContext.addPyFile(str(package_zip()))
    return session


def package_zip(target: str | Path | None = None) -> Path:
    """recgraph's source as a zip for ``--py-files`` / ``addPyFile`` (built once per process)."""
    import recgraph

    package = Path(recgraph.__file__).resolve().parent
    if target is None:
        target = Path(tempfile.gettempdir()) / f"recgraph-{os.getpid()}.zip"
    target = Path(target)
    if target.exists():
        return target
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, Path("recgraph") / path.relative_to(package))
    return target


# ---------------------------------------------------------------------- inputs
def read_edges(spark: SparkSession, source: Any) -> tuple[DataFrame, bool]:
    """The raw edges ``(src, dst)`` of a :class:`~.graph_input.GraphSource`, and directedness.

    A file is read with Spark's Parquet/CSV readers; the store over JDBC
    (:func:`read_store_edges`).
    """
    from pyspark.sql import functions as F

    if source.path is None:
        return read_store_edges(spark, source.database_url)
    path = str(source.path)
    if not os.path.exists(path) and "://" not in path:
        raise InputError("no such file", path=path)
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        frame = spark.read.csv(path, header=True, sep="," if suffix == ".csv" else "\t")
    else:
        frame = spark.read.parquet(path)
    for column in ("src", "dst"):
        if column not in frame.columns:
            raise InputError(
                f"missing column {column!r}; an edge file has src,dst[,timestamp], "
                f"got {','.join(frame.columns)}",
                path=path,
                field=column,
            )
    src_type = dict(frame.dtypes)["src"]
    dst_type = dict(frame.dtypes)["dst"]
    integer = {"tinyint", "smallint", "int", "bigint"}
    if src_type in integer and dst_type in integer:
        frame = frame.select(F.col("src").cast("long"), F.col("dst").cast("long"))
    else:
        frame = frame.select(F.col("src").cast("string"), F.col("dst").cast("string"))
    return frame, source.directed


def jdbc_options(database_url: str) -> dict[str, str]:
    """Spark JDBC options (``url``, ``user``, ``password``, ``driver``) for a SQLAlchemy URL.

    PostgreSQL (``postgresql+psycopg://user@host:5432/db``) becomes
    ``jdbc:postgresql://host:5432/db``; MariaDB/MySQL (``mysql+pymysql://...``,
    ``mariadb+...``) becomes ``jdbc:mysql://host:3306/db?permitMysqlScheme``, read
    with the MariaDB driver. SQLite has no
    server to read from: export to Parquet instead.
    """
    import sqlalchemy as sa

    url = sa.make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        scheme, driver, port = "postgresql", "org.postgresql.Driver", 5432
    elif backend in ("mysql", "mariadb"):
        # the jdbc:mysql scheme makes Spark quote names with backticks (its MySQL dialect);
        # MariaDB Connector/J 3 accepts that scheme only with permitMysqlScheme
        scheme, driver, port = "mysql", "org.mariadb.jdbc.Driver", 3306
    else:
        raise ConfigError(
            f"Spark reads the store over JDBC from PostgreSQL or MariaDB, not {backend}; "
            "export it first: recgraph export follows follows.parquet"
        )
    address = f"jdbc:{scheme}://{url.host or '127.0.0.1'}:{url.port or port}/{url.database or ''}"
    if scheme == "mysql":
        address += "?permitMysqlScheme"
    options = {"url": address, "driver": driver}
    if url.username:
        options["user"] = url.username
    if url.password:
        options["password"] = url.password
    return options


def read_store_edges(
    spark: SparkSession, database_url: str | None, partitions: int = 8
) -> tuple[DataFrame, bool]:
    """The store's active follows as ``(src, dst)`` external ids, read over JDBC in parallel.

    ``follows`` and ``accounts`` are read as tables, split into
    ``partitions`` ranges of their integer keys so that executors read in
    parallel; the filter on ``removed_at`` and the column choice are pushed
    down to the database, and the joins run in Spark. Directedness comes from
    the store's ``meta`` table. No SQL text is written here.
    """
    from pyspark.sql import functions as F

    from recgraph.data.store import Store

    with Store.open(database_url, create=False) as store:
        directed = store.follows_directed()
        url = database_url or store.url
    options = jdbc_options(str(url))

    def table(name: str, key: str) -> DataFrame:
        bounds = (
            spark.read.format("jdbc")
            .options(**options, dbtable=name)
            .load()
            .agg(F.min(key).alias("lo"), F.max(key).alias("hi"))
            .first()
        )
        reader = spark.read.format("jdbc").options(**options, dbtable=name)
        if bounds is not None and bounds["lo"] is not None:
            reader = reader.options(
                partitionColumn=key,
                lowerBound=str(bounds["lo"]),
                upperBound=str(int(bounds["hi"]) + 1),
                numPartitions=str(partitions),
            )
        return reader.load()

    follows = table("follows", "source_id").filter(F.col("removed_at").isNull())
    accounts = table("accounts", "id").select("id", "external_id")
    src = accounts.select(F.col("id").alias("source_id"), F.col("external_id").alias("src"))
    dst = accounts.select(F.col("id").alias("target_id"), F.col("external_id").alias("dst"))
    edges = (
        follows.select("source_id", "target_id")
        .join(src, "source_id")
        .join(dst, "target_id")
        .select(F.col("src").cast("string"), F.col("dst").cast("string"))
    )
    return edges, True if directed is None else bool(directed)


# ---------------------------------------------------------------------- numbering
def number_nodes(edges: DataFrame) -> DataFrame:
    """``(id, idx)``: every account of ``edges`` numbered 0.. in sorted id order."""
    from pyspark.sql import functions as F

    ids = (
        edges.select(F.col("src").alias("id"))
        .union(edges.select(F.col("dst").alias("id")))
        .distinct()
    )
    ordered = (
        ids.orderBy("id")
        .withColumn("part", F.spark_partition_id())
        .withColumn("mono", F.monotonically_increasing_id())
        .localCheckpoint(eager=True)
    )
    counts = sorted(
        (row["part"], row["count"]) for row in ordered.groupBy("part").count().collect()
    )
    offsets, running = {}, 0
    for part, count in counts:
        offsets[part] = running
        running += count
    offset_frame = ordered.sparkSession.createDataFrame(
        [(part, offset) for part, offset in offsets.items()], "part int, offset long"
    )
    return ordered.join(F.broadcast(offset_frame), "part").select(
        "id",
        (F.col("offset") + F.col("mono") - (F.col("part").cast("long") * (1 << 33))).alias("idx"),
    )


def index_edges(edges: DataFrame, nodes: DataFrame) -> DataFrame:
    """``(src, dst)`` as node numbers (longs)."""
    from pyspark.sql import functions as F

    src = nodes.select(F.col("id").alias("src"), F.col("idx").alias("s"))
    dst = nodes.select(F.col("id").alias("dst"), F.col("idx").alias("d"))
    return (
        edges.join(src, "src")
        .join(dst, "dst")
        .select(F.col("s").alias("src"), F.col("d").alias("dst"))
    )


# ---------------------------------------------------------------------- top-k and output
def top_k_per_user(scores: DataFrame, k: int) -> DataFrame:
    """``(u, v, score, rank)``: each ``u``'s best ``k`` positive scores, ties to the lower ``v``.

    A window of ``row_number() <= k``, which Spark runs as a group limit
    before the full sort.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy("u").orderBy(F.col("score").desc(), F.col("v").asc())
    return (
        scores.filter(F.col("score") > 0)
        .withColumn("rank", F.row_number().over(window))
        .filter(F.col("rank") <= k)
    )


def with_external_ids(ranked: DataFrame, nodes: DataFrame, source: str) -> DataFrame:
    """The output columns (:data:`~.output.OUTPUT_COLUMNS`) from numbered ``(u, v, score, rank)``."""
    from pyspark.sql import functions as F

    users = nodes.select(F.col("idx").alias("u"), F.col("id").cast("string").alias("user"))
    candidates = nodes.select(
        F.col("idx").alias("v"), F.col("id").cast("string").alias("candidate")
    )
    return (
        ranked.join(users, "u")
        .join(candidates, "v")
        .select(
            "user",
            "candidate",
            F.col("score").cast("double"),
            F.col("rank").cast("int"),
            F.array(F.lit(source)).alias("sources"),
        )
    )


def write_output(frame: DataFrame, path: str | Path) -> tuple[int, int]:
    """Write a candidates DataFrame as a Parquet folder; returns ``(rows, users)``.

    Each user's rows land in one file, ordered by rank (no global sort: a
    reader takes a file at a time). The counts come from reading back only
    the ``rank`` column.
    """
    from pyspark.sql import functions as F

    frame.repartition("user").sortWithinPartitions("user", "rank").write.mode("overwrite").parquet(
        str(path)
    )
    counts = (
        frame.sparkSession.read.parquet(str(path))
        .select("rank")
        .agg(F.count("*").alias("rows"), F.sum((F.col("rank") == 1).cast("long")).alias("users"))
        .first()
    )
    return int(counts["rows"]), int(counts["users"] or 0)
