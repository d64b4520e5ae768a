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

from recgraph.data.interactions import IdMap, Interactions, Kind, ValueKind
from recgraph.files import load_arrays, save_arrays

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
        liked_rows = data.subset(data.liked())
        if data.one_sided:
            matrix = liked_rows.csr("binary")
            kinds = np.full(matrix.nnz, int(Kind.FOLLOW), np.int8)
            values = np.ones(matrix.nnz, np.float32)
            value_kinds = np.full(matrix.nnz, int(ValueKind.NONE), np.int8)
            liked = _csr(matrix.indptr, matrix.indices, np.arange(matrix.nnz), shape)
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
        liked = _csr(seen.indptr, seen.indices, np.arange(n), seen.shape)
        kind = Kind.LIKE if graph_kind == "items" else Kind.FOLLOW
        return cls(
            users,
            items,
            graph_kind,
            seen,
            liked,
            np.full(n, int(kind), np.int8),
            np.ones(n, np.float32),
            np.zeros(n, np.int8),
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
    def save(self, folder: Path) -> None:
        arrays = {
            "users": self.users.to_array(),
            "graph_kind": np.asarray(self.graph_kind),
            "seen.indptr": self.seen.indptr,
            "seen.indices": self.seen.indices,
            "liked.indptr": self.liked.indptr,
            "liked.indices": self.liked.indices,
            "liked.data": self.liked.data,
            "liked.kind": self.liked_kind,
            "liked.value": self.liked_value,
            "liked.value_kind": self.liked_value_kind,
            "counts": self.counts,
        }
        if not self.one_sided:
            arrays["items"] = self.items.to_array()
        if self.own is not None:
            arrays["own.indptr"], arrays["own.indices"] = self.own.indptr, self.own.indices
        if self.item_created_at is not None:
            arrays["item_created_at"] = self.item_created_at
        save_arrays(folder / HISTORY_FILE, arrays)

    @classmethod
    def load(cls, folder: Path) -> History:
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
