"""The pipeline file: which retrievers answer each question, how they merge, what the fallback is.

A pipeline is written in TOML (the shipped default, ``recgraph/config/pipeline.toml``,
is commented so that it doubles as documentation) and read into the typed
:class:`PipelineConfig`. Errors name the file and the key at fault.

Two questions, each a :class:`QuestionConfig`:

- ``[who_to_follow]`` on the follow graph (accounts -> accounts);
- ``[feed]`` on the interactions (users -> items).

A question lists its retrievers (``[[feed.retrievers]]``: a registry name, an
optional ``id`` when one model appears twice, a ``weight``, ``params`` for
its config and a ``min_score`` below which its candidates are dropped), how
their candidates merge (``merge``), the default and largest ``k``, and the
``fallback`` chain for cold or unknown users. ``[similar]`` says which feed
retriever answers "items like this one".
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recgraph.errors import ConfigError

FORMAT_VERSION = 1
#: The two questions a pipeline answers, in the order the file lists them.
QUESTIONS = ("who_to_follow", "feed")
Question = Literal["who_to_follow", "feed"]
#: What each question trains on: the follow graph or the interactions.
QUESTION_GRAPH = {"who_to_follow": "follows", "feed": "items"}
MergeMethod = Literal["rrf", "score", "priority"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RetrieverSpec(_Strict):
    """One retriever of a question.

    ``name`` is a registry name (``recgraph evaluate --help`` lists them);
    ``id`` names this entry in results and in ``fallback`` (default: the
    name), so one model can appear twice with different ``params``.
    ``min_score``: candidates must score *above* it to count (``0`` drops the
    accounts a neighbourhood model reaches by no path at all).
    """

    name: str = Field(min_length=1)
    id: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(default=1.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    min_score: float | None = None

    @property
    def key(self) -> str:
        """The id results and the fallback chain use."""
        return self.id or self.name


class RankerSpec(_Strict):
    """The stage-2 ranker of a question (``[feed.ranker]``, ``[who_to_follow.ranker]``).

    ``name`` is a ranker (``gbdt_ranker``, ``mlp_ranker``) with ``params`` for
    its config. Each retriever proposes ``depth`` candidates; their union,
    with every retriever's score and rank as features, is what the ranker
    orders. It learns from the training data alone: a ``label_fraction``
    of the interactions (``label_split``; ``auto``: see below) is held out,
    the retrievers are fitted on the rest, and the held-out likes label
    their candidates; ``folds`` repeats
    that with other random slices for more labelled rows (a slice cut in
    time: with the periods before it, each also judged on its own; on
    CollegeMsg three periods taught a ranker worse at the latest one,
    validation recall@20 0.186 against 0.214 with one). ``labels``: what a
    positive label is: ``positive``, every held-out interaction but a
    dislike (what full-ranking evaluation counts: a film rated 2 was still
    watched), or ``liked``, only likes and ratings high on the scale (for a
    product that wants to show what users will like). Trained on ``liked``
    and scored on every interaction, the ranker fell 2.5% below EASE on
    MovieLens 100k; on ``positive`` it matched the evaluation. ``valid_users`` of
    those users decide early stopping and whether the ranker is used at all:
    it is kept only when it orders their candidates better (validation
    nDCG@20) than the retrievers' own merge by more than ``min_gain``.
    ``negatives``: the share of unliked candidate rows the ranker trains on
    (each kept with this probability, seeded; liked rows always kept): below
    1 trains faster on a long pool, at some cost in what it learns.
    ``stand_down``: what answers when the ranker does not beat the retrievers
    on validation: ``best``, the retriever that did best there alone (when it
    beat the merge too), so the question is never worse on validation than
    its best retriever; or ``merge``, the retrievers' merge as without a ranker.

    ``label_split = "auto"``: on a feed, the slice cut as the answers are
    judged (``holdout`` of :meth:`QuestionModel.fit
    <recgraph.pipeline.question.QuestionModel.fit>`): served, that is the
    future, so everyone's latest interactions after one cut in time
    (``temporal_global``); ``recgraph evaluate`` on split files reads how
    they were cut from the rows' times (``--holdout``) and cuts the same
    way: ``temporal_global`` on a global temporal split, each user's latest
    on a per-user one, a random slice of each user's on a random split.
    Taught and judged on a random slice, the ranker learnt no recency and
    stood down where recent popularity means nothing: 0.72x popular-14d on
    MovieLens 100k temporal; taught by each user's latest likes, it learnt
    "what was new when the user was active" and fell to 0.6x EASE on a
    random split. On an account graph with timestamps the follows after
    one cut in time for everyone, whatever the holdout; without timestamps
    a random slice. ``both``: the ranker learns from a
    temporal and a random slice and is kept only as below (on MovieLens
    100k the shipped feed kept a fusion, 3/4 ranker, that was 0.4% behind
    EASE on the random slice with a 1% tolerance, and scored 0.88x EASE on
    a random validation split: not the default). ``check``: ``nested`` cuts
    the ranker's label folds from the rest of an outer slice and judges it
    on that outer slice with retrievers refitted on the larger rest, i.e.
    across the same kind of refit as serving (a ranker that won on its own
    folds lost 2-3% to EASE once EASE was refitted on more data); ``same``
    judges it on its folds' validation users; ``auto``: nested on feeds
    (but ``same`` on a ``temporal_global`` slice, as served by default,
    where nesting teaches the ranker from an older period: on MovieLens
    100k it then lost to recent popularity), same on account graphs.
    ``blend``: validation also tries the ranker's order fused with the best
    retriever's (1/4, 1/2 or 3/4 of the ranker, by 1/log2(1 + rank) of each)
    and keeps a fusion when it beats the ranker alone and every other order
    (``None``: on feeds only).
    With several label kinds, a learnt order (the ranker or a fusion) is kept
    when it beats the best other order by more than ``min_gain`` on average
    over the kinds and is no more than ``tolerance`` (a share) behind it on
    any kind.
    ``final_fit`` (with the nested check): ``folds`` serves the ranker that
    was checked, taught on folds whose retrievers saw 64% of the data and
    serving beside retrievers of all of it; ``outer`` teaches it once more on
    the outer slice (retrievers of 80%, the check's own validation users for
    early stopping) after the check kept it, so that serving takes the same
    step in data (80% to 100%) as the check measured (64% to 80%).
    ``check_users`` (with the nested check): who judges on the outer slice,
    the ``valid`` users alone or ``all`` the users with held-out likes there
    (no ranker of the check has seen the outer slice's labels of anyone, so
    all of them can judge it: five times the lists, a steadier choice between
    the ranker, a fusion and each retriever alone). The defaults (``outer``,
    ``all``) were chosen on validation carved from train
    (benchmarks/ranker_bagging.py: the shipped feed, validation nDCG@20 over
    EASE alone, mean over ranker seeds, two validation draws), against
    ``folds`` + ``valid``: MovieLens 100k random 1.006x vs 0.973x (draw 0)
    and 0.979x vs 1.008x (draw 1); latest-small random 1.037x vs 1.001x and
    1.009x vs 1.016x; mean of the four 1.008x vs 0.999x. A small lead,
    inside the spread between draws (2-3%); each alone did less on MovieLens
    draw 0 (``all`` 0.983x, ``outer`` 0.974x). Without the nested check (one
    global time cut, account graphs) neither has any effect. ``final_slices``
    (with ``outer`` and the nested check, once the check kept the ranker):
    the served ranker is taught on the outer slice and on ``final_slices - 1``
    more slices of the same kind drawn with the next seeds (each labelling
    candidates of retrievers fitted on its own rest, for the check's training
    users only: no validation user of the check has a list there), their
    lists pooled: one slice's draw moves the served ranker by ~2%, and pooling
    several averages that draw out (``recgraph tune`` uses 3 where it has an
    effect: on validation carved from MovieLens 100k random, its pipeline
    there scored 1.021-1.026x the best retriever against 1.017-1.020x with
    one slice, higher for every ranker seed; see
    ``recgraph.jobs.tune.spaces.FINAL_SLICES``). Only a seeded (random) label
    kind draws more slices: a slice cut in time (``temporal_per_user``,
    ``temporal_global``) is the same whatever the seed, so such a kind pools
    its outer slice alone; without the nested check, with ``final_fit="folds"``
    or when the ranker stands down the setting has no effect. The stage report
    says what was used (``final_slices_used``, ``final_slice_rows``). Memory:
    the pooled lists hold up to ``final_slices x max_train_users x depth``
    rows per label kind (3 x 20,000 x 200 = 12M at the defaults). The extra
    slices are cut from all the training data, so their rests hold the outer
    slice's labels of the check's validation users, whose lists are the
    refit's early-stopping set: the retrievers behind the extra lists saw
    those labels (a mild optimism in when the refit stops, not in the check).
    The default stays 1 until the shared datasets' validation says otherwise.
    """

    name: str = Field(default="gbdt_ranker", min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    depth: int = Field(default=200, ge=1, le=5000)
    label_fraction: float = Field(default=0.2, gt=0, lt=1)
    label_split: Literal[
        "auto", "both", "temporal_per_user", "temporal_global", "random_per_user"
    ] = "auto"
    folds: int = Field(default=1, ge=1, le=20)
    labels: Literal["positive", "liked"] = "positive"
    valid_users: float = Field(default=0.2, gt=0, lt=1)
    min_gain: float = 0.0
    max_train_users: int = Field(default=20_000, ge=1)
    negatives: float = Field(default=1.0, gt=0, le=1)
    stand_down: Literal["best", "merge"] = "best"
    check: Literal["auto", "nested", "same"] = "auto"
    blend: bool | None = None
    tolerance: float = Field(default=0.0, ge=0, lt=1)
    final_fit: Literal["folds", "outer"] = "outer"
    final_slices: int = Field(default=1, ge=1, le=10)
    check_users: Literal["valid", "all"] = "all"
    seed: int = 0


class QuestionConfig(_Strict):
    """How one question is answered (see the module docstring and the shipped TOML).

    ``merge``: ``rrf`` sums ``weight / (rrf_k + rank)`` over the retrievers
    that propose an item (scale-free, the default); ``score`` sums ``weight *
    score`` (only when the retrievers' scores share a scale); ``priority``
    takes the first retriever's list, then fills from the next.
    ``candidates`` is how many each retriever proposes per user.
    A user with fewer than ``cold_start_min_interactions`` training
    interactions, or unknown to the model, is served by ``fallback`` alone;
    everyone else by the retrievers, with ``fallback`` filling what they
    leave empty.
    """

    enabled: bool = True
    retrievers: list[RetrieverSpec] = Field(min_length=1)
    merge: MergeMethod = "rrf"
    rrf_k: float = Field(default=60.0, ge=0)
    candidates: int = Field(default=100, ge=1, le=10_000)
    k: int = Field(default=10, ge=1)
    max_k: int = Field(default=100, ge=1, le=10_000)
    fallback: list[str] = Field(default_factory=lambda: ["popular"])
    cold_start_min_interactions: int = Field(default=1, ge=0)
    max_age_days: float | None = Field(default=None, gt=0)
    explain_top: int = Field(default=2, ge=0, le=10)
    ranker: RankerSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> QuestionConfig:
        keys = [spec.key for spec in self.retrievers]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(
                f"retriever ids must be unique; {', '.join(duplicates)} appear twice "
                "(give one an `id`)"
            )
        if self.k > self.max_k:
            raise ValueError(f"k = {self.k} is above max_k = {self.max_k}")
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError("fallback lists a retriever twice")
        primary = sorted(set(self.fallback) & set(keys))
        if primary:
            raise ValueError(
                f"fallback lists {', '.join(primary)}, already a retriever of this question: "
                'the chain is for what the retrievers leave empty (e.g. fallback = ["popular"])'
            )
        return self

    def chain(self) -> list[RetrieverSpec]:
        """The fallback chain as specs: listed retrievers by id, others by registry name."""
        by_key = {spec.key: spec for spec in self.retrievers}
        return [by_key.get(key) or RetrieverSpec(name=key) for key in self.fallback]

    def all_specs(self) -> list[RetrieverSpec]:
        """Every retriever to train: the listed ones, then fallback-only ones."""
        specs = list(self.retrievers)
        keys = {spec.key for spec in specs}
        specs += [spec for spec in self.chain() if spec.key not in keys]
        return specs


def _default_who_to_follow() -> QuestionConfig:
    return QuestionConfig(
        retrievers=[RetrieverSpec(name="adamic_adar", min_score=0.0)],
        fallback=["popular"],
    )


def _default_feed() -> QuestionConfig:
    return QuestionConfig(
        retrievers=[RetrieverSpec(name="item_knn", min_score=0.0)],
        fallback=["popular"],
        cold_start_min_interactions=3,
    )


class SimilarConfig(_Strict):
    """``GET /v1/items/{item}/similar``: which feed retriever's item-item view answers it.

    Models with an item-item matrix (``item_knn``) or item vectors use them;
    any other model falls back to co-occurrence (cosine of the users who
    have both items).
    """

    retriever: str | None = None
    k: int = Field(default=10, ge=1)
    max_k: int = Field(default=100, ge=1, le=10_000)


class PipelineConfig(_Strict):
    """A whole pipeline file."""

    format_version: int = FORMAT_VERSION
    who_to_follow: QuestionConfig = Field(default_factory=_default_who_to_follow)
    feed: QuestionConfig = Field(default_factory=_default_feed)
    similar: SimilarConfig = Field(default_factory=SimilarConfig)

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is not supported (expected {FORMAT_VERSION})"
            )
        if self.similar.retriever is not None:
            keys = {spec.key for spec in self.feed.all_specs()}
            if self.similar.retriever not in keys:
                raise ValueError(
                    f"similar.retriever {self.similar.retriever!r} is not a feed retriever "
                    f"(feed has {', '.join(sorted(keys))})"
                )
        return self

    def question(self, name: str) -> QuestionConfig:
        return getattr(self, name)


def default_pipeline_path() -> Path:
    """The shipped, commented pipeline file."""
    return Path(str(resources.files("recgraph") / "config" / "pipeline.toml"))


def parse_pipeline(data: Mapping[str, Any], *, source: str = "pipeline") -> PipelineConfig:
    """Validate a pipeline mapping; :class:`ConfigError` names ``source`` and each bad key."""
    try:
        return PipelineConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def load_pipeline_config(path: str | Path | None = None) -> PipelineConfig:
    """Read a pipeline TOML file (default: the shipped one)."""
    path = Path(path) if path is not None else default_pipeline_path()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_pipeline(data, source=str(path))
