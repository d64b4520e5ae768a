"""Explanation: a reason for each result shown, in words a user understands.

The last part of a question's pipeline, run only for what is shown. A result
is explained by the first retriever that proposed it and can say why
(:attr:`Retriever.explains`): on a follow graph "followed by @a and @b"; on a
feed the items of the user's history behind it, worded by what the user did
with them ("because you liked X", "because you rated Y highly", "because you
viewed Z"). A reason cites only what the user liked: never a dislike, never a
film rated one star, whatever a model returns. Results of the fallback chain
for a user the models never saw are "popular: new user".

When a ranker orders the answer (:class:`RankingStage`), what the ranker saw
of a result is said too, in the same plain words: on a follow graph "followed
by @a, @b and 3 more people you follow" (how many of the people the user
follows follow the account) or "follows you"; on a feed "popular
this week among people like you" (liked in the data's last week, and by
several of the users whose likes overlap most with this user's) or "liked by
5 people with tastes like yours", added to the retriever's own reason ("because
you liked X; popular this week among people like you"). Only facts that hold
for the pair are said; where none is strong enough, the retrievers' own
reasons stand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recgraph.data.interactions import Kind, ValueKind
from recgraph.data.kernel_inputs import frozen
from recgraph.pipeline.history import History
from recgraph.pipeline.names import Names, joined
from recgraph.pipeline.results import Reason
from recgraph.ranking.features import CandidateFeatures
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.explanation import FROM_HISTORY

if TYPE_CHECKING:
    from recgraph.pipeline.ranking import RankingStage

#: Users whose likes overlap most with a user's: "people like you".
LIKE_YOU = 30
#: Of them, how many must have liked an item for a "people like you" reason.
MIN_LIKE_YOU = 3
#: Share of the most-liked item's likes in the data's last week an item needs to be "popular this week".
TRENDING_SHARE = 0.2
#: ``_people_like_you`` counts overlaps in a table over every user when there are at most
#: this many users per overlap entry (else by sorting the entries).
DENSE_COUNT = 8
#: Common followees needed to say how many of the people a user follows follow an account.
MIN_COMMON = 2

#: What a reason says the user did with an item, by interaction kind.
VERBS = {Kind.LIKE: "liked", Kind.RATING: "rated", Kind.VIEW: "viewed", Kind.FOLLOW: "followed"}


#: :data:`VERBS` by the kind's integer value (an enum built per cited item cost a request).
_VERB_OF = {int(kind): verb for kind, verb in VERBS.items()}


def _verb(kind: int) -> str:
    """The verb of an interaction kind's integer value (``liked`` for any other kind)."""
    verb = _VERB_OF.get(kind)
    if verb is None:
        Kind(kind)  # an unknown value fails as it did through the enum
        return "liked"
    return verb


#: The fallback's reasons (frozen: one of each serves every result).
_NEW_USER = Reason("popular: new user", "new_user")
_POPULAR = Reason("popular", "popular")


def popular_reason(cold: bool) -> Reason:
    return _NEW_USER if cold else _POPULAR


class Explainer:
    """Reasons for one question's results (see the module docstring).

    Parameters
    ----------
    history
        The question's :class:`History` (what each user liked, and how).
    models
        The question's retrievers by id.
    retriever_keys, chain_keys
        Bit ``j`` of a result's source mask is ``retriever_keys[j]``; origin
        ``j >= 1`` is ``chain_keys[j - 1]``.
    explain_top
        How many history entries a reason names (0: no explanations).
    """

    def __init__(
        self,
        history: History,
        models: dict[str, Retriever],
        retriever_keys: list[str],
        main_keys: list[str],
        chain_keys: list[str],
        explain_top: int,
    ) -> None:
        self.history = history
        self.models = models
        self.retriever_keys = retriever_keys
        self.main_keys = main_keys
        self.chain_keys = chain_keys
        self.explain_top = explain_top
        if explain_top:
            _warm_history_via(models)

    def reasons(
        self,
        user: int,
        ids: np.ndarray,
        sources: np.ndarray,
        origin: np.ndarray,
        cold: bool,
        names: Names,
        ranking: RankingStage | None = None,
    ) -> list[Reason]:
        """One reason per result of ``user`` (``-1``: a user the models never saw).

        ``ranking``: the stage that ordered the results, when one did; its
        features explain them first (see the module docstring).
        """
        reasons: list[Reason | None] = [None] * len(ids)
        if user < 0:
            return [_NEW_USER] * len(ids)
        # the ranker's reasons first: where one names the people itself it is what is shown
        # (see :func:`combined`), and the retrievers are not asked for what no one would read
        ranked_said: list[Reason | None] = [None] * len(ids)
        if ranking is not None and not cold and len(ids):
            ranked = np.flatnonzero(np.asarray(origin) == 0)
            if len(ranked):
                said = ranked_reasons(
                    ranking.features,
                    user,
                    np.asarray(ids)[ranked],
                    names,
                    self.history.items.ids,
                    max(self.explain_top, 1),
                )
                for p, extra in zip(ranked, said, strict=True):
                    ranked_said[p] = extra
        settled = [extra is not None and extra.code == "connections" for extra in ranked_said]
        # ten or so results: plain lists (small arrays cost more per step than the loop)
        origin = np.asarray(origin).tolist()
        sources = np.asarray(sources).tolist()
        for p, o in enumerate(origin):
            if o > 0 and self.models[self.chain_keys[o - 1]].name == "popular":
                reasons[p] = popular_reason(cold)
        if self.explain_top:
            for key in self.main_keys + self.chain_keys:
                model = self.models[key]
                if not model.explains:
                    continue
                bit = 1 << self.retriever_keys.index(key)
                todo = [
                    p
                    for p in range(len(ids))
                    if reasons[p] is None
                    and not settled[p]
                    and sources[p] & bit
                    and (origin[p] == 0 or self.chain_keys[origin[p] - 1] == key)
                ]
                if todo:
                    for p, reason in zip(
                        todo, self._explain(model, user, ids[todo], names), strict=True
                    ):
                        reasons[p] = reason
        out = []
        for p, reason in enumerate(reasons):
            if settled[p]:  # the ranker's reason replaces whatever a retriever would say
                out.append(ranked_said[p])
                continue
            if reason is None:
                first = next(
                    key for j, key in enumerate(self.retriever_keys) if sources[p] >> j & 1
                )
                name = self.models[first].name
                reason = (
                    popular_reason(cold)
                    if name == "popular"
                    else Reason(f"picked for you by {first}", "model")
                )
            out.append(combined(reason, ranked_said[p]))
        return out

    def _explain(
        self, model: Retriever, user: int, ids: np.ndarray, names: Names
    ) -> list[Reason | None]:
        """What ``model`` says about ``ids``; ``None`` where it cannot say."""
        top = self.explain_top
        try:
            # ask for more than shown: entries the user did not like are dropped below; the
            # items cited without the explanations where the model can say so
            vias = model.history_via(int(user), ids, 3 * top + 5)
            if vias is None:
                explained = model.explain(int(user), ids, 3 * top + 5)
        except Exception:  # an explanation is a courtesy: never fail a request over one
            return [None] * len(ids)
        if vias is not None:
            return self._history_reasons(user, vias, names)
        out: list[Reason | None] = [None] * len(explained)
        # the people cited by every connection reason, named in one search
        cited = [
            (p, [str(x) for x in entry.via_ids[:top]])
            for p, entry in enumerate(explained)
            if entry.relation != FROM_HISTORY
        ]
        shown = iter(names.show_accounts([x for _, via in cited for x in via]))
        for p, via in cited:
            if via:
                said = joined([next(shown) for _ in via])
                out[p] = Reason(f"{explained[p].relation} {said}", "connections", tuple(via))
        from_history = [p for p, entry in enumerate(explained) if entry.relation == FROM_HISTORY]
        if from_history:
            said = self._history_reasons(
                user, [explained[p].via.tolist() for p in from_history], names
            )
            for p, reason in zip(from_history, said, strict=True):
                out[p] = reason
        return out

    def _history_reasons(
        self, user: int, vias: list[list[int]], names: Names
    ) -> list[Reason | None]:
        """ "because you liked X and viewed Y" for each of ``vias`` (a result's history items,
        best first): only the items ``user`` liked, worded by what the user did with them;
        ``None`` where none is. The cited items' ids and titles are looked up once for all.

        The user's liked entries are read only here, for a reason that cites the history:
        the whole history, which an account with 10^5 follows would have read on every
        request for reasons that cite connections. They are read as plain lists (a reason
        reads a few entries one by one: numpy scalars, and a memory map's Python-level
        indexing, cost more than the rest of the reason)."""
        if not any(vias):
            return [None] * len(vias)
        liked, kinds, values, value_kinds = self.history.liked_entries(user)
        position = {t: i for i, t in enumerate(liked.tolist())}
        top = self.explain_top
        # each via's first ``top`` liked items (a retriever cites liked items first: the scan
        # stops at the ``top``-th rather than reading the whole via)
        chosen: list[list[int]] = []
        for via in vias:
            targets = []
            if top:
                for v in via:
                    if v in position:
                        targets.append(v)
                        if len(targets) == top:
                            break
            chosen.append(targets)
        flat = [v for targets in chosen for v in targets]
        if not flat:
            return [None] * len(vias)
        # what the user did with each cited item, read at the cited entries only
        at_entry = [position[v] for v in flat]
        kinds = kinds[at_entry].tolist()
        values, value_kinds = values[at_entry].tolist(), value_kinds[at_entry].tolist()
        # the cited items' external ids, read at once (the id map may be a memory map)
        external = [str(x) for x in np.asarray(self.history.items.ids)[flat].tolist()]
        shown = names.show_items(external)
        said = []  # each cited item as its phrase says it, and the verb
        for kind, value, value_kind, title in zip(kinds, values, value_kinds, shown, strict=True):
            verb = _verb(kind)
            if verb == "rated":
                said.append((verb, f"“{title}” highly"))
            elif verb == "viewed" and value_kind == ValueKind.COUNT and value > 1:
                said.append((verb, f"“{title}” {int(value)} times"))
            else:
                said.append((verb, f"“{title}”"))
        out: list[Reason | None] = []
        at = 0
        for targets in chosen:
            if not targets:
                out.append(None)
                continue
            end = at + len(targets)
            mine = said[at:end]
            verbs = {verb for verb, _ in mine}
            phrases: list[tuple[str, list[str]]] = []  # a phrase per run of the same verb
            for verb, title in mine:
                if phrases and phrases[-1][0] == verb:
                    phrases[-1][1].append(title)
                else:
                    phrases.append((verb, [title]))
            text = " and ".join(f"{verb} {joined(titles)}" for verb, titles in phrases)
            code = (
                "liked"
                if verbs <= {"liked", "rated"}
                else "viewed"
                if verbs == {"viewed"}
                else "history"
            )
            out.append(Reason(f"because you {text}", code, tuple(external[at:end])))
            at = end
        return out


def _warm_history_via(models: dict[str, Retriever]) -> None:
    """Ask each fitted retriever that explains for one reason's items, so the kernels a
    served reason runs (for the model's own dtypes) are compiled, or read from numba's
    cache, when a question is built, not in its first request. A model that cannot say
    is skipped (its first reason fails or falls back as it would)."""
    for model in models.values():
        try:
            if model.explains and model.is_fitted and model.n_users and model.n_items:
                model.history_via(0, np.zeros(1, dtype=np.int64), 1)
        except Exception:  # an explanation is a courtesy, its warm-up too
            continue


# ---------------------------------------------------------------------- ranked answers
def ranked_reasons(
    features: CandidateFeatures,
    user: int,
    ids: np.ndarray,
    names: Names,
    external: np.ndarray | None = None,
    top: int = 2,
) -> list[Reason | None]:
    """What the ranker saw of each of ``user``'s results, in words; ``None``: nothing to say.

    ``external`` maps account indices to external ids (to name ``top`` of the
    people the user follows who follow a candidate); without it they go unnamed.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if features.graph_kind == "items":
        return _feed_reasons(features, user, ids)
    return _account_reasons(features, user, ids, names, external, top)


def combined(said: Reason, ranked: Reason | None) -> Reason:
    """A retriever's reason and the ranker's: the more telling first, both when they add up."""
    if ranked is None:
        return said
    if ranked.code == "connections" or said.code in ("popular", "new_user", "model"):
        return ranked  # it names the people itself, or the retriever said nothing specific
    return Reason(f"{said.text}; {ranked.text}", said.code, said.via)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _account_reasons(
    features: CandidateFeatures,
    user: int,
    ids: np.ndarray,
    names: Names,
    external: np.ndarray | None,
    top: int,
) -> list[Reason | None]:
    # one pass over the candidates' follower rows: which of the people the user follows they
    # hold. CandidateFeatures keeps its matrices canonical (rows sorted), so the user's row
    # needs no sort and the hits come out by candidate, lowest index first, as an
    # intersection lists them
    out_, inn = features.out, features.inn
    if not (out_.has_canonical_format and inn.has_canonical_format):
        # a matrix someone built by hand: sort copies rather than answer with wrong people
        out_, inn = out_.copy(), inn.copy()
        out_.sum_duplicates()
        inn.sum_duplicates()
    if external is not None:
        external = np.asarray(external)  # a memory map indexed as a plain array (no Python hook)
    followed = out_.indices[out_.indptr[user] : out_.indptr[user + 1]]
    from recgraph.pipeline import explain_kernels  # numba: not on import

    # the people named by every result that names them (each result's first ``top`` of its
    # own common people, never past them into the next result's), counted and cut in one
    # pass; read (and their handles looked up) at once
    common, counts, cut = explain_kernels.named_common(
        frozen(inn.indptr), frozen(inn.indices), frozen(followed), frozen(ids), top, MIN_COMMON
    )
    if len(ids) and counts[0] < 0:
        raise IndexError(f"result outside the account range 0..{inn.shape[0] - 1}")
    follows_back = (features.follows_back(np.full(len(ids), user), ids) > 0).tolist()
    counts, cut = counts.tolist(), cut.tolist()
    via_all = list(map(str, (common if external is None else external[common]).tolist()))
    shown_all = names.show_accounts(via_all) if external is not None else via_all
    out: list[Reason | None] = [None] * len(ids)
    end = 0
    for j, n in enumerate(counts):
        if n < MIN_COMMON:
            if follows_back[j]:
                out[j] = _FOLLOWS_YOU
            continue
        size = cut[j]
        end += size
        via = tuple(via_all[end - size : end])
        if external is None:
            text = f"followed by {_count(n, 'person', 'people')} you follow"
        else:
            shown = shown_all[end - size : end]
            rest = n - len(shown)
            text = (
                f"followed by {', '.join(shown)} and {_count(rest, 'more person', 'more people')} you follow"
                if rest
                else f"followed by {joined(shown)}"
            )
        if follows_back[j]:
            text += "; follows you"
        out[j] = Reason(text, "connections", via)
    return out


#: The reason of an account that follows the user, and no more (a frozen :class:`Reason`).
_FOLLOWS_YOU = Reason("follows you", "follows_you")


def _people_like_you(features: CandidateFeatures, user: int) -> np.ndarray:
    """The ``LIKE_YOU`` users whose likes overlap most with ``user``'s (not the user).

    The overlaps are counted from who liked each of the user's items (the
    liked matrix transposed, kept by ``features``), not by multiplying the
    whole liked matrix: the same counts, for the users that share an item only
    (compiled: :func:`~recgraph.pipeline.explain_kernels.overlaps`).
    """
    from recgraph.pipeline import explain_kernels  # numba: not on import

    liked = features.liked
    if not 0 <= user < liked.shape[0]:  # the kernel reads indptr[user] unchecked
        raise IndexError(f"user {user} outside the liked matrix's {liked.shape[0]} rows")
    by_item = features.derived("liked_by_item")
    candidates, counts = explain_kernels.overlaps(
        frozen(liked.indptr),
        frozen(liked.indices),
        frozen(by_item.indptr),
        frozen(by_item.indices),
        user,
        liked.shape[0],
        DENSE_COUNT,
    )
    overlap = counts.astype(np.float32)
    if len(candidates) > LIKE_YOU:
        top = np.argpartition(-overlap, LIKE_YOU - 1)[:LIKE_YOU]
        candidates = candidates[top]
    return np.sort(candidates)


#: A feed's ranked reasons, the same for every result they fit (a frozen :class:`Reason`).
_TRENDING_LIKE_YOU = Reason("popular this week among people like you", "similar_users")
_TRENDING = Reason("popular this week", "popular")


def _feed_reasons(features: CandidateFeatures, user: int, ids: np.ndarray) -> list[Reason | None]:
    from recgraph.pipeline import explain_kernels  # numba: not on import

    similar = _people_like_you(features, user)
    by_item = features.derived("liked_by_item")
    if len(ids) and (ids.min() < 0 or ids.max() >= by_item.shape[0]):
        raise IndexError(f"result outside the item range 0..{by_item.shape[0] - 1}")
    by_similar = explain_kernels.similar_counts(
        frozen(by_item.indptr), frozen(by_item.indices), frozen(ids), frozen(similar)
    ).tolist()
    week = features.pop_7d
    # the largest entry as a float64 is the float32 one's (widening is exact)
    top_week = float(np.max(week, initial=0.0))
    trending = (
        (week[ids].astype(np.float64) >= TRENDING_SHARE * top_week).tolist()
        if top_week > 0
        else [False] * len(ids)
    )
    out: list[Reason | None] = []
    for n, hot in zip(by_similar, trending, strict=True):
        if n >= MIN_LIKE_YOU:
            out.append(
                _TRENDING_LIKE_YOU
                if hot
                else Reason(f"liked by {n} people with tastes like yours", "similar_users")
            )
        else:
            out.append(_TRENDING if hot else None)
    return out
