"""Which post each chat gets next: the pipeline's ``feed`` question, as for the API.

The bot asks a :class:`~recgraph.pipeline.Pipeline` (the same rules as
``GET /v1/users/{user}/feed``: cold start, exclusions, fallback), in this
order of preference:

1. one handed over with :meth:`PostPicker.set_model` (a pipeline, or a fitted
   retriever served as a one-retriever pipeline; the scheduler's training
   jobs do that);
2. the current version of a model registry (``registry``), through the
   serving loader (:class:`recgraph.serving.loader.ModelLoader`): a new
   version published by ``recgraph train`` is picked up at the next round;
3. a saved pipeline or retriever folder (``model_dir``), reloaded when it
   changes;
4. otherwise a retriever (``model``, ``popular`` by default) fitted on the
   store's likes and dislikes before each round.

On top of the pipeline's answer the bot keeps its own two rules: only posts
it can still copy (not retired, within ``max_age_days``), never one the chat
already had (delivered, claimed, liked or disliked); posts newer than the
model, which it cannot rank, follow its picks newest first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgraph.data import telegram_state as state
from recgraph.data.interactions import Kind
from recgraph.data.store import Store

if TYPE_CHECKING:
    from recgraph.collect.telegram.config import BotConfig
    from recgraph.pipeline import Pipeline

log = logging.getLogger(__name__)
POST_ID = r"^tg:-?\d+:\d+$"


def as_pipeline(model: Any) -> Pipeline:
    """A pipeline as it is, a fitted retriever as a one-retriever pipeline."""
    from recgraph.pipeline import Pipeline

    return model if isinstance(model, Pipeline) else Pipeline.from_retriever(model)


class PostPicker:
    """Plans each round: for every chat, the posts to try, best first."""

    def __init__(self, store: Store, config: BotConfig, model: Any | None = None) -> None:
        self.store = store
        self.config = config
        self._pipeline: Pipeline | None = None
        self._external = False
        self._stamp: float | None = None
        self._loader: Any | None = None
        if model is not None:
            self.set_model(model)

    # ---------------------------------------------------------------- the model
    def set_model(self, model: Any) -> None:
        """Use this pipeline or fitted retriever from now on."""
        self._pipeline = as_pipeline(model)
        self._external = True

    def current(self) -> Pipeline | None:
        """The pipeline to ask (see the module docstring for which one)."""
        if self._external:
            return self._pipeline
        if self.config.registry:
            return self._from_registry(self.config.registry)
        if self.config.model_dir:
            return self._from_folder(Path(self.config.model_dir))
        return self._fit()

    def _from_registry(self, root: str) -> Pipeline | None:
        from recgraph.serving.loader import ModelLoader
        from recgraph.serving.registry import ModelRegistry

        if self._loader is None:
            self._loader = ModelLoader(ModelRegistry(root), poll_seconds=0)
        self._loader.check()  # one small read of CURRENT; loads a new version beside the old
        loaded = self._loader.loaded
        if loaded is None:
            log.warning("the registry %s has no current version yet; newest posts first", root)
            return None
        return loaded.pipeline

    def _from_folder(self, folder: Path) -> Pipeline | None:
        from recgraph.pipeline import Pipeline
        from recgraph.pipeline.pipeline import PIPELINE_FILE
        from recgraph.retrieval.base import CONFIG_FILE, Retriever

        for name in (PIPELINE_FILE, CONFIG_FILE):
            manifest = folder / name
            if manifest.exists():
                break
        else:
            log.warning("no saved model in %s yet; newest posts first", folder)
            return None
        stamp = manifest.stat().st_mtime
        if stamp != self._stamp:
            if manifest.name == PIPELINE_FILE:
                self._pipeline = Pipeline.load(folder)
            else:
                self._pipeline = as_pipeline(Retriever.load(folder))
            self._stamp = stamp
        return self._pipeline

    def _fit(self) -> Pipeline | None:
        from recgraph.retrieval.registry import create_retriever

        data = self.store.interactions_graph(kinds=[Kind.LIKE, Kind.DISLIKE])
        if data.n_items == 0 or data.n_users == 0:
            return None
        try:
            model = create_retriever(self.config.model, self.config.model_params).fit(data)
        except Exception as exc:  # a model that cannot fit this data: fall back to popularity
            log.warning("fitting %s failed (%s); using popular", self.config.model, exc)
            model = create_retriever("popular").fit(data)
        pipeline = as_pipeline(model)
        # the bot's own cold-start rule for the model it fits itself
        pipeline.config.feed.cold_start_min_interactions = self.config.cold_start_min_interactions
        self._pipeline = pipeline
        return pipeline

    # ---------------------------------------------------------------- planning
    def plan(self, chat_ids: Sequence[int], now: float | None = None) -> dict[int, list[str]]:
        """For each chat, the posts to try, best first (never one it has already had)."""
        now = time.time() if now is None else now
        if not chat_ids:
            return {}
        posts = self.eligible_posts(now)
        accounts = [state.chat_account(c) for c in chat_ids]
        history = self.history(chat_ids)
        pipeline = self.current() if len(posts) else None
        picks: dict[int, list[str]] = {c: [] for c in chat_ids}
        if pipeline is not None and "feed" in pipeline.questions:
            picks = self._pipeline_picks(pipeline, chat_ids, accounts, history, posts, now)
        newest = posts.sort_values(["created_at", "stored"], ascending=False)["external_id"]
        for chat in chat_ids:
            had = history.get(chat, set())
            chosen = picks[chat]
            for item in newest:
                if len(chosen) >= self.config.candidates:
                    break
                if item not in had and item not in chosen:
                    chosen.append(item)
        return picks

    def eligible_posts(self, now: float) -> pd.DataFrame:
        """Posts that may be offered: copyable (not retired), complete and fresh enough."""
        items = self.store.items_frame()
        if items.empty:
            return items.assign(stored=pd.Series(dtype=np.int64))
        is_post = items["external_id"].str.match(POST_ID)
        gone = items["features"].map(lambda f: bool(isinstance(f, dict) and f.get("gone")))
        items["stored"] = np.arange(len(items))  # insertion order breaks ties of date
        posts = items[is_post & ~gone].copy()
        posts["created_at"] = posts["created_at"].fillna(0).astype(np.int64)
        album = posts["features"].map(
            lambda f: bool(isinstance(f, dict) and f.get("media_group_id"))
        )
        # an album's parts arrive as separate updates: wait until all are in
        posts = posts[~album | (posts["created_at"] <= now - self.config.album_wait_seconds)]
        if self.config.max_age_days is not None:
            posts = posts[posts["created_at"] >= now - self.config.max_age_days * 86400]
        return posts

    def history(self, chat_ids: Sequence[int]) -> dict[int, set[str]]:
        """Per chat: every post it was offered (in any state) or interacted with."""
        with self.store.engine.connect() as conn:
            had = state.delivered_items(conn, chat_ids)
        by_account = {state.chat_account(c): int(c) for c in chat_ids}
        for frame in self.store.iter_frames("interactions"):
            mine = frame[frame["user"].isin(by_account.keys())]
            for user, item in zip(mine["user"], mine["item"], strict=True):
                had[by_account[user]].add(item)
        return had

    def _pipeline_picks(
        self,
        pipeline: Pipeline,
        chat_ids: Sequence[int],
        accounts: list[str],
        history: dict[int, set[str]],
        posts: pd.DataFrame,
        now: float,
    ) -> dict[int, list[str]]:
        question = pipeline.question("feed")
        if not question.is_fitted or question.items is None:
            return {c: [] for c in chat_ids}
        items = question.items
        allowed = np.zeros(len(items), dtype=bool)
        allowed[question.target_indices(posts["external_id"])] = True
        users = np.array([question.user_index(a) for a in accounts], dtype=np.int64)
        exclude = [question.target_indices(sorted(history.get(c, set()))) for c in chat_ids]
        # more than needed, so that ties (a cold start without feedback) can go to the
        # newest posts below rather than to the lowest index
        k = max(1, min(len(items), self.config.candidates * 10))
        found = question.recommend(users, k, exclude=exclude, allowed=allowed, now=now)
        created = {
            item: (date, stored)
            for item, date, stored in zip(
                posts["external_id"], posts["created_at"], posts["stored"], strict=True
            )
        }
        picks: dict[int, list[str]] = {}
        for row, chat in enumerate(chat_ids):
            valid = found.ids[row] >= 0
            ids = items.external(found.ids[row][valid])
            scores = found.scores[row][valid]
            # among equal scores (a cold start without feedback yet) the newer post first
            order = sorted(
                zip(ids, scores, strict=True),
                key=lambda pair: (-pair[1], *(-x for x in created.get(str(pair[0]), (0, 0)))),
            )
            had = history.get(chat, set())
            picks[chat] = [
                str(item) for item, _ in order if str(item) in created and str(item) not in had
            ][: self.config.candidates]
        return picks


__all__ = ["PostPicker", "as_pipeline"]
