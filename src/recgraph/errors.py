"""Errors a user can act on: each names the file, line or field at fault."""

from __future__ import annotations

from pathlib import Path


class RecgraphError(Exception):
    """Base class of every error recgraph raises on purpose."""


class InputError(RecgraphError, ValueError):
    """Bad input: says where (file, line, field) and what is wrong.

    The import that raises it has rolled its transaction back, so the store is
    exactly as it was before the command.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(RecgraphError, ValueError):
    """A configuration value or parameter that cannot be used; names the key."""


class NotFittedError(RecgraphError, RuntimeError):
    """A model was asked to recommend before ``fit``."""
