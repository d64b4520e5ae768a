r"""Adamic-Adar: common neighbours, each worth less the more connected it is."""

from __future__ import annotations

import numpy as np

from recgraph.retrieval.neighborhood import NeighborhoodConfig, TwoHopRetriever


class AdamicAdarConfig(NeighborhoodConfig):
    """Adamic-Adar has nothing to set beyond the reading, degree side and hub cap."""


class AdamicAdar(TwoHopRetriever):
    r"""Rank accounts by shared middle nodes weighted by the inverse log of their degree.

    .. math::

        s(u, v) = \sum_{w : F[u, w] G[w, v] = 1} \frac{1}{\log \max(\deg w, 2)}

    A shared friend with few friends says more than a shared celebrity. On a
    friendship graph ``deg`` is the degree and the score is NetworkX's
    ``adamic_adar_index`` (a middle node there always has degree >= 2). On a
    follow graph ``deg`` is the middle node's degree on the side named by
    ``degree`` (the exit side by default, see
    :mod:`recgraph.retrieval.neighborhood`), where a degree of 1 is possible:
    it is counted as 2, so the weight stays finite (``1 / log 2``).
    """

    name = "adamic_adar"
    config_class = AdamicAdarConfig
    config: AdamicAdarConfig

    def middle_weights(self, degree: np.ndarray) -> np.ndarray:
        return 1.0 / np.log(np.maximum(degree, 2.0))
