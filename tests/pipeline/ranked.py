"""Helpers the ranked-question tests share: a quick ranker config, an edge list's pairs,
and a spy on the label slices a fit cuts."""

from __future__ import annotations

from recgraph.pipeline import ranking as ranking_module
from recgraph.pipeline.config import QuestionConfig

FAST = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 5, "early_stopping_rounds": 10}


def ranked_config(retrievers, **ranker) -> QuestionConfig:
    return QuestionConfig(
        retrievers=[{"name": r} if isinstance(r, str) else r for r in retrievers],
        fallback=[],
        cold_start_min_interactions=1,
        ranker={"depth": 30, "params": FAST, **ranker},
    )


def _pairs(data) -> set[tuple[int, int]]:
    return set(zip(data.src.tolist(), data.dst.tolist(), strict=True))


def spy_on_label_slices(monkeypatch) -> list:
    """Every label slice cut while fitting, as ``(data, rest, labels, how)``."""
    sliced = []
    real = ranking_module.label_slice

    def spy(data, *args, **kwargs):
        rest, labels, how = real(data, *args, **kwargs)
        sliced.append((data, rest, labels, how))
        return rest, labels, how

    monkeypatch.setattr(ranking_module, "label_slice", spy)
    return sliced
