"""The test every ranker passes: learn an obvious signal, score the same after a save, be seeded."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from recgraph.errors import NotFittedError
from recgraph.ranking import Ranker, RankingBatch, create_ranker, load_ranker, ndcg_at

NAMES = ("signal", "noise", "knn:rank")  # the rank column named as the pipeline names one


def synthetic_batch(n_users: int, per_user: int, seed: int) -> RankingBatch:
    """Rows whose label follows ``signal`` (plus noise); ``knn:rank`` is a weak copy of it,
    1 the best, as the pipeline writes a retriever's ranks."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, 50, size=len(users))
    signal = rng.normal(size=len(users))
    noise = rng.normal(size=len(users))
    rank = np.argsort(np.argsort(-(signal + rng.normal(scale=2.0, size=len(users)))))
    labels = (signal + 0.3 * rng.normal(size=len(users)) > 1.0).astype(np.int8)
    features = np.stack([signal, noise, rank % per_user + 1], axis=1).astype(np.float32)
    return RankingBatch(users, items, features, NAMES, labels)


class RankerConformance:
    """Mixin: subclass it as ``TestSomething`` and set ``ranker_name`` (and small ``params``)."""

    ranker_name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(scope="class")
    def batches(self) -> tuple[RankingBatch, RankingBatch]:
        return synthetic_batch(120, 30, 0), synthetic_batch(40, 30, 1)

    @pytest.fixture(scope="class")
    def fitted(self, batches) -> Ranker:
        train, valid = batches
        return create_ranker(self.ranker_name, self.params).fit(train, valid)

    def test_learns_the_signal(self, fitted: Ranker, batches) -> None:
        _, valid = batches
        scores = fitted.score(valid)
        assert scores.shape == (len(valid),) and scores.dtype == np.float32
        learnt = ndcg_at(scores, valid.labels, valid.group_sizes(), 10)
        noise = ndcg_at(valid.features[:, 1], valid.labels, valid.group_sizes(), 10)
        assert learnt > 0.8 and learnt > noise + 0.3

    def test_save_load_scores_the_same(self, fitted: Ranker, batches, tmp_path) -> None:
        _, valid = batches
        fitted.save(tmp_path / "r")
        again = load_ranker(tmp_path / "r")
        assert type(again) is type(fitted) and again.config == fitted.config
        np.testing.assert_allclose(again.score(valid), fitted.score(valid), rtol=1e-6)
        for file in (tmp_path / "r").iterdir():
            assert b"pickle" not in file.read_bytes()[:4096]

    def test_the_same_seed_gives_the_same_ranker(self, batches, fitted: Ranker) -> None:
        train, valid = batches
        again = create_ranker(self.ranker_name, self.params).fit(train, valid)
        np.testing.assert_allclose(again.score(valid), fitted.score(valid), rtol=1e-6)

    def test_other_features_are_refused(self, fitted: Ranker, batches) -> None:
        _, valid = batches
        other = RankingBatch(valid.users, valid.items, valid.features, ("a", "b", "c"))
        with pytest.raises(ValueError, match="other features"):
            fitted.score(other)

    def test_score_before_fit_raises(self, batches) -> None:
        with pytest.raises(NotFittedError):
            create_ranker(self.ranker_name, self.params).score(batches[1])

    def test_unknown_ids_still_score(self, fitted: Ranker, batches) -> None:
        _, valid = batches
        shifted = RankingBatch(valid.users + 10_000, valid.items + 10_000, valid.features, NAMES)
        assert np.isfinite(fitted.score(shifted)).all()
