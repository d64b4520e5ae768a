"""The dashboard's JSON: store figures (cached) and evaluation curves from the manifest."""

import math

import pytest
from fastapi.testclient import TestClient

from recgraph.pipeline import Pipeline
from recgraph.serving.app import create_app
from recgraph.serving.stats import evaluation_curves
from tests.serving.app_fixtures import AUTH


def test_manifest_metrics_become_curves_per_question_and_retriever():
    curves, other = evaluation_curves(
        {
            "feed/ndcg@20": 0.2, "feed/ndcg@10": 0.1,
            "feed/ease/ndcg@10": 0.3, "feed/ease/recall@10": 0.4,
            "who_to_follow/adamic_adar/recall@50": 0.5,
            "ndcg@5": 0.05, "feed/coverage@10": float("nan"),
            "fit_seconds": 3.0, "feed/notes": "x",
        }
    )  # fmt: skip
    assert curves["feed"]["pipeline"]["ndcg"] == [[10, 0.1], [20, 0.2]]  # sorted by k
    assert curves["feed"]["ease"] == {"ndcg": [[10, 0.3]], "recall": [[10, 0.4]]}
    assert curves["who_to_follow"]["adamic_adar"]["recall"] == [[50, 0.5]]
    assert curves["all"]["pipeline"]["ndcg"] == [[5, 0.05]]
    assert other["fit_seconds"] == 3.0 and other["feed/notes"] == "x"
    assert math.isnan(other["feed/coverage@10"])  # not a point: kept aside, not drawn


def test_store_stats_are_counted_then_reused(served):
    settings, _ = served
    with TestClient(create_app(settings)) as c:
        first = c.get("/v1/stats/store").json()
        assert first["counts"]["accounts"] == 200 and first["counts"]["items"] == 300
        assert first["activity"]["interactions"]["points"]
        assert first["degrees"]["followers"]["bins"][0]["low"] == 1
        like = {"user": "did:synth:00001", "kind": "like", "item": "post:000299"}
        assert c.post("/v1/feedback", json=like, headers=AUTH).status_code == 200
        assert c.get("/v1/stats/store").json() == first  # within stats_cache_seconds
    fresh = settings.model_copy(update={"stats_cache_seconds": 0})
    with TestClient(create_app(fresh)) as c:
        again = c.get("/v1/stats/store").json()
        assert again["counts"]["interactions"] >= first["counts"]["interactions"]
        assert again["computed_at"] > first["computed_at"]


def test_evaluation_stats_come_from_the_served_versions_manifest(served):
    settings, registry = served
    with TestClient(create_app(settings)) as c:
        bare = c.get("/v1/stats/evaluation").json()
        assert bare["version"] == "v1" and bare["curves"] == {}
        assert bare["data"]["feed"]["rows"] > 0
        model = Pipeline.load(registry.local_copy("v1") / "model")
        registry.publish(
            model, data=model.snapshots, promote=True,
            metrics={"feed/ndcg@10": 0.1, "feed/popular/ndcg@10": 0.05},
        )  # fmt: skip
        assert c.post("/v1/admin/reload", headers=AUTH).json()["version"] == "v2"
        body = c.get("/v1/stats/evaluation").json()
        assert body["version"] == "v2"
        assert body["curves"]["feed"] == {
            "pipeline": {"ndcg": [[10, 0.1]]}, "popular": {"ndcg": [[10, 0.05]]},
        }  # fmt: skip


@pytest.mark.parametrize("path", ["/v1/stats/store", "/v1/stats/evaluation"])
def test_stats_are_in_the_openapi_document(served, path):
    settings, _ = served
    with TestClient(create_app(settings)) as c:
        assert path in c.get("/openapi.json").json()["paths"]
