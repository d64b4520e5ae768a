"""What a candidate job produces: each user's top candidates, as Parquet rows.

Columns (both engines write the same):

========== ================ =====================================================
column     type             meaning
========== ================ =====================================================
user       string           the account's external id
candidate  string           a suggested account's external id
score      double           the job's score (summed in double precision)
rank       int32            1 = best; ties go to the lower sorted external id
sources    list<string>     the jobs that proposed the candidate (here: one)
========== ================ =====================================================

Rows are ordered by user, then rank. Users without any scored candidate have
no row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgraph.data.interactions import IdMap

#: Output columns, in order.
OUTPUT_COLUMNS = ("user", "candidate", "score", "rank", "sources")
#: Users per Parquet row group when the local engine writes.
USERS_PER_CHUNK = 50_000


def output_schema():
    """The Arrow schema of a candidates file."""
    import pyarrow as pa

    return pa.schema(
        [
            ("user", pa.string()),
            ("candidate", pa.string()),
            ("score", pa.float64()),
            ("rank", pa.int32()),
            ("sources", pa.list_(pa.string())),
        ]
    )


@dataclass(frozen=True)
class CandidateLists:
    """The local engine's result: ``(n_users, k)`` arrays over one id map.

    Attributes
    ----------
    users
        The id map of users and candidates (one-sided graphs).
    ids
        Candidate indices, best first, ``-1`` past the end of a user's list.
    scores
        Their float64 scores, ``-inf`` past the end.
    source
        The job's name, written to ``sources``.
    """

    users: IdMap
    ids: np.ndarray
    scores: np.ndarray
    source: str

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def lengths(self) -> np.ndarray:
        """Candidates per user."""
        return (self.ids >= 0).sum(axis=1)

    def tables(self, users_per_chunk: int = USERS_PER_CHUNK) -> Iterator[Any]:
        """The rows of :data:`OUTPUT_COLUMNS` as Arrow tables, a block of users at a time.

        Built with Arrow's ``take`` on the id strings, never a Python object per row.
        """
        import pyarrow as pa

        n = self.ids.shape[0]
        names = pa.array(self.users.ids.astype(str), type=pa.string())
        schema = output_schema()
        for start in range(0, n, users_per_chunk):
            ids = self.ids[start : start + users_per_chunk]
            rows, slots = np.nonzero(ids >= 0)
            count = len(rows)
            sources = pa.ListArray.from_arrays(
                pa.array(np.arange(count + 1, dtype=np.int32)),
                pa.repeat(pa.scalar(self.source, pa.string()), count),
            )
            yield pa.Table.from_arrays(
                [
                    names.take(pa.array(start + rows)),
                    names.take(pa.array(ids[rows, slots])),
                    pa.array(self.scores[start + rows, slots], type=pa.float64()),
                    pa.array((slots + 1).astype(np.int32)),
                    sources,
                ],
                schema=schema,
            )

    def to_frame(self) -> pd.DataFrame:
        """Every row at once (for tests and small graphs)."""
        parts = [table.to_pandas() for table in self.tables()]
        if not parts:
            return empty_frame()
        frame = pd.concat(parts, ignore_index=True)
        frame["sources"] = frame["sources"].map(list)
        return frame

    def write_parquet(self, path: str | Path) -> int:
        """Write :meth:`tables` to one Parquet file, row group by row group; returns rows."""
        import pyarrow.parquet as pq

        total = 0
        with pq.ParquetWriter(str(path), output_schema()) as writer:
            for table in self.tables():
                writer.write_table(table)
                total += table.num_rows
        return total


def empty_frame() -> pd.DataFrame:
    """A candidates frame with no row."""
    return pd.DataFrame(
        {
            "user": pd.Series([], dtype=object),
            "candidate": pd.Series([], dtype=object),
            "score": pd.Series([], dtype=np.float64),
            "rank": pd.Series([], dtype=np.int32),
            "sources": pd.Series([], dtype=object),
        }
    )


def read_candidates(path: str | Path) -> pd.DataFrame:
    """A candidates file (either engine's) as a frame ordered by user then rank."""
    import pyarrow.parquet as pq

    frame = pq.read_table(str(path)).to_pandas()
    frame["sources"] = frame["sources"].map(list)
    return frame.sort_values(["user", "rank"], kind="stable").reset_index(drop=True)
