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
(:func:`one_load_at_a_time`), and on Python 3.11 a load beside a served
version is paced (:func:`paced`) so that it takes a small share of a core and
of the interpreter lock over time (its single holds of the lock are short
either way: the worst single wait measured was 0.5-2.1 ms flat out). Measured
on a 2-core machine (MovieLens 100k, ~300 candidates ranked a request, two
workers at 200 requests/s): the switches where both workers' loads overlapped
stalled requests for 0.15-0.4 s; and in one process answering 100/s, a
flat-out load (100 CPU ms) raised the worst answer latency from 7 to 42.8 ms,
a paced one to 7.3 ms (``benchmarks/reload_cost.py``,
``reload_cost.reload14.json``). What the requests around a switch still wait
for is cores, not the lock nor the new version: server-side, a worker's
requests slowed as much while the *other* worker loaded as while it loaded
itself (p50 26 / 31 ms against 13 idle, load average 7-9), the answers on a
new version cost the same CPU as on the old one (4.55 / 4.40 ms: the warm-up
builds what a first answer would), and a load is 100-200 CPU ms a worker on
two cores already more than half busy
(``benchmarks/results/switch14.evidence.json``); hence the small share (see
:data:`LOAD_BURST_SECONDS`). On Python 3.12+ loads are not paced (see
:func:`paced`), only taken in turn.

A version published by ``recgraph train`` is a :class:`~recgraph.pipeline.Pipeline`;
a plain retriever version (published by any other job) is served as a
one-retriever pipeline.
"""

from __future__ import annotations

import gc
import logging
import sys
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
#: How often a loader that does not poll (``poll_seconds=0``) frees the swapped-out versions
#: no request holds any more (a polling loader does it at each poll).
RELEASE_SECONDS = 2.0
#: How long a reload asked for through the API waits for a load already running (in this
#: process or, for the host's load lock, another one) before answering "a load is in progress".
ADMIN_RELOAD_WAIT_SECONDS = 5.0
#: Where the host's load lock files are made; ``None``: the registry's per-user cache folder
#: (:attr:`ModelRegistry.cache_root`). Tests point it at a temporary folder.
LOAD_LOCK_DIR: Path | None = None


class NoModelError(RecgraphError):
    """Nothing to serve yet: the registry has no current version."""


class LoadInProgress(RecgraphError):
    """A bounded wait for a load already running (here or in another process) ran out."""


class LoadStopped(RecgraphError):
    """The loader was stopped while its load waited for its turn: nothing was loaded."""


def load_lock_path(registry: ModelRegistry) -> Path:
    """The file whose lock one process at a time holds while it loads a version of
    ``registry`` (one per registry, named by :attr:`ModelRegistry.key`, in this user's
    registry cache folder: every server process of the host that serves that registry as this
    user takes the same one). Never removed: removing a lock file another process holds
    would let a third lock a new file of the same name."""
    folder = LOAD_LOCK_DIR if LOAD_LOCK_DIR is not None else registry.cache_root
    return Path(folder) / f"load-{registry.key}.lock"


@contextmanager
def one_load_at_a_time(
    registry: ModelRegistry,
    wait: float | None = None,
    *,
    stop: threading.Event | None = None,
    give_up: bool = False,
) -> Iterator[bool]:
    """Hold the host-wide lock on loading ``registry`` for the block (yields whether it was
    got: after ``wait`` seconds (default :data:`LOAD_LOCK_WAIT_SECONDS`), or where file
    locks are missing or fail, the block runs without it). With ``give_up``, a wait that runs
    out raises :class:`LoadInProgress` instead; once ``stop`` is set, the wait ends with
    :class:`LoadStopped` (the block does not run).

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
        path = load_lock_path(registry)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:  # a read-only folder: load without it
        log.warning("cannot open the model load lock: %s", exc)
        yield False
        return
    stop = stop or threading.Event()  # none given: nothing ends the wait early
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
                    if give_up:
                        raise LoadInProgress(
                            "a load is in progress (another process of this host loads "
                            f"the model; waited {wait:g}s)"
                        ) from None
                    log.warning("another process's model load took over %gs: loading anyway", wait)
                    break
                if stop.wait(0.02):
                    raise LoadStopped("the loader was stopped while waiting to load") from None
            except OSError as exc:  # no locks here (ENOLCK on NFS, EINVAL): load without it
                log.warning("cannot lock the model load lock %s: %s", handle.name, exc)
                break
        try:
            yield got
        finally:
            if got:
                fcntl.flock(handle, fcntl.LOCK_UN)


#: While a new version loads beside a served one, the loading thread runs at most this long
#: at a stretch, then sleeps :data:`LOAD_PAUSE_SECONDS` (see :func:`paced`): at most a fifth
#: of a core and of its process's interpreter lock (it was 2 ms in 5, two fifths). A
#: load's CPU is the same either way (100-200 ms a worker for MovieLens ranked on a busy
#: 2-core machine); spread thinner, it lasts longer (0.6-0.7 s on an idle machine instead of
#: 0.3) while the old version serves, and it adds less to two cores that serving keeps
#: more than half busy, where the queue of every process's requests grows fast with each
#: tenth of a core taken (their tail is what a switch costs).
LOAD_BURST_SECONDS = 0.001
LOAD_PAUSE_SECONDS = 0.004
#: Whether ``sys.settrace`` costs only the thread it is set on (before Python 3.12, where it
#: became instrumentation of every thread): :func:`paced` paces only then.
PER_THREAD_TRACE = sys.version_info < (3, 12)


@contextmanager
def paced(burst: float | None = None, pause: float | None = None) -> Iterator[Callable[[], int]]:
    """Make the current thread sleep ``pause`` s after each ``burst`` s it runs, for the block
    (defaults :data:`LOAD_BURST_SECONDS`, :data:`LOAD_PAUSE_SECONDS`); yields a function
    counting the pauses taken. Only where a trace function is per-thread
    (:data:`PER_THREAD_TRACE`: Python 3.11); elsewhere the block runs flat out.

    A process's threads share one interpreter lock: a load beside the served
    version (a hundred milliseconds of mostly Python glue around numpy and
    LightGBM calls) competes with the answer threads for it the whole time it
    runs, so a worker already busy serving falls behind and its requests queue
    (measured: switches stalled requests 0.15-0.4 s at 200 requests/s with two
    workers on 2 cores, even with loads in turn). A flat-out load does not hold
    the lock for long at once (worst single wait measured 0.5-2.1 ms); what pacing
    changes is its share of the interpreter, and of a core, over time: at most 1 ms
    in 5 by default, so the load lasts longer while the old version keeps serving at
    speed (worst answer latency during a load 42.8 ms flat out, 7.3 ms paced at 2 ms
    in 5) and the host's other processes (the other workers) keep their cores. A C call that
    holds the lock (a booster parse) is not split. The clock is looked at on each
    Python call of the thread (a trace function for calls only); under a debugger
    or coverage (a trace function already set) nothing is paced.

    From Python 3.12, ``sys.settrace`` is built on ``sys.monitoring`` and instruments
    every thread, not only this one: measured, the other threads' pure-Python code ran
    2x slower while the trace was set (3.11: unchanged). Pacing would then slow the
    answers it is meant to protect, so there the load runs flat out (still in turn
    with the host's other processes).
    """
    burst = LOAD_BURST_SECONDS if burst is None else burst
    pause = LOAD_PAUSE_SECONDS if pause is None else pause
    pauses = [0]
    if not PER_THREAD_TRACE or sys.gettrace() is not None or burst <= 0 or pause <= 0:
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
    (transposed matrices, walk tables, the ranker's predictor, derived feature tables) is
    built while loading, beside the served version, not by the first requests to reach the
    new one. Measured in one process answering 100/s on 8 threads (MovieLens ranked, 8
    trials): a version swapped in unwarmed made p99 / worst latency 74 / 95 ms against 39 /
    42 for a warmed one (several first answers building the same parts at once, +55 CPU ms);
    warmed, the first answers cost what later ones do (first 30: 114 CPU ms against 109 for
    the same users again). One answer is enough for that: what stays cold is per user (the
    walks' cached rows: ego-Facebook's first 30 answers 83 CPU ms against 69)."""
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
        self._attempted: str | None = None  # the version the last load tried (for check)
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._stopping = threading.Event()  # ends a wait for the host's load lock
        self._poller = Periodic("recgraph-model-poller", poll_seconds, self.check)
        # not polling: the swapped-out versions are still freed, on a thread of the loader's
        self._releaser = Periodic(
            "recgraph-model-releaser",
            RELEASE_SECONDS if poll_seconds <= 0 else 0,
            self.release_retired,
        )

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
        self._attempted = wanted
        try:
            fresh = self._reload(wanted, follow_current=True)
        except LoadStopped:
            return False
        except Exception as exc:
            failed = self._attempted  # CURRENT may have moved on while it waited for its turn
            self._failed_version = failed
            log.error("cannot load model version %s: %s", failed, exc)
            for listener in self._failure_listeners:
                listener(failed, exc)
            return False
        return fresh.version != served

    def reload(self, version: str | None = None, *, wait: float | None = None) -> LoadedModel:
        """Load ``version`` (default: the registry's current one) beside the served one and swap.

        Raises whatever loading raises; the served version is then unchanged. ``wait``
        bounds how long a load already running (in this process, or another process's of
        the host) is waited for: past it, :class:`LoadInProgress` (default: wait for this
        process's, and for another's up to :data:`LOAD_LOCK_WAIT_SECONDS`, then load anyway).
        """
        return self._reload(version, follow_current=version is None, wait=wait)

    def _reload(
        self, version: str | None, *, follow_current: bool, wait: float | None = None
    ) -> LoadedModel:
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise LoadInProgress(f"a load is in progress (waited {wait:g}s)")
        try:
            version = self.registry.resolve(version)
            previous = self._current
            if previous is not None and previous.version == version:
                return previous
            # once serving (the first load: at once, flat out), in turn with the host's other
            # processes and paced, so that the served version keeps answering at speed
            serving = previous is not None
            turn = (
                one_load_at_a_time(
                    self.registry, wait, stop=self._stopping, give_up=wait is not None
                )
                if serving
                else nullcontext()
            )
            with turn:
                if serving and follow_current:
                    # the pointer may have moved while this process waited for its turn
                    version = self._current_or(version)
                    if version == previous.version:
                        return previous
                self._attempted = version
                with paced() if serving else nullcontext():
                    fresh = load_version(self.registry, version)
                self._current = fresh  # one reference assignment: atomic for every reader
                self._failed_version = None
                freeze_heap()
            if previous is not None:
                self._retired.append(previous)
        finally:
            self._lock.release()
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

    def _current_or(self, version: str) -> str:
        """The registry's current version now, or ``version`` if it cannot be read or is unset."""
        try:
            return self.registry.current_version() or version
        except Exception as exc:  # a flaky object store: load what was resolved
            log.warning("cannot read the registry pointer: %s", exc)
            return version

    def release_retired(self) -> int:
        """Free the swapped-out versions no request holds any more, here; how many are left.

        A request takes the current version once and keeps it to its end, so the
        request that ends last on an old version would drop the last reference to
        it, and free the whole model (arrays, the ranker's trees, walk tables) on its
        answer thread, and that answer would wait for it. The loader keeps each old
        version instead and lets go of it at its next look at the registry (each poll;
        not polling, every :data:`RELEASE_SECONDS`), once nothing else references it:
        then the free happens on the loader's thread. That still holds the
        interpreter lock like any Python work, so the other answer threads gain
        nothing; only the request that would have freed it does.
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
        """Load the current version if there is one, then poll in a daemon thread (not
        polling: free swapped-out versions in one)."""
        self._stopping.clear()
        try:
            self.check()
        except RegistryError:
            pass
        self._poller.start()
        self._releaser.start()

    def stop(self) -> None:
        """Stop polling; a load still waiting for its turn gives up (the served version stays
        loaded)."""
        self._stopping.set()
        self._poller.stop()
        self._releaser.stop()
