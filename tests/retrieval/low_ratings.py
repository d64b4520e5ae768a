"""Data where the item most like a candidate is one the user rated 1 star (issue 11, defect 2)."""

from __future__ import annotations

import numpy as np

from recgraph.data.interactions import Interactions, Kind

#: The user, the item they rated 1 star, and the candidate it co-occurs with.
USER, HATED, CANDIDATE = "me", "hated", "candidate"


def with_a_hated_twin() -> Interactions:
    """Ten users rate ``hated`` and ``candidate`` 5 stars together; ``me`` rated ``hated`` 1 star.

    ``me`` also liked two items that co-occur with ``candidate`` more weakly,
    so a model that reads only liked history still has a reason to give.
    """
    src, dst, value = [], [], []
    for u in range(10):
        for item in (HATED, CANDIDATE):
            src.append(f"fan{u}")
            dst.append(item)
            value.append(5)
    for u in range(4):
        for item in ("liked1", "liked2", CANDIDATE):
            src.append(f"other{u}")
            dst.append(item)
            value.append(5)
    for item, stars in ((HATED, 1), ("liked1", 5), ("liked2", 4)):
        src.append(USER)
        dst.append(item)
        value.append(stars)
    return Interactions.from_arrays(src, dst, value=value, kind=Kind.RATING)


def cited(model, data: Interactions) -> set[str]:
    """External ids the model's explanation of ``candidate`` for ``me`` names."""
    (reason,) = model.explain(data.users.index_of(USER), [data.items.index_of(CANDIDATE)], top=5)
    assert len(reason.via), "the model still explains from the liked items"
    return set(np.asarray(reason.via_ids).tolist())
