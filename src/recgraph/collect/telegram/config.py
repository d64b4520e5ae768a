"""The feed bot's settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BotConfig(BaseModel):
    """The bot's settings.

    ``base_url`` is the Bot API server (``https://api.telegram.org`` by
    default; a python-telegram-bot style ``http://host:port/bot`` also works).
    Which model chooses the posts: ``registry`` (the serving registry's
    current version), else ``model_dir`` (a saved pipeline or retriever),
    else ``model`` fitted on the store's likes (see :mod:`.picks`);
    ``cold_start_min_interactions`` is the cold-start rule of that last one.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token: str
    base_url: str | None = None
    interval_minutes: float = Field(default=60.0, gt=0)
    model: str = "popular"
    model_params: dict[str, Any] = Field(default_factory=dict)
    model_dir: str | None = None
    registry: str | None = None
    cold_start_min_interactions: int = Field(default=5, ge=0)
    max_age_days: float | None = Field(default=None, gt=0)
    candidates: int = Field(default=5, ge=1, le=100)
    deliver_on_start: bool = True
    global_per_second: float = Field(default=30.0, gt=0)
    per_chat_seconds: float = Field(default=1.0, ge=0)
    max_send_retries: int = Field(default=3, ge=0)
    poll_timeout_seconds: float = Field(default=10.0, ge=0)
    #: Chats served at once in a round.
    concurrency: int = Field(default=16, ge=1, le=1000)
    #: Read timeout of a send; a slower answer counts as lost (the post is not resent).
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    #: First wait after a transient error (doubled each time).
    retry_seconds: float = Field(default=1.0, ge=0)
    #: A longer ``retry_after`` skips the chat until the next round.
    max_retry_after_seconds: float = Field(default=60.0, ge=0)
    #: An album is offered only this long after its date, so that all its parts are in.
    album_wait_seconds: float = Field(default=10.0, ge=0)
    #: Times an update whose handling fails is retried before it is skipped.
    max_update_attempts: int = Field(default=3, ge=1)
    verbose: bool = False


__all__ = ["BotConfig"]
