"""A small feed and the same feed whose id maps also hold ids without a training pair (a split's
test-side users, a catalogue's new items): what no weight, vector or answer may depend on."""

from __future__ import annotations

import numpy as np

from recgraph.data.interactions import IdMap, Interactions


def with_unpaired_ids(first: bool = False) -> tuple[Interactions, Interactions]:
    """``(data, grown)``: ``grown`` has 2 more users and 3 more items, all after ``data``'s
    ids, or (``first``) one of each before them and the rest after."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 400).astype(str)
    items = rng.integers(0, 30, 400).astype(str)
    data = Interactions.from_arrays(users, items)
    head_users, head_items = (["test_only_1"], ["new_1"]) if first else ([], [])
    tail_users = ["test_only_2"] if first else ["test_only_1", "test_only_2"]
    tail_items = ["new_2", "new_3"] if first else ["new_1", "new_2", "new_3"]
    grown = Interactions.from_arrays(
        users,
        items,
        users=IdMap.from_array(np.r_[head_users, data.users.to_array(), tail_users]),
        items=IdMap.from_array(np.r_[head_items, data.items.to_array(), tail_items]),
    )
    assert grown.n_users == data.n_users + 2 and grown.n_items == data.n_items + 3
    return data, grown
