"""``recgraph split`` and ``recgraph evaluate`` end to end, on small files."""

import json
from pathlib import Path

import numpy as np
import pytest

from recgraph.cli.main import main

# The tiny example of tests/evaluation/test_evaluate.py: recall@2 of popular is 1.
TRAIN_CSV = "user,item\nu0,i0\nu0,i1\nu1,i0\nu1,i2\nu2,i0\nu2,i1\nu2,i3\n"
TEST_CSV = "user,item\nu0,i2\nu0,i3\nu1,i3\nu2,i2\nu9,i0\nu0,i9\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text(TRAIN_CSV)
    test.write_text(TEST_CSV)
    return train, test


def run_evaluate(train: Path, test: Path, *extra: str) -> int:
    return main(["evaluate", "--train", str(train), "--test", str(test), "--kind", "items", *extra])


def test_evaluate_writes_json_and_plot(files, tmp_path: Path, capsys) -> None:
    train, test = files
    out, png = tmp_path / "out.json", tmp_path / "curves.png"
    status = run_evaluate(
        train, test, "--model", "popular", "--k", "1,2", "--json", str(out), "--plot", str(png)
    )
    assert status == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "items"
    # u9 never in train, i9 never in train
    assert data["dropped_test_rows"] == 2
    assert data["dropped_by_reason"]["user_not_in_train"] == 1
    assert data["dropped_by_reason"]["target_not_in_train"] == 1
    (result,) = data["results"]
    assert result["model"] == "popular" and result["params"] == {}
    assert result["metrics"]["recall@2"] == 1.0
    assert result["metrics"]["coverage@1"] == 0.5
    assert png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "popular" in printed and "recall" in printed


def test_params_from_flag_and_toml(files, tmp_path: Path) -> None:
    train, test = files
    toml = tmp_path / "params.toml"
    toml.write_text('[popular]\nweight = "value"\n')
    out = tmp_path / "out.json"
    assert (
        run_evaluate(train, test, "--model", "popular", "--params", str(toml), "--json", str(out))
        == 0
    )
    assert json.loads(out.read_text())["results"][0]["params"] == {"weight": "value"}
    assert (
        run_evaluate(
            train,
            test,
            "--model",
            "popular",
            "--params",
            str(toml),
            "--param",
            "popular.weight=users",
            "--json",
            str(out),
        )
        == 0
    )
    assert json.loads(out.read_text())["results"][0]["params"] == {}  # back to the default


def test_bad_parameter_exits_2_naming_it(files, capsys) -> None:
    train, test = files
    assert run_evaluate(train, test, "--model", "popular", "--param", "popular.wieght=3") == 2
    assert "wieght" in capsys.readouterr().err
    assert run_evaluate(train, test, "--model", "popular", "--param", "popular.weight=loud") == 2
    assert "popular.weight" in capsys.readouterr().err


def test_parameters_for_a_model_not_evaluated(files, capsys) -> None:
    train, test = files
    assert run_evaluate(train, test, "--model", "popular", "--param", "popularr.weight=value") == 2
    assert "popularr" in capsys.readouterr().err


def test_unknown_model_and_bad_k(files, capsys) -> None:
    train, test = files
    assert run_evaluate(train, test, "--model", "no_such_model") == 2
    assert "no_such_model" in capsys.readouterr().err
    assert run_evaluate(train, test, "--model", "popular", "--k", "10,x") == 2
    capsys.readouterr()
    assert run_evaluate(train, test, "--pipeline", "p.toml", "--holdout", "sideways") == 2
    assert "sideways" in capsys.readouterr().err


def test_bad_file_names_the_line(tmp_path: Path, files, capsys) -> None:
    _, test = files
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\nu0,i0,5\nu1,i1,lots\n")
    assert run_evaluate(bad, test, "--model", "popular") == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "line 3" in err and "rating" in err


def test_split_then_evaluate(tmp_path: Path) -> None:
    rows = ["user,item,rating,timestamp"]
    rows += [f"u{u},i{(u * 7 + j) % 25},4,{1000 + 20 * j + u}" for u in range(20) for j in range(8)]
    data = tmp_path / "ratings.csv"
    data.write_text("\n".join(rows) + "\n")
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    for method in ("random_per_user", "temporal_global", "leave_last_n"):
        status = main(
            ["split", str(data), "--kind", "items", "--method", method, "--fraction", "0.25"]
            + ["--seed", "1", "--train", str(train), "--test", str(test)]
        )
        assert status == 0, method
        header = train.read_text().splitlines()[0]
        assert header == "user\titem\trating\ttimestamp"
        n_rows = len(train.read_text().splitlines()) + len(test.read_text().splitlines()) - 2
        assert n_rows == 160, method
        out = tmp_path / f"{method}.json"
        assert run_evaluate(train, test, "--model", "popular", "--json", str(out)) == 0
        assert json.loads(out.read_text())["results"][0]["metrics"]["hit@10"] >= 0.0


def test_split_a_snap_edge_list(tmp_path: Path) -> None:
    # a ring of 12 with chords, SNAP style: comments, spaces
    edges = [(i, (i + 1) % 12) for i in range(12)] + [(i, (i + 5) % 12) for i in range(12)]
    snap = tmp_path / "graph.txt"
    snap.write_text("# toy graph\n" + "".join(f"{a} {b}\n" for a, b in edges))
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    args = ["split", str(snap), "--kind", "friends", "--method", "edge_holdout"]
    args += ["--fraction", "0.25", "--train", str(train), "--test", str(test)]
    assert main(args) == 0
    assert train.read_text().startswith("src,dst\n")
    assert len(test.read_text().splitlines()) - 1 == 6  # 25% of 24 edges
    out = tmp_path / "out.json"
    status = main(
        ["evaluate", "--train", str(train), "--test", str(test), "--kind", "friends"]
        + ["--model", "popular", "--k", "5", "--json", str(out)]
    )
    assert status == 0
    assert json.loads(out.read_text())["dropped_test_rows"] == 0


def test_temporal_split_without_timestamps_exits_2(tmp_path: Path, capsys) -> None:
    snap = tmp_path / "graph.txt"
    snap.write_text("0 1\n1 2\n2 0\n")
    args = ["split", str(snap), "--kind", "follows", "--method", "temporal_pairs"]
    args += ["--train", str(tmp_path / "a.csv"), "--test", str(tmp_path / "b.csv")]
    assert main(args) == 2
    assert "timestamp" in capsys.readouterr().err


def test_split_keeps_value_meanings_and_evaluate_reads_them(tmp_path: Path, capsys) -> None:
    """Play counts split into files that say they are counts, read back as counts."""
    rows = [f"u{u}\ti{(u * 7 + j) % 11}\t{1 + (u + j) % 9}" for u in range(12) for j in range(5)]
    plays = tmp_path / "plays.dat"
    plays.write_text("user\titem\tvalue\n" + "\n".join(rows) + "\n")
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    args = ["split", str(plays), "--kind", "items", "--method", "random_per_user"]
    args += ["--train", str(train), "--test", str(test)]
    assert main(args) == 2  # the format of a .dat file and the meaning of its values
    assert "--format" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--format", "tsv"]) == 2
    assert "--value" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--format", "tsv", "--value", "count"]) == 0
    header = train.read_text().splitlines()[0]
    assert header == "user,item,value,value_kind"
    assert set(line.split(",")[3] for line in train.read_text().splitlines()[1:]) == {"count"}
    from recgraph.data.interactions import Interactions, ValueKind

    assert set(Interactions.read_table(str(train), "items").value_kind) == {ValueKind.COUNT}
    assert run_evaluate(train, test, "--model", "popular", "--k", "5") == 0


def test_evaluate_reads_other_separators_and_says_what_values_mean(tmp_path: Path) -> None:
    train, test = tmp_path / "train.data", tmp_path / "test.data"
    train.write_text(TRAIN_CSV.replace(",", ";"))
    test.write_text(TEST_CSV.replace(",", ";"))
    assert run_evaluate(train, test, "--model", "popular", "--sep", ";", "--k", "2") == 0
    weighted, held = tmp_path / "w.csv", tmp_path / "h.csv"
    weighted.write_text("user,item,value\nu0,i0,2\nu1,i1,3\nu2,i1,1\n")
    held.write_text("user,item,value\nu0,i1,2\n")
    assert run_evaluate(weighted, held, "--model", "popular", "--value", "weight") == 0
    assert run_evaluate(weighted, held, "--model", "popular") == 2


def test_split_skips_a_header_line_of_an_edge_list_with_a_note(tmp_path: Path, capsys) -> None:
    edges = tmp_path / "friends.txt"
    edges.write_text("userID\tfriendID\n" + "".join(f"{i}\t{i + 1}\n" for i in range(30)))
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    args = ["split", str(edges), "--kind", "friends", "--method", "edge_holdout"]
    assert main([*args, "--train", str(train), "--test", str(test)]) == 0
    assert "read as a header" in " ".join(capsys.readouterr().err.split())
    assert "userID" not in train.read_text() + test.read_text()


RANKED_PIPELINE = """
[feed]
retrievers = [{ name = "item_knn" }, { name = "popular" }]
fallback = []
cold_start_min_interactions = 1
[feed.ranker]
depth = 20
params = { n_estimators = 30, num_leaves = 7, min_child_samples = 5, early_stopping_rounds = 5 }
[who_to_follow]
enabled = false
retrievers = [{ name = "popular" }]
fallback = []
"""


def test_evaluate_a_pipeline_file_with_its_two_stage_table(small_store, tmp_path: Path, capsys):
    from recgraph.data import splits

    data = small_store.interactions_graph()
    train, test = splits.split(data, "temporal_global", fraction=0.2)
    paths = {}
    for name, part in (("train", train), ("test", test)):
        paths[name] = tmp_path / f"{name}.csv"
        lines = ["user,item,timestamp"] + [
            f"{u},{i},{t}"
            for u, i, t in zip(
                part.users.external(part.src),
                part.items.external(part.dst),
                part.timestamp,
                strict=True,
            )
        ]
        paths[name].write_text("\n".join(lines) + "\n")
    pipeline = tmp_path / "ranked.toml"
    pipeline.write_text(RANKED_PIPELINE)
    out = tmp_path / "out.json"
    status = run_evaluate(
        paths["train"],
        paths["test"],
        "--model",
        "item_knn",
        "--pipeline",
        str(pipeline),
        "--depths",
        "10,20",
        "--json",
        str(out),
    )
    assert status == 0
    report = json.loads(out.read_text())
    assert [r["model"] for r in report["results"]] == ["item_knn", "pipeline:feed"]
    # the ranker was taught as the files were cut, read from their times
    assert report["holdout"]["method"] == "temporal_global"
    (table,) = report["two_stage"].values()
    assert [row["depth"] for row in table["depths"]] == [10, 20]
    deeper, shallower = table["depths"][1], table["depths"][0]
    assert deeper["candidate_recall"] >= shallower["candidate_recall"] > 0
    assert table["depths"][0]["after"] is not None
    # and what the stage's validation kept and how its served ranker was fitted
    assert table["ranking"]["label_split"] == "temporal_global"
    assert table["ranking"]["final_slices_used"] in (0, 1)
    assert "two stages of feed" in capsys.readouterr().out


def test_evaluate_needs_a_model_or_a_pipeline(files):
    train, test = files
    assert run_evaluate(train, test) != 0


class _RecordsItemFeatures:
    """What a model that reads item side data was given (set by the class below)."""

    seen = None


def _register_recorder() -> None:
    from recgraph.retrieval.popular import Popular
    from recgraph.retrieval.registry import register_retriever

    class ItemFeatureRecorder(Popular):
        name = "item_feature_recorder"
        uses_item_features = True

        def _fit(self, train):
            _RecordsItemFeatures.seen = self.item_features
            super()._fit(train)

    import sys

    sys.modules[__name__].ItemFeatureRecorder = ItemFeatureRecorder
    register_retriever("item_feature_recorder", f"{__name__}:ItemFeatureRecorder")


def test_items_file_reaches_the_models_that_read_it(files, tmp_path: Path) -> None:
    train, test = files
    items = tmp_path / "items.csv"
    items.write_text(
        "item,title,genres,created_at\ni0,Toy Story (1995),Animation|Comedy,1995-11-22\n"
        "i1,Heat,,\ni3,Casino,Drama|Crime,816000000\n"
    )
    _register_recorder()
    status = run_evaluate(
        train, test, "--model", "item_feature_recorder", "--k", "2", "--items", str(items)
    )
    assert status == 0
    got = _RecordsItemFeatures.seen
    # lined up with train's item map (i0, i1, i2, i3); i2 is not described
    assert got.ids.tolist() == ["i0", "i1", "i2", "i3"]
    assert got.titles.tolist() == ["Toy Story (1995)", "Heat", "", "Casino"]
    assert got.genres == (("Animation", "Comedy"), (), (), ("Drama", "Crime"))
    assert got.created_at[3] == 816000000 and np.isnan(got.created_at[2])


def test_a_bad_items_file_names_the_line(files, tmp_path: Path, capsys) -> None:
    train, test = files
    items = tmp_path / "items.csv"
    items.write_text("item,title,year\ni0,Heat,1995\n")
    assert run_evaluate(train, test, "--model", "popular", "--items", str(items)) != 0
    assert "year" in capsys.readouterr().err
