import hashlib
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.snapshot import content_hash, data_snapshot
from recgraph.errors import ConfigError, InputError
from recgraph.index import create_index
from recgraph.retrieval.popular import Popular
from recgraph.serving.registry import (
    COMPLETE_MARKER,
    ModelRegistry,
    RegistryError,
    default_registry_root,
)
from tests.retrieval.conformance import two_cliques


@pytest.fixture(scope="module")
def train() -> Interactions:
    data = two_cliques("items")
    return Interactions.from_indices(
        data.src,
        data.dst,
        n_users=data.n_users,
        n_items=data.n_items,
        kind=data.kind,
        timestamp=1_700_000_000 + 3600 * np.arange(len(data)),
    )


@pytest.fixture(scope="module")
def model(train) -> Popular:
    return Popular().fit(train)


def test_publish_list_promote_load(registry, model, train):
    assert registry.list_versions() == [] and registry.current_version() is None
    first = registry.publish(model, data=train, metrics={"ndcg@10": 0.5})
    second = registry.publish(Popular(weight="value").fit(train))
    assert (first, second) == ("v1", "v2")
    assert registry.list_versions() == ["v1", "v2"]
    # the first version of an empty registry becomes current; later ones wait
    assert registry.current_version() == "v1"
    loaded, manifest = registry.load()
    assert manifest["version"] == "v1" and loaded.config.weight == "users"
    np.testing.assert_array_equal(loaded.recommend([0, 5], 3)[0], model.recommend([0, 5], 3)[0])

    registry.set_current("v2")
    assert registry.current_version() == "v2"
    loaded, manifest = registry.load()
    assert manifest["version"] == "v2" and loaded.config.weight == "value"
    assert registry.load("v1")[1]["version"] == "v1"
    assert registry.current()["version"] == "v2"
    third = registry.publish(model, promote=True)
    assert registry.current_version() == third == "v3"


def test_manifest_holds_what_and_from_which_data(registry, model, train):
    version = registry.publish(
        model,
        data=train,
        metrics={"recall@10": np.float32(0.25), "per_k": np.array([1, 2]), "auc": float("nan")},
        notes="baseline",
    )
    manifest = registry.manifest(version)
    assert manifest["version"] == version and manifest["model"] == "popular"
    assert manifest["config"] == {"count_epsilon": 1.0, "weight": "users", "window_days": None}
    assert (manifest["n_users"], manifest["n_items"], manifest["graph_kind"]) == (10, 10, "items")
    assert manifest["metrics"] == {"recall@10": 0.25, "per_k": [1, 2], "auc": None}
    assert manifest["notes"] == "baseline"
    data = manifest["data"]
    assert data["rows"] == len(train) == 49
    assert data["kinds"] == {"like": 48, "dislike": 1}
    assert data["time_range"]["start"] == 1_700_000_000
    assert data["time_range"]["end"] == 1_700_000_000 + 3600 * 48
    assert data["time_range"]["start_utc"] == "2023-11-14T22:13:20Z"
    assert data["content_hash"] == content_hash(train)
    # what the users had (the dislike makes liked differ from seen) and the id maps: .npy
    history = {
        f"model/{m}.{part}.npy" for m in ("seen", "liked") for part in ("indptr", "indices", "data")
    }
    assert set(manifest["files"]) == {
        "model/model.json",
        "model/state.npz",
        "model/ids.users.npy",
        "model/ids.items.npy",
        "model/ids.users.order.npy",  # the permutations that sort the ids: lookups search them
        "model/ids.items.order.npy",
        *history,
    }
    assert all(
        info["bytes"] > 0 and len(info["sha256"]) == 64 for info in manifest["files"].values()
    )
    assert manifest["index"] is None
    assert manifest["created_at"].endswith("Z")


def test_content_hash_ignores_row_order_but_not_content(train):
    shuffled = train.subset(np.random.default_rng(0).permutation(len(train)))
    assert content_hash(shuffled) == content_hash(train)
    fewer = train.subset(np.arange(len(train) - 1))
    assert content_hash(fewer) != content_hash(train)
    relabelled = train.subset(np.arange(len(train)))
    relabelled.kind[0] = Kind.VIEW
    assert content_hash(relabelled) != content_hash(train)
    assert data_snapshot(train)["content_hash"].startswith("sha256:")


def test_index_is_published_and_loaded_with_its_model(registry, model):
    vectors = np.random.default_rng(0).normal(size=(model.n_items, 4)).astype(np.float32)
    index = create_index("exact", metric="l2").build(vectors)
    version = registry.publish(model, index=index)
    manifest = registry.manifest(version)
    assert manifest["index"]["index"] == "exact" and manifest["index"]["n_items"] == 10
    loaded = registry.load_index(version)
    np.testing.assert_array_equal(loaded.search(vectors, 3)[0], index.search(vectors, 3)[0])
    assert registry.load_index(registry.publish(model)) is None


def test_unknown_and_malformed_versions(registry, model):
    with pytest.raises(RegistryError, match="no current version"):
        registry.load()
    registry.publish(model)
    with pytest.raises(RegistryError, match="no version 'v7'"):
        registry.set_current("v7")
    with pytest.raises(RegistryError):
        registry.load("v7")
    with pytest.raises(InputError, match="version"):
        registry.set_current("../v1")
    assert registry.current_version() == "v1"


def _rewrite_json(registry, path: str, change=None, **changes) -> None:
    """Change keys of a JSON file in the registry (``change(value)``, or ``changes``), as a
    newer writer would have written it: the version's manifest lists the new size and hash."""
    value = json.loads(registry.fs.cat_file(path))
    raw = json.dumps(change(value) if change else {**value, **changes}).encode()
    registry.fs.pipe_file(path, raw)
    folder, _, relative = path.partition("/versions/")
    version, _, relative = relative.partition("/")
    if relative != "manifest.json":
        manifest_path = f"{folder}/versions/{version}/manifest.json"
        manifest = json.loads(registry.fs.cat_file(manifest_path))
        manifest["files"][relative] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        registry.fs.pipe_file(manifest_path, json.dumps(manifest).encode())


@pytest.mark.parametrize(
    ("relative", "changes", "reason"),
    [
        ("model/model.json", {"format_version": 99}, "format_version 99 is not supported"),
        ("model/model.json", {"model": "from_the_future"}, "unknown model 'from_the_future'"),
        ("manifest.json", {"format_version": 2}, "format_version 2 is not supported"),
        ("index/index.json", {"format_version": 7}, "format_version 7 is not supported"),
        ("index/index.json", {"index": "quantum"}, "unknown index 'quantum'"),
    ],
)
def test_promote_and_rollback_refuse_a_version_this_code_cannot_load(
    registry, model, relative, changes, reason
):
    """A version written by a newer format, or naming an unknown kind, is refused with the
    version and the reason named, and CURRENT stays exactly as it was."""
    vectors = np.random.default_rng(0).normal(size=(model.n_items, 4)).astype(np.float32)
    old = registry.publish(model, index=create_index("exact", metric="l2").build(vectors))
    new = registry.publish(model, promote=True)
    assert (old, new) == ("v1", "v2") and registry.current_version() == "v2"
    _rewrite_json(registry, f"{registry.version_path(old)}/{relative}", **changes)
    pointer = registry.fs.cat_file(registry._path("CURRENT"))
    with pytest.raises(RegistryError, match=f"version v1 cannot be loaded.*{reason}") as refused:
        registry.set_current(old)
    assert "current stays v2" in str(refused.value)
    assert registry.fs.cat_file(registry._path("CURRENT")) == pointer
    assert registry.current_version() == "v2"
    registry.set_current(new)  # a version this code reads is still promoted


def _check_and_load_both_refuse(registry, version: str, reason: str) -> None:
    """The promote check and loading agree: both refuse ``version``, for the same reason."""
    from recgraph.serving.loader import load_version

    with pytest.raises(RegistryError, match=f"version {version} cannot be loaded.*{reason}"):
        registry.set_current(version)
    with pytest.raises((InputError, ConfigError), match=reason):
        load_version(registry, version)


def _with_future_key(value: dict) -> dict:
    return {**value, "config": {**value["config"], "option_from_the_future": 1}}


def test_a_model_config_key_this_code_does_not_know_is_refused(registry, model):
    """A newer writer's new parameter does not bump format_version: the model's own config
    class refuses it at load, so the promote check does too."""
    old = registry.publish(model)
    registry.publish(model, promote=True)
    _rewrite_json(registry, f"{registry.version_path(old)}/model/model.json", _with_future_key)
    _check_and_load_both_refuse(registry, old, "option_from_the_future.*Extra inputs")
    assert registry.current_version() == "v2"


def test_a_pipeline_config_loading_refuses_is_refused(registry, model):
    """pipeline.json's config goes through the parser Pipeline.load uses: an unknown key,
    or a config format_version this code does not read, is refused by both."""
    from recgraph.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_retriever(model)
    for changed, reason in [
        (_with_future_key, "option_from_the_future.*Extra inputs"),
        (
            lambda value: {**value, "config": {**value["config"], "format_version": 2}},
            "format_version 2 is not supported",
        ),
    ]:
        version = registry.publish(pipeline)
        registry.set_current(version)  # as written, it is promoted
        registry.publish(pipeline, promote=True)
        _rewrite_json(registry, f"{registry.version_path(version)}/model/pipeline.json", changed)
        _check_and_load_both_refuse(registry, version, reason)


def test_a_graph_of_a_newer_format_is_refused(registry):
    """A walk model's saved graph (graph.json) is checked with GraphCSR.load's own rule."""
    from recgraph.retrieval.ppr import PersonalizedPageRank

    walker = PersonalizedPageRank().fit(two_cliques("follows"))
    old = registry.publish(walker)
    registry.publish(walker, promote=True)
    _rewrite_json(
        registry, f"{registry.version_path(old)}/model/graph/graph.json", format_version=2
    )
    _check_and_load_both_refuse(registry, old, "graph.json.*format_version 2 is not supported")


def test_a_version_missing_a_listed_file_is_refused(registry, model):
    old = registry.publish(model)
    registry.publish(model, promote=True)
    registry.fs.rm_file(f"{registry.version_path(old)}/model/state.npz")
    with pytest.raises(RegistryError, match="missing: model/state.npz"):
        registry.set_current(old)
    assert registry.current_version() == "v2"


def test_loading_refuses_a_registry_manifest_of_another_format(registry, model):
    """The registry manifest's format is checked by every load, not only by promote."""
    version = registry.publish(model)
    _rewrite_json(registry, f"{registry.version_path(version)}/manifest.json", format_version=2)
    for load in (registry.load, registry.local_copy):
        with pytest.raises(InputError, match="manifest.json.*format_version 2 is not supported"):
            load(version)
    _check_and_load_both_refuse(registry, version, "format_version 2 is not supported")


def test_unfitted_models_and_unstorable_metrics_are_refused(registry, model):
    with pytest.raises(ConfigError, match="not fitted"):
        registry.publish(Popular())
    with pytest.raises(ConfigError, match="manifest"):
        registry.publish(model, metrics={"bad": object()})
    # a refused publish leaves nothing behind
    assert registry.list_versions() == []
    assert not registry.fs.exists(registry.version_path("v1"))


def test_a_version_without_manifest_is_not_listed_and_its_number_is_skipped(tmp_path, model):
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(model)
    (tmp_path / "models" / "versions" / "v2" / "model").mkdir(parents=True)  # a crashed publish
    assert registry.list_versions() == ["v1"]
    with pytest.raises(RegistryError):
        registry.set_current("v2")
    assert registry.publish(model) == "v3"


def test_remote_versions_are_downloaded_once_and_checked(tmp_path, model):
    root = f"memory://registry-{uuid.uuid4().hex}"
    registry = ModelRegistry(root, cache_dir=tmp_path / "cache")
    version = registry.publish(model)
    folder = registry.local_copy(version)
    assert (folder / COMPLETE_MARKER).exists() and (folder / "model" / "state.npz").exists()
    assert registry.local_copy(version) == folder
    # a truncated upload is caught by the manifest's sizes
    other = ModelRegistry(root, cache_dir=tmp_path / "cache2")
    other.fs.pipe_file(f"{registry.version_path(version)}/model/state.npz", b"short")
    with pytest.raises(RegistryError, match="size differs"):
        other.load(version)
    registry.fs.rm(root.removeprefix("memory://"), recursive=True)


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_readers_never_see_a_half_written_pointer_or_manifest(backend, tmp_path, model):
    root = str(tmp_path / "models") if backend == "local" else f"memory://atomic-{uuid.uuid4().hex}"
    writer = ModelRegistry(root, cache_dir=tmp_path / "cache")
    reader = ModelRegistry(root, cache_dir=tmp_path / "cache")
    writer.publish(model)
    writer.publish(model)
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                seen.add(reader.current_version())
                manifest = reader.current()
                assert manifest["version"] in {"v1", "v2"}
                for version in reader.list_versions():
                    assert reader.manifest(version)["version"] == version
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(150):
            writer.set_current("v1" if i % 2 else "v2")
            if i % 50 == 0:
                writer.publish(model)  # manifests appear while the reader lists them
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert seen <= {"v1", "v2"} and seen
    if backend == "local":
        leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
        assert leftovers == [], "temporary files must be renamed or removed"


def test_pointer_and_manifest_files_are_plain_json(tmp_path, model):
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(model)
    assert (tmp_path / "models" / "CURRENT").stat().st_mode & 0o044 == 0o044, "readable by others"
    pointer = json.loads((tmp_path / "models" / "CURRENT").read_text())
    assert pointer["version"] == "v1" and pointer["updated_at"].endswith("Z")
    manifest = json.loads(Path(registry.version_path("v1"), "manifest.json").read_text())
    assert manifest["format_version"] == 1
    (tmp_path / "models" / "CURRENT").write_text("{not json")
    with pytest.raises(InputError, match="CURRENT"):
        registry.current_version()


def test_default_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RECGRAPH_REGISTRY", raising=False)
    assert default_registry_root() == "./models"
    monkeypatch.setenv("RECGRAPH_REGISTRY", str(tmp_path / "elsewhere"))
    assert ModelRegistry().root == str(tmp_path / "elsewhere")
