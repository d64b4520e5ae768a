"""What tuning found: the trials, the table, and the pipeline TOML with validation figures as comments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recgraph.files import atomic_write
from recgraph.pipeline import PipelineConfig
from recgraph.pipeline.config import (
    QuestionConfig,
)


# ---------------------------------------------------------------------- results
@dataclass
class Trial:
    """One configuration tried and its validation figure."""

    number: int
    phase: str
    retrievers: list[dict[str, Any]]
    ranker: dict[str, Any] | None
    value: float
    seconds: float
    note: str = ""

    def describe(self) -> str:
        parts = []
        for spec in self.retrievers:
            params = ", ".join(f"{k}={_short(v)}" for k, v in spec.get("params", {}).items())
            parts.append(f"{spec['name']}({params})" if params else spec["name"])
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The fields, ``seconds`` rounded to hundredths."""
        return {**asdict(self), "seconds": round(self.seconds, 2)}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class TuneResult:
    """What tuning chose for one question, and every trial behind it."""

    question: str
    config: QuestionConfig
    metric: str
    value: float
    best_single: Trial
    default_value: float | None
    validation: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    #: The number of the trial whose configuration answers (after phase 3's check).
    chosen: int | None = None

    @property
    def default_failed(self) -> str | None:
        """Why the given question (the first tried as given) was not compared, if it failed."""
        first = next((t for t in self.trials if t.phase == "default"), None)
        if self.default_value is None and first is not None and first.note.startswith("failed"):
            return first.note
        return None

    @property
    def ratio(self) -> float:
        base = self.best_single.value
        return self.value / base if base > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "metric": self.metric,
            "value": self.value,
            "best_single": self.best_single.to_dict(),
            "over_best_single": self.ratio,
            "default_value": self.default_value,
            "default_failed": self.default_failed,
            "validation": self.validation,
            "config": self.config.model_dump(mode="json", exclude_none=True),
            "trials": [t.to_dict() for t in self.trials],
            "seconds": round(self.seconds, 1),
            "chosen": self.chosen,
        }

    def table(self):
        from rich.table import Table

        table = Table(
            title=f"recgraph tune {self.question}: {len(self.trials)} trials, validation "
            f"{self.metric} ({self.validation['method']}, {self.validation['users']:,} users)",
            title_justify="left",
        )
        for name in ("#", "phase", "retrievers", "depth", "ranker", self.metric, "s", ""):
            table.add_column(name, justify="right" if name in ("#", "depth", "s") else "left")
        best = next((t for t in self.trials if t.number == self.chosen), None)
        if self.chosen is None:  # a result built by hand: the best pipeline trial
            best = max(self.trials, key=lambda t: (t.phase == "pipeline", t.value), default=None)
        for t in self.trials:
            ranker = "-"
            depth = ""
            if t.ranker:
                depth = str(t.ranker.get("depth", ""))
                params = t.ranker.get("params", {})
                ranker = ", ".join(
                    f"{k}={_short(v)}" for k, v in params.items() if k not in ("n_threads",)
                )
            mark = "chosen" if best is not None and t is best else t.note
            table.add_row(
                str(t.number),
                t.phase,
                t.describe(),
                depth,
                ranker,
                f"{t.value:.4f}",
                f"{t.seconds:.1f}",
                mark,
            )
        return table

    def comments(self) -> list[str]:
        """Lines for the TOML file: what validation chose, and on what."""
        v = self.validation
        lines = [
            f"{self.question}: tuned by `recgraph tune` on {v['rows_fit']:,} rows, validated on "
            f"{v['rows_valid']:,} ({v['method']}, {v['fraction']:.0%} of the training data, "
            f"{v['users']:,} users, seed {v['seed']}), {len(self.trials)} trials in "
            f"{self.seconds:.0f} s",
            f"  chosen: validation {self.metric} {self.value:.4f}"
            + (
                f" ({self.ratio:.3f}x the best single retriever)"
                if self.ratio == self.ratio
                else ""
            ),
            f"  best single retriever: {self.best_single.describe()} {self.best_single.value:.4f}",
        ]
        if self.default_value is not None:
            lines.append(f"  the shipped default question: {self.default_value:.4f}")
        elif (failed := self.default_failed) is not None:
            lines.append(f"  the shipped default question: not compared ({failed})")
        confirm = v.get("confirm")
        if confirm:
            lines += _confirm_lines(confirm)
        if self.config.ranker is not None:
            lines.append(
                "  ranker kept: it beat the best retriever alone on validation; "
                "it still stands down at training if its own validation users disagree"
            )
        elif confirm and confirm.get("ranked"):
            lines.append(
                f"  no ranker: ranked pipeline(s) {', '.join(confirm['ranked'])} led the best "
                "single retriever on the first validation but failed the confirmation (some "
                "ranker seed or the second validation did not beat it)"
            )
        else:
            lines.append("  no ranker: on validation none beat the retrievers alone")
        return lines


def _confirm_lines(confirm: Mapping[str, Any]) -> list[str]:
    """Phase 3's check in words: on what it was made, the shares, what was kept."""
    seeds = confirm.get("ranker_seeds", [])
    # the figure the choice was ranked by: the mean of the shares drawn after phase 2's choice
    ranked_by = confirm.get("mean_share_after", confirm["mean_share"])
    shares = (
        f"ranked by the mean drawn after phase 2's choice {ranked_by}, worst "
        f"{confirm.get('worst_share', {})} (kept only above 1), kept {confirm['kept']}"
    )
    if confirm.get("no_later_figure"):
        shares += (
            f" ({', '.join(confirm['no_later_figure'])}: no figure drawn after phase 2's, "
            "ranked after those with one)"
        )
    if confirm.get("fraction") is None:
        why = confirm.get("no_second_validation") or "too little data"
        lines = [
            "  checked again on the first validation only: no second validation could be "
            f"carved ({why}); share of the best single over ranker seeds {seeds}, {shares}"
        ]
    else:
        lines = [
            f"  checked again on {confirm['rows_valid']:,} rows ({confirm['fraction']:.0%}, "
            f"seed {confirm['seed']}, {confirm['users']:,} users; best single "
            f"{confirm['best_single']:.4f}): share of the best single over both "
            f"validations and ranker seeds {seeds}, {shares}"
        ]
    if confirm.get("unchecked"):
        lines.append(
            f"  finalist(s) {', '.join(confirm['unchecked'])} not checked: the budget or the "
            "trial cap ran out first"
        )
    return lines


# ---------------------------------------------------------------------- the TOML file
def write_pipeline(
    results: Mapping[str, TuneResult], path: str | Path, base: PipelineConfig | None = None
) -> PipelineConfig:
    """Write ``base`` with the tuned questions replaced, the validation figures as comments."""
    import tomli_w

    base = base or PipelineConfig()
    values = base.model_dump(mode="json", exclude_none=True)
    for question, result in results.items():
        values[question] = result.config.model_dump(mode="json", exclude_none=True)
    similar = values.get("similar", {}).get("retriever")
    if similar is not None and similar not in {
        spec.key for spec in QuestionConfig.model_validate(values["feed"]).all_specs()
    }:
        # the tuned feed dropped it: similar items fall back to co-occurrence
        values["similar"].pop("retriever")
    config = PipelineConfig.model_validate(values)
    text = tomli_w.dumps(_drop_empty(values))
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    header = [
        f"# Written by `recgraph tune` at {stamp}: every choice was made on a validation",
        "# split carved from the training data alone (never a test split).",
        "#",
    ]
    lines = text.splitlines()
    for question, result in results.items():
        at = next((i for i, line in enumerate(lines) if line.strip() == f"[{question}]"), None)
        block = ["# " + line for line in result.comments()]
        if at is None:
            header += block
        else:
            lines[at:at] = block
    with atomic_write(Path(path), "w") as handle:
        handle.write("\n".join(header + [""] + lines) + "\n")
    return config


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value
