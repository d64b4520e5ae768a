import json

import pytest

from recgraph.cli.main import main
from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig
from recgraph.jobs.quickstart import run_quickstart

SMALL = SyntheticConfig(n_accounts=300, n_items=400, mean_follows=12, mean_interactions=20)


def test_quickstart_loads_synthetic_data_and_evaluates_both_questions(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    result = run_quickstart(url, synthetic=SMALL, ks=(10,), progress=False)
    assert result.counts["accounts"] == 300 and result.counts["follows"] > 1000
    assert set(result.reports) == {"follows", "items"}
    follows = result.reports["follows"]
    names = [r.model for r in follows.results]
    assert names[0] == "popular"
    for report in result.reports.values():
        for model in report.results:
            assert 0.0 <= model.metrics["recall@10"] <= 1.0
        assert report.n_users > 0
    # a structural model must beat chance on a graph built from triadic closure
    if "adamic_adar" in names:
        assert follows.result("adamic_adar").metrics["recall@10"] > 0.05


def test_quickstart_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = run_quickstart(url, synthetic=SMALL, ks=(10,), progress=False)
    second = run_quickstart(url, synthetic=SMALL, ks=(10,), progress=False)
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
         "--k", "5", "--json-dir", str(out)]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "who to follow" in printed and "edge holdout" in printed
    report = json.loads((out / "quickstart-friends.json").read_text())
    assert report["kind"] == "friends" and report["results"][0]["model"] == "popular"
    assert Store(f"sqlite:///{db}").counts()["follows"] == len(lines) - 1


def test_quickstart_rejects_a_missing_path(tmp_path, capsys):
    status = main(
        ["quickstart", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--data", str(tmp_path / "nope")]
    )
    assert status == 2
    assert "nope" in capsys.readouterr().err
