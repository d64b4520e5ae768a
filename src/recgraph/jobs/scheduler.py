"""``recgraph run``: crawl, train and deliver on intervals, in one process (APScheduler 3).

One asyncio event loop holds everything: an ``AsyncIOScheduler``, the
crawler (async), the Telegram bot's polling (async), and the training
cycles, each run as a child process (:mod:`recgraph.jobs.train_worker`) so
that polling and crawling go on meanwhile and a stop never waits for a fit.

Jobs, each on its own interval from the TOML file (see :class:`RunConfig`):

- ``crawl``: one pass of the Bluesky crawler (new accounts first, then the
  stalest), at most ``max_accounts`` per run;
- ``train``: exactly what ``recgraph train`` does
  (:func:`recgraph.jobs.train.train_pipeline`): the pipeline trained on a
  snapshot of the whole store (follow graph and interactions), published to
  the model registry as a new version and made current, so that a running
  ``recgraph serve`` hot-reloads it; then registry retention. The
  retraining policy (:class:`recgraph.retrieval.retraining.RetrainingPolicy`)
  decides each cycle from the store's changes since the last version: wait
  (fewer than ``min_new_changes``, or sooner than ``min_interval_minutes``),
  incremental (a pipeline has no ``partial_fit``, so never today) or full;
- ``deliver``: the bot sends every subscriber its next post, ranked by the
  feed of the registry's current version.

A run of a job that would overlap the previous one of the same job is
skipped, not stacked (``max_instances=1``, ``coalesce=True``); a job that
fails is logged in one line and simply runs again at its next time.

Stopping (Ctrl-C or SIGTERM, the signal systemd, Docker and Kubernetes send)
is orderly: no new runs start, running ones are cancelled and awaited (the
crawler hands its leases back, a training child is stopped before it
publishes, or removes the version it was writing), the bot stops polling,
the store is closed, and one INFO line says so. A second signal exits at once.

Example ``recgraph.toml``::

    database_url = "sqlite:///recgraph.db"

    [crawl]
    seeds = ["bsky.app"]
    interval_minutes = 60
    max_accounts = 2000

    [train]
    interval_minutes = 30
    registry = "./models"          # default $RECGRAPH_REGISTRY, else ./models
    # pipeline = "pipeline.toml"   # default: the shipped pipeline
    keep_versions = 5              # registry retention; 0 keeps everything

    [bot]
    token_env = "TELEGRAM_BOT_TOKEN"
    interval_minutes = 60
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


#: Keys of the ``[train]`` table before it trained the pipeline, and what replaced them.
_REMOVED_TRAIN_KEYS = {
    "model": "the train job trains the whole pipeline, as recgraph train does: "
    "choose its retrievers in a pipeline file (train.pipeline)",
    "params": "set retriever parameters in the pipeline file (train.pipeline)",
    "kinds": "the pipeline trains on everything the store holds",
    "model_dir": "versions go to the model registry (train.registry)",
    "incremental_interval_minutes": "one train job: train.interval_minutes",
    "full_interval_minutes": "one train job: train.interval_minutes",
    "full_retrain_every": "a pipeline has no incremental update: every cycle is a full one",
    "min_new_interactions": "renamed train.min_new_changes",
}


class TrainJobConfig(_Section):
    """The ``[train]`` table: ``recgraph train`` every ``interval_minutes``, by the policy.

    ``pipeline``: a pipeline TOML file (default: the shipped one);
    ``registry``: where versions go (default ``$RECGRAPH_REGISTRY``, else
    ``./models``); ``keep_versions``: retention after each publish (default
    ``$RECGRAPH_REGISTRY_KEEP``, else 5; ``0`` keeps everything). A cycle
    waits until the store has at least ``min_new_changes`` changed rows since
    the last version and ``min_interval_minutes`` have passed;
    ``timeout_minutes`` stops a cycle that takes longer.
    """

    interval_minutes: float = Field(default=30.0, gt=0)
    pipeline: str | None = None
    registry: str | None = None
    keep_versions: int | None = Field(default=None, ge=0)
    min_new_changes: int = Field(default=1, ge=1)
    min_interval_minutes: float = Field(default=0.0, ge=0)
    timeout_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, instead in _REMOVED_TRAIN_KEYS.items():
                if key in data:
                    raise ValueError(f"{key} is no longer a setting: {instead}")
        return data


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

    def bot_token(self) -> str | None:
        """The bot's token: ``bot.token``, else ``$<bot.token_env>``."""
        if self.bot is None:
            return None
        return self.bot.token or os.environ.get(self.bot.token_env) or None

    def secrets(self) -> list[str]:
        """What must never reach a log: the bot token, the database password."""
        found = [self.bot_token() or ""]
        if self.database_url:
            try:
                found.append(urlsplit(self.database_url).password or "")
            except ValueError:
                pass
        return [s for s in found if s]


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
    stop_timeout
        How long :meth:`stop` waits for cancelled runs to finish (seconds).
    """

    def __init__(
        self, config: RunConfig, store: Store | None = None, *, stop_timeout: float = 30.0
    ) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.config = config
        self._own_store = store is None
        self.store = store or Store(config.database_url)
        self.stop_timeout = stop_timeout
        self.scheduler = AsyncIOScheduler(
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        )
        self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self.stats: dict[str, JobStats] = {}
        self.bot_service: Any | None = None
        self.trainer: Trainer | None = None
        self._running: dict[str, asyncio.Task] = {}
        self._stopping = False

    # ---------------------------------------------------------------- jobs
    def add_job(
        self,
        name: str,
        job: Callable[[], Awaitable[Any]],
        interval_seconds: float,
        *,
        run_at_start: bool = True,
    ) -> None:
        """Run the coroutine function ``job`` every ``interval_seconds``, never two at once.

        A failure is logged in one ERROR line (the traceback at DEBUG) and
        counted; a run cancelled by :meth:`stop` logs one INFO line.
        """
        from datetime import datetime, timedelta

        stats = self.stats[name] = JobStats()

        async def timed() -> Any:
            task = asyncio.current_task()
            if task is not None:
                self._running[name] = task
            started = time.monotonic()
            try:
                return await job()
            except asyncio.CancelledError:
                log.info("%s: cancelled (stopping)", name)
                return None  # the stop asked for it: not an error
            except Exception as exc:
                stats.failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("%s failed (will run again next time): %s", name, stats.last_error)
                log.debug("%s failed", name, exc_info=True)
                return None
            finally:
                stats.runs += 1
                stats.last_seconds = time.monotonic() - started
                self._running.pop(name, None)

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

    def _on_skipped(self, event: Any) -> None:
        stats = self.stats.setdefault(event.job_id, JobStats())
        stats.skipped += 1
        log.info("%s: still running, this run is skipped", event.job_id)

    def _schedule(self, name: str, job: Callable[[], Awaitable[Any]], table: Any) -> None:
        """``job`` as its table of the config says: every ``interval_minutes``, and at once
        when ``run_at_start``."""
        self.add_job(name, job, table.interval_minutes * 60, run_at_start=table.run_at_start)

    def _configure(self) -> None:
        cfg = self.config
        if cfg.bot is not None and cfg.bot.enabled:
            self.bot_service = _make_bot_service(self.store, cfg.bot)
            self._schedule("deliver", self.bot_service.deliver_round, cfg.bot)
        if cfg.train is not None and cfg.train.enabled:
            self.trainer = Trainer(
                self.store,
                cfg.train,
                on_version=self._hand_over if self.bot_service is not None else None,
            )
            self._schedule("train", self.trainer.cycle, cfg.train)
        if cfg.crawl is not None and cfg.crawl.enabled:
            self._schedule("crawl", self._crawl, cfg.crawl)

    async def _hand_over(self, version: str) -> None:
        """Give the bot the feed of registry ``version`` (what the API serves)."""
        if self.bot_service is None or self.trainer is None:
            return
        model = await asyncio.to_thread(self.trainer.feed_model, version)
        if model is not None:
            self.bot_service.bot.set_model(model)
            log.info("deliver: ranking with the feed of %s", version)

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
            if self.trainer is not None:
                current = await asyncio.to_thread(self.trainer.registry.current_version)
                if current is not None:  # a restart ranks with what is served, at once
                    await self._hand_over(current)
        self.scheduler.start()

    async def stop(self) -> None:
        """Start nothing new, cancel and await running jobs, stop the bot, close the store."""
        if self._stopping:
            return
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # also cancels the runs in progress
        running = [t for t in self._running.values() if not t.done()]
        for task in running:
            if not task.cancelling():  # one cancellation each: a second would hit its cleanup
                task.cancel()
        if running:
            done, pending = await asyncio.wait(running, timeout=self.stop_timeout)
            if pending:
                log.warning(
                    "%d job(s) did not stop within %.0f s: %s",
                    len(pending),
                    self.stop_timeout,
                    ", ".join(sorted(k for k, t in self._running.items() if t in pending)),
                )
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
@dataclass
class CycleResult:
    """What one training cycle did."""

    action: str
    changes: int
    version: str | None = None
    seconds: float = 0.0
    removed: tuple[str, ...] = ()


class Trainer:
    """The ``train`` job: ``recgraph train`` in a child process, when the policy says so.

    Each cycle counts what changed in the store since the last version
    (:meth:`changes`), asks the retraining policy, and on ``full`` runs
    :mod:`recgraph.jobs.train_worker`, which trains the pipeline on a
    snapshot of the store and publishes it as the registry's current version.
    ``on_version(version)`` is awaited after each publish.
    """

    def __init__(
        self,
        store: Store,
        config: TrainJobConfig,
        *,
        on_version: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        from recgraph.retrieval.retraining import RetrainingConfig, RetrainingPolicy
        from recgraph.serving.registry import ModelRegistry
        from recgraph.settings import load_settings

        settings = load_settings()
        self.store = store
        self.config = config
        self.on_version = on_version
        self.registry = ModelRegistry(config.registry or settings.registry)
        self.keep = settings.registry_keep if config.keep_versions is None else config.keep_versions
        self.policy = RetrainingPolicy(
            RetrainingConfig(
                full_retrain_every=1,
                min_interval_seconds=config.min_interval_minutes * 60,
                min_new_interactions=config.min_new_changes,
            )
        )
        #: Row counts of the store when the last published version was trained.
        self._marks: dict[str, int] | None = None
        self._last_cycle: float | None = None
        self.cycles: list[CycleResult] = []

    # ---------------------------------------------------------------- the policy's input
    def marks(self) -> dict[str, int]:
        """The store's row counts (follows, their events, interactions per kind, ...)."""
        counts = self.store.counts()
        counts.pop("interactions", None)  # the per-kind counts say more
        return counts

    def changes(self, marks: Mapping[str, int]) -> int:
        """Rows changed since the last version (every row, before the first one)."""
        if self._marks is None:
            return sum(marks.values())
        keys = set(marks) | set(self._marks)
        return sum(abs(marks.get(k, 0) - self._marks.get(k, 0)) for k in keys)

    def decide(self, changes: int, now: float | None = None) -> str:
        """``wait``, ``incremental`` or ``full``, from the retraining policy."""
        from recgraph.pipeline import Pipeline

        now = time.time() if now is None else now
        return str(
            self.policy.decide(
                n_buffered=changes,
                incremental_since_full=0,
                seconds_since_last=None if self._last_cycle is None else now - self._last_cycle,
                supports_incremental=callable(getattr(Pipeline, "partial_fit", None)),
            )
        )

    # ---------------------------------------------------------------- a cycle
    async def cycle(self) -> CycleResult:
        """One run of the job: decide, and train and publish if the policy says so."""
        marks = await asyncio.to_thread(self.marks)
        changes = self.changes(marks)
        trainable = marks.get("follows", 0) + sum(
            n for key, n in marks.items() if key.startswith("interactions_")
        )
        action = self.decide(changes) if trainable else "wait"
        if not trainable:
            log.info("train: waiting (the store has neither follows nor interactions yet)")
            result = CycleResult("wait", changes)
            self.cycles.append(result)
            return result
        if action == "wait":
            log.info("train: waiting (%d change(s) in the store since the last version)", changes)
            result = CycleResult("wait", changes)
            self.cycles.append(result)
            return result
        started = time.monotonic()
        outcome = await self._run_worker()
        self._marks, self._last_cycle = marks, time.time()
        result = CycleResult(
            action,
            changes,
            version=outcome["version"],
            seconds=time.monotonic() - started,
            removed=tuple(outcome.get("removed", ())),
        )
        self.cycles.append(result)
        log.info(
            "train: %s cycle on %s rows (%d change(s)) -> published %s%s in %.1f s%s",
            action,
            f"{outcome.get('rows', 0):,}",
            changes,
            result.version,
            "" if outcome.get("promoted") else " (not current)",
            result.seconds,
            f"; retention removed {', '.join(result.removed)}" if result.removed else "",
        )
        if self.on_version is not None and result.version is not None:
            await self.on_version(result.version)
        return result

    def worker_command(self) -> list[str]:
        """The child's command line (no secret in it: the store URL goes by environment)."""
        command = [sys.executable, "-m", "recgraph.jobs.train_worker"]
        command += ["--registry", self.registry.root, "--keep", str(self.keep)]
        if self.config.pipeline:
            command += ["--pipeline", self.config.pipeline]
        level = logging.getLogger("recgraph").getEffectiveLevel()
        return [*command, "--log-level", logging.getLevelName(min(level, logging.INFO))]

    async def _run_worker(self) -> dict[str, Any]:
        env = {
            **os.environ,
            "RECGRAPH_DATABASE_URL": self.store.url,
            "RECGRAPH_PROGRESS": "0",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        proc = await asyncio.create_subprocess_exec(
            *self.worker_command(), stdout=asyncio.subprocess.PIPE, env=env
        )
        timeout = self.config.timeout_minutes * 60 if self.config.timeout_minutes else None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.CancelledError, TimeoutError):
            await _stop_child(proc)
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"the training process exited with status {proc.returncode}")
        lines = out.decode().strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(
                f"the training process said nothing readable: {out[-200:]!r}"
            ) from None

    def feed_model(self, version: str) -> Any | None:
        """The pipeline of registry ``version`` when it answers the feed question (for the
        bot, so a post is chosen by the same rules as an API answer), or ``None``."""
        from recgraph.serving.loader import load_version

        try:
            loaded = load_version(self.registry, version)
        except Exception as exc:  # the bot keeps its model; the API reports its own failure
            log.warning("cannot load %s for the bot: %s", version, exc)
            return None
        return loaded.pipeline if "feed" in loaded.pipeline.questions else None


async def _stop_child(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM the training child (it stops before publishing), SIGKILL after ``grace``."""
    if proc.returncode is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.shield(asyncio.wait_for(proc.wait(), grace))
        except TimeoutError:
            proc.kill()
            await proc.wait()
    except ProcessLookupError:
        pass


async def run_forever(config: RunConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run the jobs until ``stop`` is set, SIGINT (Ctrl-C) or SIGTERM; then stop in order."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            log.warning("%s again: exiting now", sig.name)
            os._exit(128 + sig.value)
        received.append(sig.name)
        log.info("stopping (%s): cancelling running jobs...", sig.name)
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        async with JobRunner(config) as runner:
            names = ", ".join(
                f"{job.id} every {job.trigger.interval.total_seconds() / 60:g} min"
                for job in runner.scheduler.get_jobs()
            )
            log.info("running: %s", names or "no jobs (nothing enabled in the config)")
            await stop.wait()
        log.info("stopped")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


#: Libraries whose INFO lines are one per HTTP request or job run: WARNING unless ``-v``.
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "telegram", "asyncio")


def configure_run_logging(config: RunConfig, *, verbose: bool = False) -> logging.Handler:
    """The run log on stderr: recgraph at INFO, chatty libraries at WARNING (``verbose``:
    recgraph at DEBUG, libraries at INFO); secrets masked in every line."""
    from recgraph.settings import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(config.secrets()))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_recgraph_run", False)]:
        root.removeHandler(old)
    handler._recgraph_run = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("recgraph").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    # APScheduler's own lines repeat the job lines above (runs, skips, failures): only with -v
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.ERROR)
    return handler


__all__ = [
    "NOISY_LOGGERS",
    "BotJobConfig",
    "CrawlJobConfig",
    "CycleResult",
    "JobRunner",
    "JobStats",
    "RunConfig",
    "TrainJobConfig",
    "Trainer",
    "configure_run_logging",
    "load_run_config",
    "run_forever",
]
