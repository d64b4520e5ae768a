"""A request's features (one user's candidates) are the bits the batch path computes.

Serving ranks one user's few hundred candidates at a time; the features then
take a path of their own (:func:`recgraph.data.sparse_rows.row_products`:
the user's row read once, the product read from the transposed side). The
ranker was trained on the batch path (many users, scipy's sparse products),
so a request must see exactly the same floats: these tests compare bits, not
closeness.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data import sparse_rows as R
from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.item_features import ItemFeatures
from recgraph.ranking import features as F
from recgraph.ranking import item_history as H
from recgraph.ranking.features import CandidateFeatures, feature_names
from recgraph.ranking.pagerank import ppr_pairs


def assert_same_bits(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=what)


def follow_graph(n: int = 90, density: float = 0.25, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    src, dst = np.nonzero(rng.random((n, n)) < density)
    keep = src != dst
    stamps = rng.integers(0, 400 * 86400, keep.sum())
    return Interactions.from_indices(
        src[keep], dst[keep], n_users=n, one_sided=True, timestamp=stamps
    )


def feed(n_users: int = 70, n_items: int = 120, seed: int = 1, rated: bool = False):
    rng = np.random.default_rng(seed)
    src, dst = np.nonzero(rng.random((n_users, n_items)) < rng.random(n_items)[None, :] * 0.5)
    stamps = rng.integers(0, 300 * 86400, len(src))
    ratings = {}
    if rated:  # 1-5 stars: 4 and 5 liked, the rest seen
        ratings = dict(
            value=rng.integers(1, 6, len(src)).astype(np.float32),
            kind=Kind.RATING,
            value_kind=ValueKind.RATING,
        )
    data = Interactions.from_indices(
        src, dst, n_users=n_users, n_items=n_items, timestamp=stamps, **ratings
    )
    names = ["Drama", "Comedy", "Western", "Noir", "Musical"]
    genres = [[names[g] for g in np.flatnonzero(rng.random(5) < 0.4)] for _ in range(n_items)]
    titles = [f"Film {i} ({1950 + i % 60})" for i in range(n_items)]
    side = ItemFeatures.from_records([str(i) for i in data.items.ids], titles, genres)
    return data, side


def reference(features: CandidateFeatures, users: np.ndarray, items: np.ndarray) -> dict:
    """The pair features as the ranker's training code computed them (scipy, row per pair)."""
    f = features
    user_weeks, item_weeks = f.user_weeks[users], f.item_weeks[items]
    in_user_weeks = R.pair_sums(R.binary(user_weeks), item_weeks)  # ones user_weeks in place
    out = {
        "cand_pop_in_user_weeks": in_user_weeks / max(float(f.item_weeks.max()), 1.0),
        "time_affinity": R.pair_sums(user_weeks, item_weeks),
    }
    if f.graph_kind == "items":
        similar = f.neighbours[items]
        for name, history in (("hist", f.liked), ("recent", f.recent), ("last", f.last)):
            rows = history[users]
            both = similar.multiply(rows).tocsr()
            top = np.zeros(len(users))
            has = np.diff(both.indptr) > 0
            top[has] = np.maximum.reduceat(both.data, both.indptr[:-1][has])
            out[f"{name}_sim_max"] = top
            out[f"{name}_sim_mean"] = np.asarray(both.sum(axis=1)).ravel() / np.maximum(
                np.diff(rows.indptr), 1
            )
        deviation = similar.multiply(f.rating_dev[users]).tocsr()
        rated = f.rating_dev[users]
        rated.data[:] = 1.0  # what the user rated, a zero deviation too
        weight = similar.multiply(rated).tocsr()
        weight = R.row_sums(weight.indptr, weight.data).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = R.row_sums(deviation.indptr, deviation.data).astype(np.float64) / weight
        out["rating_dev_sim"] = (
            np.where(weight > 0, dev, np.nan) if f.rating_dev.nnz else dev * np.nan
        )
        genres = f.item_genres[items]
        out["genre_sim"] = R.pair_sums(genres, f.user_genres[users])
        out["recent_genre_sim"] = R.pair_sums(genres, f.recent_genres[users])
        return out
    user_out, cand_in = f.out[users], f.inn[items]
    user_in, cand_out = f.inn[users], f.out[items]
    names = ("common_neighbors", "adamic_adar", "resource_allocation")
    sums = R.pair_sums_by(user_out, cand_in, (None, f.aa_weight, f.ra_weight))
    out.update(zip(names, sums, strict=True))
    names = ("cn_undirected", "aa_undirected", "ra_undirected")
    weights = (None, f.aa_weight_undirected, f.ra_weight_undirected)
    out.update(zip(names, R.pair_sums_by(f.either[users], f.either[items], weights), strict=True))
    out["follows_back"] = np.asarray(f.out[items, users]).ravel().astype(np.float64)
    out["co_following"] = R.pair_sums(user_out, cand_out)
    out["shared_followers"] = R.pair_sums(user_in, cand_in)
    out["cand_reaches_user"] = R.pair_sums(cand_out, user_in)
    return out


def check_against_reference(features: CandidateFeatures, users, items) -> int:
    """Every pair feature of ``matrix`` has the reference's bits; returns how many were compared.

    After a first request: scipy's ``item_weeks.max()`` (the first request's
    ``top_week``) sorts ``item_weeks`` in place, so the week sums of a first
    request may differ in the last bit from every later one's, before and
    after the fast path alike.
    """
    optional = F.OPTIONAL_ITEM_FEATURES if features.graph_kind == "items" else ()
    features.matrix(users[:1], items[:1], {}, depth=10, optional=optional)
    names = feature_names(features.graph_kind, [], optional)
    matrix = features.matrix(users, items, {}, depth=10, optional=optional)
    want = reference(features, users, items)
    for name, values in want.items():
        assert_same_bits(matrix[:, names.index(name)], values.astype(np.float32), name)
    return len(want)


def candidates(n: int, seed: int, size: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).choice(n, size=min(n, size), replace=False)


@pytest.mark.parametrize("read_cost", [0, R.READ_COST, 10**9])
def test_a_request_reads_the_trained_account_features_bit_for_bit(monkeypatch, read_cost):
    # READ_COST 0: every product read from the transposed side, whatever it costs
    monkeypatch.setattr(R, "READ_COST", read_cost)
    graph = follow_graph()
    features = CandidateFeatures(graph)
    for user in (0, 7, 33):
        items = candidates(graph.n_users, user)
        assert check_against_reference(features, np.full(len(items), user), items) == 12
    # a batch of users (training, batch jobs) too
    users = np.repeat([3, 4, 5], 20)
    check_against_reference(features, users, candidates(graph.n_users, 1, 60))
    # the weighted sums had many terms to add (their order shows in the bits)
    assert features.matrix(np.full(5, 0), np.arange(1, 6), {}, 10)[:, 1].max() > 1.0


@pytest.mark.parametrize("read_cost", [0, R.READ_COST, 10**9])
def test_a_friendship_request_reads_its_one_matrix_once_bit_for_bit(monkeypatch, read_cost):
    monkeypatch.setattr(R, "READ_COST", read_cost)
    rng = np.random.default_rng(5)
    src, dst = np.nonzero(np.triu(rng.random((70, 70)) < 0.2, 1))
    friends = Interactions.from_indices(src, dst, n_users=70, one_sided=True, directed=False)
    features = CandidateFeatures(friends)
    assert features.derived("symmetric")
    assert not CandidateFeatures(follow_graph()).derived("symmetric")
    for user in (0, 9, 50):
        items = candidates(friends.n_users, user)
        assert check_against_reference(features, np.full(len(items), user), items) == 12


@pytest.mark.parametrize("rated", [False, True])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("read_cost", [0, R.READ_COST, 10**9])
def test_a_request_reads_the_trained_feed_features_bit_for_bit(
    monkeypatch, read_cost, dense, rated
):
    # dense: the similarities gathered from the neighbours held as an array (a small
    # catalogue); else read sparse by row_products
    monkeypatch.setattr(R, "READ_COST", read_cost)
    monkeypatch.setattr(H, "DENSE_BYTES", H.DENSE_BYTES if dense else 0)
    data, side = feed(rated=rated)
    features = CandidateFeatures(data, item_features=side)
    assert (features.derived("neighbours_dense") is not None) == dense
    assert (features.rating_dev.nnz > 0) == rated
    assert not rated or (features.rating_dev.data == 0).any()  # stored zeros are read too
    for user in (0, 5, 41):
        items = candidates(data.n_items, user)
        assert check_against_reference(features, np.full(len(items), user), items) == 11
    users = np.repeat([3, 4], 30)
    check_against_reference(features, users, candidates(data.n_items, 2, 60))


def test_building_the_binary_week_rows_leaves_the_week_histograms_alone():
    features = CandidateFeatures(follow_graph())
    before = features.user_weeks.copy()
    features.derived("user_weeks_binary")
    assert (features.user_weeks != before).nnz == 0
    np.testing.assert_array_equal(features.user_weeks.indices, before.indices)


def random_csr(rng, shape, density, canonical=True) -> sp.csr_matrix:
    matrix = sp.random(*shape, density=density, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = rng.random(matrix.nnz).astype(np.float32) + 0.1
    if not canonical:  # reverse each row's entries: unsorted
        for i in range(shape[0]):
            lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
            matrix.indices[lo:hi] = matrix.indices[lo:hi][::-1].copy()
            matrix.data[lo:hi] = matrix.data[lo:hi][::-1].copy()
        matrix.has_sorted_indices = False
    return matrix


@pytest.mark.parametrize("dense_lookup", [0, R.DENSE_LOOKUP])
@pytest.mark.parametrize("read_cost", [0, 10**9])
def test_row_products_are_scipys_product_entry_for_entry(monkeypatch, read_cost, dense_lookup):
    # READ_COST 0: always from the transposed side; 10**9: always each candidate's row;
    # DENSE_LOOKUP 0: entries found by a search, never by a table
    monkeypatch.setattr(R, "READ_COST", read_cost)
    monkeypatch.setattr(R, "DENSE_LOOKUP", dense_lookup)
    rng = np.random.default_rng(3)
    user_side = random_csr(rng, (30, 50), 0.3)
    item_side = random_csr(rng, (40, 50), 0.3)
    items = rng.choice(40, size=25, replace=False)
    repeated = np.array([1, 2, 1, 7, 7, 0])
    for user in range(30):
        for chosen in (items, repeated, items[:0]):
            got = R.row_products(user_side, user, item_side, chosen, item_side.T.tocsr())
            assert got is not None
            want = user_side[np.full(len(chosen), user)].multiply(item_side[chosen]).tocsr()
            for mine, theirs in zip(got, (want.indptr, want.indices, want.data), strict=True):
                np.testing.assert_array_equal(mine, theirs)
            assert got[2].dtype == want.data.dtype


def test_row_products_leave_what_they_cannot_match_to_scipy(monkeypatch):
    monkeypatch.setattr(R, "READ_COST", 0)
    rng = np.random.default_rng(4)
    user_side = random_csr(rng, (10, 20), 0.4)
    # unsorted rows: scipy's other product, in its own order
    unsorted = random_csr(rng, (12, 20), 0.4, canonical=False)
    transposed = unsorted.T.tocsr()
    assert R.row_products(user_side, 0, unsorted, np.arange(12), transposed) is None
    # the sums fall back to scipy's and still match it
    users = np.full(12, 3)
    got = R.pair_sums_rows(user_side, users, unsorted, np.arange(12), transposed=transposed)
    want = R.pair_sums_by(user_side[users], unsorted[np.arange(12)], (None,))
    assert_same_bits(got[0], want[0])


def test_ppr_pairs_with_the_kept_step_read_the_same():
    graph = follow_graph(40, 0.1)
    features = CandidateFeatures(graph)
    along, either = features._walks()
    users, items = np.full(20, 3), np.arange(20)
    plain = ppr_pairs(either, users, items, tied=features.either)
    kept = ppr_pairs(either, users, items, tied=features.either, step=either.T.tocsr())
    for a, b in zip(plain, kept, strict=True):
        assert_same_bits(a, b)


def test_every_feature_matrix_is_canonical_so_a_request_reads_the_users_row(tmp_path):
    """Products of sparse matrices leave rows unsorted (the genre and week matrices of a
    feed): the features keep every matrix canonical, also one saved before, so a request's
    pair sums take the user's-row path, not scipy's product of the candidates' rows."""
    data, side = feed()
    features = CandidateFeatures(data, item_features=side)
    names = CandidateFeatures._MATRICES + CandidateFeatures._ITEM_MATRICES
    present = [name for name in names if hasattr(features, name)]
    assert {"user_genres", "item_weeks", "user_weeks"} <= set(present)
    assert all(getattr(features, name).has_canonical_format for name in present)
    # one saved unsorted (as before) is sorted when loaded, with the same values
    genres = features.user_genres
    row = slice(genres.indptr[0], genres.indptr[1])
    assert row.stop - row.start > 1
    unsorted = sp.csr_matrix(
        (genres.data[row][::-1], genres.indices[row][::-1], [0, row.stop - row.start]),
        shape=(1, genres.shape[1]),
    )
    assert not unsorted.has_canonical_format
    features.user_genres = sp.vstack([unsorted, genres[1:]]).tocsr()
    features.user_genres.has_sorted_indices = False
    before = features.user_genres.toarray()
    features.save(tmp_path / "features.npz")
    loaded = CandidateFeatures.load(tmp_path / "features.npz")
    assert loaded.user_genres.has_canonical_format
    np.testing.assert_array_equal(loaded.user_genres.toarray(), before)
    users = np.full(40, 3)
    items = candidates(data.n_items, 3, 40)
    assert check_against_reference(loaded, users, items) == 11


def test_a_ranker_taught_with_an_optional_feature_is_served_it():
    from types import SimpleNamespace

    from recgraph.pipeline.ranking import CandidatePool, RankingStage

    data, side = feed(rated=True)
    features = CandidateFeatures(data, item_features=side)
    pool = CandidatePool(
        np.array([3]), np.arange(5)[None], np.zeros((1, 5)), np.zeros((1, 5), np.int64), {}
    )
    for optional in ((), F.OPTIONAL_ITEM_FEATURES):
        taught = feature_names("items", [], optional)
        stage = RankingStage(
            SimpleNamespace(depth=10), SimpleNamespace(feature_names=taught), features, []
        )
        batch = stage.batch(pool)
        assert batch.feature_names == taught
        assert batch.features.shape == (5, len(taught))
