"""Where a job's graph comes from, read the same way by both engines.

Inputs: a Parquet (or CSV/TSV) edge file as ``recgraph export follows`` writes
it (``src, dst[, timestamp]``, external ids as text or integers), or the
store (the local engine reads it with SQLAlchemy, Spark over JDBC).

Both engines number the accounts the same way: **by sorted external id**
(numeric order for integer columns, byte order for text, which is what both
Arrow and Spark sort by). Ties between candidates go to the lower index, so a
common numbering makes the two engines' lists identical even where scores
tie, and it needs no row order (a JDBC read has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recgraph.data.interactions import IdMap, Interactions, Kind
from recgraph.errors import InputError

#: Columns a job reads from an edge file; ``timestamp`` is optional.
EDGE_COLUMNS = ("src", "dst")


@dataclass(frozen=True)
class GraphSource:
    """A job's input: an edge file, or the store when ``path`` is ``None``.

    Attributes
    ----------
    path
        ``.parquet`` (a file or a folder of parts), ``.csv`` or ``.tsv`` with
        the columns ``src, dst[, timestamp]``; ``None`` reads the store at
        ``database_url``.
    directed
        Follows (``True``) or friendships (each pair once, both directions
        implied). The store knows it itself; for files it must be said.
    database_url
        The store (SQLAlchemy URL), when ``path`` is ``None``.
    """

    path: str | None = None
    directed: bool = True
    database_url: str | None = None

    def describe(self) -> str:
        return (
            self.path if self.path is not None else f"the store ({self.database_url or 'default'})"
        )


def read_graph(source: GraphSource) -> Interactions:
    """The source's graph as :class:`Interactions`, accounts numbered by sorted external id."""
    if source.path is None:
        from recgraph.data.store import Store

        with Store.open(source.database_url, create=False) as store:
            return renumber_sorted(store.follows_graph())
    return read_edge_file(source.path, directed=source.directed)


def read_edge_file(path: str | Path, directed: bool = True) -> Interactions:
    """Read ``src, dst[, timestamp]`` from Parquet, CSV or TSV, vectorised with Arrow.

    No Python object is made per edge: ids are found with Arrow's hash
    kernels, so 10^8 edges read in about a minute.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_arrow(path)
    # a reported line is the file's line for CSV/TSV (after the header), the row for Parquet
    first_line = 2 if Path(path).suffix.lower() in (".csv", ".tsv", ".txt") else 1
    names = table.column_names
    for column in EDGE_COLUMNS:
        if column not in names:
            raise InputError(
                f"missing column {column!r}; an edge file has src,dst[,timestamp], "
                f"got {','.join(names)}",
                path=str(path),
                field=column,
            )
    extra = [c for c in names if c not in (*EDGE_COLUMNS, "timestamp")]
    if extra:
        raise InputError(
            f"unexpected column {extra[0]!r}; allowed: src, dst, timestamp",
            path=str(path),
            field=extra[0],
        )
    src = table.column("src").combine_chunks()
    dst = table.column("dst").combine_chunks()
    if src.type != dst.type:
        src, dst = src.cast(pa.string()), dst.cast(pa.string())
    for name, column in (("src", src), ("dst", dst)):
        empty = pc.is_null(column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(column), ""))
        if pc.any(empty).as_py():
            row = int(pc.index(empty, True).as_py())
            raise InputError("empty value", path=str(path), line=row + first_line, field=name)
    if pa.types.is_integer(src.type):
        src, dst = src.cast(pa.int64()), dst.cast(pa.int64())
    elif not pa.types.is_string(src.type) and not pa.types.is_large_string(src.type):
        src, dst = src.cast(pa.string()), dst.cast(pa.string())
    ids = pc.unique(pa.concat_arrays([src, dst.cast(src.type)]))
    ids = ids.take(pc.sort_indices(ids))
    src_index = pc.index_in(src, value_set=ids).to_numpy(zero_copy_only=False)
    dst_index = pc.index_in(dst, value_set=ids).to_numpy(zero_copy_only=False)
    timestamp = None
    if "timestamp" in names:
        ts = table.column("timestamp")
        if ts.null_count:
            row = int(pc.index(pc.is_null(ts), True).as_py())
            raise InputError(
                "empty value", path=str(path), line=row + first_line, field="timestamp"
            )
        timestamp = ts.to_numpy().astype(np.int64)
    users = IdMap(str(x) for x in ids.to_pylist())
    n = len(src_index)
    return Interactions(
        src=src_index.astype(np.int64),
        dst=dst_index.astype(np.int64),
        users=users,
        items=users,
        value=np.ones(n, np.float32),
        kind=np.full(n, int(Kind.FOLLOW), dtype=np.int8),
        timestamp=timestamp,
        one_sided=True,
        directed=directed,
    )


def renumber_sorted(graph: Interactions) -> Interactions:
    """The same one-sided graph with accounts numbered by sorted external id."""
    if not graph.one_sided:
        raise InputError("the candidate jobs read account graphs (follows or friendships)")
    ids = graph.users.ids
    order = np.argsort(ids.astype(str), kind="stable")
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    users = IdMap(ids[order])
    return Interactions(
        src=position[graph.src],
        dst=position[graph.dst],
        users=users,
        items=users,
        value=graph.value,
        kind=graph.kind,
        timestamp=graph.timestamp,
        one_sided=True,
        directed=graph.directed,
        value_kind=graph.value_kind,
    )


def _read_arrow(path: str | Path):
    """An Arrow table of an edge file (Parquet file or folder, CSV, TSV)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=str(path))
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".csv", ".tsv", ".txt"):
        import pyarrow.csv as pcsv

        delimiter = "," if suffix == ".csv" else "\t"
        return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter))
    raise InputError("an edge file is .parquet, .csv or .tsv", path=str(path))
