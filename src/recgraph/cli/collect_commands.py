"""``recgraph crawl bluesky``, ``recgraph bot telegram`` and ``recgraph run``: the collectors."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from recgraph.cli.app import DbOption, app, console, err_console
from recgraph.files import write_json

crawl_app = typer.Typer(
    name="crawl", help="Crawl a social graph into the store.", no_args_is_help=True
)
bot_app = typer.Typer(name="bot", help="Run a feed bot.", no_args_is_help=True)
app.add_typer(crawl_app, name="crawl")
app.add_typer(bot_app, name="bot")


def _logging(level: int) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@crawl_app.command("bluesky")
def crawl_bluesky_command(
    seed: Annotated[
        list[str] | None,
        typer.Option("--seed", help="A handle or DID to start from (repeat for several)."),
    ] = None,
    base_url: Annotated[
        str, typer.Option("--base-url", help="XRPC host (an AppView).")
    ] = "https://public.api.bsky.app",
    until_done: Annotated[
        bool,
        typer.Option(
            "--until-done", help="Exit once every account discovered has been crawled once."
        ),
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Exit when nothing is due (one pass).")
    ] = False,
    max_accounts: Annotated[
        int | None, typer.Option("--max-accounts", min=1, help="Crawl at most this many.")
    ] = None,
    max_depth: Annotated[
        int | None, typer.Option("--max-depth", min=0, help="Follow at most this far from seeds.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Requests in flight.")
    ] = 8,
    recrawl_after_hours: Annotated[
        float, typer.Option("--recrawl-after-hours", min=0, help="Re-crawl accounts this old.")
    ] = 24.0,
    lease_seconds: Annotated[
        float, typer.Option("--lease-seconds", min=0.1, help="How long a claim lasts unrenewed.")
    ] = 120.0,
    timeout_seconds: Annotated[
        float, typer.Option("--timeout-seconds", min=0.01, help="Per request.")
    ] = 20.0,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Lease owner name (default host:pid).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run's report here.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    db: DbOption = None,
) -> None:
    """Crawl the Bluesky follow graph breadth-first (app.bsky.graph.getFollows) into the store.

    Resumable: run it again after a crash and it continues where it stopped.
    """
    from recgraph.collect.bluesky.crawler import CrawlConfig, crawl
    from recgraph.data.store import Store

    _logging(logging.INFO if verbose else logging.WARNING)
    config = CrawlConfig(
        seeds=list(seed or []),
        client={
            "base_url": base_url,
            "concurrency": concurrency,
            "timeout_seconds": timeout_seconds,
        },
        until_done=until_done,
        stop_when_idle=once,
        max_accounts=max_accounts,
        max_depth=max_depth,
        lease_seconds=lease_seconds,
        recrawl_after_seconds=recrawl_after_hours * 3600,
        worker_id=worker_id,
    )
    with Store.open(db) as store:
        report = crawl(store, config)
        counts = store.counts()
    state = "complete" if report.finished else "stopped"
    console.print(
        f"crawl {state}: {report.accounts:,} accounts, {report.edges:,} follows listed "
        f"(+{report.added:,} new, -{report.removed:,} unfollowed), {report.not_found:,} not found, "
        f"{report.failed:,} failed; {report.requests:,} requests "
        f"({report.requests_per_second:.1f}/s), {report.rate_limited:,} rate-limited, "
        f"in {report.seconds:.1f} s; the store holds {counts['accounts']:,} accounts and "
        f"{counts['follows']:,} follows",
        highlight=False,
    )
    if json_out is not None:
        write_json(json_out, report.to_dict())


@bot_app.command("telegram")
def bot_telegram_command(
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TELEGRAM_BOT_TOKEN",
            help="Bot token from @BotFather (or $TELEGRAM_BOT_TOKEN).",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Bot API base, e.g. http://127.0.0.1:8081/bot."),
    ] = None,
    interval_minutes: Annotated[
        float, typer.Option("--interval-minutes", min=0.001, help="Minutes between deliveries.")
    ] = 60.0,
    model: Annotated[
        str, typer.Option("--model", help="Retriever (registry name) for recommendations.")
    ] = "popular",
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir", help="Load a saved pipeline or model from here instead of fitting one."
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Choose posts with this model registry's current version (what `recgraph "
            "train` publishes and `recgraph serve` serves); a new version is used at the "
            "next round.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1000, help="Chats served at once.")
    ] = 16,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log more (also each HTTP request).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Run the Telegram feed bot: /start, /stop, a post every interval, 👍/👎 feedback."""
    from recgraph.collect.telegram.bot import BotConfig, run_bot
    from recgraph.data.store import Store
    from recgraph.errors import ConfigError

    _logging(logging.INFO if verbose else logging.WARNING)
    if not token:
        raise ConfigError("a bot token is needed: --token or $TELEGRAM_BOT_TOKEN")
    config = BotConfig(
        token=token,
        base_url=base_url,
        interval_minutes=interval_minutes,
        model=model,
        model_dir=str(model_dir) if model_dir else None,
        registry=registry,
        concurrency=concurrency,
        verbose=verbose,
    )
    with Store.open(db) as store:
        err_console.print(f"bot running on {store.safe_url}; Ctrl-C stops it", highlight=False)
        try:
            asyncio.run(run_bot(store, config))
        except KeyboardInterrupt:
            pass


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Option("--config", help="The jobs' TOML file.")],
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log more (every HTTP request, debug lines).")
    ] = False,
) -> None:
    """Run the scheduled jobs (crawl, training, bot delivery) in one process until Ctrl-C or
    SIGTERM, which stop it in order."""
    from recgraph.jobs.scheduler import configure_run_logging, load_run_config, run_forever

    settings = load_run_config(config)
    # A long-running service: one line per job run, not one per HTTP request; no secrets.
    configure_run_logging(settings, verbose=verbose)
    try:
        asyncio.run(run_forever(settings))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        pass
