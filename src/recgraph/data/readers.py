"""Streaming parsers for the files recgraph imports, with bounded memory.

Each reader yields validated chunks (pandas DataFrames of at most
``chunk_rows`` rows) so an import never holds a whole file, and each malformed
row raises :class:`~recgraph.errors.InputError` naming the file, the 1-based
line (for Parquet, ``line`` is the 1-based data row) and the problem, before
anything of its chunk reaches the store.

Chunk layouts (the column names the store's writer takes):

- edges: ``src``, ``dst`` (external ids as text) and, with timestamps,
  ``ts`` (int64 unix seconds);
- interactions: ``user``, ``item``, ``kind`` (a :class:`Kind` label such as
  ``"rating"``), ``value`` (float64, NaN when the file has none) and
  ``timestamp`` (int64 unix seconds, 0 when the file has none);
- items: ``external_id``, ``title``, ``features`` (a dict).

The store-free helpers :func:`read_edge_list`, :func:`read_movielens` and
:func:`read_interactions` build an :class:`Interactions` directly, for
benchmarks and experiments that do not need a database.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.tables import table_format
from recgraph.errors import InputError

#: Rows per chunk: large enough for fast bulk writes, small enough for bounded memory.
DEFAULT_CHUNK_ROWS = 50_000

#: The kinds an interaction row may have (``follow`` lives in the follows table).
INTERACTION_KINDS = tuple(k.label for k in Kind if k is not Kind.FOLLOW)

#: Header names accepted for the columns of an edge list.
_SRC_NAMES = {"src", "source", "from"}
_DST_NAMES = {"dst", "target", "to"}
_TS_NAMES = {"timestamp", "ts", "time", "t", "created_at"}

#: Genre names of MovieLens 100k, used when ``u.genre`` is missing.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

_INTEGER = re.compile(r"[+-]?[0-9]+")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


# ---------------------------------------------------------------------- helpers
def _open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading bytes; ``.gz`` files are decompressed on the fly."""
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a directory, expected a file", path=path)
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _numbered_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line number, text)`` without the line end; CRLF and LF both work."""
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid {encoding} text (byte {exc.start + 1} of the line)",
                    path=path,
                    line=number,
                ) from None
            yield number, text.rstrip("\r\n")


def _csv_rows(
    path: Path, delimiter: str, encoding: str = "utf-8-sig"
) -> Iterator[tuple[int, list]]:
    """``(line number, fields)`` of a CSV/TSV file; quoted fields may hold delimiters."""
    with _open_binary(path) as handle:
        text = io.TextIOWrapper(handle, encoding=encoding, newline="")
        reader = csv.reader(text, delimiter=delimiter)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise InputError(
                    f"not valid {encoding.removesuffix('-sig')} text",
                    path=path,
                    line=reader.line_num + 1,
                ) from None
            except csv.Error as exc:
                raise InputError(f"cannot parse: {exc}", path=path, line=reader.line_num) from None
            yield reader.line_num, row


def _fields(count: int, adjective: str = "") -> str:
    """``"1 field"`` / ``"3 tab-separated fields"``: field counts for messages."""
    return f"{count} {adjective}field{'' if count == 1 else 's'}"


def _parse_int(text: str, what: str, path: Path, line: int) -> int:
    """An integer field; anything else (``1.5``, ``1e9``, empty) names the line."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise InputError(f"non-integer {what} {text!r}", path=path, line=line, field=what)
    return int(text)


def _parse_float(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"not a finite number: {text!r}", path=path, line=line, field=what)
    return value


def _parse_id(text: str, what: str, path: Path, line: int) -> str:
    text = text.strip()
    if not text:
        raise InputError(f"empty {what} id", path=path, line=line, field=what)
    return text


def _parse_kind(text: str, path: Path, line: int, field: str = "kind") -> str:
    label = text.strip().lower()
    if label not in INTERACTION_KINDS:
        raise InputError(
            f"unknown kind {text!r}; expected one of {', '.join(INTERACTION_KINDS)}",
            path=path,
            line=line,
            field=field,
        )
    return label


def _interaction_frame(
    users: list[str], items: list[str], kinds: list[str], values: list, stamps: list
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": pd.Series(users, dtype=object),
            "item": pd.Series(items, dtype=object),
            "kind": pd.Series(kinds, dtype=object),
            "value": np.asarray(values, dtype=np.float64),
            "timestamp": np.asarray(stamps, dtype=np.int64),
        }
    )


# ---------------------------------------------------------------------- edge lists
def iter_edge_chunks(
    path: str | Path, *, timestamps: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream a SNAP-style edge list as ``src, dst[, ts]`` chunks.

    Lines starting with ``#`` or ``%`` and blank lines are skipped; fields are
    separated by tabs or spaces (commas for ``.csv`` files); CRLF and ``.gz``
    work. An optional first line ``src dst [timestamp]`` names the columns
    (``source/target``, ``from/to`` and ``ts/time/created_at`` too). Parquet
    files need the columns ``src``, ``dst`` and, with ``timestamps``,
    ``timestamp``.

    Parameters
    ----------
    path
        The edge list.
    timestamps
        Whether a third column holds unix timestamps (as in CollegeMsg). A
        third column without ``timestamps`` is an error rather than silently
        dropped.
    chunk_rows
        Rows per yielded DataFrame.

    Raises
    ------
    InputError
        On a malformed line: wrong field count, empty id, non-integer timestamp.
    """
    path = Path(path)
    if _is_parquet(path):
        yield from _parquet_edge_chunks(path, timestamps, chunk_rows)
        return
    comma = path.name.lower().removesuffix(".gz").endswith(".csv")
    expected = 3 if timestamps else 2
    ts_field = 2
    first = True
    src: list[str] = []
    dst: list[str] = []
    ts: list[int] = []
    for line, text in _numbered_lines(path):
        stripped = text.strip()
        if not stripped or stripped[0] in "#%":
            continue
        if comma:
            fields = [f.strip().strip('"') for f in stripped.split(",")]
        else:
            fields = stripped.split()
        if first:
            first = False
            header = _edge_header(fields, timestamps, path, line)
            if header is not None:
                expected, ts_field = header
                continue
        if len(fields) != expected:
            raise InputError(
                _edge_field_count_problem(len(fields), timestamps), path=path, line=line
            )
        src.append(_parse_id(fields[0], "src", path, line))
        dst.append(_parse_id(fields[1], "dst", path, line))
        if timestamps:
            ts.append(_parse_int(fields[ts_field], "timestamp", path, line))
        if len(src) >= chunk_rows:
            yield _edge_frame(src, dst, ts if timestamps else None)
            src, dst, ts = [], [], []
    if src:
        yield _edge_frame(src, dst, ts if timestamps else None)


def _edge_header(fields: list[str], timestamps: bool, path: Path, line: int):
    """``(field count, timestamp position)`` when ``fields`` is a header line, else None."""
    names = [f.strip().lower() for f in fields]
    if len(names) < 2 or names[0] not in _SRC_NAMES or names[1] not in _DST_NAMES:
        return None
    ts_field = None
    for i, name in enumerate(names[2:], 2):
        if name in _TS_NAMES and ts_field is None:
            ts_field = i
        else:
            raise InputError(
                f"unexpected column {fields[i]!r} in the header; an edge list has "
                "src dst [timestamp]",
                path=path,
                line=line,
                field=fields[i],
            )
    if ts_field is not None and not timestamps:
        raise InputError(
            f"the header has a timestamp column {fields[ts_field]!r}; import with "
            "timestamps (--timestamps) or drop the column",
            path=path,
            line=line,
        )
    if ts_field is None and timestamps:
        raise InputError(
            "timestamps were asked for but the header has no timestamp column",
            path=path,
            line=line,
        )
    return len(names), (ts_field if ts_field is not None else 2)


def _edge_field_count_problem(count: int, timestamps: bool) -> str:
    if timestamps:
        return f"{_fields(count)}, expected 3 (src dst timestamp)"
    if count == 3:
        return (
            "3 fields, expected 2 (src dst); if the third column holds unix "
            "timestamps, import with timestamps (--timestamps)"
        )
    return f"{_fields(count)}, expected 2 (src dst)"


def _edge_frame(src: list[str], dst: list[str], ts: list[int] | None) -> pd.DataFrame:
    data = {"src": pd.Series(src, dtype=object), "dst": pd.Series(dst, dtype=object)}
    if ts is not None:
        data["ts"] = np.asarray(ts, dtype=np.int64)
    return pd.DataFrame(data)


# ---------------------------------------------------------------------- MovieLens
def movielens_layout(directory: str | Path) -> Literal["100k", "latest"]:
    """Which MovieLens layout a folder holds: ``100k`` (u.data) or ``latest`` (ratings.csv)."""
    directory = Path(directory)
    if not directory.exists():
        raise InputError("no such folder (expected a MovieLens folder)", path=directory)
    if not directory.is_dir():
        raise InputError("not a directory (expected a MovieLens folder)", path=directory)
    if (directory / "u.data").exists():
        return "100k"
    if (directory / "ratings.csv").exists():
        return "latest"
    raise InputError(
        "not a MovieLens folder: expected u.data + u.item (100k) or "
        "ratings.csv + movies.csv (latest-small)",
        path=directory,
    )


def iter_movielens_ratings(
    directory: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream the ratings of a MovieLens folder as interaction chunks (kind ``rating``)."""
    directory = Path(directory)
    if movielens_layout(directory) == "100k":
        yield from _ml100k_ratings(directory / "u.data", chunk_rows)
    else:
        yield from _latest_ratings(directory / "ratings.csv", chunk_rows)


def iter_movielens_items(
    directory: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream the movies of a MovieLens folder as ``external_id, title, features`` chunks.

    Features hold ``genres`` (a list of names) and, where known,
    ``release_date`` (ISO date, 100k) or ``year`` (from the title, latest-small)
    and ``imdb_url`` (100k).
    """
    directory = Path(directory)
    if movielens_layout(directory) == "100k":
        yield from _ml100k_items(directory, chunk_rows)
    else:
        yield from _latest_items(directory / "movies.csv", chunk_rows)


def _ml100k_ratings(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    for line, text in _numbered_lines(path, "latin-1"):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 4:
            raise InputError(
                f"{_fields(len(fields), 'tab-separated ')}, expected 4 (user item rating timestamp)",
                path=path,
                line=line,
            )
        users.append(_parse_id(fields[0], "user", path, line))
        items.append(_parse_id(fields[1], "item", path, line))
        values.append(_parse_float(fields[2], "rating", path, line))
        stamps.append(_parse_int(fields[3], "timestamp", path, line))
        if len(users) >= chunk_rows:
            yield _interaction_frame(users, items, ["rating"] * len(users), values, stamps)
            users, items, values, stamps = [], [], [], []
    if users:
        yield _interaction_frame(users, items, ["rating"] * len(users), values, stamps)


def _ml100k_genres(directory: Path) -> tuple[str, ...]:
    path = directory / "u.genre"
    if not path.exists():
        return ML100K_GENRES
    names: dict[int, str] = {}
    for line, text in _numbered_lines(path, "latin-1"):
        if not text.strip():
            continue
        fields = text.split("|")
        if len(fields) != 2:
            raise InputError(
                f"{_fields(len(fields))}, expected 2 (name|index)", path=path, line=line
            )
        names[_parse_int(fields[1], "index", path, line)] = fields[0].strip()
    if sorted(names) != list(range(len(names))):
        raise InputError("genre indices are not 0..n-1", path=path)
    return tuple(names[i] for i in range(len(names)))


def _ml100k_items(directory: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    path = directory / "u.item"
    genres = _ml100k_genres(directory)
    expected = 5 + len(genres)
    rows: list[dict] = []
    for line, text in _numbered_lines(path, "latin-1"):
        if not text.strip():
            continue
        fields = text.split("|")
        if len(fields) != expected:
            raise InputError(
                _fields(len(fields), "'|'-separated ") + f", expected {expected} "
                f"(id|title|release date|video release date|IMDb URL|{len(genres)} genre flags)",
                path=path,
                line=line,
            )
        movie_id = _parse_id(fields[0], "movie id", path, line)
        flags = fields[5:]
        for name, flag in zip(genres, flags, strict=True):
            if flag.strip() not in ("0", "1"):
                raise InputError(
                    f"genre flag {flag!r} is not 0 or 1", path=path, line=line, field=name
                )
        features: dict = {
            "genres": [
                name for name, flag in zip(genres, flags, strict=True) if flag.strip() == "1"
            ]
        }
        release = _ml100k_date(fields[2], path, line)
        if release:
            features["release_date"] = release
        if fields[4].strip():
            features["imdb_url"] = fields[4].strip()
        rows.append({"external_id": movie_id, "title": fields[1].strip(), "features": features})
        if len(rows) >= chunk_rows:
            yield pd.DataFrame(rows)
            rows = []
    if rows:
        yield pd.DataFrame(rows)


def _ml100k_date(text: str, path: Path, line: int) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%d-%b-%Y").date().isoformat()
    except ValueError:
        raise InputError(
            f"release date {text!r} is not like 01-Jan-1995", path=path, line=line
        ) from None


def _check_header(row: list[str], expected: list[str], path: Path, line: int) -> None:
    got = [c.strip() for c in row]
    if got != expected:
        raise InputError(
            f"header {','.join(got)!r}, expected {','.join(expected)!r}", path=path, line=line
        )


def _latest_ratings(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    rows = _csv_rows(path, ",")
    for line, row in rows:
        if line == 1:
            _check_header(row, ["userId", "movieId", "rating", "timestamp"], path, line)
            continue
        if not row:
            continue
        if len(row) != 4:
            raise InputError(
                f"{_fields(len(row))}, expected 4 (userId,movieId,rating,timestamp)",
                path=path,
                line=line,
            )
        users.append(_parse_id(row[0], "userId", path, line))
        items.append(_parse_id(row[1], "movieId", path, line))
        values.append(_parse_float(row[2], "rating", path, line))
        stamps.append(_parse_int(row[3], "timestamp", path, line))
        if len(users) >= chunk_rows:
            yield _interaction_frame(users, items, ["rating"] * len(users), values, stamps)
            users, items, values, stamps = [], [], [], []
    if users:
        yield _interaction_frame(users, items, ["rating"] * len(users), values, stamps)


def _latest_items(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[dict] = []
    for line, row in _csv_rows(path, ","):
        if line == 1:
            _check_header(row, ["movieId", "title", "genres"], path, line)
            continue
        if not row:
            continue
        if len(row) != 3:
            raise InputError(
                f"{_fields(len(row))}, expected 3 (movieId,title,genres); quote titles "
                "that contain commas",
                path=path,
                line=line,
            )
        movie_id = _parse_id(row[0], "movieId", path, line)
        title = row[1].strip()
        genres = [] if row[2].strip() == "(no genres listed)" else row[2].strip().split("|")
        features: dict = {"genres": [g for g in genres if g]}
        year = _YEAR_IN_TITLE.search(title)
        if year:
            features["year"] = int(year.group(1))
        rows.append({"external_id": movie_id, "title": title, "features": features})
        if len(rows) >= chunk_rows:
            yield pd.DataFrame(rows)
            rows = []
    if rows:
        yield pd.DataFrame(rows)


# ---------------------------------------------------------------------- generic tables
class ColumnMapping(BaseModel):
    """Which columns of a generic interactions table hold what.

    ``kind`` fixes one kind for every row; otherwise ``kind_column`` names the
    column holding it. Left as ``None``, ``kind_column``, ``value`` and
    ``timestamp`` use the columns named ``kind``, ``value`` and ``timestamp``
    when the file has them. Columns not mapped are ignored.
    """

    model_config = ConfigDict(extra="forbid")

    user: str = "user"
    item: str = "item"
    kind: str | None = None
    kind_column: str | None = None
    value: str | None = None
    timestamp: str | None = None

    def fixed_kind(self) -> str | None:
        """The validated fixed kind label, if one was given."""
        if self.kind is None:
            return None
        label = self.kind.strip().lower()
        if label not in INTERACTION_KINDS:
            raise InputError(
                f"unknown kind {self.kind!r}; expected one of {', '.join(INTERACTION_KINDS)}",
                field="kind",
            )
        return label


def _resolve_columns(
    mapping: ColumnMapping, header: list[str], path: Path
) -> dict[str, int | None]:
    """Positions of user/item/kind/value/timestamp in ``header`` (None: absent)."""
    position = {name: i for i, name in enumerate(header)}

    def find(name: str | None, role: str, required: bool) -> int | None:
        if name is None:
            return None
        if name not in position:
            if not required:
                return None
            raise InputError(
                f"no column {name!r} for the {role}; the header has {', '.join(header)}",
                path=path,
                line=1,
                field=name,
            )
        return position[name]

    fixed = mapping.fixed_kind()
    if fixed is not None and mapping.kind_column is not None:
        raise InputError("give either a fixed kind or a kind column, not both", path=path)
    columns = {
        "user": find(mapping.user, "user", True),
        "item": find(mapping.item, "item", True),
        "kind": find(mapping.kind_column, "kind", True)
        if mapping.kind_column is not None
        else (None if fixed is not None else find("kind", "kind", False)),
        "value": find(mapping.value, "value", True)
        if mapping.value is not None
        else find("value", "value", False),
        "timestamp": find(mapping.timestamp, "timestamp", True)
        if mapping.timestamp is not None
        else find("timestamp", "timestamp", False),
    }
    if fixed is None and columns["kind"] is None:
        raise InputError(
            "no kind: the file has no 'kind' column; give a fixed kind (--kind "
            f"{'|'.join(INTERACTION_KINDS)}) or name the column (--kind-column)",
            path=path,
            line=1,
        )
    return columns


def _is_parquet(path: Path) -> bool:
    try:
        return table_format(path) == "parquet"
    except InputError:
        return False


def iter_interaction_chunks(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Stream a generic CSV / TSV / Parquet interactions table as interaction chunks.

    The format comes from the extension (:func:`~recgraph.data.tables.table_format`);
    CSV/TSV files need a header line. An empty value or timestamp cell means
    "none" (value NaN, timestamp 0); an empty id is an error.

    Parameters
    ----------
    path
        The table.
    mapping
        Which columns hold what, e.g. ``ColumnMapping(user="userId",
        item="movieId", value="rating", timestamp="timestamp", kind="rating")``.
    chunk_rows
        Rows per yielded DataFrame.
    """
    path = Path(path)
    mapping = mapping or ColumnMapping()
    fmt = table_format(path)
    if fmt == "parquet":
        yield from _parquet_interaction_chunks(path, mapping, chunk_rows)
        return
    fixed = mapping.fixed_kind()
    rows = _csv_rows(path, "," if fmt == "csv" else "\t")
    columns: dict[str, int | None] | None = None
    width = 0
    users: list[str] = []
    items: list[str] = []
    kinds: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    for line, row in rows:
        if columns is None:
            header = [c.strip() for c in row]
            columns = _resolve_columns(mapping, header, path)
            width = len(header)
            names = {role: header[i] for role, i in columns.items() if i is not None}
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise InputError(
                f"{_fields(len(row))}, expected {width} as in the header", path=path, line=line
            )
        users.append(_parse_id(row[columns["user"]], names["user"], path, line))
        items.append(_parse_id(row[columns["item"]], names["item"], path, line))
        k = columns["kind"]
        kinds.append(fixed if k is None else _parse_kind(row[k], path, line, names["kind"]))
        v = columns["value"]
        cell = "" if v is None else row[v].strip()
        values.append(math.nan if not cell else _parse_float(cell, names["value"], path, line))
        t = columns["timestamp"]
        cell = "" if t is None else row[t].strip()
        stamps.append(0 if not cell else _parse_int(cell, names["timestamp"], path, line))
        if len(users) >= chunk_rows:
            yield _interaction_frame(users, items, kinds, values, stamps)
            users, items, kinds, values, stamps = [], [], [], [], []
    if columns is None:
        raise InputError("empty file: expected a header line", path=path, line=1)
    if users:
        yield _interaction_frame(users, items, kinds, values, stamps)


# ---------------------------------------------------------------------- exported tables
def _iter_text_columns(
    path: Path, columns: Sequence[str], required: Sequence[str], chunk_rows: int
) -> Iterator[tuple[list[int], dict[str, list[str | None]]]]:
    """``(line numbers, {column: texts})`` chunks of a CSV/TSV/Parquet table.

    Values are stripped text, None when empty or when the file lacks the
    (optional) column; columns not asked for are ignored.
    """
    fmt = table_format(path)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.exists():
            raise InputError("no such file", path=path)
        try:
            header = pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise InputError(f"not a Parquet file: {exc}", path=path) from None
        present = [c for c in columns if c in header]
        for name in required:
            if name not in header:
                raise InputError(
                    f"no column {name!r}; the file has {', '.join(header)}", path=path, field=name
                )
        for first, batch in _parquet_batches(path, present, chunk_rows):
            texts: dict[str, list[str | None]] = {c: [None] * batch.num_rows for c in columns}
            for name, column in zip(present, batch.columns, strict=True):
                values = column.cast(pa.string()).to_pylist()
                texts[name] = [None if v is None or not v.strip() else v.strip() for v in values]
            yield list(range(first, first + batch.num_rows)), texts
        return
    rows = _csv_rows(path, "," if fmt == "csv" else "\t")
    position: dict[str, int] | None = None
    width = 0
    lines: list[int] = []
    texts = {c: [] for c in columns}
    for line, row in rows:
        if position is None:
            header = [c.strip() for c in row]
            for name in required:
                if name not in header:
                    raise InputError(
                        f"no column {name!r}; the header has {', '.join(header)}",
                        path=path,
                        line=line,
                        field=name,
                    )
            position = {name: header.index(name) for name in columns if name in header}
            width = len(header)
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise InputError(
                f"{_fields(len(row))}, expected {width} as in the header", path=path, line=line
            )
        lines.append(line)
        for name in columns:
            cell = row[position[name]].strip() if name in position else ""
            texts[name].append(cell or None)
        if len(lines) >= chunk_rows:
            yield lines, texts
            lines, texts = [], {c: [] for c in columns}
    if position is None:
        raise InputError("empty file: expected a header line", path=path, line=1)
    if lines:
        yield lines, texts


def _optional_ints(values: list[str | None], lines: list[int], what: str, path: Path) -> list:
    return [
        None if v is None else _parse_int(v, what, path, n)
        for v, n in zip(values, lines, strict=True)
    ]


def _required_ids(values: list[str | None], lines: list[int], what: str, path: Path) -> list[str]:
    return [_parse_id(v or "", what, path, n) for v, n in zip(values, lines, strict=True)]


def iter_account_chunks(
    path: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream an accounts table (as ``recgraph export accounts`` writes it).

    Columns: ``external_id`` and optional ``handle`` and ``created_at``
    (unix seconds); others are ignored.
    """
    path = Path(path)
    for lines, texts in _iter_text_columns(
        path, ["external_id", "handle", "created_at"], ["external_id"], chunk_rows
    ):
        yield pd.DataFrame(
            {
                "external_id": _required_ids(texts["external_id"], lines, "external_id", path),
                "handle": pd.Series(texts["handle"], dtype=object),
                "created_at": pd.Series(
                    _optional_ints(texts["created_at"], lines, "created_at", path), dtype=object
                ),
            }
        )


def iter_item_chunks(
    path: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream an items table (as ``recgraph export items`` writes it).

    Columns: ``external_id`` and optional ``title``, ``author`` (an account
    id), ``created_at`` (unix seconds) and ``features`` (a JSON object).
    """
    path = Path(path)
    names = ["external_id", "title", "author", "created_at", "features"]
    for lines, texts in _iter_text_columns(path, names, ["external_id"], chunk_rows):
        features = []
        for text, line in zip(texts["features"], lines, strict=True):
            if text is None:
                features.append(None)
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"features are not JSON: {exc.msg}", path=path, line=line, field="features"
                ) from None
            if not isinstance(value, dict):
                raise InputError(
                    "features must be a JSON object", path=path, line=line, field="features"
                )
            features.append(value)
        yield pd.DataFrame(
            {
                "external_id": _required_ids(texts["external_id"], lines, "external_id", path),
                "title": pd.Series(texts["title"], dtype=object),
                "author": pd.Series(texts["author"], dtype=object),
                "created_at": pd.Series(
                    _optional_ints(texts["created_at"], lines, "created_at", path), dtype=object
                ),
                "features": pd.Series(features, dtype=object),
            }
        )


# ---------------------------------------------------------------------- Parquet
def _parquet_batches(path: Path, columns: list[str], chunk_rows: int):
    """``(first row number, DataFrame)`` batches of the given columns."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError("no such file", path=path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"not a Parquet file: {exc}", path=path) from None
    names = parquet.schema_arrow.names
    for name in columns:
        if name not in names:
            raise InputError(
                f"no column {name!r}; the file has {', '.join(names)}", path=path, field=name
            )
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        yield first, batch
        first += batch.num_rows


def _arrow_ids(column, name: str, path: Path, first: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        raise InputError(f"ids must be text or integers, got {column.type}", path=path, field=name)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    bad = pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_length(text), 0))
    bad = np.asarray(bad.fill_null(True))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + first
        raise InputError(f"empty {name} id", path=path, line=row, field=name)
    return np.asarray(text.to_pylist(), dtype=object)


def _arrow_ints(column, name: str, path: Path, first: int, empty: int | None) -> np.ndarray:
    """Integer seconds from an integer or timestamp column; nulls become ``empty``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        column = pc.cast(column.cast(pa.timestamp("s", tz=column.type.tz), safe=False), pa.int64())
    elif not pa.types.is_integer(column.type):
        raise InputError(
            f"timestamps must be integers (unix seconds) or timestamps, got {column.type}",
            path=path,
            field=name,
        )
    nulls = np.asarray(pc.is_null(column))
    if nulls.any():
        if empty is None:
            row = int(np.flatnonzero(nulls)[0]) + first
            raise InputError(f"empty {name}", path=path, line=row, field=name)
        column = column.fill_null(empty)
    return np.asarray(column, dtype=np.int64)


def _parquet_edge_chunks(path: Path, timestamps: bool, chunk_rows: int) -> Iterator[pd.DataFrame]:
    columns = ["src", "dst"] + (["timestamp"] if timestamps else [])
    for first, batch in _parquet_batches(path, columns, chunk_rows):
        src = _arrow_ids(batch.column(0), "src", path, first)
        dst = _arrow_ids(batch.column(1), "dst", path, first)
        ts = _arrow_ints(batch.column(2), "timestamp", path, first, None) if timestamps else None
        frame = pd.DataFrame({"src": src, "dst": dst})
        if ts is not None:
            frame["ts"] = ts
        yield frame


def _parquet_interaction_chunks(
    path: Path, mapping: ColumnMapping, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError("no such file", path=path)
    try:
        header = pq.ParquetFile(path).schema_arrow.names
    except Exception as exc:
        raise InputError(f"not a Parquet file: {exc}", path=path) from None
    positions = _resolve_columns(mapping, header, path)
    roles = [role for role, i in positions.items() if i is not None]
    names = [header[positions[role]] for role in roles]  # type: ignore[index]
    fixed = mapping.fixed_kind()
    for first, batch in _parquet_batches(path, names, chunk_rows):
        col = dict(zip(roles, batch.columns, strict=True))
        n = batch.num_rows
        users = _arrow_ids(col["user"], mapping.user, path, first)
        items = _arrow_ids(col["item"], mapping.item, path, first)
        if "kind" in col:
            labels = pc.utf8_lower(pc.utf8_trim_whitespace(col["kind"].cast(pa.string())))
            kinds = np.asarray(labels.to_pylist(), dtype=object)
            bad = ~np.isin(kinds.astype(str), INTERACTION_KINDS) | pd.isna(kinds)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                _parse_kind(str(kinds[row]), path, first + row, header[positions["kind"]])  # type: ignore[index]
        else:
            kinds = np.full(n, fixed, dtype=object)
        if "value" in col:
            value_column = col["value"]
            if not (
                pa.types.is_integer(value_column.type) or pa.types.is_floating(value_column.type)
            ):
                raise InputError(
                    f"values must be numbers, got {value_column.type}",
                    path=path,
                    field=header[positions["value"]],  # type: ignore[index]
                )
            values = np.asarray(
                value_column.cast(pa.float64()).fill_null(math.nan), dtype=np.float64
            )
            bad = np.isinf(values)
            if bad.any():
                row = int(np.flatnonzero(bad)[0]) + first
                raise InputError("not a finite number", path=path, line=row, field="value")
        else:
            values = np.full(n, math.nan)
        if "timestamp" in col:
            stamps = _arrow_ints(col["timestamp"], "timestamp", path, first, 0)
        else:
            stamps = np.zeros(n, dtype=np.int64)
        yield _interaction_frame(users, items, kinds, values, stamps)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- store-free reads
def read_edge_list(path: str | Path, directed: bool, timestamps: bool = False) -> Interactions:
    """Read a whole edge list into a one-sided :class:`Interactions`, no store needed.

    Every line becomes a row (a temporal list such as CollegeMsg keeps its
    repeated events; ``.dedupe()`` gives the static pairs). Account ids are
    numbered in order of first appearance.

    Parameters
    ----------
    path
        A SNAP-style edge list (see :func:`iter_edge_chunks`).
    directed
        Follows (True) or friendships (False; each pair once, both directions implied).
    timestamps
        Whether the third column holds unix timestamps.
    """
    src, dst, ts = [], [], []
    for chunk in iter_edge_chunks(path, timestamps=timestamps):
        src.append(chunk["src"].to_numpy(object))
        dst.append(chunk["dst"].to_numpy(object))
        if timestamps:
            ts.append(chunk["ts"].to_numpy(np.int64))
    cat = np.concatenate if src else (lambda _: np.zeros(0, dtype=object))
    return Interactions.from_arrays(
        cat(src),
        cat(dst),
        timestamp=(np.concatenate(ts) if ts else np.zeros(0, np.int64)) if timestamps else None,
        kind=Kind.FOLLOW,
        one_sided=True,
        directed=directed,
    )


def _interactions_from_chunks(chunks: Iterator[pd.DataFrame]) -> Interactions:
    frames = list(chunks)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = _interaction_frame([], [], [], [], [])
    stamps = frame["timestamp"].to_numpy(np.int64)
    codes = {label: int(Kind.parse(label)) for label in INTERACTION_KINDS}
    kinds = frame["kind"].map(codes).to_numpy(np.int8)
    values = frame["value"].to_numpy(np.float64)
    values = np.where(np.isnan(values), 1.0, values)
    return Interactions.from_arrays(
        frame["user"].to_numpy(object),
        frame["item"].to_numpy(object),
        value=values,
        timestamp=stamps if len(stamps) and stamps.any() else None,
        kind=kinds,
    )


def read_movielens(directory: str | Path) -> Interactions:
    """Read a MovieLens folder (100k or latest-small) into a users x items :class:`Interactions`.

    Ratings become ``Kind.RATING`` rows with value = rating and their unix
    timestamps; users and items are numbered in order of first appearance
    (so the items map holds rated movies only).
    """
    return _interactions_from_chunks(iter_movielens_ratings(directory))


def read_interactions(path: str | Path, mapping: ColumnMapping | None = None) -> Interactions:
    """Read a generic interactions table into a users x items :class:`Interactions`.

    Missing values become 1; timestamps are kept when any row has one (0 elsewhere).
    """
    return _interactions_from_chunks(iter_interaction_chunks(path, mapping))


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "INTERACTION_KINDS",
    "ColumnMapping",
    "iter_account_chunks",
    "iter_item_chunks",
    "iter_edge_chunks",
    "iter_interaction_chunks",
    "iter_movielens_items",
    "iter_movielens_ratings",
    "movielens_layout",
    "read_edge_list",
    "read_interactions",
    "read_movielens",
]
