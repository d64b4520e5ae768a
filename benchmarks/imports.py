"""Import time of wiki-Vote and MovieLens latest-small into SQLite, MariaDB and PostgreSQL.

Each run imports into a fresh database (created and dropped here for the
servers), then imports the same data again to time the idempotent re-import
(every row conflicts and is merged). Prints a table and writes
``benchmarks/results/imports.json``.

    python benchmarks/imports.py [--repeat 1] [--backends sqlite,mysql,postgres] [--memory]
    python benchmarks/imports.py --synthetic 1000000,10000000 [--backends ...] [--src DIR]

``--memory`` also imports generated edge lists of 100k and 1M lines into
SQLite, each in a child process, and reports the child's peak resident
memory: streaming keeps it nearly flat as the file grows tenfold.

``--synthetic`` imports heavy-tailed follow graphs (power-law in- and
out-degrees, as a social network has; accounts = follows / 10) of the given
sizes into a fresh database per backend, each in a child process, and prints
rows/s, CPU seconds and peak resident memory; it writes
``benchmarks/results/imports_synthetic.json``, ``.md`` and ``.png``.
``--src`` runs the children against another checkout's ``src`` folder (to
compare with an earlier version).

``--key-map CHUNKS`` streams CHUNKS chunks of 10^5 numeric ids, half of them new,
through :class:`~recgraph.data.sorted_keys.SortedKeyMap` (what a first import of
numeric ids asks for each chunk), in a child process (``--src`` applies), and
prints the CPU microseconds per id looked up; it writes
``benchmarks/results/imports_key_map.json`` (``--name`` replaces ``imports_key_map``). The machine's load average is saved with
the figures: on a shared machine wall times are long and noisy, CPU seconds less so.
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
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from recgraph.data.imports import import_edges, import_movielens
from recgraph.data.store import Store

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECGRAPH_DATASETS", ROOT / ".." / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "imports.json"
sys.path.insert(0, str(ROOT))  # for tests.data.databases

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
    from tests.data.databases import scratch_database

    try:
        with scratch_database(admin, server, backend, "recgraph_bench") as url:
            yield url
    finally:
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


_SYNTHETIC_CHILD = """
import os, resource, sys, time
from recgraph.data.imports import import_edges
from recgraph.data.store import Store
store = Store(sys.argv[2])

def server_cpu():
    # CPU seconds of this database's PostgreSQL backends (same machine: /proc), by pid
    if store.dialect != "postgresql":
        return {}
    with store.engine.connect() as conn:
        pids = [row[0] for row in conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    out = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out

server = server_cpu()
started, cpu = time.perf_counter(), time.process_time()
summary = import_edges(store, sys.argv[1], directed=True)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
server = sum(t - server.get(pid, 0.0) for pid, t in server_cpu().items())
counts = store.counts()
print(summary.rows_read, round(seconds, 3), round(cpu, 3),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, counts["follows"], counts["accounts"],
      round(server, 2))
"""


def weighted_draw(rng, p, size: int, block: int = 1 << 22):
    """``rng.choice(len(p), size=size, p=p)``, the same numbers, without its cache misses.

    ``choice`` draws uniforms and binary-searches each in the cumulative weights: at 10^7
    accounts a search is a chain of cache misses (minutes for 10^8 draws). The same uniforms
    are searched here a block at a time in sorted order (neighbouring searches touch the
    same lines) and put back in draw order.
    """
    import numpy as np

    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    uniform = rng.random(size)  # what choice draws, in the same order
    out = np.empty(size, dtype=np.int64)
    for start in range(0, size, block):
        part = uniform[start : start + block]
        order = np.argsort(part)
        out[start + order] = cdf.searchsorted(part[order], side="right")
    return out


def heavy_tailed_follows(rows: int, path: Path, seed: int = 0) -> int:
    """Write ``rows`` distinct follows ``src<TAB>dst`` with power-law degrees; return rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from recgraph.data.sorted_keys import distinct_sorted

    rng = np.random.default_rng(seed)
    accounts = max(rows // 10, 100)
    rank = np.arange(1, accounts + 1, dtype=np.float64)
    popular = rank**-1.0  # in-degree: a few accounts are followed by very many
    popular /= popular.sum()
    active = rank**-0.8  # out-degree: a few accounts follow very many
    active /= active.sum()
    shuffle = rng.permutation(accounts)  # the most active are not the most followed
    draw = int(rows * 1.3)
    src = shuffle[weighted_draw(rng, active, draw)].astype(np.int64)
    dst = weighted_draw(rng, popular, draw)
    # distinct_sorted is np.unique's answer without its hashing (minutes at 10^8 follows)
    pairs = distinct_sorted((src * accounts + dst)[src != dst])
    del src, dst
    pairs = rng.permutation(pairs)[:rows]
    table = pa.table({"src": pairs // accounts, "dst": pairs % accounts})
    options = pacsv.WriteOptions(include_header=False, delimiter="\t")
    pacsv.write_csv(table, path, options)
    return len(pairs)


def synthetic_run(backend: str, path: Path, src_dir: Path | None) -> dict:
    """Import one generated graph into a fresh database in a child process."""
    env = {**os.environ, "RECGRAPH_PROGRESS": "0"}
    if src_dir is not None:
        env["PYTHONPATH"] = str(src_dir)
    with fresh_database(backend) as url:
        out = subprocess.run(
            [sys.executable, "-c", _SYNTHETIC_CHILD, str(path), url],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.split()
        with Store(url) as store:
            version = store.backend()
    rows, seconds, cpu, peak_kib, follows, accounts, server_cpu = (
        int(out[0]),
        float(out[1]),
        float(out[2]),
        int(out[3]),
        int(out[4]),
        int(out[5]),
        float(out[6]),
    )
    return {
        "backend": backend,
        "server": version.split(" on ")[0],
        "rows": rows,
        "follows": follows,
        "accounts": accounts,
        "import_seconds": seconds,
        "cpu_seconds": cpu,
        "rows_per_second": round(rows / seconds),
        "rows_per_cpu_second": round(rows / cpu),
        "cpu_us_per_row": round(cpu / rows * 1e6, 2),
        "server_cpu_seconds": server_cpu,
        "server_cpu_us_per_row": round(server_cpu / rows * 1e6, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


_KEY_MAP_CHILD = """
import resource, sys, time
import numpy as np
from recgraph.data.sorted_keys import SortedKeyMap
chunks, rows = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
held, next_key, cpu = SortedKeyMap(), 1, 0.0
# id of the n-th distinct id: a bijection of n (odd multiplier mod 2^61), so ids are distinct,
# unsorted and spread out, and an earlier id is redrawn from its number alone
multiplier, modulus = 0x9E3779B97F4A7C15 % (1 << 61) | 1, 1 << 61
for _ in range(chunks):
    fresh = np.arange(next_key, next_key + rows // 2, dtype=np.uint64)
    again = rng.integers(1, max(next_key, 2), rows - len(fresh)).astype(np.uint64)
    numbers = np.concatenate((fresh, again)) if next_key > 1 else fresh
    values = ((numbers * np.uint64(multiplier)) % np.uint64(modulus)).astype(np.int64)
    start = time.process_time()
    keys, new = held.keys_of(values, next_key)
    cpu += time.process_time() - start
    next_key += len(new)
print(chunks * rows, len(held), round(cpu, 3), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def key_map_run(chunks: int, src_dir: Path | None, name: str, rows: int = 100_000) -> dict:
    """CPU time of :meth:`SortedKeyMap.keys_of` over ``chunks`` chunks of ``rows`` ids, half
    new, in a child process (so ``--src`` can time another checkout's class)."""
    from common import save_results

    env = {**os.environ, "RECGRAPH_PROGRESS": "0"}
    if src_dir is not None:
        env["PYTHONPATH"] = str(src_dir)
    load_before = os.getloadavg()
    out = subprocess.run(
        [sys.executable, "-c", _KEY_MAP_CHILD, str(chunks), str(rows)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split()
    looked_up, held, cpu, peak_kib = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    row = {
        "chunks": chunks,
        "rows_per_chunk": rows,
        "ids_looked_up": looked_up,
        "ids_held_at_end": held,
        "cpu_seconds": cpu,
        "cpu_us_per_id": round(cpu / looked_up * 1e6, 3),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "load_average_at_start": load_before,
    }
    print(
        f"SortedKeyMap: {chunks} chunks of {rows:,} ids ({held:,} held at the end): "
        f"CPU {cpu:.2f} s, {row['cpu_us_per_id']:.3f} us/id, peak RSS {row['peak_rss_mb']} MB, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    source = str(src_dir) if src_dir else "this checkout"
    save_results(RESULTS.with_name(f"{name}.json"), "imports key map", source=source, **row)
    return row


def synthetic(sizes: list[int], backends: list[str], src_dir: Path | None, name: str) -> list[dict]:
    """Run every size on every backend; the results files are rewritten after each run,
    so a long run that is stopped keeps what it measured."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"follows_{size}.tsv"
            rows = heavy_tailed_follows(size, path)
            for backend in backends:
                try:
                    row = synthetic_run(backend, path, src_dir)
                except (sa.exc.OperationalError, subprocess.CalledProcessError) as exc:
                    detail = getattr(exc, "stderr", "") or str(exc)
                    print(f"skip {backend} at {rows:,}: {detail.strip().splitlines()[-1]}")
                    continue
                row["file_mb"] = round(path.stat().st_size / 1e6, 1)
                results.append(row)
                save_synthetic(results, src_dir, name)
                print(
                    f"{backend:9s} {row['rows']:>11,} follows  {row['import_seconds']:8.1f} s "
                    f"({row['rows_per_second']:>8,} rows/s; {row['rows_per_cpu_second']:>8,} "
                    f"per CPU s; CPU {row['cpu_us_per_row']:.2f} us/row + server "
                    f"{row['server_cpu_us_per_row']:.2f})  peak RSS {row['peak_rss_mb']:7.1f} MB  "
                    f"load {row['load_average_1min']}"
                )
    return results


def save_synthetic(results: list[dict], src_dir: Path | None, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = RESULTS.with_name(name)
    payload = {
        "what": "recgraph import edges of a heavy-tailed synthetic follow graph into a fresh "
        "database, one child process per run",
        "source": str(src_dir) if src_dir else "this checkout",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "shared": "up to 8 developers share these 2 cores: wall times are inflated; "
            "see load_average_1min per row",
            "cpu_seconds": "of the importing process only; MariaDB and PostgreSQL do part "
            "of the work in their own server processes: server_cpu_seconds is what the "
            "PostgreSQL backends of the import's database used (read from /proc)",
        },
        "results": results,
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "| backend | follows | seconds | rows/s | rows per CPU s | CPU µs/row | server CPU µs/row "
        "| peak RSS MB | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['backend']} | {r['rows']:,} | {r['import_seconds']:.1f} | "
        f"{r['rows_per_second']:,} | {r['rows_per_cpu_second']:,} | "
        f"{r.get('cpu_us_per_row', '')} | {r.get('server_cpu_us_per_row', '')} | "
        f"{r['peak_rss_mb']} | {r['load_average_1min']} |"
        for r in results
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for backend in sorted({r["backend"] for r in results}):
        rows = [r for r in results if r["backend"] == backend]
        x = [r["rows"] for r in rows]
        axes[0].plot(x, [r["rows_per_second"] for r in rows], "o-", label=f"{backend} (wall)")
        axes[0].plot(x, [r["rows_per_cpu_second"] for r in rows], "x--", label=f"{backend} (CPU)")
        axes[1].plot(x, [r["peak_rss_mb"] for r in rows], "o-", label=backend)
    axes[0].axhline(200_000, color="grey", linestyle=":", label="target 2e5/s")
    for ax, title in zip(axes, ("rows per second", "peak RSS (MB)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("follows imported")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("recgraph import edges, heavy-tailed follow graph (shared 2-core machine)")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    print(f"wrote {stem.relative_to(ROOT)}.json, .md and .png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,mysql,postgres")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is kept")
    parser.add_argument("--memory", action="store_true", help="peak memory vs file size")
    parser.add_argument(
        "--synthetic", default=None, help="comma-separated follow counts, e.g. 1000000,10000000"
    )
    parser.add_argument("--src", type=Path, default=None, help="src folder for the children")
    parser.add_argument(
        "--key-map", type=int, default=None, metavar="CHUNKS", help="time SortedKeyMap alone"
    )
    parser.add_argument("--name", default=None, help="results file stem in benchmarks/results")
    args = parser.parse_args(argv)
    if args.key_map:
        key_map_run(args.key_map, args.src, args.name or "imports_key_map")
        return 0
    if args.synthetic:
        sizes = [int(float(s)) for s in args.synthetic.split(",")]
        synthetic(sizes, args.backends.split(","), args.src, args.name or "imports_synthetic")
        return 0
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
