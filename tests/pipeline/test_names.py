"""Names: handles and titles found by binary search over arrays, as the dicts answered."""

from __future__ import annotations

import numpy as np

from recgraph.pipeline.names import Names


def test_handles_and_titles_resolve_any_case_and_save(tmp_path):
    names = Names(
        ["a", "b", "c", "d"],
        ["Alice.Example", None, "", "carol.example"],
        np.array(["i1", "i2"], dtype=object),
        ["A title", float("nan")],
    )
    assert names.handle("a") == "Alice.Example" and names.handle("b") is None
    assert names.handle("nobody") is None
    assert names.account_for_handle(" @alice.EXAMPLE ") == "a"
    assert names.account_for_handle("bob.example") is None
    assert names.title("i1") == "A title" and names.title("i2") is None
    assert names.show_account("c") == "c" and names.show_account("d") == "@carol.example"
    assert len(names.account_ids) == 2  # only the named are kept
    names.save(tmp_path / "names.npz")
    loaded = Names.load(tmp_path / "names.npz")
    assert loaded.account_for_handle("CAROL.example") == "d" and loaded.title("i1") == "A title"


def test_a_handle_held_twice_resolves_to_the_last_account():
    names = Names(["x", "y", "x"], ["one.example", "ONE.example", "two.example"])
    assert names.account_for_handle("one.example") == "y"
    assert names.handle("x") == "two.example"
    assert Names().handle("x") is None and Names().account_for_handle("x") is None


def test_a_handle_that_lowers_longer_is_found_whole():
    """``İ`` lowers to two characters; numpy's lower keeps the input's width and cut it."""
    names = Names(["a", "b"], ["İSTANBUL.example", "x"], [], [])
    assert names.account_for_handle("@İstanbul.EXAMPLE") == "a"
    assert names.account_for_handle("İSTANBUL.example".lower()) == "a"
    assert names.account_for_handle("x") == "b"


def test_batch_lookups_answer_as_one_by_one():
    """``handles_of`` / ``titles_of`` / ``show_*``: one search for a list, the same answers."""
    long = "A very long title " * 5
    names = Names(
        ["x", "y", "x", "z"],
        ["one.example", "", "two.example", "zed.example"],
        ["i1", "i2", "i10", "i3"],
        ["Short", long, None, "Third"],
    )
    accounts = ["x", "y", "nobody", "z", "x", "", "zz"]
    items = ["i10", "i1", "i2", "i3", "i0", "i2", "i99"]
    assert names.handles_of(accounts) == [names.handle(a) for a in accounts]
    assert names.handles_of(accounts)[0] == "two.example"  # the last of a repeated id wins
    assert names.titles_of(items) == [names.title(i) for i in items]
    assert names.show_accounts(accounts) == [names.show_account(a) for a in accounts]
    assert names.show_items(items) == [names.show_item(i) for i in items]
    assert names.show_items(["i2"])[0].endswith("…")
    assert names.show_items([]) == [] and Names().show_items(["i1"]) == ["i1"]
    assert Names().show_accounts(["a", "b"]) == ["a", "b"]


def test_batch_lookups_do_not_match_an_id_that_ends_in_nul():
    """numpy's fixed-width strings drop trailing NULs: ``"a\\x00"`` must not find ``"a"``'s
    name in a batch when the one-at-a-time lookup finds none (as a dict would not)."""
    names = Names(["a", "b\x00"], ["alpha.example", "beta.example"], ["i", "j"], ["Eye", "Jay"])
    accounts = ["a\x00", "a", "b", "b\x00", "a\x00\x00"]
    items = ["i\x00", "i", "j\x00\x00", "j"]
    assert names.handles_of(accounts) == [names.handle(a) for a in accounts]
    assert names.handles_of(accounts)[:2] == [None, "alpha.example"]
    assert names.titles_of(items) == [names.title(i) for i in items] == [None, "Eye", None, "Jay"]
    assert names.show_accounts(accounts) == [names.show_account(a) for a in accounts]
    assert names.show_items(items) == [names.show_item(i) for i in items]
    assert names.show_items(["i\x00"]) == ["i\x00"]
