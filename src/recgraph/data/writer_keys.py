"""External ids to integer keys for the :class:`~recgraph.data.writer.Writer`.

Every write names accounts and items by their external ids (DIDs, user and item
ids); the tables key them by integers. :class:`KeyedWriter`, the writer's base,
owns that mapping: a per-transaction cache, batched lookups, staged inserts for
many new ids, and on a first SQLite import keys handed out in order without
looking anything up (numbers kept as int64 arrays while every id is a number).
Kept apart from the writer's tables and bulk-load steps so each has one owner.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.sorted_keys import SortedKeyMap, canonical_numbers
from recgraph.data.sql import (
    STAGE_MIN_ROWS,
    Columns,
    batches,
    json_int_array,
    stage_rows,
    upsert_rows,
)
from recgraph.data.writer_rows import checked_ids

#: Ids per ``IN (...)`` lookup: well under every backend's bound-parameter limit.
_LOOKUP_BATCH = 2_000
#: External id -> key entries kept per writer before the cache is dropped (bounded memory:
#: about 130 bytes an entry, 1.3 GB at the limit). Dropped, every later chunk looks its ids
#: up in the database again, so the limit is set above the accounts of a 10^8-follow graph
#: (a graph of 10^7 follows has about 10^6 accounts; at 5·10^5 the import slowed fourfold).
_CACHE_LIMIT = 10_000_000


class KeyedWriter:
    """The key half of a writer: resolves external ids to keys inside one transaction,
    creating the unknown ones (:meth:`account_keys`, :meth:`item_keys`)."""

    def __init__(self, conn: sa.Connection, dialect: str, now: int) -> None:
        self.conn = conn
        self.dialect = dialect
        self.now = now
        self._keys: dict[str, dict[str, int]] = {"accounts": {}, "items": {}}
        #: Per id table, on SQLite: the next key when the table was empty at this writer's
        #: first lookup and every row since came through :meth:`_resolve` (so the cache
        #: holds every id there is); None once that stops holding. See :meth:`_fresh_keys`.
        self._next_key: dict[str, int | None] = {}
        #: Per id table: the ids keyed so far as numbers (:meth:`_number_keys`), or None.
        self._numbers: dict[str, SortedKeyMap | None] = {}

    def _resolve(self, table: sa.Table, ids: Any) -> np.ndarray:
        """Integer keys of external ids (an object array of str, or a pandas str array),
        inserting the unknown ones."""
        cache = self._keys[table.name]
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
            self._next_key[table.name] = None  # the cache no longer knows every id
        numbered = self._number_keys(table, ids, cache)
        if numbered is not None:
            return numbered
        codes, uniques = pd.factorize(ids)  # on Arrow text: Arrow's own hashing
        uniques = np.asarray(uniques, dtype=object)  # Python strs for the distinct ids only
        get = cache.get
        keys = np.fromiter(map(get, uniques, repeat(-1)), dtype=np.int64, count=len(uniques))
        unknown = np.flatnonzero(keys < 0)
        wanted = uniques[unknown].tolist()
        if wanted:
            self._add_unknown(table, wanted, cache)
            keys[unknown] = np.fromiter((cache[x] for x in wanted), np.int64, len(wanted))
        return keys[codes] if len(codes) else np.zeros(0, np.int64)

    def _add_unknown(self, table: sa.Table, wanted: list[str], cache: dict[str, int]) -> None:
        """Put the keys of ``wanted`` (ids the cache does not hold) in the cache, inserting
        the ids the table lacks: fresh keys on a first import (:meth:`_fresh_keys`), staged
        for many ids, else looked up in batches."""
        if self._fresh_keys(table, wanted, cache):
            return
        if len(wanted) >= STAGE_MIN_ROWS:
            self._resolve_staged(table, wanted, cache)
            return
        self._lookup(table, wanted, cache)
        missing = [x for x in wanted if x not in cache]
        if missing:
            rows: Columns = {"external_id": missing}
            if table is schema.accounts:
                rows["created_at"] = rows["updated_at"] = [self.now] * len(missing)
            upsert_rows(self.conn, self.dialect, table, ["external_id"], rows, [])
            self._lookup(table, missing, cache)

    def _number_keys(self, table: sa.Table, ids: Any, cache: dict[str, int]) -> np.ndarray | None:
        """Keys of ``ids`` as numbers while every id so far was a canonical decimal number
        (SNAP, MovieLens) in a first import on SQLite: int64 arrays (:class:`SortedKeyMap`),
        no Python str per id, the keys :meth:`_fresh_keys` would give. Else (or past
        :data:`_CACHE_LIMIT`) the ids held go to the id cache for good and None is returned."""
        name = table.name
        held = self._numbers.get(name)
        if name not in self._numbers:
            fresh = not cache and self._fresh_start(table) is not None
            held = self._numbers[name] = SortedKeyMap() if fresh else None
        if held is None:
            return None
        first = self._next_key.get(name)
        numbers = None
        if first is not None and not isinstance(ids, np.ndarray) and len(held) <= _CACHE_LIMIT:
            numbers = canonical_numbers(ids)
        if numbers is None:
            self._numbers[name] = None
            if first is not None and len(held) <= _CACHE_LIMIT:  # the cache takes over
                texts = pc.cast(pa.array(held.ids), pa.string()).to_pylist()
                cache.update(zip(texts, held.keys.tolist(), strict=True))
            else:
                self._next_key[name] = None  # the cache does not know every id
            return None
        keys, new = held.keys_of(numbers, first)
        if len(new):
            self._insert_fresh(table, first, json_int_array(new), len(new))
        return keys

    def _fresh_start(self, table: sa.Table) -> int | None:
        """The next key :meth:`_fresh_keys` may give (the table was empty at this writer's
        first lookup), or None."""
        if self.dialect != "sqlite":
            return None
        if table.name not in self._next_key:
            empty = not self.conn.execute(sa.select(table.c.id).limit(1)).first()
            self._next_key[table.name] = 1 if empty else None
        return self._next_key[table.name]

    def _fresh_keys(self, table: sa.Table, wanted: list[str], cache: dict[str, int]) -> bool:
        """Add ``wanted`` (ids the cache does not hold) with the next keys, in order, without
        looking them up, when the table was empty at this writer's first lookup and the
        cache has held every id since (a first import on SQLite): none of them can exist.
        One ``INSERT`` from a JSON array; a plain one, so were an id there after all, the
        unique key would refuse it (and the import roll back) rather than a wrong key be
        cached. Returns False where this does not apply."""
        first = self._fresh_start(table)
        if first is None:
            return False
        self._insert_fresh(table, first, json.dumps(wanted), len(wanted))
        cache.update(zip(wanted, range(first, first + len(wanted)), strict=True))
        return True

    def _insert_fresh(self, table: sa.Table, first: int, ids: str, n: int) -> None:
        """Insert the ``n`` ids of the JSON array ``ids`` (strings, or numbers stored as their
        text) with keys ``first``, ``first + 1``, ... (see :meth:`_fresh_keys`)."""
        each = sa.func.json_each(sa.bindparam("ids", type_=sa.Text)).table_valued("key", "value")
        columns = [
            (each.c.key + first).label("id"),
            sa.cast(each.c.value, sa.Text).label("external_id"),
        ]
        if table is schema.accounts:
            now = sa.literal(self.now, sa.BigInteger)
            columns += [now.label("created_at"), now.label("updated_at")]
        insert = sa.insert(table).from_select([c.name for c in columns], sa.select(*columns))
        self.conn.execute(insert, {"ids": ids})
        self._next_key[table.name] = first + n

    def _resolve_staged(self, table: sa.Table, wanted: list[str], cache: dict[str, int]) -> None:
        """Many ids at once: stage them, add the unknown ones (in order of first
        appearance, so keys are deterministic) and read every key back with one join."""
        stage = stage_rows(
            self.conn,
            self.dialect,
            f"{table.name}_ids",
            {"external_id": wanted, "position": list(range(len(wanted)))},
            {"external_id": table.c.external_id.type, "position": sa.BigInteger()},
        )
        columns = [stage.c.external_id]
        names = ["external_id"]
        if table is schema.accounts:
            columns += [sa.literal(self.now, sa.BigInteger), sa.literal(self.now, sa.BigInteger)]
            names += ["created_at", "updated_at"]
        unknown = (
            sa.select(*columns)
            .where(~sa.exists().where(table.c.external_id == stage.c.external_id))
            .order_by(stage.c.position)
        )
        self.conn.execute(sa.insert(table).from_select(names, unknown))
        found = self.conn.execute(
            sa.select(stage.c.external_id, table.c.id).join_from(
                stage, table, table.c.external_id == stage.c.external_id
            )
        )
        cache.update(found.all())  # (external_id, key) rows

    def _lookup(self, table: sa.Table, external_ids: list[str], cache: dict[str, int]) -> None:
        for batch in batches(external_ids, _LOOKUP_BATCH):
            rows = self.conn.execute(
                sa.select(table.c.external_id, table.c.id).where(table.c.external_id.in_(batch))
            )
            cache.update((external_id, key) for external_id, key in rows)

    def account_keys(self, external_ids: Iterable[str]) -> np.ndarray:
        """Integer keys of accounts, creating unknown ones."""
        return self._resolve(schema.accounts, checked_ids(pd.Series(list(external_ids)), "account"))

    def item_keys(self, external_ids: Iterable[str]) -> np.ndarray:
        """Integer keys of items, creating unknown ones."""
        return self._resolve(schema.items, checked_ids(pd.Series(list(external_ids)), "item"))


__all__ = ["KeyedWriter"]
