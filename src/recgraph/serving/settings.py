"""What the service needs to start: registry, database, token, address. Defaults in code,
overridden by ``RECGRAPH_*`` environment variables, overridden by ``recgraph serve`` options."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recgraph.config import database_url as default_database_url
from recgraph.serving.registry import DEFAULT_REGISTRY


class ServeSettings(BaseSettings):
    """Settings of the HTTP service.

    Attributes
    ----------
    registry
        Model registry folder or fsspec URL (``RECGRAPH_REGISTRY``).
    database_url
        The store feedback is written to and read from
        (``RECGRAPH_DATABASE_URL``; default: ``sqlite:///recgraph.db``).
    api_token
        Bearer token that ``POST /v1/feedback`` and ``POST /v1/admin/reload``
        require (``RECGRAPH_API_TOKEN``). Without one both refuse every call.
    poll_seconds
        How often the registry's ``current`` pointer is checked (0: never;
        reload through ``POST /v1/admin/reload`` only).
    max_k
        The largest ``?k=`` any endpoint accepts (a question's own ``max_k``
        can be lower).
    exclude_recent_feedback
        Read the user's feedback from the store on each request, so that
        what was liked, disliked, viewed or followed after training is not
        suggested again.
    """

    model_config = SettingsConfigDict(env_prefix="RECGRAPH_", extra="ignore")

    registry: str = DEFAULT_REGISTRY
    database_url: str = Field(default_factory=lambda: default_database_url())
    api_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    poll_seconds: float = Field(default=2.0, ge=0)
    max_k: int = Field(default=100, ge=1, le=10_000)
    exclude_recent_feedback: bool = True

    def token(self) -> str | None:
        """The token in clear, or None."""
        return self.api_token.get_secret_value() if self.api_token else None
