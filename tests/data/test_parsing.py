"""The one reader path: every rule, for every reader, with the exact file:line:field.

Each case here was a defect of the readers before they shared one path (issue 11,
item 11): NUL bytes in ids, timestamps past 2**63, a BOM in the first id, a header
line read as an edge, ``.dat`` files without a way to say their format, errors
without lines for long fields and unbalanced quotes, and empty files treated
differently by each importer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recgraph.data.interactions import Interactions, ValueKind
from recgraph.data.parsing import TableSource, format_of, parse_sep, table_layout
from recgraph.data.readers import (
    ColumnMapping,
    iter_account_chunks,
    iter_edge_chunks,
    iter_interaction_chunks,
    iter_item_chunks,
    read_edge_list,
)
from recgraph.errors import InputError
from tests.data.conftest import write_text


def frame(chunks) -> pd.DataFrame:
    return pd.concat(list(chunks), ignore_index=True)


def error(call) -> str:
    with pytest.raises(InputError) as exc:
        call()
    return str(exc.value)


#: Every reader of user files, each given a path: the same rules apply to all.
READERS = {
    "edges": lambda p: frame(iter_edge_chunks(p)),
    "interactions": lambda p: frame(iter_interaction_chunks(p, ColumnMapping(kind="like"))),
    "accounts": lambda p: frame(iter_account_chunks(p)),
    "items": lambda p: frame(iter_item_chunks(p)),
    "evaluate": lambda p: Interactions.read_table(str(p), "follows"),
}
#: A header and a good row for each reader, and a row with a NUL byte in its first id.
GOOD = {
    "edges": ("", "1\t2\n", "3\x00\t4\n"),
    "interactions": ("user,item\n", "u,i\n", "u\x00,i\n"),
    "accounts": ("external_id,handle\n", "a,h\n", "b\x00,h\n"),
    "items": ("external_id,title\n", "x,t\n", "y\x00,t\n"),
    "evaluate": ("src,dst\n", "1,2\n", "3\x00,4\n"),
}


def suffix(reader: str) -> str:
    return ".txt" if reader == "edges" else ".csv"


# ---------------------------------------------------------------------- ids
@pytest.mark.parametrize("reader", READERS)
def test_nul_byte_in_an_id_is_refused_with_its_line(tmp_path: Path, reader: str):
    header, good, bad = GOOD[reader]
    path = write_text(tmp_path / f"f{suffix(reader)}", header + good + good + bad)
    text = error(lambda: READERS[reader](path))
    line = 3 if reader == "edges" else 4
    assert f"{path}, line {line}" in text and "NUL byte" in text


def test_line_breaks_and_tabs_in_ids_are_refused(tmp_path: Path):
    path = write_text(tmp_path / "f.csv", 'user,item\nu,i\n"u\nv",i\n')
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(kind="like"))))
    assert "line 3" in text and "control character" in text and "'user'" in text


@pytest.mark.parametrize("reader", READERS)
def test_a_byte_order_mark_is_never_part_of_the_first_id(tmp_path: Path, reader: str):
    header, good, _ = GOOD[reader]
    path = tmp_path / f"bom{suffix(reader)}"
    path.write_bytes(b"\xef\xbb\xbf" + (header + good).encode())
    read = READERS[reader](path)
    first = read.users.ids[0] if isinstance(read, Interactions) else read.iloc[0, 0]
    assert first == good.split("\t" if reader == "edges" else ",")[0]
    assert "\ufeff" not in first


# ---------------------------------------------------------------------- times
@pytest.mark.parametrize(
    ("value", "hint"),
    [("9223372036854775808", ""), ("-99999999999999999999", ""), ("1600000000000", "millis")],
)
def test_timestamps_out_of_range_are_refused_with_their_line(tmp_path, value, hint):
    edges = write_text(tmp_path / "e.txt", f"1 2 5\n1 3 {value}\n")
    text = error(lambda: frame(iter_edge_chunks(edges, timestamps=True)))
    assert f"{edges}, line 2, field 'timestamp'" in text and "out of range" in text
    assert hint in text
    table = write_text(tmp_path / "i.csv", f"user,item,kind,timestamp\nu,i,like,{value}\n")
    text = error(lambda: frame(iter_interaction_chunks(table)))
    assert "line 2" in text and "out of range" in text
    accounts = write_text(tmp_path / "a.csv", f"external_id,created_at\na,{value}\n")
    assert "line 2" in error(lambda: frame(iter_account_chunks(accounts)))


def test_parquet_timestamps_past_2_63_are_refused(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "e.parquet"
    table = pa.table(
        {"src": ["a", "b"], "dst": ["c", "d"], "timestamp": pa.array([5, 2**63 + 7], pa.uint64())}
    )
    pq.write_table(table, path)
    text = error(lambda: frame(iter_edge_chunks(path, timestamps=True)))
    assert "line 2" in text and "out of range" in text


# ---------------------------------------------------------------------- headers of edge lists
def test_a_non_numeric_first_line_above_numeric_ids_is_a_header_with_a_note(tmp_path: Path):
    path = write_text(tmp_path / "friends.txt", "userID\tfriendID\n1\t2\n3\t4\n")
    notes: list[str] = []
    edges = frame(iter_edge_chunks(path, notes=notes))
    assert edges.values.tolist() == [["1", "2"], ["3", "4"]]
    assert len(notes) == 1 and "line 1" in notes[0] and "--no-header" in notes[0]
    # said explicitly, the line is an edge
    edges = frame(iter_edge_chunks(path, header=False))
    assert edges.values.tolist()[0] == ["userID", "friendID"]


def test_repeated_header_lines_are_skipped_and_counted(tmp_path: Path):
    text = "userID friendID\n1 2\nuserID friendID\n3 4\n"
    path = write_text(tmp_path / "joined.txt", text)
    notes: list[str] = []
    graph = read_edge_list(path, directed=False, notes=notes)
    assert sorted(graph.users.ids) == ["1", "2", "3", "4"]
    assert any("1 more copy" in n and "line 3" in n for n in notes)


def test_header_option_skips_any_first_line_and_ids_that_are_words_stay_edges(tmp_path: Path):
    words = write_text(tmp_path / "w.txt", "alice bob\ncarol dave\n")
    notes: list[str] = []
    assert len(frame(iter_edge_chunks(words, notes=notes))) == 2 and not notes
    assert frame(iter_edge_chunks(words, header=True)).values.tolist() == [["carol", "dave"]]


# ---------------------------------------------------------------------- formats
def test_files_named_dat_are_read_with_format_or_sep(tmp_path: Path):
    table = write_text(tmp_path / "plays.dat", "user\titem\tplays\nu\ti\t3\n")
    mapping = ColumnMapping(kind="view", value="plays", value_kind="count")
    text = error(lambda: frame(iter_interaction_chunks(table, mapping)))
    assert "--format csv|tsv|parquet" in text
    read = frame(iter_interaction_chunks(table, mapping, format="tsv"))
    assert read[["user", "item", "value", "value_kind"]].values.tolist() == [
        ["u", "i", 3.0, "count"]
    ]
    semicolons = write_text(tmp_path / "r.data", "user;item\nu;i\n")
    graph = Interactions.read_table(str(semicolons), "items", sep=";")
    assert graph.users.ids.tolist() == ["u"]
    edges = write_text(tmp_path / "g.edges", "1,2\n")
    assert frame(iter_edge_chunks(edges, sep="comma")).values.tolist() == [["1", "2"]]
    assert frame(iter_edge_chunks(write_text(tmp_path / "g.dat", "1 2\n"))).shape == (1, 2)


def test_layout_options_are_checked():
    assert parse_sep("tab") == "\t" and parse_sep(";") == ";"
    with pytest.raises(InputError, match="one character"):
        parse_sep("::")
    with pytest.raises(InputError, match="--format"):
        table_layout("x.csv", format="xlsx")
    assert format_of("x.TSV.gz") == "tsv" and format_of("x.dat") is None


# ---------------------------------------------------------------------- where errors are
def test_a_50_mb_field_is_reported_at_its_line(tmp_path: Path):
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("user,item\n" + "u,i\n" * 5 + "u," + "x" * (50 << 20) + "\nu,i\n")
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(kind="like"))))
    assert f"{path}, line 7" in text and "52,428,800 characters" in text


def test_a_long_id_is_reported_at_its_line(tmp_path: Path):
    path = write_text(tmp_path / "long.csv", "user,item\nu,i\nu," + "x" * 300 + "\n")
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(kind="like"))))
    assert "line 3, field 'item'" in text and "longer than 255" in text


def test_an_unbalanced_quote_is_reported_where_it_opens(tmp_path: Path):
    lines = ["user,item"] + [f"u{i},i" for i in range(2, 120)]
    lines[51] = 'u52,"i'  # line 52
    path = write_text(tmp_path / "q.csv", "\n".join(lines) + "\n")
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(kind="like"))))
    assert f"{path}, line 52" in text and "unbalanced quote" in text


def test_lines_count_blank_lines_comments_and_fields_that_span_lines(tmp_path: Path):
    path = write_text(tmp_path / "g.txt", "# c\n\n1 2\n% c\n  3\t\t4 \r\n\n5 x 7\n")
    assert "line 7: 3 fields, expected 2" in error(lambda: frame(iter_edge_chunks(path)))
    items = write_text(tmp_path / "i.csv", 'external_id,title\na,"two\nlines"\n\nb,t,x\n')
    assert "line 5: 3 fields, expected 2 as in the header" in error(
        lambda: frame(iter_item_chunks(items))
    )
    ok = frame(iter_item_chunks(write_text(tmp_path / "j.csv", 'external_id,title\na,"x\ny"\n')))
    assert ok["title"].tolist() == ["x\ny"]


def test_short_rows_are_refused_not_padded(tmp_path: Path):
    path = write_text(tmp_path / "s.csv", "user,item,kind,value\nu,i,like,1\nu,i,like\n")
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(value_kind="weight"))))
    assert "line 3: 3 fields, expected 4 as in the header" in text


# ---------------------------------------------------------------------- empty files
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"])
def test_empty_files_are_one_error_for_every_reader(tmp_path: Path, reader: str, content: str):
    if content.startswith("#") and reader != "edges":
        content = ""  # comments are an edge-list thing
    path = write_text(tmp_path / f"empty{suffix(reader)}", content)
    text = error(lambda: READERS[reader](path))
    assert text == f"{path}: no data rows: the file is empty"


@pytest.mark.parametrize("reader", [r for r in READERS if r != "edges"])
def test_a_header_without_rows_is_the_same_error(tmp_path: Path, reader: str):
    path = write_text(tmp_path / "h.csv", GOOD[reader][0])
    assert error(lambda: READERS[reader](path)) == f"{path}: no data rows after the header line"


# ---------------------------------------------------------------------- value meanings
def test_values_must_say_what_they_mean(tmp_path: Path):
    path = write_text(tmp_path / "p.csv", "user,item,kind,value\nu,i,view,12\nu,j,rating,4\n")
    text = error(lambda: frame(iter_interaction_chunks(path)))
    assert "line 2, field 'value'" in text and "--value" in text
    read = frame(iter_interaction_chunks(path, ColumnMapping(value_kind="count")))
    assert read["value_kind"].tolist() == ["count", "count"]
    ratings = write_text(tmp_path / "r.csv", "user,item,kind,value\nu,i,rating,4\n")
    assert frame(iter_interaction_chunks(ratings))["value_kind"].tolist() == ["rating"]
    none = frame(iter_interaction_chunks(path, ColumnMapping(value_kind="none")))
    assert none["value"].isna().all() and set(none["value_kind"]) == {"none"}


def test_evaluate_files_carry_value_meanings(tmp_path: Path):
    both = write_text(tmp_path / "t.csv", "user,item,value,value_kind\nu,i,3,count\nu,j,1,none\n")
    graph = Interactions.read_table(str(both), "items")
    assert graph.value_kind.tolist() == [ValueKind.COUNT, ValueKind.NONE]
    bare = write_text(tmp_path / "b.csv", "user,item,value\nu,i,3\n")
    assert "--value" in error(lambda: Interactions.read_table(str(bare), "items"))
    graph = Interactions.read_table(str(bare), "items", value_kind="count")
    assert graph.value_kind.tolist() == [ValueKind.COUNT] and graph.value.tolist() == [3.0]
    stars = write_text(tmp_path / "s.csv", "user,item,rating\nu,i,4\n")
    assert Interactions.read_table(str(stars), "items").value_kind.tolist() == [ValueKind.RATING]


def test_the_source_names_lines_for_parquet_rows(tmp_path: Path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"user": ["a", "b"], "item": ["x", ""]}).to_parquet(path)
    source = TableSource(path, table_layout(path))
    assert source.columns == ["user", "item"] and source.record(1) == (2, None)
    text = error(lambda: frame(iter_interaction_chunks(path, ColumnMapping(kind="like"))))
    assert "line 2, field 'item': empty item id" in text
