"""A scratch database on a MariaDB or PostgreSQL server: created empty, dropped afterwards.

One owner for the store tests' server fixtures (``tests/data/conftest.py``) and
the import benchmark (``benchmarks/imports.py``), which both need an empty
database per run on a server they already reach.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def scratch_database(admin: sa.Engine, server: str, backend: str, prefix: str) -> Iterator[str]:
    """The URL of a new empty database on ``server``, dropped on exit.

    ``admin`` is an AUTOCOMMIT engine on the server's admin database; the
    name is ``prefix`` and a random suffix (names are never input). On
    PostgreSQL the drop is ``WITH (FORCE)``: a pooled connection of the run
    may still hold the database open.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
