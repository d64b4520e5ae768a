"""MovieLens folders (100k and latest-small): ratings as interactions, movies as items.

Parsed through :mod:`recgraph.data.parsing` like every other file: u.data is
tab-separated, u.item and u.genre ``|``-separated Latin-1 without quotes;
ratings.csv and movies.csv are CSV with fixed headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recgraph.data.chunks import (
    DEFAULT_CHUNK_ROWS,
    field_count,
    interaction_frame,
    interactions_from_chunks,
)
from recgraph.data.interactions import Interactions
from recgraph.data.parsing import Layout, TableSource, ids, numbers, optional_text, timestamps
from recgraph.errors import InputError

_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")

#: Genre names of MovieLens 100k, used when ``u.genre`` is missing.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


# ---------------------------------------------------------------------- MovieLens
def movielens_layout(directory: str | Path) -> Literal["100k", "latest"]:
    """Which MovieLens layout a folder holds: ``100k`` (u.data) or ``latest`` (ratings.csv)."""
    directory = Path(directory)
    if not directory.exists():
        raise InputError("no such folder (expected a MovieLens folder)", path=directory)
    if not directory.is_dir():
        raise InputError("not a directory (expected a MovieLens folder)", path=directory)
    if (directory / "u.data").exists():
        return "100k"
    if (directory / "ratings.csv").exists():
        return "latest"
    raise InputError(
        "not a MovieLens folder: expected u.data + u.item (100k) or "
        "ratings.csv + movies.csv (latest-small)",
        path=directory,
    )


def iter_movielens_ratings(
    directory: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream the ratings of a MovieLens folder as interaction chunks (kind and value
    kind ``rating``)."""
    directory = Path(directory)
    if movielens_layout(directory) == "100k":
        source = TableSource(
            directory / "u.data",
            Layout("tsv", sep="\t", header=False, encoding="latin-1", quoting=False),
            ["user", "item", "rating", "timestamp"],
            count_problem=lambda n: (
                f"{field_count(n, 'tab-separated ')}, expected 4 (user item rating timestamp)"
            ),
        )
        names = ("user", "item", "rating", "timestamp")
    else:
        source = TableSource(directory / "ratings.csv", Layout("csv"))
        names = ("userId", "movieId", "rating", "timestamp")
        _check_header(source, list(names))
    for chunk in source.chunks(chunk_rows):
        c, rows = chunk.columns, chunk.first_row
        values = numbers(c[names[2]], "rating", source, rows)
        if np.isnan(values).any():
            raise source.error("empty rating", rows + int(np.flatnonzero(np.isnan(values))[0]))
        yield interaction_frame(
            ids(c[names[0]], names[0], source, rows),
            ids(c[names[1]], names[1], source, rows),
            "rating",
            values,
            "rating",
            timestamps(c[names[3]], "timestamp", source, rows),
        )


def _check_header(source: TableSource, expected: list[str]) -> None:
    if source.columns != expected:
        raise InputError(
            f"header {','.join(source.columns)!r}, expected {','.join(expected)!r}",
            path=source.path,
            line=1,
        )


def iter_movielens_items(
    directory: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream the movies of a MovieLens folder as ``external_id, title, features`` chunks.

    Features hold ``genres`` (a list of names) and, where known,
    ``release_date`` (ISO date, 100k) or ``year`` (from the title, latest-small)
    and ``imdb_url`` (100k).
    """
    directory = Path(directory)
    if movielens_layout(directory) == "100k":
        yield from _ml100k_items(directory, chunk_rows)
    else:
        yield from _latest_items(directory / "movies.csv", chunk_rows)


def _pipe_source(path: Path, names: list[str], describe: str) -> TableSource:
    return TableSource(
        path,
        Layout("tsv", sep="|", header=False, encoding="latin-1", quoting=False),
        names,
        count_problem=lambda n: (
            f"{field_count(n, chr(39) + '|' + chr(39) + '-separated ')}, "
            f"expected {len(names)} ({describe})"
        ),
    )


def _ml100k_genres(directory: Path) -> tuple[str, ...]:
    path = directory / "u.genre"
    if not path.exists():
        return ML100K_GENRES
    source = _pipe_source(path, ["name", "index"], "name|index")
    names: dict[int, str] = {}
    for chunk in source.chunks(1_000):
        index = timestamps(chunk.columns["index"], "index", source, chunk.first_row)
        for position, name in zip(index, optional_text(chunk.columns["name"]), strict=True):
            names[int(position)] = name or ""
    if sorted(names) != list(range(len(names))):
        raise InputError("genre indices are not 0..n-1", path=path)
    return tuple(names[i] for i in range(len(names)))


def _ml100k_items(directory: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    genres = _ml100k_genres(directory)
    names = ["id", "title", "release", "video", "imdb", *(f"g{i}" for i in range(len(genres)))]
    describe = f"id|title|release date|video release date|IMDb URL|{len(genres)} genre flags"
    source = _pipe_source(directory / "u.item", names, describe)
    for chunk in source.chunks(chunk_rows):
        rows = chunk.first_row
        movie_ids = ids(chunk.columns["id"], "movie id", source, rows)
        text = {name: chunk.columns[name].to_pylist() for name in names[1:]}
        records = []
        for i, movie_id in enumerate(movie_ids):
            flags = [text[f"g{g}"][i].strip() for g in range(len(genres))]
            for name, flag in zip(genres, flags, strict=True):
                if flag not in ("0", "1"):
                    raise source.error(f"genre flag {flag!r} is not 0 or 1", rows + i, name)
            features: dict = {"genres": [n for n, f in zip(genres, flags, strict=True) if f == "1"]}
            release = text["release"][i].strip()
            if release:
                try:
                    features["release_date"] = (
                        datetime.strptime(release, "%d-%b-%Y").date().isoformat()
                    )
                except ValueError:
                    raise source.error(
                        f"release date {release!r} is not like 01-Jan-1995", rows + i
                    ) from None
            if text["imdb"][i].strip():
                features["imdb_url"] = text["imdb"][i].strip()
            records.append(
                {"external_id": movie_id, "title": text["title"][i].strip(), "features": features}
            )
        yield pd.DataFrame(records)


def _latest_items(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    source = TableSource(
        path,
        Layout("csv"),
        count_problem=lambda n: (
            f"{field_count(n)}, expected 3 (movieId,title,genres); quote titles that contain commas"
        ),
    )
    _check_header(source, ["movieId", "title", "genres"])
    for chunk in source.chunks(chunk_rows):
        movie_ids = ids(chunk.columns["movieId"], "movieId", source, chunk.first_row)
        titles = [t.strip() for t in chunk.columns["title"].to_pylist()]
        records = []
        for movie_id, title, text in zip(
            movie_ids, titles, chunk.columns["genres"].to_pylist(), strict=True
        ):
            text = text.strip()
            genres = [] if text == "(no genres listed)" else text.split("|")
            features: dict = {"genres": [g for g in genres if g]}
            year = _YEAR_IN_TITLE.search(title)
            if year:
                features["year"] = int(year.group(1))
            records.append({"external_id": movie_id, "title": title, "features": features})
        yield pd.DataFrame(records)


def read_movielens(directory: str | Path) -> Interactions:
    """Read a MovieLens folder (100k or latest-small) into a users x items :class:`Interactions`.

    Ratings become ``Kind.RATING`` rows with value = rating (``ValueKind.RATING``)
    and their unix timestamps; users and items are numbered in order of first
    appearance (so the items map holds rated movies only).
    """
    return interactions_from_chunks(iter_movielens_ratings(directory))


__all__ = [
    "ML100K_GENRES",
    "iter_movielens_items",
    "iter_movielens_ratings",
    "movielens_layout",
    "read_movielens",
]
