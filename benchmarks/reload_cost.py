"""What loading a new version costs a server process, step by step (the ``reload`` phase of
``load.py``).

For each case of a ``load.py --reuse`` folder: in one process, ``v1`` is loaded
(imports, kernels read from numba's cache) and then a second version, as the
server's poller thread loads it (:func:`~recgraph.serving.loader.load_version`:
files, the ranker's booster and compiled trees, the warm-up answer), while a
probe thread wakes every 0.5 ms and records how long it waited (the longest
stretch the loading thread held the GIL: what an answer on the event loop or on
an answer thread waits at most); then the heap freeze after the swap
(``freeze_heap``), the same load paced as the server paces it beside a served
version (:func:`~recgraph.serving.loader.paced`: longer, in short runs), the overlay catch-up a swap starts (a scan of the store) and
dropping the old version; and what a load takes from the answers of its process
(answers asked at 100/s on 8 threads while the version loads in another: not at
all, flat out, or paced; their worst latency), and from the answers of *another* process on
the same cores (the other server worker's, which the lock does not touch: what a load's
CPU takes from them, flat out, paced as before (2 ms in 5) or as now (1 ms in 5)). CPU and wall milliseconds of each step, and the CPU of
the first answers on the new version against the same users on the old one (a
version whose first answers cost more would slow the seconds after a swap).

A case folder that holds one version only is given a second one: ``v1``
published again into its registry (not promoted), which stays there for the
next runs. A folder with none of the cases is refused (nothing measured, nothing
saved).

Prints a table and saves ``benchmarks/results/reload_cost.json``
(``reload_cost.TAG.json`` with ``--tag``).
Run: ``python benchmarks/reload_cost.py --reuse DIR`` (a folder ``load.py --reuse DIR`` filled).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import numpy as np

from common import BackgroundSampler, Republisher, save_results, stop_process
from recgraph.data.store import Store
from recgraph.pipeline import Pipeline
from recgraph.serving.feedback import catch_up_overlay
from recgraph.serving.loader import freeze_heap, load_version, paced
from recgraph.serving.registry import ModelRegistry

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {"ego-facebook-ranked": "who_to_follow", "movielens-100k-ranked": "feed"}


def timed(step) -> tuple[object, dict]:
    """``step()`` and its CPU and wall milliseconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = step()
    return out, {
        "cpu_ms": round(1000 * (time.process_time() - cpu), 1),
        "wall_ms": round(1000 * (time.perf_counter() - wall), 1),
    }


class GilProbe(BackgroundSampler):
    """A thread that sleeps 0.5 ms at a time and records how late it woke (GIL held elsewhere,
    or no core free)."""

    def __init__(self) -> None:
        super().__init__()
        self.gaps: list[float] = []

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.0005)
            now = time.perf_counter()
            self.gaps.append(now - last - 0.0005)
            last = now

    def worst_ms(self, n: int = 5) -> list[float]:
        return [round(1000 * g, 1) for g in sorted(self.gaps, reverse=True)[:n]]


def answers_cpu(pipeline: Pipeline, question: str, users: list[str]) -> float:
    """Mean CPU ms of one answer (k=10) for each of ``users``."""
    ask = pipeline.feed if question == "feed" else pipeline.suggest_accounts
    cpu = time.process_time()
    for user in users:
        ask(user, 10)
    return round(1000 * (time.process_time() - cpu) / len(users), 3)


def answers_during_loads(
    served, registry: ModelRegistry, version: str, question: str, users: list[str],
    rate: float = 100.0, threads: int = 8, trials: int = 8,
) -> dict:  # fmt: skip
    """The worst latency of answers asked at ``rate``/s for 1 s (open loop, ``threads``
    answer threads on ``served``, as a server worker's) while ``version`` loads beside it in
    another thread: not at all, flat out, or paced as the server paces it; modes interleaved,
    ``trials`` times each. What a load takes from the answers of its process."""
    import queue
    import threading

    ask = served.feed if question == "feed" else served.suggest_accounts
    asked: queue.Queue = queue.Queue()
    worst = [0.0]

    def answer() -> None:
        while (item := asked.get()) is not None:
            ask(item[1], 10)
            worst[0] = max(worst[0], time.perf_counter() - item[0])

    pool = [threading.Thread(target=answer, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()

    def load(mode: str) -> None:
        time.sleep(0.2)
        if mode != "none":
            with paced() if mode == "paced" else contextlib.nullcontext():
                load_version(registry, version)

    out: dict[str, list[float]] = {"none": [], "flat": [], "paced": []}
    for _ in range(trials):
        for mode in out:
            worst[0], start = 0.0, time.perf_counter()
            loader = threading.Thread(target=load, args=(mode,))
            loader.start()
            for i in range(int(rate)):
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
                asked.put((start + i / rate, users[i % len(users)]))
            loader.join()
            time.sleep(0.3)  # the last answers
            out[mode].append(round(1000 * worst[0], 1))
    for _ in pool:
        asked.put(None)
    for thread in pool:  # (they hold the served version: gone before it is dropped)
        thread.join()
    return {
        "rate": rate,
        "threads": threads,
        "worst_latency_ms": out,
        "median_worst_latency_ms": {m: round(float(np.median(v)), 1) for m, v in out.items()},
    }


NEIGHBOUR = """
import sys, threading, time, queue, json
from recgraph.serving.loader import load_version
from recgraph.serving.registry import ModelRegistry
import numpy as np
served = load_version(ModelRegistry(sys.argv[1]), "v1").pipeline
question, rate, threads = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ask = served.feed if question == "feed" else served.suggest_accounts
ids = served.questions[question].users.ids
users = [str(u) for u in np.random.default_rng(0).choice(ids, 200)]
asked, done = queue.Queue(), []
def answer():
    while (item := asked.get()) is not None:
        ask(users[item[0] % len(users)], 10)
        done.append(time.perf_counter() - item[1])
for _ in range(threads):
    threading.Thread(target=answer, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    done.clear()
    start = time.perf_counter()
    for i in range(int(rate * float(line))):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        asked.put((i, start + i / rate))
    time.sleep(0.3)
    print(json.dumps([round(1000 * x, 2) for x in done]), flush=True)
"""


def answers_beside_loads(
    registry: ModelRegistry, version: str, question: str,
    rate: float = 100.0, threads: int = 8, trials: int = 8,
) -> dict:  # fmt: skip
    """The worst latency and p99 of answers asked at ``rate``/s for 1.5 s in *another* process
    (a second server worker's shape) while this one loads ``version`` at 0.2 s: not at all,
    flat out, paced as reload14 paced (2 ms in 5) or as the loader paces now; modes
    interleaved, ``trials`` times each. What a load's CPU takes from the host's other
    processes' requests, which pacing's hold on the interpreter lock cannot explain."""
    import json
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", NEIGHBOUR, str(registry.root), question, str(rate), str(threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    modes = {"none": None, "flat": None, "paced 2 in 5": (0.002, 0.003), "paced now": ()}
    out: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the neighbour process did not start")
        for _ in range(trials):
            for mode, pace in modes.items():
                child.stdin.write("1.5\n")
                child.stdin.flush()
                time.sleep(0.2)
                if mode != "none":
                    with paced(*pace) if pace is not None else contextlib.nullcontext():
                        load_version(registry, version)
                latency = np.array(json.loads(child.stdout.readline()))
                out[mode].append(
                    {"p99": round(float(np.percentile(latency, 99)), 1),
                     "max": round(float(latency.max()), 1)}
                )  # fmt: skip
    finally:
        stop_process(child, timeout=10)
    return {
        "rate": rate,
        "threads": threads,
        "trials": out,
        "median": {
            mode: {key: round(float(np.median([t[key] for t in v])), 1) for key in ("p99", "max")}
            for mode, v in out.items()
        },
    }


def one_case(folder: Path, question: str) -> dict:
    registry = ModelRegistry(folder / "models")
    versions = registry.list_versions()
    if len(versions) < 2:  # a second version, published into the folder (not promoted)
        versions.append(Republisher(registry.root).publish(promote=False))
    first, figures = timed(lambda: load_version(registry, "v1"))
    freeze_heap()
    steps: dict[str, dict] = {"first_load (imports, kernels)": figures}
    with GilProbe() as probe:
        fresh, steps["load_version (beside the served one)"] = timed(
            lambda: load_version(registry, versions[-1])
        )
    with GilProbe() as paced_probe, paced():  # as the server's loader does beside a served one
        again, steps["load_version paced (the server's reload)"] = timed(
            lambda: load_version(registry, versions[-1])
        )
    del again
    _, steps["freeze_heap (after the swap)"] = timed(freeze_heap)
    store = Store(f"sqlite:///{folder / 'store.db'}", create=False)
    try:
        _, steps["overlay catch-up (swap listener)"] = timed(
            lambda: catch_up_overlay(fresh.pipeline, store)
        )
    finally:
        store.close()
    ids = fresh.pipeline.questions[question].users.ids
    users = [str(u) for u in np.random.default_rng(0).choice(ids, 200)]
    old_cpu = answers_cpu(first.pipeline, question, users)
    new_cpu = answers_cpu(fresh.pipeline, question, users)
    during = answers_during_loads(first.pipeline, registry, versions[-1], question, users)
    beside = answers_beside_loads(registry, versions[-1], question)
    held = [first]  # the last reference to the old version
    del first
    _, steps["drop the old version"] = timed(held.clear)
    return {
        "steps": steps,
        "gil_probe_worst_wait_ms_during_load": probe.worst_ms(),
        "gil_probe_worst_wait_ms_during_paced_load": paced_probe.worst_ms(),
        "answer_cpu_ms_old_version_warm": old_cpu,
        "answer_cpu_ms_new_version_first_ask": new_cpu,
        "answers_during_loads": during,
        "answers_of_another_process_during_loads": beside,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse", type=Path, required=True, help="a load.py --reuse folder")
    parser.add_argument("--tag", help="saved as reload_cost.TAG.json")
    args = parser.parse_args()
    present = [name for name in CASES if (args.reuse / name / "models").is_dir()]
    if not present:
        parser.error(
            f"{args.reuse} holds none of the cases ({', '.join(f'{n}/models' for n in CASES)}):"
            " fill it with load.py --reuse first"
        )
    results = {}
    for name in present:
        question = CASES[name]
        results[name] = one_case(args.reuse / name, question)
        print(f"{name} (load average {os.getloadavg()[0]:.1f})")
        for step, figures in results[name]["steps"].items():
            print(f"  {step:40} CPU {figures['cpu_ms']:>8} ms  wall {figures['wall_ms']:>8} ms")
        print(
            f"  GIL probe's worst waits during the load (ms): "
            f"{results[name]['gil_probe_worst_wait_ms_during_load']}, paced "
            f"{results[name]['gil_probe_worst_wait_ms_during_paced_load']}; answer CPU ms old "
            f"{results[name]['answer_cpu_ms_old_version_warm']} / new version's first asks "
            f"{results[name]['answer_cpu_ms_new_version_first_ask']}"
        )
        during = results[name]["answers_during_loads"]
        print(
            f"  worst answer latency (ms, median of {len(during['worst_latency_ms']['none'])} "
            f"s at {during['rate']:g}/s) while loading: {during['median_worst_latency_ms']}"
        )
        beside = results[name]["answers_of_another_process_during_loads"]
        print(
            f"  another process's answers (median p99 / worst ms) while loading: {beside['median']}"
        )
    path = RESULTS / f"reload_cost{'.' + args.tag if args.tag else ''}.json"
    save_results(path, "reload_cost", cases=results)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
