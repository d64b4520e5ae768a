"""Membership and lookup of int64 keys in a sorted key array.

Pairs ``(row, column)`` are packed as ``row * width + column`` and looked up
with one ``searchsorted``: the vectorised set test the models, the metrics and
the overlay all need, kept in one place so its edge cases (an empty key
array, a query past the last key) are handled once.
"""

from __future__ import annotations

import numpy as np


def find_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position, found)``: where each of ``keys`` sits in ``sorted_keys`` and whether it is there.

    ``position`` is a valid index into ``sorted_keys`` wherever ``found`` (and
    clipped to one elsewhere, so it can index without a bounds check; 0 when
    ``sorted_keys`` is empty, where nothing is found).
    """
    keys = np.asarray(keys)
    if not len(sorted_keys):
        return np.zeros(keys.shape, dtype=np.int64), np.zeros(keys.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return position, sorted_keys[position] == keys


def sorted_lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position of each of ``keys`` in ``sorted_keys``, or ``-1`` where it is absent."""
    position, found = find_sorted(sorted_keys, keys)
    return np.where(found, position, -1).astype(np.int64)


def in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (a boolean array shaped like ``keys``)."""
    return find_sorted(sorted_keys, keys)[1]


def distinct_sorted(keys: np.ndarray, *, runs: bool = False) -> np.ndarray:
    """``keys`` sorted with repeats dropped: ``np.unique`` by a sort and a neighbour test
    (``np.unique`` of int64 keys hashes them in recent numpy: 25x slower on 10^7 follows).

    ``runs``: ``keys`` are sorted runs laid end to end (sorted chunks concatenated); a
    merge sort (numpy's ``stable``) finds them, 3x quicker than the default sort."""
    keys = np.sort(keys, kind="stable" if runs else None)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
