"""A saved question's id maps: one pair of files (ids and their permutation), memory-mapped."""

from __future__ import annotations

import numpy as np

from recgraph.data import IdMap
from recgraph.data.graph_csr import same_file
from recgraph.data.synthetic import generate_social
from recgraph.pipeline import Pipeline
from recgraph.pipeline.history import HISTORY_DIR

CONFIG = {
    "who_to_follow": {"retrievers": [{"name": "adamic_adar"}], "fallback": ["popular"]},
    "feed": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
}


def test_saved_id_maps_are_mapped_and_shared_with_the_retrievers(tmp_path):
    social = generate_social(n_accounts=120, n_items=5, seed=2)
    pipeline = Pipeline(CONFIG).fit(follows=social.follows_graph())
    pipeline.save(tmp_path / "p")
    question_dir = next((tmp_path / "p").rglob(HISTORY_DIR)).parent
    users_file = question_dir / HISTORY_DIR / "users.npy"
    model_file = question_dir / "adamic_adar" / "ids.users.npy"
    assert same_file(users_file, model_file)
    assert same_file(IdMap.order_file(users_file), IdMap.order_file(model_file))
    loaded = Pipeline.load(tmp_path / "p")
    question = loaded.questions["who_to_follow"]
    assert isinstance(question.history.users.ids, np.memmap)
    assert question.models["adamic_adar"].users is question.history.users  # one map
    user = str(question.users.ids[7])
    assert loaded.suggest_accounts(user, 5) == pipeline.suggest_accounts(user, 5)
