"""Folding one known pair into a fitted factor model (ALS, BPR, BiasedMF): only that user moves."""

from __future__ import annotations

import numpy as np

from recgraph.data.interactions import Interactions


def moved_users(model, user: str, item: str) -> list[int]:
    """Fold the pair ``(user, item)`` (ids ``model`` knows) into ``model``; return the indices of
    the user rows that changed, after checking that ``fold_in`` returned the model and left every
    item factor as it was."""
    users, items = model.user_factors_.copy(), model.item_factors_.copy()
    new = Interactions.from_arrays([user], [item], users=model.users, items=model.items)
    assert model.fold_in(new) is model
    np.testing.assert_array_equal(model.item_factors_, items)
    return np.flatnonzero(np.abs(model.user_factors_ - users).max(axis=1) > 0).tolist()
