"""The two-stage table: what the candidates hold, and what re-ranking does with them.

As in TensorFlow Recommenders' two-stage reports, for a pipeline question
fitted on TRAIN and for several candidate depths (each retriever proposing
that many per user), on the same test users and targets as
:func:`~recgraph.evaluation.evaluate`:

- **recall of the candidate set**: the share of a user's test targets that the
  union of the retrievers' lists holds (the most any re-ranking can find);
- **nDCG@10 / nDCG@20 before re-ranking**: the pool in the retrievers' own
  merged order (what the question answers without a ranker);
- **after re-ranking**: the same pool ordered by the question's ranker.

A ranker that validation switched off is still reported ("after" is what it
would have done), so the table shows why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.evaluation.evaluate import evaluation_targets
from recgraph.evaluation.metrics import in_rows, metrics_from_hits
from recgraph.pipeline import QuestionModel
from recgraph.retrieval.base import top_k

DEPTHS = (10, 50, 100, 200)
#: Users scored per pool (bounds the memory of one batch of features).
BATCH_USERS = 256


@dataclass
class StageRow:
    """One depth of the table."""

    depth: int
    pool_size: float
    recall: float
    before: dict[str, float]
    after: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "mean_pool_size": self.pool_size,
            "candidate_recall": self.recall,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class TwoStageReport:
    """Rows per depth, and whether the question's ranker is in use."""

    question: str
    ranker: str | None
    ranker_active: bool
    rows: list[StageRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "ranker": self.ranker,
            "ranker_active": self.ranker_active,
            "depths": [row.to_dict() for row in self.rows],
        }

    def table(self):
        from rich.table import Table

        title = f"two stages of {self.question}: candidates, then re-ranking by {self.ranker or 'no ranker'}"
        if self.ranker and not self.ranker_active:
            title += " (validation kept the merge)"
        table = Table(title=title, title_justify="left")
        for name in (
            "depth",
            "pool",
            "recall",
            "nDCG@10 before",
            "nDCG@10 after",
            "nDCG@20 before",
            "nDCG@20 after",
        ):
            table.add_column(name, justify="right")
        for row in self.rows:
            after = row.after or {}
            table.add_row(
                str(row.depth),
                f"{row.pool_size:.0f}",
                f"{row.recall:.4f}",
                f"{row.before['ndcg@10']:.4f}",
                f"{after['ndcg@10']:.4f}" if after else "-",
                f"{row.before['ndcg@20']:.4f}",
                f"{after['ndcg@20']:.4f}" if after else "-",
            )
        return table


def _mean_ndcg(hits: list[np.ndarray], counts: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    values = metrics_from_hits(np.concatenate(hits), counts, tuple(ks))
    return {f"ndcg@{k}": float(np.mean(values[f"ndcg@{k}"])) for k in ks}


def _ordered(pool_ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    order, _ = top_k(np.where(pool_ids >= 0, scores, -np.inf).astype(np.float32), k)
    rows = np.arange(len(pool_ids))[:, None]
    return np.where(order >= 0, pool_ids[rows, np.maximum(order, 0)], -1)


def two_stage_report(
    question: QuestionModel,
    train: Interactions,
    test: Interactions,
    depths: Sequence[int] = DEPTHS,
    ks: Sequence[int] = (10, 20),
) -> TwoStageReport:
    """The table for ``question`` (fitted on ``train``) on ``test``'s users and targets."""
    targets = evaluation_targets(train, test)
    users = targets.users[question.warm(targets.users)]
    stage = question.ranking
    report = TwoStageReport(
        question=question.question,
        ranker=question.config.ranker.name if question.config.ranker else None,
        ranker_active=question.ranked,
    )
    truth = targets.truth
    n_truth = np.diff(truth.indptr)
    for depth in depths:
        sizes, found, before_hits, after_hits = [], [], [], []
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            allowed = targets.candidates
            pool = question.pool(batch, depth, eligible=allowed)
            rows = truth[batch]
            valid = pool.ids >= 0
            sizes.append(valid.sum(axis=1))
            held = in_rows(np.where(valid, pool.ids, 0), rows) & valid
            found.append(held.sum(axis=1) / np.maximum(np.diff(rows.indptr), 1))
            kmax = max(ks)
            before_hits.append(in_rows(_ordered(pool.ids, pool.merged, kmax), rows))
            if stage is not None:
                scores = np.full(pool.ids.shape, -np.inf, dtype=np.float32)
                if valid.any():
                    scores[valid] = stage.ranker.score(stage.batch(pool))
                after_hits.append(in_rows(_ordered(pool.ids, scores, kmax), rows))
        counts = n_truth[users]
        report.rows.append(
            StageRow(
                depth=depth,
                pool_size=float(np.mean(np.concatenate(sizes))) if sizes else 0.0,
                recall=float(np.mean(np.concatenate(found))) if found else 0.0,
                before=_mean_ndcg(before_hits, counts, ks),
                after=_mean_ndcg(after_hits, counts, ks) if after_hits else None,
            )
        )
    return report
