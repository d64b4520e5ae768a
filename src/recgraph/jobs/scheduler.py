"""``recgraph run``: crawl, train and deliver on intervals, in one process (APScheduler 3).

One asyncio event loop holds everything: an ``AsyncIOScheduler``, the
crawler (async), the Telegram bot's polling (async), and training, which
runs in a worker thread so that polling and crawling go on meanwhile.

Jobs, each on its own interval from the TOML file (see :class:`RunConfig`):

- ``crawl``: one pass of the Bluesky crawler (new accounts first, then the
  stalest), at most ``max_accounts`` per run;
- ``train_incremental``: the feedback that arrived since the last cycle goes
  to :class:`recgraph.retrieval.retraining.RetrainingDriver`, whose policy
  does a ``partial_fit`` (or a full fit for models without one);
- ``train_full``: the model is fitted from scratch on all feedback (the cure
  for the drift of incremental updates);
- ``deliver``: the bot sends every subscriber its next post.

After each training cycle the model is saved to ``model_dir`` and the bot
gets a freshly loaded copy, so it never ranks with a model that is being
trained. A run of a job that would overlap the previous one of the same job
is skipped, not stacked (``max_instances=1``, ``coalesce=True``); a job that
fails is logged and simply runs again at its next time.

Example ``recgraph.toml``::

    database_url = "sqlite:///recgraph.db"

    [crawl]
    seeds = ["bsky.app"]
    interval_minutes = 60
    max_accounts = 2000

    [train]
    model = "biased_mf"
    incremental_interval_minutes = 10
    full_interval_minutes = 1440
    model_dir = "models/feed"

    [bot]
    token_env = "TELEGRAM_BOT_TOKEN"
    interval_minutes = 60
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.store import Store
from recgraph.errors import ConfigError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- config
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    #: Run once right at start instead of waiting one interval.
    run_at_start: bool = True


class CrawlJobConfig(_Section):
    """The ``[crawl]`` table: a pass of the Bluesky crawler every ``interval_minutes``."""

    interval_minutes: float = Field(default=60.0, gt=0)
    seeds: list[str] = Field(default_factory=list)
    base_url: str = "https://public.api.bsky.app"
    max_accounts: int | None = Field(default=1000, ge=1)
    max_depth: int | None = Field(default=None, ge=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    recrawl_after_hours: float = Field(default=24.0, ge=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    timeout_seconds: float = Field(default=20.0, gt=0)


class TrainJobConfig(_Section):
    """The ``[train]`` table: which model, on which feedback, how often.

    ``full_retrain_every`` is the retraining policy's (0: only the full job
    retrains from scratch).
    """

    model: str = "popular"
    params: dict[str, Any] = Field(default_factory=dict)
    kinds: list[str] = Field(default_factory=lambda: ["like", "dislike"])
    incremental_interval_minutes: float | None = Field(default=10.0, gt=0)
    full_interval_minutes: float | None = Field(default=1440.0, gt=0)
    full_retrain_every: int = Field(default=0, ge=0)
    min_new_interactions: int = Field(default=1, ge=1)
    model_dir: str | None = None


class BotJobConfig(_Section):
    """The ``[bot]`` table: the Telegram bot (polling all the time, delivering on an interval).

    The token is ``token``, else the environment variable ``token_env``.
    Other keys are :class:`recgraph.collect.telegram.bot.BotConfig` fields.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    run_at_start: bool = False
    token: str | None = None
    token_env: str = "TELEGRAM_BOT_TOKEN"
    interval_minutes: float = Field(default=60.0, gt=0)


class RunConfig(BaseModel):
    """The whole file; a missing table means that job does not run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    database_url: str | None = None
    crawl: CrawlJobConfig | None = None
    train: TrainJobConfig | None = None
    bot: BotJobConfig | None = None


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and check a ``recgraph run`` TOML file; errors name the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


# ---------------------------------------------------------------------- runner
@dataclass
class JobStats:
    """How a job has fared in this process."""

    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_seconds: float = 0.0


class JobRunner:
    """The scheduler with the configured jobs; ``await start()``, later ``await stop()``.

    Parameters
    ----------
    config
        What to run (:class:`RunConfig`).
    store
        The store to use (default: opened from ``config.database_url``).
    """

    def __init__(self, config: RunConfig, store: Store | None = None) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_EXECUTED,
            EVENT_JOB_MAX_INSTANCES,
        )
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.config = config
        self._own_store = store is None
        self.store = store or Store(config.database_url)
        self.scheduler = AsyncIOScheduler(
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
        )
        self._events = (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES)
        self.stats: dict[str, JobStats] = {}
        self.bot_service: Any | None = None
        self.trainer: Trainer | None = None
        self._started: dict[str, float] = {}

    # ---------------------------------------------------------------- jobs
    def add_job(
        self,
        name: str,
        job: Callable[[], Awaitable[Any]],
        interval_seconds: float,
        *,
        run_at_start: bool = True,
    ) -> None:
        """Run the coroutine function ``job`` every ``interval_seconds``, never two at once."""
        from datetime import datetime, timedelta

        self.stats[name] = JobStats()

        async def timed() -> Any:
            self._started[name] = time.monotonic()
            return await job()

        self.scheduler.add_job(
            timed,
            "interval",
            seconds=interval_seconds,
            id=name,
            name=name,
            next_run_time=datetime.now().astimezone()
            if run_at_start
            else datetime.now().astimezone() + timedelta(seconds=interval_seconds),
        )

    def _on_event(self, event: Any) -> None:
        executed, error, max_instances = self._events
        stats = self.stats.setdefault(event.job_id, JobStats())
        if event.code == max_instances:
            stats.skipped += 1
            log.info("%s: still running, this run is skipped", event.job_id)
            return
        if event.code == error and isinstance(event.exception, asyncio.CancelledError):
            log.info("%s: cancelled (shutting down)", event.job_id)
            return
        stats.runs += 1
        stats.last_seconds = time.monotonic() - self._started.get(event.job_id, time.monotonic())
        if event.code == error:
            stats.failures += 1
            stats.last_error = f"{type(event.exception).__name__}: {event.exception}"
            log.error("%s failed (will run again next time): %s", event.job_id, stats.last_error)

    def _configure(self) -> None:
        cfg = self.config
        if cfg.bot is not None and cfg.bot.enabled:
            self.bot_service = _make_bot_service(self.store, cfg.bot)
            self.add_job(
                "deliver",
                self.bot_service.deliver_round,
                cfg.bot.interval_minutes * 60,
                run_at_start=cfg.bot.run_at_start,
            )
        if cfg.train is not None and cfg.train.enabled:
            self.trainer = Trainer(self.store, cfg.train, on_model=self._hand_over)
            if cfg.train.full_interval_minutes:
                self.add_job(
                    "train_full",
                    lambda: asyncio.to_thread(self.trainer.full),  # type: ignore[union-attr]
                    cfg.train.full_interval_minutes * 60,
                    run_at_start=cfg.train.run_at_start,
                )
            if cfg.train.incremental_interval_minutes:
                self.add_job(
                    "train_incremental",
                    lambda: asyncio.to_thread(self.trainer.incremental),  # type: ignore[union-attr]
                    cfg.train.incremental_interval_minutes * 60,
                    run_at_start=cfg.train.run_at_start and not cfg.train.full_interval_minutes,
                )
        if cfg.crawl is not None and cfg.crawl.enabled:
            self.add_job(
                "crawl",
                self._crawl,
                cfg.crawl.interval_minutes * 60,
                run_at_start=cfg.crawl.run_at_start,
            )

    def _hand_over(self, model: Any) -> None:
        if self.bot_service is not None:
            self.bot_service.bot.set_model(model)

    async def _crawl(self) -> Any:
        from recgraph.collect.bluesky.crawler import CrawlConfig, Crawler

        c = self.config.crawl
        assert c is not None
        config = CrawlConfig(
            seeds=c.seeds,
            client={
                "base_url": c.base_url,
                "concurrency": c.concurrency,
                "timeout_seconds": c.timeout_seconds,
            },
            stop_when_idle=True,
            max_accounts=c.max_accounts,
            max_depth=c.max_depth,
            lease_seconds=c.lease_seconds,
            recrawl_after_seconds=c.recrawl_after_hours * 3600,
        )
        report = await Crawler(self.store, config).run()
        log.info(
            "crawl: %d accounts, %d follows listed (+%d, -%d), %d requests",
            report.accounts,
            report.edges,
            report.added,
            report.removed,
            report.requests,
        )
        return report

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the bot's polling (if any) and the scheduler, in the running loop."""
        self._configure()
        if self.bot_service is not None:
            await self.bot_service.start()
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, wait for nothing, stop the bot, close the store if ours."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.bot_service is not None:
            await self.bot_service.stop()
        if self._own_store:
            self.store.close()

    async def __aenter__(self) -> JobRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _make_bot_service(store: Store, section: BotJobConfig) -> Any:
    from recgraph.collect.telegram.bot import BotConfig, BotService

    values = section.model_dump(exclude={"enabled", "run_at_start", "token_env"})
    values["token"] = section.token or os.environ.get(section.token_env)
    if not values["token"]:
        raise ConfigError(f"bot: no token (set bot.token or ${section.token_env})")
    try:
        config = BotConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"bot.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(problems) from None
    return BotService(store, config)


# ---------------------------------------------------------------------- training
class Trainer:
    """Full and incremental training on the store's feedback, by the retraining policy.

    Each cycle saves the model to ``model_dir`` (a temporary folder when not
    configured) and calls ``on_model`` with a freshly loaded copy. Both jobs
    share a lock, so they never train at the same time.
    """

    def __init__(
        self,
        store: Store,
        config: TrainJobConfig,
        *,
        on_model: Callable[[Any], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.on_model = on_model
        self.model_dir = Path(config.model_dir or tempfile.mkdtemp(prefix="recgraph-model-"))
        self.driver: Any | None = None
        self._known: set[tuple] = set()
        self._lock = threading.Lock()
        self.cycles: list[str] = []

    def _feedback(self) -> Interactions:
        kinds = [Kind.parse(k) for k in self.config.kinds]
        return self.store.interactions_graph(kinds=kinds)

    def _policy(self) -> Any:
        from recgraph.retrieval.retraining import RetrainingConfig

        return RetrainingConfig(
            full_retrain_every=self.config.full_retrain_every,
            min_new_interactions=self.config.min_new_interactions,
        )

    def full(self) -> str:
        """Fit a new model from scratch on all feedback; return the action taken."""
        from recgraph.retrieval.registry import create_retriever
        from recgraph.retrieval.retraining import RetrainingDriver

        with self._lock:
            data = self._feedback()
            if len(data) == 0:
                log.info("train_full: no feedback yet; nothing to train")
                return "wait"
            model = create_retriever(self.config.model, self.config.params)
            self.driver = RetrainingDriver(model, self._policy(), history=data)
            self._known = _row_keys(data)
            self._publish("full", len(data))
            return "full"

    def incremental(self) -> str:
        """Learn the feedback that arrived since the last cycle; return the action taken."""
        if self.driver is None:
            return self.full()
        with self._lock:
            data = self._feedback()
            keys = _row_keys_list(data)
            fresh = np.fromiter((k not in self._known for k in keys), dtype=bool, count=len(keys))
            new = data.subset(fresh)
            report = self.driver.add(new)
            self._known.update(k for k, f in zip(keys, fresh, strict=True) if f)
            action = str(report.action)
            if action != "wait":
                self._publish(action, report.n_new)
            return action

    def _publish(self, action: str, rows: int) -> None:
        from recgraph.retrieval.base import Retriever

        assert self.driver is not None
        self.driver.model.save(self.model_dir)
        self.cycles.append(action)
        log.info("train: %s cycle on %d rows, saved to %s", action, rows, self.model_dir)
        if self.on_model is not None:
            self.on_model(Retriever.load(self.model_dir))


def _row_keys_list(data: Interactions) -> list[tuple]:
    users = data.users.external(data.src)
    items = data.items.external(data.dst)
    stamps = data.timestamp if data.timestamp is not None else np.zeros(len(data), np.int64)
    return list(zip(users, items, data.kind.tolist(), stamps.tolist(), strict=True))


def _row_keys(data: Interactions) -> set[tuple]:
    return set(_row_keys_list(data))


async def run_forever(config: RunConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run the jobs until ``stop`` is set (or the process is interrupted)."""
    stop = stop or asyncio.Event()
    async with JobRunner(config) as runner:
        names = ", ".join(
            f"{job.id} every {job.trigger.interval.total_seconds() / 60:g} min"
            for job in runner.scheduler.get_jobs()
        )
        log.info("running: %s", names or "no jobs (nothing enabled in the config)")
        await stop.wait()


__all__ = [
    "BotJobConfig",
    "CrawlJobConfig",
    "JobRunner",
    "JobStats",
    "RunConfig",
    "TrainJobConfig",
    "Trainer",
    "load_run_config",
    "run_forever",
]
