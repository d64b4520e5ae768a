"""The shared Typer app and the options every command takes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from recgraph.settings import DEFAULT_DATABASE_URL, DEFAULT_REGISTRY, ENV_PREFIX

app = typer.Typer(
    name="recgraph",
    help="Who to follow and what to read, from graph data alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help wraps long words (URLs, paths, defaults) onto the next line;
    # rich's panels cut them with an ellipsis at 80 columns.
    rich_markup_mode=None,
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
        help=f"Database URL (default: ${ENV_PREFIX}DATABASE_URL, else {DEFAULT_DATABASE_URL}).",
        show_default=False,
    ),
]
PipelineFileOption = Annotated[
    Path | None,
    typer.Option(
        "--pipeline",
        help="Pipeline TOML file (default: the shipped one, recgraph/config/pipeline.toml).",
    ),
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")]
ItemsOption = Annotated[
    Path | None,
    typer.Option(
        "--items",
        help="Item side data for a --train file, item,title[,genres][,created_at] (genres "
        "|-separated), for the models that read it (two_tower, hetero_sage).",
    ),
]
RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help=f"Model registry folder or fsspec URL (default: ${ENV_PREFIX}REGISTRY, else "
        f"{DEFAULT_REGISTRY}).",
        show_default=False,
    ),
]
