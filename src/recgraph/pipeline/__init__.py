"""Two-stage composition: configured retrievers -> merge with provenance -> fallback chain -> top-k.

A question is a chain of small named parts (:mod:`~recgraph.pipeline.question`):
history lookup, candidate retrieval and merge, exclusion and fallback,
explanation.

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
from recgraph.pipeline.history import History
from recgraph.pipeline.merge import merge_lists
from recgraph.pipeline.names import Names
from recgraph.pipeline.pipeline import Pipeline
from recgraph.pipeline.question import QuestionModel
from recgraph.pipeline.results import Answer, Reason, Recommendation, Recommendations

__all__ = [
    "Answer",
    "History",
    "Names",
    "Pipeline",
    "PipelineConfig",
    "QuestionConfig",
    "QuestionModel",
    "Reason",
    "Recommendation",
    "Recommendations",
    "RetrieverSpec",
    "SimilarConfig",
    "default_pipeline_path",
    "load_pipeline_config",
    "merge_lists",
    "parse_pipeline",
]
