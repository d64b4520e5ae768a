"""History lookup: what each user of a question already has, and how they had it.

The first part of a question's pipeline. Every rule that depends on a user's
past reads it here, from the training graph, never from a retriever's
private state:

- ``seen``: every target the user had, dislikes included (never shown again);
- ``counts``: targets the user had without disliking them (who is cold);
- ``liked``: the targets that say the user liked them (:meth:`Interactions.liked`),
  with the kind and value of that interaction, so that a reason may only cite
  what the user liked and can say how ("liked", "rated highly", "viewed");
- ``own``: on a feed, the items each user posted (never recommended to them);
- ``item_created_at``: when each item was posted, for the freshness window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recgraph.data.graph_csr import (
    binary_csr_files,
    index_dtype,
    load_array,
    load_binary_csr,
    save_array,
    save_binary_csr,
)
from recgraph.data.interactions import IdMap, Interactions, Kind, ValueKind
from recgraph.errors import InputError
from recgraph.files import load_arrays, read_manifest, saved_folder

#: The history's folder in a question's folder: ``.npy`` arrays, memory-mapped on load.
HISTORY_DIR = "history"
HISTORY_MANIFEST = "history.json"
HISTORY_FORMAT = 1
#: What pipelines saved before the history was memory-mapped (read fully; still loads).
HISTORY_FILE = "history.npz"


def _csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape) -> sp.csr_matrix:
    return sp.csr_matrix((data, indices, indptr), shape=shape)


class History:
    """The training history of one question, as the serving rules and reasons read it.

    Parameters
    ----------
    users, items
        The question's id maps (the same map for account graphs).
    graph_kind
        ``items``, ``follows`` or ``friends``.
    seen
        Binary ``users x targets``: everything each user had (dislikes included).
    liked
        ``users x targets`` whose entries index ``liked_kind`` / ``liked_value``.
    liked_kind, liked_value, liked_value_kind
        Per liked entry: the :class:`Kind` of the interaction, its value and
        what the value means (:class:`ValueKind`).
    counts
        Per user, the targets had without disliking them (a 1-star rating
        counts: the user was active), on an account graph the accounts tied
        either way (followed or following): who is cold.
    own
        ``users x items``: the items each user posted (``None``: unknown).
    item_created_at
        Per target, when it was posted (unix seconds, NaN unknown), or ``None``.
    """

    def __init__(
        self,
        users: IdMap,
        items: IdMap,
        graph_kind: str,
        seen: sp.csr_matrix,
        liked: sp.csr_matrix,
        liked_kind: np.ndarray,
        liked_value: np.ndarray,
        liked_value_kind: np.ndarray,
        counts: np.ndarray,
        own: sp.csr_matrix | None = None,
        item_created_at: np.ndarray | None = None,
    ) -> None:
        shape = (len(users), len(items))
        for name, matrix in (("seen", seen), ("liked", liked), ("own", own)):
            if matrix is not None and matrix.shape != shape:
                raise ValueError(f"history.{name} has shape {matrix.shape}, expected {shape}")
        if item_created_at is not None and len(item_created_at) != len(items):
            raise ValueError("item_created_at needs one entry per target")
        self.users, self.items, self.graph_kind = users, items, graph_kind
        self.seen, self.liked, self.own = seen, liked, own
        self.liked_kind = np.asarray(liked_kind, dtype=np.int8)
        self.liked_value = np.asarray(liked_value, dtype=np.float32)
        self.liked_value_kind = np.asarray(liked_value_kind, dtype=np.int8)
        self.item_created_at = item_created_at
        self.counts = np.asarray(counts, dtype=np.int64)
        if len(self.counts) != len(users):
            raise ValueError("history.counts needs one entry per user")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_interactions(
        cls,
        data: Interactions,
        *,
        item_created_at: np.ndarray | None = None,
        item_authors: np.ndarray | None = None,
    ) -> History:
        """The history of ``data``; ``item_authors`` are account ids per item (``""``: none)."""
        shape = (data.n_users, data.n_items)
        mask = data.liked()
        # every row liked (a follow graph): the rows themselves, not a copy of every column
        liked_rows = data if mask.all() else data.subset(mask)
        if data.one_sided:
            # the liked matrix shares the seen matrix's arrays when every row is liked; every
            # entry is a follow, so kind, value and value kind are one value (views, no array)
            matrix = liked_rows.csr("binary")
            n = matrix.nnz
            kinds = np.broadcast_to(np.int8(Kind.FOLLOW), (n,))
            values = np.broadcast_to(np.float32(1.0), (n,))
            value_kinds = np.broadcast_to(np.int8(ValueKind.NONE), (n,))
            entries = np.arange(n, dtype=index_dtype(n))
            liked = _csr(matrix.indptr, matrix.indices, entries, shape)
        else:
            latest = liked_rows.dedupe(keep="last")
            order = sp.csr_matrix(
                (np.arange(len(latest), dtype=np.int64) + 1, (latest.src, latest.dst)), shape=shape
            )
            order.sort_indices()
            rows = order.data - 1
            kinds, values = latest.kind[rows], latest.value[rows]
            value_kinds = latest.value_kind[rows]
            liked = _csr(order.indptr, order.indices, np.arange(order.nnz), shape)
        own = None
        if item_authors is not None and not data.one_sided:
            authors = np.asarray(item_authors, dtype=object)
            owner = data.users.index([a for a in authors], missing=-1)
            has = owner >= 0
            items = np.flatnonzero(has)
            own = sp.csr_matrix((np.ones(len(items), np.float32), (owner[has], items)), shape=shape)
        return cls(
            data.users,
            data.items,
            data.graph_kind,
            data.seen(),
            liked,
            kinds,
            values,
            value_kinds,
            _counts(data),
            own,
            None if item_created_at is None else np.asarray(item_created_at, np.float64),
        )

    @classmethod
    def from_seen(cls, seen: sp.csr_matrix, users: IdMap, items: IdMap, graph_kind: str) -> History:
        """What a lone model knows: its seen matrix (every entry taken as liked)."""
        seen = sp.csr_matrix(seen)
        n = seen.nnz
        liked = _csr(seen.indptr, seen.indices, np.arange(n, dtype=index_dtype(n)), seen.shape)
        kind = Kind.LIKE if graph_kind == "items" else Kind.FOLLOW
        return cls(
            users,
            items,
            graph_kind,
            seen,
            liked,
            np.broadcast_to(np.int8(kind), (n,)),
            np.broadcast_to(np.float32(1.0), (n,)),
            np.broadcast_to(np.int8(ValueKind.NONE), (n,)),
            np.diff(seen.indptr).astype(np.int64),
        )

    # ------------------------------------------------------------------ reading
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_targets(self) -> int:
        return len(self.items)

    @property
    def one_sided(self) -> bool:
        return self.graph_kind != "items"

    def user_indices(self, external_ids) -> np.ndarray:
        """Indices of external user ids, ``-1`` for users the question never saw."""
        return self.users.index(list(external_ids), missing=-1)

    def target_indices(self, external_ids) -> np.ndarray:
        """Indices of the known external target ids (unknown ones are left out)."""
        indices = self.items.index(list(external_ids), missing=-1)
        return indices[indices >= 0]

    def liked_entries(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(targets, kinds, values, value_kinds)`` the user liked."""
        lo, hi = self.liked.indptr[user], self.liked.indptr[user + 1]
        entries = self.liked.data[lo:hi]
        return (
            self.liked.indices[lo:hi],
            self.liked_kind[entries],
            self.liked_value[entries],
            self.liked_value_kind[entries],
        )

    # ------------------------------------------------------------------ persistence
    def seen_files(self, folder: Path) -> list[Path]:
        """The files :meth:`save` writes the seen matrix to (a retriever trained on the same
        matrix links its own to them: one copy on disk and in the page cache)."""
        return binary_csr_files(Path(folder) / HISTORY_DIR, "seen")

    def id_files(self, folder: Path) -> dict[str, Path]:
        """The files :meth:`save` writes the id maps to (``users``, and ``items`` if its own)."""
        base = Path(folder) / HISTORY_DIR
        return {
            "users": base / "users.npy",
            "items": base / ("users.npy" if self.one_sided else "items.npy"),
        }

    def save(self, folder: Path) -> None:
        """Write ``history/`` in the question's ``folder``: plain ``.npy`` arrays (int32 indices
        where they fit) and ``history.json`` (written last), memory-mapped by :meth:`load`.

        The liked matrix is written only where it differs from the seen one
        (a follow graph: the same entries).
        """
        seen = sp.csr_matrix(self.seen)
        if not seen.has_canonical_format:  # what save_binary_csr writes, and liked is read as
            seen = seen.copy()
            seen.sum_duplicates()
        liked_is_seen = self.liked.indptr is seen.indptr and self.liked.indices is seen.indices
        if not liked_is_seen:
            liked_is_seen = np.array_equal(self.liked.indptr, seen.indptr) and np.array_equal(
                self.liked.indices, seen.indices
            )
        manifest = {
            "format_version": HISTORY_FORMAT,
            "graph_kind": self.graph_kind,
            "n_users": self.n_users,
            "n_items": self.n_targets,
            "liked_is_seen": bool(liked_is_seen),
            "own": self.own is not None,
            "item_created_at": self.item_created_at is not None,
        }
        nnz = self.liked.nnz
        dtype = index_dtype(nnz, *self.liked.shape)
        with saved_folder(Path(folder) / HISTORY_DIR, HISTORY_MANIFEST, lambda: manifest) as base:
            self.users.save(base / "users.npy")  # and users.order.npy: memory-mapped by load
            if not self.one_sided:
                self.items.save(base / "items.npy")
            save_binary_csr(base, "seen", seen)
            if not liked_is_seen:
                save_array(base / "liked.indptr.npy", np.asarray(self.liked.indptr, dtype=dtype))
                save_array(base / "liked.indices.npy", np.asarray(self.liked.indices, dtype=dtype))
            entries = np.asarray(self.liked.data, dtype=index_dtype(nnz))
            save_array(base / "liked.entries.npy", entries)
            save_array(base / "liked.kind.npy", self.liked_kind)
            save_array(base / "liked.value.npy", self.liked_value)
            save_array(base / "liked.value_kind.npy", self.liked_value_kind)
            save_array(base / "counts.npy", self.counts)
            if self.own is not None:
                save_binary_csr(base, "own", self.own)
            if self.item_created_at is not None:
                save_array(base / "item_created_at.npy", self.item_created_at)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = True) -> History:
        """The history saved in the question's ``folder``: its arrays memory-mapped read-only
        (``mmap``), so the processes serving it share one copy of the pages.

        Pipelines saved before (``history.npz``) still load, read into memory.
        """
        folder = Path(folder)
        base = folder / HISTORY_DIR
        if not (base / HISTORY_MANIFEST).exists():
            if (folder / HISTORY_FILE).exists():
                return cls._load_npz(folder)
            raise FileNotFoundError(f"{base / HISTORY_MANIFEST}: no saved history here")
        manifest = read_manifest(base / HISTORY_MANIFEST, "history", HISTORY_FORMAT)

        def array(name: str) -> np.ndarray:
            path = base / f"{name}.npy"
            if not path.exists():
                raise InputError(f"{path}: missing (the saved history is incomplete)")
            return np.asarray(load_array(path, mmap=mmap))

        users = IdMap.load(base / "users.npy", mmap=mmap)
        one_sided = manifest["graph_kind"] != "items"
        items = users if one_sided else IdMap.load(base / "items.npy", mmap=mmap)
        shape = (len(users), len(items))
        if shape != (manifest["n_users"], manifest["n_items"]):
            raise InputError(f"{base / HISTORY_MANIFEST}: the id maps do not match n_users/n_items")
        seen = load_binary_csr(base, "seen", shape, mmap=mmap)
        if manifest["liked_is_seen"]:
            indptr, indices = seen.indptr, seen.indices
        else:
            indptr, indices = array("liked.indptr"), array("liked.indices")
        liked = _csr(indptr, indices, array("liked.entries"), shape)
        liked.has_canonical_format = True
        own = load_binary_csr(base, "own", shape, mmap=mmap) if manifest["own"] else None
        return cls(
            users,
            items,
            str(manifest["graph_kind"]),
            seen,
            liked,
            array("liked.kind"),
            array("liked.value"),
            array("liked.value_kind"),
            array("counts"),
            own,
            array("item_created_at") if manifest["item_created_at"] else None,
        )

    @classmethod
    def _load_npz(cls, folder: Path) -> History:
        """A history saved as one ``history.npz`` (before the ``.npy`` folder), read fully."""
        a = load_arrays(folder / HISTORY_FILE)
        users = IdMap.from_array(a["users"])
        items = IdMap.from_array(a["items"]) if "items" in a else users
        shape = (len(users), len(items))
        seen_indices = a["seen.indices"]
        seen = _csr(a["seen.indptr"], seen_indices, np.ones(len(seen_indices), np.float32), shape)
        own = None
        if "own.indptr" in a:
            own_indices = a["own.indices"]
            own = _csr(a["own.indptr"], own_indices, np.ones(len(own_indices), np.float32), shape)
        return cls(
            users,
            items,
            str(a["graph_kind"]),
            seen,
            _csr(a["liked.indptr"], a["liked.indices"], a["liked.data"], shape),
            a["liked.kind"],
            a["liked.value"],
            a["liked.value_kind"],
            a["counts"],
            own,
            a.get("item_created_at"),
        )


def _counts(data: Interactions) -> np.ndarray:
    """Per user, the targets had (not disliked); on an account graph, the accounts tied either way.

    An account that was followed (or messaged) but follows nobody yet is not
    unknown: a walk either way, follow-back and the ranker all have something
    to say. On CollegeMsg 457 of 1,899 accounts of the temporal train split
    only received messages, and the cold rule left them to the fallback.
    """
    matrix = data.positives().csr("binary")
    if data.one_sided:
        matrix = (matrix + matrix.T).tocsr()
    return np.diff(matrix.indptr).astype(np.int64)
