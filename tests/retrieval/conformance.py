"""The test every retriever passes (the ``implicit`` way: one mixin, every model).

The graph: two cliques of five, each with one edge missing. Its right answer
is known: the missing partner is every structural model's first suggestion.
A model's test module does

    class TestMyModel(RetrieverConformance):
        model_name = "my_model"
        params = {...}          # small and fast

Each test runs once per graph shape the model ``supports`` (``graph_kind`` is
parametrised by ``pytest_generate_tests`` in ``tests/conftest.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions, Kind
from recgraph.retrieval import Retriever, create_retriever

CLIQUE_A = range(0, 5)
CLIQUE_B = range(5, 10)
#: (user, the target it should get first) for every graph shape.
MISSING = [(0, 1), (5, 6)]

#: How the tests train an embedding model: on all of train (no validation slice, so no
#: early stopping) and without a progress bar.
#: One thread too: the seed tests compare scores exactly.
QUIET_TRAINING: dict[str, Any] = {"validation_fraction": 0.0, "progress": False, "num_threads": 1}


def two_cliques(kind: str) -> Interactions:
    """Two 5-cliques with one edge missing each, as ``items``, ``follows`` or ``friends``."""
    if kind in ("friends", "follows"):
        directed = kind == "follows"  # follows both ways; a friendship stored once, a < b
        pairs = [
            (a, b)
            for clique in (CLIQUE_A, CLIQUE_B)
            for a in clique
            for b in clique
            if (a != b if directed else a < b) and (a, b) not in MISSING
        ]
        src, dst = zip(*pairs, strict=True)
        return Interactions.from_indices(src, dst, n_users=10, one_sided=True, directed=directed)
    # items: users 0-4 like items 0-4 and users 5-9 like items 5-9; user 0 lacks
    # item 1 and user 5 lacks item 6; user 2 dislikes item 7 (never to be shown).
    pairs = [
        (u, i)
        for clique in (CLIQUE_A, CLIQUE_B)
        for u in clique
        for i in clique
        if (u, i) not in MISSING
    ]
    src, dst = map(list, zip(*pairs, strict=True))
    kinds = [Kind.LIKE] * len(src)
    src.append(2)
    dst.append(7)
    kinds.append(Kind.DISLIKE)
    return Interactions.from_indices(
        src, dst, n_users=10, n_items=10, kind=np.asarray(kinds, np.int8)
    )


class RetrieverConformance:
    """Mixin: subclass it as ``TestSomething`` and set ``model_name``."""

    model_name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    #: False for models that ignore structure (popularity): skips the right-answer test.
    structural: ClassVar[bool] = True
    #: True for models trained from ``seed``: the same seed learns the same scores, another
    #: seed other ones.
    seeded: ClassVar[bool] = False

    @pytest.fixture
    def graph(self, graph_kind: str) -> Interactions:
        return two_cliques(graph_kind)

    def make(self) -> Retriever:
        return create_retriever(self.model_name, self.params)

    @pytest.fixture
    def fitted(self, graph: Interactions) -> Retriever:
        model = self.make()
        assert model.fit(graph) is model
        return model

    def test_shapes_and_order(self, fitted: Retriever, graph: Interactions) -> None:
        ids, scores = fitted.recommend(np.arange(graph.n_users), k=3)
        assert ids.shape == scores.shape == (graph.n_users, 3)
        assert ids.dtype.kind == "i" and scores.dtype == np.float32
        valid = ids >= 0
        assert valid[:, 0].all(), "every user has candidates left"
        assert ((ids < graph.n_items) | ~valid).all()
        finite = np.where(valid, scores, -np.inf)
        assert (np.diff(finite, axis=1) <= 1e-6).all(), "scores best first"

    def test_right_answer(self, fitted: Retriever) -> None:
        # popularity ignores structure: its own module checks its exact ordering instead
        if not self.structural:
            pytest.skip("model ignores graph structure")
        users = [u for u, _ in MISSING]
        ids, scores = fitted.recommend(users, k=1)
        assert ids[:, 0].tolist() == [t for _, t in MISSING]

    def test_batch_equals_single(self, fitted: Retriever, graph: Interactions) -> None:
        users = np.arange(graph.n_users)
        ids, scores = fitted.recommend(users, k=4)
        for u in users:
            one_ids, one_scores = fitted.recommend([u], k=4)
            np.testing.assert_array_equal(one_ids[0], ids[u])
            np.testing.assert_allclose(one_scores[0], scores[u], rtol=1e-5, atol=1e-6)

    def test_seen_and_self_excluded(self, fitted: Retriever, graph: Interactions) -> None:
        k = graph.n_items
        ids, _ = fitted.recommend(np.arange(graph.n_users), k=k)
        seen = graph.seen()
        for u in range(graph.n_users):
            got = set(ids[u][ids[u] >= 0].tolist())
            assert not got & set(seen[u].indices.tolist()), f"user {u} got a seen target"
            if graph.one_sided:
                assert u not in got
        if graph.graph_kind == "items":
            assert 7 not in set(ids[2].tolist()), "a disliked item came back"

    def test_seen_kept_when_asked(self, fitted: Retriever, graph: Interactions) -> None:
        ids, _ = fitted.recommend([0], k=graph.n_items, exclude_seen=False)
        assert (ids[0] >= 0).sum() == graph.n_items

    def test_exclude_and_candidates(self, fitted: Retriever, graph: Interactions) -> None:
        user, best = MISSING[0]
        ids, _ = fitted.recommend([user], k=3, exclude=[[best]])
        assert best not in ids[0].tolist()
        allowed = np.array([best, 9])
        ids, _ = fitted.recommend([user], k=3, candidates=allowed)
        got = set(ids[0][ids[0] >= 0].tolist())
        assert got <= {best, 9} and best in got
        per_user = sp.csr_matrix(([1.0], ([0], [9])), shape=(1, graph.n_items))
        ids, _ = fitted.recommend([user], k=2, candidates=per_user)
        assert ids[0].tolist() == [9, -1]

    def test_padding_when_k_exceeds_candidates(
        self, fitted: Retriever, graph: Interactions
    ) -> None:
        ids, scores = fitted.recommend([0], k=graph.n_items + 5)
        assert ids.shape == (1, graph.n_items + 5)
        assert (ids[0, -5:] == -1).all() and np.isneginf(scores[0, -5:]).all()

    def test_bad_users_raise(self, fitted: Retriever, graph: Interactions) -> None:
        with pytest.raises(IndexError):
            fitted.recommend([graph.n_users], k=2)
        with pytest.raises(ValueError):
            fitted.recommend([0], k=0)

    def test_save_load_round_trip(self, fitted: Retriever, graph: Interactions, tmp_path) -> None:
        fitted.save(tmp_path / "model")
        loaded = Retriever.load(tmp_path / "model")
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        assert loaded.users == fitted.users and loaded.items == fitted.items
        users = np.arange(graph.n_users)
        a_ids, a_scores = fitted.recommend(users, k=4)
        b_ids, b_scores = loaded.recommend(users, k=4)
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)
        assert "pickle" not in (tmp_path / "model" / "model.json").read_text()

    def test_same_seed_same_scores_other_seed_differs(self, graph: Interactions) -> None:
        if not self.seeded:
            pytest.skip("model is not trained from a seed")
        users = np.repeat(np.arange(graph.n_users), graph.n_items)
        items = np.tile(np.arange(graph.n_items), graph.n_users)

        def scores(seed: int) -> np.ndarray:
            model = create_retriever(self.model_name, {**self.params, "seed": seed})
            return model.fit(graph).score_pairs(users, items)

        same = scores(0)
        np.testing.assert_array_equal(same, scores(0))
        assert not np.array_equal(same, scores(1))

    def test_config_round_trip(self) -> None:
        model = self.make()
        klass = type(model)
        again = klass(model.config.model_dump(mode="json"))
        assert again.config == model.config

    def test_unknown_parameter_is_an_error(self) -> None:
        from recgraph.errors import ConfigError

        with pytest.raises(ConfigError, match="no_such_parameter"):
            create_retriever(self.model_name, {**self.params, "no_such_parameter": 1})

    def test_recommend_before_fit_raises(self) -> None:
        from recgraph.errors import NotFittedError

        with pytest.raises(NotFittedError):
            self.make().recommend([0], k=1)

    # ------------------------------------------------------------------ declared capabilities
    def test_explain_answers_one_explanation_per_candidate(
        self, fitted: Retriever, graph: Interactions
    ) -> None:
        from recgraph.retrieval.explanation import Explanation

        user, best = MISSING[0]
        explained = fitted.explain(user, [best, 9], 2)
        assert [type(e) for e in explained] == [Explanation, Explanation]
        assert [e.candidate for e in explained] == [best, 9]
        first = explained[0]
        assert len(first.via) == len(first.via_ids) == len(first.contributions) <= 2
        if fitted.explains and self.structural:
            assert len(first.via), "a model that explains says why its first answer was chosen"
            liked = set(graph.positives().csr("binary")[user].indices.tolist())
            assert set(first.via.tolist()) <= liked | set(range(graph.n_users)), first.via

    def test_cold_start_scores_cover_every_target(self, fitted: Retriever, graph: Interactions):
        scores = fitted.cold_start_scores()
        assert scores.shape == (graph.n_items,)
        assert np.isfinite(scores).all()

    def test_similar_items_leave_out_the_item(self, fitted: Retriever, graph: Interactions):
        ids, scores, method = fitted.similar_items(0, 3)
        assert 0 not in ids.tolist() and len(ids) == len(scores) <= 3
        assert method in {"vectors", "similarity", "co-occurrence"}
        assert (np.diff(scores) <= 1e-6).all()

    def test_seen_matrix_is_the_training_history(self, fitted: Retriever, graph: Interactions):
        seen = fitted.seen_matrix()
        assert seen.shape == (graph.n_users, graph.n_items)
        assert (seen != graph.seen()).nnz == 0

    def test_score_pairs_agree_with_recommend(self, fitted: Retriever, graph: Interactions):
        users = np.arange(graph.n_users)
        ids, scores = fitted.recommend(users, k=3)
        rows, cols = np.nonzero(ids >= 0)
        got = fitted.score_pairs(users[rows], ids[rows, cols])
        assert got.dtype.kind == "f" and got.shape == (len(rows),)
        np.testing.assert_allclose(got, scores[rows, cols], rtol=1e-4, atol=1e-5)
