"""Export what the store holds to CSV, TSV or Parquet, with external ids, in chunks.

The files are made to be read back:

- ``follows``: ``src, dst[, timestamp]`` (active edges; ``timestamp`` is
  ``created_at`` and present only when every edge has one), which both
  ``recgraph import edges`` and ``recgraph evaluate --kind follows|friends``
  read;
- ``events``: ``src, dst, timestamp``, one row per edge event, repeats
  included: ``recgraph import edges --timestamps`` rebuilds both the follows
  and the events from it;
- ``interactions``: ``user, item, kind, value, value_kind, timestamp``
  (empty value: none; empty timestamp: no time; ``value_kind`` what each
  value means), which ``recgraph import interactions`` reads with its
  default mapping, value meanings included;
- ``accounts``: ``external_id, handle, created_at, updated_at``;
- ``items``: ``external_id, title, author, created_at, features`` (JSON).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recgraph.data.store import TABLE_NAMES, Store, TableName
from recgraph.data.tables import TableWriter
from recgraph.errors import InputError
from recgraph.progress import progress_bar

#: Rows per chunk read from the database and written to the file.
EXPORT_CHUNK_ROWS = 50_000


def _columns(what: str, timed: bool) -> list[tuple[str, str]]:
    """``(name, type)`` of the exported columns; types: str, int, float."""
    if what == "follows":
        return [("src", "str"), ("dst", "str")] + ([("timestamp", "int")] if timed else [])
    if what == "events":
        return [("src", "str"), ("dst", "str"), ("timestamp", "int")]
    if what == "interactions":
        return [
            ("user", "str"),
            ("item", "str"),
            ("kind", "str"),
            ("value", "float"),
            ("value_kind", "str"),
            ("timestamp", "int"),
        ]
    if what == "accounts":
        return [
            ("external_id", "str"),
            ("handle", "str"),
            ("created_at", "int"),
            ("updated_at", "int"),
        ]
    if what == "items":
        return [
            ("external_id", "str"),
            ("title", "str"),
            ("author", "str"),
            ("created_at", "int"),
            ("features", "str"),
        ]
    raise InputError(f"cannot export {what!r}; choose one of {', '.join(TABLE_NAMES)}")


def _arrow_schema(columns: list[tuple[str, str]]):
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in columns])


def _shape(frame: pd.DataFrame, what: str, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """Rename store columns to file columns and give each its type (NULL stays empty)."""
    if what == "follows":
        frame = frame.rename(columns={"created_at": "timestamp"})
    elif what == "events":
        frame = frame.rename(columns={"ts": "timestamp"})
    elif what == "interactions":
        frame = frame.assign(timestamp=frame["timestamp"].where(frame["timestamp"] != 0, None))
    out = {}
    for name, kind in columns:
        values = frame[name]
        if kind == "int":
            out[name] = pd.array([None if pd.isna(v) else int(v) for v in values], dtype="Int64")
        elif kind == "float":
            out[name] = pd.to_numeric(values.astype(object), errors="coerce").astype("float64")
        else:
            out[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out)


def export_table(
    store: Store, what: TableName, path: str | Path, *, chunk_rows: int = EXPORT_CHUNK_ROWS
) -> int:
    """Write one table of the store to ``path`` (CSV, TSV or Parquet by extension).

    Streams ``chunk_rows`` rows at a time from the database to the file (a
    Parquet file grows row group by row group), and replaces ``path`` only
    once the whole table is written.

    Parameters
    ----------
    store
        The store to read.
    what
        ``follows``, ``events``, ``interactions``, ``accounts`` or ``items``
        (column layouts in the module docstring).
    path
        The output file: ``.csv``, ``.tsv`` (or ``.txt``), ``.parquet``;
        ``.gz``/``.bz2``/``.xz`` compress CSV and TSV.

    Returns
    -------
    int
        Rows written.
    """
    timed = what == "follows" and store.follows_all_timed()
    columns = _columns(what, timed)
    names = [name for name, _ in columns]
    total = store.counts().get("edge_events" if what == "events" else what)
    with (
        TableWriter(path, names, _arrow_schema(columns)) as out,
        progress_bar(f"export {what}", total=total, unit="rows") as advance,
    ):
        for chunk in store.iter_frames(what, chunk_rows=chunk_rows):
            out.write(_shape(chunk, what, columns))
            advance(len(chunk))
    return out.rows


__all__ = ["EXPORT_CHUNK_ROWS", "export_table"]
