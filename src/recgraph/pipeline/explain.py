"""Explanation: a reason for each result shown, in words a user understands.

The last part of a question's pipeline, run only for what is shown. A result
is explained by the first retriever that proposed it and can say why
(:attr:`Retriever.explains`): on a follow graph "followed by @a and @b"; on a
feed the items of the user's history behind it, worded by what the user did
with them ("because you liked X", "because you rated Y highly", "because you
viewed Z"). A reason cites only what the user liked: never a dislike, never a
film rated one star, whatever a model returns. Results of the fallback chain
for a user the models never saw are "popular: new user".
"""

from __future__ import annotations

import numpy as np

from recgraph.data.interactions import Kind, ValueKind
from recgraph.pipeline.history import History
from recgraph.pipeline.names import Names, joined
from recgraph.pipeline.results import Reason
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.explanation import FROM_HISTORY, Explanation

#: What a reason says the user did with an item, by interaction kind.
VERBS = {Kind.LIKE: "liked", Kind.RATING: "rated", Kind.VIEW: "viewed", Kind.FOLLOW: "followed"}


def popular_reason(cold: bool) -> Reason:
    return Reason("popular: new user", "new_user") if cold else Reason("popular", "popular")


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

    def reasons(
        self,
        user: int,
        ids: np.ndarray,
        sources: np.ndarray,
        origin: np.ndarray,
        cold: bool,
        names: Names,
    ) -> list[Reason]:
        """One reason per result of ``user`` (``-1``: a user the models never saw)."""
        reasons: list[Reason | None] = [None] * len(ids)
        if user < 0:
            return [popular_reason(True) for _ in ids]
        for p in range(len(ids)):
            if origin[p] > 0 and self.models[self.chain_keys[origin[p] - 1]].name == "popular":
                reasons[p] = popular_reason(cold)
        if self.explain_top:
            for key in self.main_keys + self.chain_keys:
                model = self.models[key]
                if not model.explains:
                    continue
                bit = np.int64(1) << np.int64(self.retriever_keys.index(key))
                todo = [
                    p
                    for p in range(len(ids))
                    if reasons[p] is None
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
            out.append(reason)
        return out

    def _explain(
        self, model: Retriever, user: int, ids: np.ndarray, names: Names
    ) -> list[Reason | None]:
        """What ``model`` says about ``ids``; ``None`` where it cannot say."""
        top = self.explain_top
        try:
            # ask for more than shown: entries the user did not like are dropped below
            explained = model.explain(int(user), ids, 3 * top + 5)
        except Exception:  # an explanation is a courtesy: never fail a request over one
            return [None] * len(ids)
        liked, kinds, values, value_kinds = self.history.liked_entries(user)
        out: list[Reason | None] = []
        for entry in explained:
            if entry.relation != FROM_HISTORY:
                via = [str(x) for x in entry.via_ids[:top]]
                shown = [names.show_account(x) for x in via]
                out.append(
                    Reason(f"{entry.relation} {joined(shown)}", "connections", tuple(via))
                    if via
                    else None
                )
            else:
                out.append(self._history_reason(entry, liked, kinds, values, value_kinds, names))
        return out

    def _history_reason(
        self,
        entry: Explanation,
        liked: np.ndarray,
        kinds: np.ndarray,
        values: np.ndarray,
        value_kinds: np.ndarray,
        names: Names,
    ) -> Reason | None:
        """ "because you liked X and viewed Y": only the user's liked items, worded by kind."""
        position = {int(t): i for i, t in enumerate(liked)}
        chosen = [int(v) for v in entry.via if int(v) in position][: self.explain_top]
        if not chosen:
            return None
        phrases: list[tuple[str, list[str]]] = []
        for target in chosen:
            i = position[target]
            verb = VERBS.get(Kind(int(kinds[i])), "liked")
            title = f"“{names.show_item(str(self.history.items.ids[target]))}”"
            if verb == "rated":
                title += " highly"
            elif verb == "viewed" and value_kinds[i] == ValueKind.COUNT and values[i] > 1:
                title += f" {int(values[i])} times"
            if phrases and phrases[-1][0] == verb:
                phrases[-1][1].append(title)
            else:
                phrases.append((verb, [title]))
        text = " and ".join(f"{verb} {joined(titles)}" for verb, titles in phrases)
        verbs = {verb for verb, _ in phrases}
        code = (
            "liked"
            if verbs <= {"liked", "rated"}
            else "viewed"
            if verbs == {"viewed"}
            else "history"
        )
        via = tuple(str(self.history.items.ids[t]) for t in chosen)
        return Reason(f"because you {text}", code, via)
