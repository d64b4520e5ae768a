"""Follows and likes written while serving reach the walk models at once (their overlay)."""

import time

import numpy as np
import pandas as pd
import pytest

from recgraph.data.store import Store
from recgraph.jobs.quickstart import load_synthetic
from recgraph.pipeline import Pipeline
from recgraph.serving.feedback import catch_up_overlay
from recgraph.serving.registry import ModelRegistry
from recgraph.settings import Settings
from tests.serving.app_fixtures import AUTH, SMALL, TOKEN

WALKS = {
    "who_to_follow": {
        "retrievers": [{"name": "ppr", "min_score": 0.0}, {"name": "salsa", "min_score": 0.0}],
        "fallback": ["popular"],
    },
    "feed": {"retrievers": [{"name": "pixie", "min_score": 0.0}], "fallback": ["popular"]},
}


@pytest.fixture
def walk_served(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    load_synthetic(store, SMALL)
    pipeline = Pipeline(WALKS).fit_store(store)
    store.close()
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(pipeline, data=pipeline.snapshots)
    return Settings(
        registry=str(tmp_path / "models"),
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        api_token=TOKEN,
        poll_seconds=0,
    )


def models_of(app, question: str):
    return app.state.loader.loaded.pipeline.questions[question].models


def test_a_posted_follow_and_like_are_walked_at_once(walk_served) -> None:
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app

    app = create_app(walk_served)
    with TestClient(app) as client:
        ppr = models_of(app, "who_to_follow")["ppr"]
        users = ppr.users
        follows = ppr.seen_matrix()
        user = int(np.argmax(np.diff(follows.indptr)))
        # an account the user does not follow whose own follows lead elsewhere
        target = next(
            v for v in np.argsort(-np.diff(follows.indptr)) if v != user and not follows[user, v]
        )
        reached = follows[target].indices
        before = ppr.score_pairs(np.full(len(reached), user), reached).sum()
        event = {"user": str(users.ids[user]), "kind": "follow", "account": str(users.ids[target])}
        assert client.post("/v1/feedback", json=event, headers=AUTH).status_code == 200
        for name in ("ppr", "salsa"):
            overlay = models_of(app, "who_to_follow")[name].overlay
            assert len(overlay) == 1, f"{name} got the follow"
        # the walk now reaches the new account's follows through it
        after = ppr.score_pairs(np.full(len(reached), user), reached).sum()
        assert after > before
        answer = client.get(f"/v1/accounts/{users.ids[user]}/suggestions", params={"k": 10})
        assert str(users.ids[target]) not in {r["id"] for r in answer.json()["results"]}

        pixie = models_of(app, "feed")["pixie"]
        liked = pixie.seen_matrix()
        reader = int(np.argmax(np.diff(liked.indptr)))
        item = next(i for i in range(pixie.n_items) if not liked[reader, i])
        event = {
            "user": str(pixie.users.ids[reader]),
            "kind": "like",
            "item": str(pixie.items.ids[item]),
        }
        assert client.post("/v1/feedback", json=event, headers=AUTH).status_code == 200
        assert pixie.query(reader)[0][0] == item, "the like is the newest query item"
        dislike = {
            **event,
            "kind": "dislike",
            "item": str(pixie.items.ids[(item + 1) % pixie.n_items]),
        }
        assert client.post("/v1/feedback", json=dislike, headers=AUTH).status_code == 200
        assert len(pixie.overlay) == 1, "a dislike is no edge to walk"


def test_follows_the_crawler_stored_since_training_are_caught_up(walk_served) -> None:
    pipeline = Pipeline.load(ModelRegistry(walk_served.registry).local_copy("v1") / "model")
    ppr = pipeline.questions["who_to_follow"].models["ppr"]
    ids = ppr.users.ids
    follows = ppr.seen_matrix()
    src = next(u for u in range(ppr.n_users) if follows[u].nnz < ppr.n_users - 1)
    dst = next(v for v in range(ppr.n_users) if v != src and not follows[src, v])
    store = Store(walk_served.database_url)
    with store.writer() as writer:
        writer.follows(
            pd.DataFrame(
                {
                    "src": [str(ids[src])],
                    "dst": [str(ids[dst])],
                    "created_at": [int(time.time()) + 5],
                }
            ),
            directed=True,
        )
    assert catch_up_overlay(pipeline, store) >= 1
    store.close()
    assert ppr.overlay.degrees(np.array([src]), "out")[0] == 1


def test_each_server_process_reads_the_follows_stored_since_its_last_look(walk_served) -> None:
    """Another worker's POST (or the crawler) writes the store: the refresher puts it in this
    process's overlay, once, and a follow older than the last look is not read again."""
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app

    app = create_app(walk_served.model_copy(update={"overlay_refresh_seconds": 0}))
    with TestClient(app):
        refresher = app.state.overlay_refresher
        ppr = models_of(app, "who_to_follow")["ppr"]
        follows = ppr.seen_matrix()
        src = next(u for u in range(ppr.n_users) if follows[u].nnz < ppr.n_users - 2)
        dst = [v for v in range(ppr.n_users) if v != src and not follows[src, v]][:2]
        assert refresher.tick() == 0, "nothing stored since training"
        store = Store(walk_served.database_url)
        with store.writer() as writer:  # what another worker's POST /v1/feedback writes
            writer.follows(
                pd.DataFrame(
                    {
                        "src": [str(ppr.users.ids[src])],
                        "dst": [str(ppr.users.ids[dst[0]])],
                        "created_at": [int(time.time())],
                    }
                ),
                directed=True,
            )
        store.close()
        assert refresher.tick() == 2, "ppr and salsa each take the follow"
        assert ppr.overlay.degrees(np.array([src]), "out")[0] == 1
        assert refresher.tick() == 0, "the overlay does not take it twice"
        assert refresher._since is not None and refresher._since <= int(time.time())


def test_a_like_stored_by_another_process_reaches_pixie_and_a_dislike_does_not(walk_served):
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app

    app = create_app(walk_served.model_copy(update={"overlay_refresh_seconds": 0}))
    with TestClient(app):
        refresher = app.state.overlay_refresher
        pixie = models_of(app, "feed")["pixie"]
        liked = pixie.seen_matrix()
        reader = int(np.argmax(np.diff(liked.indptr)))
        fresh = [i for i in range(pixie.n_items) if not liked[reader, i]][:2]
        refresher.tick()
        store = Store(walk_served.database_url)
        now = int(time.time())
        with store.writer() as writer:
            writer.interactions(
                pd.DataFrame(
                    {
                        "user": [str(pixie.users.ids[reader])] * 2,
                        "item": [str(pixie.items.ids[i]) for i in fresh],
                        "kind": ["like", "dislike"],
                        "timestamp": [now, now],
                    }
                )
            )
        store.close()
        assert refresher.tick() == 1, "the like, not the dislike"
        assert pixie.query(reader)[0][0] == fresh[0]
