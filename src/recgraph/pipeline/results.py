"""What a pipeline answers: batches of arrays for programs, :class:`Answer` for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Recommendations:
    """A batch of merged results, arrays of shape ``(n_users, k)``, best first.

    Attributes
    ----------
    ids, scores
        Target indices (``-1`` past the end) and merged scores.
    sources
        Bit mask of the retrievers that proposed each target (bit ``j`` =
        :attr:`QuestionModel.retriever_keys` ``[j]``).
    origin
        ``0`` when the target came from the question's retrievers, ``j >= 1``
        when the ``j``-th retriever of the fallback chain supplied it.
    cold
        Per user: served by the fallback chain alone (unknown or cold).
    """

    ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    origin: np.ndarray
    cold: np.ndarray

    @classmethod
    def empty(cls, n: int, k: int, cold: np.ndarray | None = None) -> Recommendations:
        """``n`` rows of ``k`` empty slots."""
        return cls(
            ids=np.full((n, k), -1, dtype=np.int64),
            scores=np.full((n, k), -np.inf, dtype=np.float32),
            sources=np.zeros((n, k), dtype=np.int64),
            origin=np.zeros((n, k), dtype=np.int64),
            cold=np.zeros(n, dtype=bool) if cold is None else cold,
        )


@dataclass(frozen=True)
class Reason:
    """Why one result is shown: a sentence for people, a word for programs, the ids it names."""

    text: str
    code: str
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """One result as the service returns it.

    ``retrievers`` are the ids of every retriever that proposed it; ``reason``
    a sentence for people and ``reason_code`` one word for programs
    (``connections``, ``liked``, ``popular``, ``new_user``, ``model``);
    ``via`` the external ids the reason names; ``fallback`` whether the
    fallback chain supplied it.
    """

    id: str
    score: float
    retrievers: tuple[str, ...]
    reason: str
    reason_code: str
    via: tuple[str, ...] = ()
    fallback: bool = False
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "score": self.score,
            "retrievers": list(self.retrievers),
            "reason": self.reason,
            "reason_code": self.reason_code,
            "via": list(self.via),
            "fallback": self.fallback,
        }


@dataclass(frozen=True)
class Answer:
    """Results for one user, and how the user was treated."""

    user: str
    known: bool
    cold: bool
    results: list[Recommendation] = field(default_factory=list)
