r"""Common neighbours: how many two-hop paths join two accounts."""

from __future__ import annotations

import numpy as np

from recgraph.retrieval.neighborhood import NeighborhoodConfig, TwoHopRetriever


class CommonNeighborsConfig(NeighborhoodConfig):
    """Common neighbours has nothing to set beyond the reading, degree side and hub cap."""


class CommonNeighbors(TwoHopRetriever):
    r"""Rank accounts by the number of middle nodes they share with the user.

    .. math::

        s(u, v) = |\{w : F[u, w] = 1,\ G[w, v] = 1\}| = (F G)[u, v]

    On a friendship graph: mutual friends (NetworkX ``common_neighbors``).
    On a follow graph with the default ``path="out_out"``: how many of the
    accounts ``u`` follows follow ``v``. The simplest and still a hard
    baseline; it favours well-connected candidates.
    """

    name = "common_neighbors"
    config_class = CommonNeighborsConfig
    config: CommonNeighborsConfig

    def middle_weights(self, degree: np.ndarray) -> np.ndarray:
        return np.ones_like(degree)
