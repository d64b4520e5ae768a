import json

import numpy as np
import pandas as pd
import pytest

from recgraph.data.interactions import IdMap
from recgraph.data.item_features import ItemFeatures, title_words
from recgraph.data.store import Store
from recgraph.errors import InputError


def test_file_and_store_give_the_same_features(tmp_path):
    path = tmp_path / "items.tsv"
    path.write_text(
        "item\ttitle\tgenres\tcreated_at\n"
        "m1\tToy Story (1995)\tAnimation|Comedy\t1000\n"
        "m2\tHeat\t\t\n"
    )
    from_file = ItemFeatures.read(path)
    frame = pd.DataFrame(
        {
            "external_id": ["m1", "m2"],
            "title": ["Toy Story (1995)", "Heat"],
            "author": [None, None],
            "created_at": [1000, None],
            # an item without features reads back as NaN from items_frame (a store
            # defect, reported), so this one has an empty object
            "features": [{"genres": ["Animation", "Comedy"]}, {}],
        }
    )
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        with store.writer() as writer:
            writer.items(frame)
        from_store = ItemFeatures.from_frame(store.items_frame())
    for got in (from_file, from_store):
        assert got.ids.tolist() == ["m1", "m2"]
        assert got.titles.tolist() == ["Toy Story (1995)", "Heat"]
        assert got.genres == (("Animation", "Comedy"), ())
        assert got.created_at[0] == 1000 and np.isnan(got.created_at[1])


def test_dates_parse_and_parquet_reads(tmp_path):
    path = tmp_path / "items.parquet"
    pd.DataFrame({"item": ["a"], "title": ["x"], "created_at": ["1970-01-02"]}).to_parquet(path)
    assert ItemFeatures.read(path).created_at.tolist() == [86400.0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("item,name\na,x\n", "title"),
        ("item,title,year\na,x,1\n", "year"),
        ("item,title\na,x\na,y\n", "twice"),
        ("item,title,created_at\na,x,soon\n", "soon"),
        ("item,title\n,x\n", "empty item"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, problem):
    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        ItemFeatures.read(path)


def test_aligned_genres_words_and_titles():
    features = ItemFeatures.from_records(
        ["b", "a"], ["The Red Apple", "red, red wine!"], [["Drama"], ["Comedy", "Drama"]]
    )
    aligned = features.aligned(IdMap(["a", "c", "b"]))
    assert aligned.titles.tolist() == ["red, red wine!", "", "The Red Apple"]
    assert aligned.genre_names() == ["Comedy", "Drama"]
    np.testing.assert_array_equal(aligned.genre_matrix().toarray(), [[1, 1], [0, 0], [0, 1]])
    assert title_words("Red, red WINE!") == ["red", "red", "wine"]
    vocabulary = aligned.word_vocabulary(2)
    assert vocabulary == ["red", "apple"]  # red in two titles; then alphabetical
    bags = aligned.title_matrix(vocabulary).toarray()
    np.testing.assert_allclose(bags, [[1, 0], [0, 0], [0.5, 0.5]])
    assert "3 items" in repr(aligned) and json.dumps(aligned.created_at.tolist())
