"""The training child stopped at the awkward moments, each made to happen on purpose.

A stop is a signal that lands wherever the main thread is; the timing test in
``test_run_signals.py`` hits a random moment. Here the child itself raises SIGTERM at a
chosen point of a real fit on a real SQLite store: where a library turns the interrupt
into an error of its own (and a second stop follows), inside a finalizer (where Python
drops it), and during the publish, before and after its manifest (where it must wait
for the publish to finish).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig
from recgraph.jobs.quickstart import load_synthetic
from recgraph.jobs.train_worker import STOPPED
from recgraph.serving.registry import ModelRegistry

#: Runs the child's ``main`` with SIGTERM sent to its process (as the scheduler sends it:
#: to any thread that does not block it) at the point named by ``argv[1]``.
CHILD = """
import os, signal, sys, time
from recgraph.data.snapshot import TrainingSnapshot
from recgraph.jobs import train_worker
from recgraph.serving.registry import ModelRegistry

where = sys.argv[1]
read_snapshot = TrainingSnapshot.from_store.__func__


def stop(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)
    time.sleep(0.5)  # the handler runs (and raises, or not) in here


class StopsWhenCollected:
    def __del__(self):
        stop()  # the handler runs here, inside the finalizer


def from_store(cls, store):
    snapshot = read_snapshot(cls, store)
    if where == "error":  # a library that turns the interrupt into its own error
        try:
            stop()
        except KeyboardInterrupt:
            raise RuntimeError("the read was interrupted") from None
    elif where == "finalizer":
        StopsWhenCollected()
        time.sleep(2.0)  # the stop, sent again, lands here
        print("the fit went on", file=sys.stderr)
    return snapshot


def stop_first(function, at, sig=signal.SIGTERM):  # function, a stop sent first at ``at``
    def stopped_first(*args, **kwargs):
        if where == at:
            stop(sig)
        return function(*args, **kwargs)
    return stopped_first


TrainingSnapshot.from_store = classmethod(from_store)
ModelRegistry.publish = stop_first(ModelRegistry.publish, "publish")
ModelRegistry._drop_claim = stop_first(ModelRegistry._drop_claim, "after the manifest")
# a second stop while the first one ends the child (Ctrl-C, then the scheduler's SIGTERM)
train_worker._exit_stopped = stop_first(train_worker._exit_stopped, "error", signal.SIGINT)
sys.argv = ["train_worker", "--registry", sys.argv[2]]
train_worker._exit(train_worker.main())
"""


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('worker') / 'train.db'}"
    with Store(url) as store:
        load_synthetic(store, SyntheticConfig(n_accounts=150, n_items=120, mean_follows=6))
    return url


@pytest.fixture
def done(
    request: pytest.FixtureRequest, store_url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The child's run into ``tmp_path / "models"``, a stop sent at ``request.param``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RECGRAPH_DATABASE_URL": store_url,
        "RECGRAPH_PROGRESS": "0",
    }
    command = [sys.executable, "-c", CHILD, request.param, str(tmp_path / "models")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("done", ["error", "finalizer"], indirect=True)
def test_a_stop_that_does_not_arrive_as_an_interrupt_still_stops_before_publishing(
    done: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert done.returncode == STOPPED, done.stderr
    assert "train: stopped (SIGTERM) before publishing" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "the fit went on" not in done.stderr
    assert done.stdout == ""
    assert ModelRegistry(tmp_path / "models").list_versions() == []


@pytest.mark.slow
@pytest.mark.parametrize("done", ["publish", "after the manifest"], indirect=True)
def test_a_stop_during_the_publish_waits_for_it_to_finish(
    done: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "v1"
    registry = ModelRegistry(tmp_path / "models")
    assert registry.list_versions() == ["v1"] and registry.current_version() == "v1"
    assert "stopped" not in done.stderr and "Traceback" not in done.stderr
