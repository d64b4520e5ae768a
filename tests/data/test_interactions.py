"""Interactions: what each row's value means travels with the row."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recgraph.data import IdMap, Interactions, Kind, ValueKind


def test_value_kind_defaults_from_kind():
    data = Interactions.from_arrays(
        ["u", "u", "v"],
        ["a", "b", "a"],
        value=[4, 1, 1],
        kind=[Kind.RATING, Kind.LIKE, Kind.DISLIKE],
    )
    assert data.value_kind.tolist() == [ValueKind.RATING, ValueKind.NONE, ValueKind.NONE]


def test_value_kind_given_for_all_rows_survives_subset_and_concat():
    plays = Interactions.from_arrays(
        ["u", "v"], ["a", "b"], value=[12, 3], kind=Kind.VIEW, value_kind=ValueKind.COUNT
    )
    assert plays.value_kind.tolist() == [ValueKind.COUNT] * 2
    assert plays.subset(np.array([1])).value_kind.tolist() == [ValueKind.COUNT]
    likes = Interactions.from_arrays(["w"], ["a"])
    both = plays.concat(likes)
    assert both.value_kind.tolist() == [ValueKind.COUNT, ValueKind.COUNT, ValueKind.NONE]
    assert both.dedupe().value_kind.dtype == np.int8


def test_value_kind_length_is_checked():
    data = Interactions.from_arrays(["u"], ["a"])
    with pytest.raises(ValueError, match="value_kind"):
        dataclasses.replace(data, value_kind=np.zeros(2, np.int8))


def test_value_kind_parse_names_the_choices():
    assert ValueKind.parse(" Count ") is ValueKind.COUNT
    with pytest.raises(ValueError, match="rating, count, weight"):
        ValueKind.parse("plays")


def test_liked_leaves_out_dislikes_and_low_ratings():
    data = Interactions.from_arrays(
        ["u", "u", "u", "v", "v"],
        ["a", "b", "c", "a", "d"],
        value=[5, 2, 4, 1, 1],
        kind=[Kind.RATING, Kind.RATING, Kind.RATING, Kind.LIKE, Kind.DISLIKE],
    )
    # the scale is the one the ratings span (2..5): liked from 4.25
    assert data.liked().tolist() == [True, False, False, True, False]


def test_liked_on_a_one_to_five_scale_starts_at_four():
    data = Interactions.from_arrays(
        ["u"] * 5, list("abcde"), value=[1, 2, 3, 4, 5], kind=Kind.RATING
    )
    assert data.liked().tolist() == [False, False, False, True, True]


def test_counts_are_never_low_ratings():
    plays = Interactions.from_arrays(
        ["u", "u"], ["a", "b"], value=[1, 300], kind=Kind.VIEW, value_kind=ValueKind.COUNT
    )
    assert plays.liked().all()


def test_reindexed_onto_keeps_known_indices_and_appends_new_ids():
    users, items = IdMap(["u0", "u1"]), IdMap(["i0", "i1", "i2"])
    new = Interactions.from_arrays(["u9", "u1"], ["i2", "i7"])
    moved = new.reindexed_onto(users, items)
    assert moved.users.ids.tolist() == ["u0", "u1", "u9"]
    assert moved.items.ids.tolist() == ["i0", "i1", "i2", "i7"]
    assert moved.src.tolist() == [2, 1] and moved.dst.tolist() == [2, 3]
    same = Interactions.from_arrays(["u1"], ["i0"], users=users, items=items)
    assert same.reindexed_onto(users, items) is same
    assert users.ids.tolist() == ["u0", "u1"]  # the given maps are left as they were
    with pytest.raises(ValueError, match="graph shape"):
        new.reindexed_onto(users, users)


def test_a_map_extends_itself_and_its_prefixes_only():
    short, long = IdMap(["a", "b"]), IdMap(["a", "b", "c"])
    assert long.extends(short) and short.extends(short) and IdMap([]).extends(IdMap([]))
    assert not short.extends(long) and not IdMap(["b", "a", "c"]).extends(short)
