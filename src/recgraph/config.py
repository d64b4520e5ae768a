"""Settings: defaults in code, overridden by ``RECGRAPH_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_FILE = "recgraph.db"


class Settings(BaseSettings):
    """Process-wide settings.

    ``database_url`` picks the store backend: ``sqlite:///path.db`` (the
    default, a file in the working directory), ``mysql+pymysql://...`` or
    ``postgresql+psycopg://...``. ``busy_timeout`` bounds how long a SQLite
    write waits for another writer (an import, a crawl, a feedback POST).
    """

    model_config = SettingsConfigDict(env_prefix="RECGRAPH_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_FILE}"
    #: Seconds a SQLite writer waits for another writer's lock before giving up with a
    #: clear error (``RECGRAPH_BUSY_TIMEOUT``); the store is left unchanged.
    busy_timeout: float = 15.0


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``RECGRAPH_DATABASE_URL``, else SQLite."""
    if explicit:
        return explicit
    return Settings().database_url


def busy_timeout(explicit: float | None = None) -> float:
    """Seconds a SQLite writer waits for a lock: an explicit value, else ``RECGRAPH_BUSY_TIMEOUT``."""
    if explicit is not None:
        return float(explicit)
    return Settings().busy_timeout
