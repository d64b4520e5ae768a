"""How a swap shares the host with the requests: the processes of one registry load a new
version in turn (a host-wide file lock), and a swapped-out version is freed on the loader's
thread, not on the answer thread that held it last."""

import subprocess
import sys
import threading
import time
import weakref

import pytest

from recgraph.serving import loader as loader_module
from recgraph.serving.loader import ModelLoader, load_lock_path, one_load_at_a_time
from tests.serving.test_loader import republish

fcntl = pytest.importorskip("fcntl")

HOLDER = """
import fcntl, sys
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def versions_loaded(monkeypatch) -> list[str]:
    """The versions loaded from now on (in order), as a list that fills as they are."""
    loads = []
    real = loader_module.load_version
    monkeypatch.setattr(loader_module, "load_version", lambda *a: loads.append(a[1]) or real(*a))
    return loads


def loading_in_background(loader: ModelLoader) -> threading.Thread:
    thread = threading.Thread(target=loader.check, daemon=True)
    thread.start()
    return thread


def test_a_process_waits_for_another_ones_load_of_the_registry_then_swaps(served):
    """While another process of the host holds the registry's load lock, the new version is
    not loaded (the old one serves); it is once the lock is let go."""
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    assert loader.check()
    republish(registry)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(load_lock_path(registry))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        thread = loading_in_background(loader)
        time.sleep(1.0)
        assert thread.is_alive() and loader.current.version == "v1"
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
        thread.join(timeout=60)
        assert not thread.is_alive() and loader.current.version == "v2"
    finally:
        holder.kill()
        holder.communicate()  # reaped, its pipes closed


def test_the_first_load_does_not_wait_for_the_lock(served):
    """Nothing is served yet at start: every worker loads at once."""
    _, registry = served
    with one_load_at_a_time(registry) as got:
        assert got
        loader = ModelLoader(registry, poll_seconds=0)
        assert loader.check() and loader.current.version == "v1"


def test_a_load_held_up_too_long_by_another_goes_ahead(served, monkeypatch):
    """A load hung in another process must not stop this one from ever swapping."""
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    republish(registry)
    monkeypatch.setattr(loader_module, "LOAD_LOCK_WAIT_SECONDS", 0.2)
    with one_load_at_a_time(registry):
        assert loader.check() and loader.current.version == "v2"


def test_loads_of_two_loaders_never_overlap(served, monkeypatch):
    """Two loaders of one registry (as two worker processes): their loads run one after the
    other, never at once."""
    _, registry = served
    loaders = [ModelLoader(registry, poll_seconds=0) for _ in range(2)]
    for loader in loaders:
        loader.check()
    republish(registry)
    running, overlaps = [0], []
    real = loader_module.load_version

    def slow_load(*args, **kwargs):
        running[0] += 1
        overlaps.append(running[0])
        time.sleep(0.3)
        try:
            return real(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(loader_module, "load_version", slow_load)
    threads = [loading_in_background(loader) for loader in loaders]
    for thread in threads:
        thread.join(timeout=60)
    assert [loader.current.version for loader in loaders] == ["v2", "v2"]
    assert overlaps == [1, 1]


def test_a_version_a_request_still_holds_is_freed_by_the_loader_not_the_request(served):
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    freed_on = []
    held = loader.current  # a request in flight on v1
    weakref.finalize(held, lambda: freed_on.append(threading.current_thread().name))
    republish(registry)
    swapped = []  # an assert in the thread would not fail the test: checked here

    def swap():
        swapped.append((loader.check(), loader.current.version))

    swapper = threading.Thread(target=swap, name="loader-thread")
    swapper.start()
    swapper.join(timeout=60)
    assert swapped == [(True, "v2")]
    del held  # the request ends: not freed here...
    assert freed_on == []
    poller = threading.Thread(target=loader.check, name="loader-thread")
    poller.start()  # ...but at the loader's next look at the registry
    poller.join(timeout=60)
    assert freed_on == ["loader-thread"]


def test_a_version_no_request_holds_is_freed_at_the_swap(served):
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    gone = weakref.ref(loader.current)
    republish(registry)
    assert loader.check()
    assert gone() is None and loader.release_retired() == 0


def test_a_version_held_for_good_is_not_kept_by_the_loader(served):
    """Past a few swapped-out versions, one that something keeps is left to it: the loader
    never piles old models up."""
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    kept = [loader.current]
    for _ in range(loader_module.MAX_RETIRED + 2):
        republish(registry)
        assert loader.check()
        kept.append(loader.current)
    assert loader.release_retired() == loader_module.MAX_RETIRED


def busy_python(seconds: float) -> None:
    """Python calls (what the pacing looks at) for ``seconds`` of this thread's CPU."""
    end = time.thread_time() + seconds

    def step() -> float:
        return time.thread_time()

    while step() < end:
        pass


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="paced only where settrace is per-thread")
def test_a_paced_thread_sleeps_between_short_runs():
    from recgraph.serving.loader import paced

    assert loader_module.PER_THREAD_TRACE
    if sys.gettrace() is not None:
        pytest.skip("a trace function is set (coverage, a debugger): pacing stands aside")
    start = time.perf_counter()
    with paced(burst=0.002, pause=0.004) as pauses:
        busy_python(0.05)
    wall = time.perf_counter() - start
    assert pauses() >= 10  # 50 ms of running in 2 ms runs
    assert wall >= 0.05 + pauses() * 0.004
    assert sys.gettrace() is None  # nothing left behind


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="paced only where settrace is per-thread")
def test_a_load_paced_by_default_takes_at_most_a_fifth_of_a_core():
    """What requests around a switch waited for was cores (the other worker's requests
    slowed as much as the loading one's): by default a paced load runs 1 ms in 5."""
    from recgraph.serving.loader import paced

    if sys.gettrace() is not None:
        pytest.skip("a trace function is set (coverage, a debugger): pacing stands aside")
    start, cpu = time.perf_counter(), time.thread_time()
    with paced() as pauses:
        busy_python(0.04)
    share = (time.thread_time() - cpu) / (time.perf_counter() - start)
    assert pauses() >= 30  # 40 ms of running in runs of 1 ms
    assert share <= 0.25  # (two fifths before: 2 ms in 5)


def test_pacing_stands_aside_for_a_trace_function_already_set():
    from recgraph.serving.loader import paced

    def tracer(frame, event, arg):
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with paced(burst=0.001, pause=0.001) as pauses:
            busy_python(0.01)
        assert pauses() == 0 and sys.gettrace() is tracer
    finally:
        sys.settrace(previous)


def test_only_a_load_beside_a_served_version_is_paced(served, monkeypatch):
    """The first load (nothing served yet) runs flat out; a reload is paced."""
    from contextlib import contextmanager

    _, registry = served
    calls = []
    real = loader_module.paced

    @contextmanager
    def spy(*args, **kwargs):
        with real(*args, **kwargs) as pauses:
            yield pauses
        calls.append(pauses())

    monkeypatch.setattr(loader_module, "paced", spy)
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    assert calls == []
    republish(registry)
    assert loader.check()
    assert len(calls) == 1


def paced_flat_out() -> None:
    with loader_module.paced(burst=0.001, pause=0.001) as pauses:
        assert sys.gettrace() is None  # no trace set: every thread runs at speed
        busy_python(0.02)
    assert pauses() == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11's settrace is per-thread")
def test_no_pacing_where_a_trace_slows_every_thread():
    """Python 3.12+: settrace instruments every thread (measured: the answer threads' Python
    2x slower), so the load runs flat out."""
    assert not loader_module.PER_THREAD_TRACE
    paced_flat_out()


def test_no_pacing_when_the_trace_is_not_per_thread(monkeypatch):
    """What 3.12+ does, on any version: no trace function, no pause."""
    if sys.gettrace() is not None:
        pytest.skip("a trace function is set (coverage, a debugger)")
    monkeypatch.setattr(loader_module, "PER_THREAD_TRACE", False)
    paced_flat_out()


def test_not_polling_a_swapped_out_version_is_still_freed(served, monkeypatch):
    """poll_seconds=0 (reload only through the API): an old version a request held is freed
    once the request ends, on the loader's own thread, without waiting for another reload."""
    _, registry = served
    monkeypatch.setattr(loader_module, "RELEASE_SECONDS", 0.05)
    loader = ModelLoader(registry, poll_seconds=0)
    loader.start()
    try:
        held = loader.current
        freed_on = []
        weakref.finalize(held, lambda: freed_on.append(threading.current_thread().name))
        republish(registry)
        assert loader.reload().version == "v2"
        del held
        deadline = time.monotonic() + 10
        while not freed_on and time.monotonic() < deadline:
            time.sleep(0.02)
        assert freed_on == ["recgraph-model-releaser"]
    finally:
        loader.stop()


def test_an_api_reload_frees_the_old_version_at_the_swap(served):
    """The admin reload holds only the old version's name, not the version: nothing keeps
    it once swapped out."""
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app
    from tests.serving.app_fixtures import AUTH

    settings, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()  # a loader passed in is the caller's to start
    with TestClient(create_app(settings, loader=loader)) as client:
        gone = weakref.ref(loader.current)
        republish(registry)
        answer = client.post("/v1/admin/reload", headers=AUTH).json()
        assert answer == {"previous": "v1", "version": "v2", "swapped": True}
        assert gone() is None and loader.release_retired() == 0


def test_a_lock_that_fails_otherwise_than_busy_loads_without_it(served, monkeypatch, caplog):
    """No file locks here (ENOLCK on NFS, EINVAL): load anyway, do not mark the version failed."""
    import errno

    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    republish(registry)

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with one_load_at_a_time(registry) as got:
        assert got is False
    assert loader.check() and loader.current.version == "v2"
    assert "cannot lock the model load lock" in caplog.text


def test_stopping_the_loader_ends_its_wait_for_its_turn(served, monkeypatch):
    """A load waiting for another's gives up when the server stops: promptly, loading nothing."""
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    republish(registry)
    loads = versions_loaded(monkeypatch)
    result = []
    with one_load_at_a_time(registry):  # another process's load
        thread = threading.Thread(target=lambda: result.append(loader.check()), daemon=True)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
        start = time.monotonic()
        loader.stop()
        thread.join(timeout=5)
        assert not thread.is_alive() and time.monotonic() - start < 2
    assert result == [False] and loads == [] and loader.current.version == "v1"
    # not marked failed: a later check loads it
    assert loader.check() and loader.current.version == "v2"


def test_a_load_that_waited_for_its_turn_loads_the_version_current_then(served, monkeypatch):
    """CURRENT moved on while this process waited: the newer version is loaded, not the one
    resolved before the wait."""
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    republish(registry)
    loads = versions_loaded(monkeypatch)
    with one_load_at_a_time(registry):
        thread = loading_in_background(loader)
        time.sleep(0.3)
        republish(registry)  # v3, published while the loader waits with v2 in hand
    thread.join(timeout=60)
    assert loads == ["v3"] and loader.current.version == "v3"


def test_a_reload_asked_through_the_api_does_not_wait_long(served, monkeypatch):
    """Another load runs (another process's, or this one's): the admin reload answers 409
    "a load is in progress" within its bound, not minutes later."""
    from fastapi.testclient import TestClient

    from recgraph.serving import handlers
    from recgraph.serving.app import create_app
    from tests.serving.app_fixtures import AUTH

    settings, registry = served
    monkeypatch.setattr(handlers, "ADMIN_RELOAD_WAIT_SECONDS", 0.2)
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()  # a loader passed in is the caller's to start
    with TestClient(create_app(settings, loader=loader)) as client:
        republish(registry)
        with one_load_at_a_time(registry):  # another process loads
            start = time.monotonic()
            response = client.post("/v1/admin/reload", headers=AUTH)
            assert time.monotonic() - start < 5
        assert response.status_code == 409
        assert response.json()["detail"] == "a load is in progress"
        with loader._lock:  # a load of this process's own (the poller's)
            response = client.post("/v1/admin/reload", headers=AUTH)
        assert response.status_code == 409
        assert response.json()["detail"] == "a load is in progress"
        assert client.post("/v1/admin/reload", headers=AUTH).json()["version"] == "v2"


def test_one_folder_named_differently_has_one_lock(tmp_path, monkeypatch):
    """``models``, ``./models`` and the absolute path: one registry, one load lock, kept in
    the user's registry cache folder (not the world-writable temporary folder)."""
    from recgraph.serving.registry import ModelRegistry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loader_module, "LOAD_LOCK_DIR", None)
    cache = tmp_path / "cache"
    names = ["models", "./models", str(tmp_path / "models"), str(tmp_path / "x" / ".." / "models")]
    registries = [ModelRegistry(name, cache_dir=cache) for name in names]
    assert len({registry.key for registry in registries}) == 1
    assert len({load_lock_path(registry) for registry in registries}) == 1
    assert load_lock_path(registries[0]).parent == cache
    assert registries[0].cache_path("v1") == registries[1].cache_path("v1")


def test_a_load_whose_version_was_taken_back_while_it_waited_does_nothing(served, monkeypatch):
    _, registry = served
    loader = ModelLoader(registry, poll_seconds=0)
    loader.check()
    republish(registry)
    loads, result = versions_loaded(monkeypatch), []
    with one_load_at_a_time(registry):
        thread = threading.Thread(target=lambda: result.append(loader.check()), daemon=True)
        thread.start()
        time.sleep(0.3)
        registry.set_current("v1")  # rolled back while the loader waited with v2 in hand
    thread.join(timeout=60)
    assert result == [False] and loads == [] and loader.current.version == "v1"
