"""Handles of accounts and titles of items: how queries are resolved and reasons are written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Longest title shown in a reason.
REASON_TITLE_CHARS = 60


class Names:
    """Handles of accounts and titles of items, to resolve queries and write reasons.

    ``handle`` and ``title`` are ``""`` where the store has none. Only the ids that
    have one are kept, as unicode arrays with the permutations that sort them
    (ids; handles lower-cased): every lookup is a binary search, no dict of every
    account per serving worker.
    """

    def __init__(
        self,
        account_ids: Sequence[str] | np.ndarray = (),
        handles: Sequence[str | None] | np.ndarray = (),
        item_ids: Sequence[str] | np.ndarray = (),
        titles: Sequence[str | None] | np.ndarray = (),
    ) -> None:
        if len(handles) != len(account_ids) or len(titles) != len(item_ids):
            raise ValueError("names: every id needs a handle / title entry ('' when none)")
        self.account_ids, self.handles = _named(account_ids, handles)
        self.item_ids, self.titles = _named(item_ids, titles)
        self._by_account = _sorting(self.account_ids)
        self._lower_handles = _lowered(self.handles)
        self._by_handle = _sorting(self._lower_handles)
        self._by_item = _sorting(self.item_ids)

    def handle(self, account: str) -> str | None:
        return _lookup(self.account_ids, self._by_account, self.handles, account)

    def title(self, item: str) -> str | None:
        return _lookup(self.item_ids, self._by_item, self.titles, item)

    def handles_of(self, accounts: Sequence[str]) -> list[str | None]:
        """:meth:`handle` of each of ``accounts``, in one search (an answer's at once)."""
        return _lookup_many(self.account_ids, self._by_account, self.handles, accounts)

    def titles_of(self, items: Sequence[str]) -> list[str | None]:
        """:meth:`title` of each of ``items``, in one search (an answer's at once)."""
        return _lookup_many(self.item_ids, self._by_item, self.titles, items)

    def account_for_handle(self, text: str) -> str | None:
        """The account whose handle is ``text`` (any case, leading ``@`` ignored)."""
        wanted = text.strip().removeprefix("@").lower()
        return _lookup(self._lower_handles, self._by_handle, self.account_ids, wanted)

    def show_account(self, account: str) -> str:
        """``@handle`` when known, else the id."""
        handle = self.handle(account)
        return f"@{handle}" if handle else account

    def show_item(self, item: str) -> str:
        """The title (shortened) when known, else the id."""
        return _shown_title(item, self.title(item))

    def show_accounts(self, accounts: Sequence[str]) -> list[str]:
        """:meth:`show_account` of each of ``accounts``, in one search."""
        return [
            f"@{handle}" if handle else account
            for account, handle in zip(accounts, self.handles_of(accounts), strict=True)
        ]

    def show_items(self, items: Sequence[str]) -> list[str]:
        """:meth:`show_item` of each of ``items``, in one search."""
        return [
            _shown_title(item, title)
            for item, title in zip(items, self.titles_of(items), strict=True)
        ]

    def save(self, path: Path) -> None:
        np.savez(
            path,
            account_ids=_unicode(self.account_ids),
            handles=_unicode(self.handles),
            item_ids=_unicode(self.item_ids),
            titles=_unicode(self.titles),
        )

    @classmethod
    def load(cls, path: Path) -> Names:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["account_ids"], data["handles"], data["item_ids"], data["titles"])


def _named(
    ids: Sequence | np.ndarray, names: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ids that have a name, and their names, as unicode arrays."""
    names = _text_array(names)
    has = names != ""
    ids = (
        ids[has] if isinstance(ids, np.ndarray) else [x for x, h in zip(ids, has, strict=True) if h]
    )
    return _unicode(_text_array(ids)), _unicode(names[has])


def _sorting(keys: np.ndarray) -> np.ndarray:
    """The stable permutation that sorts ``keys``: equal keys keep their order (the last wins)."""
    return np.argsort(keys, kind="stable")


def _lookup(keys: np.ndarray, order: np.ndarray, values: np.ndarray, key: str) -> str | None:
    """``values`` at the last position where ``keys`` holds ``key`` (as a dict built from
    them in order would answer), ``None`` when it holds none."""
    at = int(np.searchsorted(keys, key, side="right", sorter=order)) - 1
    if at < 0 or keys[order[at]] != key:
        return None
    return str(values[order[at]])


def _lookup_many(
    keys: np.ndarray, order: np.ndarray, values: np.ndarray, wanted: Sequence[str]
) -> list[str | None]:
    """:func:`_lookup` of each of ``wanted``, by one ``searchsorted`` of them all."""
    if not len(wanted) or not len(keys):
        return [None] * len(wanted)
    at = np.searchsorted(keys, np.asarray(wanted, dtype=str), side="right", sorter=order) - 1
    row = order[np.maximum(at, 0)]
    # the found key equal to the wanted one as Python strings, as :func:`_lookup` compares:
    # numpy's fixed-width strings drop trailing NULs ("a\x00" would find "a"'s name)
    found = [
        a >= 0 and key == want
        for a, key, want in zip(at.tolist(), keys[row].tolist(), wanted, strict=True)
    ]
    return [
        str(value) if hit else None for value, hit in zip(values[row].tolist(), found, strict=True)
    ]


def _shown_title(item: str, title: str | None) -> str:
    """A title as a reason shows it (shortened), or the item's id when it has none."""
    if not title:
        return item
    return title if len(title) <= REASON_TITLE_CHARS else title[: REASON_TITLE_CHARS - 1] + "…"


def _lowered(texts: np.ndarray) -> np.ndarray:
    """``str.lower`` of each text: numpy keeps the input's width, and a few characters lower
    to two (``İ`` to ``i̇``), so the texts are widened first and narrowed after."""
    if not len(texts):
        return texts
    wide = np.strings.lower(texts.astype(f"<U{2 * max(texts.dtype.itemsize // 4, 1)}"))
    return wide.astype(f"<U{max(int(np.strings.str_len(wide).max()), 1)}")


def _text_array(values: Sequence | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return values
    return np.asarray(
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
        dtype=object,
    )


def _unicode(values: np.ndarray) -> np.ndarray:
    """A unicode array ``np.savez`` stores without pickle (``<U1`` when empty)."""
    return np.asarray(values, dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def joined(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


#: No handles or titles (what an answer asked without names reads; shared, never changed;
#: its arrays are all empty, so there is nothing in them to write).
NO_NAMES = Names()
