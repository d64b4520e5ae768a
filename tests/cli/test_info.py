"""``recgraph models``: every item model says what its defaults were chosen on."""

from recgraph.cli.main import main
from recgraph.retrieval.registry import get_retriever_class

TUNED_MODELS = ("ease", "item_knn", "als", "bpr", "biased_mf")


def test_models_lists_where_each_default_comes_from(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "defaults chosen on" in " ".join(out.split())
    words = set(out.replace("│", " ").split())
    for name in (*TUNED_MODELS, "popular"):
        chosen_on = get_retriever_class(name).config_class.defaults_chosen_on
        assert chosen_on, name
        assert set(chosen_on.split()[:3]) <= words, (name, chosen_on)
    for name in TUNED_MODELS:
        assert "validation" in get_retriever_class(name).config_class.defaults_chosen_on
