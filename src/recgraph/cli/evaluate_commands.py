"""``recgraph split`` and ``recgraph evaluate``: benchmarks scripted end to end.

``split`` turns one file (a table, a SNAP edge list or a MovieLens folder)
into the train and test files that ``evaluate`` reads; ``evaluate`` fits
models by name on train and scores their full ranking on test.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from recgraph.cli.app import ItemsOption, JsonOption, app, console, err_console
from recgraph.cli.data_commands import (
    FormatOption,
    HeaderOption,
    SepOption,
    ValueOption,
    _text,
)
from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.splits import SPLIT_METHODS
from recgraph.errors import ConfigError, InputError


class GraphKind(StrEnum):
    items = "items"
    follows = "follows"
    friends = "friends"


#: The choices of ``--method``: every split the library knows by name.
SplitMethod = StrEnum("SplitMethod", {name: name for name in SPLIT_METHODS})


KindOption = Annotated[
    GraphKind,
    typer.Option(
        "--kind",
        help="items (user,item[,rating][,timestamp]), follows (directed src,dst[,timestamp]) "
        "or friends (undirected, each pair once).",
        case_sensitive=False,
    ),
]


def parse_ks(text: str) -> tuple[int, ...]:
    """``"10,20,50"`` -> ``(10, 20, 50)``; anything else is a usage error."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not ks or min(ks) < 1:
        raise typer.BadParameter(f"{text!r}: cut-offs must be positive integers")
    return ks


# ---------------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_command(
    train: Annotated[Path, typer.Option("--train", help="Training file (CSV/TSV/Parquet).")],
    test: Annotated[Path, typer.Option("--test", help="Test file, same columns as train.")],
    kind: KindOption,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A retriever by name (see `recgraph models`); repeatable."),
    ] = None,
    pipeline: Annotated[
        list[Path] | None,
        typer.Option(
            "--pipeline",
            help="A pipeline TOML file: its question for --kind (feed for items, who_to_follow "
            "for follows/friends) is fitted on TRAIN and scored like a model, with a table of "
            "candidate recall and nDCG before and after re-ranking; repeatable.",
        ),
    ] = None,
    depths: Annotated[
        str, typer.Option("--depths", help="Candidate depths of the two-stage table.")
    ] = "10,50,100,200",
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "10,20,50",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="model.key=value, overriding --params; repeatable."),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option("--params", help="TOML file with one [model] table of parameters each."),
    ] = None,
    json_out: JsonOption = None,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="Write recall@k and nDCG@k curves (PNG).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Users per recommend call.")
    ] = 1024,
    format: FormatOption = None,
    sep: SepOption = None,
    value: ValueOption = None,
    items: ItemsOption = None,
    track: Annotated[
        bool, typer.Option("--track", help="Log the learned models' training to MLflow.")
    ] = False,
    holdout: Annotated[
        str,
        typer.Option(
            "--holdout",
            help="How TRAIN and TEST were split, for a pipeline's ranker, whose label slice and "
            "stand-down check are cut the same way: auto (read from the rows' times: every test "
            "row after every train row is temporal_global, after its user's last one "
            "temporal_per_user, else random), a split method of `recgraph split` "
            "(temporal_global, temporal_per_user, leave_last_n, random_per_user, edge_holdout, "
            "temporal_pairs), or future (as served).",
        ),
    ] = "auto",
) -> None:
    """Fit each model on TRAIN and score its full ranking on TEST (no sampled negatives)."""
    from recgraph.evaluation import evaluate
    from recgraph.evaluation.holdout import HOLDOUTS, Holdout, detect_holdout
    from recgraph.evaluation.pipeline_retriever import QuestionRetriever
    from recgraph.evaluation.two_stage import two_stage_report
    from recgraph.pipeline import load_pipeline_config
    from recgraph.retrieval.registry import create_retriever, parse_param_overrides

    ks = parse_ks(k)
    model = list(model or [])
    if not model and not pipeline:
        raise ConfigError("nothing to evaluate: give --model NAME or --pipeline FILE")
    overrides = parse_param_overrides(param, params_file)
    unknown = sorted(set(overrides) - set(model))
    if unknown:
        raise ConfigError(
            f"parameters given for model {unknown[0]!r}, which is not evaluated "
            f"(--model: {', '.join(model)})"
        )
    if track:
        overrides = _with_tracking(model, overrides)
    # Build every model before reading data, so a bad parameter fails fast.
    retrievers = [create_retriever(name, overrides.get(name)) for name in model]
    question = "feed" if kind.value == "items" else "who_to_follow"
    if holdout != "auto" and holdout not in HOLDOUTS:
        raise typer.BadParameter(f"--holdout {holdout!r}: one of auto, {', '.join(HOLDOUTS)}")
    configs = [load_pipeline_config(path).model_dump(mode="json") for path in pipeline or []]

    start = time.perf_counter()
    options = {"format": _text(format), "sep": sep, "value_kind": _text(value)}
    train_data = Interactions.read_table(str(train), kind.value, **options)
    test_data = Interactions.read_table(
        str(test), kind.value, users=train_data.users, items=train_data.items, **options
    )
    err_console.print(
        f"[dim]read {len(train_data):,} train and {len(test_data):,} test rows "
        f"in {time.perf_counter() - start:.2f} s[/]",
        highlight=False,
    )
    pipelines = []
    if configs:
        judged = (
            detect_holdout(train_data, test_data)
            if holdout == "auto"
            else Holdout(holdout, "given by --holdout")
        )
        err_console.print(
            f"[dim]pipelines fitted for a {judged.method} holdout: {judged.reason}[/]",
            highlight=False,
        )
        pipelines = [
            QuestionRetriever(question=question, pipeline=values, holdout=judged.method)
            for values in configs
        ]
    item_features = None
    if items is not None:
        from recgraph.data.item_features import ItemFeatures

        item_features = ItemFeatures.read(items)
    report = evaluate(
        retrievers + pipelines,
        train_data,
        test_data,
        ks,
        batch_size=batch_size,
        item_features=item_features,
    )
    console.print(report.table())
    for path, evaluated in zip(pipeline or [], pipelines, strict=True):
        stages = two_stage_report(evaluated.question_model, train_data, test_data, parse_ks(depths))
        console.print(stages.table())
        note = evaluated.question_model.ranking_note
        if note:
            err_console.print(f"[dim]{path}: {note}[/]", highlight=False)
        section = stages.to_dict()
        ranking = evaluated.question_model.ranking
        if ranking is not None and ranking.report:
            # what validation kept (order) and how the served ranker was refitted (final_*)
            section["ranking"] = ranking.report
        report.sections.setdefault("two_stage", {})[str(path)] = section
    if pipelines:
        report.sections["holdout"] = judged.to_dict()
    console.print(report.dropped_summary(), highlight=False)
    for result in report.results:
        if result.invalid_recommendations:
            err_console.print(
                f"[yellow]warning:[/] {result.model} returned "
                f"{result.invalid_recommendations:,} ids outside the candidates (blanked)",
                highlight=False,
            )
    if json_out is not None:
        report.to_json(json_out)
        err_console.print(f"wrote {json_out}", highlight=False)
    if plot_out is not None:
        report.plot(plot_out)
        err_console.print(f"wrote {plot_out}", highlight=False)


def _with_tracking(models: list[str], overrides: dict[str, dict]) -> dict[str, dict]:
    """``track = true`` for every model that has the option (the learned ones); none: an error."""
    from recgraph.retrieval.registry import get_retriever_class

    tracked = [m for m in models if "track" in get_retriever_class(m).config_class.model_fields]
    if not tracked:
        raise ConfigError(f"--track logs learned models' training; none of {', '.join(models)} is")
    return {**overrides, **{m: {**overrides.get(m, {}), "track": True} for m in tracked}}


# ---------------------------------------------------------------------- split
def _has_timestamp_column(path: Path, format: str | None, sep: str | None) -> bool:
    """Whether an edge list's first line (or header, or Parquet schema) has a third column."""
    from recgraph.data.parsing import TableSource, table_layout

    source = TableSource(path, table_layout(path, format, sep, header=False, edge_list=True))
    if source.layout.format == "parquet":
        return "timestamp" in source.columns
    first = source.first_records(1)
    return bool(first) and len(first[0][1]) >= 3


def read_split_input(
    path: Path,
    kind: str,
    timestamps: bool | None = None,
    *,
    format: str | None = None,
    sep: str | None = None,
    header: bool | None = None,
    value_kind: str | None = None,
    notes: list[str] | None = None,
) -> Interactions:
    """One dataset to split: a MovieLens folder, an interactions table or an edge list.

    ``items`` reads a table with the header ``evaluate`` takes (or a MovieLens
    folder); ``follows``/``friends`` read a SNAP-style edge list or a
    ``src,dst[,timestamp]`` table, with timestamps when a third column is
    present unless ``timestamps`` says otherwise. ``format``/``sep`` say how a
    file is laid out when its name does not, ``header`` is the edge-list
    first-line rule and ``value_kind`` what an items table's ``value`` column
    means (all as ``recgraph import``).
    """
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    if path.is_dir():
        if kind != "items":
            raise InputError(
                f"a folder is read as MovieLens, which is items, not {kind}", path=path
            )
        from recgraph.data.movielens import read_movielens

        return read_movielens(path)
    if kind == "items":
        return Interactions.read_table(
            str(path), "items", format=format, sep=sep, value_kind=value_kind
        )
    from recgraph.data.readers import read_edge_list

    if timestamps is None:
        timestamps = _has_timestamp_column(path, format, sep)
    return read_edge_list(
        path,
        directed=kind == "follows",
        timestamps=timestamps,
        format=format,
        sep=sep,
        header=header,
        notes=notes,
    )


def write_split_table(data: Interactions, path: Path) -> None:
    """Write rows in the layout ``evaluate`` reads, the format chosen by extension.

    Items: ``user,item`` then ``rating`` when every value is a rating,
    ``value,value_kind`` when the values mean something else (counts,
    weights: each row says what), nothing when they mean nothing; then
    ``timestamp`` when there is time. Graphs: ``src,dst[,timestamp]``. Ids
    are written as their external ids. The file appears whole or not at all,
    and reads back with the same value meanings.
    """
    import pandas as pd
    import pyarrow as pa

    from recgraph.data.tables import TableWriter

    if (data.kind == Kind.DISLIKE).any():
        raise InputError(
            "the data has dislikes, which the user,item[,rating] layout cannot hold", path=path
        )
    names = ("user", "item") if data.graph_kind == "items" else ("src", "dst")
    columns: dict[str, np.ndarray] = {
        names[0]: data.users.external(data.src).astype(str),
        names[1]: data.items.external(data.dst).astype(str),
    }
    types = {names[0]: pa.string(), names[1]: pa.string()}
    if data.graph_kind == "items" and len(data):
        value_kind = np.asarray(data.value_kind)
        if (value_kind == ValueKind.RATING).all():
            columns["rating"] = data.value.astype(np.float64)
            types["rating"] = pa.float64()
        elif not (value_kind == ValueKind.NONE).all():
            columns["value"] = data.value.astype(np.float64)
            labels = np.asarray([v.label for v in ValueKind], dtype=object)
            codes = np.asarray([int(v) for v in ValueKind])
            columns["value_kind"] = labels[np.searchsorted(codes, value_kind)]
            types["value"] = pa.float64()
            types["value_kind"] = pa.string()
    if data.timestamp is not None:
        columns["timestamp"] = data.timestamp.astype(np.int64)
        types["timestamp"] = pa.int64()
    schema = pa.schema(list(types.items()))
    with TableWriter(path, list(columns), schema=schema) as out:
        out.write(pd.DataFrame(columns))


@app.command("split")
def split_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A table (CSV/TSV/Parquet with a header), a SNAP edge list, or a MovieLens folder.",
        ),
    ],
    kind: KindOption,
    method: Annotated[SplitMethod, typer.Option("--method", help="How to split.")],
    train_out: Annotated[Path, typer.Option("--train", help="Where to write train.")],
    test_out: Annotated[Path, typer.Option("--test", help="Where to write test.")],
    fraction: Annotated[
        float, typer.Option("--fraction", min=0.0, max=1.0, help="Test share (not leave_last_n).")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random splits.")] = 0,
    n: Annotated[int, typer.Option("--n", min=1, help="Rows per user for leave_last_n.")] = 1,
    timestamps: Annotated[
        bool | None,
        typer.Option(
            "--timestamps/--no-timestamps",
            help="Edge lists: whether the third column is unix time (default: if it has one).",
            show_default=False,
        ),
    ] = None,
    header: HeaderOption = None,
    format: FormatOption = None,
    sep: SepOption = None,
    value: ValueOption = None,
) -> None:
    """Split INPUT into the TRAIN and TEST files that `recgraph evaluate` reads
    (value meanings are kept: a rating or a value,value_kind column)."""
    from recgraph.data.splits import split

    start = time.perf_counter()
    notes: list[str] = []
    data = read_split_input(
        input_path,
        kind.value,
        timestamps,
        format=_text(format),
        sep=sep,
        header=header,
        value_kind=_text(value),
        notes=notes,
    )
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    read_seconds = time.perf_counter() - start
    if data.graph_kind != kind.value:
        raise InputError(f"read {data.graph_kind} data, not {kind.value}", path=input_path)
    start = time.perf_counter()
    try:
        train, test = split(data, method.value, fraction=fraction, seed=seed, n=n)
    except InputError as exc:
        raise InputError(exc.message, path=input_path, field=exc.field) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    split_seconds = time.perf_counter() - start
    write_split_table(train, train_out)
    write_split_table(test, test_out)
    console.print(
        f"{method.value}: {len(train):,} train rows -> {train_out}, "
        f"{len(test):,} test rows -> {test_out} "
        f"(read {read_seconds:.2f} s, split {split_seconds:.2f} s)",
        highlight=False,
    )
