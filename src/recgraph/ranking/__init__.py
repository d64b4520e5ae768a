"""Stage 2: rankers that re-order the retrievers' candidates with richer features.

>>> from recgraph.ranking import create_ranker
>>> ranker = create_ranker("gbdt_ranker").fit(train_batch, valid_batch)  # doctest: +SKIP
>>> scores = ranker.score(batch)  # doctest: +SKIP
"""

from recgraph.ranking.base import Ranker, RankerConfig, RankingBatch, ndcg_at
from recgraph.ranking.registry import (
    available_rankers,
    create_ranker,
    get_ranker_class,
    load_ranker,
    register_ranker,
)

__all__ = [
    "Ranker",
    "RankerConfig",
    "RankingBatch",
    "available_rankers",
    "create_ranker",
    "get_ranker_class",
    "load_ranker",
    "ndcg_at",
    "register_ranker",
]
