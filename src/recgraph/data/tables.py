"""Writing tables by extension: CSV, TSV (also .txt/.tsv.gz/.csv.gz) and Parquet.

Reading goes through :mod:`recgraph.data.parsing`, the one reader path.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recgraph.data.parsing import format_of
from recgraph.errors import InputError
from recgraph.files import atomic_path

PARQUET_SUFFIXES = (".parquet", ".pq")


def table_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from a file name (compression suffixes ignored)."""
    fmt = format_of(path)
    if fmt is None:
        raise InputError(
            "cannot tell the format from the extension; use .csv, .tsv or .parquet", path=path
        )
    return fmt


def _open_text(path: Path, name: str):
    """A text handle on ``path`` that compresses by the suffix of ``name`` (.gz, .bz2, .xz)."""
    name = name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "wt", encoding="utf-8", newline="")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "wt", encoding="utf-8", newline="")
    if name.endswith(".xz"):
        import lzma

        return lzma.open(path, "wt", encoding="utf-8", newline="")
    if name.endswith(".zst"):
        raise InputError("writing .zst is not supported; use .gz, .bz2 or .xz", path=path)
    return path.open("w", encoding="utf-8", newline="")


class TableWriter:
    """Write a table chunk by chunk to CSV, TSV or Parquet (by extension), atomically.

    Rows go to a temporary file next to ``path`` that replaces it only when
    the block ends without error, so a failed export never leaves half a file.
    Parquet needs a pyarrow ``schema``; CSV/TSV write a header line and leave
    missing values empty.

    Examples
    --------
    >>> with TableWriter("out.csv", ["src", "dst"]) as out:  # doctest: +SKIP
    ...     out.write(pd.DataFrame({"src": ["a"], "dst": ["b"]}))
    """

    def __init__(self, path: str | Path, columns: list[str], schema=None) -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        self.columns = columns
        self.schema = schema
        self.rows = 0
        self._handle = None
        self._parquet = None
        self._target = atomic_path(self.path)

    def __enter__(self) -> TableWriter:
        self._tmp = self._target.__enter__()
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self.schema is None:
                self.schema = pa.schema([(c, pa.string()) for c in self.columns])
            self._parquet = pq.ParquetWriter(self._tmp, self.schema)
        else:
            self._handle = _open_text(self._tmp, self.path.name)
            self._sep = "," if self.format == "csv" else "\t"
            pd.DataFrame(columns=self.columns).to_csv(self._handle, sep=self._sep, index=False)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append rows (columns in the writer's order)."""
        frame = frame[self.columns]
        if self._parquet is not None:
            import pyarrow as pa

            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            self._parquet.write_table(table)
        else:
            frame.to_csv(self._handle, sep=self._sep, index=False, header=False)
        self.rows += len(frame)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None:
            self._handle.close()
        self._target.__exit__(exc_type, exc, tb)
