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
:data:`STOPPED`) until the fit is done; from then on a stop waits for the publish
to finish (exit 0, the new version whole and current), so a stopped child leaves
either no new version or a whole one, never a whole one that is not current. A
``kill -9`` (the scheduler's after 10 s) can leave an unfinished version that the
next retention pass removes. Either way ``CURRENT`` never names a version that is
not whole.

A stop is a ``KeyboardInterrupt`` raised wherever the main thread is, and it does not
always arrive as one: Python prints and drops one raised in a finalizer (``__del__``, a
weakref callback), and a library can turn it into an error of its own (a database
driver interrupted mid-read, then closed). So the signal is also written down: a
stop dropped in a finalizer is delivered again, any error after a stop exits
:data:`STOPPED`, and the fit's end checks for a stop once more before publishing.
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

#: The name of the signal that stopped this process, once one has.
_stopped_by: list[str] = []


def _stop(signum: int, frame: Any) -> None:
    _stopped_by.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_stopped_by[0])


def _deliver_dropped_stop(unraisable: Any) -> None:
    """``sys.unraisablehook``: a stop raised inside a finalizer is dropped by Python (the fit
    would go on): send the signal again, 10 ms later from a thread, so that it lands in the
    fit's own code once this hook is done (and if that is lost too, :func:`_publish_now` stops)."""
    if _stopped_by and isinstance(unraisable.exc_value, KeyboardInterrupt):
        signum = signal.Signals[_stopped_by[0]]
        again = threading.Timer(0.01, os.kill, (os.getpid(), signum))  # after this hook
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


def _publish_now() -> None:
    """Between the fit and the publish: hold later stops until the publish is done (so it
    ends whole and current), then stop here if a stop came and was lost on the way."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if _stopped_by:
        raise KeyboardInterrupt(_stopped_by[0])


def _exit_stopped(reason: BaseException) -> int:
    log.info("train: stopped (%s) before publishing", _stopped_by[0] if _stopped_by else "SIGINT")
    if not isinstance(reason, KeyboardInterrupt):
        log.debug("train: the stop surfaced as %r", reason)
    return STOPPED


def main(argv: list[str] | None = None) -> int:
    for stop_signal in STOP_SIGNALS:  # first: a stop during the imports is quiet too
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
            if _stopped_by:
                return _exit_stopped(exc)
            log.error("train: %s", exc)
            return 2
    except Exception as exc:
        if _stopped_by:
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
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit(main())
