"""Answers run on the app's own threads, not on the thread pool FastAPI shares."""

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from recgraph.errors import ConfigError
from recgraph.serving.app import ANSWER_THREADS, answer_threads, create_app
from recgraph.serving.guards import ON_THE_LOOP
from recgraph.settings import Settings


def test_answers_run_on_the_apps_answer_threads_until_it_stops(served, monkeypatch):
    settings, _ = served
    settings = settings.model_copy(update={"answer_threads": ANSWER_THREADS})
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


def test_answer_threads_0_answers_on_the_event_loop_with_the_same_bytes(served, monkeypatch):
    settings, _ = served
    # a service max_k above the question's: a k between them passes the schema and is
    # refused inside the endpoint, where the two apps differ
    settings = settings.model_copy(update={"max_k": 10_000})
    pooled = create_app(settings)
    on_loop = create_app(settings.model_copy(update={"answer_threads": 0}))
    threads = []
    with TestClient(pooled) as client, TestClient(on_loop) as loop_client:
        assert on_loop.state.answer_executor is ON_THE_LOOP
        pipeline = on_loop.state.loader.current.pipeline
        feed = pipeline.feed

        def recording(*args, **kwargs):
            try:
                asyncio.get_running_loop()  # set in the thread that runs the loop only
                threads.append(threading.current_thread())
            except RuntimeError:
                threads.append(None)
            return feed(*args, **kwargs)

        monkeypatch.setattr(pipeline, "feed", recording)
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        for path in (f"/v1/users/{user}/feed?k=3", "/v1/users/nobody-at-all/feed"):
            expected, answered = client.get(path), loop_client.get(path)
            assert answered.status_code == expected.status_code == 200
            assert answered.content == expected.content
        # a k past the question's max_k: the endpoint's own 422, the same bytes either way
        too_many = pipeline.questions["feed"].config.max_k + 1
        assert too_many <= 10_000
        expected = client.get(f"/v1/users/{user}/feed?k={too_many}")
        answered = loop_client.get(f"/v1/users/{user}/feed?k={too_many}")
        assert answered.status_code == expected.status_code == 422
        assert answered.content == expected.content
        assert f"at most {too_many - 1}".encode() in answered.content
    # the thread that runs the app's event loop (TestClient's portal), not an answer thread
    assert len(threads) == 2 and None not in threads
    assert not any(t.name.startswith("recgraph-answer") for t in threads)
    assert on_loop.state.answer_executor is None


def test_answer_threads_0_is_refused_on_a_store_across_the_network():
    settings = Settings(
        database_url="postgresql+psycopg://app:hunter2@db.example/recgraph",
        answer_threads=0,
        poll_seconds=0,
    )
    with pytest.raises(ConfigError, match="RECGRAPH_ANSWER_THREADS=0") as raised:
        create_app(settings)
    assert "postgresql" in str(raised.value) and "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "given", "expected"),
    [
        ("sqlite:///store.db", None, ANSWER_THREADS),
        ("sqlite://", None, ANSWER_THREADS),
        ("postgresql+psycopg://app@db.example/recgraph", None, ANSWER_THREADS),
        ("mysql+pymysql://app@db.example/recgraph", None, ANSWER_THREADS),
        ("sqlite:///store.db", 0, 0),
        ("sqlite:///store.db", 3, 3),
        ("postgresql+psycopg://app@db.example/recgraph", 8, 8),
    ],
)
def test_answer_threads_default_and_explicit_values(url, given, expected):
    given = {} if given is None else {"answer_threads": given}
    settings = Settings(database_url=url, poll_seconds=0, **given)
    assert ANSWER_THREADS == 40
    assert answer_threads(settings) == expected


def test_answer_threads_from_the_environment(monkeypatch):
    for value, expected in (("0", 0), ("40", 40), ("7", 7)):
        monkeypatch.setenv("RECGRAPH_ANSWER_THREADS", value)
        assert Settings().answer_threads == expected
    monkeypatch.setenv("RECGRAPH_ANSWER_THREADS", "0")
    monkeypatch.setenv("RECGRAPH_DATABASE_URL", "postgresql+psycopg://app@db.example/recgraph")
    with pytest.raises(ConfigError, match="RECGRAPH_ANSWER_THREADS=0"):
        answer_threads(Settings())


def test_answers_on_the_loop_read_a_read_only_store_of_their_own(served):
    settings, _ = served
    threaded = create_app(settings)
    assert threaded.state.answer_reads is threaded.state.feedback  # threads: one store
    app = create_app(settings.model_copy(update={"answer_threads": 0}))
    with TestClient(app):
        assert app.state.answer_executor is ON_THE_LOOP
        reads = app.state.answer_reads
        assert reads is not app.state.feedback  # a store of its own for the loop's reads
        assert reads.store.engine is not app.state.feedback.store.engine
        with reads.store.engine.connect() as conn:  # read-only: a write is refused
            assert conn.exec_driver_sql("SELECT count(*) FROM meta").scalar() >= 1
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                conn.exec_driver_sql("DELETE FROM meta")


def test_an_answer_on_the_loop_never_waits_for_the_writers_pool(served):
    """Every pooled connection of the store feedback writes to is held, one of them in a write
    transaction: an answer on the event loop still comes at once, and it leaves out what a
    committed write just said the user took."""
    settings, _ = served
    settings = settings.model_copy(update={"answer_threads": 0})
    app = create_app(settings)
    with TestClient(app) as client:
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        first = client.get(f"/v1/users/{user}/feed?k=5").json()["results"][0]["id"]
        engine = app.state.feedback.store.engine
        # a like written and committed through the writers' own store
        client.post(
            "/v1/feedback",
            json={"user": user, "item": first, "kind": "like"},
            headers={"Authorization": f"Bearer {settings.token()}"},
        ).raise_for_status()
        held = [
            engine.raw_connection() for _ in range(engine.pool.size() + engine.pool._max_overflow)
        ]
        writer = held[0]
        writer.cursor().execute("BEGIN IMMEDIATE")
        writer.cursor().execute("INSERT INTO meta (key, value) VALUES ('held', 'by a writer')")
        answered: list = []
        asking = threading.Thread(
            target=lambda: answered.append(client.get(f"/v1/users/{user}/feed?k=5"))
        )
        try:
            started = time.perf_counter()
            asking.start()
            asking.join(timeout=10)  # the writers' pool would make it wait 30 s
            waited = time.perf_counter() - started
        finally:
            writer.cursor().execute("ROLLBACK")
            for connection in held:
                connection.close()
            asking.join()
        assert waited < 10 and answered and answered[0].status_code == 200
        shown = [r["id"] for r in answered[0].json()["results"]]
        assert first not in shown and len(shown) == 5


def _unchecked(app, question: str, reason: str) -> float:
    value = app.state.metrics.registry.get_sample_value(
        "recgraph_recent_feedback_unchecked_total", {"question": question, "reason": reason}
    )
    return value or 0.0


def test_a_locked_store_is_given_up_on_the_loop_and_the_answer_counted_unchecked(served):
    """A connection holds the store's lock (WAL, ``locking_mode=EXCLUSIVE``, taken while no
    other connection is open: then even readers wait): an answer on the loop gives its read
    up after 0.25 s, not the writers' 15 s busy timeout, goes out anyway, and is counted as
    sent without the check."""
    import sqlite3

    settings, _ = served
    settings = settings.model_copy(update={"answer_threads": 0, "busy_timeout": 15})
    app = create_app(settings)
    path = sa.make_url(settings.database_url).database
    with TestClient(app) as client:
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        assert client.get(f"/v1/users/{user}/feed?k=5").status_code == 200
        assert _unchecked(app, "feed", "busy") == 0
        app.state.feedback.store.engine.dispose()  # no connection open but the holder's
        app.state.answer_reads.store.engine.dispose()
        holder = sqlite3.connect(path, isolation_level=None, timeout=10)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            holder.execute("BEGIN EXCLUSIVE")
            started = time.perf_counter()
            answer = client.get(f"/v1/users/{user}/feed?k=5")
            waited = time.perf_counter() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()  # an exclusive-mode connection keeps its lock until it closes
        assert answer.status_code == 200 and len(answer.json()["results"]) == 5
        assert 0.2 < waited < 5, waited
        assert _unchecked(app, "feed", "busy") == 1
        assert client.get(f"/v1/users/{user}/feed?k=5").status_code == 200  # lock gone
        assert _unchecked(app, "feed", "busy") == 1
        assert "recgraph_recent_feedback_unchecked_total" in client.get("/metrics").text


def test_the_unchecked_warning_is_logged_once_a_minute_with_the_count(monkeypatch, caplog):
    from recgraph.serving import handlers

    now = [1000.0]
    monkeypatch.setattr(handlers.time, "monotonic", lambda: now[0])
    warn = handlers.ThrottledWarning(60)
    with caplog.at_level("WARNING", logger="recgraph.serving"):
        warn("sent unchecked: %s", "a")
        warn("sent unchecked: %s", "b")
        now[0] += 59
        warn("sent unchecked: %s", "c")
        assert [r.getMessage() for r in caplog.records] == [
            "sent unchecked: a (1 time(s) since the last warning)"
        ]
        now[0] += 2
        warn("sent unchecked: %s", "d")
    assert caplog.records[-1].getMessage() == "sent unchecked: d (3 time(s) since the last warning)"
    assert len(caplog.records) == 2


def test_answer_threads_0_refuses_a_private_in_memory_store(served):
    settings, _ = served
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="RECGRAPH_ANSWER_THREADS=0.*in-memory"):
            create_app(settings.model_copy(update={"answer_threads": 0, "database_url": url}))


def test_answer_threads_0_reads_a_shared_cache_in_memory_store_through_one_store(served):
    """A shared-cache in-memory store is one database for every connection of the process:
    answers on the loop read it through the writers' store (no file for a second engine), and
    their reads find its tables (a database of the loop's thread alone would have none)."""
    settings, _ = served
    url = "sqlite:///file:servemend2_shared?mode=memory&cache=shared&uri=true"
    app = create_app(settings.model_copy(update={"answer_threads": 0, "database_url": url}))
    assert app.state.answer_reads is app.state.feedback
    with TestClient(app) as client:
        assert app.state.answer_executor is ON_THE_LOOP
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        assert client.get(f"/v1/users/{user}/feed?k=5").status_code == 200
        assert client.get(f"/v1/accounts/{user}/suggestions?k=5").status_code in (200, 404)
        for question in ("feed", "who_to_follow"):
            for reason in ("busy", "error"):
                assert _unchecked(app, question, reason) == 0, (question, reason)


def test_the_answers_reader_is_closed_at_shutdown(served):
    settings, _ = served
    app = create_app(settings.model_copy(update={"answer_threads": 0}))
    with TestClient(app) as client:
        reads = app.state.answer_reads
        user = client.get("/v1/model").json()["examples"]["feed"][0]["id"]
        assert client.get(f"/v1/users/{user}/feed?k=5").status_code == 200
        assert reads.store.engine.pool.checkedin() >= 1  # a connection pooled
    assert reads.store.engine.pool.checkedin() == 0  # disposed with the app


def _closes(store, closed: list, name: str) -> None:
    original = store.close
    store.close = lambda: closed.append(name) or original()


def test_the_stores_are_closed_when_the_startup_fails(served, monkeypatch):
    from recgraph.serving.loader import ModelLoader

    settings, _ = served
    app = create_app(settings.model_copy(update={"answer_threads": 0}))
    closed: list[str] = []
    _closes(app.state.answer_reads, closed, "reads")
    _closes(app.state.feedback, closed, "feedback")

    def fail(self):
        raise RuntimeError("the registry is gone")

    monkeypatch.setattr(ModelLoader, "start", fail)
    with pytest.raises(RuntimeError, match="the registry is gone"), TestClient(app):
        pass
    assert sorted(closed) == ["feedback", "reads"]


def test_the_stores_are_closed_when_create_app_fails_after_opening_them(served, monkeypatch):
    from recgraph.serving import app as app_module

    settings, _ = served
    closed: list[str] = []
    opened = app_module.answer_reads

    def reads_spied(feedback, threads):
        reads = opened(feedback, threads)
        _closes(reads, closed, "reads")
        _closes(feedback, closed, "feedback")
        return reads

    def fail(*args, **kwargs):
        raise ValueError("a route table that does not build")

    monkeypatch.setattr(app_module, "answer_reads", reads_spied)
    monkeypatch.setattr(app_module, "_build_app", fail)
    with pytest.raises(ValueError, match="does not build"):
        create_app(settings.model_copy(update={"answer_threads": 0}))
    assert sorted(closed) == ["feedback", "reads"]
