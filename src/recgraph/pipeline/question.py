"""One question of a pipeline, as a chain of small named parts.

In the way LensKit builds its pipelines, a :class:`QuestionModel` is a fixed
chain of parts, each owning one rule:

1. **history lookup** (:mod:`~recgraph.pipeline.history`): what each user
   already has and how, and who is cold;
2. **candidate retrieval and merge** (:mod:`~recgraph.pipeline.candidates`,
   :mod:`~recgraph.pipeline.merge`): each retriever proposes, with the
   serving rules applied before its cut, and the lists become one;
3. **ranking** (:mod:`~recgraph.pipeline.ranking`), when the question has a
   ranker: the union of the retrievers' deeper lists, ordered by a learnt
   stage-2 model over many features;
4. **exclusion and fallback** (:mod:`~recgraph.pipeline.rules`): seen,
   disliked, the user itself, the user's own posts, the freshness window and
   the caller's exclusions hold for every list; a user who is unknown or cold
   is answered by the fallback chain alone, and the chain fills what the
   retrievers left empty for everyone else;
5. **explanation** (:mod:`~recgraph.pipeline.explain`): reasons, only for what
   is shown.

Everything is computed on arrays for the whole batch; objects are built only
for the final answer of one user. Every delivery path (API, page, Telegram
bot, evaluation) asks this class, so a result is chosen by the same rules
wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import IdMap, Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.errors import ConfigError, InputError, NotFittedError
from recgraph.pipeline.candidates import RankedList, propose, propose_cold, score_floor
from recgraph.pipeline.config import QUESTION_GRAPH, QUESTIONS, QuestionConfig, RetrieverSpec
from recgraph.pipeline.explain import Explainer
from recgraph.pipeline.history import History
from recgraph.pipeline.merge import merge_lists
from recgraph.pipeline.merge import warm_up as warm_up_merge
from recgraph.pipeline.names import NO_NAMES, Names
from recgraph.pipeline.ranking import (
    RANKING_DIR,
    CandidatePool,
    RankingStage,
    candidate_pool,
    train_stage,
)
from recgraph.pipeline.results import Answer, Recommendation, Recommendations
from recgraph.pipeline.rules import Exclude, ServingRules
from recgraph.progress import track
from recgraph.ranking.features import CandidateFeatures
from recgraph.ranking.registry import create_ranker
from recgraph.retrieval.base import Retriever, SharedFiles
from recgraph.retrieval.registry import create_retriever

#: Most candidates a fallback retriever is asked for per user.
MAX_FALLBACK_FETCH = 10_000


class QuestionModel:
    """The retrievers of one question, fitted on one graph, merged with a fallback chain.

    Parameters
    ----------
    question
        ``who_to_follow`` or ``feed``.
    config
        Its :class:`QuestionConfig`.
    models, history
        Fitted retrievers by id and the question's :class:`History`; both
        given (a loaded or wrapped model) or neither (then call :meth:`fit`).
    ranking
        The fitted :class:`RankingStage` when the question has a ranker.
    """

    def __init__(
        self,
        question: str,
        config: QuestionConfig,
        *,
        models: Mapping[str, Retriever] | None = None,
        history: History | None = None,
        ranking: RankingStage | None = None,
    ) -> None:
        if question not in QUESTIONS:
            raise ConfigError(f"unknown question {question!r}; expected one of {QUESTIONS}")
        self.question = question
        self.config = config
        self.specs: dict[str, RetrieverSpec] = {spec.key: spec for spec in config.all_specs()}
        #: Bit ``j`` of a result's source mask is ``retriever_keys[j]``.
        self.retriever_keys: list[str] = list(self.specs)
        if len(self.retriever_keys) > 62:
            raise ConfigError(f"{question}: at most 62 retrievers per question")
        self.main_keys = [spec.key for spec in config.retrievers]
        self.chain_keys = [spec.key for spec in config.chain()]
        self.models: dict[str, Retriever] = {}
        self.history: History | None = None
        self.ranking = ranking
        #: Why a configured ranker is not in use, when it is not.
        self.ranking_note: str | None = None
        if (models is None) != (history is None):
            raise ValueError("give both models and history, or neither")
        if models is not None and history is not None:
            self._attach(dict(models), history)

    def __repr__(self) -> str:
        return f"QuestionModel({self.question}: {', '.join(self.retriever_keys)})"

    def _attach(self, models: dict[str, Retriever], history: History) -> None:
        missing = [key for key in self.retriever_keys if key not in models]
        if missing:
            raise ConfigError(f"{self.question}: no fitted retriever for {', '.join(missing)}")
        self.models, self.history = models, history
        self.rules = ServingRules(history, self.config)
        warm_up_merge()  # the merge compiled now, not in the first request
        self.explainer = Explainer(
            history,
            models,
            self.retriever_keys,
            self.main_keys,
            self.chain_keys,
            self.config.explain_top,
        )

    # ------------------------------------------------------------------ training
    def new_retrievers(self) -> dict[str, Retriever]:
        """Unfitted retrievers from the specs; parameter errors name the question and model."""
        out = {}
        for key, spec in self.specs.items():
            try:
                out[key] = create_retriever(spec.name, spec.params)
            except ConfigError as exc:
                raise ConfigError(f"{self.question}.retrievers[{key}]: {exc}") from None
        return out

    def check_ranker(self) -> None:
        """Build the configured ranker once, so an unknown name or parameter fails now."""
        spec = self.config.ranker
        if spec is None:
            return
        try:
            create_ranker(spec.name, spec.params)
        except ConfigError as exc:
            raise ConfigError(f"{self.question}.ranker: {exc}") from None

    def fit(
        self,
        data: Interactions,
        item_created_at: np.ndarray | None = None,
        item_authors: np.ndarray | None = None,
        item_features: ItemFeatures | None = None,
        holdout: str | None = None,
    ) -> QuestionModel:
        """Fit every retriever (listed and fallback-only) on ``data``.

        ``item_created_at`` (unix seconds per item, NaN unknown) enables the
        freshness window; ``item_authors`` (account id per item, ``""`` none)
        keeps users' own posts out of their feeds; ``item_features`` (titles,
        genres) reach the retrievers that read item side data. ``holdout``:
        how the answers will be judged, a split method (``recgraph evaluate``
        on split files) or ``None``, served: the ranker's label slice and
        stand-down check are cut the same way (:func:`~.ranking.label_kinds`).
        """
        expected = QUESTION_GRAPH[self.question]
        if (data.graph_kind == "items") != (expected == "items"):
            raise ConfigError(
                f"{self.question} answers from a "
                f"{'users x items' if expected == 'items' else 'follow'} graph; "
                f"got a {data.graph_kind} graph"
            )
        if self.config.max_age_days is not None and item_created_at is None:
            raise ConfigError(
                f"{self.question}.max_age_days needs item creation times (items.created_at)"
            )
        if self.config.ranker is not None:
            self._fit_ranking(data, item_created_at, item_authors, item_features, holdout)
        history = History.from_interactions(
            data, item_created_at=item_created_at, item_authors=item_authors
        )
        models = self.new_retrievers()
        for key in track(list(models), f"training {self.question}"):
            try:
                models[key].fit(data, item_features=item_features)
            except ConfigError as exc:
                raise ConfigError(f"{self.question}.retrievers[{key}]: {exc}") from None
        self._attach(models, history)
        if self.ranking is not None:
            # serve from the features of all the data, read as they were in training
            self.ranking.features = CandidateFeatures(data, item_created_at, item_features)
        return self

    def _fit_ranking(
        self,
        data: Interactions,
        item_created_at: np.ndarray | None,
        item_authors: np.ndarray | None,
        item_features: ItemFeatures | None = None,
        holdout: str | None = None,
    ) -> None:
        """Train the ranker on a label slice of ``data`` (see :mod:`~recgraph.pipeline.ranking`)."""
        spec = self.config.ranker
        assert spec is not None
        self.check_ranker()
        plain = self.config.model_copy(update={"ranker": None})

        def fit_stage_one(rest: Interactions) -> QuestionModel:
            return QuestionModel(self.question, plain).fit(
                rest, item_created_at, item_authors, item_features
            )

        try:
            stage = train_stage(
                spec, fit_stage_one, data, item_created_at, self.main_keys, item_features, holdout
            )
        except ValueError as exc:
            self.ranking, self.ranking_note = None, f"ranker not trained: {exc}"
            return
        self.ranking = stage
        if not stage.active:
            self.ranking_note = (
                "ranker not used: on validation users it ordered candidates no better than "
                f"the merge (nDCG@20 {stage.report['valid_ndcg@20_ranker']:.4f} vs "
                f"{stage.report['valid_ndcg@20_merge']:.4f})"
            )

    def pool(
        self,
        users: np.ndarray,
        depth: int,
        blocked: sp.csr_matrix | None = None,
        eligible: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> CandidatePool:
        """Every retriever's ``depth`` best for known ``users``, as one pool (the ranker's input).

        ``candidates`` (``(n, width)`` target indices, ``-1`` padding): a pool of
        these instead of the merged lists (see :func:`~.ranking.candidate_pool`).
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if blocked is None:
            blocked = self.rules.request_exclusions(users, None)
        return candidate_pool(
            self.main_keys,
            self.models,
            lambda key, rows, count: self._propose(key, rows, count, blocked, eligible),
            users,
            depth,
            method=self.config.merge,
            weights=[self.specs[key].weight for key in self.main_keys],
            rrf_k=self.config.rrf_k,
            candidates=candidates,
        )

    def warm(self, users: np.ndarray) -> np.ndarray:
        """Which of ``users`` the retrievers personalise for (known and not cold)."""
        return ~self.rules.cold(np.asarray(users, dtype=np.int64))

    @property
    def ranked(self) -> bool:
        """Whether answers are ordered by a ranker (configured, trained and kept by validation)."""
        return self.ranking is not None and self.ranking.active

    @property
    def is_fitted(self) -> bool:
        return self.history is not None

    def _check_fitted(self) -> History:
        if self.history is None:
            raise NotFittedError(f"the {self.question} question is not trained")
        return self.history

    @property
    def users(self) -> IdMap | None:
        return self.history.users if self.history is not None else None

    @property
    def items(self) -> IdMap | None:
        return self.history.items if self.history is not None else None

    @property
    def graph_kind(self) -> str | None:
        return self.history.graph_kind if self.history is not None else None

    # ------------------------------------------------------------------ inference
    def user_index(self, user: str) -> int:
        """Index of an external user id, ``-1`` when the models never saw it."""
        return self._check_fitted().users.get(user, -1)

    def target_indices(self, targets: Iterable[str]) -> np.ndarray:
        """Indices of the known external target ids (unknown ones are left out)."""
        return self._check_fitted().target_indices(targets)

    def recommend(
        self,
        users: Sequence[int] | np.ndarray,
        k: int | None = None,
        *,
        exclude: Exclude = None,
        allowed: np.ndarray | None = None,
        now: float | None = None,
    ) -> Recommendations:
        """Merged top ``k`` for a batch of users (indices; ``-1`` for unknown ones).

        Parameters
        ----------
        users
            User indices in :attr:`users`, ``-1`` for users the models never saw.
        k
            Results per user (default: the question's ``k``).
        exclude
            Per user, targets to leave out on top of what the models saw
            (feedback that arrived after training): id lists or a sparse matrix.
        allowed
            A boolean mask over targets: only these may be returned (the
            evaluation harness's candidates).
        now
            Unix seconds the freshness window ends at (default: now).
        """
        self._check_fitted()
        k = self.config.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        users = np.where(users < 0, -1, users)
        n = len(users)
        cold = self.rules.cold(users)
        blocked = self.rules.request_exclusions(users, exclude)
        eligible = self.rules.eligible(now=now, allowed=allowed)
        out = Recommendations.empty(n, k, cold)

        # one retriever needs no more than k: merging is what wants the longer lists
        count = self.config.candidates if len(self.main_keys) > 1 else k
        warm = np.flatnonzero(~cold)
        if len(warm) and self.ranked:
            assert self.ranking is not None
            pool = self.pool(
                users[warm], self.ranking.spec.depth, _rows_of(blocked, warm), eligible
            )
            out.ids[warm], out.scores[warm], out.sources[warm] = self.ranking.rank(pool, k)
        elif len(warm):
            lists = [
                self._propose(key, users[warm], count, _rows_of(blocked, warm), eligible)
                for key in self.main_keys
            ]
            out.ids[warm], out.scores[warm], out.sources[warm] = self._merge(lists, k)[:3]
        rows = np.flatnonzero(cold)
        if len(rows) and any(self.models[key].has_cold_start for key in self.main_keys):
            # what the retrievers can say of a user they cannot personalise for
            lists = [
                self._propose(key, users[rows], count, _rows_of(blocked, rows), eligible, cold=True)
                for key in self.main_keys
            ]
            out.ids[rows], out.scores[rows], out.sources[rows] = self._merge(lists, k)[:3]

        short = np.flatnonzero((out.ids >= 0).sum(axis=1) < k)
        if len(short) and self.chain_keys:
            self._fill_from_chain(out, short, users[short], k, _rows_of(blocked, short), eligible)
        return out

    def _propose(
        self,
        key: str,
        users: np.ndarray,
        count: int,
        blocked: sp.csr_matrix,
        eligible: np.ndarray | None,
        cold: bool = False,
    ) -> RankedList:
        """``key``'s list for ``users``: its own scores, or with ``cold`` its cold-start
        list (empty when the model has none)."""
        model = self.models[key]
        bit = self.retriever_keys.index(key)
        if not cold:
            floor = score_floor(self.specs[key], model)
            return propose(
                model, bit, users, count, exclude=blocked, eligible=eligible, floor=floor
            )
        if not model.has_cold_start:
            return RankedList.empty(len(users), 1)
        exclude = self.rules.with_history(users, blocked)
        return propose_cold(model, bit, len(users), count, exclude=exclude, eligible=eligible)

    def _merge(self, lists: list[RankedList], k: int) -> tuple[np.ndarray, ...]:
        if len(lists) == 1:  # already ranked, best first: nothing to merge
            only = lists[0]
            pad = max(0, k - only.ids.shape[1])
            return tuple(
                np.pad(a[:, :k], ((0, 0), (0, pad)), constant_values=fill)
                for a, fill in ((only.ids, -1), (only.scores, -np.inf), (only.sources, 0))
            )
        return merge_lists(
            [x.ids for x in lists],
            [x.scores for x in lists],
            [x.sources for x in lists],
            k=k,
            method=self.config.merge,
            weights=[self.specs[key].weight for key in self.main_keys],
            rrf_k=self.config.rrf_k,
        )

    def _fill_from_chain(
        self,
        out: Recommendations,
        rows: np.ndarray,
        users: np.ndarray,
        k: int,
        blocked: sp.csr_matrix,
        eligible: np.ndarray | None,
    ) -> None:
        """Top up ``rows`` from the fallback chain, in order (``priority`` merge)."""
        fetch = min(max(2 * k, k + 10), MAX_FALLBACK_FETCH)
        known = users >= 0
        chain: list[RankedList] = []
        for key in self.chain_keys:
            part = RankedList.empty(len(users), fetch)
            if known.any():
                part.put(known, self._propose(key, users[known], fetch, blocked[known], eligible))
            # a user the model never saw gets its own cold-start list, or nothing from it
            if (~known).any():
                part.put(
                    ~known,
                    self._propose(key, users[~known], fetch, blocked[~known], eligible, cold=True),
                )
            chain.append(part)
        filled = merge_lists(
            [out.ids[rows]] + [x.ids for x in chain],
            [out.scores[rows]] + [x.scores for x in chain],
            [out.sources[rows]] + [x.sources for x in chain],
            k=k,
            method="priority",
        )
        out.ids[rows], out.scores[rows], out.sources[rows], out.origin[rows] = filled

    # ------------------------------------------------------------------ one user, with reasons
    def answer(
        self,
        user: str,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        names: Names | None = None,
        now: float | None = None,
    ) -> Answer:
        """Results for one external user id, with reasons (what the service returns)."""
        history = self._check_fitted()
        names = names if names is not None else NO_NAMES  # a Names is never false
        index = history.users.get(user, -1)
        excluded = history.target_indices(exclude)
        result = self.recommend([index], k, exclude=[excluded], now=now)
        ids, scores = result.ids[0], result.scores[0]
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid]
        sources, origin = result.sources[0][valid], result.origin[0][valid]
        cold = bool(result.cold[0])
        reasons = self.explainer.reasons(
            index, ids, sources, origin, cold, names, self.ranking if self.ranked else None
        )
        targets = [str(target) for target in np.asarray(history.items.external(ids)).tolist()]
        # every result's label in one search (as ``handle`` / ``title`` of each)
        show = names.handles_of if self.question == "who_to_follow" else names.titles_of
        # each source mask's retrievers, worked out once (an answer has few distinct masks)
        keys = list(enumerate(self.retriever_keys))
        masks = sources.tolist()
        retrievers = {bits: tuple(key for j, key in keys if bits >> j & 1) for bits in set(masks)}
        # Python numbers, not numpy scalars: each result reads its few fields one by one
        results = [
            Recommendation(
                id=target,
                score=score,
                retrievers=retrievers[bits],
                reason=reason.text,
                reason_code=reason.code,
                via=reason.via,
                fallback=o > 0,
                label=label,
            )
            for target, label, score, bits, o, reason in zip(
                targets,
                show(targets),
                scores.astype(np.float64).tolist(),
                masks,
                origin.tolist(),
                reasons,
                strict=True,
            )
        ]
        return Answer(user=user, known=index >= 0, cold=cold, results=results)

    # ------------------------------------------------------------------ similar items
    def similar(
        self, item: int, k: int, key: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Targets most like target ``item``: ``(ids, scores, method)``, best first."""
        self._check_fitted()
        return self.models[key or self.main_keys[0]].similar_items(item, k)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> dict[str, object]:
        """Write each retriever into ``path/<id>`` and the history; return the question's manifest."""
        history = self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        history.save(path)  # first: a retriever holding the same seen matrix links its files
        shared = _history_files(history, path)
        for key, model in self.models.items():
            model.save(path / key, shared=shared)
        if self.ranking is not None:
            self.ranking.save(path / RANKING_DIR)
        return {
            "retrievers": list(self.models),
            "graph_kind": history.graph_kind,
            "n_users": history.n_users,
            "n_items": history.n_targets,
        }

    @classmethod
    def load(cls, question: str, config: QuestionConfig, path: Path) -> QuestionModel:
        """A saved question, rebuilt through the constructor."""
        specs = {spec.key for spec in config.all_specs()}
        history = History.load(path)
        # retrievers whose seen matrix and id maps are the history's files (hard links) get
        # the history's objects: one copy per process, the pages shared between processes
        shared = _history_files(history, path)
        models = {}
        for key in specs:
            if not (path / key).exists():
                raise InputError(f"no saved retriever {key!r} here", path=path)
            models[key] = Retriever.load(path / key, shared=shared)
        ranking = None
        if config.ranker is not None and (path / RANKING_DIR).exists():
            ranking = RankingStage.load(config.ranker, path / RANKING_DIR)
        return cls(question, config, models=models, history=history, ranking=ranking)


def _rows_of(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]`` for row indices ``rows``; ``matrix`` itself when they are all its rows
    in order (a request's one user: scipy's row selection costs more than the rest of the
    exclusion's handling)."""
    if len(rows) == matrix.shape[0] and (rows == np.arange(len(rows))).all():
        return matrix
    return matrix[rows]


def _history_files(history: History, path: Path) -> SharedFiles:
    """The history's seen matrix and id maps with the files it saves them to in ``path``."""
    ids = history.id_files(path)
    return {
        "seen": (history.seen, history.seen_files(path)),
        "users": (history.users, [ids["users"]]),
        "items": (history.items, [ids["items"]]),
    }
