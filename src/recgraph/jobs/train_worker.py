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
where ``ps`` would show its password). SIGTERM and SIGINT stop it before it
publishes, or while it publishes, in which case :meth:`ModelRegistry.publish`
removes the unfinished version; a ``kill -9`` leaves an unfinished version
that the next retention pass removes. Either way ``CURRENT`` never names a
version that is not whole.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

log = logging.getLogger("recgraph.jobs.train")

#: Exit status of a child stopped by a signal before it published.
STOPPED = 3


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)  # first: a stop during the imports is quiet too
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
                    store, registry, args.pipeline, notes=args.notes, keep=args.keep
                )
            finally:
                store.close()
        except RecgraphError as exc:
            log.error("train: %s", exc)
            return 2
    except KeyboardInterrupt as exc:
        log.info("train: stopped (%s) before publishing", exc or "SIGINT")
        return STOPPED
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


if __name__ == "__main__":
    sys.exit(main())
