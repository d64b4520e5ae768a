"""``recgraph run``: overlapping runs are skipped, failures retried, the jobs wired end to end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytest.importorskip("apscheduler", reason="APScheduler is not installed (extra: schedule)")

from recgraph.data.store import Store  # noqa: E402
from recgraph.errors import ConfigError  # noqa: E402
from recgraph.jobs.scheduler import JobRunner, RunConfig, Trainer, load_run_config  # noqa: E402


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'jobs.db'}") as opened:
        yield opened


def test_overlapping_runs_are_skipped_not_stacked(store: Store) -> None:
    running, most, calls = 0, 0, 0

    async def slow() -> None:
        nonlocal running, most, calls
        calls += 1
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.45)
        running -= 1

    async def scenario() -> JobRunner:
        runner = JobRunner(RunConfig(), store=store)
        runner.add_job("slow", slow, interval_seconds=0.1)
        async with runner:
            await asyncio.sleep(1.3)
        return runner

    runner = asyncio.run(scenario())
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

    async def scenario() -> JobRunner:
        runner = JobRunner(RunConfig(), store=store)
        runner.add_job("flaky", flaky, interval_seconds=0.15)
        async with runner:
            await asyncio.sleep(0.6)
        return runner

    runner = asyncio.run(scenario())
    stats = runner.stats["flaky"]
    assert stats.failures == 1 and stats.runs >= 3
    assert "the database went away" in (stats.last_error or "")
    assert "flaky failed" in caplog.text


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        'database_url = "sqlite:///x.db"\n[crawl]\nseeds = ["a.test"]\ninterval_minutes = 5\n'
        '[train]\nmodel = "popular"\n[bot]\ntoken = "1:x"\ncold_start_min_interactions = 2\n'
    )
    config = load_run_config(good)
    assert config.crawl is not None and config.crawl.interval_minutes == 5
    assert config.bot is not None and config.bot.model_extra == {"cold_start_min_interactions": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("[crawl]\ninterval_minutes = -1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: crawl\.interval_minutes"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_run_config(tmp_path / "missing.toml")


def test_trainer_full_then_incremental(store: Store, tmp_path: Path) -> None:
    from recgraph.collect.telegram.bot import FeedBot

    bot = FeedBot(store, {"token": "1:x"})
    posts = [bot.record_post(-100, m, 1_700_000_000 + m) for m in range(1, 4)]
    for user in range(1, 5):
        bot.record_feedback(user, posts[0], "like", now=1_700_000_100 + user)
    handed = []
    trainer = Trainer(
        store,
        load_run_config(_write(tmp_path, f'[train]\nmodel_dir = "{tmp_path / "m"}"\n')).train,
        on_model=handed.append,
    )
    assert trainer.incremental() == "full"  # no model yet: a full fit first
    assert (tmp_path / "m" / "model.json").exists()
    assert trainer.incremental() == "wait"  # nothing new
    bot.record_feedback(9, posts[2], "like", now=1_700_000_500)
    assert trainer.incremental() == "full"  # popular has no partial_fit: the policy refits
    assert len(handed) == 2 and handed[-1].is_fitted
    assert trainer.cycles == ["full", "full"]


def _write(folder: Path, text: str) -> Path:
    path = folder / "run.toml"
    path.write_text(text)
    return path


def test_run_wires_crawl_training_and_delivery(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("telegram", reason="python-telegram-bot is not installed")
    from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph
    from recgraph.collect.telegram.bot import FeedBot
    from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi

    graph = FakeGraph.generate(30, seed=2, mean_follows=5)
    bot = FeedBot(store, {"token": DEFAULT_TOKEN})
    with FakeAppView(graph) as appview, FakeBotApi() as api:
        api.channel_post(-100, "a")
        api.channel_post(-100, "b")
        for m in (1, 2):
            bot.record_post(-100, m, 1_700_000_000 + m)
        bot.record_feedback(5, "tg:-100:1", "like")
        api.user_message(77, "hi")
        bot.subscribe(77)
        config = RunConfig.model_validate(
            {
                "crawl": {
                    "seeds": [graph.dids[0]],
                    "base_url": appview.url,
                    "interval_minutes": 0.02,
                },
                "train": {
                    "incremental_interval_minutes": 0.005,
                    "full_interval_minutes": 0.05,
                    "model_dir": str(tmp_path / "model"),
                },
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
                await asyncio.to_thread(api.wait_for, lambda: api.calls("copyMessage"), 20)
                for job in ("crawl", "train_full", "deliver"):
                    await asyncio.to_thread(api.wait_for, lambda j=job: runner.stats[j].runs, 20)
            return runner

        runner = asyncio.run(scenario())
    assert runner.stats["crawl"].runs >= 1 and runner.stats["crawl"].failures == 0
    assert store.counts()["follows"] > 0
    assert runner.stats["train_full"].runs >= 1
    assert (tmp_path / "model" / "model.json").exists()
    assert runner.stats["deliver"].runs >= 1
    # The trained model (popular: post 1 has a like) decided the first delivery.
    assert api.calls("copyMessage")[0].params["message_id"] == "1"
