"""Keep the current registry version loaded, and swap to a new one without failing a request.

:class:`ModelLoader` loads what the registry's ``CURRENT`` pointer names. A
background thread polls :meth:`ModelRegistry.current_version` (one small
read) every ``poll_seconds``; when the pointer moves, the new version is
loaded *beside* the old one and then published by replacing a single
reference. A request takes that reference once (:attr:`ModelLoader.current`)
and works with it to the end, so a request in flight finishes on the version
it started with, and the old version is freed once the last such request is
done, by the loader's thread (:meth:`ModelLoader.release_retired`), not by
that request's. A version that fails to load is logged, counted and not
retried until the pointer moves again; the old version keeps serving.

The processes of a host that serve one registry (``recgraph serve
--workers N``) load a new version in turn, not all at once
(:func:`one_load_at_a_time`), and a load beside a served version is paced
(:func:`paced`) so that it cannot hold the interpreter lock against the
answer threads of its process for its whole length. Measured on a 2-core
machine (MovieLens 100k, ~300 candidates ranked a request, two workers at
200 requests/s): the switches where both workers' loads overlapped stalled
requests for 0.15-0.4 s; and in one process answering 100/s, a flat-out
load (100 CPU ms) raised the worst answer latency from 7 to 43 ms, a paced
one to 7.3 ms (``benchmarks/reload_cost.py``).

A version published by ``recgraph train`` is a :class:`~recgraph.pipeline.Pipeline`;
a plain retriever version (published by any other job) is served as a
one-retriever pipeline.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recgraph.errors import RecgraphError
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import MODEL_DIR, ModelRegistry, RegistryError

log = logging.getLogger("recgraph.serving")

#: Longest a process waits for another one's load of the same registry before loading anyway
#: (a load that hangs elsewhere must not stop this process from ever swapping; a paced load
#: of a big model takes minutes).
LOAD_LOCK_WAIT_SECONDS = 300.0
#: Swapped-out versions the loader keeps until no request holds them (then frees them itself).
MAX_RETIRED = 2


def load_lock_path(registry: ModelRegistry) -> Path:
    """The file whose lock one process at a time holds while it loads a version of
    ``registry`` (one per registry root, in this host's temporary folder: every server
    process of the host that serves that registry takes the same one)."""
    digest = hashlib.sha256(registry.root.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"recgraph-load-{digest}.lock"


@contextmanager
def one_load_at_a_time(registry: ModelRegistry, wait: float | None = None) -> Iterator[bool]:
    """Hold the host-wide lock on loading ``registry`` for the block (yields whether it was
    got: after ``wait`` seconds (default :data:`LOAD_LOCK_WAIT_SECONDS`), or where file
    locks are missing, the block runs without it).

    The worker processes of one server all poll the registry and see a new version within
    the same half second; loaded at once, they each spend a hundred CPU milliseconds and
    more (files, the ranker's booster and trees, the warm-up answer) on the same cores while
    serving, and every request of every worker waits behind the loads together. In turn, one
    process loads while the others serve at full speed. Waiting costs nothing: the old
    version keeps serving, and the lock is waited for without the GIL.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, loads overlap as before
        yield False
        return
    try:
        handle = open(load_lock_path(registry), "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:  # a read-only temporary folder: load without it
        log.warning("cannot open the model load lock: %s", exc)
        yield False
        return
    with handle:
        wait = LOAD_LOCK_WAIT_SECONDS if wait is None else wait
        deadline = time.monotonic() + wait
        got = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning("another process's model load took over %gs: loading anyway", wait)
                    break
                time.sleep(0.02)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(handle, fcntl.LOCK_UN)


#: While a new version loads beside a served one, the loading thread runs at most this long
#: at a stretch, then sleeps :data:`LOAD_PAUSE_SECONDS` (see :func:`paced`).
LOAD_BURST_SECONDS = 0.002
LOAD_PAUSE_SECONDS = 0.003


@contextmanager
def paced(burst: float | None = None, pause: float | None = None) -> Iterator[Callable[[], int]]:
    """Make the current thread sleep ``pause`` s after each ``burst`` s it runs, for the block
    (defaults :data:`LOAD_BURST_SECONDS`, :data:`LOAD_PAUSE_SECONDS`); yields a function
    counting the pauses taken.

    A process's threads share one interpreter lock: a load beside the served
    version (a hundred milliseconds of mostly Python glue around numpy and
    LightGBM calls) takes the lock from the answer threads whenever they wait
    for it, so a worker already busy serving falls behind for the whole load
    and its requests queue (measured: switches stalled requests 0.15-0.4 s
    at 200 requests/s with two workers on 2 cores, even with loads in turn). Paced,
    the load takes a bounded share of the lock (2 ms in 5 by default) and lasts
    longer, while the old version keeps serving at speed. The clock is looked
    at on each Python call of the thread (a trace function for calls only);
    under a debugger or coverage (a trace function already set) nothing is paced.
    """
    burst = LOAD_BURST_SECONDS if burst is None else burst
    pause = LOAD_PAUSE_SECONDS if pause is None else pause
    pauses = [0]
    if sys.gettrace() is not None or burst <= 0 or pause <= 0:
        yield lambda: pauses[0]
        return
    clock, sleep = time.perf_counter, time.sleep
    resume = [clock() + burst]

    def on_call(frame: Any, event: str, arg: Any) -> None:
        if clock() >= resume[0]:
            sleep(pause)  # the lock is free meanwhile
            pauses[0] += 1
            resume[0] = clock() + burst
        return None  # no tracing inside the function: calls only

    sys.settrace(on_call)
    try:
        yield lambda: pauses[0]
    finally:
        sys.settrace(None)


class NoModelError(RecgraphError):
    """Nothing to serve yet: the registry has no current version."""


class Periodic:
    """``tick()`` every ``seconds`` in a daemon thread until :meth:`stop` (``seconds=0``: never)."""

    def __init__(self, name: str, seconds: float, tick: Callable[[], object]) -> None:
        self.name, self.seconds, self.tick = name, seconds, tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.tick()


@dataclass(frozen=True)
class LoadedModel:
    """One loaded registry version: immutable, shared by every request that took it."""

    version: str
    manifest: dict[str, Any]
    pipeline: Pipeline
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0

    @property
    def version_number(self) -> int:
        return int(self.version.lstrip("v"))


def load_version(registry: ModelRegistry, version: str) -> LoadedModel:
    """Load ``version`` of ``registry`` as a pipeline (a plain retriever is wrapped in one)."""
    start = time.perf_counter()
    manifest = registry.manifest(version)
    folder = registry.local_copy(version, manifest) / MODEL_DIR
    if manifest.get("model") == Pipeline.name:
        pipeline = Pipeline.load(folder)
    else:
        model, manifest = registry.load(version)
        pipeline = Pipeline.from_retriever(model)
    warm_up(pipeline)
    return LoadedModel(
        version=version,
        manifest=manifest,
        pipeline=pipeline,
        load_seconds=time.perf_counter() - start,
    )


def warm_up(pipeline: Pipeline) -> None:
    """Answer one known user of each question, so that what a model builds on first use
    (transposed matrices, walk tables, the ranker's predictor) is built while loading,
    beside the served version, not by the first requests to reach the new one."""
    for question in pipeline.questions.values():
        users, history = question.users, question.history
        if users is None or history is None or not len(users):
            continue
        try:
            # the most active user: warm, so the retrievers and the ranker answer, not the fallback
            busiest = int(np.argmax(history.counts))
            question.answer(str(users.ids[busiest]), 1)
        except Exception as exc:  # a courtesy: the version still loads, requests build it
            log.warning("warming %s up failed: %s", question.question, exc)


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``).

    A loaded model and the libraries it imported are hundreds of thousands of
    long-lived objects that a full collection walks every time: on ego-Facebook's
    served pipeline one full collection took 351 ms of wall clock on the shared
    machine (196k objects), a pause every few thousand requests that the
    requests queued behind it wait out (the load test's p99). Frozen, they are
    never walked again; a model dropped at a swap is still freed, by reference
    counting (a loaded pipeline holds no reference cycles: tested), so nothing
    of it is kept. Garbage already waiting (cycles that parsing a booster or an
    in-flight request left) is collected first: frozen, it would never be freed.
    """
    gc.collect()
    gc.freeze()


class ModelLoader:
    """The served model, reloaded when the registry's current version changes.

    Parameters
    ----------
    registry
        The registry to serve from.
    poll_seconds
        How often the background thread checks ``CURRENT``; ``0`` disables
        polling (reload only through :meth:`reload`).
    on_swap
        Called with ``(old, new)`` after each swap (metrics, logs).
    on_failure
        Called with ``(version, exception)`` when a version fails to load.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        poll_seconds: float = 2.0,
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self._swap_listeners: list[Callable[[LoadedModel | None, LoadedModel], None]] = []
        self._failure_listeners: list[Callable[[str, BaseException], None]] = []
        self.subscribe(on_swap=on_swap, on_failure=on_failure)
        self._current: LoadedModel | None = None
        self._retired: list[LoadedModel] = []  # swapped out, maybe still held by a request
        self._failed_version: str | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._poller = Periodic("recgraph-model-poller", poll_seconds, self.check)

    def subscribe(
        self,
        *,
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """Also call ``on_swap(old, new)`` after each swap / ``on_failure(version, exc)``."""
        if on_swap is not None:
            self._swap_listeners.append(on_swap)
        if on_failure is not None:
            self._failure_listeners.append(on_failure)

    # ------------------------------------------------------------------ reading
    @property
    def current(self) -> LoadedModel:
        """The version to answer with; take it once per request."""
        loaded = self._current
        if loaded is None:
            raise NoModelError(
                f"no model is loaded: the registry {self.registry.root} has no current version "
                "yet (run recgraph train)"
            )
        return loaded

    @property
    def loaded(self) -> LoadedModel | None:
        """The current version, or ``None`` before the first load."""
        return self._current

    # ------------------------------------------------------------------ loading
    def check(self) -> bool:
        """Load the registry's current version if it is not the one served; True if swapped.

        Errors of a new version are reported to ``on_failure`` and the old
        version stays; the same broken version is not retried until
        ``CURRENT`` moves again.
        """
        self.release_retired()
        try:
            wanted = self.registry.current_version()
        except Exception as exc:  # a flaky object store must not kill the poller
            log.warning("cannot read the registry pointer: %s", exc)
            return False
        served = self._current.version if self._current is not None else None
        if wanted is None or wanted == served or wanted == self._failed_version:
            return False
        try:
            self.reload(wanted)
        except Exception as exc:
            self._failed_version = wanted
            log.error("cannot load model version %s: %s", wanted, exc)
            for listener in self._failure_listeners:
                listener(wanted, exc)
            return False
        return True

    def reload(self, version: str | None = None) -> LoadedModel:
        """Load ``version`` (default: the registry's current one) beside the served one and swap.

        Raises whatever loading raises; the served version is then unchanged.
        """
        with self._lock:
            version = self.registry.resolve(version)
            previous = self._current
            if previous is not None and previous.version == version:
                return previous
            # once serving (the first load: at once, flat out), in turn with the host's other
            # processes and paced, so that the served version keeps answering at speed
            serving = previous is not None
            with one_load_at_a_time(self.registry) if serving else nullcontext():
                with paced() if serving else nullcontext():
                    fresh = load_version(self.registry, version)
                self._current = fresh  # one reference assignment: atomic for every reader
                self._failed_version = None
                freeze_heap()
            if previous is not None:
                self._retired.append(previous)
        if previous is None:
            log.info("loaded model %s (in %.2fs)", fresh.version, fresh.load_seconds)
        else:
            log.info(
                "hot-reloaded the model: %s -> %s (loaded in %.2fs)",
                previous.version,
                fresh.version,
                fresh.load_seconds,
            )
        for listener in self._swap_listeners:
            listener(previous, fresh)
        del previous
        self.release_retired()
        return fresh

    def release_retired(self) -> int:
        """Free the swapped-out versions no request holds any more, here; how many are left.

        A request takes the current version once and keeps it to its end, so the
        request that ends last on an old version would drop the last reference to
        it, and free the whole model (arrays, the ranker's trees, walk tables) on an
        answer thread, while its answer and the others wait. The loader keeps
        each old version instead and lets go of it at its next look at the
        registry (each poll), once nothing else references it: then the free
        happens on the loader's thread.
        """
        if not self._lock.acquire(blocking=False):  # a load runs: it releases them after
            return len(self._retired)
        try:
            kept, old = [], None
            for old in self._retired:
                # held by the list, by ``old`` and by getrefcount's argument: nothing else
                if sys.getrefcount(old) > 3 or sys.getrefcount(old.pipeline) > 2:
                    kept.append(old)
            # past the last few, a version something still holds is left to it (freed where
            # it lets go, as without this): a reference kept for good must not pile models up
            self._retired = kept[-MAX_RETIRED:]
            del old
        finally:
            self._lock.release()
        return len(self._retired)

    # ------------------------------------------------------------------ polling
    def start(self) -> None:
        """Load the current version if there is one, then poll in a daemon thread."""
        try:
            self.check()
        except RegistryError:
            pass
        self._poller.start()

    def stop(self) -> None:
        """Stop polling (the served version stays loaded)."""
        self._poller.stop()
