"""The two Optuna phases: retrievers alone, then the pipeline (see :mod:`recgraph.jobs.tune`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.data.snapshot import TrainingSnapshot
from recgraph.errors import ConfigError
from recgraph.jobs.tune.fitting import CACHE_SIZE, FitCache, Validation, carve_validation
from recgraph.jobs.tune.results import Trial, TuneResult
from recgraph.jobs.tune.spaces import (
    DEPTHS,
    FINAL_SLICES,
    NEGATIVES,
    SPACES,
    default_point,
    default_ranker_point,
    default_retrievers,
    has_knobs,
    ranker_params,
)
from recgraph.pipeline import PipelineConfig
from recgraph.pipeline.config import (
    QUESTION_GRAPH,
    QUESTIONS,
    QuestionConfig,
    RankerSpec,
    RetrieverSpec,
)
from recgraph.pipeline.ranking import label_split_for, pools_final_slices

#: Share of the budget spent on the retrievers alone (the rest: the pipeline).
RETRIEVER_SHARE = 0.35
#: Retrievers the pipeline phase may combine (the best on validation).
MAX_COMBINED = 4
#: Trials per retriever at most in phase 1 (the grids are small).
MAX_RETRIEVER_TRIALS = 8
#: Share of the budget kept for phase 3, the finalists checked over ranker seeds on both
#: validations: phase 2's figures differ between ranker draws more than between the best
#: pipelines, so more of its trials mostly pick a luckier draw.
CONFIRM_SHARE = 0.4
#: Pipelines (besides the best single retriever) phase 3 checks on the earlier cut.
FINALISTS = 2
#: Ranker seeds phase 3 scores each finalist with, on each validation (the first: the trial's).
CONFIRM_SEEDS = 2
#: What a trial's fit may raise and the search survive (a space's point the data cannot
#: fit, a question too large for memory): the trial is recorded as failed.
FIT_ERRORS = (ConfigError, ValueError, MemoryError)


# ---------------------------------------------------------------------- the search
@dataclass
class TuneSettings:
    """How long and over what to tune (see :func:`tune_question`)."""

    budget_minutes: float = 10.0
    max_trials: int | None = None
    seed: int = 0
    method: str = "auto"
    fraction: float = 0.2
    metric: str | None = None
    retrievers: list[str] | None = None
    ranker: str = "gbdt_ranker"
    ranker_users: int = 1500
    max_valid_users: int = 3000
    confirm: bool = True
    final_slices: int = FINAL_SLICES


def _question_config(
    base: QuestionConfig, specs: list[RetrieverSpec], ranker: RankerSpec | None
) -> QuestionConfig:
    keys = {spec.key for spec in specs}
    values = base.model_dump()
    values.update(
        retrievers=[spec.model_dump(exclude_none=True) for spec in specs],
        fallback=[key for key in base.fallback if key not in keys],
        ranker=None if ranker is None else ranker.model_dump(),
    )
    return QuestionConfig.model_validate(values)


def _spec(name: str, params: Mapping[str, Any]) -> RetrieverSpec:
    # neighbourhood models propose only accounts they reach (the shipped default's rule)
    floor = (
        0.0
        if name in ("adamic_adar", "resource_allocation", "common_neighbors", "jaccard")
        else None
    )
    return RetrieverSpec(name=name, params=dict(params), min_score=floor)


def tune_question(
    question: str,
    train: Interactions,
    base: QuestionConfig | None = None,
    settings: TuneSettings | None = None,
    *,
    item_created_at: np.ndarray | None = None,
    item_features: ItemFeatures | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    also: Sequence[QuestionConfig] = (),
) -> TuneResult:
    """Choose retrievers, their parameters, the depth and the ranker for ``question``.

    Parameters
    ----------
    question
        ``feed`` or ``who_to_follow``.
    train
        The training data; nothing else is read (validation is carved from it).
    base
        The question's current config: its serving rules (k, cold start,
        fallback) are kept; its retrievers are the first trial of the default.
    settings
        Budget, trial cap, seed, validation method and what to search.
    on_trial
        Called after each trial (progress).
    also
        Other whole questions tried as they are (their retrievers and ranker;
        ``base``'s serving rules): e.g. the shipped file's and the code
        defaults' ranked question. Like ``base`` itself they are eligible as
        the pick and face phase 3, so tuning never keeps a pipeline that
        validation scores below one of them. One that fails to fit is recorded
        as a failed trial.

    The budget starts after the given questions (``base`` and ``also``) are
    scored; the trial cap counts them, and its phase shares are taken from the
    trials they leave. The result's seconds are the whole wall time.
    """
    import optuna

    settings = settings or TuneSettings()
    base = base or PipelineConfig().question(question)
    expected = QUESTION_GRAPH[question]
    if (train.graph_kind == "items") != (expected == "items"):
        raise ConfigError(f"{question} is tuned on a {expected} graph, not {train.graph_kind}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = start = time.perf_counter()
    deadline = start + 60.0 * settings.budget_minutes
    validation, description = carve_validation(
        train,
        settings.method,
        settings.fraction,
        settings.seed,
        settings.metric,
        settings.max_valid_users,
    )
    fit = validation.fit
    # an item-item model of n items holds n^2 floats: keep fewer of them when n is large
    size = CACHE_SIZE
    if train.graph_kind == "items":
        size = max(3, min(CACHE_SIZE, int(1.5e9 // max(8 * train.n_items**2, 1))))
    # rankers are taught as `recgraph evaluate` teaches them on a split of the validation's method
    cache = FitCache(
        question, item_created_at, item_features, size=size, holdout=description["method"]
    )
    names = settings.retrievers or default_retrievers(train)
    unknown = sorted(set(names) - set(SPACES))
    if unknown:
        raise ConfigError(f"no search space for {', '.join(unknown)}; tunable: {', '.join(SPACES)}")
    trials: list[Trial] = []
    cap = settings.max_trials

    def record(trial: Trial) -> None:
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)

    def left(end: float | None = None, reserve: int = 0) -> bool:
        # the deadline read when called: it is set again after the given questions (a default
        # argument would keep the first one, and the budget would count them after all)
        end = deadline if end is None else end
        return time.perf_counter() < end and (cap is None or len(trials) < cap - reserve)

    def evaluate(config: QuestionConfig, phase: str, note: str = "") -> Trial:
        began = time.perf_counter()
        model = cache.fit(config, fit)
        value = validation.score(model)
        if config.ranker is not None and not model.ranked:
            note = note or "ranker stood down: the merge answers"
        elif config.ranker is not None and model.ranking.order != "ranker":
            note = note or f"ranker stood down: {model.ranking.order} alone answers"
        trial = Trial(
            len(trials),
            phase,
            *_describe(config),
            value,
            time.perf_counter() - began,
            note,
        )
        record(trial)
        return trial

    label_split = label_split_for(description["method"])
    # more outer slices only where they change the served ranker: a seeded slice checked nested
    final_slices = (
        settings.final_slices
        if pools_final_slices(fit, RankerSpec(label_split=label_split), description["method"])
        else 1
    )

    # the given question as it is (the reference the comments report) and the `also` ones:
    # each eligible as the pick, so tuning keeps nothing validation scores below them. Their
    # rankers keep their label slice as written ("auto" included): the cache teaches them with
    # the validation's method as the holdout, as `recgraph evaluate` does on such a split
    default_value = None
    given: list[tuple[Trial, QuestionConfig]] = []
    attempted: list[QuestionConfig] = []
    for j, candidate in enumerate([base, *also]):
        config = _question_config(base, list(candidate.retrievers), candidate.ranker)
        if any(config == c for c in attempted):
            continue
        attempted.append(config)
        note = "given" if j == 0 else f"also #{j}"
        try:
            trial = evaluate(config, "default", note)
        except FIT_ERRORS as exc:  # as phase 1: the search goes on, the failure recorded
            record(
                Trial(len(trials), "default", *_describe(config), 0.0, 0.0, f"failed: {exc}"[:60])
            )
            continue
        given.append((trial, config))
        if j == 0:
            default_value = trial.value
    # the budget is the search's: a ranked question tried as given costs as much as several
    # of phase 1's trials (latest-small, load 12: 248 s), and phase 1 would otherwise lose to
    # it the time it has to try each retriever's space. The trial cap counts every trial; its
    # phase shares are taken from the trials left here
    start = time.perf_counter()
    deadline = start + 60.0 * settings.budget_minutes
    remaining = None if cap is None else max(cap - len(trials), 0)

    # ------------------------------------------------------------ phase 1: retrievers alone
    phase_end = start + (deadline - start) * RETRIEVER_SHARE
    share_cap = (
        None
        if remaining is None
        else max(1, int(remaining * RETRIEVER_SHARE) // max(len(names), 1))
    )
    best_per: dict[str, Trial] = {}
    for i, name in enumerate(names):
        if not left() and name in best_per:
            break
        sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=3)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        slot_end = time.perf_counter() + max(
            0.0, (phase_end - time.perf_counter()) / max(len(names) - i, 1)
        )
        limit = min(MAX_RETRIEVER_TRIALS, share_cap or MAX_RETRIEVER_TRIALS)
        if default_params := default_point(name, fit):
            study.enqueue_trial(default_params)
        for n in range(limit):
            if n and (time.perf_counter() > slot_end or not left()):
                break
            optuna_trial = study.ask()
            params = SPACES[name](optuna_trial, fit)
            try:
                trial = evaluate(_question_config(base, [_spec(name, params)], None), "retriever")
            except FIT_ERRORS as exc:
                study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
                record(
                    Trial(
                        len(trials),
                        "retriever",
                        [{"name": name, "params": params}],
                        None,
                        0.0,
                        0.0,
                        f"failed: {exc}"[:60],
                    )
                )
                continue
            study.tell(optuna_trial, trial.value)
            if name not in best_per or trial.value > best_per[name].value:
                best_per[name] = trial
            if not has_knobs(name, fit):
                break  # nothing to tune: one point is all there is
    if not best_per:
        raise ConfigError(f"{question}: no retriever could be fitted on the training data")
    ranked = sorted(best_per.values(), key=lambda t: -t.value)
    best_single = ranked[0]
    pool = [t.retrievers[0] for t in ranked[:MAX_COMBINED]]
    pool_specs = [_spec(r["name"], r.get("params", {})) for r in pool]

    # ------------------------------------------------------------ phase 2: the pipeline
    sampler = optuna.samplers.TPESampler(seed=settings.seed + 1, n_startup_trials=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    keep_names = [f"keep_{spec.name}" for spec in pool_specs]
    study.enqueue_trial({**{k: j == 0 for j, k in enumerate(keep_names)}, "ranker": False})
    if len(pool_specs) > 1:
        study.enqueue_trial(
            {
                **{k: j < 3 for j, k in enumerate(keep_names)},
                "ranker": True,
                "depth": 200,
                "negatives": 0.3,
                **default_ranker_point(settings.ranker),
            }
        )
    single_config = _question_config(base, pool_specs[:1], None)
    chosen: tuple[float, QuestionConfig] = (best_single.value, single_config)
    tried: list[tuple[Trial, QuestionConfig]] = []
    for trial, config in given:
        if trial.value > chosen[0]:
            chosen = (trial.value, config)
    pipeline_end = deadline
    if settings.confirm:
        pipeline_end = deadline - (deadline - start) * CONFIRM_SHARE
    # a trial cap keeps back only what phase 3 surely uses: the check of its first finalist
    # (a ranked one when the pool can rank). Holding back both finalists' checks (7 trials)
    # left no ranked trial at all under --trials 12; a second finalist is checked only if
    # phase 2 left the trials for it
    reserve = confirm_trials(ranked=True) if settings.confirm else 0
    # the enqueued trials (the best single alone; the default ranked pipeline) run whatever
    # the time left: on a loaded machine phase 1 can spend the whole budget, and tuning that
    # never tried a ranker reports the best single (ego-Facebook, load 15: 1.000x, where
    # the ranked pipeline tried first had kept 1.012x); a trial cap (--trials) is kept
    rounds, sure = 0, len(study.trials) if cap is None else 1
    while rounds < sure or left(pipeline_end, reserve):
        rounds += 1
        optuna_trial = study.ask()
        keep = [
            spec
            for spec, k in zip(pool_specs, keep_names, strict=True)
            if optuna_trial.suggest_categorical(k, (True, False))
        ]
        use_ranker = optuna_trial.suggest_categorical("ranker", (False, True))
        if not keep:
            study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
            if (
                all(t.state.name == "PRUNED" for t in study.trials[-20:])
                and len(study.trials) >= 20
            ):
                break
            continue
        ranker = None
        if use_ranker:
            ranker = RankerSpec(
                name=settings.ranker,
                depth=optuna_trial.suggest_categorical("depth", DEPTHS),
                label_split=label_split,
                max_train_users=settings.ranker_users,
                negatives=optuna_trial.suggest_categorical("negatives", NEGATIVES),
                final_slices=final_slices,
                seed=settings.seed,
                params=ranker_params(optuna_trial, settings.ranker),
            )
        config = _question_config(base, keep, ranker)
        repeat = next((t for t in trials if t.phase == "pipeline" and _same(t, config)), None)
        if repeat is not None:
            study.tell(optuna_trial, repeat.value)
            continue
        try:
            trial = evaluate(config, "pipeline")
        except (ConfigError, ValueError) as exc:
            study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
            record(Trial(len(trials), "pipeline", [], None, 0.0, 0.0, f"failed: {exc}"[:60]))
            continue
        study.tell(optuna_trial, trial.value)
        tried.append((trial, config))
        if trial.value > chosen[0]:
            chosen = (trial.value, config)
        if len(keep) == 1 and not use_ranker and trial.value > best_single.value:
            best_single, single_config = trial, config

    # ------------------------------------------------------------ phase 3: an earlier cut
    if settings.confirm and chosen[0] > best_single.value:
        chosen = _confirm(
            chosen,
            [(t, c) for t, c in tried if t.value > best_single.value],
            (best_single, single_config),
            carve=lambda: _second_validation(train, description, settings, validation.metric),
            cache=cache,
            record=record,
            description=description,
            number=lambda: len(trials),
            first=validation,
            seeds=tuple(settings.seed + j for j in range(CONFIRM_SEEDS)),
            deadline=deadline,
            room=None if cap is None else lambda: cap - len(trials),
            given=[(t, c) for t, c in given if t.value > best_single.value],
        )
    kept = next((t for t, c in tried + given if c == chosen[1]), None)
    if chosen[1] == single_config or kept is None:
        kept = best_single
    return TuneResult(
        question=question,
        config=chosen[1],
        metric=validation.metric,
        value=chosen[0],
        best_single=best_single,
        default_value=default_value,
        validation=description,
        trials=trials,
        seconds=time.perf_counter() - began,
        chosen=kept.number,
    )


#: Split methods whose validation is the period after a cut in time.
TIME_METHODS = ("temporal_global", "temporal_pairs", "temporal_per_user")
#: The longest validation share phase 3 carves (the fit part keeps at least the rest).
LONGEST = 0.5


def _second_validation(
    train: Interactions, description: dict[str, Any], settings: TuneSettings, metric: str
) -> tuple[Validation, dict[str, Any]]:
    """Phase 3's validation: over twice the horizon when it is cut in time, else another draw.

    A lead that holds only over the first days after the cut is what a
    short validation period rewards and serving loses: on CollegeMsg a
    ranker led PPR by 21% over the 13 days after the cut, by 14% over 24
    days (validation carved from train), and by 4% over the 140 days of the
    test period.
    """
    method = description["method"]
    if method == "leave_last_n":  # the split ignores the fraction: the same cut again
        raise ValueError("leave_last_n has one horizon: no second validation")
    if method in TIME_METHODS:
        fraction = min(2 * settings.fraction, LONGEST)
        if fraction <= settings.fraction:
            raise ValueError("no longer horizon to check on")
        return carve_validation(
            train, method, fraction, settings.seed, metric, settings.max_valid_users
        )
    return carve_validation(
        train, method, settings.fraction, settings.seed + 1, metric, settings.max_valid_users
    )


def confirm_trials(ranked: bool, seeds: int = CONFIRM_SEEDS) -> int:
    """Trials phase 3 spends on its first finalist: the best single on the second validation,
    then the finalist on it, and (ranked only: a pipeline without a ranker draws nothing)
    with each further ranker seed on both validations."""
    return 1 + (2 * seeds - 1 if ranked else 1)


def reseeded(config: QuestionConfig, seed: int) -> QuestionConfig:
    """``config`` with its ranker drawn with ``seed``: the label users, the negatives and the model's own seed."""
    if config.ranker is None:
        return config
    from recgraph.ranking.registry import get_ranker_class

    params = dict(config.ranker.params)
    if "seed" in get_ranker_class(config.ranker.name).config_class.model_fields:
        params["seed"] = seed
    ranker = config.ranker.model_copy(update={"seed": seed, "params": params})
    return config.model_copy(update={"ranker": ranker})


def _confirm(
    chosen: tuple[float, QuestionConfig],
    leaders: list[tuple[Trial, QuestionConfig]],
    single: tuple[Trial, QuestionConfig],
    *,
    carve: Callable[[], tuple[Validation, dict[str, Any]]],
    cache: FitCache,
    record: Callable[[Trial], None],
    description: dict[str, Any],
    number: Callable[[], int],
    first: Validation | None = None,
    seeds: tuple[int, ...] = (0,),
    deadline: float = float("inf"),
    room: Callable[[], int] | None = None,
    given: Sequence[tuple[Trial, QuestionConfig]] = (),
) -> tuple[float, QuestionConfig]:
    """Phase 3: the best pipelines of phase 2 against the best single retriever, over seeds and carves.

    Phase 2 keeps the best of many noisy trials on one validation split, and
    the best of many noisy figures runs high. Two noises: the split (on
    CollegeMsg the chosen ranker led PPR by 19% on validation and trailed
    it by 1.5% on test) and the ranker's own draw (its label users, the
    negatives kept, LightGBM's seed: one CollegeMsg pipeline scored 1.13x
    to 1.23x PPR on the same validation over four ranker seeds, and phase 2
    keeps whichever draw ran high). So the :data:`FINALISTS` best pipelines
    that beat the best single retriever are scored again, each with the
    ranker ``seeds`` (the first is the trial's own), on the ``first``
    validation (phase 2's) and on a second (:func:`_second_validation`:
    over a longer horizon after an earlier cut when the split is temporal,
    another random draw otherwise), each figure as a share of the best
    single retriever on its validation. The best of the ``given`` questions
    (tried as they are, e.g. the shipped file's) that beat the best single
    retriever joins them, in the order of the figures. A pipeline is kept only when its
    lead holds on every one (the worst share above 1), and of those the
    best mean share of the figures drawn after phase 2's choice answers
    (its own phase-2 figure left out: the best of many noisy trials runs
    high); else the best single retriever does: a pipeline is never worse
    on validation than its best retriever. A finalist with no figure drawn
    after phase 2's (no ranker to reseed and no second validation) is ranked
    after those that have one (its own figure is the inflated kind), and the
    description names it (``no_later_figure``).

    A finalist without a ranker draws nothing: it is scored once per
    validation, never "reseeded". When no second validation can be carved
    (``leave_last_n``; a fraction already at :data:`LONGEST`; too little
    data) the finalists are checked over the ranker seeds on the first
    validation alone, and the description says so.

    Finalists are checked in order until ``deadline``; the first is always
    checked in full (else a loaded machine would never keep a ranker), a
    later one only if its checks end in time and fit in ``room()`` (the
    trials the cap leaves); one left unchecked is named in the description.
    Returns ``(value on the first validation, config)``.
    """
    finalists = sorted(leaders, key=lambda tc: -tc[0].value)[:FINALISTS]
    # and the best of the questions tried as given, in the order of their figures: the best
    # on validation is checked first, and in full (ML-100k temporal, load 20: the shipped
    # question led phase 2's best, 0.2580 to 0.2481, and went unchecked as the last finalist)
    for trial, config in sorted(given, key=lambda tc: -tc[0].value)[:1]:
        if all(config != c for _, c in finalists):
            finalists.append((trial, config))
    finalists.sort(key=lambda tc: -tc[0].value)
    if not finalists:
        return chosen
    why_not = None
    try:
        earlier, described = carve()
    except (ConfigError, ValueError) as exc:
        earlier, described = None, None  # too little data for a second validation
        why_not = str(exc)[:120]

    def score(validation: Validation, config: QuestionConfig, note: str) -> float:
        began = time.perf_counter()
        value = validation.score(cache.fit(config, validation.fit))
        record(
            Trial(
                number(),
                "confirm",
                *_describe(config),
                value,
                time.perf_counter() - began,
                note,
            )
        )
        return value

    best_trial, best_config = single
    bases: list[tuple[str, Validation | None, float]] = [("first", first, best_trial.value)]
    if earlier is not None:
        bases.append(
            ("second", earlier, score(earlier, best_config, "the best single, second validation"))
        )
    if any(base <= 0 for _, _, base in bases):
        return chosen
    shares: dict[int, list[float]] = {}
    unchecked: list[str] = []
    for rank, (trial, config) in enumerate(finalists):
        draws = seeds if config.ranker is not None else seeds[:1]
        needed = sum(len(draws) - (name == "first") for name, _, _ in bases)
        if rank and (time.perf_counter() > deadline or (room is not None and room() < needed)):
            unchecked.append(f"#{trial.number}")
            continue
        runs = []
        for name, validation, base in bases:
            for j, seed in enumerate(draws):
                if name == "first" and (j == 0 or validation is None):
                    if j == 0:
                        runs.append(trial.value / base)  # the trial itself: its own seed
                    continue
                value = score(
                    validation,
                    reseeded(config, seed) if j else config,  # the first: as served
                    f"trial #{trial.number}, {name}, seed {seed}",
                )
                runs.append(value / base)
                if rank and time.perf_counter() > deadline:
                    break
            if rank and time.perf_counter() > deadline:
                break
        else:
            shares[trial.number] = runs
        if trial.number not in shares:
            unchecked.append(f"#{trial.number}")
    held = {n: runs for n, runs in shares.items() if min(runs) > 1.0}
    # ranked by the figures drawn after the choice: phase 2 kept the best of many noisy
    # trials, so each one's own first figure runs high and would favour the luckiest draw.
    # Like is ranked with like: a finalist with no later figure (no ranker to reseed and no
    # second validation) has only its own inflated one, so it answers only when none that
    # has later figures held
    after = {n: runs[1:] for n, runs in shares.items()}
    later = [n for n in held if after[n]]
    if later:
        top = max(later, key=lambda n: float(np.mean(after[n])))
    else:
        top = max(held, key=lambda n: held[n][0], default=None)
    description["confirm"] = {
        "fraction": None if described is None else described["fraction"],
        "seed": None if described is None else described["seed"],
        "rows_fit": 0 if described is None else described["rows_fit"],
        "rows_valid": 0 if described is None else described["rows_valid"],
        "users": 0 if described is None else described["users"],
        "best_single": round(bases[-1][2], 4),
        "ranker_seeds": list(seeds),
        "mean_share": {f"#{n}": round(float(np.mean(v)), 4) for n, v in shares.items()},
        "mean_share_after": {
            f"#{n}": round(float(np.mean(v)), 4) if v else None for n, v in after.items()
        },
        "no_later_figure": [f"#{n}" for n, v in after.items() if not v],
        "worst_share": {f"#{n}": round(min(v), 4) for n, v in shares.items()},
        "kept": f"#{top}" if top is not None else "the best single retriever",
        "ranked": [f"#{t.number}" for t, c in finalists if c.ranker is not None],
        "unchecked": unchecked,
    }
    if why_not is not None:
        description["confirm"]["no_second_validation"] = why_not
    if top is None:
        return best_trial.value, best_config
    return next((t.value, c) for t, c in finalists if t.number == top)


def _describe(config: QuestionConfig) -> tuple[list[dict], dict | None]:
    """What a trial tried: its retrievers (non-default settings) and its ranker's searched keys."""
    retrievers = [
        s.model_dump(exclude_none=True, exclude_defaults=True) | {"name": s.name}
        for s in config.retrievers
    ]
    ranker = (
        None
        if config.ranker is None
        else config.ranker.model_dump(include={"name", "depth", "negatives", "params"})
    )
    return retrievers, ranker


def _same(trial: Trial, config: QuestionConfig) -> bool:
    """Whether ``config`` is what ``trial`` tried (every searched setting, negatives included)."""
    return (trial.retrievers, trial.ranker) == _describe(config)


# ---------------------------------------------------------------------- a whole pipeline
def tune_pipeline(
    snapshot: TrainingSnapshot,
    base: PipelineConfig | None = None,
    settings: TuneSettings | None = None,
    *,
    questions: list[str] | None = None,
    on_trial: Callable[[str, Trial], None] | None = None,
) -> dict[str, TuneResult]:
    """Tune each enabled question whose graph the snapshot holds (the budget split evenly)."""
    base = base or PipelineConfig()
    settings = settings or TuneSettings()
    todo = []
    for question in questions or list(QUESTIONS):
        data = snapshot.graph(QUESTION_GRAPH[question])
        if base.question(question).enabled and data is not None and len(data):
            todo.append((question, data))
    if not todo:
        raise ConfigError("nothing to tune: the data has neither follows nor interactions")
    share = replace(settings, budget_minutes=settings.budget_minutes / len(todo))
    results = {}
    for question, data in todo:
        feed = question == "feed"
        results[question] = tune_question(
            question,
            data,
            base.question(question),
            share,
            item_created_at=snapshot.item_times(data) if feed else None,
            item_features=snapshot.item_features() if feed else None,
            on_trial=None if on_trial is None else (lambda t, q=question: on_trial(q, t)),
        )
    return results
