"""``recgraph train`` (a pipeline into the model registry) and ``recgraph serve`` (the API and page)."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from recgraph.cli.app import DbOption, PipelineFileOption, RegistryOption, app, console
from recgraph.settings import ENV_PREFIX, Settings, load_settings

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help=f"Bearer token for feedback and reload (default: ${ENV_PREFIX}API_TOKEN, else a "
        "random one, shown once in the page's address).",
        show_default=False,
    ),
]
HostOption = Annotated[
    str | None,
    typer.Option(
        help=f"Address to listen on (default: ${ENV_PREFIX}HOST, else 127.0.0.1, the loopback).",
        show_default=False,
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=65535,
        help=f"Port to listen on, checked before any work (default: ${ENV_PREFIX}PORT, else 8000).",
        show_default=False,
    ),
]


@dataclass
class ServePlan:
    """What to serve and where: the settings, the claimed socket, and whether the token was
    made up here (only then is it shown: a token the user gave is theirs to know)."""

    settings: Settings
    sock: socket.socket
    generated_token: bool


def plan_serving(
    registry: str | None,
    db: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    poll_seconds: float | None = None,
) -> ServePlan:
    """Settings from the options, the environment and defaults, and the port claimed at once.

    Called before any other work, so that a busy port is reported in a second
    (with ``--port`` as the way out) rather than after training. A token is
    made up when none is given, so that the page's like buttons work at once.
    """
    from recgraph.serving.server import reserve_port

    settings = load_settings(
        registry=registry,
        database_url=db,
        host=host,
        port=port,
        api_token=token,
        poll_seconds=poll_seconds,
    )
    generated = settings.api_token is None
    if generated:
        settings = settings.model_copy(update={"api_token": SecretStr(secrets.token_urlsafe(18))})
    sock = reserve_port(settings.host, settings.port)
    return ServePlan(settings, sock, generated)


def serve_until_stopped(plan: ServePlan, *, workers: int = 1) -> None:
    """Print where the service is (no secret in clear), then run it until Ctrl-C."""
    from recgraph.serving.server import run

    for line in banner(plan):
        console.print(line, highlight=False, soft_wrap=True)
    run(plan.settings, workers=workers, log_level="warning", sock=plan.sock)


def banner(plan: ServePlan) -> list[str]:
    """The lines ``recgraph serve`` prints: addresses, and the token only if it made it up."""
    settings = plan.settings
    port = plan.sock.getsockname()[1]
    base = f"http://{settings.host}:{port}"
    if plan.generated_token:
        token_line = (
            f"  open {base}/#token={settings.token()} to like, dislike and follow from the page "
            f"(a token made up for this run; set {ENV_PREFIX}API_TOKEN or --token to choose one)"
        )
    else:
        token_line = (
            f"  open {base}/#token=<your token> to like, dislike and follow from the page "
            "(the token you gave; not shown)"
        )
    return [
        f"\n[bold]serving[/] the API and the page at [bold]{base}/[/]",
        token_line,
        f"  dashboard {base}/dashboard · API docs {base}/docs · metrics {base}/metrics",
        f"  registry {settings.registry} · feedback goes to {settings.safe_database_url}",
        "  Ctrl-C stops\n",
    ]


@app.command("serve")
def serve_command(
    registry: RegistryOption = None,
    db: DbOption = None,
    host: HostOption = None,
    port: PortOption = None,
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
        int,
        typer.Option(
            min=1,
            help=(
                "Server processes (each loads the model). On Linux, with 2 or more, each "
                "worker listens on its own SO_REUSEPORT socket so connections are spread "
                "evenly, and a worker holding more keep-alive connections than its share "
                "plus one answers a request with 'Connection: close' so the client "
                f"reconnects (${ENV_PREFIX}BALANCE_CONNECTIONS=0: not); the port refuses "
                "connections until a worker has loaded (retry /healthz at startup), a worker "
                "that dies resets the connections queued on its socket (Linux 5.14+: sysctl "
                "net.ipv4.tcp_migrate_req=1 moves them), and SO_REUSEPORT sockets of the same "
                "user can join the port."
            ),
        ),
    ] = 1,
) -> None:
    """Serve the API, the web page and the dashboard from the registry's current version;
    reload on change."""
    plan = plan_serving(registry, db, host, port, token, poll_seconds)
    serve_until_stopped(plan, workers=workers)


@app.command("train")
def train_command(
    pipeline: PipelineFileOption = None,
    registry: RegistryOption = None,
    db: DbOption = None,
    promote: Annotated[
        bool, typer.Option(help="Make the new version current (a running server switches to it).")
    ] = True,
    notes: Annotated[str | None, typer.Option(help="Why this version exists.")] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Run `recgraph tune` first (validation carved from the store's data) and train "
            "the pipeline it writes to --tuned-out.",
        ),
    ] = False,
    budget: Annotated[
        float, typer.Option("--budget", min=0.05, help="With --tune: minutes of tuning.")
    ] = 10.0,
    tuned_out: Annotated[
        Path, typer.Option("--tuned-out", help="With --tune: where the tuned pipeline goes.")
    ] = Path("pipeline.tuned.toml"),
) -> None:
    """Train the pipeline on everything in the store and publish it as a new registry version."""
    from recgraph.data.store import Store
    from recgraph.jobs.train import train_pipeline
    from recgraph.serving.registry import ModelRegistry

    settings = load_settings(registry=registry, database_url=db)
    reg = ModelRegistry(settings.registry)
    store = Store.open(settings.database_url, create=False)
    try:
        if tune:
            from recgraph.cli.tune_commands import print_trial, show_results, tune_settings
            from recgraph.data.snapshot import TrainingSnapshot
            from recgraph.jobs.tune import tune_pipeline, write_pipeline
            from recgraph.pipeline import load_pipeline_config

            base = load_pipeline_config(pipeline)
            results = tune_pipeline(
                TrainingSnapshot.from_store(store),
                base,
                tune_settings(budget, None, 0),
                on_trial=print_trial,
            )
            write_pipeline(results, tuned_out, base)
            show_results(results, tuned_out)
            pipeline = tuned_out
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
