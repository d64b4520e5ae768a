"""Why a retriever proposed a target: the one answer type of ``Retriever.explain``.

Every model that can say why explains a candidate by entries of the user's own
history: the accounts a user follows that follow the candidate (two-hop
models, personalised PageRank), or the items the user had that are most like
the candidate item (item-kNN, EASE, ALS). Turning indices into words ("followed
by @a and @b", "because you liked X") is the pipeline's job, which knows the
names and what the user did with each item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from recgraph.data.interactions import IdMap

#: ``relation`` of item explanations: ``via`` are items of the user's history.
FROM_HISTORY = "from history"


@dataclass(frozen=True)
class Explanation:
    """Why ``candidate`` was proposed to ``user``: the history entries behind it.

    ``via`` are indices (accounts on a follow graph, items on a feed), best
    first, with their ``contributions`` to ``score``; when every entry is
    listed the contributions sum to the score. ``relation`` is what the
    candidate is to them ("followed by", "follows", "friends with", or
    :data:`FROM_HISTORY` for items). An empty ``via`` means the model cannot say.
    """

    user: int
    user_id: str
    candidate: int
    candidate_id: str
    score: float
    via: np.ndarray
    via_ids: np.ndarray
    contributions: np.ndarray
    relation: str

    def text(self) -> str:
        """A short sentence such as ``"followed by alice and bob"``."""
        names = [str(x) for x in self.via_ids]
        if not names:
            return "no common connections"
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"{self.relation} {joined}"


def make_explanation(
    users: IdMap,
    targets: IdMap,
    user: int,
    candidate: int,
    score: float,
    via: np.ndarray,
    contributions: np.ndarray,
    relation: str,
    via_map: IdMap | None = None,
) -> Explanation:
    """An :class:`Explanation` with external ids filled in from the model's id maps.

    ``via_map`` is the map ``via`` indexes (default: ``targets``).
    """
    via = np.asarray(via, dtype=np.int64)
    return Explanation(
        user=int(user),
        user_id=str(users.ids[user]),
        candidate=int(candidate),
        candidate_id=str(targets.ids[candidate]),
        score=float(score),
        via=via,
        via_ids=(via_map or targets).external(via).astype(str),
        contributions=np.asarray(contributions, dtype=np.float64),
        relation=relation,
    )


def history_explanations(
    users: IdMap,
    items: IdMap,
    user: int,
    candidates: Iterable[int],
    contributions: Iterable[tuple[np.ndarray, np.ndarray]],
    liked: np.ndarray | None = None,
) -> list[Explanation]:
    """Item explanations from ``(history items, contributions)`` pairs, one per candidate.

    Entries that contribute nothing (``<= 0``), and with ``liked`` given every
    item not in it (a film the user rated one star), are left out; the score
    of each explanation is the sum of what is listed.
    """
    candidates = [int(c) for c in candidates]
    parts = [
        (np.asarray(via, dtype=np.int64), np.asarray(weight, dtype=np.float64))
        for via, weight in contributions
    ]
    if len(parts) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(parts)} contributions")
    # every candidate's entries filtered at once, then cut back into one piece per candidate
    sizes = [len(via) for via, _ in parts]
    via_all = np.concatenate([via for via, _ in parts]) if parts else np.zeros(0, np.int64)
    weight_all = np.concatenate([w for _, w in parts]) if parts else np.zeros(0)
    keep = weight_all > 0
    if liked is not None:
        keep &= np.isin(via_all, liked)
    # where each candidate's kept entries start and end among all the kept ones
    bounds = np.r_[0, np.cumsum(keep)][np.r_[0, np.cumsum(sizes, dtype=np.int64)]]
    via_all, weight_all = via_all[keep], weight_all[keep]
    kept = [
        (via_all[bounds[j] : bounds[j + 1]], weight_all[bounds[j] : bounds[j + 1]])
        for j in range(len(parts))
    ]
    # the external ids of every candidate's entries in one lookup (one array of all the vias)
    names = items.external(via_all).astype(str)
    user_id = str(users.ids[user])
    candidate_ids = items.ids[candidates] if candidates else []
    return [
        Explanation(
            user=int(user),
            user_id=user_id,
            candidate=candidate,
            candidate_id=str(candidate_id),
            score=float(weight.sum()),
            via=via,
            via_ids=names[bounds[j] : bounds[j + 1]],
            contributions=weight,
            relation=FROM_HISTORY,
        )
        for j, (candidate, candidate_id, (via, weight)) in enumerate(
            zip(candidates, candidate_ids, kept, strict=True)
        )
    ]


#: The largest ``top`` whose cited items ``history_via`` picks with the compiled pass
#: (:mod:`recgraph.retrieval.explanation_kernels`): that pass rescans a column once per pick,
#: so above it (and for ``top=None``) the stable sort of :func:`top_down_columns` is cheaper.
#: Measured (rows x 10 float32 columns): the pass costs 0.2-0.8x the sort at ``top`` 16 for
#: 10-3000 rows, 0.6-1.2x at 24, 1.4-30x for every row (``None``) past 100 rows. A served
#: reason asks ``3 * explain_top + 5`` (11 by default).
PICK_AT_MOST = 16

#: Candidates whose columns are ordered at once by :func:`top_down_columns`: bounds a request's
#: liked x candidates blocks (a heavy user with thousands of liked items, ``k`` in thousands).
EXPLAIN_COLUMNS = 256


def top_down_columns(
    block_of: Callable[[int, int], np.ndarray], n_columns: int, top: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of a rows x ``n_columns`` block, the rows of its ``top`` largest values, best
    first (a stable sort: ties keep row order, as sorting each column alone), and the values.

    ``block_of(start, stop)`` gives columns ``start:stop``; they are asked for
    :data:`EXPLAIN_COLUMNS` at a time, so a request never holds the whole block and its sort.
    """
    orders, values = [], []
    for start in range(0, n_columns, EXPLAIN_COLUMNS):
        block = block_of(start, min(start + EXPLAIN_COLUMNS, n_columns))
        order = np.argsort(-block, axis=0, kind="stable")[:top]
        orders.append(order)
        values.append(np.take_along_axis(block, order, axis=0))
    if not orders:
        return np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0))
    return np.concatenate(orders, axis=1), np.concatenate(values, axis=1)
