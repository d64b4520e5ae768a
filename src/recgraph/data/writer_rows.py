"""What the :class:`~recgraph.data.writer.Writer` methods take: rows checked and converted.

Frames of external ids, times and values arrive from files, the API and the
collectors; these helpers refuse what cannot be stored (an
:class:`~recgraph.errors.InputError` naming the field) and turn the rest into
the plain values the SQL layer binds. Kept apart from the writer's SQL.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recgraph.data import schema
from recgraph.data.interactions import Kind, ValueKind
from recgraph.data.parsing import TIMESTAMP_MAX, TIMESTAMP_MIN, timestamp_range_problem
from recgraph.errors import InputError

Frame = pd.DataFrame | Iterable[Mapping[str, Any]]

#: Characters no id may hold: an id with a NUL byte or a line break can be stored but
#: never asked for again (and PostgreSQL refuses NUL outright).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def checked_frame(rows: Frame, required: Sequence[str], what: str) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in required:
        if column not in frame.columns:
            raise InputError(
                f"{what} rows need a column {column!r}; got {', '.join(map(str, frame.columns))}",
                field=column,
            )
    return frame


def checked_ids(values: pd.Series, name: str, checked: bool = False) -> Any:
    """Validated external ids as an object array of str.

    ``checked``: the ids come from :func:`recgraph.data.parsing.ids`, which refused
    the same things with the file and line; they are taken as they are, and a text
    column stays on its Arrow buffers (a pandas array) instead of becoming Python strs.
    """
    if checked and (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
        return values.array if values.dtype != object else values.to_numpy(object)
    missing = values.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"missing {name} id (row {int(np.flatnonzero(missing)[0]) + 1} of the chunk)",
            field=name,
        )
    ids = values.to_numpy(object)
    if pd.api.types.infer_dtype(ids, skipna=False) != "string":  # one C pass; numbers to text
        ids = values.astype(str).to_numpy(object)
    if not len(ids):
        return ids
    if min(map(len, ids)) == 0:
        raise InputError(f"empty {name} id", field=name)
    if _CONTROL.search("".join(ids)):  # one C-speed pass over every id
        bad = next(x for x in ids if _CONTROL.search(x))
        what = "a NUL byte" if "\x00" in bad else "a control character (a line break or tab)"
        raise InputError(f"{name} id {bad[:40]!r} contains {what}", field=name)
    if max(map(len, ids)) > schema.EXTERNAL_ID_LENGTH:
        bad = next(x for x in ids if len(x) > schema.EXTERNAL_ID_LENGTH)
        raise InputError(
            f"{name} id longer than {schema.EXTERNAL_ID_LENGTH} characters: {bad[:40]!r}...",
            field=name,
        )
    return ids


def optional_seconds(frame: pd.DataFrame, column: str) -> list[int | None]:
    """Unix seconds (ints or datetimes) of an optional column; NULL where absent."""
    if column not in frame.columns:
        return [None] * len(frame)
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        missing = values.isna().to_numpy()
        seconds = values.to_numpy("datetime64[s]").astype(np.int64)
        return [None if m else int(x) for x, m in zip(seconds, missing, strict=True)]
    if pd.api.types.is_integer_dtype(values) and not values.hasnans:
        numbers = values.to_numpy()
        if len(numbers) and (numbers.min() < TIMESTAMP_MIN or numbers.max() > TIMESTAMP_MAX):
            bad = numbers[(numbers < TIMESTAMP_MIN) | (numbers > TIMESTAMP_MAX)][0]
            raise InputError(timestamp_range_problem(column, bad), field=column)
        return numbers.astype(np.int64).tolist()  # the common case, without a Python loop
    out: list[int | None] = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            out.append(None)
        elif isinstance(value, pd.Timestamp):
            out.append(int(value.timestamp()))
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{column} {value!r} is not unix seconds", field=column) from None
            if not math.isfinite(number) or number != int(number):
                raise InputError(f"{column} {value!r} is not whole unix seconds", field=column)
            if not TIMESTAMP_MIN <= int(number) <= TIMESTAMP_MAX:
                raise InputError(timestamp_range_problem(column, value), field=column)
            out.append(int(number))
    return out


def value_kinds(frame: pd.DataFrame, kinds: np.ndarray) -> np.ndarray:
    """What each row's value means: the ``value_kind`` column (labels or
    :class:`ValueKind` codes), else ``rating`` for ratings and ``none`` otherwise."""
    if "value_kind" not in frame.columns:
        return np.where(kinds == "rating", "rating", "none").astype(object)
    given = frame["value_kind"]
    codes, uniques = pd.factorize(given.astype(object), use_na_sentinel=False)
    names = []
    for value in uniques:
        try:
            if isinstance(value, ValueKind | int | np.integer):
                names.append(ValueKind(int(value)).label)
            else:
                names.append(ValueKind.parse(str(value)).label)
        except (ValueError, TypeError):
            raise InputError(
                f"unknown value kind {value!r}; expected one of "
                f"{', '.join(schema.VALUE_KIND_LABELS)}",
                field="value_kind",
            ) from None
    return np.asarray(names, dtype=object)[codes]


def kind_or_none(value: object) -> str | None:
    if not isinstance(value, str | Kind):
        return None
    try:
        label = value.label if isinstance(value, Kind) else Kind.parse(value).label
    except ValueError:
        return None
    return label if label in schema.INTERACTION_KIND_LABELS else None


def features_json(features: object) -> str:
    if isinstance(features, str):
        try:
            features = json.loads(features)
        except json.JSONDecodeError:
            raise InputError(f"features {features[:40]!r} are not JSON", field="features") from None
    if not isinstance(features, Mapping):
        raise InputError(
            f"features must be a dict, got {type(features).__name__}", field="features"
        )
    return json.dumps(features, sort_keys=True, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def nullable_ints(series: pd.Series) -> list[int | None]:
    """A nullable integer column as Python ints and None."""
    values = series.astype(object)
    return values.where(series.notna(), None).tolist()


__all__ = [
    "Frame",
    "checked_frame",
    "checked_ids",
    "features_json",
    "kind_or_none",
    "nullable_ints",
    "optional_seconds",
    "value_kinds",
]
