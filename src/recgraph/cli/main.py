"""Entry point of the ``recgraph`` console command.

Each sub-command lives in its own module of this package and registers itself
on the shared app when imported; errors a user can fix are printed without a
traceback and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

from recgraph.cli.app import app, err_console
from recgraph.errors import RecgraphError

#: Sub-command modules; importing one registers its commands on ``app``.
COMMAND_MODULES = [
    "recgraph.cli.info",
    "recgraph.cli.quickstart",
    "recgraph.cli.evaluate_commands",
    "recgraph.cli.registry_commands",
    "recgraph.cli.data_commands",
    "recgraph.cli.collect_commands",
    "recgraph.cli.serve_commands",
    "recgraph.cli.candidates_commands",
    "recgraph.cli.tune_commands",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising ``SystemExit``."""
    try:
        app(args=argv, standalone_mode=False)
    except RecgraphError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except FileNotFoundError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors of typer's click: shown as click would, without a traceback.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code)
        if type(exc).__name__ in ("Abort", "Exit"):
            return int(getattr(exc, "exit_code", 1) or 0)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
