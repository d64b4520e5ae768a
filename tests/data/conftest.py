"""Store fixtures: the same tests run on SQLite, MariaDB and PostgreSQL.

Each server test gets a fresh database that is dropped afterwards. A server
that does not answer skips its tests with the URL in the reason. Override
the server URLs with ``RECGRAPH_TEST_MYSQL_URL`` / ``RECGRAPH_TEST_POSTGRES_URL``
(without a database name).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from recgraph.data.store import Store
from tests.data.databases import scratch_database

MYSQL_SERVER = os.environ.get("RECGRAPH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRES_SERVERS = (
    [os.environ["RECGRAPH_TEST_POSTGRES_URL"]]
    if "RECGRAPH_TEST_POSTGRES_URL" in os.environ
    else [
        "postgresql+psycopg://postgres@127.0.0.1:5432",
        "postgresql+psycopg://root@127.0.0.1:5432",
    ]
)

#: Server URL -> engine on its admin database, or the reason it cannot be used.
_servers: dict[str, sa.Engine | str] = {}


def _admin_engine(backend: str) -> tuple[sa.Engine | None, str]:
    """An AUTOCOMMIT engine that can create databases, or None and why not."""
    candidates = [MYSQL_SERVER] if backend == "mysql" else POSTGRES_SERVERS
    reasons = []
    for server in candidates:
        if server not in _servers:
            admin_db = "" if backend == "mysql" else "postgres"
            url = sa.make_url(f"{server.rstrip('/')}/{admin_db}")
            timeout = {"connect_timeout": 3}
            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args=timeout)
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("select 1")
                _servers[server] = engine
            except Exception as exc:  # driver missing, refused, auth
                engine.dispose()
                _servers[server] = f"{server}: {str(exc).splitlines()[0][:160]}"
        found = _servers[server]
        if isinstance(found, sa.Engine):
            return found, server
        reasons.append(found)
    return None, "; ".join(reasons)


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request, tmp_path: Path):
    """A URL to an empty database on each backend; dropped after the test."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    engine, server = _admin_engine(backend)
    if engine is None:
        pytest.skip(f"{backend} server unreachable ({server})")
    with scratch_database(engine, server, backend, "recgraph_test") as url:
        yield url


@pytest.fixture
def store(store_url: str):
    """An empty :class:`Store` on each backend."""
    with Store(store_url) as opened:
        yield opened


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` byte for byte (``\\r\\n`` stays CRLF)."""
    path.write_bytes(text.encode(encoding))
    return path


def movielens_latest(directory: Path, ratings: str, movies: str) -> Path:
    """A MovieLens "latest" folder (``ratings.csv``, ``movies.csv``) with these texts."""
    directory.mkdir()
    write_text(directory / "ratings.csv", ratings)
    write_text(directory / "movies.csv", movies)
    return directory
