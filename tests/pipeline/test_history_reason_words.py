"""A history reason's words when a user did different things with the items it cites: a phrase
per run of the same verb, counts of views, only liked items, and the reason's code."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from recgraph.data.interactions import Kind, ValueKind
from recgraph.pipeline.explain import Explainer
from recgraph.pipeline.names import Names

#: item index -> (kind, value, value kind); item 5 is not liked
ENTRIES = {
    0: (Kind.LIKE, 1.0, ValueKind.NONE),
    1: (Kind.VIEW, 3.0, ValueKind.COUNT),
    2: (Kind.RATING, 5.0, ValueKind.RATING),
    3: (Kind.LIKE, 1.0, ValueKind.NONE),
    4: (Kind.VIEW, 1.0, ValueKind.COUNT),
}


class History:
    items = SimpleNamespace(ids=np.array(["a", "b", "c", "d", "e", "f"]))

    def liked_entries(self, user):
        liked = np.array(sorted(ENTRIES), dtype=np.int32)
        kind, value, value_kind = zip(*(ENTRIES[t] for t in liked.tolist()), strict=True)
        return (
            liked,
            np.array([int(k) for k in kind]),
            np.array(value),
            np.array([int(k) for k in value_kind]),
        )


def said(vias, top):
    names = Names(item_ids=["a", "b", "c", "d"], titles=["A", "B", "C", "D"])
    explainer = Explainer(History(), {}, [], [], [], top)
    return [
        None if r is None else (r.text, r.code, r.via)
        for r in explainer._history_reasons(0, vias, names)
    ]


def test_a_phrase_per_run_of_the_same_verb():
    assert said([[0, 1], [0, 2], [0, 3, 1], [1, 4], [5, 2], [5], []], 3) == [
        ("because you liked “A” and viewed “B” 3 times", "history", ("a", "b")),
        ("because you liked “A” and rated “C” highly", "liked", ("a", "c")),
        ("because you liked “A” and “D” and viewed “B” 3 times", "history", ("a", "d", "b")),
        ("because you viewed “B” 3 times and “e”", "viewed", ("b", "e")),
        ("because you rated “C” highly", "liked", ("c",)),
        None,
        None,
    ]


def test_top_cuts_each_via_after_its_liked_items():
    assert said([[5, 3, 0, 1], [2, 0]], 1) == [
        ("because you liked “D”", "liked", ("d",)),
        ("because you rated “C” highly", "liked", ("c",)),
    ]
    assert said([[0, 1]], 0) == [None]
