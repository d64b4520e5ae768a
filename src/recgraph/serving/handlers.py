"""The API's handlers, as methods of one :class:`Service` that holds what they share.

Each method is a plain FastAPI endpoint (its parameters are the request's);
``app.py`` lists them all in one route table. Handlers that touch the
database are plain ``def``: run in a thread pool (FastAPI's, or for the answers
the app's own ``answer_threads``), so a slow or locked store does not stall
the event loop, except with ``answer_threads = 0`` (a SQLite store only), which
computes the answers on the loop itself, their store reads through a read-only
store of their own (``reads``). The rest are ``async``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import Body, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recgraph import __version__
from recgraph.data.sql import StoreBusyError, is_lock_timeout
from recgraph.errors import RecgraphError
from recgraph.pipeline import Answer, Recommendation
from recgraph.serving.feedback import ID_PATTERN, FeedbackEvent, FeedbackStore, show_to_walks
from recgraph.serving.loader import (
    ADMIN_RELOAD_WAIT_SECONDS,
    LoadedModel,
    LoadInProgress,
    ModelLoader,
)
from recgraph.serving.metrics import Metrics
from recgraph.serving.schemas import FeedbackWritten, Health, ModelInfo, ReloadResult
from recgraph.serving.stats import StatsService
from recgraph.settings import Settings

try:  # the serve extra's JSON encoder; the standard library's where it is missing
    import orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    orjson = None

log = logging.getLogger("recgraph.serving")
#: Example users shown on the page: the most active ones.
EXAMPLES = 5
#: The absolute upper bound of ``?k=``; the ``max_k`` setting and a question's own are lower.
K_LIMIT = 10_000
#: Answers re-asked without results the store says were taken since training, at most.
CHECK_ROUNDS = 3
#: Seconds between two warnings of answers sent unchecked (each says how many since the last).
UNCHECKED_WARNING_SECONDS = 60.0


class ThrottledWarning:
    """A warning logged at most once every ``seconds`` a process, with how many times it
    happened since the last one logged (an answer on the event loop must not log each time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._last = -math.inf
        self._since = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            self._since += 1
            if now - self._last < self.seconds:
                return
            count, self._since, self._last = self._since, 0, now
        log.warning(message + " (%d time(s) since the last warning)", *args, count)


#: The warning of an answer sent without its recent-feedback check (one for the process).
warn_unchecked = ThrottledWarning(UNCHECKED_WARNING_SECONDS)

AccountPath = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=255,
        pattern=ID_PATTERN,
        description="External id, DID or handle (a leading @ is fine). Any character but "
        "control characters, percent-encoded as URLs need (a / as %2F or as it is).",
    ),
]
ItemPath = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=255,
        pattern=ID_PATTERN,
        description="Item id (percent-encoded; a / may stay as it is).",
    ),
]


class AnswerResponse(JSONResponse):
    """An answer (``query`` ... ``results``, each as :func:`result_json` builds it) as JSON,
    encoded by orjson where that gives the standard library's bytes, in a fraction of its CPU.

    Both write compact UTF-8 with the same escapes, and a float as its shortest
    round-trip digits; they spell them alike for 0 and for magnitudes in
    [1e-4, 1e16), and only there (``1e-05`` is orjson's ``0.00001``). An answer
    whose scores (its only floats) fall outside, or that orjson refuses, is
    encoded by the standard library, so the bytes never change.
    """

    def render(self, content: Any) -> bytes:
        if orjson is not None and all(_spelt_alike(r["score"]) for r in content["results"]):
            try:
                return orjson.dumps(content)
            except TypeError:  # orjson.JSONEncodeError: the standard library decides
                pass
        return super().render(content)


def _spelt_alike(value: Any) -> bool:
    """Whether orjson and the standard library write the float ``value`` alike."""
    return type(value) is float and (value == 0.0 or 1e-4 <= abs(value) < 1e16)


class Service:
    """The state every handler shares: settings, the served model, the store, metrics.

    Parameters
    ----------
    settings
        The process settings.
    loader
        Keeps the registry's current version loaded.
    feedback
        The store as the service sees it.
    metrics
        The app's Prometheus metrics.
    reads
        Where the answers read the user's recent feedback (default ``feedback``; on
        the event loop, a read-only store of its own: see
        :func:`recgraph.serving.app.answer_reads`).
    """

    def __init__(
        self,
        settings: Settings,
        loader: ModelLoader,
        feedback: FeedbackStore,
        metrics: Metrics,
        *,
        reads: FeedbackStore | None = None,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.feedback = feedback
        self.reads = reads if reads is not None else feedback
        self.metrics = metrics
        self.stats = StatsService(feedback.store, settings)
        self._examples: dict[str, dict[str, list[dict[str, str | None]]]] = {}

    # ------------------------------------------------------------------ helpers
    def k_param(self) -> Any:
        """The ``?k=`` query parameter, bounded by the ``max_k`` setting in the schema."""
        return Query(
            None,
            ge=1,
            le=self.settings.max_k,
            description="How many results (default: the pipeline's k; a question's own max_k "
            "may be lower).",
        )

    def check_k(self, k: int | None, question_max: int, question_k: int) -> int:
        """``k``, or the question's default; 422 past the question's or the service's max."""
        limit = min(self.settings.max_k, question_max)
        if k is None:
            return min(question_k, limit)
        if k > limit:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "loc": ["query", "k"],
                        "msg": f"k must be at most {limit}",
                        "type": "less_than_equal",
                        "input": k,
                    }
                ],
            )
        return k

    def recent(self, fetch: Callable[[str], list[str]], user: str, question: str) -> list[str]:
        """What ``user`` acted on since training (empty when the store cannot say)."""
        if not self.settings.exclude_recent_feedback:
            return []
        try:
            return fetch(user)
        except Exception as exc:  # the store being down must not take answers down
            self.unchecked(question, user, exc)
            return []

    def unchecked(self, question: str, user: str, exc: Exception) -> None:
        """An answer goes out without the check of what ``user`` took since training: counted
        (``recgraph_recent_feedback_unchecked_total``) and warned of, at most once a minute."""
        busy = isinstance(exc, StoreBusyError) or is_lock_timeout(exc)
        self.metrics.recent_unchecked.labels(question, "busy" if busy else "error").inc()
        warn_unchecked(
            "%s answer sent without the check of recent feedback (of %r, the last): %s",
            question,
            user,
            exc,
        )

    def respond(
        self, question: str, query: str, answer: Answer, loaded: LoadedModel
    ) -> JSONResponse:
        # built as plain JSON: the hot path skips re-validating its own response model
        self.metrics.answered(question, answer.cold)
        return AnswerResponse(
            {
                "query": query,
                "resolved": answer.user,
                "known": answer.known,
                "cold_start": answer.cold,
                "model_version": loaded.version,
                "results": [result_json(r) for r in answer.results],
            }
        )

    # ------------------------------------------------------------------ operations
    async def healthz(self) -> Health:
        """Liveness and the served version (``no_model`` before the first load)."""
        loaded = self.loader.loaded
        return Health(
            status="ok" if loaded is not None else "no_model",
            model_version=loaded.version if loaded is not None else None,
            recgraph_version=__version__,
        )

    async def metrics_text(self) -> PlainTextResponse:
        """Prometheus text format: request counts, latency histograms, model version."""
        return PlainTextResponse(
            generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    async def model_info(self) -> ModelInfo:
        """The served version: questions, retrievers, training data, example users."""
        loaded = self.loader.current
        if loaded.version not in self._examples:
            self._examples.clear()
            self._examples[loaded.version] = examples(loaded)
        pipeline = loaded.pipeline
        return ModelInfo(
            version=loaded.version,
            created_at=loaded.manifest.get("created_at"),
            trained_at=pipeline.trained_at,
            questions={
                name: {
                    "retrievers": q.main_keys,
                    "fallback": q.chain_keys,
                    "merge": q.config.merge,
                    "k": q.config.k,
                    "max_k": min(q.config.max_k, self.settings.max_k),
                    "n_users": len(q.users) if q.users is not None else 0,
                    "n_targets": len(q.items) if q.items is not None else 0,
                }
                for name, q in pipeline.questions.items()
            },
            examples=self._examples[loaded.version],
            loaded_at=loaded.loaded_at,
        )

    def reload(self) -> ReloadResult:
        """Load the registry's current version now (the poller would, within seconds)."""
        # the name only: a reference held across the swap would keep the old model in memory
        loaded = self.loader.loaded
        previous = loaded.version if loaded is not None else None
        del loaded
        try:
            fresh = self.loader.reload(wait=ADMIN_RELOAD_WAIT_SECONDS)
        except LoadInProgress:  # not a failure of the version: ask again later
            raise HTTPException(status_code=409, detail="a load is in progress") from None
        except (RecgraphError, OSError, ValueError, KeyError) as exc:
            self.metrics.failed("?", exc)
            raise HTTPException(status_code=409, detail=f"reload failed: {exc}") from None
        return ReloadResult(
            previous=previous,
            version=fresh.version,
            swapped=previous != fresh.version,
        )

    # ------------------------------------------------------------------ answers
    def suggestions(self, account: AccountPath, k: int | None = None) -> JSONResponse:
        """Who ``account`` should follow: accounts with reasons ("followed by @a and @b")."""
        return self._answer(
            "who_to_follow", account, k, self.reads.follows_of, self.reads.follows_among
        )

    def feed(self, user: AccountPath, k: int | None = None) -> JSONResponse:
        """What ``user`` should read next, without what they saw, liked or disliked."""
        return self._answer("feed", user, k, self.reads.items_of, self.reads.items_among)

    def _answer(
        self,
        question: str,
        query: str,
        k: int | None,
        recent_of: Callable[[str], list[str]],
        recent_among: Callable[[str, list[str]], list[str]] | None = None,
    ) -> JSONResponse:
        loaded = self.loader.current  # taken once: the request ends on this version
        pipeline = loaded.pipeline
        config = pipeline.question(question).config
        k = self.check_k(k, config.max_k, config.k)
        resolved = pipeline.resolve_account(query)
        ask = pipeline.feed if question == "feed" else pipeline.suggest_accounts
        if recent_among is not None and self.settings.exclude_recent_feedback:
            answer = self._checked_answer(question, ask, resolved, k, recent_of, recent_among)
        else:
            answer = ask(resolved, k, exclude=self.recent(recent_of, resolved, question))
        return self.respond(question, query, answer, loaded)

    def _checked_answer(
        self,
        question: str,
        ask: Callable[..., Answer],
        user: str,
        k: int,
        recent_of: Callable[[str], list[str]],
        recent_among: Callable[[str, list[str]], list[str]],
    ) -> Answer:
        """The answer without what ``user`` acted on since training, asking the store only
        about the results about to be shown.

        The trained history already leaves out what the model saw; the store is
        asked which of the answer's ``k`` results the user has taken since (the
        crawler, another worker's feedback), and the question is asked again
        without them until none is, at a cost bounded by ``k``, where reading a
        heavy user's whole follow list (thousands of rows on a large graph) cost
        most of a request. Nothing shown is something the user took. For a
        single retriever the list is the one excluding the whole history gives
        (top ``k`` with some rows filtered out); for merged or ranked lists it
        can differ a little: an item taken since training that was pooled but
        not shown still holds its place in the pool (and in the rank-fusion
        ranks below it) until the next training folds it into the history.
        After :data:`CHECK_ROUNDS` rounds the whole list is read after all.
        """
        excluded: list[str] = []
        for _ in range(CHECK_ROUNDS):
            answer = ask(user, k, exclude=excluded)
            shown = [r.id for r in answer.results]
            try:
                found = recent_among(user, shown)
            except Exception as exc:  # the store being down must not take answers down
                self.unchecked(question, user, exc)
                return answer
            known = set(excluded)
            fresh = [x for x in found if x not in known]
            if not fresh:
                return answer
            excluded.extend(fresh)
        return ask(user, k, exclude=self.recent(recent_of, user, question))

    async def similar(self, item: ItemPath, k: int | None = None) -> JSONResponse:
        """Items like ``item`` (404 for an item the model never saw)."""
        loaded = self.loader.current
        pipeline = loaded.pipeline
        pipeline.question("feed")
        cfg = pipeline.config.similar
        k = self.check_k(k, cfg.max_k, cfg.k)
        try:
            results = pipeline.similar_items(item, k)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"unknown item {item!r}") from None
        return AnswerResponse(
            {
                "query": item,
                "resolved": item,
                "known": True,
                "cold_start": False,
                "model_version": loaded.version,
                "results": [result_json(r) for r in results],
            }
        )

    def post_feedback(self, event: Annotated[FeedbackEvent, Body()]) -> FeedbackWritten:
        """Record a like, dislike or view of an item, or a follow of an account.

        Written to the store at once; the user's next answers leave it out.
        The user may be new, but the item (or the followed account) must be in
        the store: an unknown one is answered 404, naming it, and nothing is
        written. Items come in through ``recgraph import items`` /
        ``recgraph import interactions`` or the Telegram bot; accounts through
        ``recgraph import edges`` / ``recgraph import accounts`` or the
        Bluesky crawler.
        """
        written = self.feedback.write([event])
        self.metrics.feedback.labels(event.kind).inc()
        if self.loader.loaded is not None:  # the walks see it at once (their overlay)
            show_to_walks(self.loader.loaded.pipeline, [event])
        return FeedbackWritten(written=written, user=event.user)

    # ------------------------------------------------------------------ dashboard
    def store_stats(self) -> dict[str, Any]:
        """What the store holds: counts, rows over time, degree distributions (cached)."""
        return self.stats.store_figures()

    async def evaluation_stats(self) -> dict[str, Any]:
        """The served version's evaluation curves, from its registry manifest."""
        return self.stats.evaluation(self.loader.current)


def result_json(rec: Recommendation) -> dict[str, Any]:
    """A :class:`~recgraph.serving.schemas.Result` as JSON (JSON has no infinity)."""
    out = rec.to_dict()
    out["score"] = float(rec.score) if math.isfinite(rec.score) else 0.0
    return out


def examples(loaded: LoadedModel) -> dict[str, list[dict[str, str | None]]]:
    """The most active users of each question, for the page to offer."""
    pipeline = loaded.pipeline
    out: dict[str, list[dict[str, str | None]]] = {}
    for name, question in pipeline.questions.items():
        if question.history is None or not question.history.n_users:
            continue
        counts = question.history.counts
        top = np.argsort(-counts, kind="stable")[: min(EXAMPLES, len(counts))]
        out[name] = [
            {"id": str(uid), "handle": pipeline.names.handle(str(uid))}
            for uid in question.users.external(top)
        ]
    return out
