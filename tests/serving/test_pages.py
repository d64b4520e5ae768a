"""The HTML routes: every asset a page loads is served by the service itself (no CDN)."""

import re

import pytest

PAGES = ["/", "/dashboard", "/docs"]


def _references(html: str) -> list[str]:
    """Every URL a page would load or link: src, href, and url(...)."""
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_only_what_the_service_serves(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = [a or b for a, b in _references(page.text)]
    assert references, f"{path} references nothing?"
    for url in references:
        assert not re.match(r"^(https?:)?//", url), f"{path} loads {url} from elsewhere"
        if url.startswith("#") or url.startswith("mailto:"):
            continue
        asset = client.get(url)
        assert asset.status_code == 200, f"{path} -> {url}: {asset.status_code}"
    assert "/static/favicon.svg" in references


def test_docs_use_the_packaged_swagger_ui(client):
    docs = client.get("/docs").text
    assert "/static/docs/swagger-ui-bundle.js" in docs and "/static/docs/swagger-ui.css" in docs
    assert "cdn" not in docs.lower() and "validatorUrl" in docs
    bundle = client.get("/static/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 500_000
    assert client.get("/redoc").status_code == 404  # ReDoc would load its logo from a CDN


def test_the_favicon_is_served(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.lstrip().startswith(b"<svg")
