"""The in-memory graph every model trains on: integer edges plus id maps.

Everything downstream of the store works on :class:`Interactions`, never on SQL
rows. A one-sided graph (accounts follow accounts, or friendships) has one id
map for both ends; a two-sided one (users x items) has two. Indices are
contiguous integers so that CSR matrices can be handed out directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum, nonmember
from pathlib import Path
from typing import Literal, Self

import numpy as np
import scipy.sparse as sp

from recgraph.errors import InputError
from recgraph.files import atomic_write


class _Code(IntEnum):
    """An integer code stored per row, read from and shown as its lower-case name."""

    @classmethod
    def parse(cls, name: str) -> Self:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(k.label for k in cls)
            raise ValueError(f"unknown {cls._what} {name!r}; expected one of {allowed}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Kind(_Code):
    """What an edge means. Only ``DISLIKE`` is negative feedback."""

    _what = nonmember("interaction kind")

    FOLLOW = 0
    LIKE = 1
    DISLIKE = 2
    VIEW = 3
    RATING = 4


class ValueKind(_Code):
    """What an edge's number means; stored per row beside :class:`Kind`.

    The same number is read in different ways: 2 is a poor rating but two
    plays of a song. Models read it through this code, never by guessing from
    the numbers.
    """

    _what = nonmember("value meaning")

    #: Binary: the edge happened; its value carries nothing (value 1).
    NONE = 0
    #: An explicit rating on a scale (stars): liked at or above a threshold.
    RATING = 1
    #: How many times (plays, views, clicks): confidence grows with the count.
    COUNT = 2
    #: A non-negative weight, used as given.
    WEIGHT = 3


#: Seconds in a day (timestamps are Unix seconds): the one copy the other modules import.
DAY = 86_400
#: Where on a rating scale "liked" starts: 4 of 1-5 stars, 8 of 1-10.
LIKED_RATING_SHARE = 0.75


def liked_rating(ratings: np.ndarray) -> float:
    """The lowest rating that counts as liked: ``LIKED_RATING_SHARE`` of the way up the scale seen."""
    ratings = np.asarray(ratings, dtype=np.float64)
    if not len(ratings):
        return float("inf")
    low, high = float(ratings.min()), float(ratings.max())
    return low + LIKED_RATING_SHARE * (high - low) if high > low else low


def default_value_kinds(kind: np.ndarray) -> np.ndarray:
    """Per-row value meanings where none were given: ratings are ratings, the rest binary."""
    kind = np.asarray(kind)
    return np.where(kind == Kind.RATING, ValueKind.RATING, ValueKind.NONE).astype(np.int8)


class IdMap:
    """A bijection between external ids (strings) and contiguous integers.

    External ids are strings everywhere (DIDs, handles, numeric ids as text);
    the position of an id in :attr:`ids` is its index.

    Held as two arrays, no per-id Python object: the ids as one fixed-width
    unicode array (as wide as the longest id) and the permutation that sorts
    them (``intp``: numpy converts any other ``sorter`` on every call); a
    lookup is a binary search (``np.searchsorted`` with the permutation as
    ``sorter``), many at once in one call. :meth:`save` writes both as
    ``.npy`` and :meth:`load` memory-maps them, so the processes serving one
    model share one copy of the pages. At 10^6 decimal ids that is 32 bytes
    an id (the dict and object array it replaces took about 277, in every
    worker). The width is the longest id's, 4 bytes a character: one id of
    255 characters (a long ``did:web:``) makes every row 1 KB; UTF-8 bytes
    with offsets would not, and are what to build if such ids appear.
    """

    __slots__ = ("_ids", "_order")

    def __init__(self, ids: Iterable[str] = (), *, _order: np.ndarray | None = None) -> None:
        arr = _text_array(ids)
        if _order is None:
            _order = _sorting_order(arr)
            _check_unique(arr, _order)
        elif len(_order) != len(arr):
            raise ValueError(f"IdMap: {len(_order)} sort positions for {len(arr)} ids")
        elif _order.dtype != np.intp:
            _order = _order.astype(np.intp)
        self._ids = arr
        self._order = _order

    @classmethod
    def factorize(cls, values: Sequence[str] | np.ndarray) -> tuple[IdMap, np.ndarray]:
        """Build a map in order of first appearance; return it with the codes of ``values``."""
        values = _text_array(values)
        unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        by_appearance = np.argsort(first, kind="stable")  # unique -> rank of first appearance
        rank = np.empty(len(unique), dtype=np.int64)
        rank[by_appearance] = np.arange(len(unique))
        # ids[rank[j]] = unique[j]: ``rank`` is the permutation that sorts the map's ids
        idmap = cls(unique[by_appearance], _order=rank)
        return idmap, rank[inverse.reshape(-1)]

    @property
    def ids(self) -> np.ndarray:
        """External ids as a unicode array (elements are ``str``); position = index."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return self.get(str(external_id)) >= 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and (
            self is other or (len(self) == len(other) and bool(np.all(self._ids == other._ids)))
        )

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        head = ", ".join(repr(str(x)) for x in self._ids[:3])
        return f"IdMap({len(self)} ids: {head}{', ...' if len(self) > 3 else ''})"

    def _find(self, values: np.ndarray) -> np.ndarray:
        """Index of each of ``values`` (a unicode array), ``-1`` where unknown."""
        if not len(self._ids) or not len(values):
            return np.full(len(values), -1, dtype=np.int64)
        if len(values) > _MANY:  # each distinct id once, in order: the search walks forward
            distinct, inverse = np.unique(values, return_inverse=True)
            return self._search(distinct)[inverse.reshape(-1)]
        return self._search(values)

    def _search(self, values: np.ndarray) -> np.ndarray:
        ids = np.asarray(self._ids)
        order = np.asarray(self._order)
        at = np.searchsorted(ids, values, sorter=order)
        np.minimum(at, len(ids) - 1, out=at)
        found = np.asarray(order[at], dtype=np.int64)
        found[ids[found] != values] = -1
        return found

    def index_of(self, external_id: str) -> int:
        """Index of one external id; ``KeyError`` naming it when unknown."""
        i = self.get(external_id)
        if i < 0:
            raise KeyError(f"unknown id {external_id!r}")
        return i

    def get(self, external_id: str, default: int = -1) -> int:
        external_id = str(external_id)
        if external_id.endswith("\x00"):  # no id holds one; numpy would drop it and match
            return default
        i = int(self._find(np.asarray([external_id]))[0])
        return default if i < 0 else i

    def index(self, external_ids: Iterable[str], missing: int | None = None) -> np.ndarray:
        """Indices of many external ids; unknown ones raise, or become ``missing``."""
        values = _text_array(external_ids)
        out = self._find(values)
        unknown = out < 0
        if unknown.any():
            if missing is None:
                raise KeyError(f"unknown id {str(values[np.argmax(unknown)])!r}")
            out[unknown] = missing
        return out

    def external(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """External ids of indices (object array of str)."""
        return self._ids[np.asarray(indices, dtype=np.int64)].astype(object)

    def extend(self, external_ids: Iterable[str]) -> IdMap:
        """A new map with unseen ``external_ids`` appended; existing indices are kept."""
        new = _text_array(external_ids)
        new = new[self._find(new) < 0]
        if not len(new):
            return self
        extra, _ = IdMap.factorize(new)  # in order of first appearance, once each
        return IdMap(np.concatenate([np.asarray(self._ids), extra.ids]))

    def extends(self, prefix: IdMap) -> bool:
        """Whether this map starts with ``prefix``'s ids, so every index of ``prefix`` keeps
        its meaning here (what :meth:`extend` keeps, and what re-indexing may skip)."""
        n = len(prefix)
        return self is prefix or (len(self) >= n and bool(np.all(self._ids[:n] == prefix._ids)))

    def to_array(self) -> np.ndarray:
        """A unicode array that ``np.savez`` stores without pickle."""
        return np.asarray(self._ids) if len(self) else np.zeros(0, dtype="<U1")

    @classmethod
    def from_array(cls, array: np.ndarray) -> IdMap:
        """A map over ``array`` (a memory map stays one: its pages are not copied)."""
        return cls(array)

    # ------------------------------------------------------------------ files
    @staticmethod
    def order_file(path: str | os.PathLike) -> Path:
        """Where :meth:`save` writes the sort permutation beside the ids file ``path``."""
        path = Path(path)
        return path.with_name(path.name.removesuffix(".npy") + ".order.npy")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ids to ``path`` (``.npy``, unicode) and their sort permutation beside it
        (:meth:`order_file`), both plain arrays for :meth:`load` to memory-map."""
        path = Path(path)
        for target, array in ((self.order_file(path), self._order), (path, self.to_array())):
            if isinstance(array, np.memmap) and Path(array.filename or "") == target.resolve():
                continue  # a map of that very file
            with atomic_write(target) as handle:
                np.save(handle, np.asarray(array), allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> IdMap:
        """The map :meth:`save` wrote, its arrays memory-mapped read-only (``mmap``): every
        process that opens the same files shares their pages. A file without its permutation
        (saved before it was written) loads too, the permutation computed."""
        mode = "r" if mmap else None
        ids = np.load(path, mmap_mode=mode, allow_pickle=False)
        order_path = cls.order_file(path)
        if not order_path.exists():
            return cls(ids)
        order = np.load(order_path, mmap_mode=mode, allow_pickle=False)
        if ids.ndim != 1 or ids.dtype.kind != "U" or len(order) != len(ids):
            raise InputError(f"{path}: not an id map saved by IdMap.save (or its order differs)")
        if not _sorts_sample(ids, order):  # e.g. the ids file replaced, its order left behind
            raise InputError(f"{path}: its order file {order_path.name} does not sort its ids")
        return cls(ids, _order=order)


def _text_array(values: Iterable[object]) -> np.ndarray:
    """``values`` as a one-dimensional unicode array (each element as ``str(x)``)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return values.reshape(-1)
    if not isinstance(values, np.ndarray | list | tuple):
        values = list(values)
    arr = np.asarray(values, dtype=object) if len(values) else np.zeros(0, dtype="<U1")
    if arr.dtype == object:
        arr = arr.reshape(-1)
        if not all(type(x) is str for x in arr):  # str(b"x") is "b'x'", as str() always gave
            arr = np.asarray([str(x) for x in arr], dtype=object)
        text = arr.astype(str).reshape(-1)
        # numpy's unicode arrays drop trailing NULs: "a\x00" would become "a"
        if sum(map(len, arr)) != int(np.strings.str_len(text).sum()):
            bad = next(x for x in arr if x.endswith("\x00"))
            raise ValueError(f"external id {bad!r} ends in a NUL character, which ids cannot hold")
        return text
    return arr.astype(str).reshape(-1)


#: Lookups of more ids than this at once go through their distinct sorted values
#: (10^6 random lookups in 10^6 ids: 1.1 CPU s instead of 2.6).
_MANY = 4096


def _sorts_sample(ids: np.ndarray, order: np.ndarray, pairs: int = 1024) -> bool:
    """Whether ``order`` sorts ``ids`` strictly at ``pairs`` evenly spread neighbours: an order
    that belongs to other ids fails almost surely, without reading every page of a large map."""
    if len(ids) < 2:
        return True
    at = np.unique(np.linspace(0, len(ids) - 2, min(pairs, len(ids) - 1)).astype(np.int64))
    order = np.asarray(order)
    if order[at].min() < 0 or max(order[at].max(), order[at + 1].max()) >= len(ids):
        return False
    return bool(np.all(ids[order[at]] < ids[order[at + 1]]))


def _sorting_order(ids: np.ndarray) -> np.ndarray:
    return np.argsort(ids, kind="stable").astype(np.intp)


def _check_unique(ids: np.ndarray, order: np.ndarray) -> None:
    """``ValueError`` naming the first id (in ``ids``' order) seen twice."""
    if len(ids) < 2:
        return
    ranked = ids[order]
    repeats = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
    if len(repeats):
        # a stable sort keeps equal ids in their order: each repeat is a later occurrence
        dup = ids[int(order[repeats].min())]
        raise ValueError(f"duplicate external id {str(dup)!r} in IdMap")


Side = Literal["out", "in", "both"]


@dataclass(frozen=True, eq=False)
class Interactions:
    """Edges ``src -> dst`` with values, timestamps and kinds, plus their id maps.

    Parameters
    ----------
    src, dst
        Integer indices into ``users`` and ``items`` (the same map when
        ``one_sided``).
    users, items
        Id maps. For a one-sided graph ``items is users``.
    value
        Edge weight or rating (float32); 1 where the source had none.
    timestamp
        Unix seconds (int64), or ``None`` when the data has no time.
    kind
        :class:`Kind` codes (int8).
    value_kind
        :class:`ValueKind` codes (int8), what each row's ``value`` means;
        ``None`` derives them from ``kind`` (:func:`default_value_kinds`).
    one_sided
        Accounts -> accounts (True) or users -> items (False).
    directed
        For one-sided graphs: follows (True) or friendships (False). An
        undirected graph stores each pair once; :meth:`csr` symmetrises it.
    """

    src: np.ndarray
    dst: np.ndarray
    users: IdMap
    items: IdMap
    value: np.ndarray
    kind: np.ndarray
    timestamp: np.ndarray | None = None
    one_sided: bool = False
    directed: bool = True
    value_kind: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.src)
        if self.value_kind is None:
            object.__setattr__(self, "value_kind", default_value_kinds(self.kind))
        elif len(self.value_kind) != n:
            raise ValueError(
                f"Interactions.value_kind has {len(self.value_kind)} rows, src has {n}"
            )
        for name in ("dst", "value", "kind"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Interactions.{name} has {len(getattr(self, name))} rows, src has {n}"
                )
        if self.timestamp is not None and len(self.timestamp) != n:
            raise ValueError("Interactions.timestamp length differs from src")
        if self.one_sided and self.items is not self.users:
            raise ValueError("a one-sided graph must use one id map for both ends")
        if not self.one_sided and not self.directed:
            raise ValueError("a users x items graph is always directed")
        if n:
            if self.src.min() < 0 or self.src.max() >= len(self.users):
                raise ValueError("src index out of range of the users id map")
            if self.dst.min() < 0 or self.dst.max() >= len(self.items):
                raise ValueError("dst index out of range of the items id map")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_arrays(
        cls,
        src: Sequence | np.ndarray,
        dst: Sequence | np.ndarray,
        *,
        value: Sequence | np.ndarray | None = None,
        timestamp: Sequence | np.ndarray | None = None,
        kind: Sequence | np.ndarray | Kind | None = None,
        value_kind: Sequence | np.ndarray | ValueKind | None = None,
        one_sided: bool = False,
        directed: bool = True,
        users: IdMap | None = None,
        items: IdMap | None = None,
        unknown: Literal["error", "extend"] = "extend",
    ) -> Interactions:
        """Build from external ids.

        ``users`` / ``items`` fix the id maps (e.g. a test set indexed like its
        train set). With ``unknown="extend"`` ids they lack are appended after
        the existing ones, so every known index keeps its meaning; with
        ``"error"`` an unknown id raises ``KeyError``.
        """
        src = _text_array(src)
        dst = _text_array(dst)
        if len(src) != len(dst):
            raise ValueError("src and dst differ in length")
        if one_sided:
            base = users if users is not None else items
            if base is None:
                base, _ = IdMap.factorize(np.concatenate([src, dst]))
            elif unknown == "extend":
                base = base.extend(np.concatenate([src, dst]))
            users = items = base
        else:
            if users is None:
                users, _ = IdMap.factorize(src)
            elif unknown == "extend":
                users = users.extend(src)
            if items is None:
                items, _ = IdMap.factorize(dst)
            elif unknown == "extend":
                items = items.extend(dst)
        assert users is not None and items is not None
        src_idx = users.index(src)
        dst_idx = items.index(dst)
        n = len(src_idx)
        if isinstance(kind, Kind | int) or kind is None:
            default = Kind.FOLLOW if one_sided else Kind.LIKE
            kind_arr = np.full(n, int(default if kind is None else kind), dtype=np.int8)
        else:
            kind_arr = np.asarray(kind, dtype=np.int8)
        return cls(
            src=src_idx,
            dst=dst_idx,
            users=users,
            items=items,
            value=np.ones(n, np.float32) if value is None else np.asarray(value, dtype=np.float32),
            kind=kind_arr,
            timestamp=None if timestamp is None else np.asarray(timestamp, dtype=np.int64),
            one_sided=one_sided,
            directed=directed,
            value_kind=_value_kind_array(value_kind, n),
        )

    @classmethod
    def from_indices(
        cls,
        src: np.ndarray,
        dst: np.ndarray,
        *,
        n_users: int,
        n_items: int | None = None,
        one_sided: bool = False,
        directed: bool = True,
        value: np.ndarray | None = None,
        timestamp: np.ndarray | None = None,
        kind: np.ndarray | Kind | None = None,
        value_kind: np.ndarray | ValueKind | None = None,
    ) -> Interactions:
        """Build from integer indices; external ids are the indices as text."""
        users = IdMap(np.arange(n_users).astype(str))
        items = users if one_sided else IdMap(np.arange(n_items or 0).astype(str))
        src = np.asarray(src, dtype=np.int64)
        n = len(src)
        if isinstance(kind, Kind | int) or kind is None:
            default = Kind.FOLLOW if one_sided else Kind.LIKE
            kind = np.full(n, int(default if kind is None else kind), dtype=np.int8)
        return cls(
            src=src,
            dst=np.asarray(dst, dtype=np.int64),
            users=users,
            items=items,
            value=np.ones(n, np.float32) if value is None else np.asarray(value, np.float32),
            kind=np.asarray(kind, dtype=np.int8),
            timestamp=None if timestamp is None else np.asarray(timestamp, np.int64),
            one_sided=one_sided,
            directed=directed,
            value_kind=_value_kind_array(value_kind, n),
        )

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return len(self.src)

    def __repr__(self) -> str:
        shape = "accounts" if self.one_sided else "users x items"
        direction = "directed" if self.directed else "undirected"
        return (
            f"Interactions({len(self):,} edges, {shape}, {direction}, "
            f"{self.n_users:,} x {self.n_items:,}, timestamps={self.has_timestamps})"
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def has_timestamps(self) -> bool:
        return self.timestamp is not None

    @property
    def graph_kind(self) -> str:
        """``items``, ``follows`` or ``friends``: the three shapes of the evaluate command."""
        if not self.one_sided:
            return "items"
        return "follows" if self.directed else "friends"

    # ------------------------------------------------------------------ views
    def subset(self, rows: np.ndarray) -> Interactions:
        """The rows selected by a boolean mask or an index array, same id maps."""
        rows = np.asarray(rows)
        return replace(
            self,
            src=self.src[rows],
            dst=self.dst[rows],
            value=self.value[rows],
            kind=self.kind[rows],
            value_kind=self.value_kind[rows],
            timestamp=None if self.timestamp is None else self.timestamp[rows],
            _cache={},
        )

    def positives(self) -> Interactions:
        """Everything but dislikes: what a model should learn to recommend."""
        mask = self.kind != Kind.DISLIKE
        return self if mask.all() else self.subset(mask)

    def liked(self) -> np.ndarray:
        """Boolean mask of the rows that say the user liked the target.

        Every row but a dislike, except ratings below :func:`liked_rating`
        (a film rated 2 of 5 stars was seen, not liked). What a reason may cite
        and what a ranker learns as a positive.
        """
        mask = self.kind != Kind.DISLIKE
        rating = self.value_kind == ValueKind.RATING
        if rating.any():
            mask &= ~rating | (self.value >= liked_rating(self.value[rating]))
        return mask

    def negatives(self) -> Interactions:
        """Dislikes only: always excluded from recommendations."""
        return self.subset(self.kind == Kind.DISLIKE)

    def with_id_maps(self, users: IdMap, items: IdMap | None = None) -> Interactions:
        """The same edges re-indexed onto maps that extend the current ones."""
        items = users if self.one_sided else items
        assert items is not None
        if users is self.users and items is self.items:
            return self
        for old, new, name in ((self.users, users, "users"), (self.items, items, "items")):
            if not new.extends(old):
                raise ValueError(f"new {name} id map does not extend the current one")
        return replace(self, users=users, items=items, _cache={})

    def reindexed_onto(self, users: IdMap, items: IdMap) -> Interactions:
        """The same rows on maps that extend ``users`` / ``items`` (the same object for an
        account graph): a model's or a train set's maps, so index ``i`` means the same node.

        When this was built on those maps (``Interactions.from_arrays(...,
        users=model.users, items=model.items)``) its maps already extend them
        and nothing is copied. Otherwise its external ids are looked up, and
        ids ``users`` / ``items`` lack are appended after the known ones, so
        every index they hold keeps its meaning.
        """
        if self.one_sided != (users is items):
            raise ValueError("new interactions and the model differ in graph shape")
        if self.users.extends(users) and self.items.extends(items):
            return self
        merged_users = users.extend(self.users.ids)
        merged_items = merged_users if self.one_sided else items.extend(self.items.ids)
        return replace(
            self,
            src=merged_users.index(self.users.external(self.src)),
            dst=merged_items.index(self.items.external(self.dst)),
            users=merged_users,
            items=merged_items,
            _cache={},
        )

    def concat(self, other: Interactions) -> Interactions:
        """Rows of both, on the union of their id maps (``other``'s new ids appended)."""
        if (self.one_sided, self.directed) != (other.one_sided, other.directed):
            raise ValueError("cannot concatenate graphs of different shape")
        users = self.users.extend(other.users.ids)
        items = users if self.one_sided else self.items.extend(other.items.ids)
        a = self.with_id_maps(users, items)
        o_src = users.index(other.users.external(other.src))
        o_dst = items.index(other.items.external(other.dst))
        both_ts = a.timestamp is not None and other.timestamp is not None
        return replace(
            a,
            src=np.concatenate([a.src, o_src]),
            dst=np.concatenate([a.dst, o_dst]),
            value=np.concatenate([a.value, other.value]),
            kind=np.concatenate([a.kind, other.kind]),
            value_kind=np.concatenate([a.value_kind, other.value_kind]),
            timestamp=np.concatenate([a.timestamp, other.timestamp]) if both_ts else None,
            _cache={},
        )

    def pair_keys(self) -> np.ndarray:
        """One int64 key per row identifying its (src, dst) pair; undirected pairs ordered."""
        src, dst = self.src, self.dst
        if self.one_sided and not self.directed:
            src, dst = np.minimum(src, dst), np.maximum(src, dst)
        return src.astype(np.int64) * np.int64(self.n_items) + dst.astype(np.int64)

    def dedupe(self, keep: Literal["first", "last"] = "first") -> Interactions:
        """One row per pair: the earliest (``first``) or latest row by time, else by order."""
        keys = self.pair_keys()
        if self.timestamp is not None:
            order = np.lexsort((self.timestamp, keys))
        else:
            order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if keep == "first":
            boundary = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        else:
            boundary = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]
        rows = np.sort(order[boundary])
        return self if len(rows) == len(self) else self.subset(rows)

    # ------------------------------------------------------------------ matrices
    def csr(self, weight: Literal["binary", "value", "count"] = "binary") -> sp.csr_matrix:
        """The ``n_users x n_items`` matrix (symmetric for friendships).

        ``binary`` puts 1 on every pair present, ``count`` the number of rows
        of a pair, ``value`` the sum of their values.
        """
        cached = self._cache.get(("csr", weight))
        if cached is not None:
            return cached
        src, dst = self.src, self.dst
        data = self.value if weight == "value" else np.ones(len(src), np.float32)
        if self.one_sided and not self.directed:
            loops = src == dst
            src, dst = np.concatenate([src, dst[~loops]]), np.concatenate([dst, src[~loops]])
            data = np.concatenate([data, data[~loops]])
        matrix = sp.csr_matrix(
            (data.astype(np.float32), (src, dst)), shape=(self.n_users, self.n_items)
        )
        matrix.sum_duplicates()
        if weight == "binary":
            matrix.data[:] = 1.0
        matrix.sort_indices()
        self._cache[("csr", weight)] = matrix
        return matrix

    def adjacency(self, side: Side = "out") -> sp.csr_matrix:
        """Binary adjacency of a one-sided graph: out-edges, in-edges or both."""
        if not self.one_sided:
            raise ValueError("adjacency() is for one-sided (account) graphs; use csr()")
        a = self.csr("binary")
        if side == "out" or not self.directed:
            return a
        if side == "in":
            return a.T.tocsr()
        both = (a + a.T).tocsr()
        both.data[:] = 1.0
        return both

    def seen(self) -> sp.csr_matrix:
        """What each user already has (any kind, dislikes included): excluded from results."""
        return self.csr("binary")

    def user_counts(self) -> np.ndarray:
        """Rows per user (as source)."""
        return np.bincount(self.src, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Rows per target."""
        return np.bincount(self.dst, minlength=self.n_items)

    def active_users(self) -> np.ndarray:
        """Boolean mask of users that occur in the data (either end for account graphs)."""
        mask = np.zeros(self.n_users, dtype=bool)
        mask[self.src] = True
        if self.one_sided:
            mask[self.dst] = True
        return mask

    def active_targets(self) -> np.ndarray:
        """Boolean mask of the targets that occur (either end for friendships)."""
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.dst] = True
        if self.one_sided and not self.directed:
            mask[self.src] = True
        return mask

    # ------------------------------------------------------------------ files
    @classmethod
    def read_table(
        cls,
        path: str,
        kind: Literal["items", "follows", "friends"],
        *,
        users: IdMap | None = None,
        items: IdMap | None = None,
        format: str | None = None,
        sep: str | None = None,
        value_kind: str | None = None,
    ) -> Interactions:
        """Read a CSV/TSV/Parquet file with a header, as the ``evaluate`` command takes.

        Columns: ``user,item[,rating|value[,value_kind]][,timestamp]`` for
        ``items``; ``src,dst[,timestamp]`` for ``follows`` and ``friends``. The
        same rules as every import (:mod:`recgraph.data.parsing`); see
        :mod:`recgraph.data.pair_files` for the layouts and ``--value``.
        """
        from recgraph.data.pair_files import read_pairs

        columns = read_pairs(
            path,
            kind,
            [v.label for v in ValueKind],
            format=format,
            sep=sep,
            value_kind=value_kind,
        )
        meaning = columns["value_kind"]
        return cls.from_arrays(
            columns["src"],
            columns["dst"],
            value=columns["value"],
            timestamp=columns["timestamp"],
            kind=Kind.RATING if columns["rating"] else None,
            value_kind=ValueKind.parse(meaning)
            if isinstance(meaning, str)
            else _value_kind_codes(meaning),
            one_sided=kind != "items",
            directed=kind != "friends",
            users=users,
            items=items,
        )


def _value_kind_codes(labels: np.ndarray) -> np.ndarray:
    """:class:`ValueKind` codes of an array of labels (already validated)."""
    names = np.asarray([v.label for v in ValueKind], dtype=object)
    codes = np.asarray([int(v) for v in ValueKind], dtype=np.int8)
    order = np.argsort(names)
    return codes[order][np.searchsorted(names[order], labels)]


def _value_kind_array(value_kind, n: int) -> np.ndarray | None:
    """``None`` (derive from kind), one :class:`ValueKind` for every row, or one per row."""
    if value_kind is None:
        return None
    if isinstance(value_kind, ValueKind | int):
        return np.full(n, int(value_kind), dtype=np.int8)
    return np.asarray(value_kind, dtype=np.int8)
