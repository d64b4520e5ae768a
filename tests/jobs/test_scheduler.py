"""``recgraph run``: overlapping runs skipped, failures retried, scheduled training that reaches
the service, the jobs wired end to end, a quiet log without secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("apscheduler", reason="APScheduler is not installed (extra: schedule)")

from recgraph.data.store import Store  # noqa: E402
from recgraph.errors import ConfigError  # noqa: E402
from recgraph.jobs.scheduler import (  # noqa: E402
    JobRunner,
    RunConfig,
    Trainer,
    TrainJobConfig,
    configure_run_logging,
    load_run_config,
)
from recgraph.pipeline import Pipeline  # noqa: E402
from recgraph.serving.registry import ModelRegistry  # noqa: E402


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'jobs.db'}") as opened:
        yield opened


def run_one_job(store: Store, name: str, job, *, every: float, for_seconds: float) -> JobRunner:
    """A runner with the one job ``name`` every ``every`` seconds, run for ``for_seconds``."""

    async def scenario() -> JobRunner:
        runner = JobRunner(RunConfig(), store=store)
        runner.add_job(name, job, interval_seconds=every)
        async with runner:
            await asyncio.sleep(for_seconds)
        return runner

    return asyncio.run(scenario())


def test_overlapping_runs_are_skipped_not_stacked(store: Store) -> None:
    running, most, calls = 0, 0, 0

    async def slow() -> None:
        nonlocal running, most, calls
        calls += 1
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.45)
        running -= 1

    runner = run_one_job(store, "slow", slow, every=0.1, for_seconds=1.3)
    assert most == 1
    assert calls >= 2
    assert runner.stats["slow"].skipped >= 3
    assert runner.stats["slow"].runs >= 2


def test_a_failed_job_is_logged_and_runs_again(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = []

    async def flaky() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("the database went away")

    runner = run_one_job(store, "flaky", flaky, every=0.15, for_seconds=0.6)
    stats = runner.stats["flaky"]
    assert stats.failures == 1 and stats.runs >= 3
    assert "the database went away" in (stats.last_error or "")
    assert "flaky failed" in caplog.text
    # one line for the failure, no traceback at ERROR (apscheduler's own is never reached)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None


def test_stop_cancels_a_running_job_with_one_info_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    cleaned = []

    async def long() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)  # cleanup that awaits (a crawler handing leases back)
            cleaned.append(True)

    caplog.set_level(logging.DEBUG)
    runner = run_one_job(store, "long", long, every=100, for_seconds=0.3)
    assert cleaned == [True]  # stop waited for the cleanup
    assert "long: cancelled (stopping)" in caplog.text
    assert runner.stats["long"].failures == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        'database_url = "sqlite:///x.db"\n[crawl]\nseeds = ["a.test"]\ninterval_minutes = 5\n'
        "[train]\ninterval_minutes = 3\nkeep_versions = 2\n"
        '[bot]\ntoken = "1:x"\ncold_start_min_interactions = 2\n'
    )
    config = load_run_config(good)
    assert config.crawl is not None and config.crawl.interval_minutes == 5
    assert config.train is not None and config.train.keep_versions == 2
    assert config.bot is not None and config.bot.model_extra == {"cold_start_min_interactions": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("[crawl]\ninterval_minutes = -1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: crawl\.interval_minutes"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_run_config(tmp_path / "missing.toml")
    old = tmp_path / "old.toml"
    old.write_text('[train]\nmodel = "biased_mf"\nmodel_dir = "models/feed"\n')
    with pytest.raises(ConfigError, match=r"old\.toml: train: .*model is no longer a setting"):
        load_run_config(old)


def _write(folder: Path, text: str) -> Path:
    path = folder / "run.toml"
    path.write_text(text)
    return path


@pytest.fixture
def synthetic_store(tmp_path: Path):
    from recgraph.data.synthetic import SyntheticConfig
    from recgraph.jobs.quickstart import load_synthetic

    small = SyntheticConfig(n_accounts=120, n_items=80, mean_follows=8, mean_interactions=8)
    with Store(f"sqlite:///{tmp_path / 'synthetic.db'}") as opened:
        load_synthetic(opened, small)
        yield opened


def _follow(store: Store, src: str, targets: list[str]) -> None:
    with store.writer() as w:
        w.accounts(pd.DataFrame({"external_id": [src]}))
        w.follows(pd.DataFrame({"src": [src] * len(targets), "dst": targets}), directed=True)


def test_scheduled_train_publishes_what_recgraph_train_does_and_the_service_reloads_it(
    synthetic_store: Store, tmp_path: Path
) -> None:
    """Item 9: the scheduled job publishes a pipeline version; a running app swaps to it."""
    from fastapi.testclient import TestClient

    from recgraph.jobs.train import train_pipeline
    from recgraph.serving.app import create_app
    from recgraph.settings import Settings

    registry = ModelRegistry(tmp_path / "models")
    assert train_pipeline(synthetic_store, registry).version == "v1"  # a manual recgraph train
    settings = Settings(
        registry=registry.root,
        database_url=synthetic_store.url,
        api_token="t",
        poll_seconds=0.1,
        exclude_recent_feedback=False,
    )
    newcomer = "did:test:newcomer"
    ids = synthetic_store.follows_graph().users.ids
    with TestClient(create_app(settings)) as client:
        before = client.get(f"/v1/accounts/{newcomer}/suggestions").json()
        assert before["model_version"] == "v1" and before["known"] is False
        _follow(synthetic_store, newcomer, list(ids[:6]))  # arrives after v1 was trained
        config = RunConfig.model_validate(
            {"train": {"interval_minutes": 0.01, "registry": registry.root, "keep_versions": 5}}
        )

        async def scenario() -> JobRunner:
            async with JobRunner(config, store=synthetic_store) as runner:
                deadline = time.monotonic() + 90
                while len(runner.trainer.cycles) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            return runner

        runner = asyncio.run(scenario())
        cycles = runner.trainer.cycles
        assert [c.action for c in cycles[:2]] == ["full", "wait"]  # nothing new: the policy waits
        assert cycles[0].version == "v2" and registry.current_version() == "v2"
        manifest = registry.manifest("v2")
        assert manifest["model"] == "pipeline"
        assert set(manifest["data"]) >= {"who_to_follow", "feed"}  # the follow graph too
        deadline = time.monotonic() + 20
        while client.get("/healthz").json()["model_version"] != "v2":
            assert time.monotonic() < deadline, "the service never reloaded v2"
            time.sleep(0.1)
        after = client.get(f"/v1/accounts/{newcomer}/suggestions").json()
    assert after["model_version"] == "v2" and after["known"] is True
    assert after["cold_start"] is False


def test_an_empty_store_waits_instead_of_failing(store: Store, tmp_path: Path) -> None:
    trainer = Trainer(store, TrainJobConfig(registry=str(tmp_path / "models")))
    result = asyncio.run(trainer.cycle())
    assert result.action == "wait" and trainer.registry.current_version() is None


def test_trainer_policy_counts_changes_and_respects_the_minimum(
    synthetic_store: Store, tmp_path: Path
) -> None:
    config = TrainJobConfig(registry=str(tmp_path / "models"), min_new_changes=3)
    trainer = Trainer(synthetic_store, config)
    marks = trainer.marks()
    assert trainer.changes(marks) == sum(marks.values()) > 0
    assert trainer.decide(trainer.changes(marks)) == "full"  # never trained: full
    trainer._marks, trainer._last_cycle = marks, time.time()
    ids = synthetic_store.follows_graph().users.ids
    _follow(synthetic_store, "did:test:one", [ids[0]])  # 1 account + 1 follow
    assert trainer.changes(trainer.marks()) == 2
    assert trainer.decide(2) == "wait" and trainer.decide(3) == "full"
    trainer.policy.config.min_interval_seconds = 3600
    assert trainer.decide(10) == "wait"  # too soon after the last cycle


def test_run_log_is_quiet_by_default_and_never_shows_the_token(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 11: HTTP request lines only with -v, and the token masked even then."""
    token = "123456:AAsecret-token-value"
    monkeypatch.setenv("TEST_BOT_TOKEN", token)
    config = RunConfig.model_validate(
        {
            "database_url": "postgresql+psycopg://u:dbpass-9@h/db",
            "bot": {"token_env": "TEST_BOT_TOKEN"},
        }
    )
    url = f"https://api.telegram.org/bot{token}/getUpdates"
    try:
        for verbose in (False, True):
            configure_run_logging(config, verbose=verbose)
            logging.getLogger("httpx").info('HTTP Request: POST %s "HTTP/1.1 200 OK"', url)
            logging.getLogger("telegram.ext.Updater").info("polling %s", url)
            logging.getLogger("apscheduler.executors.default").info('Running job "crawl"')
            logging.getLogger("recgraph.jobs.scheduler").info("train: published v3")
            logging.getLogger("recgraph.collect").warning("failed: %s (%s)", url, "dbpass-9")
            quiet = capsys.readouterr().err
            if not verbose:
                assert "HTTP Request" not in quiet and "polling" not in quiet
                assert "Running job" not in quiet
            else:
                assert "HTTP Request: POST https://api.telegram.org/bot***/getUpdates" in quiet
            assert "train: published v3" in quiet
            assert token not in quiet and "dbpass-9" not in quiet
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_recgraph_run", False)]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        for name in ("recgraph", "httpx", "httpcore", "telegram", "apscheduler", "urllib3"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_run_wires_crawl_training_and_delivery(store: Store, tmp_path: Path) -> None:
    from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph
    from recgraph.collect.telegram.bot import FeedBot
    from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi

    graph = FakeGraph.generate(30, seed=2, mean_follows=5)
    bot = FeedBot(store, {"token": DEFAULT_TOKEN})
    registry = ModelRegistry(tmp_path / "models")
    with FakeAppView(graph) as appview, FakeBotApi() as api:
        api.channel_post(-100, "a")
        api.channel_post(-100, "b")
        for m in (1, 2):
            bot.record_post(-100, m, 1_700_000_000 + m)
        bot.record_feedback(5, "tg:-100:1", "like")
        bot.record_feedback(6, "tg:-100:1", "like")
        api.user_message(77, "hi")
        bot.subscribe(77)
        config = RunConfig.model_validate(
            {
                "crawl": {
                    "seeds": [graph.dids[0]],
                    "base_url": appview.url,
                    "interval_minutes": 0.02,
                },
                "train": {"interval_minutes": 0.02, "registry": registry.root},
                "bot": {
                    "token": DEFAULT_TOKEN,
                    "base_url": api.base_url,
                    "interval_minutes": 0.01,
                    "poll_timeout_seconds": 1,
                    "per_chat_seconds": 0.01,
                },
            }
        )

        async def scenario() -> JobRunner:
            async with JobRunner(config, store=store) as runner:
                for job in ("crawl", "train", "deliver"):
                    await asyncio.to_thread(api.wait_for, lambda j=job: runner.stats[j].runs, 60)
                await asyncio.to_thread(
                    api.wait_for, lambda: registry.current_version() is not None, 60
                )
                await asyncio.to_thread(api.wait_for, lambda: api.calls("copyMessage"), 20)
                bot = runner.bot_service.bot
                await asyncio.to_thread(
                    api.wait_for,
                    lambda: "who_to_follow" in getattr(bot.current_model(), "questions", {}),
                    30,
                )
                handed = bot.current_model()
            return runner, handed

        runner, handed = asyncio.run(scenario())
    # the bot chooses with the whole published pipeline (fallback, rules), not one retriever
    assert isinstance(handed, Pipeline) and set(handed.questions) == {"feed", "who_to_follow"}
    assert runner.stats["crawl"].runs >= 1 and runner.stats["crawl"].failures == 0
    assert store.counts()["follows"] > 0
    assert runner.stats["train"].failures == 0
    manifest = registry.current()
    assert manifest is not None and manifest["model"] == "pipeline"
    assert set(manifest["data"]) >= {"who_to_follow", "feed"}
    assert runner.stats["deliver"].runs >= 1
    # Post 1 has the likes: what the feed ranks first went out first.
    assert api.calls("copyMessage")[0].params["message_id"] == "1"
