"""The files recgraph imports, as validated chunks with bounded memory.

Every reader here parses through :mod:`recgraph.data.parsing` (Arrow does the
parsing; the rules and their messages live there, once) and yields pandas
DataFrames of at most ``chunk_rows`` rows, so an import never holds a whole
file, and a malformed row raises :class:`~recgraph.errors.InputError` naming
the file, the 1-based line (for Parquet, the 1-based data row) and the field,
before anything of its chunk reaches the store.

Chunk layouts (the column names the store's writer takes):

- edges: ``src``, ``dst`` (external ids as text) and, with timestamps,
  ``ts`` (int64 unix seconds);
- interactions: ``user``, ``item``, ``kind`` (a :class:`Kind` label such as
  ``"rating"``), ``value`` (float64, NaN when the file has none),
  ``value_kind`` (a :class:`ValueKind` label: what the value means) and
  ``timestamp`` (int64 unix seconds, 0 when the file has none);
- items: ``external_id``, ``title``, ``features`` (a dict).

Edge lists and their first line. A first line naming the columns
(``src dst [timestamp]``, also ``source/target``, ``from/to``) is a header.
So is, by default, a first line whose two ids are not numbers when the ids
after it are: a public list starting ``userID<TAB>friendID`` is not read as an
edge between accounts ``userID`` and ``friendID``; the import says in a note
that it skipped that line, and copies of the same line further down (files
joined with ``cat``) are skipped and counted too. ``header=False``
(``--no-header``) reads every line as an edge; ``header=True``
(``--header``) always skips the first line.

MovieLens folders are read by :mod:`recgraph.data.movielens`.

The store-free helpers :func:`read_edge_list` and :func:`read_interactions`
(and :func:`recgraph.data.movielens.read_movielens`) build an
:class:`Interactions` directly, for ``recgraph split``/``evaluate``,
benchmarks and experiments that need no database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from recgraph.data.chunks import (
    DEFAULT_CHUNK_ROWS,
    INTERACTION_KINDS,
    VALUE_KINDS,
    field_count,
    interaction_frame,
    interactions_from_chunks,
)
from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.parsing import (
    TableSource,
    fixed_label,
    ids,
    json_objects,
    labels,
    numbers,
    optional_text,
    table_layout,
    timestamps,
)
from recgraph.errors import InputError

#: Header names accepted for the columns of an edge list.
_SRC_NAMES = {"src", "source", "from"}
_DST_NAMES = {"dst", "target", "to"}
_TS_NAMES = {"timestamp", "ts", "time", "t", "created_at"}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")

Notes = list[str]


# ---------------------------------------------------------------------- edge lists
def iter_edge_chunks(
    path: str | Path,
    *,
    timestamps: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
    header: bool | None = None,
    notes: Notes | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream a SNAP-style edge list as ``src, dst[, ts]`` chunks.

    Blank lines and lines starting with ``#`` or ``%`` are skipped; fields are
    separated by runs of spaces or tabs (commas for ``.csv``; ``sep`` says
    otherwise); CRLF, a BOM and ``.gz`` work; the first line may be a header
    (module docstring). Parquet files need the columns ``src``, ``dst`` and,
    with ``timestamps``, ``timestamp``.

    Parameters
    ----------
    path
        The edge list.
    timestamps
        Whether a third column holds unix timestamps (as in CollegeMsg). A
        third column without ``timestamps`` is an error rather than silently dropped.
    chunk_rows
        Rows per yielded DataFrame.
    format, sep
        ``csv``/``tsv``/``parquet`` and the field separator, when the file
        name does not tell (``.dat``, ``.edges``).
    header
        None: detect (module docstring); True: skip the first line; False: it is an edge.
    notes
        Receives a sentence for each thing read in a way the user should know
        (a skipped header line).

    Raises
    ------
    InputError
        On a malformed line: wrong field count, bad id, timestamp that is not
        whole unix seconds in range.
    """
    path = Path(path)
    layout = table_layout(path, format, sep, header=False, edge_list=True)
    if layout.format == "parquet":
        source = TableSource(path, layout)
        columns = ["src", "dst"] + (["timestamp"] if timestamps else [])
        for chunk in source.chunks(chunk_rows, columns):
            yield _edge_frame(chunk.columns, source, chunk.first_row, timestamps)
        return
    names = ["src", "dst"] + (["timestamp"] if timestamps else [])
    source = TableSource(
        path, layout, names, count_problem=lambda n: _edge_field_count_problem(n, timestamps)
    )
    header_fields = _edge_header(source, timestamps, header, notes)
    repeated: list[int] = []
    for chunk in source.chunks(chunk_rows):
        rows: int | np.ndarray = chunk.first_row
        columns = chunk.columns
        if header_fields is not None:
            columns, rows = _drop_header_copies(columns, header_fields, chunk.first_row, repeated)
            if not len(columns["src"]):
                continue
        yield _edge_frame(columns, source, rows, timestamps)
    if repeated and notes is not None:
        line = source.record(repeated[0])[0]
        notes.append(
            f"{path}: skipped {len(repeated):,} more cop{'y' if len(repeated) == 1 else 'ies'} "
            f"of the header line, the first on line {line}"
        )


def _edge_frame(columns: dict, source: TableSource, rows, with_ts: bool) -> pd.DataFrame:
    data = {"src": ids(columns["src"], "src", source, rows, arrow=True)}
    data["dst"] = ids(columns["dst"], "dst", source, rows, arrow=True)
    if with_ts:
        data["ts"] = timestamps(columns["timestamp"], "timestamp", source, rows)
    return pd.DataFrame(data)


def _drop_header_copies(columns: dict, header: list[str], first: int, repeated: list[int]):
    """Rows equal to the header line removed; row numbers of the rest kept for errors."""
    import pyarrow.compute as pc

    same = None
    for name, text in zip(("src", "dst", "timestamp"), header, strict=False):
        if name in columns:
            equal = pc.equal(pc.utf8_trim_whitespace(columns[name]), text)
            same = equal if same is None else pc.and_(same, equal)
    mask = np.asarray(same)
    if not mask.any():
        return columns, first
    repeated.extend((first + np.flatnonzero(mask)).tolist())
    keep = np.flatnonzero(~mask)
    return {k: v.take(keep) for k, v in columns.items()}, first + keep


def _edge_header(
    source: TableSource, timestamps: bool, header: bool | None, notes: Notes | None
) -> list[str] | None:
    """Decide whether the first record is a header; skip it if so. Its fields, or None."""
    if header is False:
        return None
    records = source.first_records(101)
    if not records:
        return None
    line, fields = records[0]
    fields = [f.strip() for f in fields]
    if _named_edge_header(fields, timestamps, source.path, line) or header:
        source.skip_header_record(line)
        return fields
    rest = [r for _, r in records[1:] if [f.strip() for f in r] != fields]
    numeric = [bool(_INTEGER.fullmatch(f)) for f in fields[:2]]
    if (
        len(fields) >= 2
        and rest
        and not any(numeric)
        and all(len(r) >= 2 and _INTEGER.fullmatch(r[0].strip()) for r in rest)
        and all(_INTEGER.fullmatch(r[1].strip()) for r in rest)
    ):
        source.skip_header_record(line)
        if notes is not None:
            notes.append(
                f"{source.path}: line {line} ({' '.join(fields)!r}) is not numeric like the "
                "ids after it, so it was read as a header and skipped; say --no-header to "
                "import it as an edge"
            )
        return fields
    return None


def _named_edge_header(fields: list[str], timestamps: bool, path: Path, line: int) -> bool:
    """Whether ``fields`` name the columns (``src dst [timestamp]``); checks what they name."""
    names = [f.lower() for f in fields]
    if len(names) < 2 or names[0] not in _SRC_NAMES or names[1] not in _DST_NAMES:
        return False
    for i, name in enumerate(names[2:], 2):
        if name not in _TS_NAMES or i > 2:
            raise InputError(
                f"unexpected column {fields[i]!r} in the header; an edge list has "
                "src dst [timestamp]",
                path=path,
                line=line,
                field=fields[i],
            )
    if len(names) == 3 and not timestamps:
        raise InputError(
            f"the header has a timestamp column {fields[2]!r}; import with "
            "timestamps (--timestamps) or drop the column",
            path=path,
            line=line,
        )
    if len(names) == 2 and timestamps:
        raise InputError(
            "timestamps were asked for but the header has no timestamp column",
            path=path,
            line=line,
        )
    return True


def _edge_field_count_problem(count: int, timestamps: bool) -> str:
    if timestamps:
        return f"{field_count(count)}, expected 3 (src dst timestamp)"
    if count == 3:
        return (
            "3 fields, expected 2 (src dst); if the third column holds unix "
            "timestamps, import with timestamps (--timestamps)"
        )
    return f"{field_count(count)}, expected 2 (src dst)"


# ---------------------------------------------------------------------- generic tables
class ColumnMapping(BaseModel):
    """Which columns of a generic interactions table hold what, and what values mean.

    ``kind`` fixes one kind for every row; otherwise ``kind_column`` names the
    column holding it. Left as ``None``, ``kind_column``, ``value`` and
    ``timestamp`` use the columns named ``kind``, ``value`` and ``timestamp``
    when the file has them. Columns not mapped are ignored.

    ``value_kind`` says what the value column means for every row (``rating``,
    ``count``, ``weight`` or ``none``, see :class:`ValueKind`). Left as None,
    a ``value_kind`` column (as ``recgraph export interactions`` writes)
    gives it per row; otherwise rating rows are ratings and other rows must
    have no value, since a number of plays read as a rating (or the reverse)
    trains a useless model.
    """

    model_config = ConfigDict(extra="forbid")

    user: str = "user"
    item: str = "item"
    kind: str | None = None
    kind_column: str | None = None
    value: str | None = None
    timestamp: str | None = None
    value_kind: str | None = None

    def fixed_kind(self) -> str | None:
        """The validated fixed kind label, if one was given."""
        return fixed_label(self.kind, INTERACTION_KINDS, "kind")

    def fixed_value_kind(self) -> str | None:
        """The validated value meaning, if one was given."""
        return fixed_label(self.value_kind, VALUE_KINDS, "value meaning (--value)")


def _resolve_columns(mapping: ColumnMapping, source: TableSource) -> dict[str, str | None]:
    """The column holding each role (user, item, kind, value, value_kind, timestamp)."""
    header = source.columns

    def find(name: str | None, role: str, default: str) -> str | None:
        if name is None:
            return default if default in header else None
        if name not in header:
            raise InputError(
                f"no column {name!r} for the {role}; the header has {', '.join(header)}",
                path=source.path,
                line=1 if source.layout.format != "parquet" else None,
                field=name,
            )
        return name

    fixed = mapping.fixed_kind()
    if fixed is not None and mapping.kind_column is not None:
        raise InputError("give either a fixed kind or a kind column, not both", path=source.path)
    columns = {
        "user": find(mapping.user, "user", mapping.user),
        "item": find(mapping.item, "item", mapping.item),
        "kind": None if fixed is not None else find(mapping.kind_column, "kind", "kind"),
        "value": find(mapping.value, "value", "value"),
        "value_kind": find(None, "value_kind", "value_kind"),
        "timestamp": find(mapping.timestamp, "timestamp", "timestamp"),
    }
    if fixed is None and columns["kind"] is None:
        raise InputError(
            "no kind: the file has no 'kind' column; give a fixed kind (--kind "
            f"{'|'.join(INTERACTION_KINDS)}) or name the column (--kind-column)",
            path=source.path,
            line=1 if source.layout.format != "parquet" else None,
        )
    meaning = mapping.fixed_value_kind()
    if meaning is not None:
        columns["value_kind"] = None
        if meaning == "none":
            columns["value"] = None
        elif columns["value"] is None:
            raise InputError(
                f"--value {meaning} needs a value column: the file has no 'value' column; "
                "name it with --value-column",
                path=source.path,
                field="value",
            )
    return columns


def iter_interaction_chunks(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream a generic CSV / TSV / Parquet interactions table as interaction chunks.

    The format comes from ``format``/``sep`` or the extension; text files
    need a header line. An empty value or timestamp cell means "none" (value
    NaN, timestamp 0); an empty id is an error.

    Parameters
    ----------
    path
        The table.
    mapping
        Which columns hold what and what values mean, e.g.
        ``ColumnMapping(user="userId", item="movieId", value="rating",
        kind="rating", value_kind="rating")``.
    chunk_rows
        Rows per yielded DataFrame.
    format, sep
        ``csv``/``tsv``/``parquet`` and the separator, when the name does not tell.
    """
    mapping = mapping or ColumnMapping()
    source = TableSource(path, table_layout(path, format, sep))
    roles = _resolve_columns(mapping, source)
    wanted = list(dict.fromkeys(c for c in roles.values() if c is not None))
    fixed = mapping.fixed_kind()
    meaning = mapping.fixed_value_kind()
    for chunk in source.chunks(chunk_rows, wanted):
        c, rows, n = chunk.columns, chunk.first_row, chunk.num_rows
        kinds = (
            np.full(n, fixed, dtype=object)
            if fixed is not None
            else labels(c[roles["kind"]], roles["kind"], source, rows, INTERACTION_KINDS)
        )
        value_column = roles["value"]
        values = (
            numbers(c[value_column], value_column, source, rows)
            if value_column is not None
            else np.full(n, np.nan)
        )
        if meaning is not None:
            value_kinds = np.full(n, meaning, dtype=object)
        elif roles["value_kind"] is not None:
            value_kinds = labels(c["value_kind"], "value_kind", source, rows, VALUE_KINDS)
        else:
            value_kinds = np.where(kinds == "rating", "rating", "none").astype(object)
            unexplained = (kinds != "rating") & ~np.isnan(values)
            if unexplained.any():
                row = int(np.flatnonzero(unexplained)[0])
                raise source.error(
                    f"a {kinds[row]} row with a value: say what the values of column "
                    f"{value_column!r} mean (--value {'|'.join(VALUE_KINDS)})",
                    rows + row,
                    value_column,
                )
        stamps = (
            timestamps(c[roles["timestamp"]], roles["timestamp"], source, rows, empty=0)
            if roles["timestamp"] is not None
            else np.zeros(n, np.int64)
        )
        yield interaction_frame(
            ids(c[roles["user"]], roles["user"], source, rows),
            ids(c[roles["item"]], roles["item"], source, rows),
            kinds,
            values,
            value_kinds,
            stamps,
        )


# ---------------------------------------------------------------------- exported tables
def iter_account_chunks(
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream an accounts table (as ``recgraph export accounts`` writes it).

    Columns: ``external_id`` and optional ``handle`` and ``created_at``
    (unix seconds); others are ignored.
    """
    source = TableSource(path, table_layout(path, format, sep))
    source.require(["external_id"])
    present = [c for c in ("external_id", "handle", "created_at") if c in source.columns]
    for chunk in source.chunks(chunk_rows, present):
        c, rows, n = chunk.columns, chunk.first_row, chunk.num_rows
        created = (
            timestamps(c["created_at"], "created_at", source, rows, empty="none")
            if "created_at" in c
            else [None] * n
        )
        yield pd.DataFrame(
            {
                "external_id": ids(c["external_id"], "external_id", source, rows),
                "handle": optional_text(c["handle"]) if "handle" in c else [None] * n,
                "created_at": pd.Series(created, dtype=object),
            }
        )


def iter_item_chunks(
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream an items table (as ``recgraph export items`` writes it).

    Columns: ``external_id`` and optional ``title``, ``author`` (an account
    id), ``created_at`` (unix seconds) and ``features`` (a JSON object).
    """
    source = TableSource(path, table_layout(path, format, sep))
    source.require(["external_id"])
    names = ["external_id", "title", "author", "created_at", "features"]
    present = [c for c in names if c in source.columns]
    for chunk in source.chunks(chunk_rows, present):
        c, rows, n = chunk.columns, chunk.first_row, chunk.num_rows
        authors = [None] * n
        if "author" in c:
            text = optional_text(c["author"])
            given = np.flatnonzero(pd.notna(text))
            if len(given):
                checked = ids(c["author"].take(given), "author", source, rows + given)
                for position, author in zip(given, checked, strict=True):
                    authors[position] = author
        yield pd.DataFrame(
            {
                "external_id": ids(c["external_id"], "external_id", source, rows),
                "title": optional_text(c["title"]) if "title" in c else [None] * n,
                "author": pd.Series(authors, dtype=object),
                "created_at": pd.Series(
                    timestamps(c["created_at"], "created_at", source, rows, empty="none")
                    if "created_at" in c
                    else [None] * n,
                    dtype=object,
                ),
                "features": pd.Series(
                    json_objects(c["features"], "features", source, rows)
                    if "features" in c
                    else [None] * n,
                    dtype=object,
                ),
            }
        )


# ---------------------------------------------------------------------- store-free reads
def read_edge_list(
    path: str | Path,
    directed: bool,
    timestamps: bool = False,
    *,
    format: str | None = None,
    sep: str | None = None,
    header: bool | None = None,
    notes: Notes | None = None,
) -> Interactions:
    """Read a whole edge list into a one-sided :class:`Interactions`, no store needed.

    Every line becomes a row (a temporal list such as CollegeMsg keeps its
    repeated events; ``.dedupe()`` gives the static pairs). Account ids are
    numbered in order of first appearance. Arguments as :func:`iter_edge_chunks`;
    ``directed=False`` reads friendships (each pair once, both directions implied).
    """
    src, dst, ts = [], [], []
    for chunk in iter_edge_chunks(
        path, timestamps=timestamps, format=format, sep=sep, header=header, notes=notes
    ):
        src.append(chunk["src"].to_numpy(object))
        dst.append(chunk["dst"].to_numpy(object))
        if timestamps:
            ts.append(chunk["ts"].to_numpy(np.int64))
    return Interactions.from_arrays(
        np.concatenate(src),
        np.concatenate(dst),
        timestamp=np.concatenate(ts) if timestamps else None,
        kind=Kind.FOLLOW,
        value_kind=ValueKind.NONE,
        one_sided=True,
        directed=directed,
    )


def read_interactions(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    format: str | None = None,
    sep: str | None = None,
) -> Interactions:
    """Read a generic interactions table into a users x items :class:`Interactions`.

    Missing values become 1; timestamps are kept when any row has one (0 elsewhere).
    """
    return interactions_from_chunks(iter_interaction_chunks(path, mapping, format=format, sep=sep))


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "INTERACTION_KINDS",
    "VALUE_KINDS",
    "ColumnMapping",
    "iter_account_chunks",
    "iter_edge_chunks",
    "iter_interaction_chunks",
    "iter_item_chunks",
    "read_edge_list",
    "read_interactions",
]
