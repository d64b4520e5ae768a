"""The compiled trees score exactly as LightGBM's own predict (bit for bit)."""

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from recgraph.ranking import create_ranker  # noqa: E402
from recgraph.ranking.tree_kernels import CompiledTrees  # noqa: E402
from tests.ranking.conformance import synthetic_batch  # noqa: E402


def _rows_with_gaps(n: int, seed: int) -> np.ndarray:
    """Rows with NaNs, zeros, values below LightGBM's zero threshold and duplicates."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[:, 3] = np.round(x[:, 3])  # many exact zeros: a zero-as-missing split
    x[rng.random(n) < 0.2, 1] = np.nan
    x[rng.random(n) < 0.1, 2] = np.float32(1e-38)
    x[rng.random(n) < 0.1, 4] = 0.0
    return x


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "lambdarank"},
        {"objective": "lambdarank", "use_missing": True, "zero_as_missing": True},
        {"objective": "rank_xendcg"},
    ],
)
def test_compiled_trees_score_as_lightgbm(params):
    x = _rows_with_gaps(2000, 0)
    y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0.5) + (x[:, 3] > 0)).astype(int)
    booster = lgb.train(
        {**params, "num_leaves": 7, "verbosity": -1, "min_data_in_leaf": 5, "num_threads": 1},
        lgb.Dataset(x, label=y, group=[20] * 100),
        num_boost_round=30,
    )
    compiled = CompiledTrees.from_booster(booster, None, raw_score=False)
    assert compiled is not None
    probe = _rows_with_gaps(500, 1)
    expected = booster.predict(probe, num_threads=1)
    np.testing.assert_array_equal(compiled.predict(probe), expected)
    np.testing.assert_array_equal(compiled.predict(probe.astype(np.float64)), expected)
    # the first 10 iterations only, as predict(num_iteration=10)
    first = CompiledTrees.from_booster(booster, 10, raw_score=True)
    np.testing.assert_array_equal(
        first.predict(probe), booster.predict(probe, num_iteration=10, raw_score=True)
    )


def test_a_transformed_output_is_left_to_lightgbm():
    x = _rows_with_gaps(500, 0)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=(x[:, 0] > 0).astype(int)),
        num_boost_round=5,
    )
    assert CompiledTrees.from_booster(booster, None, raw_score=False) is None
    assert CompiledTrees.from_booster(booster, None, raw_score=True) is not None


@pytest.mark.parametrize("params", [{}, {"residual": None}, {"bags": 2}])
def test_the_ranker_scores_the_same_with_and_without_compiled_trees(params, tmp_path):
    from recgraph.ranking.base import Ranker

    train, valid = synthetic_batch(100, 20, 0), synthetic_batch(30, 20, 1)
    ranker = create_ranker("gbdt_ranker", {"n_estimators": 40, **params}).fit(train, valid)
    assert all(trees is not None for trees in ranker.compiled_)
    fast = ranker.score(valid)
    ranker.save(tmp_path / "r")
    loaded = Ranker.load(tmp_path / "r")
    assert all(trees is not None for trees in loaded.compiled_)
    np.testing.assert_array_equal(loaded.score(valid), fast)
    ranker.compiled_ = []  # LightGBM's predict alone, as before
    np.testing.assert_array_equal(ranker.score(valid), fast)
