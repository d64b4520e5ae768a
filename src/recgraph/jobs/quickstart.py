"""The main job on the embedded store: load data, evaluate, train the pipeline, publish it.

It is what ``recgraph quickstart`` runs. With no data it writes the package's
synthetic social network into the store, so it works on a fresh machine with
no network; ``data`` points at a MovieLens folder or a SNAP edge list instead.
Whatever the store then holds is evaluated: the follow graph as who-to-follow
(temporal pair split when edges have times, else a random edge holdout) and the
interactions as a feed (global temporal split, else random per user), the
baselines side by side with the pipeline's own answer to that question.
Then the pipeline is trained on all the data and published to the model
registry as its current version, which ``recgraph serve`` (and the
quickstart command, unless told not to) serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recgraph.data import splits
from recgraph.data.imports import ImportSummary, import_edges, import_movielens
from recgraph.data.interactions import Interactions
from recgraph.data.movielens import movielens_layout
from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig, generate_social
from recgraph.errors import InputError
from recgraph.evaluation import EvaluationReport, evaluate
from recgraph.evaluation.pipeline_retriever import QuestionRetriever
from recgraph.jobs.train import TrainResult, train_pipeline
from recgraph.pipeline import PipelineConfig
from recgraph.pipeline.config import load_pipeline_config
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.registry import available_retrievers

#: The models each question is evaluated with, when the registry has them.
DEFAULT_MODELS = {
    "follows": ["popular", "adamic_adar", "common_neighbors"],
    "friends": ["popular", "adamic_adar", "common_neighbors"],
    "items": ["popular", "item_knn", "ease"],
}
DEFAULT_KS = (10, 20, 50)
#: Which pipeline question answers each graph kind.
QUESTION_OF_KIND = {"follows": "who_to_follow", "friends": "who_to_follow", "items": "feed"}


@dataclass
class QuickstartResult:
    """What the job loaded and how each model did."""

    source: str
    counts: dict[str, int]
    reports: dict[str, EvaluationReport] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    imported: ImportSummary | None = None
    trained: TrainResult | None = None
    registry: str | None = None


def load_synthetic(store: Store, config: SyntheticConfig | None = None) -> dict[str, int]:
    """Write the synthetic network into ``store`` in one transaction (idempotent)."""
    data = generate_social(config)
    with store.writer() as writer:
        written = {
            "accounts": writer.accounts(data.accounts[["external_id", "handle"]]),
            "follows": writer.follows(data.follows, directed=True),
            "items": writer.items(data.items),
            "interactions": writer.interactions(data.interactions),
        }
    return written


def load_path(
    store: Store, path: str | Path, *, undirected: bool = False, timestamps: bool = False
) -> ImportSummary:
    """Import a MovieLens folder or a SNAP edge list, told apart by what ``path`` is."""
    path = Path(path)
    if path.is_dir():
        movielens_layout(path)  # raises a clear InputError when the folder is not MovieLens
        return import_movielens(store, path)
    if path.is_file():
        return import_edges(store, path, directed=not undirected, timestamps=timestamps)
    raise InputError("no such file or folder", path=path)


#: Who each split scores, and why (the quickstart prints it beside the table).
WHO_IS_SCORED = {
    "temporal_pairs": "accounts that made a new follow after the cut: the others have "
    "nothing to predict in the test period",
    "edge_holdout": "accounts with a held-out follow",
    "temporal_global": "users active after the cut (the test period); a user with no later "
    "interaction has nothing to predict, so the scores describe returning users",
    "random_per_user": "every user with a held-out interaction",
}


def split_for_evaluation(data: Interactions) -> tuple[Interactions, Interactions, str]:
    """The leak-free split that suits the data, and its description."""
    method, description = _split_method(data)
    if method == "temporal_pairs":
        train, test = splits.temporal_pairs(data, 0.2)
    elif method == "edge_holdout":
        train, test = splits.edge_holdout(data, 0.1, seed=0)
    elif method == "temporal_global":
        train, test = splits.temporal_global(data, 0.2)
    else:
        train, test = splits.random_per_user(data, 0.2, seed=0)
    return train, test, f"{description}; scored: {WHO_IS_SCORED[method]}"


def _split_method(data: Interactions) -> tuple[str, str]:
    if data.one_sided:
        if data.has_timestamps:
            return (
                "temporal_pairs",
                "temporal pairs: first seen after the 80% time quantile -> test",
            )
        return "edge_holdout", "random 10% edge holdout (no timestamps), seed 0"
    if data.has_timestamps:
        return "temporal_global", "global temporal 80/20"
    return "random_per_user", "random per-user 80/20, seed 0"


def run_quickstart(
    url: str | None = None,
    data: str | Path | None = None,
    *,
    undirected: bool = False,
    timestamps: bool = False,
    models: dict[str, list[str]] | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    synthetic: SyntheticConfig | None = None,
    progress: bool = True,
    registry: str | None = None,
    pipeline: PipelineConfig | str | Path | None = None,
    publish: bool = True,
) -> QuickstartResult:
    """Load data into the store at ``url``, evaluate, then train and publish the pipeline.

    Parameters
    ----------
    url
        Database URL (default: ``$RECGRAPH_DATABASE_URL``, else SQLite).
    data
        A MovieLens folder or SNAP edge list; ``None`` loads the synthetic network.
    models
        Baselines per graph kind (default :data:`DEFAULT_MODELS`).
    registry
        Model registry the pipeline is published to (default ``$RECGRAPH_REGISTRY``,
        else ``./models``).
    pipeline
        The pipeline (config or TOML path; default: the shipped one).
    publish
        Train the pipeline on all the data and publish it as the current version.
    """
    config = pipeline if isinstance(pipeline, PipelineConfig) else load_pipeline_config(pipeline)
    store = Store.open(url)
    try:
        if data is None:
            load_synthetic(store, synthetic)
            result = QuickstartResult(source="synthetic social network", counts={})
        else:
            summary = load_path(store, data, undirected=undirected, timestamps=timestamps)
            result = QuickstartResult(source=str(data), counts={}, imported=summary)
        result.counts = store.counts()
        chosen = models or DEFAULT_MODELS
        known = set(available_retrievers())
        graphs: list[Interactions] = []
        if result.counts.get("follows"):
            graphs.append(store.follows_graph())
        if result.counts.get("interactions"):
            graphs.append(store.interactions_graph())
        for graph in graphs:
            kind = graph.graph_kind
            names: list[Retriever | str] = [
                name for name in chosen.get(kind, ["popular"]) if name in known
            ]
            question = QUESTION_OF_KIND[kind]
            if config.question(question).enabled:
                names.append(
                    QuestionRetriever(question=question, pipeline=config.model_dump(mode="json"))
                )
            train, test, description = split_for_evaluation(graph)
            result.splits[kind] = description
            result.reports[kind] = evaluate(names, train, test, ks, progress=progress)
        if publish:
            from recgraph.serving.registry import ModelRegistry

            reg = ModelRegistry(registry)
            result.registry = reg.root
            result.trained = train_pipeline(
                store,
                reg,
                config,
                metrics=_pipeline_metrics(result.reports),
                notes=f"recgraph quickstart on {result.source}",
                promote=True,
            )
        return result
    finally:
        store.close()


def _pipeline_metrics(reports: dict[str, EvaluationReport]) -> dict[str, float]:
    """The evaluation for the registry manifest: the pipeline's rows as ``question/metric``,
    then each baseline's as ``question/model/metric`` (the dashboard draws them as curves)."""
    metrics: dict[str, float] = {}
    baselines: dict[str, float] = {}
    for kind, report in reports.items():
        question = QUESTION_OF_KIND[kind]
        for row in report.results:
            if row.model == f"pipeline:{question}":
                metrics.update({f"{question}/{name}": value for name, value in row.metrics.items()})
            else:
                baselines.update(
                    {f"{question}/{row.model}/{name}": value for name, value in row.metrics.items()}
                )
    return {**metrics, **baselines}
