"""``named_common``: a follow graph's reason counted and cut in one pass, as
:func:`common_followers` (a plain reference) and each result's first ``top`` of its own
common people."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.pipeline import explain_kernels


def common_followers(indptr, indices, followed, accounts):
    """For each of ``accounts``, its followers (stored order) that are in ``followed``, all
    accounts' laid end to end, and how many each has: the uncut reference."""
    wanted = set(followed.tolist())
    rows = [
        [f for f in indices[indptr[a] : indptr[a + 1]].tolist() if f in wanted]
        for a in accounts.tolist()
    ]
    ids = np.array([f for row in rows for f in row], dtype=np.int64)
    return ids, np.array([len(row) for row in rows], dtype=np.int64)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top", [1, 2, 5])
def test_named_common_is_common_followers_cut(seed, top):
    rng = np.random.default_rng(seed)
    inn = sp.csr_matrix((rng.random((30, 30)) < 0.3).astype(np.float32))
    followed = np.flatnonzero(rng.random(30) < 0.4)
    accounts = rng.choice(30, size=8, replace=False).astype(np.int64)
    args = (inn.indptr, inn.indices, followed.astype(inn.indices.dtype), accounts)
    common_ids, counts = common_followers(*args)
    common, got_counts, cut = explain_kernels.named_common(*args, top, 2)
    np.testing.assert_array_equal(got_counts, counts)
    starts = np.cumsum(counts) - counts
    want_cut = [min(top, n) if n >= 2 else 0 for n in counts.tolist()]
    want = [common_ids[s : s + c] for s, c in zip(starts.tolist(), want_cut, strict=True)]
    np.testing.assert_array_equal(cut, want_cut)
    np.testing.assert_array_equal(common, np.concatenate(want))


def test_named_common_refuses_an_account_outside_the_rows():
    inn = sp.csr_matrix(np.ones((3, 3), dtype=np.float32))
    for outside in (-1, 3):
        accounts = np.array([0, outside], dtype=np.int64)
        common, counts, _ = explain_kernels.named_common(
            inn.indptr, inn.indices, inn.indices[:2], accounts, 2, 2
        )
        assert len(common) == 0 and (counts == -1).all()
