"""The web page in a real headless Chromium (Debian's, never a downloaded browser)."""

import pytest

from recgraph.serving.app import create_app
from tests.serving.app_fixtures import TOKEN, LiveServer
from tests.serving.conftest import SCREENSHOT_DIR, offline_page

pytestmark = pytest.mark.browser


@pytest.mark.slow
def test_search_suggest_open_feed_like_and_refresh(browser, served):
    from playwright.sync_api import expect

    settings, _ = served
    with LiveServer(create_app(settings)) as server:
        page, blocked, errors = offline_page(
            browser, server.url, viewport={"width": 1280, "height": 1000}
        )
        page.goto(f"{server.url}/#token={TOKEN}")
        expect(page.locator("#model-status")).to_contain_text("Model v1")

        # who to follow: an example account, searched by its handle
        example = page.locator("#account-examples button").first
        handle = example.inner_text()
        page.fill("#account-input", handle)
        page.click("#account-form button[type=submit]")
        suggestions = page.locator("#suggestions li")
        expect(suggestions).to_have_count(10)
        expect(suggestions.first.locator(".reason")).to_contain_text("followed by @")
        expect(suggestions.first.locator(".tag").first).to_have_text("adamic_adar")
        expect(page.locator("#account-status")).to_contain_text("personalised")

        # the feed of the same account, then a like
        page.fill("#feed-input", handle)
        page.click("#feed-form button[type=submit]")
        feed = page.locator("#feed li")
        expect(feed).to_have_count(10)
        expect(page.locator("#feed .reason").first).not_to_be_empty()
        before = page.locator("#feed").get_attribute("data-version")
        liked_id = feed.first.get_attribute("data-id")
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "page.png"), full_page=True)
        feed.first.get_by_role("button", name="Like", exact=False).first.click()
        expect(page.locator("#feed-status")).to_contain_text("Liked")
        expect(page.locator("#feed-status")).to_contain_text("feed refreshed")
        assert page.locator("#feed").get_attribute("data-version") != before
        expect(feed).to_have_count(10)
        ids = [feed.nth(i).get_attribute("data-id") for i in range(10)]
        assert liked_id not in ids  # the liked item left the feed at once

        # an unknown user still gets a feed, labelled as the new-user fallback
        page.fill("#feed-input", "somebody-new")
        page.click("#feed-form button[type=submit]")
        expect(page.locator("#feed .reason").first).to_have_text("popular: new user")
        page.screenshot(path=str(SCREENSHOT_DIR / "page-new-user.png"), full_page=True)
        assert not errors, errors
        assert not blocked, f"the page tried to load from elsewhere: {blocked}"
