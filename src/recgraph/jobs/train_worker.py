"""The scheduled train job's child process: ``recgraph train`` in a process of its own.

``recgraph run`` starts ``python -m recgraph.jobs.train_worker`` for each
training cycle, so that a stop (Ctrl-C, SIGTERM) never waits for a fit to end,
the memory a fit takes is given back when the child exits, and training never
holds the scheduler's event loop. The child does exactly what ``recgraph
train`` does (:func:`recgraph.jobs.train.train_pipeline`: the pipeline on a
snapshot of the whole store, published and promoted, then registry retention)
and prints one JSON line on stdout::

    {"version": "v7", "promoted": true, "fit_seconds": 3.1, "rows": 12345, "removed": ["v2"]}

The store is named by ``$RECGRAPH_DATABASE_URL`` (not on the command line,
where ``ps`` would show its password). SIGTERM and SIGINT stop it (exit status
:data:`STOPPED`, nothing published) until the fit is done; a stop that comes later
is noted and the child finishes the publish and retention, then exits 0, so a
stopped child leaves either no new version or a whole, current one. A ``kill -9``
(the scheduler's, 10 s after its SIGTERM) can leave an unfinished version that the
next retention pass removes. Either way ``CURRENT`` never names a version that is
not whole. A stop before the child's own code runs (while Python starts and imports
the ``recgraph`` package) ends it as the signal would any process.

A stop is a ``KeyboardInterrupt`` raised wherever the main thread is, and it does not
always arrive as one: Python prints and drops one raised in a finalizer (``__del__``, a
weakref callback), and a library can turn it into an error of its own (a database
driver interrupted mid-read, then closed). So the signal is also written down: a
stop dropped in a finalizer is raised again, any error after a stop exits
:data:`STOPPED`, and the fit's end checks for a stop once more before publishing.
A stop is raised once: a second signal (Ctrl-C under ``recgraph run`` reaches the
child, then the scheduler's SIGTERM) is only noted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("recgraph.jobs.train")

#: Exit status of a child stopped by a signal before it published.
STOPPED = 3
#: The signals that stop the child.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: Times a stop dropped in a finalizer is raised again before the fit's end stops instead.
REDELIVERIES = 5


class _Stop:
    """What the signal handler knows: the signals that came, whether the next one is
    raised, and whether stops are held (from the fit's end on)."""

    signals: list[str] = []  # noqa: RUF012 (one per process)
    raise_next = True
    holding = False
    redeliveries = 0


def _stop(signum: int, frame: Any) -> None:
    # Python runs this on the main thread, whichever thread the kernel gave the signal to
    _Stop.signals.append(signal.Signals(signum).name)
    if _Stop.holding or not _Stop.raise_next:
        return
    _Stop.raise_next = False
    raise KeyboardInterrupt(_Stop.signals[0])


def _deliver_dropped_stop(unraisable: Any) -> None:
    """``sys.unraisablehook``: a stop raised inside a finalizer is dropped by Python (the fit
    would go on): send the signal again, 10 ms later from a thread, so that it lands in the
    fit's own code once this hook is done (and if that is lost too, :func:`_publish_now`
    stops)."""
    if not (_Stop.signals and isinstance(unraisable.exc_value, KeyboardInterrupt)):
        sys.__unraisablehook__(unraisable)
        return
    if _Stop.redeliveries < REDELIVERIES and not _Stop.holding:
        _Stop.redeliveries += 1
        _Stop.raise_next = True
        signum = signal.Signals[_Stop.signals[0]]
        again = threading.Timer(0.01, os.kill, (os.getpid(), signum))  # after this hook
        again.daemon = True
        again.start()


def _publish_now() -> None:
    """Between the fit and the publish: stop here if a stop came and was lost on the way;
    else note later stops only, so that the publish and retention end whole."""
    _Stop.holding = True
    if _Stop.signals:
        raise KeyboardInterrupt(_Stop.signals[0])


def _exit_stopped(reason: BaseException) -> int:
    log.info(
        "train: stopped (%s) before publishing", _Stop.signals[0] if _Stop.signals else "SIGINT"
    )
    if not isinstance(reason, KeyboardInterrupt):
        log.info("train: the stop surfaced as %r", reason)
    return STOPPED


def main(argv: list[str] | None = None) -> int:
    for stop_signal in STOP_SIGNALS:  # first: a stop during main()'s imports is quiet too
        signal.signal(stop_signal, _stop)
    sys.unraisablehook = _deliver_dropped_stop
    parser = argparse.ArgumentParser(prog="python -m recgraph.jobs.train_worker")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--pipeline", default=None)
    parser.add_argument("--keep", type=int, default=None)
    parser.add_argument("--notes", default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("recgraph").setLevel(args.log_level)
    try:
        from recgraph.data.store import Store
        from recgraph.errors import RecgraphError
        from recgraph.jobs.train import train_pipeline
        from recgraph.serving.registry import ModelRegistry

        try:
            registry = ModelRegistry(args.registry)
            store = Store.open(None, create=False)
            try:
                result = train_pipeline(
                    store,
                    registry,
                    args.pipeline,
                    notes=args.notes,
                    keep=args.keep,
                    before_publish=_publish_now,
                )
            finally:
                store.close()
        except RecgraphError as exc:
            if _Stop.signals:
                return _exit_stopped(exc)
            log.error("train: %s", exc)
            return 2
    except Exception as exc:
        if _Stop.signals:
            return _exit_stopped(exc)
        raise
    except KeyboardInterrupt as exc:
        return _exit_stopped(exc)
    payload = {
        "version": result.version,
        "promoted": result.promoted,
        "fit_seconds": round(result.fit_seconds, 3),
        "rows": int(result.pipeline.snapshots.get("rows", 0)),
        "removed": [*result.gc.removed, *result.gc.incomplete] if result.gc else [],
    }
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0


def _exit(status: int) -> None:
    """Exit with ``status``; a stopped child exits at once: threads of an interrupted fit
    are not waited for, and Python's own exit status for an interrupt (-2) cannot replace
    ours."""
    if status != STOPPED:
        sys.exit(status)
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit(main())
