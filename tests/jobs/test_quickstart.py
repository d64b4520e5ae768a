import json

import pytest

from recgraph.cli.main import main
from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig
from recgraph.jobs.quickstart import run_quickstart
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry

SMALL = SyntheticConfig(n_accounts=300, n_items=400, mean_follows=12, mean_interactions=20)


def test_quickstart_loads_synthetic_data_and_evaluates_both_questions(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    result = run_quickstart(
        url, synthetic=SMALL, ks=(10,), progress=False, registry=str(tmp_path / "models")
    )
    assert result.counts["accounts"] == 300 and result.counts["follows"] > 1000
    assert set(result.reports) == {"follows", "items"}
    follows = result.reports["follows"]
    names = [r.model for r in follows.results]
    assert names[0] == "popular" and names[-1] == "pipeline:who_to_follow"
    assert [r.model for r in result.reports["items"].results][-1] == "pipeline:feed"
    for report in result.reports.values():
        for model in report.results:
            assert 0.0 <= model.metrics["recall@10"] <= 1.0
        assert report.n_users > 0
    # a structural model must beat chance on a graph built from triadic closure
    if "adamic_adar" in names:
        assert follows.result("adamic_adar").metrics["recall@10"] > 0.05


def test_quickstart_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    options = dict(synthetic=SMALL, ks=(10,), progress=False, publish=False)
    first = run_quickstart(url, **options)
    second = run_quickstart(url, **options)
    assert first.counts == second.counts
    a = first.reports["follows"].results[0].metrics
    b = second.reports["follows"].results[0].metrics
    assert a == pytest.approx(b)


def test_quickstart_command_on_an_edge_list(tmp_path, capsys):
    edges = tmp_path / "edges.txt"
    lines = ["# a friendship graph: two cliques"]
    lines += [f"{a} {b}" for c in (0, 6) for a in range(c, c + 6) for b in range(a + 1, c + 6)]
    edges.write_text("\n".join(lines) + "\n")
    db = tmp_path / "e.db"
    out = tmp_path / "json"
    status = main(
        ["quickstart", "--db", f"sqlite:///{db}", "--data", str(edges), "--undirected",
         "--k", "5", "--json-dir", str(out), "--registry", str(tmp_path / "models"),
         "--no-serve"]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "who to follow" in printed and "edge holdout" in printed
    report = json.loads((out / "quickstart-friends.json").read_text())
    assert report["kind"] == "friends" and report["results"][0]["model"] == "popular"
    assert Store(f"sqlite:///{db}").counts()["follows"] == len(lines) - 1


def test_quickstart_rejects_a_missing_path(tmp_path, capsys):
    status = main(
        ["quickstart", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--data", str(tmp_path / "nope"),
         "--registry", str(tmp_path / "models"), "--no-serve"]
    )  # fmt: skip
    assert status == 2
    assert "nope" in capsys.readouterr().err


def test_quickstart_trains_and_publishes_the_pipeline(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    registry = ModelRegistry(tmp_path / "models")
    result = run_quickstart(url, synthetic=SMALL, ks=(10,), progress=False, registry=registry.root)
    assert result.trained is not None and result.trained.version == "v1"
    assert registry.current_version() == "v1"
    manifest = registry.manifest("v1")
    assert manifest["model"] == "pipeline"
    assert manifest["metrics"]["who_to_follow/recall@10"] == pytest.approx(
        result.reports["follows"].result("pipeline:who_to_follow").metrics["recall@10"]
    )
    # every baseline too, for the dashboard's curves
    assert manifest["metrics"]["feed/popular/ndcg@10"] == pytest.approx(
        result.reports["items"].result("popular").metrics["ndcg@10"]
    )
    pipeline = Pipeline.load(registry.local_copy("v1") / "model")
    assert set(pipeline.questions) == {"who_to_follow", "feed"}
    assert pipeline.suggest_accounts("nobody", 3).results[0].reason == "popular: new user"


def test_quickstart_command_publishes_and_says_where(tmp_path, capsys, monkeypatch):
    served = []
    monkeypatch.setattr(
        "recgraph.cli.quickstart.serve_until_stopped", lambda plan: served.append(plan)
    )
    edges = tmp_path / "edges.txt"
    edges.write_text("".join(f"{a} {b}\n" for a in range(6) for b in range(6) if a != b))
    args = ["quickstart", "--db", f"sqlite:///{tmp_path / 'e.db'}", "--data", str(edges),
            "--k", "5", "--registry", str(tmp_path / "models"), "--port", "8123"]  # fmt: skip
    assert main(args + ["--no-serve"]) == 0
    assert "published v1" in capsys.readouterr().out and not served
    assert main(args + ["--token", "abc"]) == 0
    (plan,) = served
    plan.sock.close()
    settings = plan.settings
    assert settings.port == 8123 and settings.host == "127.0.0.1" and settings.token() == "abc"
    assert ModelRegistry(tmp_path / "models").current_version() == "v2"
