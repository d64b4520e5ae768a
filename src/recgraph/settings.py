"""The one root of every process setting: defaults in code, ``RECGRAPH_*`` variables over them,
command-line options over both.

A command builds one :class:`Settings` (:func:`load_settings`) and passes it
down; library functions that take a ``settings`` argument read
``load_settings()`` only when given none. Nothing else reads ``RECGRAPH_*``
variables, and nothing writes them back: a server's worker processes get the
settings object itself (see :mod:`recgraph.serving.server`).

Secrets never reach output in clear: :func:`mask_url` hides the password of a
URL, :func:`redact` and :class:`RedactingFilter` hide known secrets in text and
log records (a bot token inside a request URL, say).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recgraph.errors import ConfigError

ENV_PREFIX = "RECGRAPH_"
ConfigT = TypeVar("ConfigT", bound=BaseModel)
DEFAULT_SQLITE_FILE = "recgraph.db"
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_SQLITE_FILE}"
DEFAULT_REGISTRY = "./models"
#: What a masked secret is shown as.
MASK = "***"
#: Query parameters whose values are secrets (``?password=``, ``?api_key=``, ...).
_SECRET_KEY = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)


class Settings(BaseSettings):
    """Every process setting, each overridable by ``RECGRAPH_<NAME>``.

    Attributes
    ----------
    database_url
        The store: ``sqlite:///path.db`` (default ``sqlite:///recgraph.db``,
        a file in the working directory), ``mysql+pymysql://...`` or
        ``postgresql+psycopg://...``.
    busy_timeout
        Seconds a SQLite write waits for another writer's lock before it gives
        up with a clear error (:class:`~recgraph.data.sql.StoreBusyError`: an
        import stops and leaves the store as it was; the API answers 503 with
        ``Retry-After``).
    registry
        Model registry folder or fsspec URL.
    registry_keep
        How many of the newest registry versions each publish of ``recgraph
        train`` / ``recgraph run`` keeps (the current one is always kept);
        ``0`` keeps them all.
    api_token
        Bearer token that the service's writes (feedback, reload) require.
        Without one they are refused.
    host, port
        Where the service listens.
    poll_seconds
        How often the service checks the registry's ``CURRENT`` pointer
        (0: never; reload through ``POST /v1/admin/reload`` only).
    overlay_refresh_seconds
        How often each server process reads the follows and likes stored since its
        last look (by another worker's ``POST /v1/feedback``, or the crawler)
        into its walk models' overlay (0: only when a version is loaded).
    max_k
        The largest ``?k=`` any endpoint accepts (a question's own ``max_k``
        can be lower).
    exclude_recent_feedback
        Read the user's feedback from the store on each request, so that what
        was liked, disliked, viewed or followed after training is not
        suggested again.
    max_body_bytes
        The largest request body the service reads; larger ones get 413
        while they stream in, before they are buffered.
    answer_threads
        Threads of each server process that compute answers (the plain ``def``
        answer handlers); ``0`` computes them on the event loop itself, without
        the hop to a thread and back (a SQLite store only: on PostgreSQL or
        MariaDB each answer would wait a network round trip with every other
        request of the process stalled behind it, so ``0`` is refused there).
        A private in-memory store (``sqlite://``) is refused too (SQLAlchemy
        gives each thread a database of its own). On the loop the answers'
        store reads go through an engine of their own, read-only (``PRAGMA
        query_only``), beside the pool that feedback writes use: they never
        wait for a pooled connection, a SQLite reader in WAL mode does not wait
        for writers, and a busy store is given up after 0.25 s a read (up to
        0.5 s for suggestions: see
        :data:`recgraph.serving.app.ANSWER_READ_BUSY_TIMEOUT`); the answer then
        goes out without the check of what was taken since training, counted in
        ``recgraph_recent_feedback_unchecked_total``. Why 40 and not 0: with answers canned (the service's
        own cost) server CPU ms a request 1.035 -> 0.80-0.84 (ego-Facebook
        ranked) and 0.94-0.965 -> 0.665-0.68 (MovieLens 100k ranked), and on an
        idle machine p99 7.5 / 8.2 ms against 10.9 / 30.1 (ranked ego-Facebook /
        MovieLens 100k, 2 workers, 200 requests/s:
        ``benchmarks/results/load_ranked.answer_threads0.json``); but with the ranked models
        on a machine shared with other jobs (load 11-15, three alternated rounds,
        steady and reload phases), server CPU per request x0.96-0.99 and p99
        0.8-10.7 s against 26-586 ms: a process whose answers run on one
        thread gets a smaller share of busy cores, its queue grows past the
        rate, and it does not recover until the load drops; served side by side
        at 100 requests/s each (load 9, steady): CPU x0.93-0.96, p99 35-1436 ms
        against 26-294 (``benchmarks/results/load_ab.serve14b-threads.json``,
        ``load_ab_paired.serve14b-threads.json``).
    balance_connections
        With ``--workers N`` (N >= 2, Linux: a ``SO_REUSEPORT`` socket a worker), a
        worker holding more keep-alive connections than its even share plus one
        answers a request on one of them with ``Connection: close``, so that the
        client reconnects and the kernel hashes the new connection to a worker
        again (:mod:`recgraph.serving.balance`); ``False`` leaves connections where
        the kernel put them (64 split as unevenly as 23/41).
    stats_cache_seconds
        How long the dashboard's store statistics are reused before they are
        counted again (they scan whole tables).
    progress
        Draw progress bars: ``None`` on a terminal only, ``True``/``False``
        always/never.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    busy_timeout: float = Field(default=15.0, ge=0, le=3600)
    registry: str = DEFAULT_REGISTRY
    registry_keep: int = Field(default=5, ge=0)
    api_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    poll_seconds: float = Field(default=2.0, ge=0)
    overlay_refresh_seconds: float = Field(default=30.0, ge=0)
    max_k: int = Field(default=100, ge=1, le=10_000)
    exclude_recent_feedback: bool = True
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)
    stats_cache_seconds: float = Field(default=30.0, ge=0)
    answer_threads: int = Field(default=40, ge=0, le=1000)
    balance_connections: bool = True
    progress: bool | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _empty_means_off(cls, value: Any) -> Any:
        # RECGRAPH_PROGRESS= (set but empty) has always meant "off"
        return False if value == "" else value

    @field_validator("database_url", "registry")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def __repr_args__(self) -> Any:
        # a settings object in a log line or a traceback must not show the database password
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "database_url" else value

    def token(self) -> str | None:
        """The API token in clear, or None (never print it)."""
        return self.api_token.get_secret_value() if self.api_token else None

    @property
    def safe_database_url(self) -> str:
        """:attr:`database_url` with its password masked, for messages and logs."""
        return mask_url(self.database_url)

    def secrets(self) -> list[str]:
        """The secret values these settings hold, for :func:`redact`."""
        found = [self.token() or ""]
        password = urlsplit(self.database_url).password
        return [s for s in [*found, password or ""] if s]


def load_settings(**overrides: Any) -> Settings:
    """:class:`Settings` from the environment, with ``overrides`` (options) on top.

    Overrides that are ``None`` are left out, so an option nobody gave keeps
    the variable's or the default value. A bad value raises
    :class:`~recgraph.errors.ConfigError` naming the variable.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            where = name if name in given else f"{ENV_PREFIX}{name.upper()}"
            problems.append(f"{where}: {error['msg']}")
        raise ConfigError("bad setting: " + "; ".join(problems)) from None


def config_of(config_class: type[ConfigT], config: ConfigT | Mapping[str, Any] | None) -> ConfigT:
    """A component's config: ``config`` itself, or validated from its fields (none: the defaults)."""
    if isinstance(config, config_class):
        return config
    return config_class.model_validate(dict(config or {}))


def validated_config(
    config_class: type[ConfigT],
    config: BaseModel | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    name: str = "",
    what: str = "parameters",
) -> ConfigT:
    """``config_class`` from a config object or its fields, with ``overrides`` on top.

    A bad or unknown key raises :class:`~recgraph.errors.ConfigError` naming
    it (``name.key`` when ``name``, a model's or an index's, is given) and
    the keys the config knows. Retrievers and indexes build their configs so.
    """
    values = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
    values.update(overrides or {})
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        prefix = f"{name}." if name else ""
        problems = "; ".join(
            f"{prefix}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        allowed = ", ".join(config_class.model_fields) or "(none)"
        raise ConfigError(f"invalid {what}: {problems} (known: {allowed})") from None


def database_url(explicit: str | None = None, settings: Settings | None = None) -> str:
    """The store URL: ``explicit``, else the settings' (``$RECGRAPH_DATABASE_URL``, else SQLite)."""
    if explicit:
        return explicit
    return (settings or load_settings()).database_url


def busy_timeout(explicit: float | None = None, settings: Settings | None = None) -> float:
    """Seconds a SQLite writer waits for a lock: ``explicit``, else the settings'
    (``$RECGRAPH_BUSY_TIMEOUT``, else 15)."""
    if explicit is not None:
        return float(explicit)
    return (settings or load_settings()).busy_timeout


def registry_root(explicit: str | None = None, settings: Settings | None = None) -> str:
    """The model registry: ``explicit``, else the settings' (``$RECGRAPH_REGISTRY``, else
    ``./models``)."""
    if explicit:
        return str(explicit)
    return (settings or load_settings()).registry


# ---------------------------------------------------------------------- secrets
def mask_url(url: str) -> str:
    """``url`` with the password of its user part and secret-looking query values masked.

    Works for database URLs (``postgresql+psycopg://u:pw@host/db`` ->
    ``postgresql+psycopg://u:***@host/db``) and web URLs alike; a string that
    is not a URL comes back unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEY.search(key) for key, _ in pairs):
            query = urlencode(
                [(key, MASK if _SECRET_KEY.search(key) else value) for key, value in pairs],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret (longest first) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in every record it passes.

    Attach it to a handler (or a logger) whose records may carry a secret, such
    as httpx's request lines with a bot token in the URL::

        handler.addFilter(RedactingFilter([token]))

    The record's message is formatted once, masked, and stored without
    arguments, so every handler after the filter sees the masked text.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def add(self, secret: str | None) -> None:
        """Also mask ``secret`` from now on."""
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            masked = redact(message, self.secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True
