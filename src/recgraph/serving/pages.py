"""The HTML the service serves: the recommendation page, the dashboard and the API docs.

Everything a page loads comes from this service, so it works without
internet: our pages and their scripts from ``serving/static``, and Swagger UI
from the assets of the ``fastapi-offline`` package (in the ``serve`` extra)
instead of a CDN. ReDoc is not offered: its page loads a logo from its CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from recgraph.errors import ConfigError

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_ASSETS_URL = "/static/docs"
FAVICON = STATIC_DIR / "favicon.svg"
FAVICON_URL = f"{STATIC_URL}/favicon.svg"


def docs_assets_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js`` and ``swagger-ui.css``."""
    try:
        import fastapi_offline
    except ImportError as exc:  # pragma: no cover - in the serve extra
        raise ConfigError(
            "the offline API docs need fastapi-offline: pip install 'recgraph[serve]'"
        ) from exc
    folder = Path(fastapi_offline.__file__).parent / "static"
    if not (folder / "swagger-ui-bundle.js").exists():  # pragma: no cover
        raise ConfigError(f"no Swagger UI assets in {folder}: reinstall fastapi-offline")
    return folder


def mount_static(app: FastAPI) -> None:
    """Serve ``/static`` (our pages' files) and ``/static/docs`` (Swagger UI)."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")


class Pages:
    """Handlers of the HTML routes (listed with the API's in ``app.py``)."""

    def __init__(self, title: str, openapi_url: str = "/openapi.json") -> None:
        self.title = title
        self.openapi_url = openapi_url

    def index(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    def index_alias(self) -> RedirectResponse:
        return RedirectResponse("/")

    def dashboard(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")

    def favicon(self) -> FileResponse:
        return FileResponse(FAVICON, media_type="image/svg+xml")

    def swagger(self) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=self.openapi_url,
            title=f"{self.title} API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=FAVICON_URL,
            # no badge that asks an online validator about the schema
            swagger_ui_parameters={"validatorUrl": None},
        )

    def swagger_redirect(self) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
