"""``benchmarks/load_timeline.py``: what ``load.py``'s reload phase saw around each publish."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
load_timeline = pytest.importorskip("load_timeline")


def test_latency_is_sliced_by_time_since_each_publish_all_publishes_together():
    """10 requests/s from unix time 100: publishes at 102 and 106; slow answers 0.5 s after
    each (one of them unanswered: left out), 5 ms elsewhere."""
    latency = np.full(100, 5.0)
    latency[25], latency[65], latency[66] = 80.0, 40.0, np.nan
    timeline = {"start": 100.0, "rate": 10.0, "latency_ms": latency}
    slices = load_timeline.since_publishes(timeline, [102.0, 106.0], step=0.5, span=(-1.0, 1.5))
    assert [s["from_s"] for s in slices] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert [s["requests"] for s in slices] == [10, 10, 10, 9, 10]
    assert slices[3]["max_ms"] == 80.0 and slices[3]["p50_ms"] == 5.0
    assert {s["max_ms"] for i, s in enumerate(slices) if i != 3} == {5.0}


def test_load_still_offers_the_switch_figures():
    load = pytest.importorskip("load")
    assert load.switches is load_timeline.switches
    assert load.timeline_for_json is load_timeline.timeline_for_json


def test_a_request_between_close_publishes_is_counted_once_under_the_nearest():
    """Publishes 2 s apart with a 5 s span: each request in one publish's window only, the
    nearest one's (cut at the midpoints), so no slice counts a request twice."""
    latency = np.arange(200, dtype=float)  # 10 requests/s from 100: a request's own latency
    timeline = {"start": 100.0, "rate": 10.0, "latency_ms": latency}
    published = [106.0, 102.0, 104.0]  # any order
    slices = load_timeline.since_publishes(timeline, published, step=0.5, span=(-1.0, 4.0))
    # 102's from 101 to the midpoint 103, 104's from 103 to 105, 106's from 105 to 110
    assert sum(s["requests"] for s in slices) == 10 * (110.0 - 101.0)
    by_start = {s["from_s"]: s for s in slices}
    # -1.0: 101-101.5 (102's), 103-103.5 (104's), 105-105.5 (106's); never 102's +1.0 s
    assert by_start[-1.0]["requests"] == 15 and by_start[-1.0]["p50_ms"] == 32.0
    assert by_start[0.5]["requests"] == 15 and by_start[1.0]["requests"] == 5  # 106's only
    assert max(by_start) == 3.5 and by_start[3.5]["max_ms"] == 99.0  # 106's last
