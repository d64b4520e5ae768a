"""``recgraph crawl bluesky``, ``recgraph bot telegram`` and ``recgraph run`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from recgraph.cli.main import main
from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph
from recgraph.data.store import Store


def test_crawl_bluesky_until_done(tmp_path: Path, capsys) -> None:
    graph = FakeGraph.generate(40, seed=8, mean_follows=6)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    report = tmp_path / "report.json"
    with FakeAppView(graph) as server:
        status = main(
            [
                "crawl",
                "bluesky",
                "--seed",
                graph.handles[0],
                "--base-url",
                server.url,
                "--until-done",
                "--db",
                db,
                "--json",
                str(report),
            ]
        )
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith("crawl complete: 40 accounts")
    data = json.loads(report.read_text())
    assert data["finished"] is True and data["rate_limited"] == 0
    with Store(db) as store:
        assert store.counts()["follows"] == len(graph.crawl_edges([graph.dids[0]])) == data["added"]


def test_crawl_bluesky_rejects_a_bad_seed(tmp_path: Path, capsys) -> None:
    status = main(
        [
            "crawl",
            "bluesky",
            "--seed",
            "not a handle",
            "--base-url",
            "http://127.0.0.1:9",
            "--until-done",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
        ]
    )
    assert status == 2
    assert "field 'seed'" in capsys.readouterr().err


def test_bot_needs_a_token(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    status = main(["bot", "telegram", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert status == 2
    assert "bot token" in capsys.readouterr().err


def test_run_reports_config_errors(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[train]\ninterval_minutes = 0\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "train.interval_minutes" in capsys.readouterr().err
