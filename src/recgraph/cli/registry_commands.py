"""``recgraph registry list|show|promote|gc``: the published model versions and which one is served."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from recgraph.cli.app import RegistryOption, app, console
from recgraph.serving.registry import ModelRegistry

registry_app = typer.Typer(
    name="registry",
    help="Published model versions, and which one is current (served).",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")


def _summary(metrics: dict[str, Any], limit: int = 4) -> str:
    """The first few metrics as ``name=value``."""
    parts = []
    for name, value in list(metrics.items())[:limit]:
        shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
        parts.append(f"{name}={shown}")
    more = len(metrics) - limit
    return ", ".join(parts) + (f", +{more} more" if more > 0 else "") if parts else "-"


@registry_app.command("list")
def list_command(registry: RegistryOption = None) -> None:
    """Every complete version, oldest first; the current one is starred."""
    from rich.table import Table

    reg = ModelRegistry(registry)
    versions = reg.list_versions()
    if not versions:
        console.print(f"no versions in {reg.root}")
        return
    current = reg.current_version()
    table = Table("", "version", "model", "created (UTC)", "training rows", "index", "metrics")
    for version in versions:
        manifest = reg.manifest(version)
        data = manifest.get("data") or {}
        index = manifest.get("index") or {}
        table.add_row(
            "*" if version == current else "",
            version,
            str(manifest.get("model", "?")),
            str(manifest.get("created_at", "")),
            f"{data['rows']:,}" if "rows" in data else "-",
            str(index.get("index", "-")),
            _summary(manifest.get("metrics") or {}),
        )
    console.print(table)


@registry_app.command("show")
def show_command(
    version: Annotated[
        str | None, typer.Argument(help="A version (v1, v2, ...); default: the current one.")
    ] = None,
    registry: RegistryOption = None,
) -> None:
    """Print a version's manifest as JSON (plain, so it pipes into jq)."""
    reg = ModelRegistry(registry)
    manifest = reg.manifest(reg.resolve(version))
    typer.echo(json.dumps(manifest, indent=2))


@registry_app.command("promote")
def promote_command(
    version: Annotated[
        str, typer.Argument(help="The version to make current (an older one: a rollback).")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Skip the check that this recgraph can load VERSION (for servers that run a "
            "newer recgraph or a plug-in model this one does not know).",
        ),
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Make VERSION current, or roll back to an older one; a server polling the registry
    switches to it. A version this recgraph cannot load (a newer format, an unknown kind of
    model) is refused, naming the version and the reason, and nothing changes."""
    reg = ModelRegistry(registry)
    previous = reg.current_version()
    reg.set_current(version, check=not force)
    console.print(f"current: {previous or '(none)'} -> {version}  ({reg.root})")


@registry_app.command("gc")
def gc_command(
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            min=1,
            help="Keep this many of the newest versions, and the current one "
            "(default: $RECGRAPH_REGISTRY_KEEP, else 5).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Remove old versions, and versions left incomplete by killed runs; never the current one."""
    from recgraph.errors import ConfigError
    from recgraph.serving.retention import gc
    from recgraph.settings import load_settings

    settings = load_settings(registry=registry)
    if keep is None:
        keep = settings.registry_keep
        if keep == 0:
            raise ConfigError("RECGRAPH_REGISTRY_KEEP is 0 (keep everything): give --keep N")
    reg = ModelRegistry(settings.registry)
    report = gc(reg, keep, dry_run=dry_run)
    console.print(f"{reg.root}: {report.describe()}", highlight=False)
