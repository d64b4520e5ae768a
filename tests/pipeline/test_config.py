import pytest

from recgraph.errors import ConfigError
from recgraph.pipeline import Pipeline, PipelineConfig, default_pipeline_path, load_pipeline_config
from recgraph.pipeline.config import QuestionConfig, parse_pipeline


def test_the_shipped_file_is_valid_and_equals_the_code_defaults():
    shipped = load_pipeline_config(default_pipeline_path())
    assert shipped.who_to_follow.fallback == ["popular"]
    assert shipped.who_to_follow.fallback == PipelineConfig().who_to_follow.fallback
    # what tuning chose on the shared datasets' validation splits (see the file's comments)
    assert [s.name for s in shipped.feed.retrievers] == ["ease", "item_knn", "popular"]
    assert shipped.feed.ranker is not None and shipped.feed.ranker.name == "gbdt_ranker"
    assert [s.name for s in shipped.who_to_follow.retrievers] == [
        "adamic_adar",
        "resource_allocation",
        "ppr",
    ]
    assert shipped.who_to_follow.ranker is not None
    # the shipped PPR is the code's default PPR: what a user gets either way
    from recgraph.retrieval import create_retriever

    ppr = next(s for s in shipped.who_to_follow.retrievers if s.name == "ppr")
    default_ppr = create_retriever("ppr").config
    assert (ppr.params["walk"], ppr.params["restart"]) == (default_ppr.walk, default_ppr.restart)
    assert shipped.similar.retriever == "item_knn"
    code = PipelineConfig()
    assert shipped.who_to_follow.merge == code.who_to_follow.merge
    assert shipped.feed.cold_start_min_interactions == code.feed.cold_start_min_interactions


def test_fallback_only_retrievers_are_trained_too():
    cfg = QuestionConfig(retrievers=[{"name": "adamic_adar"}], fallback=["ppr", "popular"])
    assert [s.key for s in cfg.all_specs()] == ["adamic_adar", "ppr", "popular"]
    assert [s.key for s in cfg.chain()] == ["ppr", "popular"]


def test_a_retriever_is_not_its_own_fallback():
    with pytest.raises(ValueError, match="adamic_adar, already a retriever of this question"):
        QuestionConfig(retrievers=[{"name": "adamic_adar"}], fallback=["adamic_adar", "popular"])


def test_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[feed]\nmerge = "average"\n[[feed.retrievers]]\nname = "item_knn"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: feed\.merge"):
        load_pipeline_config(path)
    path.write_text("[feed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_pipeline_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_pipeline_config(tmp_path / "missing.toml")


def test_duplicate_ids_and_k_above_max_k_are_refused():
    with pytest.raises(ConfigError, match="appear twice"):
        parse_pipeline({"feed": {"retrievers": [{"name": "popular"}, {"name": "popular"}]}})
    with pytest.raises(ConfigError, match="above max_k"):
        parse_pipeline({"feed": {"retrievers": [{"name": "popular"}], "k": 50, "max_k": 10}})
    with pytest.raises(ConfigError, match="similar.retriever"):
        parse_pipeline({"similar": {"retriever": "ease"}})


def test_unknown_models_and_bad_params_fail_when_the_pipeline_is_made():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        Pipeline({"feed": {"retrievers": [{"name": "nope"}]}})
    with pytest.raises(ConfigError, match=r"feed\.retrievers\[item_knn\].*neighbours"):
        Pipeline({"feed": {"retrievers": [{"name": "item_knn", "params": {"neighbours": 0}}]}})
