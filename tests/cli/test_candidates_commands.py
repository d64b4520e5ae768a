"""``recgraph candidates``: runs a job, writes Parquet, publishes for serving."""

from __future__ import annotations

import pandas as pd

from recgraph.cli.main import main
from recgraph.data.store import Store
from recgraph.jobs.candidates.output import read_candidates
from recgraph.retrieval.materialized import decode_list


def _edges(path):
    pd.DataFrame(
        {"src": ["a", "a", "b", "c", "d", "d"], "dst": ["b", "c", "d", "d", "a", "e"]}
    ).to_parquet(path, index=False)
    return path


def test_candidates_writes_parquet_and_publishes_to_the_store(tmp_path, capsys):
    edges = _edges(tmp_path / "follows.parquet")
    out = tmp_path / "aa.parquet"
    db = f"sqlite:///{tmp_path / 'store.db'}"
    status = main(
        [
            "candidates",
            "--job",
            "adamic_adar",
            "--input",
            str(edges),
            "--output",
            str(out),
            "--k",
            "3",
            "--param",
            "hub_cap=100",
            "--publish",
            "store",
            "--db",
            db,
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "adamic_adar on local" in printed and "published" in printed
    frame = read_candidates(out)
    # a follows b, c; b and c follow d: d is a's first candidate
    first = frame[frame["user"] == "a"].iloc[0]
    assert first["candidate"] == "d" and first["rank"] == 1
    with Store.open(db) as store:
        payload = store.candidate_lists("adamic_adar", ["a"])["a"]
    candidates, scores, sources = decode_list(payload)
    assert candidates[0] == "d" and sources[0] == ["adamic_adar"]


def test_a_bad_job_or_missing_column_is_a_clear_error(tmp_path, capsys):
    assert main(["candidates", "--job", "nope", "--input", str(tmp_path / "x.parquet")]) == 2
    assert "unknownjob'nope'" in "".join(capsys.readouterr().err.split())
    pd.DataFrame({"source": ["a"], "dst": ["b"]}).to_parquet(tmp_path / "bad.parquet")
    status = main(
        [
            "candidates",
            "--job",
            "jaccard",
            "--input",
            str(tmp_path / "bad.parquet"),
            "--output",
            str(tmp_path / "o.parquet"),
        ]
    )
    assert status == 2
    err = "".join(capsys.readouterr().err.split())  # rich may wrap the line anywhere
    assert "bad.parquet" in err and "missingcolumn'src'" in err


def test_candidates_writes_degree_capped_samples(tmp_path, capsys):
    from recgraph.jobs.candidates.sampling_job import read_samples

    edges = _edges(tmp_path / "follows.parquet")
    out = tmp_path / "samples.parquet"
    args = ["candidates", "--job", "samples", "--input", str(edges), "--output", str(out)]
    status = main([*args, "--param", "num_samples=2", "--param", "max_degree=1"])
    assert status == 0
    assert "sampled edges" in capsys.readouterr().out
    frame = read_samples(out)
    assert set(frame["sample"]) <= {0, 1} and 0 < len(frame) < 2 * 6
    assert main([*args, "--publish", "store"]) == 2
    assert "samplesjobwritessubgraphs" in "".join(capsys.readouterr().err.split())
