"""Item side data (titles, genres, creation times) for the models that read it.

One object whatever the source, so a model evaluated from split files sees
exactly what it sees when trained on the store:

- the store: :meth:`ItemFeatures.from_frame` on ``Store.items_frame()``
  (``external_id, title, created_at, features`` with ``features["genres"]``
  a list of names);
- a file: :meth:`ItemFeatures.read` on ``item,title[,genres][,created_at]``
  (CSV, TSV or Parquet; genres separated by ``|`` as MovieLens writes them;
  ``created_at`` unix seconds or a date), what ``recgraph evaluate --items``
  takes.

Models receive it as ``fit(train, item_features=...)`` and line it up with
their item id map by :meth:`ItemFeatures.aligned`; items it does not describe
get an empty title, no genres and an unknown time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recgraph.data.interactions import IdMap
from recgraph.errors import InputError

FILE_COLUMNS = ("item", "title", "genres", "created_at")
GENRE_SEPARATOR = "|"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def title_words(title: str) -> list[str]:
    """Lower-case words of a title (letters and digits; punctuation splits)."""
    return _WORD.findall(str(title).lower())


_YEAR_AT_END = re.compile(r"\((\d{4})\)\s*$")


def title_year(title: str) -> float:
    """The year a title ends with, as MovieLens writes it (``"Heat (1995)"`` -> 1995.0), else NaN."""
    found = _YEAR_AT_END.search(str(title))
    return float(found.group(1)) if found else float("nan")


@dataclass(frozen=True, eq=False)
class ItemFeatures:
    """Per item: external id, title (``""`` when none), genres, creation time (NaN: unknown)."""

    ids: np.ndarray
    titles: np.ndarray
    genres: tuple[tuple[str, ...], ...]
    created_at: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.titles) == len(self.genres) == len(self.created_at) == n):
            raise ValueError("ItemFeatures: ids, titles, genres and created_at differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"ItemFeatures({len(self):,} items, {int((self.titles != '').sum()):,} titled, "
            f"{len(self.genre_names()):,} genres, {int(np.isfinite(self.created_at).sum()):,} timed)"
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_records(
        cls,
        ids: Sequence[str],
        titles: Sequence[str | None] | None = None,
        genres: Sequence[Sequence[str] | None] | None = None,
        created_at: Sequence[float | None] | None = None,
    ) -> ItemFeatures:
        """From parallel lists; ``None`` entries mean unknown."""
        n = len(ids)
        titles = titles if titles is not None else [None] * n
        genres = genres if genres is not None else [None] * n
        created_at = created_at if created_at is not None else [None] * n
        return cls(
            ids=np.asarray([str(x) for x in ids], dtype=object),
            titles=np.asarray([_text(t) for t in titles], dtype=object),
            genres=tuple(
                tuple(str(g).strip() for g in (gs or ()) if str(g).strip()) for gs in genres
            ),
            created_at=np.asarray([_seconds(t) for t in created_at], dtype=np.float64),
        )

    @classmethod
    def from_frame(cls, items: pd.DataFrame) -> ItemFeatures:
        """From ``Store.items_frame()``: ``external_id, title, created_at, features`` (dicts)."""
        n = len(items)
        features = items["features"].tolist() if "features" in items else [None] * n
        genres = [(f or {}).get("genres") if isinstance(f, dict) else None for f in features]
        return cls.from_records(
            items["external_id"].astype(str).tolist() if n else [],
            items["title"].tolist() if "title" in items else None,
            genres,
            items["created_at"].tolist() if "created_at" in items else None,
        )

    @classmethod
    def read(
        cls, path: str | Path, *, format: str | None = None, sep: str | None = None
    ) -> ItemFeatures:
        """Read ``item,title[,genres][,created_at]`` (CSV, TSV or Parquet, with a header).

        The rules of every reader (:mod:`recgraph.data.parsing`); genres are
        ``|``-separated names; ``created_at`` is unix seconds or an ISO date.
        Unknown columns, a missing ``item`` or ``title`` column, an empty or
        repeated item id and an unreadable time are errors naming the line
        and column.
        """
        import pyarrow as pa

        from recgraph.data.parsing import TableSource, ids, optional_text, table_layout

        source = TableSource(path, table_layout(path, format, sep))
        columns = [c.strip().lower() for c in source.columns]
        for required in ("item", "title"):
            if required not in columns:
                raise InputError(
                    f"missing column {required!r}; the header must be "
                    f"item,title[,genres][,created_at], got {','.join(source.columns)}",
                    path=path,
                    line=1,
                )
        for col in source.columns:
            if col.strip().lower() not in FILE_COLUMNS:
                raise InputError(
                    f"unexpected column {col!r}; allowed: {', '.join(FILE_COLUMNS)}",
                    path=path,
                    line=1,
                    field=col,
                )
        item_ids: list = []
        titles: list = []
        genres: list = []
        created: list = []
        for chunk in source.chunks(100_000):
            arrays = {k.strip().lower(): v for k, v in chunk.columns.items()}
            item_ids += ids(arrays["item"], "item", source, chunk.first_row).tolist()
            titles += optional_text(_as_text(arrays["title"], pa)).tolist()
            if "genres" in arrays:
                genres += [
                    None if text is None else text.split(GENRE_SEPARATOR)
                    for text in optional_text(_as_text(arrays["genres"], pa))
                ]
            if "created_at" in arrays:
                for row, value in enumerate(optional_text(_as_text(arrays["created_at"], pa))):
                    created.append(_parse_time(value, source, chunk.first_row + row))
        seen: dict[str, int] = {}
        for row, item in enumerate(item_ids):
            if item in seen:
                raise source.error(f"item {item!r} appears twice", row, "item")
            seen[item] = row
        return cls.from_records(item_ids, titles, genres or None, created or None)

    # ------------------------------------------------------------------ views
    def aligned(self, items: IdMap) -> ItemFeatures:
        """One row per item of ``items``, in index order; undescribed items get nothing."""
        position = {x: i for i, x in enumerate(self.ids)}
        rows = np.asarray([position.get(str(x), -1) for x in items.ids], dtype=np.int64)
        known = rows >= 0
        titles = np.full(len(items), "", dtype=object)
        titles[known] = self.titles[rows[known]]
        created = np.full(len(items), np.nan)
        created[known] = self.created_at[rows[known]]
        genres = tuple(self.genres[r] if r >= 0 else () for r in rows)
        return ItemFeatures(np.asarray(items.ids, dtype=object), titles, genres, created)

    def years(self) -> np.ndarray:
        """Per item, the year its title ends with (NaN: none), e.g. a film's release year."""
        return np.asarray([title_year(t) for t in self.titles], dtype=np.float64)

    def genre_names(self) -> list[str]:
        """Every genre named, sorted."""
        return sorted({g for gs in self.genres for g in gs})

    def genre_matrix(self, names: Sequence[str] | None = None) -> sp.csr_matrix:
        """Multi-hot ``(n_items, len(names))`` over ``names`` (default :meth:`genre_names`)."""
        names = list(names if names is not None else self.genre_names())
        column = {g: j for j, g in enumerate(names)}
        rows, cols = [], []
        for i, gs in enumerate(self.genres):
            for g in gs:
                j = column.get(g)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        return sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(self), len(names))
        )

    def word_vocabulary(self, max_words: int) -> list[str]:
        """The ``max_words`` most frequent title words (ties by the word), most frequent first."""
        counts: dict[str, int] = {}
        for title in self.titles:
            for word in set(title_words(title)):
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [w for w, _ in ranked[:max_words]]

    def title_matrix(self, vocabulary: Sequence[str]) -> sp.csr_matrix:
        """Bag of words ``(n_items, len(vocabulary))``, each row normalised to sum 1 (mean pooling)."""
        column = {w: j for j, w in enumerate(vocabulary)}
        rows, cols = [], []
        for i, title in enumerate(self.titles):
            for j in sorted({column[w] for w in title_words(title) if w in column}):
                rows.append(i)
                cols.append(j)
        matrix = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(self), len(vocabulary))
        )
        counts = np.asarray(matrix.sum(axis=1)).ravel()
        counts[counts == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / counts) @ matrix)


def _present(value: Any) -> bool:
    return (
        value is not None
        and not (isinstance(value, float) and np.isnan(value))
        and str(value).strip() not in ("", "nan", "None")
    )


def _text(value: Any) -> str:
    return str(value).strip() if _present(value) else ""


def _seconds(value: Any) -> float:
    if not _present(value):
        return float("nan")
    return float(value)


def _as_text(array, pa):
    """Parquet columns of other types as text (text files are text already)."""
    return array if pa.types.is_string(array.type) else array.cast(pa.string())


def _parse_time(value: Any, source, row: int) -> float:
    """Unix seconds from a number or a date; empty is unknown."""
    if not _present(value):
        return float("nan")
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise source.error(f"not unix seconds or a date: {text!r}", row, "created_at") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())
