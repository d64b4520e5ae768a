"""``recgraph import``, ``recgraph export`` and ``recgraph db``: files in and out of the store."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recgraph.cli.app import DbOption, app, console, err_console
from recgraph.data.export import export_table
from recgraph.data.imports import (
    ImportSummary,
    import_accounts,
    import_edges,
    import_interactions,
    import_items,
    import_movielens,
)
from recgraph.data.readers import ColumnMapping
from recgraph.data.store import Store

import_app = typer.Typer(
    name="import", help="Load files into the store (one transaction each).", no_args_is_help=True
)
db_app = typer.Typer(name="db", help="Look at the store.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(db_app, name="db")


class FileFormat(StrEnum):
    csv = "csv"
    tsv = "tsv"
    parquet = "parquet"


class ValueMeaning(StrEnum):
    rating = "rating"
    count = "count"
    weight = "weight"
    none = "none"


FormatOption = Annotated[
    FileFormat | None,
    typer.Option(
        "--format",
        help="csv, tsv or parquet, when the file name does not tell (.dat, .edges, no suffix).",
        case_sensitive=False,
        show_default=False,
    ),
]
SepOption = Annotated[
    str | None,
    typer.Option(
        "--sep",
        help="Field separator of text files: one character, or tab, space, comma, semicolon, pipe.",
        show_default=False,
    ),
]
HeaderOption = Annotated[
    bool | None,
    typer.Option(
        "--header/--no-header",
        help="Edge lists: whether the first line names the columns. Default: a line 'src dst', "
        "or a non-numeric first line above numeric ids, is a header (skipped, with a note).",
        show_default=False,
    ),
]
ValueOption = Annotated[
    ValueMeaning | None,
    typer.Option(
        "--value",
        help="What the value column means: rating (stars), count (plays, views), weight, "
        "or none (ignore it). Default: rating rows are ratings; other rows may not "
        "have values; a value_kind column (exports) gives it per row.",
        case_sensitive=False,
        show_default=False,
    ),
]


def _text(option: StrEnum | None) -> str | None:
    return None if option is None else option.value


class ExportWhat(StrEnum):
    follows = "follows"
    events = "events"
    interactions = "interactions"
    accounts = "accounts"
    items = "items"


def _print_summary(store: Store, summary: ImportSummary) -> None:
    names = {"follows": "follows" if summary.directed is not False else "friendships"}
    new = ", ".join(
        f"{names.get(name, name)} +{count:,}" for name, count in summary.new.items() if count
    )
    for note in summary.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(
        f"imported {summary.source} into {store.safe_url}: {summary.rows_read:,} rows read, "
        f"{summary.rows_written:,} written, {new or 'nothing new'} "
        f"in {summary.seconds:.1f} s",
        highlight=False,
    )


@import_app.command("movielens")
def import_movielens_command(
    directory: Annotated[
        Path, typer.Argument(help="A MovieLens folder: 100k (u.data, u.item) or latest-small.")
    ],
    db: DbOption = None,
) -> None:
    """Import MovieLens ratings (as rating interactions) and movies (titles, genres)."""
    with Store.open(db) as store:
        _print_summary(store, import_movielens(store, directory))


@import_app.command("edges")
def import_edges_command(
    file: Annotated[Path, typer.Argument(help="A SNAP-style edge list: 'src dst [timestamp]'.")],
    directed: Annotated[
        bool | None,
        typer.Option(
            "--directed/--undirected",
            help="Follows (directed) or friendships (undirected, stored once per pair). Required.",
            show_default=False,
        ),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="The third column holds unix timestamps.")
    ] = False,
    header: HeaderOption = None,
    format: FormatOption = None,
    sep: SepOption = None,
    db: DbOption = None,
) -> None:
    """Import an edge list as the follow (or friendship) graph."""
    if directed is None:
        raise typer.BadParameter(
            "say whether the graph is --directed or --undirected", param_hint="--directed"
        )
    with Store.open(db) as store:
        summary = import_edges(
            store,
            file,
            directed=directed,
            timestamps=timestamps,
            format=_text(format),
            sep=sep,
            header=header,
        )
        _print_summary(store, summary)


@import_app.command("interactions")
def import_interactions_command(
    file: Annotated[Path, typer.Argument(help="A CSV, TSV or Parquet table with a header.")],
    user: Annotated[str, typer.Option(help="Column of user ids.")] = "user",
    item: Annotated[str, typer.Option(help="Column of item ids.")] = "item",
    kind: Annotated[
        str | None,
        typer.Option(help="One kind for every row: like, dislike, view or rating."),
    ] = None,
    kind_column: Annotated[
        str | None, typer.Option(help="Column of kinds (default: 'kind' when present).")
    ] = None,
    value_column: Annotated[
        str | None,
        typer.Option(
            "--value-column",
            help="Column of values: ratings, counts or weights (default: 'value').",
        ),
    ] = None,
    value: ValueOption = None,
    timestamp: Annotated[
        str | None, typer.Option(help="Column of unix timestamps (default: 'timestamp').")
    ] = None,
    format: FormatOption = None,
    sep: SepOption = None,
    db: DbOption = None,
) -> None:
    """Import interactions from a generic table, e.g. ``--user userId --item movieId
    --value-column rating --value rating --timestamp timestamp --kind rating``, or play
    counts: ``--kind view --value-column plays --value count``."""
    mapping = ColumnMapping(
        user=user,
        item=item,
        kind=kind,
        kind_column=kind_column,
        value=value_column,
        timestamp=timestamp,
        value_kind=_text(value),
    )
    with Store.open(db) as store:
        summary = import_interactions(store, file, mapping, format=_text(format), sep=sep)
        _print_summary(store, summary)


@import_app.command("accounts")
def import_accounts_command(
    file: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet: external_id[,handle,created_at].")],
    format: FormatOption = None,
    sep: SepOption = None,
    db: DbOption = None,
) -> None:
    """Import accounts, e.g. a file written by ``recgraph export accounts``."""
    with Store.open(db) as store:
        _print_summary(store, import_accounts(store, file, format=_text(format), sep=sep))


@import_app.command("items")
def import_items_command(
    file: Annotated[
        Path,
        typer.Argument(help="CSV/TSV/Parquet: external_id[,title,author,created_at,features]."),
    ],
    format: FormatOption = None,
    sep: SepOption = None,
    db: DbOption = None,
) -> None:
    """Import items with titles and JSON features, e.g. from ``recgraph export items``."""
    with Store.open(db) as store:
        _print_summary(store, import_items(store, file, format=_text(format), sep=sep))


@app.command("export")
def export_command(
    what: Annotated[ExportWhat, typer.Argument(help="Which table to write.", case_sensitive=False)],
    out: Annotated[Path, typer.Argument(help="Output file: .csv, .tsv or .parquet.")],
    db: DbOption = None,
) -> None:
    """Write what the store holds, with external ids (follows: src,dst[,timestamp])."""
    with Store.open(db, create=False) as store:
        rows = export_table(store, what.value, out)
    err_console.print(f"wrote {rows:,} {what.value} rows to {out}", highlight=False)


@db_app.command("upgrade")
def db_upgrade_command(db: DbOption = None) -> None:
    """Bring a store written by an older recgraph to the current schema, in place."""
    with Store(db, create=False, upgrade=True) as store:
        console.print(
            f"{store.safe_url} is at schema version {store.schema_version()}", highlight=False
        )


@db_app.command("info")
def db_info_command(db: DbOption = None) -> None:
    """Show the backend and the rows of each table."""
    with Store.open(db) as store:
        counts = store.counts()
        directed = store.follows_directed()
        table = Table("table", "rows", title=f"{store.safe_url} ({store.backend()})")
        for name, count in counts.items():
            table.add_row(name, f"{count:,}")
        if directed is not None:
            table.caption = f"follow graph: {'directed' if directed else 'undirected'}"
        console.print(table)
