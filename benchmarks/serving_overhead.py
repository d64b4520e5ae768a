"""What the service costs per answer beside the model: CPU microseconds per request, layer by layer.

For the two ``ranked`` cases of ``load.py`` (same data, same pipelines, trained
the same way), the served app is built as ``recgraph serve`` builds it, then
its pipeline's answers are computed once and replaced by a dictionary lookup,
so that what is left of a request's CPU is the service's own: the store read
the handler makes, the JSON, the handler, and the whole ASGI app (middleware,
routing, parameters; the handler run inline, as the thread pool would run it).
Beside them, with the real model and interleaved on fresh users (each way on
other users, so that the walks' per-user cache favours none): ``question.answer``
(``load.py``'s in-process figure), the handler, and the ASGI app. CPU time of the
measuring thread (``time.thread_time``): on a machine shared with other jobs it
says what a request costs, which wall-clock cannot; differences between layers
are measured in the same moments, so they hold under load. Uvicorn's own part
(HTTP parsing, sockets, the thread hop) is not here: ``load.py`` measures whole
server processes.

Prints a table and saves ``benchmarks/results/serving_overhead.json``.
Run: ``python benchmarks/serving_overhead.py`` (needs ../shared/datasets or ``RECGRAPH_DATASETS``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

import load
from common import datasets_folder, save_results
from recgraph.data.store import Store
from recgraph.jobs.train import train_pipeline
from recgraph.serving.app import create_app
from recgraph.serving.registry import ModelRegistry
from recgraph.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
REPEATS = 3


def asgi_get(app, loop, path: str, query: str) -> int:
    """One GET through the whole ASGI app in this thread; its status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    loop.run_until_complete(app(scope, receive, send))
    return sent[0]["status"]


def inline_threadpool(app) -> None:
    """Run sync endpoints in the calling thread (one thread's CPU then holds the request),
    the answers too (``app``'s answer threads set aside)."""
    import fastapi.routing

    from recgraph.serving import guards

    async def inline(func, *args, **kwargs):
        return func(*args, **kwargs)

    fastapi.routing.run_in_threadpool = inline
    if hasattr(guards, "run_in_threadpool"):
        guards.run_in_threadpool = inline
    app.state.answer_executor = None  # AnswerRoute then takes run_in_threadpool, inlined


def per_request_us(call, users: list[str]) -> float:
    """Least of REPEATS runs over ``users``: CPU microseconds per call."""
    best = []
    for _ in range(REPEATS):
        start = time.thread_time()
        for user in users:
            call(user)
        best.append(1e6 * (time.thread_time() - start) / len(users))
    return round(min(best), 1)


def measure(case: dict, root: Path, work: Path) -> dict:
    folder = work / case["name"].replace(" ", "-")
    folder.mkdir()
    db = f"sqlite:///{folder / 'store.db'}"
    store = Store(db)
    case["load"](store, root)
    train_pipeline(store, ModelRegistry(folder / "models"), case.get("pipeline"))
    store.close()
    settings = Settings(
        registry=str(folder / "models"), database_url=db, api_token="bench", poll_seconds=0
    )
    app = create_app(settings)
    service, loader = app.state.service, app.state.loader
    loader.start()
    pipeline = loader.current.pipeline
    feed = case["question"] == "feed"
    question = pipeline.questions[case["question"]]
    handler = service.feed if feed else service.suggestions
    prefix, suffix = case["path"].split("{user}")
    path_tail, _, query = suffix.partition("?")
    ids = [str(u) for u in np.random.default_rng(0).permutation(question.users.ids)]
    loop = asyncio.new_event_loop()
    inline_threadpool(app)

    def through_app(user: str) -> None:
        assert asgi_get(app, loop, prefix + user + path_tail, query) == 200

    # the real model, interleaved on fresh users
    ways = {
        "question.answer": lambda u: question.answer(u, 10),
        "handler": lambda u: handler(u, 10),
        "ASGI app": through_app,
    }
    for user in ids[-20:]:
        for way in ways.values():
            way(user)
    names = list(ways)
    times: dict[str, list[float]] = {name: [] for name in names}
    rounds = min(300, (len(ids) - 20) // len(names))
    for i in range(rounds):
        for j, name in enumerate(names):
            user = ids[len(names) * i + (i + j) % len(names)]
            start = time.thread_time()
            ways[name](user)
            times[name].append(1e6 * (time.thread_time() - start))
    model = {name: round(float(np.mean(values)), 1) for name, values in times.items()}

    # canned answers: the service's own work alone
    users = ids[:500]
    ask_name = "feed" if feed else "suggest_accounts"
    ask = getattr(pipeline, ask_name)
    answers = {user: ask(user, 10, exclude=[]) for user in users}
    setattr(pipeline, ask_name, lambda user, k=None, *, exclude=(), **kw: answers[user])
    if feed:
        store_read = per_request_us(service.feedback.items_of, users)
    else:
        shown = {user: [r.id for r in answers[user].results] for user in users}
        store_read = per_request_us(lambda u: service.feedback.follows_among(u, shown[u]), users)
    canned = {
        "store read": store_read,
        "JSON answer (respond)": per_request_us(
            lambda u: service.respond(case["question"], u, answers[u], loader.current), users
        ),
        "handler": per_request_us(lambda u: handler(u, 10), users),
        "ASGI app": per_request_us(through_app, users),
    }
    loader.stop()
    loop.close()
    return {
        "dataset": case["name"],
        "endpoint": case["endpoint"],
        "real_model_cpu_us_per_request": model,
        "canned_answers_cpu_us_per_request": canned,
    }


def main() -> None:
    root = datasets_folder()
    cases = [case for case in load.CASES if "ranked" in case["name"]]
    with tempfile.TemporaryDirectory(prefix="recgraph-overhead-") as work:
        results = [measure(case, root, Path(work)) for case in cases]
    for result in results:
        print(f"\n{result['dataset']} ({result['endpoint']}), CPU µs per request")
        for part, figures in (
            ("real model", result["real_model_cpu_us_per_request"]),
            ("canned answers", result["canned_answers_cpu_us_per_request"]),
        ):
            print(f"  {part}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()))
    payload = save_results(
        RESULTS / "serving_overhead.json", "serving_overhead", results=results, repeats=REPEATS
    )
    print(f"\nload average at the end {payload['load_average_at_end']}")


if __name__ == "__main__":
    main()
