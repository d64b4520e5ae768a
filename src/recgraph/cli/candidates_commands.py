"""``recgraph candidates``: every user's top candidates on one machine or on Spark, and publishing them."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from recgraph.cli.app import DbOption, app, console
from recgraph.errors import ConfigError


class EngineChoice(StrEnum):
    local = "local"
    spark = "spark"


class PublishChoice(StrEnum):
    store = "store"
    redis = "redis"


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {value!r}: expected key=value")
        out[key.strip()] = item.strip()
    return out


@app.command("candidates")
def candidates_command(
    job: Annotated[
        str,
        typer.Option(
            "--job",
            help="common_neighbors, adamic_adar, resource_allocation, jaccard, egoml; "
            "samples (degree-capped subgraph samples: --param num_samples=32 "
            "--param max_degree=32); rank (re-score the --input candidates with the "
            "ranker of the --model pipeline).",
        ),
    ],
    engine: Annotated[
        EngineChoice, typer.Option("--engine", help="local (this process) or spark.")
    ] = EngineChoice.local,
    master: Annotated[
        str | None,
        typer.Option(
            "--master",
            help="Spark master: local[2], spark://host:7077, yarn. Default: what spark-submit set.",
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Edge file (Parquet/CSV/TSV: src,dst[,timestamp], as `recgraph export follows` "
            "writes). Default: the store (--db), over JDBC for Spark.",
        ),
    ] = None,
    undirected: Annotated[
        bool, typer.Option("--undirected", help="The --input file holds friendships.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Parquet output (default: candidates-JOB.parquet)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Candidates per user.")] = 100,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="The model's key=value (hub_cap=1000, path=in_out); repeatable."
        ),
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="egoml: a saved model folder (default: fit on the input); "
            "rank: a trained pipeline with a ranker (--param question=feed for the feed's).",
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Spark egoml: feature tables, on a path executors read."),
    ] = None,
    conf: Annotated[
        list[str] | None,
        typer.Option(
            "--conf", help="Spark setting key=value (spark.executor.memory=8g); repeatable."
        ),
    ] = None,
    vectors_redis: Annotated[
        str | None,
        typer.Option(
            "--vectors-redis", help="egoml: also write per-user vectors to this Redis URL."
        ),
    ] = None,
    vectors_namespace: Annotated[
        str, typer.Option("--vectors-namespace", help="egoml: key prefix of the vectors.")
    ] = "egoml",
    publish: Annotated[
        PublishChoice | None,
        typer.Option(
            "--publish", help="Also publish each user's list for serving: store or redis."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name of the published lists (default: the job)."),
    ] = None,
    publish_top: Annotated[
        int | None,
        typer.Option("--publish-top", min=1, help="Publish each user's best N (default: all k)."),
    ] = None,
    redis_url: Annotated[
        str, typer.Option("--redis-url", help="Redis for --publish redis.")
    ] = "redis://127.0.0.1:6379/0",
    redis_prefix: Annotated[
        str, typer.Option("--redis-prefix", help="Key prefix for --publish redis.")
    ] = "recgraph:candidates",
    db: DbOption = None,
) -> None:
    """Every user's top candidates by a graph job, on this machine or on Spark, as Parquet.

    The same job gives the same lists on both engines. With --publish the
    lists go to the store or Redis, where the `materialized` retriever serves
    them (see the README, "Spark and materialised candidates").
    """
    from recgraph.jobs.candidates.graph_input import GraphSource
    from recgraph.jobs.candidates.publish import PublishTarget, publish_candidates
    from recgraph.jobs.candidates.runner import (
        CandidatesRequest,
        VectorTarget,
        run_candidates,
    )
    from recgraph.retrieval.registry import parse_param_overrides

    params = parse_param_overrides([f"{job}.{pair}" for pair in param or []]).get(job, {})
    request = CandidatesRequest(
        job=job,
        engine=engine.value,
        source=GraphSource(
            str(input_file) if input_file is not None else None,
            directed=not undirected,
            database_url=db,
        ),
        output=str(output or Path(f"candidates-{job}.parquet")),
        k=k,
        params=params,
        model_dir=str(model_dir) if model_dir is not None else None,
        work_dir=str(work_dir) if work_dir is not None else None,
        master=master,
        spark_conf=_pairs(conf, "--conf"),
        vectors=VectorTarget(vectors_redis, vectors_namespace) if vectors_redis else None,
    )
    if publish is not None and job == "samples":
        raise ConfigError("--publish serves candidate lists; the samples job writes subgraphs")
    summary = run_candidates(request)
    what = (
        f"{summary.rows:,} sampled edges"
        if job == "samples"
        else f"{summary.rows:,} candidates for {summary.users:,} users"
    )
    console.print(
        f"{summary.job} on {summary.engine}: {what} in {summary.seconds:.1f} s -> {summary.output}",
        highlight=False,
    )
    if summary.vectors_written:
        console.print(
            f"vectors of {summary.vectors_written:,} users -> {vectors_redis} "
            f"(namespace {vectors_namespace!r})",
            highlight=False,
        )
    if publish is not None:
        target = PublishTarget(
            backend=publish.value,
            name=name or job,
            database_url=db,
            redis_url=redis_url,
            prefix=redis_prefix,
            top_n=publish_top,
        )
        result = publish_candidates(summary.output, target)
        console.print(
            f"published {result.users:,} lists as {target.name!r} version {result.version} "
            f"to {target.describe()}",
            highlight=False,
        )
