"""``recgraph registry list|show|promote`` on a registry folder."""

import json

import pytest

import recgraph.cli.registry_commands  # noqa: F401  (registers the sub-app even before main lists it)
from recgraph.cli.main import main
from recgraph.retrieval.popular import Popular
from recgraph.serving.registry import ModelRegistry
from tests.retrieval.conformance import two_cliques


@pytest.fixture
def root(tmp_path) -> str:
    data = two_cliques("items")
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(Popular().fit(data), data=data, metrics={"ndcg@10": 0.4242})
    registry.publish(Popular(weight="value").fit(data))
    return str(tmp_path / "models")


def test_list_marks_the_current_version(root, capsys):
    assert main(["registry", "list", "--registry", root]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "v1" in line or "v2" in line]
    assert len(lines) == 2
    assert "*" in lines[0] and "*" not in lines[1]
    assert "ndcg@10=0.4242" in out and "popular" in out


def test_promote_then_show_the_current_manifest(root, capsys):
    assert main(["registry", "promote", "v2", "--registry", root]) == 0
    assert "v1 -> v2" in capsys.readouterr().out
    assert main(["registry", "show", "--registry", root]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["version"] == "v2" and manifest["config"]["weight"] == "value"


def test_registry_from_the_environment(root, monkeypatch, capsys):
    monkeypatch.setenv("RECGRAPH_REGISTRY", root)
    assert main(["registry", "show", "v1"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["rows"] == 49


def test_unknown_version_is_a_clean_error(root, capsys):
    assert main(["registry", "promote", "v9", "--registry", root]) == 2
    assert "no version 'v9'" in capsys.readouterr().err
    assert ModelRegistry(root).current_version() == "v1"


def test_rollback_to_a_version_of_a_newer_format_is_refused(root, capsys):
    registry = ModelRegistry(root)
    registry.set_current("v2")
    header = registry.local_copy("v1") / "model" / "model.json"
    header.write_text(json.dumps({**json.loads(header.read_text()), "format_version": 99}))
    pointer = (registry.local_copy("v1").parents[1] / "CURRENT").read_bytes()
    assert main(["registry", "promote", "v1", "--registry", root]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "version v1 cannot be loaded" in err and "format_version 99 is not supported" in err
    assert "current stays v2" in err
    assert (registry.local_copy("v1").parents[1] / "CURRENT").read_bytes() == pointer
    # --force is for a server newer than this recgraph: it promotes without the check
    assert main(["registry", "promote", "v1", "--force", "--registry", root]) == 0
    assert registry.current_version() == "v1"


def test_empty_registry_says_so(tmp_path, capsys):
    assert main(["registry", "list", "--registry", str(tmp_path / "none")]) == 0
    assert "no versions" in capsys.readouterr().out


def test_gc_keeps_the_newest_and_the_current(root, capsys, monkeypatch):
    registry = ModelRegistry(root)
    data = two_cliques("items")
    for _ in range(3):
        registry.publish(Popular().fit(data))  # v3..v5, v1 stays current
    assert main(["registry", "gc", "--keep", "2", "--dry-run", "--registry", root]) == 0
    assert "would remove 2 old version(s) (v2, v3)" in capsys.readouterr().out
    assert registry.list_versions() == ["v1", "v2", "v3", "v4", "v5"]
    assert main(["registry", "gc", "--keep", "2", "--registry", root]) == 0
    assert "removed 2 old version(s)" in capsys.readouterr().out
    assert registry.list_versions() == ["v1", "v4", "v5"]
    monkeypatch.setenv("RECGRAPH_REGISTRY_KEEP", "1")
    assert main(["registry", "gc", "--registry", root]) == 0  # the setting's default
    assert registry.list_versions() == ["v1", "v5"]
    assert main(["registry", "gc", "--keep", "0", "--registry", root]) == 2
