"""The shared Typer app and the options every command takes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="recgraph",
    help="Who to follow and what to read, from graph data alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Tables and results go to stdout; progress and errors to stderr.
#: Off a terminal (pipes, CI logs) rich would cut tables at 80 columns; give them room.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Who to follow and what to read, from graph data alone."""


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $RECGRAPH_DATABASE_URL, else sqlite:///recgraph.db).",
        show_default=False,
    ),
]
