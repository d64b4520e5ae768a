"""``recgraph quickstart``: the main job on the embedded SQLite store, ending by serving it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recgraph.cli.app import DbOption, PipelineFileOption, RegistryOption, app, console
from recgraph.cli.serve_commands import (
    HostOption,
    PortOption,
    TokenOption,
    plan_serving,
    serve_until_stopped,
)
from recgraph.settings import Settings, load_settings


@app.command("quickstart")
def quickstart_command(
    db: DbOption = None,
    data: Annotated[
        Path | None,
        typer.Option(help="A MovieLens folder or a SNAP edge list (default: synthetic data)."),
    ] = None,
    undirected: Annotated[
        bool, typer.Option(help="With an edge list: friendships, not follows.")
    ] = False,
    timestamps: Annotated[
        bool, typer.Option(help="With an edge list: the third column is a unix time.")
    ] = False,
    k: Annotated[str, typer.Option(help="Cut-offs, comma separated.")] = "10,20,50",
    json_dir: Annotated[
        Path | None, typer.Option("--json-dir", help="Write one evaluation JSON per graph here.")
    ] = None,
    pipeline: PipelineFileOption = None,
    registry: RegistryOption = None,
    serve: Annotated[
        bool,
        typer.Option(
            help="Serve the API and the page when done (--no-serve: stop after publishing)."
        ),
    ] = True,
    host: HostOption = None,
    port: PortOption = None,
    token: TokenOption = None,
) -> None:
    """Create the store, load data, evaluate, train and publish the pipeline, then serve it."""
    # the port first: a busy one is reported now, not after the training
    plan = plan_serving(registry, db, host, port, token) if serve else None
    settings = plan.settings if plan else load_settings(registry=registry, database_url=db)
    try:
        _run_and_report(settings, data, undirected, timestamps, k, json_dir, pipeline)
    except BaseException:
        if plan is not None:
            plan.sock.close()  # the claimed port, released when the work fails
        raise
    if plan is not None:
        serve_until_stopped(plan)


def _run_and_report(
    settings: Settings,
    data: Path | None,
    undirected: bool,
    timestamps: bool,
    k: str,
    json_dir: Path | None,
    pipeline: Path | None,
) -> None:
    """Run the quickstart job and print what it found."""
    from recgraph.jobs.quickstart import run_quickstart

    ks = tuple(int(x) for x in k.split(",") if x.strip())
    console.print(f"[bold]recgraph quickstart[/] — store: {settings.safe_database_url}")
    result = run_quickstart(
        settings.database_url,
        data,
        undirected=undirected,
        timestamps=timestamps,
        ks=ks,
        registry=settings.registry,
        pipeline=pipeline,
    )
    counts = ", ".join(f"{n:,} {name}" for name, n in result.counts.items() if n)
    console.print(f"loaded {result.source}: {counts}")
    for kind, report in result.reports.items():
        question = "what to read" if kind == "items" else "who to follow"
        description, _, scored = result.splits[kind].partition("; scored: ")
        console.print(f"\n[bold]{question}[/] ({kind}; {description})")
        if scored:
            console.print(f"[dim]scored: {report.n_users:,} {scored}[/]")
        console.print(report.table())
        if report.dropped_test_rows:
            console.print(f"[dim]dropped test rows: {report.dropped_summary()}[/]")
        if json_dir is not None:
            json_dir.mkdir(parents=True, exist_ok=True)
            report.to_json(json_dir / f"quickstart-{kind}.json")
    trained = result.trained
    assert trained is not None
    questions = ", ".join(
        f"{name} ({' + '.join(q.main_keys)}"
        f"{', ranked by ' + q.config.ranker.name if q.ranked and q.config.ranker else ''}"
        f", fallback {' -> '.join(q.chain_keys) or 'none'})"
        for name, q in trained.pipeline.questions.items()
    )
    console.print(
        f"\ntrained the pipeline on all the data: {questions}\n"
        f"published [bold]{trained.version}[/] to {result.registry} (current)"
    )
