"""Readers: small files covering each format's quirks, every error naming file and line,
and the real datasets against their documented counts."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgraph.data.interactions import Kind
from recgraph.data.movielens import (
    iter_movielens_items,
    iter_movielens_ratings,
    movielens_layout,
    read_movielens,
)
from recgraph.data.readers import (
    ColumnMapping,
    iter_edge_chunks,
    iter_interaction_chunks,
    read_edge_list,
    read_interactions,
)
from recgraph.errors import InputError
from tests.data.conftest import movielens_latest, write_text
from tests.datasets import edge_list, shared_path


def edges(path: Path, **kwargs) -> pd.DataFrame:
    return pd.concat(list(iter_edge_chunks(path, **kwargs)), ignore_index=True)


def assert_error(exc: pytest.ExceptionInfo, path: Path, line: int | None, problem: str) -> None:
    text = str(exc.value)
    assert str(path) in text, text
    if line is not None:
        assert f"line {line}" in text, text
    assert problem in text, text


# ---------------------------------------------------------------------- edge lists
def test_edge_list_with_crlf_comments_tabs_and_spaces(tmp_path: Path):
    path = write_text(
        tmp_path / "g.txt",
        "# Nodes: 3\r\n# FromNodeId\tToNodeId\r\n1\t2\r\n2  3\r\n\r\n% x\r\n3 \t1\r\n",
    )
    frame = edges(path)
    assert frame[["src", "dst"]].values.tolist() == [["1", "2"], ["2", "3"], ["3", "1"]]
    assert "ts" not in frame.columns


def test_edge_list_header_and_timestamps_in_chunks(tmp_path: Path):
    path = write_text(tmp_path / "g.tsv", "src\tdst\ttimestamp\na\tb\t10\nb\tc\t20\nc\ta\t30\n")
    chunks = list(iter_edge_chunks(path, timestamps=True, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    assert chunks[1].to_dict("records") == [{"src": "c", "dst": "a", "ts": 30}]
    assert chunks[0]["ts"].dtype == np.int64


def test_edge_list_csv_and_gzip(tmp_path: Path):
    path = tmp_path / "g.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('src,dst\n"a",b\nb,c\n')
    assert edges(path).values.tolist() == [["a", "b"], ["b", "c"]]


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "problem"),
    [
        ("1 2\n3\n", {}, 2, "1 field, expected 2 (src dst)"),
        ("1 2\n1 2 3\n", {}, 2, "import with timestamps (--timestamps)"),
        ("1 2 5\n1 2 5.5\n", {"timestamps": True}, 2, "non-integer timestamp '5.5'"),
        ("1 2 5\n1 2\n", {"timestamps": True}, 2, "2 fields, expected 3"),
        ("src dst timestamp\n1 2 3\n", {}, 1, "import with timestamps"),
        ("src dst weight\n1 2 3\n", {}, 1, "unexpected column 'weight'"),
        ("#c\n\n1 2 x\n", {"timestamps": True}, 3, "non-integer timestamp 'x'"),
    ],
)
def test_edge_list_errors_name_file_and_line(tmp_path, text, kwargs, line, problem):
    path = write_text(tmp_path / "bad.txt", text)
    with pytest.raises(InputError) as exc:
        edges(path, **kwargs)
    assert_error(exc, path, line, problem)


def test_csv_edge_list_empty_id(tmp_path: Path):
    path = write_text(tmp_path / "g.csv", "a,b\n,c\n")
    with pytest.raises(InputError) as exc:
        edges(path)
    assert_error(exc, path, 2, "empty src id")


def test_invalid_utf8_names_the_line(tmp_path: Path):
    path = tmp_path / "g.txt"
    path.write_bytes(b"a b\n\xff c\n")
    with pytest.raises(InputError) as exc:
        edges(path)
    assert_error(exc, path, 2, "not valid utf-8")


def test_missing_file(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        edges(tmp_path / "nope.txt")


def test_parquet_edge_list(tmp_path: Path):
    path = tmp_path / "g.parquet"
    pd.DataFrame({"src": [1, 2], "dst": ["x", "y"], "timestamp": [5, 6]}).to_parquet(path)
    frame = edges(path, timestamps=True)
    assert frame.to_dict("records") == [
        {"src": "1", "dst": "x", "ts": 5},
        {"src": "2", "dst": "y", "ts": 6},
    ]
    pd.DataFrame({"src": ["a", None], "dst": ["b", "c"]}).to_parquet(path)
    with pytest.raises(InputError) as exc:
        edges(path)
    assert_error(exc, path, 2, "empty src id")


def test_read_edge_list_keeps_repeated_events(tmp_path: Path):
    path = write_text(tmp_path / "m.txt", "1 2 10\n1 2 10\n2 1 11\n")
    graph = read_edge_list(path, directed=True, timestamps=True)
    assert len(graph) == 3 and graph.timestamp.tolist() == [10, 10, 11]
    assert graph.one_sided and graph.directed and graph.n_users == 2
    assert len(graph.dedupe()) == 2
    friends = read_edge_list(write_text(tmp_path / "f.txt", "a b\n"), directed=False)
    assert not friends.directed and friends.csr().nnz == 2


# ---------------------------------------------------------------------- MovieLens
GENRES = "unknown|0\nAction|1\nComedy|2\n\n"


def ml100k(directory: Path, data: str, item: str) -> Path:
    directory.mkdir()
    write_text(directory / "u.data", data)
    write_text(directory / "u.item", item, encoding="latin-1")
    write_text(directory / "u.genre", GENRES)
    return directory


def test_movielens_100k_latin1_titles_genres_and_dates(tmp_path: Path):
    folder = ml100k(
        tmp_path / "ml",
        "1\t10\t4\t881250949\n2\t20\t3\t891717742\n",
        "10|Café Society (1995)|01-Jan-1995||http://a|0|1|1\n20|Unknown||||1|0|0\n",
    )
    assert movielens_layout(folder) == "100k"
    items = pd.concat(list(iter_movielens_items(folder)))
    assert items.to_dict("records") == [
        {
            "external_id": "10",
            "title": "Café Society (1995)",
            "features": {
                "genres": ["Action", "Comedy"],
                "release_date": "1995-01-01",
                "imdb_url": "http://a",
            },
        },
        {"external_id": "20", "title": "Unknown", "features": {"genres": ["unknown"]}},
    ]
    graph = read_movielens(folder)
    assert graph.kind.tolist() == [int(Kind.RATING)] * 2
    assert graph.value.tolist() == [4.0, 3.0]
    assert graph.timestamp.tolist() == [881250949, 891717742]


def test_movielens_100k_errors(tmp_path: Path):
    folder = ml100k(tmp_path / "ml", "1\t10\t4\t1\n1\t10\t4\n", "10|T|01-Jan-1995||u|0|0|0\n")
    with pytest.raises(InputError) as exc:
        list(iter_movielens_ratings(folder))
    assert_error(exc, folder / "u.data", 2, "3 tab-separated fields, expected 4")
    write_text(folder / "u.item", "10|T|01-Jan-1995||u|0|0|0\n11|T|yesterday||u|0|0|0\n")
    with pytest.raises(InputError) as exc:
        list(iter_movielens_items(folder))
    assert_error(exc, folder / "u.item", 2, "release date 'yesterday'")
    write_text(folder / "u.item", "10|T|01-Jan-1995||u|0|0\n")
    with pytest.raises(InputError) as exc:
        list(iter_movielens_items(folder))
    assert_error(exc, folder / "u.item", 1, "7 '|'-separated fields, expected 8")


def test_movielens_latest_crlf_and_quoted_titles(tmp_path: Path):
    folder = movielens_latest(
        tmp_path / "ml",
        "userId,movieId,rating,timestamp\r\n1,11,4.5,964982703\r\n2,11,0.5,964981247\r\n",
        'movieId,title,genres\r\n11,"American President, The (1995)",Comedy|Drama\r\n'
        "12,Nothing,(no genres listed)\r\n",
    )
    assert movielens_layout(folder) == "latest"
    items = pd.concat(list(iter_movielens_items(folder)))
    assert items["title"].tolist() == ["American President, The (1995)", "Nothing"]
    assert items["features"].tolist() == [
        {"genres": ["Comedy", "Drama"], "year": 1995},
        {"genres": []},
    ]
    ratings = pd.concat(list(iter_movielens_ratings(folder)))
    assert ratings["value"].tolist() == [4.5, 0.5]
    assert ratings["kind"].tolist() == ["rating", "rating"]


@pytest.mark.parametrize(
    ("ratings", "line", "problem"),
    [
        ("user,movie,rating,timestamp\n", 1, "expected 'userId,movieId,rating,timestamp'"),
        ("userId,movieId,rating,timestamp\n1,2,good,3\n", 2, "not a finite number: 'good'"),
        ("userId,movieId,rating,timestamp\n1,2,4,3\n1,2,4\n", 3, "3 fields, expected 4"),
        ("userId,movieId,rating,timestamp\n1,2,4,3.5\n", 2, "non-integer timestamp '3.5'"),
    ],
)
def test_movielens_latest_errors(tmp_path: Path, ratings: str, line: int, problem: str):
    folder = movielens_latest(tmp_path / "ml", ratings, "movieId,title,genres\n")
    with pytest.raises(InputError) as exc:
        list(iter_movielens_ratings(folder))
    assert_error(exc, folder / "ratings.csv", line, problem)


def test_not_a_movielens_folder(tmp_path: Path):
    with pytest.raises(InputError, match="not a MovieLens folder"):
        movielens_layout(tmp_path)


# ---------------------------------------------------------------------- generic tables
def test_generic_csv_with_mapping(tmp_path: Path):
    path = write_text(
        tmp_path / "r.csv",
        'userId,movieId,rating,timestamp,tag\r\n1,"10",4.0,100,x\r\n2,11,,,y\r\n',
    )
    mapping = ColumnMapping(user="userId", item="movieId", value="rating", kind="rating")
    frame = pd.concat(list(iter_interaction_chunks(path, mapping)))
    assert frame["item"].tolist() == ["10", "11"]
    assert frame["timestamp"].tolist() == [100, 0]  # default 'timestamp' column; empty = no time
    assert frame["value"].iloc[0] == 4.0 and np.isnan(frame["value"].iloc[1])
    graph = read_interactions(path, mapping)
    assert graph.value.tolist() == [4.0, 1.0]


def test_generic_tsv_with_kind_column(tmp_path: Path):
    path = write_text(tmp_path / "r.tsv", "u\ti\twhat\na\tx\tLike\nb\tx\tdislike\n")
    mapping = ColumnMapping(user="u", item="i", kind_column="what")
    frame = pd.concat(list(iter_interaction_chunks(path, mapping)))
    assert frame["kind"].tolist() == ["like", "dislike"]


@pytest.mark.parametrize(
    ("text", "mapping", "line", "problem"),
    [
        ("user,item,kind\na,x,like\nb,y,follow\n", {}, 3, "unknown kind 'follow'"),
        ("user,item,kind\na,,like\n", {}, 2, "empty item id"),
        ("user,item,kind,timestamp\na,x,like,12:00\n", {}, 2, "non-integer timestamp '12:00'"),
        ("user,item,kind\na,x\n", {}, 2, "2 fields, expected 3"),
        ("user,item\na,x\n", {}, 1, "no kind"),
        ("user,item\na,x\n", {"value": "rating", "kind": "like"}, 1, "no column 'rating'"),
        ("user,item,kind,value\na,x,like,lots\n", {}, 2, "not a finite number: 'lots'"),
    ],
)
def test_generic_errors_name_file_and_line(tmp_path, text, mapping, line, problem):
    path = write_text(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as exc:
        list(iter_interaction_chunks(path, ColumnMapping(**mapping)))
    assert_error(exc, path, line, problem)


def test_fixed_kind_is_validated(tmp_path: Path):
    path = write_text(tmp_path / "r.csv", "user,item\na,x\n")
    with pytest.raises(InputError, match="unknown kind 'loves'"):
        list(iter_interaction_chunks(path, ColumnMapping(kind="loves")))


def test_generic_parquet_rows_are_numbered(tmp_path: Path):
    path = tmp_path / "r.parquet"
    pd.DataFrame(
        {
            "user": ["a", "b", "c"],
            "item": [1, 2, 3],
            "kind": ["like", "view", "like"],
            "value": [1.0, None, 2.0],
        }
    ).to_parquet(path)
    frame = pd.concat(
        list(iter_interaction_chunks(path, ColumnMapping(value_kind="weight"), chunk_rows=2))
    )
    assert frame["item"].tolist() == ["1", "2", "3"]
    assert frame["value_kind"].tolist() == ["weight"] * 3
    assert frame["kind"].tolist() == ["like", "view", "like"]
    assert np.isnan(frame["value"].iloc[1]) and frame["timestamp"].tolist() == [0, 0, 0]
    pd.DataFrame(
        {"user": ["a", "b", "c"], "item": ["x", "y", "z"], "kind": ["like", "view", "nope"]}
    ).to_parquet(path)
    with pytest.raises(InputError) as exc:
        list(iter_interaction_chunks(path, chunk_rows=2))
    assert_error(exc, path, 3, "unknown kind 'nope'")


# ---------------------------------------------------------------------- real datasets
@pytest.mark.datasets
@pytest.mark.parametrize(
    ("folder", "ratings", "users", "items"),
    [("movielens-100k", 100_000, 943, 1_682), ("movielens-latest-small", 100_836, 610, 9_724)],
)
def test_movielens_documented_counts(folder, ratings, users, items):
    graph = read_movielens(shared_path(folder, folder))
    assert (len(graph), graph.n_users, graph.n_items) == (ratings, users, items)
    assert graph.has_timestamps and set(np.unique(graph.kind)) == {int(Kind.RATING)}


@pytest.mark.datasets
@pytest.mark.parametrize(
    ("name", "nodes", "rows", "pairs"),
    [
        ("ego-facebook", 4_039, 88_234, 88_234),
        ("wiki-vote", 7_115, 103_689, 103_689),
        ("college-msg", 1_899, 59_835, 20_296),
    ],
)
def test_snap_documented_counts(name, nodes, rows, pairs):
    graph = edge_list(name)
    assert (graph.n_users, len(graph), len(graph.dedupe())) == (nodes, rows, pairs)
