"""Two-stage composition: configured retrievers -> merge with provenance -> fallback chain -> top-k.

>>> from recgraph.pipeline import Pipeline
>>> pipeline = Pipeline("my-pipeline.toml").fit_store(store)  # doctest: +SKIP
>>> answer = pipeline.suggest_accounts("@alice.example.com", k=5)  # doctest: +SKIP
"""

from recgraph.pipeline.config import (
    PipelineConfig,
    QuestionConfig,
    RetrieverSpec,
    SimilarConfig,
    default_pipeline_path,
    load_pipeline_config,
    parse_pipeline,
)
from recgraph.pipeline.pipeline import (
    Answer,
    Names,
    Pipeline,
    QuestionModel,
    QuestionRetriever,
    Recommendation,
    Recommendations,
    TrainResult,
    merge_lists,
    train_pipeline,
)

__all__ = [
    "Answer",
    "Names",
    "Pipeline",
    "PipelineConfig",
    "QuestionConfig",
    "QuestionModel",
    "QuestionRetriever",
    "Recommendation",
    "Recommendations",
    "RetrieverSpec",
    "SimilarConfig",
    "TrainResult",
    "default_pipeline_path",
    "load_pipeline_config",
    "merge_lists",
    "parse_pipeline",
    "train_pipeline",
]
