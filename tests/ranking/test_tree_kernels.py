"""The compiled trees score exactly as LightGBM's own predict (bit for bit)."""

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from recgraph.ranking import create_ranker  # noqa: E402
from recgraph.ranking import tree_kernels as tk  # noqa: E402
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
    # column 1's NaNs make its splits' missing type NaN (zero_as_missing: Zero): the
    # kernel's general steps, which read each node's flags
    assert compiled.general
    probe = _rows_with_gaps(500, 1)  # more rows than one block (BLOCK_ROWS)
    expected = booster.predict(probe, num_threads=1)
    np.testing.assert_array_equal(compiled.predict(probe), expected)
    np.testing.assert_array_equal(compiled.predict(probe.astype(np.float64)), expected)
    # the first 10 iterations only, as predict(num_iteration=10)
    first = CompiledTrees.from_booster(booster, 10, raw_score=True)
    np.testing.assert_array_equal(
        first.predict(probe), booster.predict(probe, num_iteration=10, raw_score=True)
    )


def test_a_model_without_missing_values_reads_nans_as_zeros_as_lightgbm():
    x = _rows_with_gaps(2000, 0)
    x = np.nan_to_num(x)  # trained without NaNs: every split's missing type is None
    booster = lgb.train(
        {"objective": "lambdarank", "num_leaves": 15, "verbosity": -1, "num_threads": 1,
         "min_data_in_leaf": 5},
        lgb.Dataset(x, label=(x[:, 0] + x[:, 2] > 0.3).astype(int), group=[20] * 100),
        num_boost_round=25,
    )  # fmt: skip
    compiled = CompiledTrees.from_booster(booster, None, raw_score=True)
    assert compiled is not None and not compiled.general
    probe = _rows_with_gaps(700, 2)  # NaNs at serving: LightGBM reads them as 0 here
    assert np.isnan(probe).any()
    expected = booster.predict(probe, num_threads=1, raw_score=True)
    np.testing.assert_array_equal(compiled.predict(probe), expected)
    for n in (0, 1, tk.BLOCK_ROWS, tk.BLOCK_ROWS + 1):
        np.testing.assert_array_equal(compiled.predict(probe[:n]), expected[:n])


@pytest.mark.parametrize("nan_free", [True, False])
def test_trees_wider_than_a_mask_are_walked_to_the_same_scores(nan_free):
    x = _rows_with_gaps(4000, 0)
    if nan_free:
        x = np.nan_to_num(x)
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * x[:, 2] > 0.2).astype(int)
    booster = lgb.train(
        {"objective": "lambdarank", "num_leaves": 90, "min_data_in_leaf": 2, "verbosity": -1,
         "num_threads": 1},
        lgb.Dataset(x, label=y, group=[20] * 200),
        num_boost_round=8,
    )  # fmt: skip
    compiled = CompiledTrees.from_booster(booster, None, raw_score=True)
    assert compiled is not None and compiled.general is not nan_free
    assert compiled.arrays["leaf_value"].astype(bool).sum() > tk.MASK_LEAVES
    assert compiled.masks is None  # some tree has more leaves than a mask has bits
    probe = _rows_with_gaps(600, 4)
    expected = booster.predict(probe, num_threads=1, raw_score=True)
    np.testing.assert_array_equal(compiled.predict(probe), expected)


def test_masks_and_walks_find_the_same_leaves():
    x = _rows_with_gaps(2000, 0)
    booster = lgb.train(
        {"objective": "lambdarank", "num_leaves": 64, "min_data_in_leaf": 2, "verbosity": -1,
         "num_threads": 1},
        lgb.Dataset(x, label=(np.nan_to_num(x[:, 0]) > x[:, 2]).astype(int), group=[20] * 100),
        num_boost_round=6,
    )  # fmt: skip
    compiled = CompiledTrees.from_booster(booster, None, raw_score=True)
    assert compiled is not None and compiled.masks is not None
    assert np.diff(compiled.masks["leaf_start"]).max() == tk.MASK_LEAVES  # every bit used
    probe = _rows_with_gaps(300, 5)
    walked = np.empty(len(probe))
    args = [compiled.arrays[k] for k in tk._WALK_ARGS]
    tk.predict_raw(probe, *args, compiled.general, walked)
    np.testing.assert_array_equal(compiled.predict(probe), walked)
    np.testing.assert_array_equal(walked, booster.predict(probe, num_threads=1, raw_score=True))


def _split_often(max_bin: int, leaves: int) -> "lgb.Booster":
    """Feature 0 split hundreds of times (sin: a threshold at every bend)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = (np.sin(3 * x[:, 0]) + rng.normal(size=3000) > 0).astype(int)
    return lgb.train(
        {"objective": "lambdarank", "num_leaves": leaves, "max_bin": max_bin,
         "min_data_in_leaf": 2, "min_sum_hessian_in_leaf": 0, "verbosity": -1,
         "num_threads": 1},
        lgb.Dataset(x, label=y, group=[20] * 150),
        num_boost_round=60,
    )  # fmt: skip


def _few_splits() -> "lgb.Booster":
    x = _rows_with_gaps(2000, 0)
    return lgb.train(
        {"objective": "lambdarank", "num_leaves": 15, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=(np.nan_to_num(x[:, 0]) > 0).astype(int), group=[20] * 100),
        num_boost_round=40,
    )


def _nans_on_the_most_split_feature() -> "lgb.Booster":
    """Feature 0, the only one with NaNs in training (its splits' missing type NaN), split
    more than 256 times."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 5)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1])
    x[rng.random(3000) < 0.1, 0] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(int)
    return lgb.train(
        {"objective": "lambdarank", "num_leaves": 15, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=y, group=[20] * 150),
        num_boost_round=70,
    )


def _flat(booster) -> dict[str, np.ndarray]:
    return tk._flatten(tk._parse_model(booster.model_to_string())[0])


@pytest.mark.parametrize(
    "train, most_splits",
    [
        (_few_splits, (1, 256)),
        (lambda: _split_often(255, 15), (257, 1000)),  # more splits than rows, <= 255 values
        (lambda: _split_often(4095, 31), (257, 2000)),  # more distinct thresholds than rows
    ],
)
def test_the_probe_puts_every_threshold_on_an_edge(train, most_splits):
    flat = _flat(train())
    n_features = int(flat["feature"].max()) + 1
    assert most_splits[0] <= np.bincount(flat["feature"]).max() <= most_splits[1]
    rows = tk._probe_rows(flat, n_features)
    for feature, threshold in zip(flat["feature"], flat["threshold"], strict=True):
        on = np.float32(threshold)
        edges = [on, np.nextafter(on, np.float32(-np.inf)), np.nextafter(on, np.float32(np.inf))]
        assert np.isin(rows[:, feature], edges).any(), (feature, threshold)


@pytest.mark.parametrize(
    "train", [_few_splits, _nans_on_the_most_split_feature, lambda: _split_often(4095, 31)]
)
def test_every_column_of_the_probe_holds_nans_zeros_and_tiny_values(train):
    flat = _flat(train())
    rows = tk._probe_rows(flat, int(flat["feature"].max()) + 1)
    for values in rows.T:  # a feature split in every row still has its gaps
        assert np.isnan(values).sum() >= 10
        assert (values == 0).sum() >= 10
        assert (values == np.float32(1e-38)).any()


def test_a_kernel_wrong_on_the_nans_of_the_most_split_feature_is_left_to_lightgbm(monkeypatch):
    booster = _nans_on_the_most_split_feature()
    flat = _flat(booster)
    nan_type = ((flat["decision"] >> 2) & 3) == tk._MISSING_NAN
    assert (flat["feature"][nan_type] == 0).all() and (flat["feature"] == 0).sum() > 256
    assert CompiledTrees.from_booster(booster, None, raw_score=True) is not None
    pack = tk._pack

    def nans_the_wrong_way(flat):  # every NaN-type node's default direction inverted
        packed = pack(flat)
        inverted = packed["flags"] ^ tk._NAN_LEFT
        packed["flags"] = np.where(packed["missing"] == tk._MISSING_NAN, inverted, packed["flags"])
        return packed

    monkeypatch.setattr(tk, "_pack", nans_the_wrong_way)
    assert CompiledTrees.from_booster(booster, None, raw_score=True) is None


def test_a_tree_without_a_split_adds_its_one_leaf():
    x = np.zeros((200, 3), np.float32)  # nothing to split on: one leaf a tree
    booster = lgb.train(
        {"objective": "regression", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=np.arange(200) % 2),
        num_boost_round=3,
    )
    compiled = CompiledTrees.from_booster(booster, None, raw_score=True)
    assert compiled is not None
    assert (compiled.arrays["depths"] == 0).all()
    rows = _rows_with_gaps(10, 3)[:, :3]
    expected = booster.predict(rows, num_threads=1, raw_score=True)
    assert (expected == 0.5).all()  # the leaf: the labels' mean (lambdarank's would be 0)
    np.testing.assert_array_equal(compiled.predict(rows), expected)


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
    assert all(trees is not None for _, trees in ranker.compiled_)
    fast = ranker.score(valid)
    ranker.save(tmp_path / "r")
    loaded = Ranker.load(tmp_path / "r")
    assert all(trees is not None for _, trees in loaded.compiled_)
    np.testing.assert_array_equal(loaded.score(valid), fast)
    ranker.compiled_ = []  # LightGBM's predict alone, as before
    np.testing.assert_array_equal(ranker.score(valid), fast)


class _Edited:
    """A booster whose text model is edited (what LightGBM predicts is the real one's)."""

    def __init__(self, booster, edit):
        self.booster, self.edit = booster, edit

    def model_to_string(self) -> str:
        return self.edit(self.booster.model_to_string())

    def predict(self, *args, **kwargs):
        return self.booster.predict(*args, **kwargs)


def _random_forest():
    x = _rows_with_gaps(600, 0)
    return lgb.train(
        {"boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5,
         "objective": "lambdarank", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=(np.nan_to_num(x[:, 0]) > 0).astype(int), group=[20] * 30),
        num_boost_round=5,
    )  # fmt: skip


def test_an_averaging_model_is_left_to_lightgbm_and_the_probe_catches_it_unflagged():
    forest = _random_forest()
    assert "\naverage_output\n" in forest.model_to_string()
    for raw in (True, False):
        assert CompiledTrees.from_booster(forest, None, raw_score=raw) is None
    # without its header flag, the compiled sum is not what LightGBM predicts (the trees'
    # average): the probe catches it
    unflagged = _Edited(forest, lambda text: text.replace("\naverage_output\n", "\n"))
    assert CompiledTrees.from_booster(unflagged, None, raw_score=False) is None


def test_an_empty_objective_is_left_to_lightgbm_without_an_error():
    x = _rows_with_gaps(500, 0)
    booster = lgb.train(
        {"objective": "lambdarank", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=(x[:, 0] > 0).astype(int), group=[20] * 25),
        num_boost_round=5,
    )
    blank = _Edited(booster, lambda text: text.replace("objective=lambdarank", "objective="))
    assert CompiledTrees.from_booster(blank, None, raw_score=False) is None
    assert CompiledTrees.from_booster(blank, None, raw_score=True) is not None


def test_a_booster_swapped_in_is_not_scored_with_the_trees_of_the_one_it_replaced():
    train, valid = synthetic_batch(100, 20, 0), synthetic_batch(30, 20, 1)
    ranker = create_ranker("gbdt_ranker", {"n_estimators": 20, "residual": None}).fit(train, valid)
    other = create_ranker("gbdt_ranker", {"n_estimators": 5, "residual": None}).fit(valid, train)
    ranker.boosters_ = list(other.boosters_)  # same count: the old trees' list still fits
    swapped = ranker.score(valid)
    ranker.compiled_ = []  # LightGBM's predict alone
    np.testing.assert_array_equal(swapped, ranker.score(valid))
    np.testing.assert_array_equal(swapped, other.score(valid))


def test_a_text_model_given_is_still_checked_against_the_booster():
    x = _rows_with_gaps(1000, 0)
    label = (np.nan_to_num(x[:, 0]) > 0).astype(int)
    one, other = (
        lgb.train(
            {"objective": "lambdarank", "verbosity": -1, "num_threads": 1, "seed": seed,
             "feature_fraction": 0.5},
            lgb.Dataset(x, label=label, group=[20] * 50),
            num_boost_round=rounds,
        )
        for seed, rounds in ((0, 10), (1, 4))
    )  # fmt: skip
    text = one.model_to_string()
    as_read = CompiledTrees.from_booster(one, None, raw_score=True, text=text)
    probe = _rows_with_gaps(200, 6)
    np.testing.assert_array_equal(
        as_read.predict(probe), one.predict(probe, num_threads=1, raw_score=True)
    )
    # another booster's text: the probe rows tell (LightGBM answers)
    assert CompiledTrees.from_booster(other, None, raw_score=True, text=text) is None
