"""What ``load.py``'s reload phase saw around each switch, from its timeline (every request's
latency and answering version, by due time): each switch's worst latency, and the latency by
time since each publish (the publisher's own work, then each worker's load in turn)."""

from __future__ import annotations

import numpy as np


def switches(timeline: dict, published: list[str], margin: float = 1.0) -> list[dict]:
    """Each published version's switch as the requests saw it: from the due time of the first
    answer on it to that of the last answer on an older version (once every worker swapped),
    and the worst latency of the requests due from ``margin`` s before to ``margin`` s after."""
    version = timeline["version"]
    due = np.arange(len(version)) / timeline["rate"]
    out = []
    for k, name in enumerate(published):
        on = [j for j, v in enumerate(version) if v == name]
        if not on:
            continue
        newer = set(published[k:])
        older = [j for j, v in enumerate(version) if v is not None and v not in newer]
        first = float(due[on[0]])
        last = max(first, float(due[older[-1]]) if older else first)
        window = (due >= first - margin) & (due <= last + margin)
        out.append(
            {
                "version": name,
                "first_answer_s": round(first, 3),
                "last_old_answer_s": round(last, 3),
                "stall_ms": round(float(np.nanmax(timeline["latency_ms"][window])), 1),
            }
        )
    return out


def timeline_for_json(timeline: dict) -> dict:
    """A run's timeline as JSON holds it: latencies rounded, an unanswered request's (NaN)
    as null."""
    return {
        **timeline,
        "latency_ms": [None if np.isnan(x) else round(float(x), 2) for x in timeline["latency_ms"]],
    }


def since_publishes(
    timeline: dict, published_at: list[float], step: float = 0.25, span: tuple = (-1.0, 4.0)
) -> list[dict]:
    """Latency of the requests due ``step`` s apart from ``span[0]`` to ``span[1]`` s after
    each publish began (``published_at``: unix times, as the timeline's ``start``), all
    publishes together: p50, p99 and the worst, per slice. Slices before 0 are the phase as
    it was; from 0, the publisher's own work (another process on the same cores, as a
    training job would be), then each worker's load in turn and the swaps.

    A request is counted once, under the publish nearest it: publishes closer than the
    span have their windows cut at the midpoints between them (a slice past the midpoint
    holds only the requests before it, or none)."""
    latency = np.asarray(timeline["latency_ms"], dtype=float)
    due = timeline["start"] + np.arange(len(latency)) / timeline["rate"]
    at = np.sort(np.asarray(published_at, dtype=float))
    middle = (at[1:] + at[:-1]) / 2
    after_previous = np.concatenate([[-np.inf], middle])  # each publish's own part of time
    before_next = np.concatenate([middle, [np.inf]])
    out = []
    for begin in np.arange(span[0], span[1], step):
        picked = np.concatenate(
            [
                latency[(due >= max(a + begin, lo)) & (due < min(a + begin + step, hi))]
                for a, lo, hi in zip(at, after_previous, before_next, strict=True)
            ]
            or [np.empty(0)]
        )
        picked = picked[~np.isnan(picked)]
        if len(picked):
            out.append(
                {
                    "from_s": round(float(begin), 3),
                    "requests": len(picked),
                    "p50_ms": round(float(np.percentile(picked, 50)), 1),
                    "p99_ms": round(float(np.percentile(picked, 99)), 1),
                    "max_ms": round(float(picked.max()), 1),
                }
            )
    return out
