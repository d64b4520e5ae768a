import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval.biased_mf import BiasedMF
from recgraph.retrieval.popular import Popular
from recgraph.retrieval.retraining import (
    Action,
    RetrainingDriver,
    RetrainingPolicy,
    grow_seen,
    supports_partial_fit,
)
from tests.retrieval.conformance import two_cliques


class CountingPopular(Popular):
    """Popularity with a ``partial_fit`` that records its calls."""

    name = "counting_popular"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []

    def _fit(self, train):
        self.calls.append(("fit", len(train)))
        super()._fit(train)

    def partial_fit(self, new):
        self.calls.append(("partial_fit", len(new)))
        return self


def batch(users, items, day):
    return Interactions.from_arrays(users, items, timestamp=[day * 86400] * len(users))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"n_buffered": 0, "incremental_since_full": 0, "seconds_since_last": 1e9}, Action.WAIT),
        ({"n_buffered": 5, "incremental_since_full": 0, "seconds_since_last": 10}, Action.WAIT),
        (
            {"n_buffered": 5, "incremental_since_full": 0, "seconds_since_last": 60},
            Action.INCREMENTAL,
        ),
        (
            {"n_buffered": 5, "incremental_since_full": 1, "seconds_since_last": 60},
            Action.INCREMENTAL,
        ),
        ({"n_buffered": 5, "incremental_since_full": 2, "seconds_since_last": 60}, Action.FULL),
        ({"n_buffered": 5, "incremental_since_full": 0, "seconds_since_last": None}, Action.FULL),
        (
            {
                "n_buffered": 5,
                "incremental_since_full": 0,
                "seconds_since_last": 60,
                "supports_incremental": False,
            },
            Action.FULL,
        ),
    ],
)
def test_policy_decisions(state, expected):
    policy = RetrainingPolicy({"full_retrain_every": 3, "min_interval_seconds": 60})
    assert policy.decide(**state) is expected


def test_never_full_when_every_is_zero():
    policy = RetrainingPolicy({"full_retrain_every": 0})
    for cycles in range(50):
        assert (
            policy.decide(n_buffered=1, incremental_since_full=cycles, seconds_since_last=1)
            is Action.INCREMENTAL
        )


def test_driver_alternates_incremental_and_full():
    model = CountingPopular()
    driver = RetrainingDriver(
        model, {"full_retrain_every": 3}, history=batch(["a"], ["x"], 0), now=0
    )
    actions = [
        driver.add(batch(["b", "c"], ["y", "x"], day), now=day * 86400).action
        for day in range(1, 8)
    ]
    assert actions == ["incremental", "incremental", "full"] * 2 + ["incremental"]
    assert model.calls[0] == ("fit", 1)
    assert ("fit", 1 + 2 * 3) in model.calls, "a full retrain sees everything so far"
    assert len(driver.history) == 1 + 2 * 7
    assert driver.n_buffered == 0


def test_driver_waits_for_the_interval_and_keeps_the_buffer():
    model = CountingPopular()
    driver = RetrainingDriver(
        model,
        {"full_retrain_every": 0, "min_interval_seconds": 3600},
        history=batch(["a"], ["x"], 0),
        now=0,
    )
    assert driver.add(batch(["b"], ["y"], 0), now=600).action is Action.WAIT
    assert driver.add(batch(["c"], ["z"], 0), now=1200).action is Action.WAIT
    assert driver.n_buffered == 2
    report = driver.add(batch([], [], 0), now=3600)
    assert report.action is Action.INCREMENTAL and report.n_new == 2
    assert model.calls[-1] == ("partial_fit", 2)
    assert driver.step(now=3700).action is Action.WAIT, "nothing new"


def test_models_without_partial_fit_are_retrained():
    model = Popular()
    assert not supports_partial_fit(model) and supports_partial_fit(BiasedMF())
    driver = RetrainingDriver(
        model, {"full_retrain_every": 10}, history=batch(["a"], ["x"], 0), now=0
    )
    assert driver.add(batch(["b"], ["x"], 1), now=86400).action is Action.FULL
    assert model.popularity_.tolist() == [2.0]


def test_driver_with_a_real_incremental_model():
    model = BiasedMF(epochs=5, partial_epochs=2, factors=2)
    history = two_cliques("items")
    driver = RetrainingDriver(model, {"full_retrain_every": 2}, history=history, now=0)
    new = Interactions.from_arrays(["new"], ["3"], users=history.users, items=history.items)
    assert driver.add(new, now=1).action is Action.INCREMENTAL
    assert model.n_users == 11 and model.user_factors_.shape[0] == 11
    assert driver.add(Interactions.from_arrays(["new"], ["4"]), now=2).action is Action.FULL
    assert model.n_users == 11 and set(model.items.external(model.seen_items(10))) == {"3", "4"}


def test_grow_seen_pads_and_adds():
    old = two_cliques("items").seen()
    new = Interactions.from_arrays(
        ["0", "x"], ["1", "9"], users=two_cliques("items").users, items=two_cliques("items").items
    )
    grown = grow_seen(old, new)
    assert grown.shape == (11, 10)
    assert grown[0, 1] == 1 and grown[10, 9] == 1 and grown.nnz == old.nnz + 2
    assert set(np.unique(grown.data)) == {1.0}
