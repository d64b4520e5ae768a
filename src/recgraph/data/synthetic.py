"""A deterministic synthetic social network, so the package runs with no data and no network.

It is built to have the structure the real models exploit, not to be pretty:

- accounts belong to communities of uneven size;
- follow in-degrees are heavy-tailed (each account has a Pareto "fitness"
  that draws followers) and so are out-degrees (lognormal activity);
- part of the follows close triangles (follow someone followed by an account
  you follow), and those come *later* in time than the edges they close, so
  a temporal split has something to predict;
- accounts post items, more so the popular ones; users like items of
  accounts they follow and of their own community, and dislike some items
  from elsewhere.

The same ``seed`` gives the same data on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recgraph.data.interactions import DAY, IdMap, Interactions, Kind

#: 2024-01-01 00:00:00 UTC: synthetic time starts here.
EPOCH = 1_704_067_200

TOPICS = [
    "football", "cooking", "python", "jazz", "hiking", "chess", "cinema", "gardening",
    "astronomy", "poetry", "cycling", "photography", "startups", "history", "anime", "birds",
]  # fmt: skip


class SyntheticConfig(BaseModel):
    """Size and shape of the synthetic network (the defaults run in about a second)."""

    model_config = ConfigDict(extra="forbid")

    n_accounts: int = Field(default=2000, ge=10)
    n_communities: int = Field(default=8, ge=1, le=len(TOPICS))
    mean_follows: float = Field(default=20.0, gt=1)
    within_community: float = Field(default=0.8, ge=0, le=1)
    triadic_closure: float = Field(default=0.35, ge=0, le=1)
    fitness_exponent: float = Field(default=2.5, gt=0.5)
    n_items: int = Field(default=3000, ge=1)
    mean_interactions: float = Field(default=30.0, gt=0)
    dislike_rate: float = Field(default=0.12, ge=0, le=1)
    item_lifetime_days: float = Field(default=7.0, gt=0)
    days: int = Field(default=90, ge=2)
    seed: int = 0


@dataclass(frozen=True)
class SyntheticSocialData:
    """Tables in the store's column names, plus the graphs built from them."""

    accounts: pd.DataFrame  # external_id, handle, community
    follows: pd.DataFrame  # src, dst, created_at
    items: pd.DataFrame  # external_id, title, author, created_at, features
    interactions: pd.DataFrame  # user, item, kind, value, timestamp

    def follows_graph(self) -> Interactions:
        """The directed follow graph; the id map holds every account."""
        users = IdMap(self.accounts["external_id"])
        return Interactions.from_arrays(
            self.follows["src"].to_numpy(object),
            self.follows["dst"].to_numpy(object),
            timestamp=self.follows["created_at"].to_numpy(np.int64),
            one_sided=True,
            directed=True,
            users=users,
            unknown="error",
        )

    def interactions_graph(self) -> Interactions:
        """Likes and dislikes, users x items."""
        frame = self.interactions
        return Interactions.from_arrays(
            frame["user"].to_numpy(object),
            frame["item"].to_numpy(object),
            value=frame["value"].to_numpy(np.float32),
            timestamp=frame["timestamp"].to_numpy(np.int64),
            kind=np.array([Kind.parse(k) for k in frame["kind"]], dtype=np.int8),
            users=IdMap(self.accounts["external_id"]),
            items=IdMap(self.items["external_id"]),
            unknown="error",
        )


def generate_social(config: SyntheticConfig | None = None, **overrides) -> SyntheticSocialData:
    """Generate the network; ``overrides`` set fields of :class:`SyntheticConfig`."""
    cfg = SyntheticConfig.model_validate({**(config.model_dump() if config else {}), **overrides})
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_accounts
    span = cfg.days * DAY

    # communities of uneven size
    shares = rng.dirichlet(np.full(cfg.n_communities, 2.0))
    community = rng.choice(cfg.n_communities, size=n, p=shares)
    members = [np.flatnonzero(community == c) for c in range(cfg.n_communities)]

    # heavy tails: fitness draws followers, activity sets how many one follows
    fitness = rng.pareto(cfg.fitness_exponent, size=n) + 1.0
    activity = rng.lognormal(mean=0.0, sigma=0.9, size=n)
    out_degree = np.clip(
        np.rint(cfg.mean_follows * activity / activity.mean()), 1, min(n - 1, 50 * cfg.mean_follows)
    ).astype(np.int64)

    # phase 1: preferential follows, mostly inside the community, in the first 70% of time
    follows: dict[int, dict[int, int]] = {u: {} for u in range(n)}
    base_count = np.maximum(1, np.rint(out_degree * (1 - cfg.triadic_closure))).astype(np.int64)
    everyone_p = fitness / fitness.sum()
    for u in range(n):
        own = members[community[u]]
        n_within = rng.binomial(base_count[u], cfg.within_community)
        picks = []
        if len(own) > 1 and n_within:
            p = fitness[own].copy()
            p[own == u] = 0.0
            size = min(n_within, int((p > 0).sum()))
            picks.append(rng.choice(own, size=size, replace=False, p=p / p.sum()))
        rest = base_count[u] - sum(len(x) for x in picks)
        if rest > 0:
            p = everyone_p.copy()
            p[u] = 0.0
            picks.append(rng.choice(n, size=min(rest, n - 1), replace=False, p=p / p.sum()))
        for v in np.concatenate(picks) if picks else ():
            follows[u].setdefault(int(v), int(rng.integers(0, int(0.7 * span))))

    # phase 2: triadic closure, later than both edges of the wedge it closes
    for u in rng.permutation(n):
        wanted = out_degree[u] - len(follows[u])
        for _ in range(max(0, int(wanted)) * 3):
            if wanted <= 0 or not follows[u]:
                break
            via = list(follows[u])
            w = via[rng.integers(len(via))]
            if not follows[w]:
                continue
            second = list(follows[w])
            weights = fitness[second]
            v = second[rng.choice(len(second), p=weights / weights.sum())]
            if v == u or v in follows[u]:
                continue
            after = max(follows[u][w], follows[w][v])
            follows[u][v] = int(rng.integers(after, span)) if after < span - 1 else span - 1
            wanted -= 1

    src = np.fromiter((u for u in follows for _ in follows[u]), dtype=np.int64)
    dst = np.fromiter((v for u in follows for v in follows[u]), dtype=np.int64)
    created = np.fromiter((t for u in follows for t in follows[u].values()), dtype=np.int64)
    order = np.lexsort((dst, src, created))

    ids = np.array([f"did:synth:{i:05d}" for i in range(n)], dtype=object)
    handles = np.array(
        [f"{TOPICS[community[i]]}-fan-{i}.synthetic.test" for i in range(n)], dtype=object
    )
    accounts = pd.DataFrame({"external_id": ids, "handle": handles, "community": community})
    follows_frame = pd.DataFrame(
        {"src": ids[src[order]], "dst": ids[dst[order]], "created_at": EPOCH + created[order]}
    )

    # items: posted by accounts, popular ones post more
    author = rng.choice(n, size=cfg.n_items, p=np.sqrt(fitness) / np.sqrt(fitness).sum())
    item_time = np.sort(rng.integers(0, span, size=cfg.n_items))
    quality = rng.normal(0.0, 1.0, size=cfg.n_items)
    item_ids = np.array([f"post:{j:06d}" for j in range(cfg.n_items)], dtype=object)
    topics = [TOPICS[community[a]] for a in author]
    items = pd.DataFrame(
        {
            "external_id": item_ids,
            "title": [
                f"On {t}, #{j} by @{handles[a]}"
                for j, (t, a) in enumerate(zip(topics, author, strict=True))
            ],
            "author": ids[author],
            "created_at": EPOCH + item_time,
            "features": [
                {"topic": t, "community": int(community[a])}
                for t, a in zip(topics, author, strict=True)
            ],
        }
    )

    # interactions: from followed authors, own community, or anywhere by quality
    by_author: dict[int, list[int]] = {}
    for j, a in enumerate(author):
        by_author.setdefault(int(a), []).append(j)
    items_of_community = [np.flatnonzero(community[author] == c) for c in range(cfg.n_communities)]
    appeal = np.exp(quality)
    appeal_p = appeal / appeal.sum()
    n_inter = rng.poisson(cfg.mean_interactions * activity / activity.mean())
    rows_user, rows_item, rows_kind, rows_time = [], [], [], []
    for u in range(n):
        followed_items = [j for v in follows[u] for j in by_author.get(v, ())]
        own_items = items_of_community[community[u]]
        chosen: set[int] = set()
        for _ in range(int(n_inter[u])):
            r = rng.random()
            if followed_items and r < 0.5:
                j = followed_items[rng.integers(len(followed_items))]
            elif len(own_items) and r < 0.8:
                p = appeal[own_items]
                j = int(own_items[rng.choice(len(own_items), p=p / p.sum())])
            else:
                j = int(rng.choice(cfg.n_items, p=appeal_p))
            seen_at = item_time[j] + int(rng.exponential(cfg.item_lifetime_days * DAY))
            if j in chosen or author[j] == u or seen_at >= span:
                continue
            chosen.add(j)
            affinity = quality[j] + (1.0 if community[author[j]] == community[u] else -0.5)
            disliked = rng.random() < cfg.dislike_rate * (2.0 if affinity < 0 else 0.5)
            rows_user.append(u)
            rows_item.append(j)
            rows_kind.append("dislike" if disliked else "like")
            rows_time.append(seen_at)
    kinds = np.array(rows_kind, dtype=object)
    interactions = pd.DataFrame(
        {
            "user": ids[np.asarray(rows_user, dtype=np.int64)],
            "item": item_ids[np.asarray(rows_item, dtype=np.int64)],
            "kind": kinds,
            "value": np.where(kinds == "like", 1.0, 0.0),
            "timestamp": EPOCH + np.asarray(rows_time, dtype=np.int64),
        }
    ).sort_values(["timestamp", "user", "item"], kind="stable", ignore_index=True)
    return SyntheticSocialData(
        accounts=accounts, follows=follows_frame, items=items, interactions=interactions
    )
