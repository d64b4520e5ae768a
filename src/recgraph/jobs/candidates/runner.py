"""One entry point for every candidate job on either engine: :func:`run_candidates`.

``recgraph candidates`` is a thin layer over it; ``spark-submit`` runs the
same command (see the README's "Spark" section). A request names the job,
the engine, the input (an edge file or the store), ``k``, the model's
parameters, and where the results go: a Parquet file, and optionally the
store or Redis for serving (:mod:`.publish`), and for EGOML the per-user
vectors in Redis.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from recgraph.errors import ConfigError
from recgraph.jobs.candidates.graph_input import GraphSource, read_graph
from recgraph.jobs.candidates.sampling_job import SAMPLES_JOB
from recgraph.jobs.candidates.two_hop import TWO_HOP_JOBS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from recgraph.retrieval.egoml.model import EgoML

Engine = Literal["local", "spark"]
#: Every job :func:`run_candidates` knows; ``rank`` re-scores a candidates file (``--input``);
#: ``samples`` writes degree-capped subgraph samples (``sample, src, dst``), not candidates.
JOBS = (*TWO_HOP_JOBS, "egoml", SAMPLES_JOB, "rank")


@dataclass(frozen=True)
class VectorTarget:
    """Where the EGOML job writes the per-user vectors for online ``E(u, v)``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "egoml"


@dataclass(frozen=True)
class CandidatesRequest:
    """What to run.

    Attributes
    ----------
    job
        One of :data:`JOBS`.
    engine
        ``local`` (this process) or ``spark``.
    source
        The input graph (an edge file, or the store).
    output
        The Parquet file (local engine) or folder (Spark) to write.
    k
        Candidates per user.
    params
        The model's config overrides (``hub_cap``, ``path``, ... or EGOML's).
    model_dir
        EGOML: a saved model to score with; without it EGOML is fitted on the
        source first (on the driver).
    work_dir
        Spark EGOML: where the driver writes the feature tables for the
        executors (a path both see; default: a temporary folder).
    master
        Spark master (``local[2]``, ``spark://host:7077``, ``yarn``); ``None``
        leaves it to ``spark-submit``.
    spark_conf
        More Spark settings.
    vectors
        EGOML: also write the per-user vectors to Redis.
    """

    job: str
    output: str
    engine: Engine = "local"
    source: GraphSource = field(default_factory=GraphSource)
    k: int = 100
    params: dict[str, Any] = field(default_factory=dict)
    model_dir: str | None = None
    work_dir: str | None = None
    master: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    vectors: VectorTarget | None = None


@dataclass(frozen=True)
class CandidatesSummary:
    """What a run did: rows written, how long each part took."""

    job: str
    engine: str
    output: str
    rows: int
    users: int
    seconds: float
    vectors_written: int = 0
    details: dict[str, float] = field(default_factory=dict)

    @classmethod
    def finished(
        cls, request: CandidatesRequest, engine: str, start: float, **counts: Any
    ) -> CandidatesSummary:
        """The summary of ``request`` run on ``engine`` since ``start`` (``perf_counter``)."""
        return cls(
            job=request.job,
            engine=engine,
            output=request.output,
            seconds=time.perf_counter() - start,
            **counts,
        )


def run_candidates(
    request: CandidatesRequest, spark: SparkSession | None = None
) -> CandidatesSummary:
    """Run one job on its engine and write its Parquet output.

    ``spark`` is an existing session to use (tests share one); otherwise the
    Spark engine starts one on ``request.master``.
    """
    if request.job not in JOBS:
        raise ConfigError(f"unknown job {request.job!r}; known jobs: {', '.join(JOBS)}")
    if request.k < 1:
        raise ConfigError(f"k must be at least 1, got {request.k}")
    if request.job == "rank":
        return _run_rank(request, spark)
    if request.job == SAMPLES_JOB:
        from recgraph.jobs.candidates.sampling_job import sampling_config

        sampling_config(request.params)  # a bad parameter fails before a Spark session starts
    if request.engine == "local":
        return _run_local(request)
    if request.engine == "spark":
        if spark is None:
            from recgraph.jobs.candidates.spark import spark_session

            spark = spark_session(request.master, f"recgraph {request.job}", request.spark_conf)
        return _run_spark(request, spark)
    raise ConfigError(f"unknown engine {request.engine!r}; choose local or spark")


def load_or_fit_egoml(request: CandidatesRequest) -> EgoML:
    """The EGOML model of a request: loaded from ``model_dir``, else fitted on the source."""
    from recgraph.retrieval.egoml.model import EgoML

    if request.model_dir is not None:
        model = EgoML.load(request.model_dir)
        if request.params:
            raise ConfigError("--param does not apply to a saved EGOML model (--model)")
        assert isinstance(model, EgoML)
        return model
    return EgoML(request.params).fit(read_graph(request.source))


def _run_local(request: CandidatesRequest) -> CandidatesSummary:
    from recgraph.jobs.candidates.egoml_job import egoml_local, egoml_vectors_local
    from recgraph.jobs.candidates.two_hop import two_hop_local

    start = time.perf_counter()
    vectors = 0
    if request.job == SAMPLES_JOB:
        return _run_samples_local(request)
    if request.job == "egoml":
        model = load_or_fit_egoml(request)
        loaded = time.perf_counter()
        lists = egoml_local(model, request.k)
        if request.vectors is not None:
            vectors = egoml_vectors_local(
                model, request.vectors.redis_url, request.vectors.namespace
            )
    else:
        graph = read_graph(request.source)
        loaded = time.perf_counter()
        lists = two_hop_local(graph, request.job, request.k, request.params)
    scored = time.perf_counter()
    rows, done = _write_local(request, lists.write_parquet)
    return CandidatesSummary.finished(
        request,
        "local",
        start,
        rows=rows,
        users=int((lists.lengths() > 0).sum()),
        vectors_written=vectors,
        details={"read": loaded - start, "score": scored - loaded, "write": done - scored},
    )


def _run_spark(request: CandidatesRequest, spark: SparkSession) -> CandidatesSummary:
    from recgraph.jobs.candidates import spark as engine

    start = time.perf_counter()
    vectors = 0
    if request.job == SAMPLES_JOB:
        from recgraph.jobs.candidates.sampling_job import (
            samples_spark,
            sampling_config,
            write_samples_spark,
        )

        config = sampling_config(request.params)
        raw, directed = engine.read_edges(spark, request.source)
        rows = write_samples_spark(samples_spark(raw, directed, config), request.output)
        return CandidatesSummary.finished(
            request,
            "spark",
            start,
            rows=rows,
            users=0,
        )
    if request.job == "egoml":
        from recgraph.jobs.candidates.egoml_job import egoml_spark, egoml_vectors_spark

        model = load_or_fit_egoml(request)
        work_dir = request.work_dir or tempfile.mkdtemp(prefix="recgraph-egoml-")
        try:
            ranked, nodes, members = egoml_spark(spark, model, request.k, work_dir)
            frame = engine.with_external_ids(ranked, nodes.select("idx", "id"), "egoml")
            rows, users = engine.write_output(frame, request.output)
            if request.vectors is not None:
                vectors = egoml_vectors_spark(
                    members, nodes, request.vectors.redis_url, request.vectors.namespace
                )
        finally:
            if request.work_dir is None:
                shutil.rmtree(work_dir, ignore_errors=True)
    else:
        from recgraph.jobs.candidates.two_hop import two_hop_spark

        raw, directed = engine.read_edges(spark, request.source)
        nodes = engine.number_nodes(raw)
        edges = engine.index_edges(raw, nodes)
        ranked = two_hop_spark(spark, edges, directed, request.job, request.k, request.params)
        rows, users = engine.write_output(
            engine.with_external_ids(ranked, nodes, request.job), request.output
        )
    return CandidatesSummary.finished(
        request,
        "spark",
        start,
        rows=rows,
        users=users,
        vectors_written=vectors,
    )


def _run_samples_local(request: CandidatesRequest) -> CandidatesSummary:
    """Degree-capped samples of the source in this process (see :mod:`.sampling_job`)."""
    from recgraph.jobs.candidates.sampling_job import samples_local, sampling_config

    config = sampling_config(request.params)
    start = time.perf_counter()
    graph = read_graph(request.source)
    loaded = time.perf_counter()
    rows, done = _write_local(request, lambda output: samples_local(graph, config, output))
    return CandidatesSummary.finished(
        request,
        "local",
        start,
        rows=rows,
        users=0,
        details={"read": loaded - start, "sample": done - loaded},
    )


def _run_rank(request: CandidatesRequest, spark: SparkSession | None) -> CandidatesSummary:
    """Stage-2 batch scoring of a candidates file (see :mod:`.rank_job`)."""
    from recgraph.jobs.candidates.rank_job import load_scorer, make_scorer, rank_local, rank_spark

    if request.source.path is None:
        raise ConfigError("the rank job re-scores a candidates file: give it as --input")
    options = dict(request.params)
    spec = options.pop("scorer", None)
    if spec:
        score_partition = load_scorer(str(spec), options)
    elif request.model_dir is None:
        raise ConfigError(
            "the rank job needs a trained pipeline with a ranker (--model DIR) "
            "or a scorer (--param scorer=module:function)"
        )
    else:
        unknown = sorted(set(options) - {"question", "now"})
        if unknown:
            raise ConfigError(f"rank: unknown parameter {unknown[0]!r} (known: question, now)")
        score_partition = make_scorer(request.model_dir, **options)
    start = time.perf_counter()
    if request.engine == "local":
        _prepare_output(request.output)
        rows, users = rank_local(request.source.path, request.output, score_partition, request.k)
    else:
        from recgraph.jobs.candidates import spark as engine

        if spark is None:
            spark = engine.spark_session(request.master, "recgraph rank", request.spark_conf)
        frame = rank_spark(spark.read.parquet(request.source.path), score_partition, request.k)
        rows, users = engine.write_output(frame, request.output)
    return CandidatesSummary.finished(request, request.engine, start, rows=rows, users=users)


def _write_local(request: CandidatesRequest, write: Callable[[str], int]) -> tuple[int, float]:
    """Write a local run's output with ``write(path)`` (its folder made first); return the
    rows written and the ``perf_counter`` time it finished."""
    _prepare_output(request.output)
    rows = write(request.output)
    return rows, time.perf_counter()


def _prepare_output(path: str) -> None:
    """Make the output's folder; a folder left by an earlier Spark run is replaced."""
    target = Path(path)
    if target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
