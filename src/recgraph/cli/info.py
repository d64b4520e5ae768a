"""``recgraph models``: what the library can fit, by name, and where each default comes from."""

from __future__ import annotations

from recgraph.cli.app import app, console
from recgraph.retrieval.registry import available_retrievers, get_retriever_class


@app.command("models")
def models_command() -> None:
    """List the retrievers reachable by name: parameters, defaults and what the defaults were chosen on."""
    from rich.table import Table

    table = Table("model", "handles", "parameters (defaults)", "defaults chosen on")
    for name in available_retrievers():
        try:
            klass = get_retriever_class(name)
        except Exception as exc:  # a missing optional dependency
            table.add_row(name, "-", f"[dim]unavailable: {exc}[/]", "-")
            continue
        defaults = klass.config_class()
        params = ", ".join(f"{k}={v!r}" for k, v in defaults.model_dump().items()) or "-"
        chosen_on = getattr(klass.config_class, "defaults_chosen_on", "") or "-"
        table.add_row(name, ",".join(sorted(klass.supports)), params, chosen_on)
    console.print(table)
