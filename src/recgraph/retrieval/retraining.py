"""When to update a model on new feedback: incrementally, or from scratch.

Incremental updates (``partial_fit``) are cheap but drift: they only see the
newest feedback, so what the model learnt from older data slowly erodes and
the negatives it samples no longer match the catalogue. Training from scratch
on everything is the cure, and for feed-sized data it is cheap. The policy
here mixes both, the way the OLEG feed does it:

- after each batch of new feedback, an incremental cycle (``partial_fit``);
- every ``full_retrain_every`` incremental cycles, a full retrain (``fit`` on
  all feedback so far) instead;
- never two cycles closer together than ``min_interval_seconds`` (feedback
  that arrives in between waits in a buffer for the next cycle).

:class:`RetrainingPolicy` only decides; :class:`RetrainingDriver` keeps the
history and the buffer and applies the decision to a model. Every model's
``partial_fit`` / ``fold_in`` puts new interactions on its id maps with
:meth:`~recgraph.data.interactions.Interactions.reindexed_onto` and grows what
it has seen with :func:`grow_seen`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recgraph.data.interactions import Interactions
from recgraph.data.sparse_rows import pad_rows
from recgraph.retrieval.base import Retriever
from recgraph.settings import config_of


# ---------------------------------------------------------------------- history
def grow_seen(seen: sp.csr_matrix, new: Interactions) -> sp.csr_matrix:
    """The seen matrix padded to ``new``'s shape, with ``new``'s pairs added (binary)."""
    merged = (pad_rows(seen, new.n_users, new.n_items) + new.seen()).tocsr()
    merged.data[:] = 1.0
    merged.sort_indices()
    return merged


# ---------------------------------------------------------------------- policy
class RetrainingConfig(BaseModel):
    """How often to update and how often to start over.

    ``full_retrain_every = 0`` never retrains from scratch (pure incremental,
    which drifts); ``1`` retrains from scratch on every cycle. A model without
    ``partial_fit`` is always retrained from scratch.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    full_retrain_every: int = Field(default=10, ge=0)
    min_interval_seconds: float = Field(default=0.0, ge=0)
    #: A cycle waits until at least this many new interactions are buffered.
    min_new_interactions: int = Field(default=1, ge=1)


class Action(StrEnum):
    """What a cycle does."""

    WAIT = "wait"
    INCREMENTAL = "incremental"
    FULL = "full"


@dataclass
class CycleReport:
    """What one call of :meth:`RetrainingDriver.add` did."""

    action: Action
    now: float
    n_new: int
    seconds: float = 0.0


class RetrainingPolicy:
    """Decides, from the state of the buffer and the clock, what to do next.

    Parameters
    ----------
    config
        A :class:`RetrainingConfig` or its fields as a mapping.
    """

    def __init__(self, config: RetrainingConfig | dict | None = None) -> None:
        self.config = config_of(RetrainingConfig, config)

    def decide(
        self,
        *,
        n_buffered: int,
        incremental_since_full: int,
        seconds_since_last: float | None,
        supports_incremental: bool = True,
    ) -> Action:
        """The action for the current state.

        Parameters
        ----------
        n_buffered
            New interactions waiting to be learnt.
        incremental_since_full
            Incremental cycles since the last full retrain.
        seconds_since_last
            Time since the last cycle of either kind (``None``: never trained).
        supports_incremental
            Whether the model has ``partial_fit``.
        """
        cfg = self.config
        if n_buffered < cfg.min_new_interactions:
            return Action.WAIT
        if seconds_since_last is not None and seconds_since_last < cfg.min_interval_seconds:
            return Action.WAIT
        if seconds_since_last is None or not supports_incremental:
            return Action.FULL
        if cfg.full_retrain_every and incremental_since_full + 1 >= cfg.full_retrain_every:
            return Action.FULL
        return Action.INCREMENTAL


def supports_partial_fit(model: Retriever) -> bool:
    """Whether ``model`` overrides ``Retriever.partial_fit``."""
    from recgraph.retrieval.base import Retriever

    return type(model).partial_fit is not Retriever.partial_fit


class RetrainingDriver:
    """Applies a :class:`RetrainingPolicy` to a model as feedback arrives.

    It keeps every interaction seen so far (for full retrains) and a buffer of
    the ones the model has not learnt yet.

    Parameters
    ----------
    model
        Any retriever; incremental cycles need ``partial_fit``.
    policy
        The policy, or its config.
    history
        Feedback the model is (or is about to be) trained on.
    fitted
        Whether ``model`` is already fitted on ``history``; if not, it is
        fitted now.
    now
        The clock at that training (default: the wall clock).

    Examples
    --------
    >>> driver = RetrainingDriver(model, {"full_retrain_every": 7}, history=train)
    >>> report = driver.add(todays_feedback, now=timestamp)
    >>> report.action
    <Action.INCREMENTAL: 'incremental'>
    """

    def __init__(
        self,
        model: Retriever,
        policy: RetrainingPolicy | RetrainingConfig | dict | None = None,
        *,
        history: Interactions,
        fitted: bool = False,
        now: float | None = None,
    ) -> None:
        self.model = model
        self.policy = policy if isinstance(policy, RetrainingPolicy) else RetrainingPolicy(policy)
        self.history = history
        self.buffer: Interactions | None = None
        self.incremental_since_full = 0
        self.cycles: list[CycleReport] = []
        now = time.time() if now is None else float(now)
        if not fitted:
            started = time.perf_counter()
            model.fit(history)
            self.cycles.append(
                CycleReport(Action.FULL, now, len(history), time.perf_counter() - started)
            )
        self.last_cycle: float | None = now

    @property
    def n_buffered(self) -> int:
        return 0 if self.buffer is None else len(self.buffer)

    def add(self, new: Interactions, now: float | None = None) -> CycleReport:
        """Take a batch of new feedback; run a cycle if the policy says so.

        Returns
        -------
        CycleReport
            The action taken (``wait`` leaves the feedback buffered).
        """
        now = time.time() if now is None else float(now)
        if len(new):
            self.history = self.history.concat(new)
            self.buffer = new if self.buffer is None else self.buffer.concat(new)
        return self.step(now)

    def step(self, now: float | None = None) -> CycleReport:
        """Run a cycle now if the policy allows (e.g. after a quiet interval)."""
        now = time.time() if now is None else float(now)
        action = self.policy.decide(
            n_buffered=self.n_buffered,
            incremental_since_full=self.incremental_since_full,
            seconds_since_last=None if self.last_cycle is None else now - self.last_cycle,
            supports_incremental=supports_partial_fit(self.model),
        )
        n_new = self.n_buffered
        started = time.perf_counter()
        if action is Action.FULL:
            self.model.fit(self.history)
            self.incremental_since_full = 0
        elif action is Action.INCREMENTAL:
            assert self.buffer is not None
            self.model.partial_fit(self.buffer)
            self.incremental_since_full += 1
        report = CycleReport(action, now, n_new, time.perf_counter() - started)
        if action is not Action.WAIT:
            self.buffer = None
            self.last_cycle = now
            self.cycles.append(report)
        return report
