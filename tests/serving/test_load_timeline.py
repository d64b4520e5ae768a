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
