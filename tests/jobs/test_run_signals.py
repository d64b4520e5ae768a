"""``recgraph run`` in a real process, stopped by SIGTERM (systemd, Docker) or SIGINT (Ctrl-C).

The stop is orderly: the crawl hands its leases back at once (not when they
expire), a training child stops without leaving a half-written version, the
process exits 0, and the log says so in INFO lines with no ERROR and no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("apscheduler", reason="APScheduler is not installed (extra: schedule)")

from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph  # noqa: E402
from recgraph.collect.bluesky.state import crawl_state  # noqa: E402
from recgraph.data.store import Store  # noqa: E402
from recgraph.data.synthetic import SyntheticConfig  # noqa: E402
from recgraph.jobs.quickstart import load_synthetic  # noqa: E402
from recgraph.serving.registry import ModelRegistry  # noqa: E402


def _held_leases(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("crawl_state"):
                return 0
            query = sa.select(sa.func.count()).where(
                crawl_state.c.lease_owner.is_not(None), crawl_state.c.lease_until > time.time()
            )
            return int(conn.execute(query).scalar() or 0)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_run_in_order(sig: signal.Signals, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    with Store(url) as store:  # something to train on while the crawl runs
        load_synthetic(store, SyntheticConfig(n_accounts=300, n_items=200, mean_follows=10))
    graph = FakeGraph.generate(2000, seed=3, mean_follows=20)
    # Slow answers keep the crawl busy (and its leases held) when the signal comes.
    faults = {"p_timeout": 0.3, "timeout_seconds": 3.0, "seed": 1}
    with FakeAppView(graph, faults=faults) as appview:
        config = tmp_path / "run.toml"
        config.write_text(
            f'database_url = "{url}"\n'
            f'[crawl]\nseeds = ["{graph.dids[0]}"]\nbase_url = "{appview.url}"\n'
            "interval_minutes = 30\nconcurrency = 4\nlease_seconds = 600\ntimeout_seconds = 1\n"
            f'[train]\ninterval_minutes = 30\nregistry = "{tmp_path / "models"}"\n'
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "recgraph.cli.main", "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,  # like systemd: the signal goes to the main process only
        )
        try:
            deadline = time.monotonic() + 60
            while _held_leases(url) == 0:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the crawl never took a lease"
                time.sleep(0.1)
            time.sleep(0.3)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert err.count(f"stopping ({sig.name})") == 1, err
    assert "crawl: cancelled (stopping)" in err
    assert "INFO recgraph.jobs.scheduler: stopped" in err
    assert "ERROR" not in err and "Traceback" not in err, err
    # the crawl's leases were handed back, not left to expire in 10 minutes
    assert _held_leases(url) == 0
    # no half-written version: every version folder is complete, and CURRENT (if any) loads
    registry = ModelRegistry(tmp_path / "models")
    folders = sorted(p.name for p in (tmp_path / "models" / "versions").glob("v*"))
    assert folders == registry.list_versions()
    if registry.current_version() is not None:
        assert registry.manifest(registry.current_version())["model"] == "pipeline"


@pytest.mark.slow
def test_a_training_child_stopped_mid_fit_publishes_nothing_half_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'train.db'}"
    with Store(url) as store:
        load_synthetic(
            store,
            SyntheticConfig(n_accounts=3000, n_items=2000, mean_follows=20, mean_interactions=20),
        )
    root = tmp_path / "models"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RECGRAPH_DATABASE_URL": url,
    }
    command = [sys.executable, "-m", "recgraph.jobs.train_worker", "--registry", str(root)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.0)  # imports done, the snapshot read or the fit under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    registry = ModelRegistry(root)
    folders = sorted(p.name for p in (root / "versions").glob("v*"))
    assert folders == registry.list_versions()  # nothing half-written left behind
    if proc.returncode == 3:  # stopped before its publish finished
        assert registry.list_versions() == ["v1"] and registry.current_version() == "v1"
        assert b"train: stopped (SIGTERM) before publishing" in err
        assert b"Traceback" not in err and out == b""
    else:  # it had finished already: a whole version, current
        assert proc.returncode == 0 and registry.current_version() == "v2", err
