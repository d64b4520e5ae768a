"""``recgraph tune``'s given questions (the file's, ``also``), its budget and phase 3's ranking."""

from __future__ import annotations

import pytest

pytest.importorskip("optuna", reason="recgraph tune needs optuna (pip install 'recgraph[tune]')")

from recgraph.jobs.tune import fitting, search  # noqa: E402
from recgraph.jobs.tune.results import (  # noqa: E402
    Trial,
    _confirm_lines,
    write_pipeline,
)
from recgraph.jobs.tune.search import TuneSettings, tune_question  # noqa: E402
from recgraph.pipeline import PipelineConfig, load_pipeline_config  # noqa: E402
from recgraph.pipeline.config import QuestionConfig  # noqa: E402
from tests.jobs.test_tune import PhaseThree, merged, ranker_leads  # noqa: E402
from tests.jobs.test_tune import settings as tune_settings  # noqa: E402

#: The marker of the given question in these tests: a depth no search space proposes.
MARK = 123


def settings(**more) -> TuneSettings:
    """test_tune's settings, with fewer trials and no phase 3 unless told."""
    return tune_settings(**{"max_trials": 8, "confirm": False, **more})


@pytest.fixture(scope="module")
def feed_graph(small_store):
    return small_store.interactions_graph()


def given_question(**ranker) -> QuestionConfig:
    return QuestionConfig(
        retrievers=[{"name": "item_knn"}, {"name": "popular"}],
        fallback=[],
        ranker={"name": "gbdt_ranker", "max_train_users": 150, "depth": MARK, **ranker},
    )


def marked(config) -> bool:
    return config.ranker is not None and config.ranker.depth == MARK


def failing_fit(monkeypatch, error: BaseException) -> None:
    """The given question's fit raises ``error``; every other fit runs."""
    fit = fitting.FitCache.fit

    def fit_or_fail(self, config, data):
        if marked(config):
            raise error
        return fit(self, config, data)

    monkeypatch.setattr(fitting.FitCache, "fit", fit_or_fail)


@pytest.mark.parametrize("error", [MemoryError("too big"), ValueError("no such point")])
def test_a_given_question_that_fails_is_recorded_and_the_toml_says_so(
    feed_graph, monkeypatch, tmp_path, error
):
    failing_fit(monkeypatch, error)
    result = tune_question("feed", feed_graph, given_question(), settings())
    first = result.trials[0]
    assert first.phase == "default" and first.note.startswith("failed: ")
    assert str(error) in first.note
    assert result.default_value is None
    assert result.to_dict()["default_failed"] == first.note
    assert any(t.phase == "retriever" for t in result.trials)  # the search went on
    path = tmp_path / "p.toml"
    write_pipeline({"feed": result}, path, PipelineConfig())
    assert "the shipped default question: not compared (failed: " in path.read_text()
    rows = list(zip(*[list(c.cells) for c in result.table().columns], strict=True))
    assert rows[0][1] == "default" and rows[0][-1].startswith("failed: ")


def test_a_given_question_that_raises_a_bug_is_not_swallowed(feed_graph, monkeypatch):
    failing_fit(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        tune_question("feed", feed_graph, given_question(), settings())


def test_a_failing_also_question_is_recorded_once_and_named(feed_graph, monkeypatch):
    failing_fit(monkeypatch, MemoryError("too big"))
    result = tune_question(
        "feed", feed_graph, settings=settings(), also=[given_question(), given_question()]
    )
    failed = [t for t in result.trials if t.phase == "default" and t.note.startswith("failed")]
    assert len(failed) == 1 and failed[0].ranker["depth"] == MARK
    assert result.default_value is not None  # the code defaults' question did fit


def test_a_given_auto_label_slice_is_taught_with_the_validation_holdout_and_kept(
    feed_graph, monkeypatch, tmp_path
):
    """As `recgraph evaluate` does: the spec stays "auto", the holdout is the split's method."""
    taught = []
    train_stage = fitting.train_stage

    def spy(spec, *args, **options):
        taught.append((spec.depth, spec.label_split, options.get("holdout")))
        return train_stage(spec, *args, **options)

    monkeypatch.setattr(fitting, "train_stage", spy)
    score = fitting.Validation.score
    # the given question wins validation, so it is the pick the TOML holds
    monkeypatch.setattr(
        fitting.Validation,
        "score",
        lambda self, model, batch=512: 1.0 if marked(model.config) else score(self, model, batch),
    )
    result = tune_question("feed", feed_graph, given_question(), settings())
    method = result.validation["method"]
    assert (MARK, "auto", method) in taught
    assert all(holdout == method for _, _, holdout in taught)
    assert result.chosen == result.trials[0].number and result.config.ranker.depth == MARK
    assert result.config.ranker.label_split == "auto"
    path = tmp_path / "p.toml"
    write_pipeline({"feed": result}, path, PipelineConfig())
    assert load_pipeline_config(path).feed.ranker.label_split == "auto"


class _Clock:
    """A clock that the given question's fit moves on by ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def perf_counter(self) -> float:
        self.now += 5.0  # each reading: a trial takes a few of them
        return self.now


def test_the_budget_starts_after_the_given_question_and_the_seconds_count_it(
    feed_graph, monkeypatch
):
    clock = _Clock(step=3600.0)
    monkeypatch.setattr(search, "time", clock)
    fit = fitting.FitCache.fit

    def slow_given(self, config, data):
        if marked(config):
            clock.now += clock.step  # the given question outlasts the whole budget
        return fit(self, config, data)

    monkeypatch.setattr(fitting.FitCache, "fit", slow_given)
    result = tune_question(
        "feed",
        feed_graph,
        given_question(),
        settings(max_trials=20, budget_minutes=5.0, retrievers=["item_knn"]),
    )
    # with the budget spent before phase 1, item_knn would have had its first point alone
    assert sum(t.phase == "retriever" for t in result.trials) > 1
    assert result.seconds >= clock.step


def test_the_trial_caps_phase_shares_come_from_the_trials_the_given_ones_leave(feed_graph):
    others = [
        given_question(depth=50),
        given_question(depth=100, negatives=1.0),
    ]
    result = tune_question(
        "feed",
        feed_graph,
        given_question(),
        settings(max_trials=12, retrievers=["item_knn"]),
        also=others,
    )
    assert sum(t.phase == "default" for t in result.trials) == 3
    # 12 - 3 = 9 left: phase 1 takes int(9 * 0.35) = 3 (of 12, it took 4)
    assert sum(t.phase == "retriever" for t in result.trials) == int(9 * search.RETRIEVER_SHARE)
    assert len(result.trials) <= 12


def test_phase_three_ranks_a_finalist_without_a_later_figure_after_those_with_one():
    """No second validation and no ranker: a finalist's only figure is its inflated own."""
    phase3 = PhaseThree("retriever", {"method": "leave_last_n"})
    merge, ranked = merged(), merged(seed=0)
    merged_trial = Trial(1, "pipeline", [{"name": "popular"}], None, 0.20, 0.0)
    ranked_trial = Trial(2, "pipeline", [{"name": "popular"}], {"name": "gbdt_ranker"}, 0.15, 0)

    def no_carve():
        raise ValueError("leave_last_n has one horizon: no second validation")

    kept = phase3(
        (0.20, merge),
        [(merged_trial, merge), (ranked_trial, ranked)],
        first=ranker_leads,
        carve=no_carve,
        seeds=(0, 1),
    )
    confirm = phase3.confirm
    # the merge's own 2.0x is phase 2's best of many; the ranker's 1.2x was drawn afterwards
    assert kept == (0.15, ranked) and confirm["kept"] == "#2"
    assert confirm["no_later_figure"] == ["#1"]
    assert confirm["mean_share_after"] == {"#1": None, "#2": 1.2}
    text = "\n".join(_confirm_lines(confirm))
    assert "#1: no figure drawn after phase 2's" in text


def test_the_toml_comments_print_the_figure_the_pick_was_ranked_by():
    confirm = {
        "fraction": 0.4,
        "seed": 0,
        "rows_fit": 10,
        "rows_valid": 5,
        "users": 3,
        "best_single": 0.2,
        "ranker_seeds": [0, 1],
        "mean_share": {"#1": 1.275, "#2": 1.175},
        "mean_share_after": {"#1": 1.05, "#2": 1.15},
        "worst_share": {"#1": 1.05, "#2": 1.15},
        "kept": "#2",
        "ranked": [],
        "unchecked": [],
        "no_later_figure": [],
    }
    text = "\n".join(_confirm_lines(confirm))
    assert "ranked by the mean drawn after phase 2's choice {'#1': 1.05, '#2': 1.15}" in text
    assert "1.275" not in text
