from __future__ import annotations

import pandas as pd

from recgraph.data.snapshot import TrainingSnapshot
from recgraph.data.store import Store


def test_from_store_names_every_account_once_with_its_handle(store: Store):
    """The snapshot's account ids are the follow graph's id map's array (not a second copy
    read with the handles), isolated accounts and handles included."""
    with store.writer() as w:
        w.follows(pd.DataFrame({"src": ["a", "b"], "dst": ["b", "c"]}), directed=True)
        w.account_keys(["lonely"])
        w.accounts([{"external_id": "b", "handle": "bee.example"}])
    snapshot = TrainingSnapshot.from_store(store)
    ids = snapshot.account_ids.tolist()
    assert sorted(ids) == ["a", "b", "c", "lonely"]
    assert ids == snapshot.follows.users.ids.tolist()
    assert snapshot.account_ids is snapshot.follows.users.ids  # one array, not a copy
    names = dict(zip(ids, snapshot.handles.tolist(), strict=True))
    assert names == {"a": "", "b": "bee.example", "c": "", "lonely": ""}


def test_from_store_without_follows_still_names_the_accounts(store: Store):
    with store.writer() as w:
        w.accounts([{"external_id": "x", "handle": "ex.example"}, {"external_id": "y"}])
    snapshot = TrainingSnapshot.from_store(store)
    assert snapshot.follows is None
    assert dict(zip(snapshot.account_ids, snapshot.handles, strict=True)) == {
        "x": "ex.example",
        "y": "",
    }
