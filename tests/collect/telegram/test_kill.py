"""``kill -9`` of a real ``recgraph bot telegram`` process in the middle of a batch, then a restart.

The realistic version of the in-process tests in ``test_updates.py``: a
process that dies without any goodbye, on a SQLite store, and a second one
that takes over. Nothing is lost, nothing is handled twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi
from recgraph.data.store import Store

from .conftest import CHANNEL, USER

POSTS = 150


def _bot(api: FakeBotApi, db: str, log: Path) -> subprocess.Popen:
    src = Path(__file__).resolve().parents[3] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "recgraph.cli.main", "bot", "telegram"]
    command += ["--token", DEFAULT_TOKEN, "--base-url", api.base_url, "--db", db]
    command += ["--interval-minutes", "600"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _count(db: str) -> int:
    with Store(db) as store:
        return len(store.items_frame())


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    log = tmp_path / "bot.log"
    Store(db).close()
    with FakeBotApi() as api:
        hello = api.user_message(USER, "hi")
        api.user_message(USER, "/start")
        api.press(USER, hello["message_id"], f"like:{CHANNEL}:1")
        for n in range(POSTS):  # a burst that takes the bot a while to store
            api.channel_post(CHANNEL, f"post {n}")
        first = _bot(api, db, log)
        try:
            api.wait_for(lambda: _count(db) >= 10, timeout=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        stored_at_kill = _count(db)
        second = _bot(api, db, log)
        try:
            api.wait_for(lambda: _count(db) == POSTS and api.pending_updates() == 0, 120)
            time.sleep(1.0)
        finally:
            second.send_signal(signal.SIGTERM)  # as systemd, Docker and Kubernetes stop it
            status = second.wait(30)
        texts = [c.params["text"] for c in api.calls("sendMessage", chat_id=USER)]
        answers = api.calls("answerCallbackQuery")
        second_answers = api.errors("answerCallbackQuery")
    assert stored_at_kill < POSTS, "the kill came after the batch; nothing was tested"
    assert status == 0  # SIGTERM is an orderly stop
    assert _count(db) == POSTS
    # replies come after their commit: at most once, never twice
    assert texts.count(texts[0]) == 1 and not any("already" in t for t in texts)
    assert len(answers) <= 1 and second_answers == []
    token = DEFAULT_TOKEN.encode()
    assert token not in log.read_bytes()
