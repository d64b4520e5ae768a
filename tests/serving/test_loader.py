import threading
import time

import httpx
import pytest

from recgraph.pipeline import Pipeline
from recgraph.serving.app import create_app
from recgraph.serving.loader import ModelLoader, NoModelError
from recgraph.serving.registry import ModelRegistry
from tests.serving.app_fixtures import LiveServer


def republish(registry, promote=True):
    model = Pipeline.load(registry.local_copy("v1") / "model")
    return registry.publish(model, data=model.snapshots, promote=promote)


def test_check_loads_the_current_version_and_swaps_when_it_moves(served):
    _, registry = served
    swaps = []
    loader = ModelLoader(
        registry, poll_seconds=0, on_swap=lambda old, new: swaps.append(new.version)
    )
    with pytest.raises(NoModelError):
        _ = loader.current
    assert loader.check() and loader.current.version == "v1"
    old = loader.current
    assert not loader.check()  # nothing moved
    republish(registry, promote=False)
    assert not loader.check() and loader.current is old  # published but not current
    registry.set_current("v2")
    assert loader.check() and loader.current.version == "v2"
    # a request holding the old version can still finish on it
    assert old.pipeline.feed("nobody", 3).results
    assert swaps == ["v1", "v2"]


def test_a_hot_reload_is_logged_old_to_new_and_reaches_stderr(served, capsys):
    import logging

    from recgraph.serving.server import configure_logging

    settings, registry = served
    logger = logging.getLogger("recgraph")
    saved = (logger.level, list(logger.handlers))
    try:
        configure_logging(settings)  # what recgraph serve does in each worker
        loader = ModelLoader(registry, poll_seconds=0)
        loader.check()
        republish(registry)
        loader.check()
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
    err = capsys.readouterr().err
    assert "loaded model v1" in err and "hot-reloaded the model: v1 -> v2" in err


def test_a_broken_version_keeps_the_old_one_serving(served):
    import shutil

    _, registry = served
    failures = []
    loader = ModelLoader(registry, poll_seconds=0, on_failure=lambda v, e: failures.append(v))
    loader.check()
    version = republish(registry, promote=False)
    shutil.rmtree(registry.local_copy(version) / "model" / "feed")
    # promote refuses a version with missing files; the pointer can still move past the
    # check (an older recgraph, a hand edit): the loader must keep serving the old one
    registry.set_current(version, check=False)
    assert not loader.check()
    assert loader.current.version == "v1" and failures == [version]
    assert not loader.check() and failures == [version]  # not retried until the pointer moves
    registry.set_current("v1")
    assert not loader.check()
    fixed = republish(registry)
    assert loader.check() and loader.current.version == fixed


def test_the_poller_follows_the_pointer(served):
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0.05)
    loader.start()
    try:
        assert loader.current.version == "v1"
        republish(registry)
        deadline = time.monotonic() + 20
        while loader.current.version != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loader.current.version == "v2"
    finally:
        loader.stop()


def test_a_plain_retriever_version_is_served_as_a_one_model_pipeline(tmp_path):
    from recgraph.retrieval.popular import Popular
    from tests.pipeline.test_pipeline import two_cliques

    registry = ModelRegistry(tmp_path / "models")
    registry.publish(Popular().fit(two_cliques()))
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    pipeline = loader.current.pipeline
    answer = pipeline.suggest_accounts("0", 3)
    assert answer.results and answer.results[0].retrievers == ("popular",)
    assert "feed" not in pipeline.questions


@pytest.mark.slow
def test_requests_in_flight_never_fail_while_versions_swap(served):
    settings, registry = served
    app = create_app(settings.model_copy(update={"poll_seconds": 0.05}))
    errors: list[str] = []
    seen_versions: set[str] = set()
    done = threading.Event()
    count = [0]

    def fire(url: str, paths: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            i = 0
            while not done.is_set():
                path = paths[i % len(paths)]
                i += 1
                try:
                    response = client.get(path)
                    if response.status_code != 200:
                        errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                    else:
                        seen_versions.add(response.json()["model_version"])
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {exc!r}")
                count[0] += 1

    with LiveServer(app) as server:
        paths = [
            "/v1/accounts/did:synth:00001/suggestions?k=10",
            "/v1/users/did:synth:00002/feed?k=10",
            "/v1/users/nobody/feed",
            "/v1/items/post:000003/similar",
        ]
        threads = [threading.Thread(target=fire, args=(server.url, paths)) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for expected in ("v2", "v3"):
                time.sleep(0.3)
                assert republish(registry) == expected
                deadline = time.monotonic() + 20
                while app.state.loader.current.version != expected:
                    assert time.monotonic() < deadline, "the server never swapped"
                    time.sleep(0.02)
            time.sleep(0.3)
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=20)
    assert not errors, errors[:5]
    assert count[0] > 20 and {"v1", "v3"} <= seen_versions


def test_loading_warms_every_question_up_then_freezes_the_heap(served, monkeypatch):
    """A version is answered once per question before it is swapped in (what a model builds
    on first use is built then), and the heap is frozen after (no full collection walks the
    model again)."""
    import gc

    from recgraph.pipeline import QuestionModel

    _, registry = served
    warmed = []
    real = QuestionModel.answer

    def spy(self, user, k=None, **kwargs):
        warmed.append(self.question)
        return real(self, user, k, **kwargs)

    monkeypatch.setattr(QuestionModel, "answer", spy)
    gc.unfreeze()
    try:
        loader = ModelLoader(registry, poll_seconds=0)
        assert loader.check()
        assert sorted(warmed) == sorted(loader.current.pipeline.questions)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_warm_up_that_fails_never_stops_the_swap(served, monkeypatch, caplog):
    """The warm-up is a courtesy: a version whose first answer raises is still swapped in
    (its requests build what it would have), the failure logged."""
    from recgraph.pipeline import QuestionModel

    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    assert loader.check()
    republish(registry)

    def broken(self, user, k=None, **kwargs):
        raise RuntimeError("cold")

    monkeypatch.setattr(QuestionModel, "answer", broken)
    with caplog.at_level("WARNING", logger="recgraph.serving"):
        assert loader.check()
    assert loader.current.version == "v2"
    assert "warming" in caplog.text and "cold" in caplog.text


def test_freezing_the_heap_collects_waiting_garbage_first():
    """Garbage cycles still waiting when the heap is frozen would never be freed: each hot
    reload would keep what parsing its boosters left behind."""
    import gc
    import weakref

    from recgraph.serving.loader import freeze_heap

    class Node:
        pass

    was_enabled = gc.isenabled()
    gc.disable()  # the collector must not run between the drop and the freeze on its own
    gc.unfreeze()
    try:
        node = Node()
        node.me = node
        gone = weakref.ref(node)
        del node
        assert gone() is not None  # a cycle: reference counting alone does not free it
        freeze_heap()
        assert gone() is None
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_a_dropped_version_is_freed_by_reference_counting_alone(served):
    """Frozen objects are never collected: a loaded version must hold no reference cycle, or
    every hot reload would keep the old version's memory."""
    import gc
    import weakref

    from recgraph.serving.loader import load_version

    _, registry = served
    loaded = load_version(registry, "v1")
    pipeline = loaded.pipeline
    held = [weakref.ref(pipeline)]
    for name in pipeline.questions:
        held += [
            weakref.ref(pipeline.questions[name]),
            weakref.ref(pipeline.questions[name].history),
        ]
        held += [weakref.ref(m) for m in pipeline.questions[name].models.values()]
    assert len(held) > 3
    gc.disable()
    try:
        del loaded, pipeline
        assert [ref() for ref in held] == [None] * len(held)
    finally:
        gc.enable()
