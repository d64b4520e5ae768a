"""Clustered embeddings for testing and benchmarking indexes without a trained model.

Uniform noise is the worst case for every ANN method (no structure to exploit)
and unlike real embeddings, which gather around topics or communities and whose
variance falls off over a few leading directions (the singular values of a
trained factor matrix decay). Here items come from a Gaussian mixture with
uneven cluster sizes, within-cluster noise with a decaying spectrum in a random
basis, and a spread of norms (as popular items get longer vectors in matrix
factorisation); queries come from the same mixture.
"""

from __future__ import annotations

import numpy as np


def clustered_embeddings(
    n_items: int,
    dim: int = 64,
    *,
    n_queries: int = 0,
    n_clusters: int | None = None,
    spread: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Items and queries from one Gaussian mixture.

    In a random orthonormal basis :math:`R` with a decaying spectrum
    :math:`\Lambda_{ii} \propto 1/i` (trace 1), a point is
    :math:`s \, R^T \Lambda^{1/2} (z_j + \sigma \varepsilon)`: cluster
    :math:`j` drawn with Zipf-like weights :math:`\propto 1/\sqrt{j}`, its centre
    :math:`z_j \sim N(0, I)`, noise :math:`\varepsilon \sim N(0, I)`,
    :math:`\sigma` = ``spread``, and a log-normal scale :math:`s` (median 1,
    so norms vary about twofold). The spectrum gives an effective dimension
    near 14 for ``dim=64``, as the leading directions of trained factors carry
    most of their variance.

    Parameters
    ----------
    n_items, dim
        Shape of the item matrix.
    n_queries
        Query vectors drawn from the same mixture.
    n_clusters
        Default ``max(8, n_items // 1000)``.
    spread
        Within-cluster noise relative to the spread of the centres.
    seed
        Seed of the generator; the same seed gives the same arrays.

    Returns
    -------
    items, queries
        float32 arrays of shape ``(n_items, dim)`` and ``(n_queries, dim)``.
    """
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(8, n_items // 1000)
    spectrum = 1.0 / np.arange(1, dim + 1)
    spectrum /= spectrum.sum()
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    basis = (np.sqrt(spectrum)[:, None] * rotation).astype(np.float32)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    weights = 1.0 / np.sqrt(np.arange(1, n_clusters + 1))
    weights /= weights.sum()

    def draw(n: int) -> np.ndarray:
        points = np.empty((n, dim), np.float32)
        step = 1 << 17
        for start in range(0, n, step):
            stop = min(start + step, n)
            cluster = rng.choice(n_clusters, stop - start, p=weights)
            noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
            scale = np.exp(0.35 * rng.standard_normal(stop - start)).astype(np.float32)
            points[start:stop] = ((centres[cluster] + spread * noise) @ basis) * scale[:, None]
        return points

    return draw(n_items), draw(n_queries)
