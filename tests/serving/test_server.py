import multiprocessing
import os
import pickle
import socket

import pytest

from recgraph.serving.server import PortInUseError, ServerConfig, reserve_port
from recgraph.settings import Settings

#: A value other than the default for every setting.
CHANGED = {
    "database_url": "postgresql+psycopg://u:pw@db.test/rec",
    "busy_timeout": 1.5,
    "registry": "s3://bucket/models",
    "registry_keep": 2,
    "api_token": "worker-token",
    "host": "0.0.0.0",
    "port": 9123,
    "poll_seconds": 0.5,
    "overlay_refresh_seconds": 5.0,
    "max_k": 42,
    "exclude_recent_feedback": False,
    "max_body_bytes": 4096,
    "stats_cache_seconds": 3.0,
    "answer_threads": 0,
    "balance_connections": False,
    "progress": True,
}


def _clear(settings: Settings) -> dict:
    return {**settings.model_dump(mode="json"), "api_token": settings.token()}


def _settings_in_worker(config: ServerConfig, queue) -> None:
    # what a uvicorn worker does with the config it is handed: load_app() builds the app
    factory = config.load_app()
    queue.put(_clear(factory.args[0]))


def test_every_setting_reaches_a_worker_process():
    assert set(CHANGED) == set(Settings.model_fields), "a new setting needs a value here"
    settings = Settings(**CHANGED)
    defaults = Settings()
    for name in CHANGED:
        assert getattr(settings, name) != getattr(defaults, name), name
    config = ServerConfig(settings, host=settings.host, port=settings.port, workers=2)
    # uvicorn spawns its workers: a new interpreter that gets the config pickled
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_settings_in_worker, args=(config, queue))
    worker.start()
    try:
        received = queue.get(timeout=60)
    finally:
        worker.join(timeout=30)
    assert received == _clear(settings)
    assert pickle.loads(pickle.dumps(config)).recgraph_settings == settings


def test_a_busy_port_is_refused_with_the_way_out():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            reserve_port("127.0.0.1", port)
    message = str(caught.value)
    assert f"port {port}" in message and "--port" in message and "Errno" not in message


def test_a_reserved_port_is_held_until_served():
    sock = reserve_port("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError):
            reserve_port("127.0.0.1", port).close()
    finally:
        sock.close()


def test_an_address_not_of_this_machine_names_the_host_option():
    with pytest.raises(PortInUseError, match="--host"):
        reserve_port("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine


def test_malloc_arenas_are_capped_for_the_workers_unless_the_operator_set_them(monkeypatch):
    from recgraph.serving.server import MALLOC_ARENAS, limit_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    limit_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == str(MALLOC_ARENAS)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    limit_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
