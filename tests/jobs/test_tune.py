"""``recgraph tune``: a pipeline chosen on validation carved from train, written as TOML that loads."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("optuna", reason="recgraph tune needs optuna (pip install 'recgraph[tune]')")

from recgraph.cli.evaluate_commands import write_split_table  # noqa: E402
from recgraph.cli.main import main  # noqa: E402
from recgraph.data import splits  # noqa: E402
from recgraph.jobs.tune import (  # noqa: E402
    TuneSettings,
    tune_question,
    write_pipeline,
)
from recgraph.jobs.tune.results import Trial  # noqa: E402
from recgraph.jobs.tune.search import _confirm  # noqa: E402
from recgraph.pipeline import PipelineConfig, load_pipeline_config  # noqa: E402
from recgraph.pipeline.config import QuestionConfig  # noqa: E402
from recgraph.retrieval.base import Retriever  # noqa: E402


def settings(**more) -> TuneSettings:
    values = {
        "budget_minutes": 5.0,
        "max_trials": 12,
        "retrievers": ["item_knn", "popular"],
        "ranker_users": 150,
    }
    values.update(more)
    return TuneSettings(**values)


@pytest.fixture(scope="module")
def feed_graph(small_store):
    return small_store.interactions_graph()


@pytest.fixture(scope="module")
def tuned(feed_graph):
    # 13: the given question, then 12 for the search (phase 1's share: 2 points per retriever)
    return tune_question("feed", feed_graph, settings=settings(max_trials=13))


def test_tuning_tries_retrievers_then_pipelines_and_never_loses_to_the_best_single(tuned):
    phases = [t.phase for t in tuned.trials]
    assert phases[0] == "default" and "retriever" in phases and "pipeline" in phases
    assert len(tuned.trials) <= 13
    # the cap leaves room for a ranked trial and for phase 3's check of it
    assert any(t.phase == "pipeline" and t.ranker for t in tuned.trials)
    assert "confirm" in tuned.validation and "confirm" in phases
    assert tuned.chosen is not None
    singles = [t.value for t in tuned.trials if t.phase == "retriever"]
    assert tuned.value >= max(singles) - 1e-12
    assert tuned.best_single.value == pytest.approx(max(singles)) or tuned.best_single.value >= max(
        singles
    )
    # popular's window is among what was tried (the synthetic data has timestamps)
    windows = [
        r.get("params", {}).get("window_days")
        for t in tuned.trials
        if t.phase == "retriever"
        for r in t.retrievers
        if r["name"] == "popular"
    ]
    assert len(windows) >= 2


def test_the_written_toml_loads_validates_and_says_what_validation_chose(tuned, tmp_path):
    path = tmp_path / "tuned.toml"
    written = write_pipeline({"feed": tuned}, path, PipelineConfig())
    loaded = load_pipeline_config(path)
    assert loaded == written
    assert [s.name for s in loaded.feed.retrievers] == [s.name for s in tuned.config.retrievers]
    assert loaded.who_to_follow == PipelineConfig().who_to_follow
    text = path.read_text()
    assert "never a test split" in text
    assert f"validation ndcg@20 {tuned.value:.4f}" in text
    assert f"{tuned.best_single.value:.4f}" in text


def test_the_same_seed_makes_the_same_choice(tuned, feed_graph):
    again = tune_question("feed", feed_graph, settings=settings(max_trials=13))
    assert again.config == tuned.config
    assert [t.value for t in again.trials] == [t.value for t in tuned.trials]
    # phase 3 ran, and repeats too
    assert "confirm" in [t.phase for t in again.trials]
    assert again.validation["confirm"] == tuned.validation["confirm"]


def test_the_test_split_is_never_read(feed_graph, monkeypatch):
    train, test = splits.split(feed_graph, "temporal_global", fraction=0.2)
    train_pairs = set(zip(train.src.tolist(), train.dst.tolist(), strict=True))
    test_only = set(zip(test.src.tolist(), test.dst.tolist(), strict=True)) - train_pairs
    assert test_only
    seen = []
    real_fit = Retriever.fit

    def spy(self, data, *args, **kwargs):
        seen.append(data)
        return real_fit(self, data, *args, **kwargs)

    monkeypatch.setattr(Retriever, "fit", spy)
    result = tune_question("feed", train, settings=settings(max_trials=12))
    # every phase ran, phase 3's second validation included
    assert any(t.phase == "pipeline" and t.ranker for t in result.trials)
    assert result.validation["confirm"]["fraction"] is not None
    assert seen and result.validation["rows_fit"] + result.validation["rows_valid"] == len(train)
    for data in seen:
        pairs = set(zip(data.src.tolist(), data.dst.tolist(), strict=True))
        assert pairs <= train_pairs
        assert not pairs & test_only


def test_account_graphs_are_tuned_on_recall(small_store):
    follows = small_store.follows_graph()
    result = tune_question(
        "who_to_follow",
        follows,
        settings=settings(max_trials=8, retrievers=["adamic_adar", "popular"]),
    )
    assert result.metric == "recall@20"
    assert result.validation["method"] in ("temporal_pairs", "edge_holdout")
    assert {s.name for s in result.config.retrievers} <= {"adamic_adar", "popular"}


def test_a_bad_metric_or_retriever_is_a_clear_error(feed_graph):
    from recgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="metric"):
        tune_question("feed", feed_graph, settings=settings(metric="auc"))
    with pytest.raises(ConfigError, match="no search space"):
        tune_question("feed", feed_graph, settings=settings(retrievers=["lightgcn"]))
    with pytest.raises(ConfigError, match="tuned on"):
        tune_question("who_to_follow", feed_graph, settings=settings())


def test_the_cli_tunes_a_training_file_and_writes_toml_and_json(feed_graph, tmp_path, capsys):
    train, _ = splits.split(feed_graph, "random_per_user", fraction=0.2)
    train_file = tmp_path / "train.csv"
    write_split_table(_no_dislikes(train), train_file)
    out, report = tmp_path / "p.toml", tmp_path / "trials.json"
    status = main(
        [
            "tune",
            "--train",
            str(train_file),
            "--kind",
            "items",
            "--budget",
            "2",
            "--trials",
            "12",
            "--retriever",
            "popular",
            "--retriever",
            "item_knn",
            "--out",
            str(out),
            "--json",
            str(report),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "recgraph tune feed" in printed and "chosen" in printed
    config = load_pipeline_config(out)
    assert {s.name for s in config.feed.retrievers} <= {"popular", "item_knn"}
    import json

    trials = json.loads(report.read_text())["feed"]["trials"]
    assert 1 <= len(trials) <= 12
    assert any(t["phase"] == "pipeline" and t["ranker"] for t in trials)
    assert any(t["phase"] == "confirm" for t in trials)


def _no_dislikes(data):
    from recgraph.data.interactions import Kind

    return data.subset(np.flatnonzero(data.kind != Kind.DISLIKE))


@pytest.mark.slow
def test_train_with_tune_publishes_the_tuned_pipeline(small_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = small_store.url
    status = main(
        [
            "train",
            "--tune",
            "--budget",
            "0.3",
            "--db",
            url,
            "--registry",
            str(tmp_path / "registry"),
            "--tuned-out",
            str(tmp_path / "t.toml"),
        ]
    )
    assert status == 0
    config = load_pipeline_config(tmp_path / "t.toml")
    assert config.feed.retrievers and config.who_to_follow.retrievers
    assert (tmp_path / "registry").is_dir()


def test_a_tuned_feed_without_item_knn_keeps_the_file_valid(tuned, tmp_path):
    from dataclasses import replace

    result = replace(tuned, config=single_popular())
    written = write_pipeline({"feed": result}, tmp_path / "p.toml", load_pipeline_config())
    assert written.similar.retriever is None  # item_knn is gone: co-occurrence answers
    assert load_pipeline_config(tmp_path / "p.toml") == written


def test_the_given_and_also_questions_are_tried_as_they_are_and_eligible(feed_graph):
    ranked = QuestionConfig(
        retrievers=[{"name": "item_knn"}, {"name": "popular"}],
        fallback=[],
        ranker={"name": "gbdt_ranker", "max_train_users": 150},
    )
    result = tune_question(
        "feed", feed_graph, settings=settings(max_trials=8, confirm=False), also=[ranked]
    )
    given = [t for t in result.trials if t.phase == "default"]
    assert [t.note for t in given][:1] == ["given"]
    assert any(t.note == "also #1" and t.ranker is not None for t in given)
    # without phase 3 the pick is the best validation figure, the given questions included
    assert result.value >= max(t.value for t in given) - 1e-12
    best_given = max(given, key=lambda t: t.value)
    if best_given.value > max(t.value for t in result.trials if t.phase != "default"):
        assert result.chosen == best_given.number


def test_a_trial_that_differs_only_in_negatives_is_not_a_repeat():
    from recgraph.jobs.tune.search import _describe, _same

    def ranked(negatives: float) -> QuestionConfig:
        return QuestionConfig(
            retrievers=[{"name": "popular"}],
            fallback=[],
            ranker={"name": "gbdt_ranker", "negatives": negatives},
        )

    tried = Trial(0, "pipeline", *_describe(ranked(0.3)), value=0.1, seconds=1.0)
    assert _same(tried, ranked(0.3))
    assert not _same(tried, ranked(1.0))


class _ConfigIsModel:
    """A fit cache that fits nothing: in the phase-3 tests a config stands for its model."""

    def fit(self, config, data):
        return config


SECOND_CARVE = {"fraction": 0.4, "seed": 0, "rows_fit": 10, "rows_valid": 5, "users": 3}


# The finalists of the phase-3 tests: the best single retriever, a merge of two, and the
# merge with a ranker (fresh objects each call: the configs are mutable).
def single_popular() -> QuestionConfig:
    return QuestionConfig(retrievers=[{"name": "popular"}], fallback=[])


def merged(**ranker) -> QuestionConfig:
    """popular + item_knn, with a seeded ``gbdt_ranker`` if given ``ranker`` settings."""
    return QuestionConfig(
        retrievers=[{"name": "popular"}, {"name": "item_knn"}],
        fallback=[],
        ranker={"name": "gbdt_ranker", "seed": 0, **ranker} if ranker else None,
    )


def ranker_leads(model) -> float:
    """A validation on which a pipeline with a ranker scores 0.12 and one without 0.10."""
    return 0.10 if model.ranker is None else 0.12


class PhaseThree:
    """Phase 3 (``_confirm``) against one best single retriever (popular, 0.10 in a trial of
    ``single_phase``), on validations that score a model with ``second`` and ``first``.

    Every run adds the trials it scored to ``recorded`` and what it decided to
    ``description["confirm"]`` (``confirm``).
    """

    def __init__(self, single_phase: str = "pipeline", description: dict | None = None) -> None:
        self.single_trial = Trial(0, single_phase, [{"name": "popular"}], None, 0.10, 0.0)
        self.single = single_popular()
        self.recorded: list[Trial] = []
        self.description = {} if description is None else description

    @property
    def confirm(self) -> dict:
        return self.description["confirm"]

    def __call__(self, best, leaders, *, second=None, first=None, **options):
        def carve():
            return SimpleNamespace(fit=None, score=second), SECOND_CARVE

        if first is not None:
            options["first"] = SimpleNamespace(fit=None, score=first)
        options.setdefault("carve", carve)
        options.setdefault("number", lambda: len(self.recorded))
        return _confirm(
            best,
            leaders,
            (self.single_trial, self.single),
            cache=_ConfigIsModel(),
            record=self.recorded.append,
            description=self.description,
            **options,
        )


def one_retriever_finalists(values: dict[str, float]) -> list[tuple[Trial, QuestionConfig]]:
    """Phase 2's finalists #1, #2, ...: one retriever each, ``{name: validation figure}``."""
    return [
        (
            Trial(n, "pipeline", [{"name": name}], None, value, 0.0),
            QuestionConfig(retrievers=[{"name": name}], fallback=[]),
        )
        for n, (name, value) in enumerate(values.items(), 1)
    ]


def by_retriever(figures: dict[str, float]):
    """A validation scoring a one-retriever pipeline by its retriever's name."""
    return lambda model: figures[model.retrievers[0].name]


def test_phase_three_keeps_the_pipeline_whose_lead_holds_on_the_second_validation():
    """The best of phase 2 on one split is checked on a second: the mean share decides."""
    phase3 = PhaseThree()
    leaders = one_retriever_finalists({"item_knn": 0.13, "ease": 0.12})

    def run(second):
        return phase3((0.13, leaders[0][1]), leaders, second=by_retriever(second))

    # item_knn: 1.3x then 0.85x (mean 1.075); ease: 1.2x then 1.05x (mean 1.125)
    assert run({"popular": 0.20, "item_knn": 0.17, "ease": 0.21}) == (0.12, leaders[1][1])
    assert phase3.confirm["kept"] == "#2"
    assert [t.phase for t in phase3.recorded] == ["confirm"] * 3
    # both fall well behind on the second validation: the best single retriever answers
    assert run({"popular": 0.20, "item_knn": 0.10, "ease": 0.12}) == (0.10, phase3.single)
    assert phase3.confirm["kept"] == "the best single retriever"


def test_phase_three_ranks_by_the_figures_drawn_after_the_choice_and_checks_a_given_one():
    """Phase 2's own figure of a finalist is the best of many draws: it floors, never ranks.
    The best question tried as given is checked after phase 2's finalists."""
    phase3 = PhaseThree()
    leaders = one_retriever_finalists({"item_knn": 0.15})
    ease = QuestionConfig(retrievers=[{"name": "ease"}], fallback=[])
    second = by_retriever({"popular": 0.20, "item_knn": 0.21, "ease": 0.23})

    def run(given_value, **options):
        given = Trial(2, "default", [{"name": "ease"}], None, given_value, 0.0, "also #1")
        return phase3(
            (0.15, leaders[0][1]), leaders, second=second, given=[(given, ease)], **options
        )

    # item_knn: 1.5x on its own trial, 1.05x after (mean 1.275); ease: 1.2x, then 1.15x
    assert run(0.12) == (0.12, ease)
    assert phase3.confirm["mean_share_after"] == {"#1": 1.05, "#2": 1.15}
    assert phase3.confirm["mean_share"]["#1"] > phase3.confirm["mean_share"]["#2"]
    # a given question ahead of phase 2's best is checked first, in full, past the deadline
    assert run(0.16, deadline=0.0) == (0.16, ease)
    assert phase3.confirm["unchecked"] == ["#1"]


def test_phase_three_keeps_a_ranker_only_when_its_lead_holds_for_every_ranker_seed():
    """A lead that one ranker draw shows and another loses is the draw's, not the pipeline's."""
    from recgraph.jobs.tune.search import reseeded

    phase3 = PhaseThree()
    ranked = merged(seed=0)
    assert reseeded(ranked, 7).ranker.seed == 7 and reseeded(ranked, 7).ranker.params["seed"] == 7
    assert reseeded(phase3.single, 7) == phase3.single
    ranked_trial = Trial(1, "pipeline", [{"name": "popular"}], {"name": "gbdt_ranker"}, 0.13, 0.0)

    def run(by_seed: dict[int, float]):
        def value(model):
            return 0.10 if model.ranker is None else by_seed[model.ranker.seed]

        leaders = [(ranked_trial, ranked)]
        return phase3((0.13, ranked), leaders, second=value, first=value, seeds=(0, 1, 2))

    # every seed leads on both validations: the ranked pipeline answers
    assert run({0: 0.13, 1: 0.12, 2: 0.11}) == (0.13, ranked)
    assert phase3.confirm["kept"] == "#1"
    # the best single on the second validation, then seeds 1, 2 on the first, 0-2 on the second
    assert len(phase3.recorded) == 1 + 2 + 3
    # seed 2 falls behind the best single: the mean still leads, the pipeline does not
    assert run({0: 0.13, 1: 0.12, 2: 0.095}) == (0.10, phase3.single)
    assert phase3.confirm["kept"] == "the best single retriever"
    assert phase3.confirm["worst_share"]["#1"] == pytest.approx(0.95)


def test_without_a_second_validation_the_toml_says_the_first_alone_confirmed(tmp_path):
    """No second carve (leave_last_n, a fraction at 0.5, too little data): the file is still
    written, and says the finalists were checked over ranker seeds on the first validation only."""

    from recgraph.jobs.tune.results import TuneResult

    first_carve = {
        "method": "temporal_global",
        "fraction": 0.5,
        "seed": 0,
        "rows_fit": 10,
        "rows_valid": 5,
        "users": 3,
    }
    phase3 = PhaseThree("retriever", first_carve)
    ranked = merged(seed=0)
    ranked_trial = Trial(1, "pipeline", [{"name": "popular"}], {"name": "gbdt_ranker"}, 0.13, 0.0)

    def no_carve():
        raise ValueError("no longer horizon to check on")

    value, config = phase3(
        (0.13, ranked),
        [(ranked_trial, ranked)],
        first=ranker_leads,
        carve=no_carve,
        number=lambda: 2 + len(phase3.recorded),
        seeds=(0, 1),
    )
    assert (value, config) == (0.13, ranked)
    assert len(phase3.recorded) == 1  # seed 1 on the first validation: nothing else to score on
    single = phase3.single_trial
    result = TuneResult(
        "feed", config, "ndcg@20", value, single, None, phase3.description, [single]
    )
    path = tmp_path / "p.toml"
    write_pipeline({"feed": result}, path, PipelineConfig())
    text = path.read_text()
    assert "first validation only" in text and "no longer horizon" in text
    assert load_pipeline_config(path).feed.ranker is not None


def test_a_half_validation_on_timestamped_data_tunes_and_writes_the_toml(feed_graph, tmp_path):
    """--fraction 0.5 leaves no longer horizon for phase 3: the first validation alone confirms."""
    result = tune_question("feed", feed_graph, settings=settings(fraction=0.5))
    assert result.validation["confirm"]["fraction"] is None
    write_pipeline({"feed": result}, tmp_path / "p.toml", PipelineConfig())
    text = (tmp_path / "p.toml").read_text()
    assert "checked again on the first validation only" in text
    assert load_pipeline_config(tmp_path / "p.toml").feed.retrievers


def test_phase_three_scores_a_finalist_without_a_ranker_once_per_validation():
    """A pipeline without a ranker draws nothing: reseeding it would score the same twice."""
    from recgraph.jobs.tune.search import confirm_trials

    phase3 = PhaseThree()
    merge = merged()
    merged_trial = Trial(1, "pipeline", [{"name": "popular"}, {"name": "item_knn"}], None, 0.12, 0)

    def value(model):
        return 0.10 if len(model.retrievers) == 1 else 0.12

    kept = phase3((0.12, merge), [(merged_trial, merge)], second=value, first=value, seeds=(0, 1))
    assert kept == (0.12, merge)
    # the best single on the second validation, the finalist on it: no reseeds
    assert len(phase3.recorded) == 2 == confirm_trials(ranked=False)
    assert phase3.confirm["ranked"] == []


def test_the_trial_cap_leaves_a_second_finalist_unchecked_and_says_so():
    """Phase 3 checks a second finalist only in the trials the cap leaves; the TOML names it."""
    from recgraph.jobs.tune.results import _confirm_lines

    phase3 = PhaseThree()
    leaders = [
        (
            Trial(n, "pipeline", [{"name": "popular"}], {"name": "gbdt_ranker"}, v, 0.0),
            merged(depth=d),
        )
        for n, v, d in ((1, 0.13, 100), (2, 0.12, 200))
    ]
    cap = 4
    phase3(
        (0.13, leaders[0][1]),
        leaders,
        second=ranker_leads,
        first=ranker_leads,
        seeds=(0, 1),
        room=lambda: cap - len(phase3.recorded),
    )
    assert len(phase3.recorded) == 4  # the best single and the first finalist's three checks
    assert phase3.confirm["unchecked"] == ["#2"]
    assert any("#2 not checked" in line for line in _confirm_lines(phase3.confirm))


def test_when_phase_three_keeps_the_best_single_the_table_and_toml_say_so(tuned, tmp_path):
    from dataclasses import replace

    ranked = next(t for t in tuned.trials if t.phase == "pipeline" and t.ranker)
    single = tuned.best_single
    rejected = replace(
        tuned,
        config=tuned.config.model_copy(update={"ranker": None}),
        value=single.value,
        chosen=single.number,
        validation=tuned.validation
        | {
            "confirm": tuned.validation["confirm"]
            | {"kept": "the best single retriever", "ranked": [f"#{ranked.number}"]}
        },
        trials=[*tuned.trials, Trial(99, "confirm", [], None, 0.0, 0.0)],
    )
    rows = _table_rows(rejected.table())
    assert [r[0] for r in rows if r[-1] == "chosen"] == [str(single.number)]
    text = "\n".join(rejected.comments())
    assert f"#{ranked.number} led the best single retriever on the first validation" in text
    assert "none beat the retrievers alone" not in text


def _table_rows(table):
    columns = [list(c.cells) for c in table.columns]
    return list(zip(*columns, strict=True))


def _spy_on_rankers_favouring_ranked(monkeypatch) -> list:
    """Validation scores ranked pipelines twice as high, so that the pick is one and its
    config (what tuning writes) can be read; returns the list each ranker's spec is put in
    as it is taught."""
    from recgraph.jobs.tune import fitting

    specs = []
    real_train = fitting.train_stage

    def train_stage(spec, *args, **kwargs):
        specs.append(spec)
        return real_train(spec, *args, **kwargs)

    monkeypatch.setattr(fitting, "train_stage", train_stage)
    real_score = fitting.Validation.score

    def score(self, model, *args, **kwargs):
        value = real_score(self, model, *args, **kwargs)
        return 2 * value if model.config.ranker is not None else value

    monkeypatch.setattr(fitting.Validation, "score", score)
    return specs


def test_the_strong_ranked_trial_is_tried_first_and_every_ranker_learns_from_three_slices(
    feed_graph, monkeypatch
):
    """Phase 2 starts with the pool's best three retrievers under the default ranker at depth
    200 (a bag of five boosters), and every ranker tuning teaches serves from
    ``FINAL_SLICES`` outer label slices (``TuneSettings.final_slices``)."""
    from recgraph.jobs.tune.spaces import BAGS, FINAL_SLICES, default_ranker_point

    specs = _spy_on_rankers_favouring_ranked(monkeypatch)
    result = tune_question(
        "feed", feed_graph, settings=settings(max_trials=12, method="random_per_user")
    )
    ranked = [t for t in result.trials if t.phase == "pipeline" and t.ranker]
    assert ranked
    first = ranked[0].ranker
    assert first["depth"] == 200 and first["negatives"] == 0.3
    assert first["params"]["bags"] == BAGS
    assert {k: first["params"][k] for k in default_ranker_point("gbdt_ranker")} == (
        default_ranker_point("gbdt_ranker")
    )
    assert {r["name"] for r in ranked[0].retrievers} == {"item_knn", "popular"}
    tuned_specs = [s for s in specs if s.max_train_users == 150]  # phase 2's and 3's rankers
    assert tuned_specs and all(s.final_slices == FINAL_SLICES for s in tuned_specs)
    assert result.config.ranker is not None  # the pick is ranked: what it writes says 3
    assert result.config.ranker.final_slices == FINAL_SLICES
    # and a setting of 1 serves one slice's ranker, as before
    specs.clear()
    tune_question(
        "feed",
        feed_graph,
        settings=settings(max_trials=12, method="random_per_user", final_slices=1),
    )
    tuned_specs = [s for s in specs if s.max_train_users == 150]
    assert tuned_specs and all(s.final_slices == 1 for s in tuned_specs)


def test_tuning_sets_final_slices_only_where_more_slices_change_the_served_ranker(
    feed_graph, monkeypatch
):
    """On a time-cut validation the ranker's label slice is cut in time (the same whatever
    the seed; one global cut is not even checked nested): more slices would change nothing,
    so tuning's rankers, and what it writes, keep ``final_slices = 1``."""
    specs = _spy_on_rankers_favouring_ranked(monkeypatch)
    for method in ("temporal_per_user", "temporal_global"):
        specs.clear()
        result = tune_question(
            "feed", feed_graph, settings=settings(max_trials=8, method=method, confirm=False)
        )
        tuned_specs = [s for s in specs if s.max_train_users == 150]
        assert tuned_specs and {s.label_split for s in tuned_specs} == {method}
        assert all(s.final_slices == 1 for s in tuned_specs)
        assert result.config.ranker is not None and result.config.ranker.final_slices == 1
