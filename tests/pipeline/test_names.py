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
