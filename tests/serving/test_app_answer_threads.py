"""Answers run on the app's own threads, not on the thread pool FastAPI shares."""

import threading

from fastapi.testclient import TestClient

from recgraph.serving.app import ANSWER_THREADS, create_app


def test_answers_run_on_the_apps_answer_threads_until_it_stops(served, monkeypatch):
    settings, _ = served
    app = create_app(settings)
    threads = []
    with TestClient(app) as client:
        pipeline = app.state.loader.current.pipeline
        feed = pipeline.feed

        def recording(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return feed(*args, **kwargs)

        monkeypatch.setattr(pipeline, "feed", recording)
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        for _ in range(3):
            assert client.get(f"/v1/users/{user}/feed?k=3").status_code == 200
    assert len(threads) == 3
    assert all(name.startswith("recgraph-answer") for name in threads)
    assert len(set(threads)) <= ANSWER_THREADS
    assert app.state.answer_executor is None  # the lifespan ended: its pool is stopped and gone
    threads.clear()
    with TestClient(app) as client:  # started again: a fresh pool answers
        assert client.get(f"/v1/users/{user}/feed?k=3").status_code == 200
    assert len(threads) == 1 and threads[0].startswith("recgraph-answer")
