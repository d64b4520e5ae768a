"""Registry retention (recgraph.serving.retention): the newest N versions and the current one stay; killed publishes go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recgraph.errors import ConfigError
from recgraph.retrieval.popular import Popular
from recgraph.serving.registry import PUBLISHING_PREFIX, ModelRegistry
from recgraph.serving.retention import gc
from tests.retrieval.conformance import two_cliques


@pytest.fixture(scope="module")
def model() -> Popular:
    return Popular().fit(two_cliques("items"))


def test_keeps_the_newest_n_and_the_current_one(registry, model):
    for _ in range(7):
        registry.publish(model, promote=True)
    registry.set_current("v2")  # rolled back to an old version: it must survive
    if not registry.is_local:
        registry.local_copy("v1")  # a cached download of a version that goes
    report = gc(registry, 3)
    assert report.removed == ["v1", "v3", "v4"]
    assert report.kept == ["v2", "v5", "v6", "v7"] and report.current == "v2"
    assert registry.list_versions() == ["v2", "v5", "v6", "v7"]
    assert not registry.fs.exists(registry.version_path("v1"))
    assert registry.load("v2")[1]["version"] == "v2"  # the current one still loads
    if not registry.is_local:
        assert not (registry._cache / "v1").exists()
    # the numbering goes on after the newest, never reusing a removed name
    assert registry.publish(model) == "v8"


def test_dry_run_removes_nothing(registry, model):
    for _ in range(4):
        registry.publish(model, promote=True)
    report = gc(registry, 1, dry_run=True)
    assert report.removed == ["v1", "v2", "v3"] and report.dry_run
    assert "would remove 3 old version(s)" in report.describe()
    assert registry.list_versions() == ["v1", "v2", "v3", "v4"]


def test_keep_must_be_positive(registry, model):
    registry.publish(model)
    with pytest.raises(ConfigError, match="at least 1"):
        gc(registry, 0)


def test_a_publish_killed_by_kill_9_is_removed_a_live_one_is_not(tmp_path, model):
    """A real process claims v2 (as publish does) and is killed with SIGKILL."""
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    registry.publish(model)
    code = (
        "import sys, time\n"
        "from recgraph.serving.registry import ModelRegistry\n"
        f"r = ModelRegistry({str(root)!r})\n"
        "v = r._reserve_version()\n"
        "open(r.version_path(v) + '/half-written.npz', 'wb').write(b'x' * 1000)\n"
        "print(v, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout.readline().strip() == "v2"
        # its publisher is alive: a publish in progress is never touched
        assert gc(registry, 1).incomplete == []
        assert (root / "versions" / "v2" / "half-written.npz").exists()
    finally:
        child.kill()
        child.wait()
    report = gc(registry, 1)
    assert report.incomplete == ["v2"]
    assert not (root / "versions" / "v2").exists()
    assert registry.list_versions() == ["v1"] and registry.current_version() == "v1"


def test_incomplete_versions_without_a_claim_go_after_the_grace_period(tmp_path, model):
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(model)
    stale = tmp_path / "models" / "versions" / "v2"
    (stale / "model").mkdir(parents=True)  # left by an older recgraph, no claim
    fresh = tmp_path / "models" / "versions" / "v3"
    fresh.mkdir()
    other_host = {"host": "elsewhere", "pid": 1, "started_at": time.time() - 7200}
    (fresh / f"{PUBLISHING_PREFIX}x.json").write_text(json.dumps(other_host))
    old = time.time() - 7200
    os.utime(stale, (old, old))
    report = gc(registry, 5, grace_seconds=3600)
    # v2: no claim, two hours old; v3: claimed by another host two hours ago
    assert report.incomplete == ["v2", "v3"]
    assert not stale.exists() and not fresh.exists()
    young = tmp_path / "models" / "versions" / "v4"
    young.mkdir()
    assert gc(registry, 5, grace_seconds=3600).incomplete == []
    assert young.exists()


def test_a_published_version_carries_no_claim_and_its_manifest_lists_none(tmp_path, model):
    registry = ModelRegistry(tmp_path / "models")
    version = registry.publish(model)
    folder = Path(registry.version_path(version))
    assert not list(folder.glob(f"{PUBLISHING_PREFIX}*"))
    assert not [f for f in registry.manifest(version)["files"] if PUBLISHING_PREFIX in f]


def test_train_pipeline_applies_retention_after_each_publish(tmp_path, monkeypatch):
    from recgraph.data.store import Store
    from recgraph.data.synthetic import SyntheticConfig
    from recgraph.jobs.quickstart import load_synthetic
    from recgraph.jobs.train import train_pipeline

    registry = ModelRegistry(tmp_path / "models")
    (tmp_path / "models" / "versions" / "v1").mkdir(parents=True)  # a killed run's leftover
    os.utime(tmp_path / "models" / "versions" / "v1", (0, 0))
    monkeypatch.setenv("RECGRAPH_REGISTRY_KEEP", "2")
    small = SyntheticConfig(n_accounts=60, n_items=40, mean_follows=5, mean_interactions=5)
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        load_synthetic(store, small)
        versions = [train_pipeline(store, registry).version for _ in range(3)]
        last = train_pipeline(store, registry, keep=0)  # 0: keep everything
    assert versions == ["v2", "v3", "v4"] and last.version == "v5"
    assert registry.list_versions() == ["v3", "v4", "v5"]
    assert not (tmp_path / "models" / "versions" / "v1").exists()
