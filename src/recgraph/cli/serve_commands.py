"""``recgraph train`` (a pipeline into the model registry) and ``recgraph serve`` (the API and page)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from recgraph.cli.app import DbOption, app, console
from recgraph.config import database_url

RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Model registry folder or fsspec URL (default: $RECGRAPH_REGISTRY, else ./models).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token for feedback and reload (default: $RECGRAPH_API_TOKEN, else a "
        "random one, printed).",
        show_default=False,
    ),
]
HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]


def serve_settings(
    registry: str | None,
    db: str | None,
    host: str,
    port: int,
    token: str | None,
    poll_seconds: float | None = None,
):
    """:class:`ServeSettings` from the options, the environment and defaults; a token is made
    up when none is given, so that the page's like buttons work at once."""
    from recgraph.serving.settings import ServeSettings

    overrides: dict = {"host": host, "port": port, "database_url": database_url(db)}
    if registry:
        overrides["registry"] = registry
    if token:
        overrides["api_token"] = token
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    settings = ServeSettings(**overrides)
    if settings.api_token is None:
        settings = ServeSettings(**overrides, api_token=secrets.token_urlsafe(18))
    return settings


def serve_until_stopped(settings, *, workers: int = 1) -> None:
    """Print where the service is, then run it until Ctrl-C."""
    from recgraph.serving.app import run

    base = f"http://{settings.host}:{settings.port}"
    console.print(f"\n[bold]serving[/] the API and the page at [bold]{base}/[/]")
    console.print(
        f"  open {base}/#token={settings.token()} to like, dislike and follow from the page"
    )
    console.print(f"  API docs {base}/docs · metrics {base}/metrics · registry {settings.registry}")
    console.print(f"  feedback goes to {settings.database_url}; Ctrl-C stops\n")
    run(settings, workers=workers, log_level="warning")


@app.command("serve")
def serve_command(
    registry: RegistryOption = None,
    db: DbOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    token: TokenOption = None,
    poll_seconds: Annotated[
        float | None,
        typer.Option(
            "--poll-seconds",
            min=0,
            help="How often to check the registry for a new current version (0: never).",
            show_default="2",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (each loads the model).")
    ] = 1,
) -> None:
    """Serve the API and the web page from the registry's current version; reload on change."""
    settings = serve_settings(registry, db, host, port, token, poll_seconds)
    serve_until_stopped(settings, workers=workers)


@app.command("train")
def train_command(
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline",
            help="Pipeline TOML file (default: the shipped one, recgraph/config/pipeline.toml).",
        ),
    ] = None,
    registry: RegistryOption = None,
    db: DbOption = None,
    promote: Annotated[
        bool, typer.Option(help="Make the new version current (a running server switches to it).")
    ] = True,
    notes: Annotated[str | None, typer.Option(help="Why this version exists.")] = None,
) -> None:
    """Train the pipeline on everything in the store and publish it as a new registry version."""
    from recgraph.data.store import Store
    from recgraph.jobs.train import train_pipeline
    from recgraph.serving.registry import ModelRegistry

    reg = ModelRegistry(registry)
    store = Store.open(database_url(db), create=False)
    try:
        result = train_pipeline(store, reg, pipeline, notes=notes, promote=promote)
    finally:
        store.close()
    for name, question in result.pipeline.questions.items():
        console.print(
            f"{name}: {', '.join(question.main_keys)} (fallback {' -> '.join(question.chain_keys)}) "
            f"on {len(question.users or []):,} users x {len(question.items or []):,} targets"
        )
    state = "current" if result.promoted else "not current (recgraph registry promote)"
    console.print(
        f"published [bold]{result.version}[/] to {reg.root} in {result.fit_seconds:.1f}s; {state}"
    )
