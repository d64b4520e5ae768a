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

    def frames(self, users_per_chunk: int = USERS_PER_CHUNK) -> Iterator[pd.DataFrame]:
        """The rows of :data:`OUTPUT_COLUMNS`, a block of users at a time."""
        n = self.ids.shape[0]
        external = self.users.ids
        for start in range(0, n, users_per_chunk):
            ids = self.ids[start : start + users_per_chunk]
            rows, slots = np.nonzero(ids >= 0)
            yield pd.DataFrame(
                {
                    "user": external[start + rows],
                    "candidate": external[ids[rows, slots]],
                    "score": self.scores[start + rows, slots],
                    "rank": (slots + 1).astype(np.int32),
                    "sources": [[self.source]] * len(rows),
                }
            )

    def to_frame(self) -> pd.DataFrame:
        """Every row at once (for tests and small graphs)."""
        parts = list(self.frames())
        return pd.concat(parts, ignore_index=True) if parts else empty_frame()

    def write_parquet(self, path: str | Path) -> int:
        """Write :meth:`frames` to one Parquet file, row group by row group; returns rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = output_schema()
        total = 0
        with pq.ParquetWriter(str(path), schema) as writer:
            for frame in self.frames():
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                total += len(frame)
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
