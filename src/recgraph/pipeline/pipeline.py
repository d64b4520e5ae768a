"""The serving pipeline: both questions, the names that make answers readable, saving and loading.

A :class:`Pipeline` answers the two questions of a
:class:`~recgraph.pipeline.config.PipelineConfig` ("who to follow" on the follow
graph, "what to read" on the interactions), each a
:class:`~recgraph.pipeline.question.QuestionModel`. It trains from a
:class:`~recgraph.data.snapshot.TrainingSnapshot` (everything a run reads from
the store, taken at once) and saves as a folder of retriever folders plus
JSON and npz, never pickle. Publishing to the model registry is
:func:`recgraph.jobs.train.train_pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from recgraph.data.interactions import Interactions
from recgraph.data.snapshot import TrainingSnapshot, data_snapshot
from recgraph.errors import InputError, NotFittedError
from recgraph.files import read_manifest, saved_folder
from recgraph.pipeline.config import (
    QUESTION_GRAPH,
    QUESTIONS,
    PipelineConfig,
    load_pipeline_config,
    parse_pipeline,
)
from recgraph.pipeline.history import History
from recgraph.pipeline.names import Names
from recgraph.pipeline.question import QuestionModel
from recgraph.pipeline.results import Answer, Recommendation
from recgraph.retrieval.base import Retriever

if TYPE_CHECKING:
    from recgraph.data.store import Store

PIPELINE_FILE = "pipeline.json"
NAMES_FILE = "names.npz"
#: 3: each question's history and its retrievers' seen matrices and id maps are ``.npy``
#: files, memory-mapped on load (one copy of the pages for every worker); format 2
#: (``history.npz``, ``state.npz`` holding them) still loads, read into memory.
PIPELINE_FORMAT = 3
PIPELINE_ALSO_READS: tuple[int, ...] = (2,)
#: How ``GET /v1/items/{item}/similar`` says how it found its answers.
SIMILAR_REASONS = {
    "similarity": "liked by the same people",
    "vectors": "close in {key}'s item space",
    "co-occurrence": "often had by the same people",
}


def _as_config(
    config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None,
) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, Mapping):
        return parse_pipeline(config)
    return load_pipeline_config(config)


class Pipeline:
    """Both questions, the names that make results readable, and how to save them.

    Parameters
    ----------
    config
        A :class:`PipelineConfig`, a mapping of its fields, or a TOML path;
        ``None`` is the shipped default pipeline.
    questions, names, trained_at, snapshots
        What a trained pipeline holds (given by :meth:`load` and
        :meth:`from_retriever`; :meth:`fit` fills them otherwise).

    Examples
    --------
    >>> pipeline = Pipeline().fit_store(store)  # doctest: +SKIP
    >>> pipeline.suggest_accounts("@alice.bsky.social").results[0].reason  # doctest: +SKIP
    'followed by @bob.bsky.social and @carol.bsky.social'
    """

    #: What the model registry records as the model's name.
    name: ClassVar[str] = "pipeline"

    def __init__(
        self,
        config: PipelineConfig | Mapping[str, Any] | str | os.PathLike | None = None,
        *,
        questions: Mapping[str, QuestionModel] | None = None,
        names: Names | None = None,
        trained_at: str | None = None,
        snapshots: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = _as_config(config)
        self.questions: dict[str, QuestionModel] = dict(questions or {})
        self.names = names or Names()
        self.trained_at = trained_at
        self.snapshots: dict[str, Any] = dict(snapshots or {})
        if not self.questions:
            for question in QUESTIONS:
                cfg = self.config.question(question)
                if cfg.enabled:
                    # unknown names and bad parameters fail now, not after training
                    QuestionModel(question, cfg).new_retrievers()
                    QuestionModel(question, cfg).check_ranker()

    def __repr__(self) -> str:
        trained = ", ".join(self.questions) or "not trained"
        return f"Pipeline({trained})"

    # ------------------------------------------------------------------ training
    def fit(
        self,
        snapshot: TrainingSnapshot | None = None,
        *,
        follows: Interactions | None = None,
        interactions: Interactions | None = None,
        accounts: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
    ) -> Pipeline:
        """Train each enabled question whose graph is given and not empty.

        Parameters
        ----------
        snapshot
            Everything to train on (:meth:`TrainingSnapshot.from_store`); or
            give the parts:
        follows
            The follow (or friendship) graph, for ``who_to_follow``.
        interactions
            Users x items, for ``feed``.
        accounts, items
            :meth:`Store.accounts_frame` / :meth:`Store.items_frame`: handles
            and titles for reasons, item ``created_at`` for freshness and
            ``author`` to keep users' own posts out of their feeds.
        """
        if snapshot is None:
            snapshot = TrainingSnapshot.from_frames(
                follows=follows, interactions=interactions, accounts=accounts, items=items
            )
        questions: dict[str, QuestionModel] = {}
        summaries: dict[str, Any] = {}
        for question in QUESTIONS:
            cfg = self.config.question(question)
            data = snapshot.graph(QUESTION_GRAPH[question])
            if not cfg.enabled or data is None or len(data) == 0:
                continue
            feed = question == "feed"
            questions[question] = QuestionModel(question, cfg).fit(
                data,
                item_created_at=snapshot.item_times(data) if feed else None,
                item_authors=snapshot.item_authors(data) if feed else None,
                item_features=snapshot.item_features() if feed else None,
            )
            summaries[question] = data_snapshot(data)
        if not questions:
            raise InputError(
                "nothing to train: the store has neither follows nor interactions "
                "(import data first, e.g. recgraph quickstart)"
            )
        self.questions = questions
        self.snapshots = {"rows": sum(s["rows"] for s in summaries.values()), **summaries}
        self.names = Names(
            snapshot.account_ids, snapshot.handles, snapshot.item_ids, snapshot.titles
        )
        self.trained_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return self

    def fit_store(self, store: Store) -> Pipeline:
        """Train on a snapshot of everything ``store`` holds."""
        return self.fit(TrainingSnapshot.from_store(store))

    # ------------------------------------------------------------------ model-like surface
    @property
    def is_fitted(self) -> bool:
        return bool(self.questions)

    @property
    def graph_kind(self) -> str:
        """The graphs it answers from, e.g. ``follows+items``."""
        return "+".join(q.graph_kind or "?" for q in self.questions.values())

    @property
    def n_users(self) -> int:
        return max(
            (len(q.users) for q in self.questions.values() if q.users is not None), default=0
        )

    @property
    def n_items(self) -> int:
        feed = self.questions.get("feed")
        return len(feed.items) if feed is not None and feed.items is not None else 0

    def question(self, name: str) -> QuestionModel:
        """The trained question ``name``; :class:`NotFittedError` when it was not trained."""
        if name not in self.questions:
            raise NotFittedError(
                f"this pipeline has no trained {name!r} question "
                f"(trained: {', '.join(self.questions) or 'none'})"
            )
        return self.questions[name]

    # ------------------------------------------------------------------ answers
    def resolve_account(self, text: str) -> str:
        """The external id an account query means: an id or DID as given, or a handle's account.

        Unknown text is returned unchanged: it is a user the models never saw,
        and gets the fallback.
        """
        text = text.strip()
        for question in self.questions.values():
            if question.users is not None and text in question.users:
                return text
        return self.names.account_for_handle(text) or text.removeprefix("@")

    def suggest_accounts(
        self, account: str, k: int | None = None, *, exclude: Iterable[str] = ()
    ) -> Answer:
        """Who ``account`` (id, DID or handle) should follow, with reasons."""
        account = self.resolve_account(account)
        return self.question("who_to_follow").answer(account, k, exclude=exclude, names=self.names)

    def feed(
        self,
        user: str,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        now: float | None = None,
    ) -> Answer:
        """What ``user`` should read next, with reasons; ``exclude`` = items to leave out."""
        user = self.resolve_account(user)
        return self.question("feed").answer(user, k, exclude=exclude, names=self.names, now=now)

    def similar_items(self, item: str, k: int | None = None) -> list[Recommendation]:
        """Items like ``item``; :class:`KeyError` when the feed never saw it."""
        feed = self.question("feed")
        assert feed.items is not None
        index = feed.items.get(item, -1)
        if index < 0:
            raise KeyError(f"unknown item {item!r}")
        cfg = self.config.similar
        key = cfg.retriever if cfg.retriever in feed.models else feed.main_keys[0]
        ids, scores, method = feed.similar(index, cfg.k if k is None else k, key)
        reason = SIMILAR_REASONS[method].format(key=key)
        return [
            Recommendation(
                id=str(target),
                score=float(score),
                retrievers=(key,),
                reason=reason,
                reason_code=method,
                label=self.names.title(str(target)),
            )
            for target, score in zip(feed.items.external(ids), scores, strict=True)
        ]

    # ------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        """What ``pipeline.json`` holds."""
        return {
            "format_version": PIPELINE_FORMAT,
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "trained_at": self.trained_at,
            "questions": {
                name: {
                    "retrievers": list(q.models),
                    "graph_kind": q.graph_kind,
                    "n_users": len(q.users) if q.users is not None else 0,
                    "n_items": len(q.items) if q.items is not None else 0,
                }
                for name, q in self.questions.items()
            },
            "data": self.snapshots,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``pipeline.json``, ``names.npz`` and one folder per question of retriever folders."""
        if not self.is_fitted:
            raise NotFittedError("the pipeline is not trained: call fit() or fit_store()")
        with saved_folder(path, PIPELINE_FILE, self.manifest) as folder:
            for name, question in self.questions.items():
                question.save(folder / name)
            self.names.save(folder / NAMES_FILE)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Rebuild a saved pipeline (no pickle: JSON, npz and npy only; the large arrays
        memory-mapped read-only, so several processes share their pages)."""
        path = Path(path)
        manifest_path = path / PIPELINE_FILE
        manifest = read_manifest(
            manifest_path,
            "pipeline",
            PIPELINE_FORMAT,
            "; retrain with recgraph train",
            also_reads=PIPELINE_ALSO_READS,
        )
        config = parse_pipeline(manifest["config"], source=str(manifest_path))
        return cls(
            config,
            questions={
                name: QuestionModel.load(name, config.question(name), path / name)
                for name in manifest.get("questions", {})
            },
            names=Names.load(path / NAMES_FILE) if (path / NAMES_FILE).exists() else Names(),
            trained_at=manifest.get("trained_at"),
            snapshots=manifest.get("data") or {},
        )

    @classmethod
    def from_retriever(cls, model: Retriever) -> Pipeline:
        """A one-retriever pipeline around a fitted model (to serve a plain registry version)."""
        if not model.is_fitted:
            raise NotFittedError(f"model {model.name!r} is not fitted")
        assert model.users is not None and model.items is not None and model.graph_kind
        question = "feed" if model.graph_kind == "items" else "who_to_follow"
        other = "who_to_follow" if question == "feed" else "feed"
        spec = {"name": model.name, "params": model.config.model_dump(mode="json")}
        config = parse_pipeline(
            {
                question: {"retrievers": [spec], "fallback": []},
                other: {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
            }
        )
        history = History.from_seen(model.seen_matrix(), model.users, model.items, model.graph_kind)
        q = QuestionModel(
            question, config.question(question), models={model.name: model}, history=history
        )
        return cls(config, questions={question: q})
