"""Handles of accounts and titles of items: how queries are resolved and reasons are written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Longest title shown in a reason.
REASON_TITLE_CHARS = 60


class Names:
    """Handles of accounts and titles of items, to resolve queries and write reasons.

    ``handle`` and ``title`` are ``""`` where the store has none.
    """

    def __init__(
        self,
        account_ids: Sequence[str] | np.ndarray = (),
        handles: Sequence[str | None] | np.ndarray = (),
        item_ids: Sequence[str] | np.ndarray = (),
        titles: Sequence[str | None] | np.ndarray = (),
    ) -> None:
        self.account_ids = _text_array(account_ids)
        self.handles = _text_array(handles)
        self.item_ids = _text_array(item_ids)
        self.titles = _text_array(titles)
        if len(self.handles) != len(self.account_ids) or len(self.titles) != len(self.item_ids):
            raise ValueError("names: every id needs a handle / title entry ('' when none)")
        self._handle_of = {a: h for a, h in zip(self.account_ids, self.handles, strict=True) if h}
        self._account_of_handle = {h.lower(): a for a, h in self._handle_of.items()}
        self._title_of = {i: t for i, t in zip(self.item_ids, self.titles, strict=True) if t}

    def handle(self, account: str) -> str | None:
        return self._handle_of.get(account)

    def title(self, item: str) -> str | None:
        return self._title_of.get(item)

    def account_for_handle(self, text: str) -> str | None:
        """The account whose handle is ``text`` (any case, leading ``@`` ignored)."""
        return self._account_of_handle.get(text.strip().removeprefix("@").lower())

    def show_account(self, account: str) -> str:
        """``@handle`` when known, else the id."""
        handle = self.handle(account)
        return f"@{handle}" if handle else account

    def show_item(self, item: str) -> str:
        """The title (shortened) when known, else the id."""
        title = self.title(item)
        if not title:
            return item
        return title if len(title) <= REASON_TITLE_CHARS else title[: REASON_TITLE_CHARS - 1] + "…"

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
            return cls(
                data["account_ids"].tolist(),
                data["handles"].tolist(),
                data["item_ids"].tolist(),
                data["titles"].tolist(),
            )


def _text_array(values: Sequence | np.ndarray) -> np.ndarray:
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
