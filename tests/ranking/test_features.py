"""Candidate features of a feed: item side data (genres, title years) and time windows."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.item_features import ItemFeatures, title_year
from recgraph.ranking.features import (
    DAY,
    ITEM_FEATURES,
    OPTIONAL_ITEM_FEATURES,
    CandidateFeatures,
    RetrieverColumns,
    feature_names,
)

END = 10_000 * DAY


@pytest.fixture()
def feed():
    # "me" likes two westerns from the 1950s; the candidates: a 1950s western, a 1990s comedy
    rows = [
        ("me", "w1", END - 100 * DAY),
        ("me", "w2", END - 90 * DAY),
        ("a", "w1", END - 50 * DAY),
        ("a", "west50", END - 2 * DAY),
        ("b", "comedy90", END - 1 * DAY),
        ("b", "w2", END - 200 * DAY),
        ("c", "comedy90", END - 1 * DAY),
    ]
    src, dst, ts = zip(*rows, strict=True)
    data = Interactions.from_arrays(src, dst, timestamp=np.asarray(ts, dtype=np.int64))
    items = ItemFeatures.from_records(
        ["comedy90", "west50", "w1", "w2", "not_rated"],
        ["Funny (1995)", "Rio Bravo (1959)", "High Noon (1952)", "Shane (1953)", "X"],
        [["Comedy"], ["Western"], ["Western"], ["Western", "Drama"], ["Comedy"]],
    )
    return data, items


def rows(features: CandidateFeatures, data: Interactions, user: str, items: list[str]):
    u = np.full(len(items), data.users.get(user))
    i = np.asarray([data.items.get(x) for x in items])
    matrix = features.matrix(u, i, {}, depth=10, optional=OPTIONAL_ITEM_FEATURES)
    names = feature_names("items", [], OPTIONAL_ITEM_FEATURES)
    return {name: matrix[:, j] for j, name in enumerate(names)}


def test_title_years():
    assert title_year("Heat (1995)") == 1995.0
    assert np.isnan(title_year("Untitled")) and np.isnan(title_year("(1995) Heat"))


def test_genres_and_years_tell_the_users_taste(feed):
    data, items = feed
    features = CandidateFeatures(data, item_features=items)
    got = rows(features, data, "me", ["west50", "comedy90"])
    assert set(ITEM_FEATURES) <= set(got)
    assert got["genre_sim"][0] > 0.5 and got["genre_sim"][1] == 0.0
    assert got["recent_genre_sim"][0] > got["recent_genre_sim"][1]
    # my films are from 1952-53: the 1959 western is 6.5 years later, the comedy 42.5
    np.testing.assert_allclose(got["cand_year_vs_user"], [6.5, 42.5])
    assert got["cand_year_age"][0] > got["cand_year_age"][1] > 0
    # the comedy was taken by two users yesterday: the top of every short window
    assert got["cand_pop_3d"][1] == 1.0 and got["cand_pop_3d"][0] == 0.5
    assert got["cand_pop_90d"][1] == 1.0


def test_without_item_side_data_those_features_are_unknown_not_made_up(feed):
    data, _ = feed
    got = rows(CandidateFeatures(data), data, "me", ["west50", "comedy90"])
    assert (got["genre_sim"] == 0).all()
    assert np.isnan(got["cand_year_age"]).all() and np.isnan(got["cand_year_vs_user"]).all()


def test_item_side_features_survive_save_and_load(feed, tmp_path):
    data, items = feed
    features = CandidateFeatures(data, item_features=items)
    features.save(tmp_path / "f.npz")
    again = CandidateFeatures.load(tmp_path / "f.npz")
    u = np.array([data.users.get("me")] * 2)
    i = np.array([data.items.get("west50"), data.items.get("comedy90")])
    view = {"r": RetrieverColumns(np.array([1.0, 0.5]), np.array([1, 0]), np.array([1.0, 1.0]))}
    np.testing.assert_array_equal(features.matrix(u, i, view, 5), again.matrix(u, i, view, 5))


TASTE = ("rating_dev_sim",)


def rated_feed() -> Interactions:
    # "me" loved w1 and disliked-by-rating w2 (2 stars: seen, not liked); "a" and "b" both
    # had w2 and the candidate "like_w2", "c" had w1 and "like_w1"
    rows = [
        ("me", "w1", 5.0),
        ("me", "w2", 2.0),
        ("me", "x", 4.0),
        ("d", "x", 1.0),  # the scale runs 1-5: 4 and 5 are liked
        ("a", "w2", 4.0),
        ("a", "like_w2", 5.0),
        ("b", "w2", 5.0),
        ("b", "like_w2", 4.0),
        ("c", "w1", 5.0),
        ("c", "like_w1", 4.0),
    ]
    src, dst, value = zip(*rows, strict=True)
    return Interactions.from_arrays(
        src,
        dst,
        value=np.asarray(value, np.float32),
        kind=np.full(len(rows), int(Kind.RATING), np.int8),
        value_kind=np.full(len(rows), int(ValueKind.RATING), np.int8),
        timestamp=np.arange(len(rows), dtype=np.int64) * DAY + END,
    )


def test_how_the_user_rated_films_like_the_candidate():
    data = rated_feed()
    features = CandidateFeatures(data)
    got = rows(features, data, "me", ["like_w2", "like_w1"])
    # like_w2 is liked by those who liked w2, which I rated 2 stars; like_w1 by those who liked w1
    # my ratings less my mean: w2 below it, w1 above: similar to w2 reads negative, to w1 positive
    assert got["rating_dev_sim"][0] < 0 < got["rating_dev_sim"][1]


def test_features_saved_before_the_taste_ones_read_the_same_and_leave_those_unknown(tmp_path):
    data = rated_feed()
    features = CandidateFeatures(data)
    features.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as saved:  # a save from before: without their matrices
        old = {k: saved[k] for k in saved.files if k.split(".")[0] != "rating_dev"}
    np.savez(tmp_path / "old.npz", **old)
    before = CandidateFeatures.load(tmp_path / "old.npz")
    u = np.full(3, data.users.get("me"))
    i = np.array([data.items.get(x) for x in ("like_w2", "like_w1", "w1")])
    names = feature_names("items", [], TASTE)
    taste = [names.index(n) for n in TASTE]
    rest = [j for j in range(len(names)) if j not in taste]
    fresh = features.matrix(u, i, {}, 5, optional=TASTE)
    loaded = before.matrix(u, i, {}, 5, optional=TASTE)
    np.testing.assert_array_equal(loaded[:, rest], fresh[:, rest])
    assert np.isnan(loaded[:, taste]).all() and not np.isnan(fresh[:2, taste]).any()
    # not asked for, the columns are the ones rankers saved before have always read
    assert "rating_dev_sim" not in feature_names("items", [])
    np.testing.assert_array_equal(features.matrix(u, i, {}, 5), fresh[:, rest])
    with pytest.raises(ValueError, match="no optional"):
        feature_names("follows", [], TASTE)
