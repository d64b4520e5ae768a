"""A small trained pipeline in a registry and a store, for the app, loader and page tests."""

from __future__ import annotations

import shutil

import pytest

from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig
from recgraph.jobs.quickstart import load_synthetic
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry
from recgraph.settings import Settings

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = SyntheticConfig(n_accounts=200, n_items=300, mean_follows=10, mean_interactions=15)


@pytest.fixture(scope="session")
def served_template(tmp_path_factory):
    """A store and a registry holding one trained pipeline (v1), built once; copy before writing."""
    root = tmp_path_factory.mktemp("served")
    store = Store(f"sqlite:///{root / 'store.db'}")
    load_synthetic(store, SMALL)
    pipeline = Pipeline().fit_store(store)
    store.close()
    registry = ModelRegistry(root / "models")
    registry.publish(pipeline, data=pipeline.snapshots)
    return root


@pytest.fixture
def served(served_template, tmp_path):
    """A private copy of the template: (settings, registry)."""
    shutil.copytree(served_template, tmp_path / "served")
    root = tmp_path / "served"
    settings = Settings(
        registry=str(root / "models"),
        database_url=f"sqlite:///{root / 'store.db'}",
        api_token=TOKEN,
        poll_seconds=0,
    )
    return settings, ModelRegistry(root / "models")


@pytest.fixture
def client(served):
    """A TestClient on the app over the private copy (lifespan run: the model is loaded)."""
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app

    settings, _ = served
    with TestClient(create_app(settings)) as c:
        yield c


class LiveServer:
    """The app under uvicorn on 127.0.0.1 in a thread (a real socket, as a browser sees it)."""

    def __init__(self, app, port: int | None = None) -> None:
        import socket
        import threading

        import uvicorn

        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
