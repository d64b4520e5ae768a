"""One progress display for every long job (imports, training, evaluation).

Progress goes to stderr so that piped stdout (tables, JSON) stays clean, and it
switches itself off when stderr is not a terminal unless forced.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from recgraph.settings import Settings, load_settings

T = TypeVar("T")

_console = Console(stderr=True)


def progress_enabled(settings: Settings | None = None) -> bool:
    """Whether to draw progress: the ``progress`` setting (``RECGRAPH_PROGRESS``), else
    whether stderr is a terminal."""
    forced = (settings or load_settings()).progress
    return sys.stderr.isatty() if forced is None else forced


@contextmanager
def progress_bar(description: str, total: float | None = None, unit: str = ""):
    """Yield an ``advance(n)`` callable that moves a rich progress bar."""
    if not progress_enabled():
        yield lambda n=1: None
        return
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TextColumn("{task.completed:,.0f}"),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def track(items: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total=total) as advance:
        for item in items:
            yield item
            advance(1)
