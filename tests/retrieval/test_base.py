"""The protocol's shared pieces: one scope in which a model's dense scores are computed once."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import base, create_retriever
from recgraph.retrieval.base import shared_scores
from tests.retrieval.test_walk_kernels import _run


def feed(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.2)
    return Interactions.from_indices(users, items, n_users=n_users, n_items=n_items)


def counting(model, monkeypatch) -> list[np.ndarray]:
    """The users of each ``_score`` call of ``model`` from now on."""
    calls: list[np.ndarray] = []
    score = model._score

    def counted(users):
        calls.append(np.array(users))
        return score(users)

    monkeypatch.setattr(model, "_score", counted)
    return calls


def ask(model, users, targets):
    ids, scores = model.recommend(users, 5)
    return (
        ids,
        scores,
        model.score_pairs(np.repeat(users, len(targets)), np.tile(targets, len(users))),
    )


@pytest.mark.parametrize("name", ["ease", "item_knn"])
def test_recommend_then_score_pairs_score_the_rows_once_in_a_scope(name, monkeypatch):
    model = create_retriever(name).fit(feed())
    targets = np.array([0, 3, 7, 29])
    want = ask(model, np.array([4]), targets)  # outside: each call scores
    calls = counting(model, monkeypatch)
    with shared_scores():
        got = ask(model, np.array([4]), targets)
    assert len(calls) == 1
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))  # the same bits
    ask(model, np.array([4]), targets)  # the scope closed: nothing kept
    assert len(calls) == 3


def test_a_scope_keeps_blocks_per_model_and_users_and_within_its_budget(monkeypatch):
    model = create_retriever("ease").fit(feed())
    other = create_retriever("ease").fit(feed(seed=1))
    calls, other_calls = counting(model, monkeypatch), counting(other, monkeypatch)
    targets = np.array([1, 2])
    with shared_scores():
        ask(model, np.array([4]), targets)
        ask(other, np.array([4]), targets)  # another model: its own rows
        ask(model, np.array([5]), targets)  # other users: their own rows
        ask(model, np.array([4]), targets)  # read again
    assert len(calls) == 2 and len(other_calls) == 1
    monkeypatch.setattr(base, "SHARED_SCORE_BYTES", 0)
    with shared_scores():
        ask(model, np.array([4]), targets)
    assert len(calls) == 4  # a block over the budget is not kept


def test_ease_cuts_its_active_columns_once_per_state():
    data = feed()
    model = create_retriever("ease", {"min_item_count": 7}).fit(data)
    assert 0 < len(model.active_items_) < model.n_items
    users = np.array([0, 9, 3])
    cut = model._active_matrix()
    assert model._active_matrix() is cut
    want = model.matrix_[users][:, model.active_items_]
    got = cut[users]
    for a, b in ((got.indptr, want.indptr), (got.indices, want.indices), (got.data, want.data)):
        np.testing.assert_array_equal(a, b)
    model.fit(feed(seed=2))  # a new state: cut again
    assert model._active_matrix() is not cut
    assert model._active_matrix().shape == (model.n_users, len(model.active_items_))


def test_a_request_of_one_block_is_its_own_rows_and_other_blocks_are_cut():
    import scipy.sparse as sp

    from recgraph.retrieval.base import Request

    exclude = sp.csr_matrix(np.eye(4, 6, dtype=np.float32))
    request = Request(True, exclude, None)
    assert request.rows(0, 4) is request
    part = request.rows(1, 3)
    np.testing.assert_array_equal(part.exclude.toarray(), exclude[1:3].toarray())
    per_user = Request(True, None, sp.csr_matrix(np.ones((4, 6), dtype=bool)))
    assert per_user.rows(0, 4) is per_user and per_user.rows(0, 2).allowed.shape == (2, 6)


def test_masks_and_liked_items_read_the_rows_scipy_gives():
    model = create_retriever("item_knn").fit(feed())
    users = np.array([3, 0, 3])
    block = np.zeros((3, model.n_items), dtype=np.float32)
    model._mask_scores(block, users, exclude_seen=True, exclude=None, allowed=None)
    np.testing.assert_array_equal(block == -np.inf, model.seen_matrix()[users].toarray() > 0)
    for user in (0, 7):
        np.testing.assert_array_equal(model.liked_items(user), model.seen_matrix()[user].indices)
        _, liked, weights = model.liked_weights(user, model.matrix_)
        row = model.matrix_[user]
        keep = np.isin(row.indices, model.liked_items(user))
        np.testing.assert_array_equal(liked, row.indices[keep])
        np.testing.assert_array_equal(weights, row.data[keep])
        assert len(liked)


def test_a_csr_of_exclusions_is_read_as_it_is_and_other_forms_are_converted():
    import scipy.sparse as sp

    from recgraph.retrieval.base import rows_as_csr

    matrix = sp.csr_matrix(np.eye(2, 5, dtype=np.float32))
    assert rows_as_csr(matrix, 2, 5, "exclude") is matrix
    converted = rows_as_csr(sp.coo_matrix(matrix), 2, 5, "exclude")
    assert isinstance(converted, sp.csr_matrix) and converted is not matrix
    with pytest.raises(ValueError, match="shape"):
        rows_as_csr(matrix, 3, 5, "exclude")


def test_compiled_top_row_is_top_k() -> None:
    """A request's top k (walk_kernels.top_row) is top_k's, ids and score bits, over ties,
    -inf, +inf, -0.0 and k past the row's length."""
    from recgraph.retrieval.base import top_k
    from recgraph.retrieval.walk_kernels import top_row

    rng = np.random.default_rng(0)
    for trial in range(800):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 70))
        row = (rng.integers(-3, 4, n) if trial % 2 else rng.random(n)).astype(np.float32)
        row[rng.random(n) < 0.2] = -np.inf
        row[rng.random(n) < 0.1] = -0.0
        row[rng.random(n) < 0.05] = np.inf
        want_ids, want_scores = top_k(row[None, :], k)
        ids, scores = top_row(row, k)
        assert np.array_equal(ids, want_ids[0])
        assert scores.tobytes() == want_scores[0].tobytes()


def test_compiled_top_row_refuses_a_nan_score() -> None:
    """NaN sorts last in the partition, so the choice would fall short of k and read
    unwritten slots: the kernel raises instead (requests pass masked rows, NaN as -inf)."""
    from recgraph.retrieval.walk_kernels import top_row

    with pytest.raises(ValueError, match="NaN"):
        top_row(np.array([1.0, np.nan, 2.0, 0.5], np.float32), 2)


def test_compiled_masked_top_refuses_an_own_target_outside_the_row() -> None:
    """As numpy's masking does: an IndexError, not a write past the row."""
    from recgraph.retrieval.score_kernels import masked_top

    values = np.arange(5, dtype=np.float32)
    none = np.zeros(0, np.int64)
    with pytest.raises(IndexError, match="own target"):
        masked_top(values, none, 7, none, np.zeros(0, np.bool_), 3)
    ids, _ = masked_top(values, none, 4, none, np.zeros(0, np.bool_), 3)
    assert ids.tolist() == [3, 2, 1]


def test_forbidden_leaves_a_read_only_exclusion_row_as_it_was() -> None:
    """One part (no history asked for) is copied before it is made binary: a shared,
    read-only row (the rules' empty one) is neither written nor refused."""
    import scipy.sparse as sp

    retriever = create_retriever("popular").fit(
        Interactions.from_indices(np.array([0, 1, 1]), np.array([0, 1, 2]), n_users=2, n_items=4)
    )
    arrays = np.full(1, 3.0, np.float32), np.array([2], np.int32), np.array([0, 1], np.int32)
    for array in arrays:
        array.flags.writeable = False
    row = sp.csr_matrix(arrays, shape=(1, 4))
    blocked = retriever.forbidden(np.array([0]), exclude_seen=False, exclude=row)
    assert blocked.toarray().tolist() == [[0, 0, 1, 0]]
    assert row.data.tolist() == [3.0]


def test_loading_a_model_without_kernels_loads_no_numba(tmp_path) -> None:
    """Loading and asking a model whose requests run no compiled kernel (``popular``)
    imports no numba: the one-row top k is top_k until a model or ranking stage that
    compiles kernels has warmed it (0.3-2 s a process, ~20 s with a cold cache)."""
    model = create_retriever("popular").fit(feed())
    model.save(tmp_path / "popular")
    script = (
        "import sys\n"
        "from recgraph.retrieval.base import Retriever, compiled_top_row\n"
        f"model = Retriever.load({str(tmp_path / 'popular')!r})\n"
        "ids, _ = model.recommend([0], k=5)\n"
        "print('numba' in sys.modules, compiled_top_row() is None, len(ids[0]))"
    )
    assert _run(script).split() == ["False", "True", "5"]


def test_a_loaded_two_hop_model_answers_one_user_with_the_compiled_paths_top(tmp_path) -> None:
    """A two-hop model warms at load the kernels its requests run (paths_top) and no other
    (not the dense rows' top_row or masked_top), and its one-user requests then compile
    nothing more and give the batch path's answers."""
    users, follows = np.nonzero(np.random.default_rng(1).random((30, 30)) < 0.2)
    graph = Interactions.from_indices(users, follows, n_users=30, one_sided=True)
    create_retriever("adamic_adar").fit(graph).save(tmp_path / "aa")
    script = (
        "from recgraph.retrieval import base, score_kernels\n"
        f"model = base.Retriever.load({str(tmp_path / 'aa')!r})\n"
        "def compiled():\n"
        "    return {n: len(f.signatures) for n, f in vars(score_kernels).items()\n"
        "            if hasattr(f, 'signatures')}\n"
        "before = compiled()\n"
        "for user in range(30):\n"
        "    model.recommend([user], k=7)\n"
        "print(before['paths_top'] > 0, compiled() == before, base.compiled_top_row() is None,\n"
        "      score_kernels.MASKED_TOP_WARM)"
    )
    assert _run(script).split() == ["True", "True", "True", "False"]
    model = base.Retriever.load(tmp_path / "aa")
    for user in range(30):
        one_ids, one_scores = model.recommend([user], k=7)
        pair_ids, pair_scores = model.recommend([user, (user + 1) % 30], k=7)
        assert np.array_equal(one_ids[0], pair_ids[0])
        assert one_scores[0].tobytes() == pair_scores[0].tobytes()
