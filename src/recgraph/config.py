"""Settings: defaults in code, overridden by ``RECGRAPH_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_FILE = "recgraph.db"


class Settings(BaseSettings):
    """Process-wide settings.

    ``database_url`` picks the store backend: ``sqlite:///path.db`` (the
    default, a file in the working directory), ``mysql+pymysql://...`` or
    ``postgresql+psycopg://...``.
    """

    model_config = SettingsConfigDict(env_prefix="RECGRAPH_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_FILE}"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``RECGRAPH_DATABASE_URL``, else SQLite."""
    if explicit:
        return explicit
    return Settings().database_url
