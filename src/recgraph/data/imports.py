"""File imports into the store: each one streams chunks into one transaction.

A malformed row anywhere raises :class:`~recgraph.errors.InputError` (file,
line, problem) and the transaction rolls back, so the database is exactly as
it was before the import. Writes are idempotent: importing the same file
twice leaves the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from recgraph.data.movielens import iter_movielens_items, iter_movielens_ratings, movielens_layout
from recgraph.data.readers import (
    DEFAULT_CHUNK_ROWS,
    ColumnMapping,
    iter_account_chunks,
    iter_edge_chunks,
    iter_interaction_chunks,
    iter_item_chunks,
)
from recgraph.data.sql import references_at_end
from recgraph.data.store import Store, Writer
from recgraph.errors import InputError
from recgraph.progress import progress_bar

#: Rows per chunk of an edge list: two short ids a row, so 5·10^5 rows stay a few tens of
#: MB, and popular accounts repeat within a chunk: on a heavy-tailed graph of 10^7
#: follows each row costs 0.77 distinct-id lookups instead of 1.14 at 10^5 rows a chunk.
EDGE_CHUNK_ROWS = 500_000


@dataclass
class ImportSummary:
    """What an import did.

    Attributes
    ----------
    source
        The file or folder imported.
    rows_read
        Data rows parsed from the files (headers and comments excluded).
    rows_written
        Rows handed to the store as upserts (after merging duplicates within a
        chunk); on a re-import they update existing rows instead of adding.
    new
        Growth of each table, e.g. ``{"accounts": 943, "interactions": 100000}``
        (0 everywhere on a re-import).
    seconds
        Wall time, including the commit.
    notes
        Things read in a way the user should know, one sentence each (e.g. a
        first line taken as a header and skipped).
    directed
        For edge imports: whether the edges are follows (True) or
        friendships (False); None for other imports.
    """

    source: str
    rows_read: int = 0
    rows_written: int = 0
    new: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    directed: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _import(
    store: Store, source: str | Path, description: str, tables: tuple[str, ...]
) -> Iterator[tuple[Writer, ImportSummary, Callable[[int], None]]]:
    """One writer transaction with a progress bar; errors get the file name.

    ``tables`` are counted before and after (a scan each), for the summary.
    """
    summary = ImportSummary(source=str(source))
    started = time.perf_counter()
    try:
        with store.writer() as writer, progress_bar(description, unit="rows") as advance:
            before = writer.counts(tables)
            yield writer, summary, advance
            after = writer.counts(tables)
    except InputError as exc:
        if exc.path is None:
            raise InputError(exc.message, path=source, line=exc.line, field=exc.field) from None
        raise
    summary.new = {name: after[name] - before[name] for name in tables}
    summary.seconds = time.perf_counter() - started


def _write_chunks(
    chunks: Iterable[pd.DataFrame],
    write: Callable[[pd.DataFrame], int],
    summary: ImportSummary,
    advance: Callable[[int], None],
) -> None:
    """Hand each parsed chunk to one writer method, counting rows and moving the progress bar."""
    for chunk in chunks:
        summary.rows_written += write(chunk)
        summary.rows_read += len(chunk)
        advance(len(chunk))


def import_edges(
    store: Store,
    path: str | Path,
    directed: bool,
    timestamps: bool = False,
    *,
    chunk_rows: int = EDGE_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
    header: bool | None = None,
) -> ImportSummary:
    """Import a SNAP-style edge list as follows (or friendships).

    With ``timestamps`` every line is also kept as an edge event, and each
    follow's ``created_at`` / ``seen_at`` are the earliest / latest time of its
    pair.

    Parameters
    ----------
    store
        Where to write.
    path
        The edge list (see :func:`recgraph.data.readers.iter_edge_chunks`).
    directed
        Follows (True) or friendships stored once per pair (False). Must match
        what the store already holds.
    timestamps
        Whether the third column holds unix timestamps.
    format, sep, header
        For files whose name does not tell their format, and the first-line
        rule (:mod:`recgraph.data.readers`); notes about a skipped header line
        land in the summary.
    """
    # every key the writer writes here comes from its own lookups: the foreign keys are
    # checked once before the commit instead of row by row (SQLite)
    with (
        references_at_end(),
        _import(
            store, path, f"import {Path(path).name}", ("accounts", "follows", "edge_events")
        ) as (writer, summary, advance),
    ):
        summary.directed = directed
        chunks = iter_edge_chunks(
            path,
            timestamps=timestamps,
            chunk_rows=chunk_rows,
            format=format,
            sep=sep,
            header=header,
            notes=summary.notes,
        )
        for chunk in chunks:
            follows = chunk.rename(columns={"ts": "created_at"})
            # the parser validated the ids (with file and line): the writer takes them as they are
            summary.rows_written += writer.follows(follows, directed=directed, checked=True)
            if timestamps:
                writer.edge_events(chunk, directed=directed, checked=True)
            summary.rows_read += len(chunk)
            advance(len(chunk))
    return summary


def import_movielens(
    store: Store, directory: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> ImportSummary:
    """Import a MovieLens folder (100k or latest-small): movies as items, ratings as interactions.

    Titles become item titles; genres, release date / year and the IMDb URL
    become item features. Ratings are ``rating`` interactions with their
    value and timestamp; users become accounts.
    """
    layout = movielens_layout(directory)
    with _import(
        store, directory, f"import MovieLens {layout}", ("accounts", "items", "interactions")
    ) as (writer, summary, advance):
        _write_chunks(
            iter_movielens_items(directory, chunk_rows=chunk_rows), writer.items, summary, advance
        )
        _write_chunks(
            iter_movielens_ratings(directory, chunk_rows=chunk_rows),
            writer.interactions,
            summary,
            advance,
        )
    return summary


def import_interactions(
    store: Store,
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> ImportSummary:
    """Import a generic CSV / TSV / Parquet table of interactions.

    Parameters
    ----------
    store
        Where to write.
    path
        The table; its extension gives the format.
    mapping
        Which columns hold user, item, kind (or one fixed kind), value and
        timestamp, and what the values mean (``value_kind``: rating, count,
        weight or none, stored per row); see
        :class:`recgraph.data.readers.ColumnMapping`.
    format, sep
        ``csv``/``tsv``/``parquet`` and the separator, when the name does not tell.
    """
    with _import(
        store, path, f"import {Path(path).name}", ("accounts", "items", "interactions")
    ) as (writer, summary, advance):
        _write_chunks(
            iter_interaction_chunks(path, mapping, chunk_rows=chunk_rows, format=format, sep=sep),
            writer.interactions,
            summary,
            advance,
        )
    return summary


def import_accounts(
    store: Store,
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> ImportSummary:
    """Import accounts (``external_id[, handle, created_at]``), e.g. an accounts export."""
    chunks = iter_account_chunks(path, chunk_rows=chunk_rows, format=format, sep=sep)
    return _import_table(store, path, ("accounts",), chunks, "accounts")


def import_items(
    store: Store,
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    sep: str | None = None,
) -> ImportSummary:
    """Import items (``external_id[, title, author, created_at, features]``), e.g. an
    items export; ``features`` is a JSON object per row."""
    chunks = iter_item_chunks(path, chunk_rows=chunk_rows, format=format, sep=sep)
    return _import_table(store, path, ("accounts", "items"), chunks, "items")


def _import_table(
    store: Store,
    path: str | Path,
    tables: tuple[str, ...],
    chunks: Iterable[pd.DataFrame],
    writer_method: str,
) -> ImportSummary:
    """One file's chunks through one writer method, all or nothing."""
    with _import(store, path, f"import {Path(path).name}", tables) as (writer, summary, advance):
        _write_chunks(chunks, getattr(writer, writer_method), summary, advance)
    return summary


__all__ = [
    "EDGE_CHUNK_ROWS",
    "ImportSummary",
    "import_accounts",
    "import_edges",
    "import_interactions",
    "import_items",
    "import_movielens",
]
