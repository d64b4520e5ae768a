"""A deterministic synthetic listening log: (user, artist, play count), shaped like real ones.

Public listening data (a user's top artists with their play counts, as the
Last.fm sets researchers use) has traits a recommender must cope with, and
none of the bundled datasets has them, so this module makes such data:

- play counts are heavy-tailed: within a user they fall off with rank like a
  power law (a favourite artist has hundreds of times the plays of the 50th),
  and users differ in how much they listen (lognormal volume); a few pairs
  reach tens of thousands of plays, most have a few dozen;
- artist popularity is a power law (Zipf), so a handful of artists are in
  almost every list and most are in one or two;
- most users list their top ``max_artists_per_user`` artists, some only a few;
- taste has structure a model can learn: artists belong to genres, each user
  likes a few genres (a sparse Dirichlet mix), and a user's most-played
  artists are the ones that fit their taste best, so plays say how much.

The same ``seed`` gives the same data on every machine. Rows are
``value_kind=count`` likes without timestamps (listening totals have no time).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recgraph.data.interactions import Interactions, Kind, ValueKind


class ListeningConfig(BaseModel):
    """Size and shape of the synthetic listening log.

    The defaults are about the size of the public Last.fm 2k set (1,892 users,
    17,632 artists, 92,834 pairs, up to 50 artists a user): generating them
    takes about a second.
    """

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(default=1900, ge=1)
    n_artists: int = Field(default=15000, ge=2)
    n_genres: int = Field(default=24, ge=1)
    max_artists_per_user: int = Field(default=50, ge=1)
    #: Share of users who list fewer artists (uniform between 1 and the maximum).
    short_list_share: float = Field(default=0.2, ge=0, le=1)
    #: Zipf exponent of artist popularity.
    popularity_exponent: float = Field(default=1.0, ge=0)
    #: Dirichlet concentration of a user's genre mix: small means a few genres.
    taste_concentration: float = Field(default=0.15, gt=0)
    #: How strongly taste (versus popularity) decides what a user listens to.
    taste_strength: float = Field(default=1.0, ge=0)
    #: Power-law fall-off of plays with a user's rank of the artist.
    plays_rank_exponent: float = Field(default=0.9, ge=0)
    #: Lognormal mean and spread of a user's plays of their favourite artist.
    top_plays_log_mean: float = Field(default=7.5)
    top_plays_log_sd: float = Field(default=1.2, ge=0)
    #: Per-pair lognormal noise on plays.
    plays_noise_sd: float = Field(default=0.5, ge=0)
    seed: int = 0


def generate_listening(config: ListeningConfig | None = None, **overrides) -> Interactions:
    """Users x artists with play counts (``value_kind=count``), see the module docstring."""
    cfg = ListeningConfig.model_validate(
        {**(config or ListeningConfig()).model_dump(), **overrides}
    )
    rng = np.random.default_rng(cfg.seed)
    n_users, n_artists = cfg.n_users, cfg.n_artists
    genre = rng.integers(0, cfg.n_genres, size=n_artists)
    popularity = (rng.permutation(n_artists) + 1.0) ** -cfg.popularity_exponent
    taste = rng.dirichlet(np.full(cfg.n_genres, cfg.taste_concentration), size=n_users)
    lengths = np.full(n_users, min(cfg.max_artists_per_user, n_artists))
    short = rng.random(n_users) < cfg.short_list_share
    lengths[short] = rng.integers(1, lengths[short] + 1)
    log_popularity = np.log(popularity)
    src, dst, plays = [], [], []
    for user in range(n_users):
        # Gumbel top-k: sampling without replacement in proportion to
        # popularity x taste^strength; the order is the user's ranking.
        affinity = log_popularity + cfg.taste_strength * np.log(taste[user, genre] + 1e-12)
        keys = affinity + rng.gumbel(size=n_artists)
        n = int(lengths[user])
        chosen = np.argpartition(-keys, n - 1)[:n]
        chosen = chosen[np.argsort(-keys[chosen], kind="stable")]
        top = np.exp(rng.normal(cfg.top_plays_log_mean, cfg.top_plays_log_sd))
        rank = np.arange(1, n + 1, dtype=np.float64)
        noise = np.exp(rng.normal(0.0, cfg.plays_noise_sd, size=n))
        counts = np.maximum(1, np.round(top * rank**-cfg.plays_rank_exponent * noise))
        src.append(np.full(n, user))
        dst.append(chosen)
        plays.append(counts)
    src_arr, dst_arr = np.concatenate(src), np.concatenate(dst)
    users = [f"u{u}" for u in range(n_users)]
    artists = [f"a{a}" for a in range(n_artists)]
    return Interactions.from_arrays(
        np.asarray(users, dtype=object)[src_arr],
        np.asarray(artists, dtype=object)[dst_arr],
        value=np.concatenate(plays),
        kind=Kind.LIKE,
        value_kind=ValueKind.COUNT,
    )


__all__ = ["ListeningConfig", "generate_listening"]
