"""The ranked reasons read the graph straight from its arrays: the same people, counts and ties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.pipeline import explain
from recgraph.pipeline.explain import LIKE_YOU, _account_reasons, _feed_reasons, _people_like_you
from recgraph.pipeline.names import Names
from recgraph.ranking.features import CandidateFeatures
from tests.ranking.test_request_features import follow_graph


def liked_overlap_reference(liked, user: int) -> np.ndarray:
    """ "People like you" as first written: the whole liked matrix times the user's row."""
    row = liked[user]
    if not row.nnz:
        return np.zeros(0, dtype=np.int64)
    overlap = np.asarray((liked @ row.T).todense()).ravel()
    overlap[user] = 0
    candidates = np.flatnonzero(overlap > 0)
    if len(candidates) > LIKE_YOU:
        top = np.argpartition(-overlap[candidates], LIKE_YOU - 1)[:LIKE_YOU]
        candidates = candidates[top]
    return np.sort(candidates)


@pytest.mark.parametrize("dense_count", [None, 0, 10**6])  # as set; always sorted; a table
def test_people_like_you_and_their_counts_are_the_whole_matrix_products(dense_count, monkeypatch):
    if dense_count is not None:
        monkeypatch.setattr(explain, "DENSE_COUNT", dense_count)
    rng = np.random.default_rng(0)
    src, dst = np.nonzero(rng.random((120, 80)) < rng.random(80)[None, :] * 0.4)
    data = Interactions.from_indices(src, dst, n_users=120, n_items=80)
    features = CandidateFeatures(data)
    liked = features.liked
    crowded = 0
    for user in range(120):
        similar = _people_like_you(features, user)
        np.testing.assert_array_equal(similar, liked_overlap_reference(liked, user))
        crowded += len(similar) == LIKE_YOU
        ids = rng.choice(80, size=12, replace=False)
        counts = np.asarray(liked[similar][:, ids].sum(axis=0)).ravel() if len(similar) else 0
        said = _feed_reasons(features, user, ids)
        for j, reason in enumerate(said):
            n = int(np.atleast_1d(counts)[j]) if len(similar) else 0
            if reason is not None and reason.text.startswith("liked by"):
                assert reason.text == f"liked by {n} people with tastes like yours"
            if n >= 3:
                assert reason is not None and reason.code == "similar_users"
    assert crowded > 10  # the top-LIKE_YOU cut (ties and all) was exercised


def test_account_reasons_count_followees_and_follow_backs_as_the_matrices_say():
    rng = np.random.default_rng(1)
    features = CandidateFeatures(follow_graph(50, 0.15, seed=1))
    out = features.out.toarray() > 0
    for user in range(50):
        ids = rng.choice(50, size=10, replace=False)
        said = _account_reasons(features, user, ids, Names(), None, 2)
        for j, reason in zip(ids, said, strict=True):
            common = int((out[:, j] & out[user]).sum())
            back = bool(out[j, user])
            if common >= 2:
                assert reason.text.startswith(f"followed by {common} ")
                lowest = np.flatnonzero(out[:, j] & out[user])[:2]
                assert reason.via == tuple(str(x) for x in lowest)
                assert reason.text.endswith("; follows you") == back
            elif back:
                assert reason.code == "follows_you"
            else:
                assert reason is None


def test_account_reasons_name_the_same_people_when_rows_are_not_sorted():
    rng = np.random.default_rng(2)
    features = CandidateFeatures(follow_graph(40, 0.2, seed=2))
    ids = np.arange(40)
    expected = [_account_reasons(features, user, ids, Names(), None, 2) for user in range(40)]
    for name in ("out", "inn"):
        matrix = getattr(features, name)
        indices, data = matrix.indices.copy(), matrix.data.copy()
        for row in range(matrix.shape[0]):
            lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
            order = lo + rng.permutation(hi - lo)
            indices[lo:hi], data[lo:hi] = indices[order], data[order]
        shuffled = sp.csr_matrix((data, indices, matrix.indptr.copy()), shape=matrix.shape)
        assert not shuffled.has_canonical_format
        setattr(features, name, shuffled)
    said = [_account_reasons(features, user, ids, Names(), None, 2) for user in range(40)]
    assert said == expected


def test_account_reasons_from_a_walk_do_not_read_the_users_history(monkeypatch):
    """A retriever's connection reasons cite no liked item: the user's whole history (an
    account's follow list, 10^5 entries for a heavy one) is not read for them."""
    from recgraph.pipeline.pipeline import Pipeline
    from recgraph.retrieval import create_retriever

    rng = np.random.default_rng(2)
    src, dst = np.nonzero(rng.random((40, 40)) < 0.2)
    keep = src != dst
    graph = Interactions.from_arrays(src[keep].astype(str), dst[keep].astype(str), one_sided=True)
    pipeline = Pipeline.from_retriever(create_retriever("ppr").fit(graph))
    history = pipeline.question("who_to_follow").history
    user = str(graph.users.ids[int(np.argmax(history.counts))])
    before = pipeline.suggest_accounts(user, 5)

    def unread(*args, **kwargs):
        raise AssertionError("the user's history was read for connection reasons")

    monkeypatch.setattr(type(history), "liked_entries", unread)
    after = pipeline.suggest_accounts(user, 5)
    assert [r.id for r in after.results] == [r.id for r in before.results]
    said = [(r.reason, r.reason_code) for r in after.results]
    assert said == [(r.reason, r.reason_code) for r in before.results]
    assert any(code == "connections" for _, code in said)


def test_feed_reasons_say_popular_this_week_where_the_week_share_is_reached():
    rng = np.random.default_rng(5)
    src, dst = np.nonzero(rng.random((60, 40)) < rng.random(40)[None, :] * 0.5)
    features = CandidateFeatures(Interactions.from_indices(src, dst, n_users=60, n_items=40))
    features.pop_7d = rng.random(40).astype(np.float32)
    top = float(features.pop_7d.astype(np.float64).max())
    ids = np.arange(40)
    seen = set()
    for user in range(60):
        similar = _people_like_you(features, user)
        counts = np.asarray(features.liked[similar].sum(axis=0)).ravel()
        for j, reason in enumerate(_feed_reasons(features, user, ids)):
            hot = float(features.pop_7d[j]) >= explain.TRENDING_SHARE * top
            n = int(counts[j]) if len(similar) else 0
            want = (
                (
                    "popular this week among people like you"
                    if hot
                    else f"liked by {n} people with tastes like yours"
                )
                if n >= explain.MIN_LIKE_YOU
                else ("popular this week" if hot else None)
            )
            assert (reason.text if reason else None) == want
            seen.add(want if want is None or not want.startswith("liked by") else "liked by")
    assert len(seen) == 4  # every kind of reason was said
    features.pop_7d = np.zeros(40, np.float32)  # no week: nothing is trending
    assert all(r is None or r.text.startswith("liked by") for r in _feed_reasons(features, 0, ids))


def test_account_reasons_name_people_by_handle_looked_up_at_once():
    """With external ids and handles: the lowest ``top`` common people, ``@handle`` where one
    is known, the rest counted; as naming each result's people one by one."""
    rng = np.random.default_rng(2)
    features = CandidateFeatures(follow_graph(50, 0.2, seed=2))
    out = features.out.toarray() > 0
    external = np.array([f"acct{i}" for i in range(50)])
    names = Names([f"acct{i}" for i in range(0, 50, 2)], [f"h{i}" for i in range(0, 50, 2)])
    kinds = set()
    for top in (1, 2, 3, 5):  # above 2: results with fewer common people than ``top``
        for user in range(50):
            ids = rng.choice(50, size=10, replace=False)
            said = _account_reasons(features, user, ids, names, external, top)
            for j, reason in zip(ids, said, strict=True):
                common = np.flatnonzero(out[:, j] & out[user])
                if len(common) < 2:
                    assert reason is None or reason.code == "follows_you"
                    continue
                via = tuple(external[common[:top]].tolist())
                shown = [names.show_account(x) for x in via]
                rest = len(common) - len(shown)
                more = "more person" if rest == 1 else "more people"
                text = (
                    f"followed by {', '.join(shown)} and {rest} {more} you follow"
                    if rest
                    else f"followed by {', '.join(shown[:-1])} and {shown[-1]}"
                )
                assert reason.via == via
                assert reason.text.removesuffix("; follows you") == text
                kinds.update(s[0] for s in shown)
    assert kinds == {"@", "a"}  # handles and bare ids were both shown


def test_the_reason_kernels_warm_up_for_both_index_dtypes():
    """``warm_up`` compiles what a request passes (read-only int32 and int64 arrays)."""
    from recgraph.pipeline import explain_kernels

    explain_kernels.warm_up()
    for compiled in (
        explain_kernels.overlaps,
        explain_kernels.similar_counts,
        explain_kernels.named_common,
    ):
        assert len(compiled.signatures) >= 2
