"""The dashboard and the API docs in a real headless Chromium, with every other host blocked."""

import httpx
import pytest

from recgraph.pipeline import Pipeline
from recgraph.serving.app import create_app
from tests.serving.app_fixtures import LiveServer
from tests.serving.conftest import SCREENSHOT_DIR, offline_page

pytestmark = pytest.mark.browser

RETRIEVERS = {"feed": ["popular", "item_knn"], "who_to_follow": ["popular", "adamic_adar"]}


def _evaluated_version(registry) -> None:
    """Publish v2 with an evaluation in its manifest (the shape quickstart writes)."""
    metrics = {}
    for question, names in RETRIEVERS.items():
        for rank, name in enumerate(["pipeline", *names]):
            for k in (10, 20, 50):
                for metric, scale in (("recall", 0.3), ("ndcg", 0.2)):
                    value = scale * (k / 50) ** 0.5 / (rank + 1)
                    prefix = question if name == "pipeline" else f"{question}/{name}"
                    metrics[f"{prefix}/{metric}@{k}"] = value
    model = Pipeline.load(registry.local_copy("v1") / "model")
    registry.publish(model, data=model.snapshots, metrics=metrics, promote=True, notes="test")


@pytest.mark.slow
def test_dashboard_shows_store_evaluation_and_live_requests(browser, served):
    from playwright.sync_api import expect

    settings, registry = served
    _evaluated_version(registry)
    with LiveServer(create_app(settings)) as server:
        page, blocked, errors = offline_page(
            browser, server.url, viewport={"width": 1400, "height": 1100}
        )
        page.goto(f"{server.url}/dashboard")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=20_000)
        expect(page.locator("#dashboard-status")).to_contain_text("model v2")

        # the store: counts, rows over time, degree distributions
        expect(page.locator('[data-count="accounts"] dd')).to_have_text("200")
        expect(page.locator('[data-count="items"] dd')).to_have_text("300")
        assert int(page.locator("#chart-interactions").get_attribute("data-points")) > 3
        assert int(page.locator("#chart-follows").get_attribute("data-points")) > 3
        for name in ("followers", "following", "item_popularity", "user_activity"):
            chart = page.locator(f"#degree-{name}")
            assert int(chart.get_attribute("data-bars")) >= 3, name
            assert chart.locator("rect.bar").count() == int(chart.get_attribute("data-bars"))

        # the served version's evaluation: one curve per retriever (and the pipeline)
        for question, names in RETRIEVERS.items():
            for metric in ("recall", "ndcg"):
                chart = page.locator(f'[data-question="{question}"] .curve[data-metric="{metric}"]')
                expect(chart.locator("path.line")).to_have_count(len(names) + 1)
                assert chart.get_attribute("data-points") == str(3 * (len(names) + 1))
            table = page.locator(f'[data-question="{question}"] table.metrics')
            expect(table).to_contain_text("k=50")

        # live requests, read from /metrics
        with httpx.Client(base_url=server.url) as client:
            for i in range(25):
                assert client.get(f"/v1/users/did:synth:{i:05d}/feed").status_code == 200
            client.get("/v1/users/x/feed?k=0")  # a 422
        row = page.locator('#routes tr[data-route="/v1/users/{user}/feed"]')
        expect(row).to_be_visible(timeout=15_000)
        expect(row.locator("td").nth(0)).to_have_text("26", timeout=15_000)
        expect(row.locator("td").nth(4)).to_have_text("1")  # 4xx
        assert float(row.locator("td").nth(3).inner_text()) > 0  # a p95 in ms
        assert int(page.locator("#chart-rate").get_attribute("data-series")) >= 1
        assert page.locator("#chart-latency path.line").count() >= 1

        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "dashboard.png"), full_page=True)
        assert not errors, errors
        assert not blocked, f"the dashboard tried to load from elsewhere: {blocked}"


@pytest.mark.slow
def test_api_docs_render_without_internet(browser, served):
    from playwright.sync_api import expect

    settings, _ = served
    with LiveServer(create_app(settings)) as server:
        page, blocked, errors = offline_page(browser, server.url)
        page.goto(f"{server.url}/docs")
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=20_000)
        assert page.locator(".swagger-ui .opblock").count() >= 10
        expect(page.get_by_text("/v1/feedback").first).to_be_visible()
        assert not blocked, f"the docs tried to load from elsewhere: {blocked}"
        assert not errors, errors
