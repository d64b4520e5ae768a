"""A small play-count data set for the model tests (the generator of recgraph.data.listening)."""

from __future__ import annotations

from functools import cache

from recgraph.data.interactions import Interactions, ValueKind
from recgraph.data.listening import generate_listening
from recgraph.data.splits import random_per_user


def plays(users: list[str], items: list[str], counts: list[int]) -> Interactions:
    """A few hand-written rows of ``(user, item, times played)`` as count data."""
    return Interactions.from_arrays(users, items, value=counts, value_kind=ValueKind.COUNT)


@cache
def play_count_split() -> tuple[Interactions, Interactions]:
    """150 users x 600 artists, plays as ``value_kind=count``, random 80/20 per user."""
    data = generate_listening(n_users=150, n_artists=600, n_genres=6, seed=3)
    return random_per_user(data, 0.2, seed=0)
