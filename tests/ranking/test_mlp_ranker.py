from tests.ranking.conformance import RankerConformance


class TestMLPRanker(RankerConformance):
    ranker_name = "mlp_ranker"
    params = {"epochs": 8, "hidden": [32, 8], "embedding_dim": 4, "batch_size": 256}
