"""Shared by the serving tests: an empty model registry on each filesystem, the app fixtures,
and for the browser tests one headless Chromium (Debian's, never a downloaded browser)."""

import os
import shutil
import uuid
from pathlib import Path

import pytest

from recgraph.serving.registry import ModelRegistry

# an empty store on each backend (SQLite, MariaDB, PostgreSQL): the feedback probes' SQL on real servers
from tests.data.conftest import store_url  # noqa: F401

# the store, registry and app fixtures, for every test of this folder
from tests.serving.app_fixtures import client, served, served_template  # noqa: F401


@pytest.fixture(autouse=True)
def load_lock_dir(tmp_path, monkeypatch):
    """The host's model load lock files of this test's loaders: in its own folder, not the
    user's registry cache (so that tests leave none behind)."""
    from recgraph.serving import loader

    folder = tmp_path / "load-locks"
    folder.mkdir()
    monkeypatch.setattr(loader, "LOAD_LOCK_DIR", folder)
    return folder


CHROMIUM = Path(os.environ.get("RECGRAPH_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where screenshots go (look at them: the pages should read well).
SCREENSHOT_DIR = Path(os.environ.get("RECGRAPH_SCREENSHOTS", "/tmp/recgraph-screenshots"))


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path) -> ModelRegistry:
    """An empty registry on a local folder, or on fsspec's in-memory filesystem (removed after)."""
    if request.param == "local":
        yield ModelRegistry(tmp_path / "models")
        return
    root = f"memory://registry-{uuid.uuid4().hex}"
    yield ModelRegistry(root, cache_dir=tmp_path / "cache")
    ModelRegistry(root).fs.rm(root.removeprefix("memory://"), recursive=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (scripts/install.sh)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (the Python package) is not installed"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def offline_page(browser, base_url: str, **options):
    """A page that may load only from ``base_url``; returns (page, blocked URLs, page errors)."""
    page = browser.new_page(**options)
    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route):
        if route.request.url.startswith(base_url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, blocked, errors
