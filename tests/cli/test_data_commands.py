"""``recgraph import``, ``export`` and ``db info`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgraph.cli.main import main
from recgraph.data.store import Store
from tests.data.conftest import movielens_latest, write_text


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def counts(db: str) -> dict[str, int]:
    with Store(db) as store:
        return store.counts()


def test_import_edges_then_info_and_export(tmp_path: Path, db: str, capsys):
    edges = write_text(tmp_path / "g.txt", "# comment\r\n1\t2\t100\r\n2 3 200\r\n1 2 150\r\n")
    assert main(["import", "edges", str(edges), "--directed", "--timestamps", "--db", db]) == 0
    assert "3 rows read" in capsys.readouterr().out
    assert counts(db)["follows"] == 2 and counts(db)["edge_events"] == 3

    assert main(["db", "info", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "follows" in out and "edge_events" in out and "directed" in out

    out_file = tmp_path / "f.tsv"
    assert main(["export", "follows", str(out_file), "--db", db]) == 0
    assert out_file.read_text().splitlines() == ["src\tdst\ttimestamp", "1\t2\t100", "2\t3\t200"]


def test_bad_file_exits_2_and_names_file_and_line(tmp_path: Path, db: str, capsys):
    good = write_text(tmp_path / "good.txt", "a b\n")
    assert main(["import", "edges", str(good), "--undirected", "--db", db]) == 0
    capsys.readouterr()
    bad = write_text(tmp_path / "bad.txt", "c d\nd e f\n")
    assert main(["import", "edges", str(bad), "--undirected", "--db", db]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "bad.txt" in err and "line 2" in err and "3 fields, expected 2" in err
    assert counts(db)["follows"] == 1 and counts(db)["accounts"] == 2  # left as before


def test_direction_is_required_and_checked(tmp_path: Path, db: str, capsys):
    edges = write_text(tmp_path / "g.txt", "a b\n")
    assert main(["import", "edges", str(edges), "--db", db]) == 2
    assert "--directed or --undirected" in capsys.readouterr().err
    assert main(["import", "edges", str(edges), "--directed", "--db", db]) == 0
    assert main(["import", "edges", str(edges), "--undirected", "--db", db]) == 2
    assert "directed follow graph" in " ".join(capsys.readouterr().err.split())


def test_import_interactions_with_mapping_is_idempotent(tmp_path: Path, db: str, capsys):
    table = write_text(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964981247\n",
    )
    args = ["import", "interactions", str(table), "--user", "userId", "--item", "movieId"]
    args += ["--value-column", "rating", "--value", "rating", "--timestamp", "timestamp"]
    args += ["--kind", "rating", "--db", db]
    assert main(args) == 0
    assert main(args) == 0
    assert "nothing new" in capsys.readouterr().out
    assert counts(db)["interactions_rating"] == 2

    # the old spelling, --value naming the column, now says what to write instead
    old = ["import", "interactions", str(table), "--user", "userId", "--item", "movieId"]
    assert main([*old, "--value", "rating", "--kind", "rating", "--db", db]) == 2
    assert "--value-column" in " ".join(capsys.readouterr().err.split())

    assert (
        main(["import", "interactions", str(table), "--user", "nope", "--kind", "like", "--db", db])
        == 2
    )
    assert "no column 'nope'" in " ".join(capsys.readouterr().err.split())


def import_movielens(tmp_path: Path, db: str, ratings: str, movies: str) -> None:
    """Write a MovieLens "latest" folder with these files and import it with the command."""
    folder = movielens_latest(tmp_path / "ml", ratings, movies)
    assert main(["import", "movielens", str(folder), "--db", db]) == 0


def test_import_movielens_folder(tmp_path: Path, db: str):
    import_movielens(
        tmp_path,
        db,
        "userId,movieId,rating,timestamp\r\n1,1,4.0,5\r\n",
        'movieId,title,genres\r\n1,"Toy Story, The (1995)",Comedy\r\n',
    )
    with Store(db) as store:
        items = store.items_frame()
    assert items["title"].tolist() == ["Toy Story, The (1995)"]
    assert items["features"].tolist() == [{"genres": ["Comedy"], "year": 1995}]


def test_export_accounts_and_items_read_back(tmp_path: Path, db: str):
    import_movielens(
        tmp_path,
        db,
        "userId,movieId,rating,timestamp\n7,1,4.0,5\n",
        "movieId,title,genres\n1,A (2000),Drama\n",
    )
    for what in ("accounts", "items", "interactions"):
        assert main(["export", what, str(tmp_path / f"{what}.parquet"), "--db", db]) == 0
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert main(["import", "items", str(tmp_path / "items.parquet"), "--db", copy]) == 0
    assert main(["import", "accounts", str(tmp_path / "accounts.parquet"), "--db", copy]) == 0
    assert (
        main(["import", "interactions", str(tmp_path / "interactions.parquet"), "--db", copy]) == 0
    )
    assert counts(copy) == counts(db)
    with Store(copy) as store:
        assert store.items_frame()["features"].tolist() == [{"genres": ["Drama"], "year": 2000}]


def test_missing_folder_exits_2(tmp_path: Path, db: str, capsys):
    assert main(["import", "movielens", str(tmp_path / "none"), "--db", db]) == 2
    assert "none: no such folder" in " ".join(capsys.readouterr().err.split())


def test_export_from_a_missing_sqlite_file_exits_2(tmp_path: Path, capsys):
    missing = tmp_path / "none.db"
    assert main(["export", "items", str(tmp_path / "i.csv"), "--db", f"sqlite:///{missing}"]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not missing.exists()


def test_an_undirected_import_reports_friendships(tmp_path: Path, db: str, capsys):
    edges = write_text(tmp_path / "g.txt", "a b\nb c\n")
    assert main(["import", "edges", str(edges), "--undirected", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "friendships +2" in out and "follows" not in out
    directed = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["import", "edges", str(edges), "--directed", "--db", directed]) == 0
    assert "follows +2" in capsys.readouterr().out


def test_import_options_for_files_that_do_not_say_their_format(tmp_path: Path, db: str, capsys):
    table = write_text(tmp_path / "plays.dat", "user|artist|plays\nu|a|3\n")
    args = ["import", "interactions", str(table), "--item", "artist", "--kind", "view"]
    args += ["--value-column", "plays", "--value", "count", "--db", db]
    assert main(args) == 2
    assert "--format csv|tsv|parquet" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--sep", "pipe"]) == 0
    with Store(db) as store:
        assert store.interactions_graph().value_kind.tolist() == [2]  # ValueKind.COUNT
    header = write_text(tmp_path / "friends.edges", "userID friendID\n1 2\n")
    assert main(["import", "edges", str(header), "--directed", "--db", db]) == 0
    captured = capsys.readouterr()
    assert "note:" in captured.err and "read as a header" in " ".join(captured.err.split())
    assert main(["import", "edges", str(header), "--directed", "--no-header", "--db", db]) == 0
    assert counts(db)["follows"] == 2


def test_a_locked_store_is_one_paragraph_and_exit_2(tmp_path: Path, db: str, capsys, monkeypatch):
    import sqlite3

    edges = write_text(tmp_path / "g.txt", "a b\n")
    assert main(["import", "edges", str(edges), "--directed", "--db", db]) == 0
    capsys.readouterr()
    monkeypatch.setenv("RECGRAPH_BUSY_TIMEOUT", "0.2")
    holder = sqlite3.connect(tmp_path / "cli.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert main(["import", "edges", str(edges), "--directed", "--db", db]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "locked by another writer" in " ".join(err.split())
    assert "Traceback" not in err and "\n\n" not in err.strip()  # one paragraph


def test_db_upgrade_on_a_current_store_says_its_version(db: str, capsys):
    Store(db).close()
    assert main(["db", "upgrade", "--db", db]) == 0
    assert "schema version 2" in capsys.readouterr().out
