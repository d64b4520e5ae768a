"""Soak: ``recgraph run`` crawling, training, publishing and delivering for a long time, under load,
with a ``kill -9`` and a SIGTERM restart in the middle.

What runs (all on 127.0.0.1):

- the fake Bluesky AppView (``recgraph.collect.bluesky.fake_server``, its own
  process) with injected faults (429 with and without ``Retry-After``, 500,
  HTML 502, 503, timeouts, short pages, duplicates, empty last pages);
- the fake Telegram Bot API (``recgraph.collect.telegram.fake_server``, in this
  process), a channel that posts every ``--post-seconds``, and simulated users
  who ``/start`` (some while a round is under way), press 👍/👎 on what they get,
  and a few who ``/stop``;
- ``recgraph run`` (its own process) with a crawl, a train job (the pipeline,
  published to the registry; retention on) and the bot;
- ``recgraph serve`` (its own process) on the same registry, hot-reloading
  each published version, under an open-loop load of ``--rate`` requests/s
  (the generator of ``benchmarks/load.py``, in its own process) of
  suggestions and feeds;
- at 1/3 of the run the whole ``recgraph run`` process group is killed with
  SIGKILL (as a container kill or the OOM killer does), at 2/3 it gets
  SIGTERM (as systemd or Docker stop it); both times it is started again.

After ``--minutes`` the users and the channel stop, the bot gets
``--settle-seconds`` to catch up, and ``recgraph run`` is stopped with SIGTERM.

Reported (``benchmarks/results/soak.json`` and ``soak.png``): versions
published and the versions the API answered from; RSS of ``recgraph run``
(and its training child) and of ``recgraph serve`` over time; API throughput,
p50/p99 per 10 s window and overall, errors; the bot's duplicate deliveries
(one post copied twice into one chat) and lost updates (channel posts, button
presses, /start and /stop whose effect is not in the store at the end) —
targets 0 and 0; duplicate handler effects (a callback answered twice, an
"already subscribed" reply to a single /start); the crawl's stored follows
against the fake graph's; the run log's size, ERROR lines and whether the
bot token appears in it; how long each stop took.

Run: ``python benchmarks/soak.py --minutes 30`` (default 30).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CHANNEL = -1001
SRC = str(REPO / "src")
API_TOKEN = "soak-api-token-5d1f9c"


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "RECGRAPH_PROGRESS": "0", **extra}


# ---------------------------------------------------------------------- the load generator
def load_worker(url: str, paths_file: str, rate: float, until: float, out: str) -> None:
    """``--role load``: open-loop load in 10 s chunks until ``until`` (unix time); JSON lines."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from load import open_loop

    paths = json.loads(Path(paths_file).read_text())
    with open(out, "a") as handle:
        while time.time() < until - 1:
            seconds = min(10.0, until - time.time())
            started = time.time()
            result = asyncio.run(open_loop(url, paths, rate, seconds, connections=32))
            latencies = result.pop("latencies_ms")
            result["t"] = started
            result["latencies_ms"] = [round(float(x), 2) for x in latencies]
            handle.write(json.dumps(result) + "\n")
            handle.flush()


# ---------------------------------------------------------------------- processes
class RunProcess:
    """``recgraph run`` in its own process group, its stderr appended to one log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        handle = open(self.log, "a")  # noqa: SIM115 (kept open by the child)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recgraph.cli.main", "run", "--config", str(self.config)],
            stdout=handle,
            stderr=handle,
            env=_env(),
            start_new_session=True,
        )
        handle.close()
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def kill9(self) -> dict:
        """SIGKILL the whole process group (the run and a training child, if any)."""
        assert self.proc is not None
        started = time.time()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return {"kind": "kill -9", "at": started, "stop_seconds": time.time() - started}

    def sigterm(self, timeout: float = 60.0) -> dict:
        """SIGTERM the main process only (systemd's KillMode=mixed); wait for its exit."""
        assert self.proc is not None
        started = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        return {
            "kind": "SIGTERM",
            "at": started,
            "stop_seconds": round(time.time() - started, 2),
            "exit_code": code,
        }


def start_serve(registry: Path, db: str, port: int, log: Path) -> subprocess.Popen:
    handle = open(log, "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "recgraph.cli.main", "serve", "--registry", str(registry),
            "--db", db, "--port", str(port), "--token", API_TOKEN, "--poll-seconds", "1",
        ],
        stdout=handle,
        stderr=handle,
        env=_env(),
        start_new_session=True,
    )  # fmt: skip
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("recgraph serve did not come up")


def rss_mb(pid: int | None, children: bool = False) -> float | None:
    import psutil

    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        if children:
            total += sum(c.memory_info().rss for c in process.children(recursive=True))
        return round(total / 2**20, 1)
    except psutil.Error:
        return None


# ---------------------------------------------------------------------- simulated Telegram side
class Users:
    """The channel and the subscribers, driven through the fake Bot API's public methods."""

    def __init__(self, api, users: int, post_seconds: float, seed: int) -> None:
        self.api = api
        self.rng = random.Random(seed)
        self.ids = [500_000 + i for i in range(users)]
        self.post_seconds = post_seconds
        self.posts: list[int] = []
        #: (user, item) -> the kind of the latest press
        self.pressed: dict[tuple[int, str], str] = {}
        self.presses = 0
        self.started: set[int] = set()
        self.stopped: set[int] = set()
        self._reacted: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.join_at = {u: self.rng.uniform(0, 1) for u in self.ids}

    def start(self, minutes: float) -> None:
        self.minutes = minutes
        self.t0 = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        last_post = 0.0
        while not self._stop.wait(0.5):
            now = time.time()
            fraction = (now - self.t0) / (self.minutes * 60)
            if now - last_post >= self.post_seconds:
                message = self.api.channel_post(CHANNEL, f"post at {now:.0f}", username="soak")
                self.posts.append(message["message_id"])
                last_post = now
            for user in self.ids:
                if user not in self.started and fraction >= self.join_at[user] * 0.8:
                    self.api.user_message(user, "/start")
                    self.started.add(user)
            # a few leave in the last fifth
            if fraction > 0.8 and len(self.stopped) < max(1, len(self.ids) // 10):
                user = self.rng.choice(sorted(self.started - self.stopped))
                self.api.user_message(user, "/stop")
                self.stopped.add(user)
            self._react()

    def _react(self) -> None:
        for call in self.api.calls("copyMessage"):
            chat = int(call.params["chat_id"])
            copy_id = int(call.result["message_id"])
            if (chat, copy_id) in self._reacted or chat in self.stopped:
                continue
            self._reacted.add((chat, copy_id))
            if self.rng.random() < 0.3:
                continue  # not every post gets a press
            markup = call.params.get("reply_markup") or {}
            buttons = (markup.get("inline_keyboard") or [[]])[0]
            if not buttons:
                continue
            presses = 2 if self.rng.random() < 0.1 else 1  # some change their mind
            for _ in range(presses):
                button = buttons[0] if self.rng.random() < 0.6 else buttons[-1]
                data = button["callback_data"]
                kind, channel, message = data.split(":")
                self.api.press(chat, copy_id, data)
                self.pressed[(chat, f"tg:{channel}:{message}")] = kind
                self.presses += 1


def bot_outcome(api, users: Users, db_path: Path) -> dict:
    """Duplicates and lost updates, from the fake API's log and the store."""
    import sqlite3

    copies = Counter(
        (int(c.params["chat_id"]), int(c.params["from_chat_id"]), int(c.params["message_id"]))
        for c in api.calls("copyMessage")
    )
    duplicates = {k: n for k, n in copies.items() if n > 1}
    answered = Counter(c.params.get("callback_query_id") for c in api.calls("answerCallbackQuery"))
    replies = [c for c in api.calls("sendMessage") if "already subscribed" in str(c.params)]
    with sqlite3.connect(db_path) as conn:
        items = {row[0] for row in conn.execute("SELECT external_id FROM items")}
        feedback = {
            (user, item): kind
            for user, item, kind in conn.execute(
                "SELECT a.external_id, i.external_id, x.kind FROM interactions x "
                "JOIN accounts a ON a.id = x.user_id JOIN items i ON i.id = x.item_id "
                "WHERE x.kind IN ('like', 'dislike')"
            )
        }
        subscribers = dict(conn.execute("SELECT chat_id, active FROM telegram_subscribers"))
    lost_posts = [m for m in users.posts if f"tg:{CHANNEL}:{m}" not in items]
    lost_presses = [
        (chat, item, kind)
        for (chat, item), kind in users.pressed.items()
        if feedback.get((f"tg:{chat}", item)) != kind
    ]
    lost_starts = [u for u in users.started - users.stopped if not subscribers.get(u)]
    lost_stops = [u for u in users.stopped if subscribers.get(u)]
    return {
        "channel_posts": len(users.posts),
        "subscribers": len(users.started),
        "stopped": len(users.stopped),
        "presses": users.presses,
        "deliveries": sum(copies.values()),
        "duplicate_deliveries": sum(n - 1 for n in duplicates.values()),
        "duplicate_examples": [list(k) + [n] for k, n in list(duplicates.items())[:5]],
        "lost_updates": len(lost_posts) + len(lost_presses) + len(lost_starts) + len(lost_stops),
        "lost_channel_posts": len(lost_posts),
        "lost_presses": len(lost_presses),
        "lost_starts": len(lost_starts),
        "lost_stops": len(lost_stops),
        "lost_examples": {
            "posts": lost_posts[:5],
            "presses": lost_presses[:5],
            "starts": lost_starts[:5],
            "stops": lost_stops[:5],
        },
        "callbacks_answered_twice": sum(1 for n in answered.values() if n > 1),
        "already_subscribed_replies": len(replies),
    }


# ---------------------------------------------------------------------- the soak
def soak(args: argparse.Namespace) -> dict:
    from recgraph.collect.bluesky.fake_server import FakeGraph, FaultConfig, RateLimitPolicy
    from recgraph.collect.bluesky.fake_server import start_subprocess as start_appview
    from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi
    from recgraph.serving.registry import ModelRegistry

    work = Path(args.workdir or tempfile.mkdtemp(prefix="recgraph-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "store.db"
    db = f"sqlite:///{db_path}"
    registry_root = work / "models"
    registry = ModelRegistry(registry_root)
    faults = FaultConfig(
        p_429=0.02, p_500=0.02, p_502=0.02, p_503=0.01, p_timeout=0.005, timeout_seconds=3.0,
        p_short=0.05, p_duplicate=0.05, p_empty_end=0.02, seed=args.seed,
    )  # fmt: skip
    rate_limit = RateLimitPolicy(limit=3000, window_seconds=60)
    graph = FakeGraph.generate(args.accounts, seed=args.seed, mean_follows=args.mean_follows)
    seeds = [graph.dids[0]]
    appview, appview_url = start_appview(
        accounts=args.accounts,
        seed=args.seed,
        mean_follows=args.mean_follows,
        rate_limit=rate_limit,
        faults=faults,
    )
    api = FakeBotApi().start()
    config = work / "run.toml"
    config.write_text(
        f'database_url = "{db}"\n'
        f'[crawl]\nseeds = {json.dumps(seeds)}\nbase_url = "{appview_url}"\n'
        f"interval_minutes = {args.crawl_minutes}\nmax_accounts = 500\nconcurrency = 8\n"
        "lease_seconds = 60\ntimeout_seconds = 2\n"
        f'[train]\ninterval_minutes = {args.train_minutes}\nregistry = "{registry_root}"\n'
        f"keep_versions = {args.keep}\n"
        f'[bot]\ntoken = "{DEFAULT_TOKEN}"\nbase_url = "{api.base_url}"\n'
        f"interval_minutes = {args.deliver_minutes}\npoll_timeout_seconds = 2\n"
        "per_chat_seconds = 0.2\n"
    )
    run_log, serve_log = work / "run.log", work / "serve.log"
    port = _free_port()
    serve = start_serve(registry_root, db, port, serve_log)
    run = RunProcess(config, run_log)
    run.start()
    users = Users(api, args.users, args.post_seconds, args.seed)
    users.start(args.minutes)
    t0 = time.time()
    end = t0 + args.minutes * 60
    samples: list[dict] = []
    restarts: list[dict] = []
    load_proc: subprocess.Popen | None = None
    load_out = work / "load.jsonl"
    paths_file = work / "paths.json"
    rng = random.Random(args.seed)
    paths = [f"/v1/accounts/{rng.choice(graph.dids)}/suggestions?k=10" for _ in range(700)]
    paths += [f"/v1/users/tg:{rng.choice(users.ids)}/feed?k=10" for _ in range(300)]
    rng.shuffle(paths)
    paths_file.write_text(json.dumps(paths))
    kill_at, term_at = t0 + args.minutes * 60 / 3, t0 + args.minutes * 60 * 2 / 3
    phase = 0
    print(f"soak: {args.minutes:g} min in {work}; API on :{port}", flush=True)
    while time.time() < end:
        now = time.time()
        current = _safe(registry.current_version)
        if load_proc is None and current is not None:
            load_proc = subprocess.Popen(
                [
                    sys.executable, __file__, "--role", "load", "--url",
                    f"http://127.0.0.1:{port}", "--paths-file", str(paths_file),
                    "--rate", str(args.rate), "--until", str(end), "--out", str(load_out),
                ],
                env=_env(),
            )  # fmt: skip
        if phase == 0 and now >= kill_at:
            restarts.append(run.kill9())
            run.start()
            phase = 1
            print(f"  {now - t0:6.0f}s kill -9 and restart", flush=True)
        elif phase == 1 and now >= term_at:
            restarts.append(run.sigterm())
            run.start()
            phase = 2
            print(
                f"  {now - t0:6.0f}s SIGTERM (stopped in {restarts[-1]['stop_seconds']} s, "
                f"exit {restarts[-1]['exit_code']}) and restart",
                flush=True,
            )
        versions_dir = registry_root / "versions"
        folders = list(versions_dir.glob("v*")) if versions_dir.exists() else []
        samples.append(
            {
                "t": round(now - t0, 1),
                "run_mb": rss_mb(run.pid),
                "run_with_children_mb": rss_mb(run.pid, children=True),
                "serve_mb": rss_mb(serve.pid, children=True),
                "current": current,
                "versions_on_disk": len(folders),
                "registry_mb": round(_du(registry_root) / 2**20, 2),
            }
        )
        if len(samples) % 30 == 0:
            s = samples[-1]
            print(
                f"  {s['t']:6.0f}s current {s['current']}, {s['versions_on_disk']} versions on "
                f"disk, run {s['run_mb']} MB, serve {s['serve_mb']} MB",
                flush=True,
            )
        time.sleep(2.0)
    users.stop()
    print(f"  settling {args.settle_seconds:g} s", flush=True)
    time.sleep(args.settle_seconds)
    final_stop = run.sigterm()
    final_stop["kind"] = "SIGTERM (end)"
    restarts.append(final_stop)
    if load_proc is not None:
        try:
            load_proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            load_proc.kill()
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=30)
    appview.terminate()
    appview.wait(timeout=10)
    bot = bot_outcome(api, users, db_path)
    api.stop()
    for r in restarts:
        r["at"] = round(r["at"] - t0, 1)
        r["stop_seconds"] = round(r["stop_seconds"], 2)
    return {
        "work": str(work),
        "t0": t0,
        "samples": samples,
        "restarts": restarts,
        "run_starts": run.starts,
        "bot": bot,
        "api": _load_summary(load_out),
        "registry": _registry_summary(registry, samples),
        "crawl": _crawl_summary(graph, seeds, db_path),
        "log": _log_summary(run_log, [DEFAULT_TOKEN, DEFAULT_TOKEN.split(":")[1]]),
        "serve_log": _log_summary(serve_log, [DEFAULT_TOKEN, API_TOKEN]),
    }


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


def _du(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _load_summary(path: Path) -> dict:
    if not path.exists():
        return {"windows": [], "requests": 0}
    windows, latencies, versions = [], [], Counter()
    errors, samples = 0, []
    for line in path.read_text().splitlines():
        chunk = json.loads(line)
        lat = chunk.pop("latencies_ms")
        latencies += lat
        versions.update(chunk.get("versions_seen") or {})
        errors += chunk["errors"]
        samples += chunk.get("error_samples") or []
        windows.append(
            {
                "t": chunk["t"],
                "requests": chunk["requests"],
                "ok": chunk["ok"],
                "errors": chunk["errors"],
                "rps": chunk["throughput_rps"],
                "p50_ms": chunk["p50_ms"],
                "p99_ms": chunk["p99_ms"],
                "max_ms": chunk["max_ms"],
            }
        )
    done = np.asarray(latencies)
    pct = (lambda q: round(float(np.percentile(done, q)), 2)) if len(done) else (lambda q: None)
    return {
        "requests": int(sum(w["requests"] for w in windows)),
        "ok": int(sum(w["ok"] for w in windows)),
        "errors": errors,
        "error_samples": samples[:5],
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(float(done.max()), 2) if len(done) else None,
        "versions_answered_from": dict(
            sorted(versions.items(), key=lambda kv: int(kv[0].lstrip("v")))
        ),
        "windows": windows,
    }


def _registry_summary(registry, samples: list[dict]) -> dict:
    listed = registry.list_versions()
    seen = [s["current"] for s in samples if s["current"]]
    published = max((int(v.lstrip("v")) for v in [*listed, *seen]), default=0)
    return {
        "versions_published": published,
        "current_at_end": registry.current_version(),
        "versions_kept": listed,
        "current_changes_seen": len({*seen}),
        "max_versions_on_disk": max((s["versions_on_disk"] for s in samples), default=0),
        "registry_mb_at_end": samples[-1]["registry_mb"] if samples else None,
    }


def _crawl_summary(graph, seeds: list[str], db_path: Path) -> dict:
    """Stored follows against the fake graph: of the accounts whose crawl finished, exactly."""
    import sqlite3

    expected_all = graph.crawl_edges(seeds)
    with sqlite3.connect(db_path) as conn:
        stored = set(
            conn.execute(
                "SELECT s.external_id, d.external_id FROM follows f "
                "JOIN accounts s ON s.id = f.source_id JOIN accounts d ON d.id = f.target_id "
                "WHERE f.removed_at IS NULL"
            )
        )
        done = {
            row[0]
            for row in conn.execute(
                "SELECT a.external_id FROM crawl_state c JOIN accounts a ON a.id = c.account_id "
                "WHERE c.status = 'done'"
            )
        }
    expected = {(s, t) for s, t in expected_all if s in done}
    from_done = {(s, t) for s, t in stored if s in done}
    return {
        "accounts_crawled": len(done),
        "accounts_reachable": len(graph.crawl_depths(seeds)),
        "follows_of_the_whole_graph": len(expected_all),
        "follows_expected_from_crawled": len(expected),
        "follows_stored_from_crawled": len(from_done & expected),
        "missing_from_crawled": len(expected - from_done),
        "extra": len(stored - expected_all),
    }


def _log_summary(path: Path, secrets: list[str]) -> dict:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    errors = [line for line in lines if " ERROR " in line]
    return {
        "bytes": len(text.encode()),
        "lines": len(lines),
        "error_lines": len(errors),
        "error_samples": errors[:8],
        "tracebacks": text.count("Traceback"),
        "secret_leaks": sum(text.count(s) for s in secrets if s),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    ax = axes[0][0]
    for key, label in (
        ("run_mb", "recgraph run"),
        ("run_with_children_mb", "run + training child"),
        ("serve_mb", "recgraph serve"),
    ):
        ax.plot(t, [s[key] if s[key] is not None else np.nan for s in samples], label=label)
    ax.set(title="RSS", xlabel="minutes", ylabel="MB")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    windows = result["api"]["windows"]
    if windows:
        wt = [(w["t"] - result["t0"]) / 60 for w in windows]
        ax.plot(wt, [w["p50_ms"] for w in windows], label="p50")
        ax.plot(wt, [w["p99_ms"] for w in windows], label="p99")
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.plot(wt, [w["rps"] for w in windows], color="grey", alpha=0.4, label="req/s")
        ax2.set_ylabel("requests/s (grey)")
    ax.set(title="API latency per 10 s window", xlabel="minutes", ylabel="ms")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1][0]
    current = [int(s["current"].lstrip("v")) if s["current"] else np.nan for s in samples]
    ax.step(t, current, where="post", label="current version")
    ax.plot(t, [s["versions_on_disk"] for s in samples], label="version folders on disk")
    ax.set(title="Registry", xlabel="minutes", ylabel="count / number")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    bot = result["bot"]
    labels = ["deliveries", "duplicate\ndeliveries", "lost\nupdates", "presses", "posts"]
    values = [
        bot["deliveries"],
        bot["duplicate_deliveries"],
        bot["lost_updates"],
        bot["presses"],
        bot["channel_posts"],
    ]
    ax.bar(labels, values, color=["C0", "C3", "C3", "C2", "C1"])
    for i, v in enumerate(values):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set(title="Bot (targets: 0 duplicates, 0 lost)")
    for axis in (axes[0][0], axes[0][1], axes[1][0]):
        for r in result["restarts"]:
            axis.axvline(r["at"] / 60, color="red", linestyle=":", alpha=0.6)
    fig.suptitle(
        f"recgraph run soak: {result['minutes']:g} min, restarts (red): "
        + ", ".join(f"{r['kind']} at {r['at'] / 60:.1f} min" for r in result["restarts"])
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="How long (default 30).")
    parser.add_argument("--rate", type=float, default=100.0, help="API requests per second.")
    parser.add_argument("--accounts", type=int, default=3000, help="Fake Bluesky accounts.")
    parser.add_argument("--mean-follows", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=30, help="Simulated Telegram users.")
    parser.add_argument("--post-seconds", type=float, default=6.0)
    parser.add_argument("--crawl-minutes", type=float, default=0.5)
    parser.add_argument("--train-minutes", type=float, default=1.0)
    parser.add_argument("--deliver-minutes", type=float, default=0.25)
    parser.add_argument("--keep", type=int, default=5, help="Registry retention.")
    parser.add_argument("--settle-seconds", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "soak"))
    parser.add_argument("--note", default=None, help="Kept in the JSON (why this run is so).")
    # the load generator's own process
    parser.add_argument("--role", default="soak", choices=["soak", "load"])
    parser.add_argument("--url")
    parser.add_argument("--paths-file")
    parser.add_argument("--until", type=float)
    args = parser.parse_args()
    if args.role == "load":
        load_worker(args.url, args.paths_file, args.rate, args.until, args.out)
        return
    result = soak(args)
    result.update(
        {
            "minutes": args.minutes,
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("role", "url", "paths_file")
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), "
            f"Python {platform.python_version()}",
            "targets": {"duplicate_deliveries": 0, "lost_updates": 0},
        }
    )
    minutes = args.minutes or 1
    result["log"]["lines_per_minute"] = round(result["log"]["lines"] / minutes, 1)
    result["log"]["mb_per_day_at_this_cadence"] = round(
        result["log"]["bytes"] / minutes * 1440 / 2**20, 2
    )
    result["note"] = args.note
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    plot(result, out.with_suffix(".png"))
    api, bot, reg = result["api"], result["bot"], result["registry"]
    print(
        f"versions published {reg['versions_published']} (kept {reg['versions_kept']}, "
        f"current {reg['current_at_end']}); API {api['requests']} requests, "
        f"{api['errors']} errors, p50 {api['p50_ms']} ms, p99 {api['p99_ms']} ms, answered "
        f"from {api['versions_answered_from']}; "
        f"bot {bot['deliveries']} deliveries, {bot['duplicate_deliveries']} duplicates, "
        f"{bot['lost_updates']} lost updates; crawl {result['crawl']}; "
        f"run log {result['log']['error_lines']} ERROR lines, "
        f"{result['log']['secret_leaks']} token leaks; stops {result['restarts']}"
    )
    print(f"saved {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
