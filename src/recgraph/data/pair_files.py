"""The train and test files of ``recgraph split`` and ``recgraph evaluate``: pairs, every cell given.

Layouts (a header line, or Parquet columns):

- items: ``user,item`` then optionally ``rating`` (values that are ratings),
  or ``value`` with a ``value_kind`` column saying per row what it means
  (``rating``, ``count``, ``weight``, ``none``; as ``recgraph split`` writes
  count- or weight-valued data), or ``value`` alone with the meaning given
  by ``--value``; and optionally ``timestamp``;
- follows and friends: ``src,dst[,timestamp]`` (friends: each pair once,
  both directions implied).

Extra columns are an error, so nothing a user gave is silently ignored, and
every cell must be filled. Parsing and rules are :mod:`recgraph.data.parsing`'s,
the same as every import's. This module returns plain arrays;
:meth:`recgraph.data.interactions.Interactions.read_table` builds the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recgraph.data.parsing import TableSource, ids, labels, numbers, table_layout, timestamps
from recgraph.errors import InputError

#: Rows per parsed batch.
_CHUNK_ROWS = 200_000


def read_pairs(
    path: str | Path,
    kind: str,
    value_labels: Sequence[str],
    *,
    format: str | None = None,
    sep: str | None = None,
    value_kind: str | None = None,
) -> dict:
    """The columns of a pair file, validated.

    Returns
    -------
    dict
        ``src``, ``dst`` (object arrays of ids), ``timestamp`` (int64 or None),
        ``value`` (float64 or None), ``value_kind`` (an array of labels, one
        label for every row, or None) and ``rating`` (whether the column was
        ``rating``).
    """
    source = TableSource(path, table_layout(path, format, sep))
    cols = source.columns
    meaning = _label(value_kind, value_labels)
    if kind == "items":
        required, optional = ["user", "item"], ["rating", "value", "value_kind", "timestamp"]
    else:
        required, optional = ["src", "dst"], ["timestamp"]
    _check_header(cols, required, optional, path)
    value_col = "rating" if "rating" in cols else ("value" if "value" in cols else None)
    if value_col == "rating" and ("value" in cols or "value_kind" in cols):
        raise InputError("give either a rating or a value column, not both", path=path, line=1)
    if meaning not in (None, "rating") and value_col == "rating":
        raise InputError(f"--value {meaning}, but the column is 'rating'", path=path, line=1)
    if value_col == "value" and "value_kind" not in cols and meaning is None:
        raise InputError(
            "say what the 'value' column means: --value rating|count|weight "
            "(or add a value_kind column)",
            path=path,
            line=1,
            field="value",
        )
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for chunk in source.chunks(_CHUNK_ROWS):
        rows = chunk.first_row
        for col, array in chunk.columns.items():
            if col in required:
                parts[col].append(ids(array, col, source, rows))
            elif col == "timestamp":
                parts[col].append(timestamps(array, col, source, rows))
            elif col == "value_kind":
                parts[col].append(labels(array, col, source, rows, value_labels))
            else:
                values = numbers(array, col, source, rows)
                missing = np.flatnonzero(np.isnan(values))
                if len(missing):
                    raise source.error("empty value", rows + int(missing[0]), col)
                parts[col].append(values)
    data = {c: np.concatenate(p) for c, p in parts.items()}
    if meaning is not None and meaning != "none":
        kinds: np.ndarray | str | None = meaning
    elif meaning == "none":
        kinds = "none"
    elif "value_kind" in data:
        kinds = data["value_kind"]
    elif value_col is not None:
        kinds = "rating"
    else:
        kinds = "none"
    return {
        "src": data[required[0]],
        "dst": data[required[1]],
        "timestamp": data.get("timestamp"),
        "value": data[value_col] if value_col is not None and meaning != "none" else None,
        "value_kind": kinds,
        "rating": value_col == "rating",
    }


def _label(value: str | None, allowed: Sequence[str]) -> str | None:
    if value is None:
        return None
    label = value.strip().lower()
    if label not in allowed:
        raise InputError(
            f"unknown value meaning {value!r}; expected one of {', '.join(allowed)}",
            field="value",
        )
    return label


def _check_header(cols: list[str], required: list[str], optional: list[str], path) -> None:
    for col in required:
        if col not in cols:
            raise InputError(
                f"missing column {col!r}; the header must be {','.join(required)}"
                f"[,{'][,'.join(optional)}], got {','.join(cols)}",
                path=path,
                line=1,
            )
    for col in cols:
        if col not in required + optional:
            raise InputError(
                f"unexpected column {col!r}; allowed: {', '.join(required + optional)}",
                path=path,
                line=1,
                field=col,
            )


__all__ = ["read_pairs"]
