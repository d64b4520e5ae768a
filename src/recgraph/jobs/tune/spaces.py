"""What tuning searches: each retriever's key hyperparameters, the ranker's, and the defaults tried first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recgraph.data.interactions import Interactions
from recgraph.errors import ConfigError
from recgraph.retrieval.registry import create_retriever, get_retriever_class

#: ``popular``'s windows in days (0: all time).
WINDOWS = (0.0, 3.0, 7.0, 14.0, 30.0, 60.0, 120.0, 365.0)
#: Candidate depths per retriever the pipeline phase tries.
DEPTHS = (50, 100, 200, 300)
#: Shares of unliked rows the ranker trains on (``RankerSpec.negatives``): 0.3 is 3x faster.
NEGATIVES = (0.3, 1.0)
#: LightGBM boosters per tuned ranker (``gbdt_ranker``'s ``bags``), fixed rather than searched.
#: On CollegeMsg validation carved from train (two tuned pipelines, four ranker seeds each) a
#: bag of five scored 1.185x / 1.209x PPR on average against one booster's 1.162x / 1.183x, its
#: spread over seeds 0.04 / 0.03 against 0.10 / 0.08; on MovieLens 100k the two were level
#: (0.970x / 0.973x EASE). The ranker that serves is one draw: a narrower spread is a surer
#: floor. Searched, one booster would win phase 2 more often for its spread alone (the best of
#: many noisy draws runs high). It costs about twice one booster's fit.
BAGS = 5
#: Outer label slices the served ranker of a tuned pipeline learns from (``RankerSpec.final_slices``),
#: fixed rather than searched: the served ranker is one draw of its label slice, and pooling three
#: averages that draw out. On validation carved from MovieLens 100k's random training split (the
#: pipeline tuning keeps there: ALS, EASE and item-kNN, depth 200, a bag of five; ranker seeds 0-2,
#: two validation draws; benchmarks/results/ranker_bagging.tune14b.v0/v1.json) three slices scored
#: 1.0256x / 1.0210x the best retriever alone against one slice's 1.0196x / 1.0172x, higher at
#: every one of the six (draw, seed) pairs (+0.001 to +0.013), the same check and order each time.
#: Its cost: the served ranker's final fit on three times the lists (the pipeline's fit CPU
#: ~1.3x, 0.9-1.7x per pair under load ~9: means 39.3 s vs 31.1 s in those files).
#: Searched, one slice would win phase 2 more often for its spread alone. Set only where it has
#: an effect (:func:`recgraph.pipeline.ranking.pools_final_slices`: the nested check on a
#: seeded, random label slice); elsewhere (a slice cut in time, no nested check) 1.
FINAL_SLICES = 3


# ---------------------------------------------------------------------- search spaces
def _window(trial: Any, data: Interactions) -> dict[str, Any]:
    if not data.has_timestamps:
        return {}
    days = trial.suggest_categorical("window_days", WINDOWS)
    return {"window_days": days} if days else {}


def _path(trial: Any, data: Interactions) -> dict[str, Any]:
    if not data.directed:
        return {}
    return {"path": trial.suggest_categorical("path", ("out_out", "undirected", "in_out"))}


#: Per retriever, its key hyperparameters as an Optuna suggestion (``{}``: defaults only).
SPACES: dict[str, Callable[[Any, Interactions], dict[str, Any]]] = {
    "popular": _window,
    "ease": lambda t, d: {
        "regularization": t.suggest_float("regularization", 20.0, 3000.0, log=True)
    },
    "item_knn": lambda t, d: {
        "similarity": t.suggest_categorical("similarity", ("cosine", "bm25")),
        "neighbours": t.suggest_int("neighbours", 20, 400, log=True),
    },
    "als": lambda t, d: {
        "factors": t.suggest_categorical("factors", (16, 32, 64)),
        "regularization": t.suggest_float("regularization", 1.0, 50.0, log=True),
        "alpha": t.suggest_float("alpha", 0.5, 10.0, log=True),
    },
    "adamic_adar": _path,
    "resource_allocation": _path,
    "common_neighbors": _path,
    "jaccard": _path,
    "ppr": lambda t, d: {
        "restart": t.suggest_float("restart", 0.1, 0.7),
        **({"walk": t.suggest_categorical("walk", ("out", "undirected"))} if d.directed else {}),
    },
    "egoml": lambda t, d: {},
}
#: The retrievers phase 1 considers by default, per graph.
FEED_RETRIEVERS = ("ease", "item_knn", "popular", "als")
ACCOUNT_RETRIEVERS = (
    "adamic_adar",
    "resource_allocation",
    "common_neighbors",
    "jaccard",
    "ppr",
    "egoml",
    "popular",
)


def default_retrievers(data: Interactions) -> list[str]:
    """The candidate retrievers for ``data`` whose packages are installed."""
    names = FEED_RETRIEVERS if data.graph_kind == "items" else ACCOUNT_RETRIEVERS
    out = []
    for name in names:
        try:
            klass = get_retriever_class(name)
            create_retriever(name)
        except (ConfigError, ImportError):
            continue
        if data.graph_kind in klass.supports:
            out.append(name)
    return out


def validation_method(data: Interactions) -> str:
    """Temporal where timestamps exist, else random (per user, or edges of a graph)."""
    if data.graph_kind == "items":
        return "temporal_global" if data.has_timestamps else "random_per_user"
    return "temporal_pairs" if data.has_timestamps else "edge_holdout"


class _Fixed:
    """A stand-in trial that answers every suggestion with nothing to tell: ``{}`` means no knobs."""

    def suggest_categorical(self, *args: Any, **kwargs: Any) -> Any:
        raise _HasKnobs

    suggest_float = suggest_int = suggest_categorical


class _HasKnobs(Exception):
    pass


def has_knobs(name: str, data: Interactions) -> bool:
    try:
        return bool(SPACES[name](_Fixed(), data))
    except _HasKnobs:
        return True


def default_point(name: str, data: Interactions) -> dict[str, Any]:
    """The retriever's defaults as an Optuna point (tried first), where they lie in the space."""
    if not has_knobs(name, data):
        return {}
    config = create_retriever(name).config
    point: dict[str, Any] = {}
    for key in (
        "regularization",
        "similarity",
        "neighbours",
        "factors",
        "alpha",
        "path",
        "restart",
        "walk",
    ):
        if hasattr(config, key):
            point[key] = getattr(config, key)
    if name == "popular" and data.has_timestamps:
        point["window_days"] = 0.0
    return point


def default_ranker_point(name: str) -> dict[str, Any]:
    """The ranker's code defaults as an Optuna point of :func:`ranker_params` (tried first).

    As phase 1 starts each retriever at its defaults: the first ranked trial
    of phase 2 otherwise drew its ranker at random (on CollegeMsg 2 minutes
    ran 3 ranked trials, and the one kept was that first random draw).
    """
    from recgraph.ranking.registry import create_ranker

    if name == "gbdt_ranker":
        config = create_ranker(name).config
        return {
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
        }
    if name == "mlp_ranker":
        return {"learning_rate": create_ranker(name).config.learning_rate}
    return {}


def ranker_params(trial: Any, name: str) -> dict[str, Any]:
    if name == "gbdt_ranker":
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
            "num_leaves": trial.suggest_categorical("num_leaves", (7, 15, 31, 63)),
            "min_child_samples": trial.suggest_categorical("min_child_samples", (20, 50, 100, 200)),
            "bags": BAGS,
            "early_stopping_rounds": 40,
            "n_threads": 1,
        }
    if name == "mlp_ranker":
        return {"learning_rate": trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True)}
    return {}
