"""A saved pipeline keeps its per-edge state as memory-mapped ``.npy`` arrays, one copy per question.

And answers exactly as the pipeline it was saved from, as does a pipeline
saved in the previous format (``history.npz``, seen matrices in each
``state.npz``), which still loads.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recgraph.data.graph_csr import binary_csr_files, same_file
from recgraph.data.synthetic import generate_social
from recgraph.files import save_arrays
from recgraph.pipeline import Pipeline
from recgraph.pipeline.history import HISTORY_DIR, HISTORY_FILE, History
from tests.retrieval.test_saved_history import model_to_format_1

WALKS = {
    "who_to_follow": {
        "retrievers": [{"name": "ppr", "min_score": 0.0}, {"name": "salsa"}],
        "fallback": ["popular"],
    },
    "feed": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
}


@pytest.fixture(scope="module")
def walks():
    social = generate_social(n_accounts=300, n_items=10, seed=4)
    return Pipeline(WALKS).fit(follows=social.follows_graph())


@pytest.fixture(params=["trained", "walks"])
def saved(request, tmp_path) -> tuple[Pipeline, Path]:
    """Each trained pipeline (the default one, and one of walks only), saved in ``tmp_path/p``."""
    pipeline = request.getfixturevalue(request.param)
    pipeline.save(tmp_path / "p")
    return pipeline, tmp_path / "p"


def answers(pipeline: Pipeline, users) -> list:
    out = []
    for user in users:
        out.append(pipeline.suggest_accounts(user, 8))
        if "feed" in pipeline.questions:
            out.append(pipeline.feed(user, 8))
    return out


def some_users(pipeline: Pipeline) -> list[str]:
    ids = pipeline.questions["who_to_follow"].users.ids
    return [str(ids[i]) for i in (0, 1, 5, 17, len(ids) // 2, len(ids) - 1)] + ["nobody"]


def to_previous_format(folder) -> None:
    """Rewrite a saved pipeline as the previous code saved it (format 2): the history in
    ``history.npz`` and each retriever's seen and liked matrices and ids in ``state.npz``."""
    manifest = json.loads((folder / "pipeline.json").read_text())
    manifest["format_version"] = 2
    for question, entry in manifest["questions"].items():
        path = folder / question
        history = History.load(path, mmap=False)
        arrays = {
            "users": history.users.to_array(),
            "graph_kind": np.asarray(history.graph_kind),
            "seen.indptr": history.seen.indptr,
            "seen.indices": history.seen.indices,
            "liked.indptr": history.liked.indptr,
            "liked.indices": history.liked.indices,
            "liked.data": history.liked.data.astype(np.int64),
            "liked.kind": history.liked_kind,
            "liked.value": history.liked_value,
            "liked.value_kind": history.liked_value_kind,
            "counts": history.counts,
        }
        if not history.one_sided:
            arrays["items"] = history.items.to_array()
        if history.own is not None:
            arrays["own.indptr"], arrays["own.indices"] = history.own.indptr, history.own.indices
        if history.item_created_at is not None:
            arrays["item_created_at"] = history.item_created_at
        save_arrays(path / HISTORY_FILE, arrays)
        shutil.rmtree(path / HISTORY_DIR)
        for key in entry["retrievers"]:
            model_to_format_1(path / key)
    (folder / "pipeline.json").write_text(json.dumps(manifest))


def test_a_saved_pipeline_answers_exactly_as_before_and_maps_its_history(saved, tmp_path) -> None:
    pipeline, folder = saved
    loaded = Pipeline.load(folder)
    users = some_users(pipeline)
    assert answers(loaded, users) == answers(pipeline, users)
    for name, question in loaded.questions.items():
        history = question.history
        assert not history.seen.indices.flags.writeable  # a map of the file, not a copy
        assert not history.seen.data.flags.writeable
        files = history.seen_files(folder / name)
        for key, model in question.models.items():
            # one seen matrix and one id map per question: the files are hard links of the
            # history's, and loading hands the history's objects to the retrievers
            assert all(
                same_file(a, b)
                for a, b in zip(files, binary_csr_files(folder / name / key, "seen"), strict=True)
            )
            assert model.seen_matrix() is history.seen, key
            assert model.users is history.users and model.items is history.items
    # saving the loaded pipeline again writes the same answers (the maps are read, never written)
    loaded.save(tmp_path / "again")
    assert answers(Pipeline.load(tmp_path / "again"), users) == answers(pipeline, users)


def test_a_pipeline_saved_in_the_previous_format_still_loads_and_answers_the_same(saved) -> None:
    pipeline, folder = saved
    to_previous_format(folder)
    assert not list(folder.rglob("seen.*.npy"))
    loaded = Pipeline.load(folder)
    users = some_users(pipeline)
    assert answers(loaded, users) == answers(pipeline, users)


def test_the_follow_history_shares_the_seen_matrix_and_the_feed_keeps_its_likes(
    trained, tmp_path
) -> None:
    trained.save(tmp_path / "p")
    follows = json.loads((tmp_path / "p/who_to_follow/history/history.json").read_text())
    assert follows["liked_is_seen"] is True
    assert not (tmp_path / "p/who_to_follow/history/liked.indices.npy").exists()
    # the feed has dislikes: what users liked is not all they saw, and is saved apart
    feed = Pipeline.load(tmp_path / "p").questions["feed"].history
    assert (
        json.loads((tmp_path / "p/feed/history/history.json").read_text())["liked_is_seen"] is False
    )
    assert feed.liked.nnz < feed.seen.nnz
    original = trained.questions["feed"].history
    for user in range(0, original.n_users, 7):
        for a, b in zip(feed.liked_entries(user), original.liked_entries(user), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_walk_model_trains_on_the_graphs_own_matrix(walks) -> None:
    question = walks.questions["who_to_follow"]
    ppr = question.models["ppr"]
    # no copies in training: the history, the fallback and the walk model hold one seen
    # matrix, and the walk graph's out side is that matrix's index array
    assert ppr.seen_matrix() is question.history.seen is question.models["popular"].seen_matrix()
    assert np.shares_memory(ppr.graph_.out_indices, question.history.seen.indices)
    assert np.shares_memory(question.history.liked.indices, question.history.seen.indices)


def test_a_history_whose_seen_matrix_repeats_an_entry_saves_and_loads(tmp_path):
    import scipy.sparse as sp

    from recgraph.data.interactions import IdMap

    # (0, 1) twice: not canonical; every entry is liked, so liked is written as "seen"
    seen = sp.csr_matrix(
        (np.ones(3, np.float32), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 2)
    )
    assert not seen.has_canonical_format
    ids = IdMap.from_array(np.array(["a", "b"]))
    history = History.from_seen(seen, ids, ids, "follows")
    history.save(tmp_path)
    loaded = History.load(tmp_path)
    assert loaded.seen.toarray().astype(bool).tolist() == [[False, True], [True, False]]
    assert loaded.liked.toarray().astype(bool).tolist() == [[False, True], [True, False]]
