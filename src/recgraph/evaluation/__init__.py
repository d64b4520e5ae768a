"""Full-ranking evaluation: metrics, the runner behind ``recgraph evaluate``, reports."""

from recgraph.evaluation.evaluate import (
    DEFAULT_KS,
    EvaluationTargets,
    align_to_train,
    evaluate,
    evaluation_targets,
)
from recgraph.evaluation.metrics import (
    METRICS,
    USER_METRICS,
    CoverageCounter,
    catalogue_coverage,
    metric_key,
    metrics_from_hits,
    user_metrics,
)
from recgraph.evaluation.report import DROP_REASONS, EvaluationReport, ModelResult
from recgraph.retrieval.registry import register_retriever

# a whole pipeline question evaluates, saves and loads like any model, by this name
register_retriever("pipeline", "recgraph.evaluation.pipeline_retriever:QuestionRetriever")

__all__ = [
    "DEFAULT_KS",
    "DROP_REASONS",
    "METRICS",
    "USER_METRICS",
    "CoverageCounter",
    "EvaluationReport",
    "EvaluationTargets",
    "ModelResult",
    "align_to_train",
    "catalogue_coverage",
    "evaluate",
    "evaluation_targets",
    "metric_key",
    "metrics_from_hits",
    "user_metrics",
]
