"""SALSA's circle budget (the circle PPR's ``sweep_budget``): recall@20 against SALSA on
the exact circle, the lists' change, and CPU per user, by budget, on VALIDATION carved from train.

Split: ``ppr_sweep_budget.py``'s (the protocol of ``benchmarks/graph_defaults.py``:
per shared graph the outer split of ``common.SNAP_CASES`` set aside and never read,
validation carved from its train part by ``validation_split``, same method, 20%,
seed 1; the generated follows split at random). Recall@20 of the validation edges
for 300 of their users (seed 3; ``--users``), for SALSA on the exact circle (``EXACT``: power
iteration, 10 rounds, pinned so that the baseline does not follow the defaults) and
for each setting; ``same_top20`` is the share of the first setting's top 20 a
setting keeps (1.0: the same accounts). Each setting answers a few users once
before its CPU is timed (the first pays the kernels' loading). ``--settings``
compares any SALSA configs instead of budgets (e.g. ``iterations``,
``authorities_per_hub``). ``--synthetic FOLLOWS`` adds ``benchmarks/scale.py``'s
heavy-tailed generated follows (where the 20,000 budget binds: a 10^7 graph's
circle sweep gathers ~17,000 edges a request).

Run: ``python benchmarks/salsa_budget.py --synthetic 1e6 --out NAME``.
Saves ``benchmarks/results/NAME.json`` (default ``salsa_budget``), with ``EXACT``.
"""

from __future__ import annotations

import argparse
import json
from functools import partial

from ppr_sweep_budget import compare, graph_arguments, measure_and_save
from recgraph.data.interactions import Interactions

BUDGETS = (20_000, 10_000, 5_000, 2_000)
#: The baseline: SALSA on the exact circle, its rounds pinned (not the default's).
EXACT = {"circle_method": "power", "iterations": 10}


def measure(
    split: tuple[Interactions, Interactions], settings: dict[str, dict], count: int = 300
) -> dict:
    """Recall@20 over the exact circle's, the top 20 kept from the first setting's, CPU."""
    return compare(split, "salsa", EXACT, settings, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="sweep budgets")
    parser.add_argument(
        "--settings",
        help='instead of --budgets: JSON {"label": {SALSA config}, ...}, first the base',
    )
    graph_arguments(parser, "salsa_budget")
    args = parser.parse_args()
    settings = (
        json.loads(args.settings)
        if args.settings
        else {b: {"sweep_budget": int(b)} for b in args.budgets.split(",")}
    )
    measure_one = partial(measure, settings=settings, count=args.users)
    measure_and_save(args, "salsa_budget", measure_one, "settings", EXACT, settings=settings)


if __name__ == "__main__":
    main()
