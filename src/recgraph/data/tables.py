"""Tabular files by extension: CSV, TSV (also .txt/.tsv.gz/.csv.gz) and Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recgraph.errors import InputError

PARQUET_SUFFIXES = (".parquet", ".pq")


def table_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from a file name (compression suffixes ignored)."""
    name = Path(path).name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    raise InputError(
        "cannot tell the format from the extension; use .csv, .tsv or .parquet", path=path
    )


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a whole small table with every column as text (ids stay strings)."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path)
    fmt = table_format(path)
    if fmt == "parquet":
        frame = pd.read_parquet(path)
        return frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    sep = "," if fmt == "csv" else "\t"
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as exc:
        raise InputError(f"cannot parse: {exc}", path=path) from None
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame
