"""The chunk layouts every reader yields and the store's writer takes, and their assembly.

Shared by :mod:`recgraph.data.readers` and :mod:`recgraph.data.movielens`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from recgraph.data.interactions import Interactions, Kind, ValueKind

#: Rows per chunk: large enough for fast bulk writes, small enough for bounded memory.
DEFAULT_CHUNK_ROWS = 100_000

#: The kinds an interaction row may have (``follow`` lives in the follows table).
INTERACTION_KINDS = tuple(k.label for k in Kind if k is not Kind.FOLLOW)
#: What an interaction's value may mean (``--value``).
VALUE_KINDS = tuple(v.label for v in ValueKind)


def field_count(count: int, adjective: str = "") -> str:
    """``"1 field"`` / ``"3 tab-separated fields"``: field counts for messages."""
    return f"{count} {adjective}field{'' if count == 1 else 's'}"


def interaction_frame(users, items, kinds, values, value_kinds, stamps) -> pd.DataFrame:
    n = len(users)

    def column(value, dtype=object):
        if isinstance(value, str):
            return np.full(n, value, dtype=object)
        return np.asarray(value, dtype=dtype)

    return pd.DataFrame(
        {
            "user": column(users),
            "item": column(items),
            "kind": column(kinds),
            "value": np.asarray(values, dtype=np.float64),
            "value_kind": column(value_kinds),
            "timestamp": np.asarray(stamps, dtype=np.int64),
        }
    )


def interactions_from_chunks(chunks: Iterator[pd.DataFrame]) -> Interactions:
    frame = pd.concat(list(chunks), ignore_index=True)
    stamps = frame["timestamp"].to_numpy(np.int64)
    kind_codes = {label: int(Kind.parse(label)) for label in INTERACTION_KINDS}
    value_codes = {label: int(ValueKind.parse(label)) for label in VALUE_KINDS}
    values = frame["value"].to_numpy(np.float64)
    return Interactions.from_arrays(
        frame["user"].to_numpy(object),
        frame["item"].to_numpy(object),
        value=np.where(np.isnan(values), 1.0, values),
        timestamp=stamps if stamps.any() else None,
        kind=frame["kind"].map(kind_codes).to_numpy(np.int8),
        value_kind=frame["value_kind"].map(value_codes).to_numpy(np.int8),
    )


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "INTERACTION_KINDS",
    "VALUE_KINDS",
    "field_count",
    "interaction_frame",
    "interactions_from_chunks",
]
