"""Import time of wiki-Vote and MovieLens latest-small into SQLite, MariaDB and PostgreSQL.

Each run imports into a fresh database (created and dropped here for the
servers), then imports the same data again to time the idempotent re-import
(every row conflicts and is merged). Prints a table and writes
``benchmarks/results/imports.json``.

    python benchmarks/imports.py [--repeat 1] [--backends sqlite,mysql,postgres] [--memory]

``--memory`` also imports generated edge lists of 100k and 1M lines into
SQLite, each in a child process, and reports the child's peak resident
memory: streaming keeps it nearly flat as the file grows tenfold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from recgraph.data.imports import import_edges, import_movielens
from recgraph.data.store import Store

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECGRAPH_DATASETS", ROOT / ".." / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "imports.json"

SERVERS = {
    "mysql": os.environ.get("RECGRAPH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    "postgres": os.environ.get(
        "RECGRAPH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"
    ),
}


@contextmanager
def fresh_database(backend: str):
    """A URL to an empty database, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    server = SERVERS[backend]
    admin = sa.create_engine(
        f"{server}/{'postgres' if backend == 'postgres' else ''}", isolation_level="AUTOCOMMIT"
    )
    name = f"recgraph_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


DATASET_JOBS = {
    "wiki-Vote": lambda store: import_edges(
        store, DATASETS / "snap-wiki-vote" / "wiki-Vote.txt", directed=True
    ),
    "ml-latest-small": lambda store: import_movielens(store, DATASETS / "movielens-latest-small"),
}


def run(backend: str, dataset: str) -> dict:
    job = DATASET_JOBS[dataset]
    with fresh_database(backend) as url:
        with Store(url) as store:
            started = time.perf_counter()
            summary = job(store)
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = job(store)
            second = time.perf_counter() - started
            counts = store.counts()
            version = store.backend()
    rows = summary.rows_read
    return {
        "backend": backend,
        "server": version,
        "dataset": dataset,
        "rows": rows,
        "import_seconds": round(first, 3),
        "rows_per_second": round(rows / first),
        "reimport_seconds": round(second, 3),
        "reimport_new_rows": sum(again.new.values()),
        "counts": {k: v for k, v in counts.items() if v},
    }


_MEMORY_CHILD = """
import resource, sys, time
from recgraph.data.imports import import_edges
from recgraph.data.store import Store
store = Store(sys.argv[2])
started = time.perf_counter()
summary = import_edges(store, sys.argv[1], directed=True, timestamps=True)
seconds = time.perf_counter() - started
print(summary.rows_read, round(seconds, 3), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_run(lines: int, folder: Path) -> dict:
    """Import a generated temporal edge list of ``lines`` lines in a child process."""
    import numpy as np

    rng = np.random.default_rng(lines)
    nodes = max(lines // 5, 10)
    path = folder / f"edges_{lines}.txt"
    with path.open("w") as handle:
        for start in range(0, lines, 100_000):
            n = min(100_000, lines - start)
            src = rng.integers(0, nodes, n)
            dst = rng.integers(0, nodes, n)
            ts = 1_600_000_000 + rng.integers(0, 10**7, n)
            handle.writelines(f"{a} {b} {t}\n" for a, b, t in zip(src, dst, ts, strict=True))
    url = f"sqlite:///{folder / f'memory_{lines}.db'}"
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(path), url],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "RECGRAPH_PROGRESS": "0"},
    ).stdout.split()
    rows, seconds, peak_kib = int(out[0]), float(out[1]), int(out[2])
    return {
        "lines": rows,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "import_seconds": seconds,
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,mysql,postgres")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is kept")
    parser.add_argument("--memory", action="store_true", help="peak memory vs file size")
    args = parser.parse_args(argv)
    if not DATASETS.is_dir():
        print(f"datasets folder {DATASETS} not found (set RECGRAPH_DATASETS)", file=sys.stderr)
        return 1
    results = []
    for backend in args.backends.split(","):
        for dataset in DATASET_JOBS:
            try:
                runs = [run(backend, dataset) for _ in range(args.repeat)]
            except sa.exc.OperationalError as exc:
                print(f"skip {backend}: {str(exc).splitlines()[0]}", file=sys.stderr)
                break
            best = min(runs, key=lambda r: r["import_seconds"])
            results.append(best)
            print(
                f"{backend:9s} {dataset:16s} {best['rows']:>8,} rows  "
                f"import {best['import_seconds']:6.2f} s ({best['rows_per_second']:>7,} rows/s)  "
                f"re-import {best['reimport_seconds']:6.2f} s, {best['reimport_new_rows']} new rows"
            )
    memory = []
    if args.memory:
        with tempfile.TemporaryDirectory() as folder:
            for lines in (100_000, 1_000_000):
                row = memory_run(lines, Path(folder))
                memory.append(row)
                print(
                    f"sqlite    generated {row['lines']:>10,} lines ({row['file_mb']:5.1f} MB)  "
                    f"import {row['import_seconds']:6.2f} s  peak RSS {row['peak_rss_mb']:6.1f} MB"
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "what": "recgraph import into a fresh database, then the same import again",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "results": results,
        "memory": memory,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
