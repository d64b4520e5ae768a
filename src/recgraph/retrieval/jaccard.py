r"""Jaccard: the share of the two neighbourhoods that is common."""

from __future__ import annotations

import numpy as np

from recgraph.retrieval.neighborhood import NeighborhoodConfig, TwoHopRetriever


class JaccardConfig(NeighborhoodConfig):
    """Jaccard has nothing to set beyond the reading and hub cap (``degree`` is unused)."""


class Jaccard(TwoHopRetriever):
    r"""Rank accounts by common neighbours over the union of the two neighbourhoods.

    .. math::

        s(u, v) = \frac{|S(u) \cap T(v)|}{|S(u) \cup T(v)|}
                = \frac{c}{|S(u)| + |T(v)| - c}, \qquad c = (F G)[u, v]

    with ``S(u)`` the first-hop neighbours of ``u`` (row of ``F``) and
    ``T(v)`` the nodes from which the second hop reaches ``v`` (column of
    ``G``). On a friendship graph both are the neighbour sets and the score
    is NetworkX's ``jaccard_coefficient``; for ``path="out_out"`` it compares
    whom ``u`` follows with who follows ``v``. It removes common neighbours'
    bias towards popular candidates, at the price of favouring small ones.
    Set sizes are the true ones even when the hub cap thins the paths.
    """

    name = "jaccard"
    config_class = JaccardConfig
    config: JaccardConfig

    def middle_weights(self, degree: np.ndarray) -> np.ndarray:
        return np.ones_like(degree)

    def _normalise(self, common: np.ndarray, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        union = self.first_sizes_[users] + self.second_sizes_[targets] - common
        out = np.zeros(len(common), dtype=np.float64)
        np.divide(common, union, out=out, where=union > 0)
        return out
