"""What a training run reads from the store, taken in one pass and handed on whole.

Training used to wander: pipeline -> store -> pipeline -> serving -> pipeline
-> store, each step reading one more piece. A :class:`TrainingSnapshot` is
every piece at once: the follow graph, the interactions, the names that make
answers readable, when each item was posted and by whom, and a summary (row
counts, time range, content hash) small enough for a registry manifest.
Everything below the service trains from it; nothing below ``serving``
builds it but this module.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.item_features import ItemFeatures

if TYPE_CHECKING:
    from recgraph.data.store import Store


def data_snapshot(data: Interactions) -> dict[str, Any]:
    """What a model was trained on, small enough for a manifest.

    Returns row and id counts, the graph shape, rows per interaction kind,
    the time range (when there are timestamps) and :func:`content_hash`.
    """
    kinds = np.bincount(data.kind.astype(np.int64), minlength=len(Kind)) if len(data) else []
    snapshot: dict[str, Any] = {
        "rows": len(data),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "graph_kind": data.graph_kind,
        "kinds": {Kind(i).label: int(n) for i, n in enumerate(kinds) if n},
        "time_range": None,
        "content_hash": content_hash(data),
    }
    if data.timestamp is not None and len(data):
        start, end = int(data.timestamp.min()), int(data.timestamp.max())
        snapshot["time_range"] = {
            "start": start,
            "end": end,
            "start_utc": utc_iso(start),
            "end_utc": utc_iso(end),
        }
    return snapshot


#: Rows hashed per block: the hash never holds a sorted copy of a whole column.
HASH_BLOCK = 1 << 20


def content_hash(data: Interactions) -> str:
    """``sha256:<hex>`` of the edges and id maps, independent of row order.

    Rows are hashed sorted by (src, dst, kind, timestamp, value), so the same
    snapshot read back in another order hashes the same; the id maps are
    hashed in index order, since indices are what a model's state refers to.
    Rows already in that order with distinct (src, dst) pairs (a follow graph
    as the store reads it) are hashed as they are, without sorting, and every
    column goes in by blocks: memory is one block, not a copy of the data.
    """
    digest = hashlib.sha256()
    digest.update(f"one_sided={data.one_sided};directed={data.directed};".encode())
    n = len(data)
    order = None
    if not _distinct_sorted_pairs(data.src, data.dst):
        timestamp = data.timestamp if data.timestamp is not None else np.zeros(n, np.int64)
        order = np.lexsort((data.value, timestamp, data.kind, data.dst, data.src))
    for name, column, dtype in (
        ("src", data.src, "<i8"),
        ("dst", data.dst, "<i8"),
        ("kind", data.kind, "<i1"),
        ("timestamp", data.timestamp, "<i8"),
        ("value", data.value, "<f4"),
    ):
        digest.update(name.encode())
        for start in range(0, n, HASH_BLOCK):
            stop = min(start + HASH_BLOCK, n)
            if column is None:  # no timestamps: zeros
                part = np.zeros(stop - start, np.int64)
            else:
                part = column[start:stop] if order is None else column[order[start:stop]]
            digest.update(np.ascontiguousarray(part, dtype=dtype))
    digest.update(f"timestamps={data.timestamp is not None};".encode())
    for name, ids in (("users", data.users.ids), ("items", data.items.ids)):
        digest.update(f"{name}:{len(ids)}:".encode())
        digest.update("\x1f".join(ids.tolist()).encode())
    return "sha256:" + digest.hexdigest()


def _distinct_sorted_pairs(src: np.ndarray, dst: np.ndarray) -> bool:
    """Whether ``(src, dst)`` strictly increase row by row (then no sort changes the order)."""
    n = len(src)
    for start in range(0, max(n - 1, 0), HASH_BLOCK):
        stop = min(start + HASH_BLOCK + 1, n)
        step = np.diff(src[start:stop])
        if (step < 0).any() or ((step == 0) & (np.diff(dst[start:stop]) <= 0)).any():
            return False
    return True


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block (as it was, after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _same_ids(held: np.ndarray, read: np.ndarray) -> bool:
    """Whether two id columns hold the same strings in the same order."""
    return len(held) == len(read) and bool(np.all(held == read))


def utc_iso(seconds: float | None = None) -> str | None:
    """``2026-01-02T03:04:05Z`` for unix seconds (now when ``None``)."""
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(values: Any) -> np.ndarray:
    """Strings with ``""`` for every missing value (None, NaN, pandas NA)."""
    series = pd.Series(values, dtype=object)
    return np.asarray(
        [
            "" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in series
        ],
        dtype=object,
    )


@dataclass(frozen=True)
class TrainingSnapshot:
    """Everything one training run needs from the store.

    Attributes
    ----------
    follows, interactions
        The follow (or friendship) graph and the users x items interactions;
        ``None`` when the store holds none.
    account_ids, handles
        Every account and its handle (``""`` when none), to resolve queries
        and write reasons.
    item_ids, titles, authors, item_created_at
        Every item, its title and author account (``""`` when none) and when
        it was posted (unix seconds, NaN when unknown).
    items
        The items table as read (``external_id, author, title, created_at,
        features``), for models that use item side data.
    """

    follows: Interactions | None = None
    interactions: Interactions | None = None
    account_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    handles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    titles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    authors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    item_created_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    items: pd.DataFrame | None = None

    @classmethod
    def from_store(cls, store: Store) -> TrainingSnapshot:
        """Read the graphs and the names from ``store``.

        Python's cycle collector is paused meanwhile: the read makes a tuple per row and
        keeps the id maps alive (a dict of every account), so each full collection walked
        that dict again; at 10^8 follows 60% of the read's CPU was the collector (perf
        samples). The read makes no cycles: reference counts free every row.
        """
        with _collector_paused():
            counts = store.counts()
            follows = store.follows_graph() if counts.get("follows") else None
            ids, handles = store.account_names()
            same = follows is not None and _same_ids(follows.users.ids, ids)
            snapshot = cls.from_frames(
                follows=follows,
                interactions=store.interactions_graph() if counts.get("interactions") else None,
                accounts=pd.DataFrame({"external_id": ids, "handle": handles}, dtype=object),
                items=store.items_frame(),
            )
            if same:  # the id map's array, not a second copy of every id (as Python strings)
                assert follows is not None
                snapshot = replace(snapshot, account_ids=follows.users.ids)
            return snapshot

    @classmethod
    def from_frames(
        cls,
        *,
        follows: Interactions | None = None,
        interactions: Interactions | None = None,
        accounts: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
    ) -> TrainingSnapshot:
        """From graphs and the store's ``accounts_frame`` / ``items_frame`` shapes."""
        accounts = accounts if accounts is not None else pd.DataFrame()
        items = items if items is not None else pd.DataFrame()

        def column(frame: pd.DataFrame, name: str) -> Any:
            return frame[name] if name in frame.columns else [None] * len(frame)

        created = pd.to_numeric(pd.Series(column(items, "created_at")), errors="coerce")
        return cls(
            follows=follows if follows is not None and len(follows) else None,
            interactions=interactions if interactions is not None and len(interactions) else None,
            account_ids=_text(column(accounts, "external_id")),
            handles=_text(column(accounts, "handle")),
            item_ids=_text(column(items, "external_id")),
            titles=_text(column(items, "title")),
            authors=_text(column(items, "author")),
            item_created_at=created.to_numpy(np.float64, na_value=np.nan),
            items=items if len(items.columns) else None,
        )

    def graph(self, question_graph: str) -> Interactions | None:
        """The graph a question trains on: ``follows`` or ``items``."""
        return self.interactions if question_graph == "items" else self.follows

    def item_times(self, data: Interactions) -> np.ndarray | None:
        """When each item of ``data`` was posted (NaN: unknown); ``None`` when no item has a time."""
        return _lookup_per_item(self.item_ids, self.item_created_at, data, np.nan)

    def item_authors(self, data: Interactions) -> np.ndarray | None:
        """The author of each item of ``data`` (``""``: none); ``None`` when no item has one."""
        if not len(self.authors) or not any(self.authors):
            return None
        lookup = dict(zip(self.item_ids.tolist(), self.authors.tolist(), strict=True))
        return np.asarray([lookup.get(str(i), "") for i in data.items.ids], dtype=object)

    def item_features(self) -> ItemFeatures | None:
        """Titles, genres and creation times for the models that read item side data."""
        if self.items is None or not len(self.items):
            return None
        return ItemFeatures.from_frame(self.items)

    def summary(self) -> dict[str, Any]:
        """What the registry manifest records: per graph :func:`data_snapshot`, and the rows."""
        parts = {
            name: data_snapshot(data)
            for name, data in (("who_to_follow", self.follows), ("feed", self.interactions))
            if data is not None
        }
        return {"rows": sum(p["rows"] for p in parts.values()), **parts}


def _lookup_per_item(
    keys: np.ndarray, values: np.ndarray, data: Interactions, missing: float
) -> np.ndarray | None:
    if not len(keys) or np.isnan(values).all():
        return None
    lookup = dict(zip(keys.tolist(), values.tolist(), strict=True))
    return np.asarray([lookup.get(str(i), missing) for i in data.items.ids], dtype=np.float64)
