"""The item models ship the defaults that validation chose (benchmarks/defaults_study.py).

The study's choices are saved in ``benchmarks/results/defaults_study.json``;
a default changed in code without the study (or a study rerun without the
code) fails here, so ``recgraph models`` never names a study that did not
pick what the user gets.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest

from recgraph.retrieval.registry import get_retriever_class

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
STUDY = BENCHMARKS / "results" / "defaults_study.json"
ITEM_MODELS = ("ease", "item_knn", "als", "bpr", "biased_mf")


def _choices() -> dict:
    if not STUDY.exists():  # pragma: no cover - the file is in the repository
        pytest.skip(f"{STUDY} not found")
    return json.loads(STUDY.read_text())["choices"]


@pytest.mark.parametrize("name", ITEM_MODELS)
def test_defaults_are_the_study_choice(name: str) -> None:
    chosen = _choices()[name]["chosen"]
    config = get_retriever_class(name).config_class()
    for field, value in chosen.items():
        assert getattr(config, field) == value, (name, field)


@pytest.mark.parametrize("name", ITEM_MODELS)
def test_the_choice_was_made_on_validation_of_every_target_case(name: str) -> None:
    choice = _choices()[name]
    cases = set(choice["chosen_on_cases"])
    assert {"movielens-100k:random_per_user", "movielens-latest-small:random_per_user"} <= cases
    assert any(c.startswith("movielens-100k:temporal_global") for c in cases)
    # the play counts chose the whole point, or at least what counts weigh
    assert "listening-counts:random_per_user" in cases or choice["count_epsilon_on_count_case"]
    row = next(p for p in choice["points"] if p["params"] == _without_epsilon(choice, name))
    assert row["qualifies"]
    assert "validation" in get_retriever_class(name).config_class.defaults_chosen_on


def _without_epsilon(choice: dict, name: str) -> dict:
    """The chosen grid point as stage one scored it (``count_epsilon`` provisional)."""
    params = dict(choice["chosen"])
    if "count_epsilon" in params:
        params["count_epsilon"] = 1.0
    return params


def test_ease_ships_the_pooled_rules_first_pick() -> None:
    """EASE's choice pools this study with another saved study's nested carves: the file it
    names exists, and the pooled rule run again on the two saved JSONs picks what was saved
    (and what the code ships, by the test above)."""
    choice = _choices()["ease"]
    other = BENCHMARKS / "results" / choice["pooled_with"]
    assert other.exists(), other
    sys.path.insert(0, str(BENCHMARKS))
    try:
        rounds = importlib.import_module("defaults_rounds")
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert rounds.POOLED_STUDIES["ease"][0] == choice["pooled_with"]
    again = rounds.pooled_choice("ease", choice, json.loads(other.read_text()))
    assert again["pooled"] == choice["pooled"]
    picked = {k: v for k, v in again["chosen"].items() if k != "count_epsilon"}
    assert picked == {k: v for k, v in choice["chosen"].items() if k != "count_epsilon"}


def test_two_tower_ships_the_time_buckets_its_validation_study_chose() -> None:
    study = json.loads(STUDY.read_text())["two_tower"]
    chosen = [
        (json.loads(point), cells)
        for point, cells in study["scores"].items()
        if "(the new default)" in cells["label"]
    ]
    assert len(chosen) == 1
    params, cells = chosen[0]
    config = get_retriever_class("two_tower").config_class()
    for field, value in params.items():
        assert getattr(config, field) == value, field
    # scored on both validation cases, the temporal one at three cuts of train
    assert len(cells["movielens-100k:temporal_global@cuts"]["per_cut"]) == 3
    assert "ndcg@20" in cells["movielens-100k:random_per_user"]
    assert "validation" in get_retriever_class("two_tower").config_class.defaults_chosen_on
