"""What the store holds, summarised: row counts, rows over time, degree distributions.

Every figure is an aggregate computed by the database (``GROUP BY``), so a
summary costs a few table scans and returns a few hundred numbers however
large the store is. The service's dashboard draws them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.interactions import DAY
from recgraph.data.store import Store

HOUR = 3600
#: Bucket widths for rows over time, finest first; the first that gives few enough points wins.
TIME_BUCKETS = (HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY)
#: Most points of an over-time series.
MAX_POINTS = 200


def store_summary(store: Store, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Counts, activity over time and degree distributions of ``store``.

    Returns
    -------
    dict
        ``counts`` (:meth:`Store.counts`); ``activity``: per table
        (``interactions``, ``follows``, ``items``) the bucket width in seconds
        and ``[bucket_start, rows]`` pairs, rows without a time left out;
        ``degrees``: per distribution (``followers``, ``following``,
        ``item_popularity``, ``user_activity``) the nodes with degree 0
        (where that is defined), the mean and max degree and powers-of-two
        bins ``{"low", "high", "nodes"}``.
    """
    f, i, it = schema.follows.c, schema.interactions.c, schema.items.c
    active = f.removed_at.is_(None)
    counts = store.counts()
    with store.engine.connect() as conn:
        activity = {
            "interactions": _over_time(conn, i.timestamp, [i.timestamp > 0], max_points),
            "follows": _over_time(
                conn, f.created_at, [active, f.created_at.is_not(None)], max_points
            ),
            "items": _over_time(conn, it.created_at, [it.created_at.is_not(None)], max_points),
        }
        degrees = {
            "followers": _degrees(conn, f.target_id, [active], counts.get("accounts", 0)),
            "following": _degrees(conn, f.source_id, [active], counts.get("accounts", 0)),
            "item_popularity": _degrees(conn, i.item_id, [], counts.get("items", 0)),
            "user_activity": _degrees(conn, i.user_id, [], None),
        }
    return {"counts": counts, "activity": activity, "degrees": degrees}


def _over_time(
    conn: sa.Connection, column: sa.Column, where: list, max_points: int
) -> dict[str, Any]:
    """Rows per time bucket, with the finest bucket that keeps the series short."""
    low, high = conn.execute(
        sa.select(sa.func.min(column), sa.func.max(column)).where(*where)
    ).one()
    if low is None:
        return {"bucket_seconds": DAY, "points": []}
    span = int(high) - int(low)
    bucket = next((b for b in TIME_BUCKETS if span // b < max_points), None)
    if bucket is None:
        bucket = -(-span // max_points // TIME_BUCKETS[-1]) * TIME_BUCKETS[-1]
    # the width is ours, an integer: inlined, so GROUP BY repeats the exact select expression
    width = sa.literal_column(str(int(bucket)))
    start = (column - column % width).label("start")
    rows = conn.execute(
        sa.select(start, sa.func.count()).where(*where).group_by(start).order_by(start)
    ).all()
    return {"bucket_seconds": bucket, "points": [[int(s), int(n)] for s, n in rows]}


def _degrees(
    conn: sa.Connection, key: sa.Column, where: list, population: int | None
) -> dict[str, Any]:
    """How many nodes have each degree, in bins [1], [2, 3], [4, 7], ..."""
    per_node = (
        sa.select(sa.func.count().label("degree"))
        .select_from(key.table)
        .where(*where)
        .group_by(key)
        .subquery()
    )
    rows = conn.execute(
        sa.select(per_node.c.degree, sa.func.count()).group_by(per_node.c.degree)
    ).all()
    bins: dict[int, int] = {}
    nodes = edges = top = 0
    for degree, n in rows:
        degree, n = int(degree), int(n)
        bins[degree.bit_length() - 1] = bins.get(degree.bit_length() - 1, 0) + n
        nodes += n
        edges += degree * n
        top = max(top, degree)
    return {
        "nodes": nodes,
        "zero": max(population - nodes, 0) if population is not None else None,
        "mean": edges / nodes if nodes else 0.0,
        "max": top,
        "bins": [
            {"low": 1 << b, "high": (1 << (b + 1)) - 1, "nodes": bins[b]} for b in sorted(bins)
        ],
    }
