"""Screenshots of the dashboard, the recommendation page and the API docs, with no internet.

The real flow runs on the synthetic social network: ``run_quickstart`` loads it
into a SQLite store, evaluates the baselines and the pipeline, and publishes
the pipeline with that evaluation in its manifest; the app then serves it on
127.0.0.1 (in this process). A bounded stream of requests (feeds, suggestions,
similar items, a few bad ones) runs while headless Chromium (Debian's) shows
the dashboard, so its live charts have something to draw. Every request the
browser makes to another host is blocked and counted (the target: none).

Saves ``benchmarks/results/dashboard.png`` (full page), ``page.png``,
``docs.png`` and ``dashboard_screenshots.json`` (what was captured, the
traffic sent, blocked requests). Run: ``python benchmarks/dashboard_screenshots.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

CHROMIUM = os.environ.get("RECGRAPH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def traffic(base: str, users: list[str], items: list[str], stop: threading.Event, rate: float,
            sent: dict[str, int]) -> None:  # fmt: skip
    """Requests at about ``rate`` per second until ``stop``: mostly answers, a few errors."""
    rng = random.Random(0)
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            roll = rng.random()
            user = rng.choice(users)
            if roll < 0.5:
                path = f"/v1/users/{user}/feed?k=10"
            elif roll < 0.8:
                path = f"/v1/accounts/{user}/suggestions?k=10"
            elif roll < 0.95:
                path = f"/v1/items/{rng.choice(items)}/similar?k=5"
            else:
                path = "/v1/users/x/feed?k=0"  # 422
            status = client.get(path).status_code
            sent[str(status)] = sent.get(str(status), 0) + 1
            stop.wait(rng.expovariate(rate))


def main() -> None:
    from playwright.sync_api import expect, sync_playwright
    from tests.serving.app_fixtures import LiveServer

    from recgraph.data.store import Store
    from recgraph.jobs.quickstart import run_quickstart
    from recgraph.serving.app import create_app
    from recgraph.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="of traffic before the shot")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="recgraph-dashboard-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        url = f"sqlite:///{work / 'store.db'}"
        start = time.perf_counter()
        result = run_quickstart(url, progress=False, registry=str(work / "models"))
        prepare_seconds = time.perf_counter() - start
        with Store(url) as store:
            users = store.accounts_frame()["external_id"].sample(200, random_state=0).tolist()
            items = store.items_frame()["external_id"].sample(200, random_state=0).tolist()
        settings = Settings(registry=str(work / "models"), database_url=url, poll_seconds=0,
                            api_token="screenshots")  # fmt: skip
        sent: dict[str, int] = {}
        blocked: list[str] = []
        errors: list[str] = []
        with LiveServer(create_app(settings)) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

            def page_at(path: str, height: int):
                page = browser.new_page(viewport={"width": 1400, "height": height})
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if route.request.url.startswith(server.url)
                        else (blocked.append(route.request.url), route.abort())
                    ),
                )
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"{server.url}{path}")
                return page

            stop = threading.Event()
            load = threading.Thread(
                target=traffic, args=(server.url, users, items, stop, args.rate, sent), daemon=True
            )
            dashboard = page_at("/dashboard", 1100)
            load.start()
            expect(dashboard.locator("body")).to_have_attribute(
                "data-ready", "true", timeout=60_000
            )
            # wait inside playwright: it must keep answering the page's routed requests
            dashboard.wait_for_timeout(args.seconds * 1000)
            dashboard.screenshot(path=str(RESULTS / "dashboard.png"), full_page=True)
            stop.set()
            load.join(timeout=20)
            curves = dashboard.locator(".curve path.line").count()

            page = page_at("/", 1000)
            expect(page.locator("#model-status")).to_contain_text("Model v1", timeout=30_000)
            page.locator("#feed-examples button").first.click()
            expect(page.locator("#feed li")).to_have_count(10, timeout=30_000)
            page.screenshot(path=str(RESULTS / "page.png"), full_page=True)

            docs = page_at("/docs", 1000)
            expect(docs.locator(".swagger-ui .opblock").first).to_be_visible(timeout=30_000)
            docs.screenshot(path=str(RESULTS / "docs.png"))
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "benchmark": "dashboard_screenshots",
        "data": result.source,
        "counts": result.counts,
        "evaluated_models": {
            k: [r.model for r in rep.results] for k, rep in result.reports.items()
        },
        "curves_drawn": curves,
        "traffic": {"rate_per_second": args.rate, "seconds": args.seconds, "responses": sent},
        "blocked_requests": blocked,
        "page_errors": errors,
        "prepare_seconds": round(prepare_seconds, 1),
        "load_average": list(os.getloadavg()),
        "note": "machine shared with other developers while this ran",
        "screenshots": ["dashboard.png", "page.png", "docs.png"],
    }
    (RESULTS / "dashboard_screenshots.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if blocked or errors:
        sys.exit("the pages tried to reach another host or raised errors (see above)")


if __name__ == "__main__":
    main()
