"""What a retriever had (seen, liked, ids): ``.npy`` files mapped on load; format 1 still loads."""

import json

import numpy as np
import pytest

from recgraph.data.graph_csr import binary_csr_files, load_binary_csr
from recgraph.data.interactions import Interactions, Kind
from recgraph.errors import InputError
from recgraph.files import load_arrays, save_arrays
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.registry import create_retriever


def model_to_format_1(folder) -> None:
    """Rewrite a saved retriever as format 1 wrote it: seen, liked and ids inside ``state.npz``."""
    manifest = json.loads((folder / "model.json").read_text())
    manifest["format_version"] = 1
    shape = (manifest["n_users"], manifest["n_items"])
    state = load_arrays(folder / "state.npz")
    for name in ("seen", "liked"):
        files = binary_csr_files(folder, name)
        if files[0].exists():
            matrix = load_binary_csr(folder, name, shape, mmap=False)
            state[f"{name}.indptr"], state[f"{name}.indices"] = matrix.indptr, matrix.indices
            for file in files:
                file.unlink()
    for name in ("users", "items"):
        file = folder / f"ids.{name}.npy"
        if file.exists():
            state[f"ids.{name}"] = np.load(file)
            file.unlink()
    save_arrays(folder / "state.npz", state)
    (folder / "model.json").write_text(json.dumps(manifest))


def likes_and_dislikes() -> Interactions:
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 40, 400), rng.integers(0, 30, 400)
    kind = np.where(rng.random(400) < 0.2, Kind.DISLIKE, Kind.LIKE).astype(np.int8)
    return Interactions.from_indices(src, dst, n_users=40, n_items=30, kind=kind).dedupe()


@pytest.mark.parametrize("name", ["popular", "item_knn", "ppr"])
def test_a_saved_model_maps_what_it_had_and_loads_from_format_1(name, tmp_path) -> None:
    if name == "ppr":
        rng = np.random.default_rng(1)
        src, dst = rng.integers(0, 50, 500), rng.integers(0, 50, 500)
        keep = src != dst
        data = Interactions.from_indices(src[keep], dst[keep], n_users=50, one_sided=True)
        data = data.dedupe()
    else:
        data = likes_and_dislikes()
    model = create_retriever(name).fit(data)
    users = np.arange(data.n_users)
    expected = model.recommend(users, k=5)
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    assert not loaded.seen_matrix().indices.flags.writeable  # mapped, not read
    assert (loaded.seen_matrix() != model.seen_matrix()).nnz == 0
    for user in (0, 3, 17):
        np.testing.assert_array_equal(loaded.liked_items(user), model.liked_items(user))
    for got, want in zip(loaded.recommend(users, k=5), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    model_to_format_1(tmp_path / "m")
    old = Retriever.load(tmp_path / "m")
    assert old.seen_matrix().indices.flags.writeable  # format 1: read into memory
    for got, want in zip(old.recommend(users, k=5), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_liked_is_kept_apart_only_where_it_differs_from_seen() -> None:
    follows = Interactions.from_indices([0, 1, 2], [1, 2, 0], n_users=3, one_sided=True)
    model = create_retriever("popular").fit(follows)
    assert model._liked is None  # every row a like: "as seen", no second matrix
    assert model.liked_items(0).tolist() == [1]
    mixed = create_retriever("popular").fit(likes_and_dislikes())
    assert mixed._liked is not None and mixed._liked.nnz < mixed.seen_matrix().nnz


def test_new_dislikes_after_an_all_liked_history_are_seen_but_not_liked() -> None:
    first = Interactions.from_indices([0, 1], [0, 1], n_users=2, n_items=3)
    model = create_retriever("popular").fit(first)
    assert model._liked is None
    new = Interactions.from_indices(
        [0, 1], [2, 2], n_users=2, n_items=3, kind=np.array([Kind.DISLIKE, Kind.LIKE], np.int8)
    )
    model._extend_history(new)
    assert model.seen_items(0).tolist() == [0, 2]
    assert model.liked_items(0).tolist() == [0]  # the dislike is not something liked
    assert model.liked_items(1).tolist() == [1, 2]


def test_a_folder_with_a_seen_matrix_of_another_shape_is_a_clear_error(tmp_path) -> None:
    data = likes_and_dislikes()
    create_retriever("popular").fit(data).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m/model.json").read_text())
    manifest["n_users"] += 1
    (tmp_path / "m/model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="seen"):
        Retriever.load(tmp_path / "m")
