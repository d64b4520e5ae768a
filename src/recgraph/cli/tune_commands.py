"""``recgraph tune``: choose a pipeline on validation carved from the training data.

Thin: reads the training data (the store, or a split's TRAIN file), calls
:mod:`recgraph.jobs.tune`, prints the trials and writes the pipeline TOML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recgraph.cli.app import DbOption, ItemsOption, app, console, err_console
from recgraph.files import write_json

BudgetOption = Annotated[
    float,
    typer.Option(
        "--budget",
        min=0.05,
        help="Minutes of search, split between the questions (at least one trial each); each "
        "question's budget starts after its given question (the current file's) is scored, "
        "so that time comes on top. A target, not a limit: phase 3 always checks its first "
        "finalist in full, so the wall-clock can run over (1.65-5x the budget at 2-6 minutes "
        "on a loaded machine).",
    ),
]
TrialsOption = Annotated[
    int | None,
    typer.Option(
        "--trials",
        min=1,
        help="Most trials per question: with it (and a budget that allows them) the same seed "
        "makes the same choice on any machine.",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the split and the samplers.")]


def tune_settings(budget: float, trials: int | None, seed: int, **more):
    from recgraph.jobs.tune import TuneSettings

    return TuneSettings(budget_minutes=budget, max_trials=trials, seed=seed, **more)


def print_trial(question: str, trial) -> None:
    err_console.print(
        f"[dim]{question} #{trial.number} {trial.phase}: {trial.describe()}"
        f"{' + ranker' if trial.ranker else ''} -> {trial.value:.4f} ({trial.seconds:.1f} s)"
        f"{' ' + trial.note if trial.note else ''}[/]",
        highlight=False,
    )


def show_results(results, out: Path) -> None:
    for result in results.values():
        console.print(result.table())
        console.print(
            f"{result.question}: chose {result.metric} {result.value:.4f} on validation "
            f"({result.ratio:.3f}x the best single retriever, "
            f"{result.best_single.describe()} {result.best_single.value:.4f})",
            highlight=False,
        )
    console.print(f"wrote {out}", highlight=False)


@app.command("tune")
def tune_command(
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the tuned pipeline TOML.")
    ] = Path("pipeline.tuned.toml"),
    budget: BudgetOption = 10.0,
    trials: TrialsOption = None,
    seed: SeedOption = 0,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline",
            help="The pipeline to start from (serving rules kept; default: the shipped one).",
        ),
    ] = None,
    train: Annotated[
        Path | None,
        typer.Option(
            "--train",
            help="Tune on this training file (as `recgraph evaluate --train`) instead of the store.",
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="With --train: items, follows or friends."),
    ] = None,
    items: ItemsOption = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="How validation is carved from the training data: auto (temporal where there "
            "are timestamps), random_per_user, temporal_global, temporal_per_user, "
            "edge_holdout, temporal_pairs.",
        ),
    ] = "auto",
    fraction: Annotated[
        float, typer.Option("--fraction", min=0.01, max=0.9, help="Validation share.")
    ] = 0.2,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", help="What to maximise (default ndcg@20 feeds, recall@20 accounts)."
        ),
    ] = None,
    retriever: Annotated[
        list[str] | None,
        typer.Option(
            "--retriever", help="A retriever to consider (default: all tunable); repeatable."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every trial as JSON here.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Choose retrievers, their parameters, the candidate depth and the ranker on a validation
    split carved from the training data, and write them as a pipeline TOML."""
    from recgraph.errors import ConfigError
    from recgraph.jobs.tune import tune_pipeline, tune_question, write_pipeline
    from recgraph.pipeline import load_pipeline_config

    base = load_pipeline_config(pipeline)
    settings = tune_settings(
        budget,
        trials,
        seed,
        method=method,
        fraction=fraction,
        metric=metric,
        retrievers=list(retriever) if retriever else None,
    )
    if train is not None:
        from recgraph.data.interactions import Interactions

        if kind not in ("items", "follows", "friends"):
            raise ConfigError("--train needs --kind items, follows or friends")
        data = Interactions.read_table(str(train), kind)
        question = "feed" if kind == "items" else "who_to_follow"
        features = None
        if items is not None:
            from recgraph.data.item_features import ItemFeatures

            features = ItemFeatures.read(items)
        results = {
            question: tune_question(
                question,
                data,
                base.question(question),
                settings,
                item_features=features,
                on_trial=lambda t: print_trial(question, t),
            )
        }
    else:
        from recgraph.data.snapshot import TrainingSnapshot
        from recgraph.data.store import Store
        from recgraph.settings import load_settings

        store = Store.open(load_settings(database_url=db).database_url, create=False)
        try:
            snapshot = TrainingSnapshot.from_store(store)
        finally:
            store.close()
        results = tune_pipeline(snapshot, base, settings, on_trial=print_trial)
    write_pipeline(results, out, base)
    show_results(results, out)
    if json_out is not None:
        write_json(json_out, {q: r.to_dict() for q, r in results.items()})
        err_console.print(f"wrote {json_out}", highlight=False)
