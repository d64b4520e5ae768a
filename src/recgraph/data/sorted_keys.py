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


def sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, distinct, group)``: a stable sort of ``keys``, its distinct values (sorted),
    and for each sorted entry ``keys[order[j]]`` its position in ``distinct``.

    ``np.unique(keys, return_inverse=True)`` without its extra machinery (the inverse in
    the input's order is ``inverse[order] = group``): a walk's entries come in sorted
    runs (its rounds, its rows), which the merge sort finds, 20-30% quicker. Entries of
    one key keep their input order, so a ``bincount(group, weights=values[order])`` adds
    each key's values in the order ``keys`` holds them (the same bits as adding them one
    by one).
    """
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    fresh = np.empty(len(ranked), dtype=bool)
    if len(ranked):
        fresh[0] = True
        np.not_equal(ranked[1:], ranked[:-1], out=fresh[1:])
    group = np.cumsum(fresh) - 1
    return order, ranked[fresh], group


def canonical_numbers(texts) -> np.ndarray | None:
    """``texts`` (an Arrow string array, or a pandas array on Arrow buffers) as int64, when
    every one is the canonical decimal form of a number below 10**18 (``0``, ``7``,
    ``4096``: no sign, no leading zero, no space), so that text and number map one to one;
    None otherwise. C passes only: a cast and the numbers printed back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(texts)
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        return None
    if array.null_count:
        return None
    try:
        cast = pc.cast(array, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    numbers = cast.to_numpy(zero_copy_only=False)
    if len(numbers) and (numbers.min() < 0 or numbers.max() >= 10**18):
        return None
    # The number printed back must be the text: Arrow's cast also reads hex ("0xFFFFF"),
    # whose length can equal its value's digit count, and would merge it with "1048575".
    printed = pc.cast(cast, array.type)
    return numbers if len(numbers) == 0 or pc.all(pc.equal(printed, array)).as_py() else None


class SortedKeyMap:
    """int64 ids -> int64 keys, held as sorted runs of ids with their keys alongside (16 bytes
    an entry): a chunk's lookup is one hashing of the chunk (``pd.factorize``), a sort of its
    distinct ids and one ``searchsorted`` of sorted into sorted per run, in C; ids not held
    take the next keys in order of first appearance.

    A chunk's new ids become a new run, and the newest runs are merged while the one before
    is less than twice the size of the last (so sizes fall at least by half from the oldest
    run: at most log2(n) runs, and each id is merged log2(n) times). Inserting every
    chunk's new ids into one sorted array instead copied every id held per chunk: a stream
    of many chunks of new ids cost chunks x ids held, quadratic on a large import."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(ids) for ids, _ in self._runs)

    @property
    def ids(self) -> np.ndarray:
        """Every id held, sorted."""
        return self._single_run()[0]

    @property
    def keys(self) -> np.ndarray:
        """The key of each of :attr:`ids`."""
        return self._single_run()[1]

    def _single_run(self) -> tuple[np.ndarray, np.ndarray]:
        while len(self._runs) > 1:
            self._merge_last_two()
        return self._runs[0] if self._runs else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def _merge_last_two(self) -> None:
        """One sorted run of the last two (disjoint): each id of the newer run goes where
        ``searchsorted`` puts it among the older, shifted by the newer ids before it."""
        (ids_a, keys_a), (ids_b, keys_b) = self._runs[-2:]
        at = np.searchsorted(ids_a, ids_b) + np.arange(len(ids_b))
        from_a = np.ones(len(ids_a) + len(ids_b), dtype=bool)
        from_a[at] = False
        ids = np.empty(len(from_a), dtype=np.int64)
        keys = np.empty(len(from_a), dtype=np.int64)
        ids[at], keys[at] = ids_b, keys_b
        ids[from_a], keys[from_a] = ids_a, keys_a
        self._runs[-2:] = [(ids, keys)]

    def keys_of(self, values: np.ndarray, next_key: int) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, new)``: the key of each of ``values``, and the ids that were not held, in
        order of first appearance; they get ``next_key``, ``next_key + 1``, ... and are held
        from now on."""
        import pandas as pd

        codes, distinct = pd.factorize(values)  # in order of first appearance
        order = np.argsort(distinct)
        ascending = distinct[order]
        sorted_keys = np.empty(len(distinct), dtype=np.int64)
        held_sorted = np.zeros(len(distinct), dtype=bool)
        for run_ids, run_keys in self._runs:  # disjoint runs: an id is found in one at most
            position, found = find_sorted(run_ids, ascending)
            sorted_keys[found] = run_keys[position[found]]
            held_sorted |= found
        held = np.empty(len(distinct), dtype=bool)
        held[order] = held_sorted
        keys = np.empty(len(distinct), dtype=np.int64)
        keys[order] = sorted_keys
        new = distinct[~held]
        keys[~held] = np.arange(next_key, next_key + len(new), dtype=np.int64)
        if len(new):
            added = order[~held_sorted]  # the new ids, sorted
            self._runs.append((distinct[added].astype(np.int64), keys[added]))
            while len(self._runs) > 1 and len(self._runs[-2][0]) < 2 * len(self._runs[-1][0]):
                self._merge_last_two()
        return keys[codes], new
