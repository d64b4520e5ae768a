"""The crawl state: which accounts to crawl next, who is crawling them, and how it went.

One row per discovered account in ``crawl_state`` (on the store's
:data:`recgraph.data.schema.metadata`, so ``Store`` creates it with the rest):

============  =================================================================
account_id    the account (``accounts.id``)
depth         breadth-first distance from the nearest seed (0 = seed)
status        ``pending`` (never crawled), ``done``, ``not_found`` (400 actor
              not found), ``failed`` (gave up after ``max_attempts``)
crawled_at    unix seconds of the last finished crawl; 0 = never
lease_until   unix seconds until which ``lease_owner`` holds the account
lease_owner   the worker crawling it (``host:pid`` by default)
attempts      failed tries since the last finished crawl
follows_count follows found by the last crawl
error         the last failure or paging anomaly, for people
============  =================================================================

Next to crawl are the accounts with the oldest ``crawled_at`` (never crawled
first), shallowest first, then in discovery order, which makes a first build
breadth-first. A worker *claims* them by setting a lease that expires, with
an ``UPDATE .. WHERE lease_until <= now`` whose row count says whether it
won: no ``SELECT .. FOR UPDATE SKIP LOCKED``, so the same statements work on
SQLite, MariaDB and PostgreSQL, and a worker that crashes never leaves
accounts stuck "in progress" (the source design's "set updated_at ten years
ahead" hack lost them): its leases simply run out. Live workers renew theirs.

Every function takes a connection, so the crawler can run them inside the
same transaction as the follow list it writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.schema import MYSQL_TABLE, key_type
from recgraph.data.store import upsert_rows

#: Statuses of a crawl-state row.
STATUSES = ("pending", "done", "not_found", "failed")
#: Statuses of an account whose crawl finished (it counts as crawled once).
FINISHED = ("done", "not_found", "failed")

crawl_state = sa.Table(
    "crawl_state",
    schema.metadata,
    sa.Column(
        "account_id", key_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("depth", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("crawled_at", sa.BigInteger, nullable=False, default=0, doc="0 = never"),
    sa.Column("lease_until", sa.BigInteger, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("follows_count", sa.Integer, nullable=True),
    sa.Column("error", sa.String(255), nullable=True),
    sa.Index("ix_crawl_state_next", "crawled_at", "depth", "account_id"),
    **MYSQL_TABLE,
)

_c = crawl_state.c


@dataclass(frozen=True)
class Claim:
    """An account a worker holds the lease on."""

    account_id: int
    did: str
    depth: int
    crawled_at: int


@dataclass(frozen=True)
class CrawlProgress:
    """Counts of the crawl state within the depth bound."""

    discovered: int
    crawled: int
    pending: int
    leased: int
    not_found: int
    failed: int
    follows: int


def ensure_table(engine: sa.Engine) -> None:
    """Create ``crawl_state`` if the store was created before this module was imported."""
    crawl_state.create(engine, checkfirst=True)


def lease_end(now: float, lease_seconds: float) -> int:
    """Whole unix seconds a lease taken at ``now`` lasts until (rounded up, never shorter)."""
    return math.ceil(now + lease_seconds)


def add_accounts(conn: sa.Connection, dialect: str, account_ids: Iterable[int], depth: int) -> None:
    """Make ``account_ids`` known to the crawl at ``depth``; a known account keeps the smaller depth."""
    rows = [
        {
            "account_id": int(a),
            "depth": int(depth),
            "status": "pending",
            "crawled_at": 0,
            "lease_until": 0,
            "attempts": 0,
        }
        for a in dict.fromkeys(int(x) for x in account_ids)
    ]
    upsert_rows(
        conn,
        dialect,
        crawl_state,
        ["account_id"],
        rows,
        [
            (
                "depth",
                lambda new, old: sa.case((new("depth") < old.depth, new("depth")), else_=old.depth),
            )
        ],
    )


def _claimable(
    now: int, owner: str, max_depth: int | None, stale_before: int | None
) -> list[sa.ColumnElement]:
    """Conditions of an account a worker may take now."""
    free = sa.or_(_c.lease_until <= now, _c.lease_owner == owner)
    due = _c.crawled_at == 0 if stale_before is None else _c.crawled_at <= stale_before
    conditions = [free, due]
    if max_depth is not None:
        conditions.append(_c.depth <= max_depth)
    return conditions


def candidates(
    conn: sa.Connection,
    *,
    owner: str,
    now: float,
    limit: int,
    max_depth: int | None = None,
    stale_before: float | None = None,
    exclude: Sequence[int] = (),
) -> list[Claim]:
    """The up to ``limit`` accounts to crawl next that ``owner`` may take.

    Claiming is this, then :func:`take` in a transaction of its own (see there).

    Parameters
    ----------
    owner
        This worker's id; it may re-take its own leases (after a restart with
        the same id).
    now
        The clock.
    max_depth
        Only accounts at most this deep.
    stale_before
        ``None``: only never-crawled accounts (a first build); else also
        accounts crawled at or before this time (re-crawls), oldest first.
    exclude
        Accounts this worker already holds and works on (not to be taken twice).
    """
    now_s = int(now)
    stale = None if stale_before is None else int(stale_before)
    a = schema.accounts.c
    conditions = _claimable(now_s, owner, max_depth, stale)
    if exclude:
        conditions.append(_c.account_id.not_in([int(x) for x in exclude]))
    rows = conn.execute(
        sa.select(_c.account_id, a.external_id, _c.depth, _c.crawled_at)
        .join_from(crawl_state, schema.accounts, _c.account_id == a.id)
        .where(*conditions)
        .order_by(_c.crawled_at, _c.depth, _c.account_id)
        .limit(limit)
    ).all()
    return [Claim(int(i), str(did), int(depth), int(at)) for i, did, depth, at in rows]


def take(
    conn: sa.Connection,
    found: Sequence[Claim],
    *,
    owner: str,
    now: float,
    lease_seconds: float,
) -> list[Claim]:
    """Lease the ``found`` candidates; return those won (another worker may have been faster).

    Each ``UPDATE`` re-checks that the account is still free and not crawled
    since, so this is safe in a transaction of its own. On SQLite it should
    be one: a transaction that reads first and writes later fails at once
    ("database is locked") when another writer committed in between.
    """
    now_s = int(now)
    until = lease_end(now, lease_seconds)
    won: list[Claim] = []
    for found_claim in found:
        result = conn.execute(
            sa.update(crawl_state)
            .where(
                _c.account_id == found_claim.account_id,
                sa.or_(_c.lease_until <= now_s, _c.lease_owner == owner),
                _c.crawled_at == found_claim.crawled_at,
            )
            .values(lease_until=until, lease_owner=owner)
        )
        if result.rowcount == 1:
            won.append(found_claim)
    return won


def renew(
    conn: sa.Connection, account_ids: Sequence[int], *, owner: str, now: float, lease_seconds: float
) -> int:
    """Extend this worker's leases on ``account_ids``; return how many it still held."""
    if not account_ids:
        return 0
    result = conn.execute(
        sa.update(crawl_state)
        .where(_c.account_id.in_([int(a) for a in account_ids]), _c.lease_owner == owner)
        .values(lease_until=lease_end(now, lease_seconds))
    )
    return int(result.rowcount)


def finish(
    conn: sa.Connection,
    account_id: int,
    *,
    now: float,
    status: str,
    follows_count: int | None = None,
    error: str | None = None,
) -> None:
    """Record a finished crawl of ``account_id`` and release its lease."""
    if status not in FINISHED:
        raise ValueError(f"status {status!r} is not one of {', '.join(FINISHED)}")
    conn.execute(
        sa.update(crawl_state)
        .where(_c.account_id == int(account_id))
        .values(
            status=status,
            crawled_at=max(1, int(now)),
            lease_until=0,
            lease_owner=None,
            attempts=0,
            follows_count=follows_count,
            error=None if error is None else error[:255],
        )
    )


def fail(
    conn: sa.Connection,
    account_id: int,
    *,
    now: float,
    error: str,
    retry_after_seconds: float,
    max_attempts: int,
) -> bool:
    """Record a failed try; the account waits ``retry_after_seconds`` before anyone retries it.

    After ``max_attempts`` failures in a row the account is finished as
    ``failed`` (so that a first build ends). Return whether it was given up.
    """
    # Write first (SQLite: see :func:`take`), then read the count.
    conn.execute(
        sa.update(crawl_state)
        .where(_c.account_id == int(account_id))
        .values(
            attempts=_c.attempts + 1,
            error=error[:255],
            lease_until=lease_end(now, retry_after_seconds),
            lease_owner=None,
        )
    )
    attempts = conn.execute(
        sa.select(_c.attempts).where(_c.account_id == int(account_id))
    ).scalar_one()
    if attempts >= max_attempts:
        finish(conn, account_id, now=now, status="failed", error=error)
        return True
    return False


def release(conn: sa.Connection, account_ids: Sequence[int], *, owner: str) -> None:
    """Give up this worker's leases on ``account_ids`` (a clean shutdown)."""
    if account_ids:
        conn.execute(
            sa.update(crawl_state)
            .where(_c.account_id.in_([int(a) for a in account_ids]), _c.lease_owner == owner)
            .values(lease_until=0, lease_owner=None)
        )


def progress(conn: sa.Connection, *, now: float, max_depth: int | None = None) -> CrawlProgress:
    """How far the crawl is, within ``max_depth``."""
    where = [] if max_depth is None else [_c.depth <= max_depth]
    now_s = int(now)
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((_c.crawled_at > 0, 1), else_=0)),
            sa.func.sum(sa.case((_c.crawled_at == 0, 1), else_=0)),
            sa.func.sum(sa.case((_c.lease_until > now_s, 1), else_=0)),
            sa.func.sum(sa.case((_c.status == "not_found", 1), else_=0)),
            sa.func.sum(sa.case((_c.status == "failed", 1), else_=0)),
            sa.func.sum(sa.func.coalesce(_c.follows_count, 0)),
        ).where(*where)
    ).one()
    values = [int(v or 0) for v in row]
    return CrawlProgress(*values)


def next_free_time(
    conn: sa.Connection,
    *,
    owner: str,
    max_depth: int | None = None,
    stale_before: float | None = None,
) -> int | None:
    """When the earliest lease on a due account runs out (None: no due account is leased)."""
    stale = None if stale_before is None else int(stale_before)
    due = _c.crawled_at == 0 if stale is None else _c.crawled_at <= stale
    conditions = [due, _c.lease_until > 0]
    if max_depth is not None:
        conditions.append(_c.depth <= max_depth)
    value = conn.execute(sa.select(sa.func.min(_c.lease_until)).where(*conditions)).scalar()
    return None if value is None else int(value)


def next_stale_time(conn: sa.Connection, *, max_depth: int | None = None) -> int | None:
    """The oldest ``crawled_at`` among crawled accounts (when the next re-crawl falls due)."""
    conditions = [_c.crawled_at > 0]
    if max_depth is not None:
        conditions.append(_c.depth <= max_depth)
    value = conn.execute(sa.select(sa.func.min(_c.crawled_at)).where(*conditions)).scalar()
    return None if value is None else int(value)


__all__ = [
    "FINISHED",
    "STATUSES",
    "Claim",
    "CrawlProgress",
    "add_accounts",
    "candidates",
    "crawl_state",
    "ensure_table",
    "fail",
    "finish",
    "lease_end",
    "next_free_time",
    "next_stale_time",
    "progress",
    "release",
    "take",
]
