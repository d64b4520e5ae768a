"""EASE and item-kNN explain every candidate at once: the same explanations as one candidate
at a time, and ``history_via`` (what a served reason cites) is ``explain``'s ``via``."""

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.retrieval import explanation, item_knn
from recgraph.retrieval.ease import EASE
from recgraph.retrieval.explanation import history_explanations
from recgraph.retrieval.item_knn import ItemKNN


def _ratings(seed: int = 0) -> Interactions:
    """Ratings 1-5 of 40 users on 30 items (low ratings too: not liked, never cited)."""
    rng = np.random.default_rng(seed)
    pairs = np.argwhere(rng.random((40, 30)) < 0.3)
    return Interactions.from_indices(
        pairs[:, 0],
        pairs[:, 1],
        n_users=40,
        n_items=30,
        value=rng.integers(1, 6, len(pairs)).astype(np.float32),
        kind=Kind.RATING,
        value_kind=ValueKind.RATING,
    )


def _one_by_one(model, user: int, candidates: np.ndarray, top: int) -> list:
    """The explanations as the models built them before: a column per candidate, each sorted
    on its own (the reference the batched code must equal)."""
    user, liked, strength = model.liked_weights(user, model.matrix_)
    parts = []
    for item in candidates:
        if isinstance(model, EASE):
            position = np.full(model.matrix_.shape[1], -1)
            position[model.active_items_] = np.arange(len(model.active_items_))
            inside = position[liked] >= 0
            if position[item] < 0 or not inside.any():
                parts.append((np.zeros(0, np.int64), np.zeros(0)))
                continue
            column = model.weights_[position[liked[inside]], position[item]] * strength[inside]
            kept = liked[inside]
        else:
            column = model.similarity_[liked][:, [item]].toarray().ravel() * strength
            kept = liked
        order = np.argsort(-column, kind="stable")[:top]
        parts.append((kept[order], column[order]))
    return history_explanations(model.users, model.items, user, candidates, parts)


@pytest.mark.parametrize(
    "make",
    [
        lambda: EASE(regularization=5.0),
        lambda: EASE(regularization=5.0, min_item_count=8),  # some items not in the weights
        lambda: ItemKNN(neighbours=5, similarity="cosine"),
        lambda: ItemKNN(neighbours=30),
    ],
)
@pytest.mark.parametrize("columns_at_once", [256, 3])  # 3: candidates in several blocks
@pytest.mark.parametrize("dense_lookup", [None, 0])  # 0: item-kNN's sorted search of rows
def test_batched_explanations_are_the_one_by_one_ones(
    make, columns_at_once, dense_lookup, monkeypatch
):
    monkeypatch.setattr(explanation, "EXPLAIN_COLUMNS", columns_at_once)
    if dense_lookup is not None:
        monkeypatch.setattr(item_knn, "DENSE_LOOKUP", dense_lookup)
    data = _ratings()
    model = make().fit(data)
    rng = np.random.default_rng(1)
    for user in range(data.n_users):
        candidates = rng.choice(data.n_items, 10, replace=False)
        for top in (1, 3, 11):
            got = model.explain(user, candidates, top)
            want = _one_by_one(model, user, candidates, top)
            assert [e.candidate for e in got] == candidates.tolist()
            for g, w in zip(got, want, strict=True):
                assert g.via.tolist() == w.via.tolist()
                assert g.via_ids.tolist() == w.via_ids.tolist()
                np.testing.assert_array_equal(g.contributions, w.contributions)
                assert g.score == w.score and g.candidate_id == w.candidate_id
            assert model.history_via(user, candidates, top) == [e.via.tolist() for e in got]


def test_item_knn_reads_a_matrix_it_cannot_read_row_by_row_as_scipy_does():
    """A similarity matrix with unsorted rows, or a candidate asked twice: scipy's selection."""
    data = _ratings(2)
    model = ItemKNN(neighbours=10).fit(data)
    candidates = np.array([3, 5, 3, 7])
    want = model.similarity_[np.arange(30)][:, candidates].toarray()
    np.testing.assert_array_equal(model._liked_columns(np.arange(30), candidates), want)
    shuffled = model.similarity_.copy()
    for row in range(shuffled.shape[0]):  # reverse each row's entries: not canonical
        lo, hi = shuffled.indptr[row], shuffled.indptr[row + 1]
        shuffled.indices[lo:hi] = shuffled.indices[lo:hi][::-1].copy()
        shuffled.data[lo:hi] = shuffled.data[lo:hi][::-1].copy()
    shuffled = sp.csr_matrix((shuffled.data, shuffled.indices, shuffled.indptr), shuffled.shape)
    model.similarity_ = shuffled
    liked = np.array([0, 4, 9, 20])
    np.testing.assert_array_equal(
        model._liked_columns(liked, np.array([1, 2, 8])),
        shuffled[liked][:, [1, 2, 8]].toarray(),
    )


def test_history_explanations_filter_each_candidate_as_before():
    """Entries that contribute nothing, or that the user did not like, are left out per
    candidate; an empty contribution list stays empty."""
    data = _ratings()
    model = EASE(regularization=5.0).fit(data)
    parts = [
        (np.array([4, 2, 9]), np.array([0.5, 0.0, 0.25])),
        (np.zeros(0, np.int64), np.zeros(0)),
        (np.array([7, 1]), np.array([-1.0, 2.0])),
    ]
    out = history_explanations(
        model.users, model.items, 3, [5, 6, 8], parts, liked=np.array([1, 4])
    )
    assert [e.via.tolist() for e in out] == [[4], [], [1]]
    assert [e.score for e in out] == [0.5, 0.0, 2.0]
    assert [e.via_ids.tolist() for e in out] == [
        [str(model.items.ids[4])],
        [],
        [str(model.items.ids[1])],
    ]
    with pytest.raises(ValueError, match="contributions"):
        history_explanations(model.users, model.items, 3, [5, 6], parts)


@pytest.mark.parametrize("make", [lambda: EASE(regularization=5.0), lambda: ItemKNN(neighbours=5)])
def test_no_candidates_explain_to_nothing_and_outside_ones_are_refused(make):
    model = make().fit(_ratings())
    assert model.explain(0, np.zeros(0, np.int64)) == []
    assert model.history_via(0, np.zeros(0, np.int64)) == []
    if isinstance(model, ItemKNN):  # as scipy's selection refused them
        for outside in ([30], [-1]):
            with pytest.raises(IndexError):
                model.explain(0, np.asarray(outside))
            with pytest.raises(IndexError):
                model.history_via(0, np.asarray(outside))


@pytest.mark.parametrize("make", [lambda: EASE(regularization=5.0), lambda: ItemKNN(neighbours=30)])
def test_history_via_sorts_above_the_compiled_picks_bound(make, monkeypatch):
    """The compiled pick rescans a column per pick: for ``top=None`` (every liked item) or a
    ``top`` above :data:`explanation.PICK_AT_MOST`, ``history_via`` takes the stable sort
    (20,000 rows at ``top=None`` took 29 s in the pass, 37 ms sorted). Both ways cite what
    ``explain`` cites, ties (coarse weights) to the earlier liked item."""
    from recgraph.retrieval import explanation_kernels, via_kernels

    model = make().fit(_ratings(5))
    if isinstance(model, EASE):  # few distinct weights: many tied products
        w = model.weights_
        model.weights_ = (np.round(w / np.abs(w).max() * 8) / 8).astype(w.dtype)
    else:
        d = model.similarity_.data
        model.similarity_.data = (np.ceil(d / d.max() * 4) / 4).astype(d.dtype)
    picks = []
    for name in ("top_positive_dense", "top_positive_block"):
        kernel = getattr(explanation_kernels, name)

        def counted(*args, kernel=kernel):
            picks.append(args[-1])
            return kernel(*args)

        monkeypatch.setattr(explanation_kernels, name, counted)
    rows_pass = via_kernels.top_positive_rows  # item-kNN's pass over the similarity rows

    def counted_rows(*args):
        picks.append(args[6])  # its ``top``
        return rows_pass(*args)

    monkeypatch.setattr(via_kernels, "top_positive_rows", counted_rows)
    bound = explanation.PICK_AT_MOST
    rng = np.random.default_rng(6)
    ties = compiled = 0
    for user in range(40):
        candidates = rng.choice(30, 12, replace=False)
        for top in (1, 11, bound, bound + 1, 40, None):
            picks.clear()
            got = model.history_via(user, candidates, top)
            assert got == [e.via.tolist() for e in model.explain(user, candidates, top)]
            if top is None or top > bound:
                assert picks == []  # the sort
            else:
                assert all(p == top for p in picks)
                compiled += len(picks)
        for e in model.explain(user, candidates, None):
            ties += len(e.contributions) - len(np.unique(e.contributions))
    assert ties > 100 and compiled > 100
