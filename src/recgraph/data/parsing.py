"""The one reader path: every file recgraph reads is parsed by Arrow, checked by these rules.

CSV, TSV, other delimited text, SNAP-style edge lists and Parquet all become
Arrow record batches (``pyarrow.csv`` streams text in blocks, ``pyarrow.parquet``
reads row groups), and the same rules check every column whatever the file
format was. Only errors cost Python time: when Arrow or a rule refuses
something, :class:`TableSource` scans the original file once to name the exact
line, so a bad row on line 52 is reported at line 52 even after blank lines,
comments or fields that span lines.

The rules, the same for every importer, ``recgraph split`` and ``recgraph evaluate``:

- text is UTF-8 (MovieLens 100k: Latin-1); a UTF-8 byte order mark is dropped,
  never read as part of the first id or column name;
- blank lines (spaces only, too) are skipped; edge lists also skip lines
  starting with ``#`` or ``%`` and split fields on runs of spaces or tabs;
- a row with more or fewer fields than the header (or than the layout)
  is an error naming its line; so is a quote that never closes, reported at
  the line where it opens;
- ids are text or integers, trimmed, non-empty, at most
  :data:`~recgraph.data.schema.EXTERNAL_ID_LENGTH` characters and free of
  control characters (NUL bytes, line breaks, tabs): such an id could be
  stored but never asked for again;
- timestamps are whole unix seconds from year 1 to 9999 (Parquet timestamp
  columns too), so ``2**63`` or a millisecond time is refused, not wrapped;
- numbers (values, ratings) are finite;
- a file with no data rows is an error naming the file, for every reader.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from recgraph.data.schema import EXTERNAL_ID_LENGTH
from recgraph.errors import InputError

Format = Literal["csv", "tsv", "parquet"]

#: Earliest and latest accepted unix seconds: 0001-01-01 and 9999-12-31T23:59:59.
TIMESTAMP_MIN = -62_135_596_800
TIMESTAMP_MAX = 253_402_300_799

#: Bytes per Arrow parse block; a single row may not be longer.
_BLOCK_BYTES = 16 << 20
_PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
_SEP_NAMES = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
    "whitespace": " ",
}
_CONTROL = r"[\x00-\x1f\x7f]"


# ---------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Layout:
    """How a text or Parquet file is laid out.

    Attributes
    ----------
    format
        ``csv``/``tsv`` (delimited text) or ``parquet``.
    sep
        The field separator of text; ``" "`` means runs of spaces and tabs.
    header
        Whether the first (non-blank) line names the columns.
    comments
        Skip lines starting with ``#`` or ``%`` (edge lists).
    encoding
        Text encoding.
    quoting
        Whether ``"`` quotes fields (CSV/TSV); never in whitespace-separated edge lists.
    """

    format: Format
    sep: str = ","
    header: bool = True
    comments: bool = False
    encoding: str = "utf-8"
    quoting: bool = True

    @property
    def whitespace(self) -> bool:
        return self.sep == " "


def parse_sep(sep: str | None) -> str | None:
    """A ``--sep`` value as one character: ``tab``/``\\t``, ``comma``, ``space``, ``;``..."""
    if sep is None:
        return None
    value = _SEP_NAMES.get(sep.lower(), sep)
    if len(value) != 1 or value in '\r\n"':
        raise InputError(
            f"--sep {sep!r} is not one character; use e.g. ',', ';', '|', tab or space",
            field="sep",
        )
    return value


def format_of(path: str | Path) -> Format | None:
    """``csv``, ``tsv`` or ``parquet`` from a file name (compression suffixes ignored)."""
    name = Path(path).name.lower()
    for suffix in (*_COMPRESSION_SUFFIXES, ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    return None


def table_layout(
    path: str | Path,
    format: str | None = None,
    sep: str | None = None,
    *,
    header: bool = True,
    edge_list: bool = False,
) -> Layout:
    """The layout of ``path`` from ``--format``/``--sep`` or else its extension.

    Tables need a known extension (``.csv``, ``.tsv``/``.tab``/``.txt``,
    ``.parquet``) or a ``--format``/``--sep``; edge lists default to fields
    separated by spaces or tabs (commas for ``.csv``), so ``.dat`` or
    ``.edges`` files read as they are.
    """
    sep = parse_sep(sep)
    if format is not None and format not in ("csv", "tsv", "parquet"):
        raise InputError(f"--format {format!r}: use csv, tsv or parquet", field="format")
    fmt = format or format_of(path)
    if fmt == "parquet":
        if sep is not None:
            raise InputError("--sep applies to text files, not Parquet", path=path, field="sep")
        return Layout("parquet", header=True)
    if fmt is None:
        if sep is None and not edge_list:
            raise InputError(
                "cannot tell the format from the file name; say --format csv|tsv|parquet "
                "(or --sep for another separator)",
                path=path,
            )
        fmt = "csv" if sep == "," else "tsv"
    if sep is None:
        sep = "," if fmt == "csv" else (" " if edge_list else "\t")
    return Layout(fmt, sep=sep, header=header, comments=edge_list, quoting=sep != " ")


# ---------------------------------------------------------------------- bytes
def open_bytes(path: Path) -> IO[bytes]:
    """A binary handle on ``path``, decompressed by suffix (.gz, .bz2, .xz)."""
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a directory, expected a file", path=path)
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".zst"):
        raise InputError("cannot read .zst files; decompress or use .gz, .bz2 or .xz", path=path)
    return path.open("rb")


_COMMENT_LINES = re.compile(rb"(?m)^[ \t]*[#%][^\n]*(?:\n|\Z)")
_TAB_RUNS = re.compile(rb"\t{2,}")
_EDGE_TABS = re.compile(rb"(?m)^\t|\t(?=\r?$)")


class _Normalised(io.RawIOBase):
    """The bytes Arrow parses: the BOM dropped and, for edge lists, comment lines
    dropped and each run of spaces and tabs made one tab. Works on whole lines;
    a block that needs no change passes through untouched (memchr-fast checks)."""

    def __init__(self, raw: IO[bytes], layout: Layout) -> None:
        self.raw = raw
        self.layout = layout
        self.pending = b""
        self.ready = b""
        self.first = True
        self.done = False

    def readable(self) -> bool:
        return True

    def _fix(self, block: bytes) -> bytes:
        if self.first:
            self.first = False
            block = block.removeprefix(b"\xef\xbb\xbf")
        if not self.layout.comments:
            return block
        if b"#" in block or b"%" in block:
            block = _COMMENT_LINES.sub(b"", block)
        if self.layout.whitespace:
            if b" " in block:
                block = block.replace(b" ", b"\t")
            if (
                b"\t\t" in block
                or b"\n\t" in block
                or b"\t\n" in block
                or b"\t\r" in block
                or block.startswith(b"\t")
            ):
                block = _EDGE_TABS.sub(b"", _TAB_RUNS.sub(b"\t", block))
        return block

    def readinto(self, buffer) -> int:
        while not self.ready and not self.done:
            block = self.raw.read(1 << 22)
            if not block:
                self.done = True
                self.ready = self._fix(self.pending)
                self.pending = b""
                break
            data = self.pending + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                self.pending = data
                continue
            self.pending = data[cut:]
            self.ready = self._fix(data[:cut])
        n = min(len(buffer), len(self.ready))
        buffer[:n] = self.ready[:n]
        self.ready = self.ready[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


# ---------------------------------------------------------------------- scan
def scan_records(path: Path, layout: Layout) -> Iterator[tuple[int, list[str]]]:
    """``(first line, fields)`` of every record of the original file, in Python.

    The slow twin of the Arrow parse, used to sniff the first lines and to
    name the line of an error: it skips what the parse skips (blank lines,
    comments) and raises :class:`InputError` at the line of a bad byte or of a
    quote that never closes.
    """
    with open_bytes(path) as raw:
        lines = _decoded_lines(raw, path, layout.encoding)
        if layout.whitespace:
            for number, line in lines:
                stripped = line.strip()
                if stripped and not (layout.comments and stripped[0] in "#%"):
                    yield number, stripped.split()
            return
        limit = csv.field_size_limit()
        csv.field_size_limit(2**31 - 1)
        try:
            yield from _csv_records(lines, layout, path)
        finally:
            csv.field_size_limit(limit)


def _decoded_lines(raw: IO[bytes], path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    for number, data in enumerate(raw, 1):
        if number == 1:
            data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            yield number, data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not valid {encoding} text (byte {exc.start + 1} of the line)",
                path=path,
                line=number,
            ) from None


def _csv_records(
    lines: Iterator[tuple[int, str]], layout: Layout, path: Path
) -> Iterator[tuple[int, list[str]]]:
    consumed: list[int] = []  # lines of the record being read

    def feed() -> Iterator[str]:
        for number, line in lines:
            if not consumed and layout.comments and line.lstrip()[:1] in ("#", "%"):
                continue
            consumed.append(number)
            yield line

    reader = csv.reader(
        feed(),
        delimiter=layout.sep,
        quoting=csv.QUOTE_MINIMAL if layout.quoting else csv.QUOTE_NONE,
        strict=True,
    )
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = consumed[0] if consumed else None
            if "end of data" in str(exc) or "EOF" in str(exc):
                raise InputError(
                    "a quoted field opens on this line and never closes (unbalanced quote)",
                    path=path,
                    line=start,
                ) from None
            raise InputError(f"cannot parse: {exc}", path=path, line=start) from None
        start = consumed[0]
        consumed.clear()
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        yield start, fields


# ---------------------------------------------------------------------- source
@dataclass
class Chunk:
    """Arrow columns of consecutive data rows; ``first_row`` is the 0-based row of the first."""

    columns: dict[str, object]
    first_row: int
    num_rows: int


class TableSource:
    """One file to read: its layout, column names, Arrow batches and exact error lines.

    Parameters
    ----------
    path
        The file.
    layout
        From :func:`table_layout`.
    names
        Column names of a file without a header; every row must have that many fields.
    count_problem
        The message for a row of the wrong number of fields, given that number
        (default: ``"3 fields, expected 2 (src dst)"``).
    """

    def __init__(
        self,
        path: str | Path,
        layout: Layout,
        names: Sequence[str] | None = None,
        count_problem: Callable[[int], str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._count_problem = count_problem
        self.layout = layout
        self._names = list(names) if names is not None else None
        self._columns: list[str] | None = None
        self._skip_first = layout.header and layout.format != "parquet"
        self._header_line = 0

    # ---------------------------------------------------------------- header
    @property
    def columns(self) -> list[str]:
        """The column names: the header's, the Parquet schema's or the given ``names``."""
        if self._columns is None:
            if self.layout.format == "parquet":
                self._columns = list(self._parquet().schema_arrow.names)
            elif not self.layout.header:
                self._columns = list(self._names or [])
            else:
                first = self.first_records(1)
                if not first:
                    raise InputError("no data rows: the file is empty", path=self.path)
                self._header_line = first[0][0]
                self._columns = [f.strip() for f in first[0][1]]
        return self._columns

    def first_records(self, count: int) -> list[tuple[int, list[str]]]:
        """The first ``count`` records ``(line, fields)``, header included, for sniffing."""
        out: list[tuple[int, list[str]]] = []
        try:
            for record in scan_records(self.path, self.layout):
                out.append(record)
                if len(out) >= count:
                    break
        except InputError as exc:
            if exc.line is None or exc.line <= 1:
                raise
        return out

    def skip_header_record(self, line: int) -> None:
        """Read the first record (on ``line``) as a header: skip it."""
        self._skip_first = True
        self._header_line = line

    def _parquet(self):
        import pyarrow.parquet as pq

        if not self.path.exists():
            raise InputError("no such file", path=self.path)
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise InputError(f"not a Parquet file: {exc}", path=self.path) from None

    def require(self, names: Sequence[str], what: str = "column") -> None:
        """Every name in ``names`` must be a column; say which columns the file has otherwise."""
        columns = self.columns
        for name in names:
            if name not in columns:
                raise InputError(
                    f"no {what} {name!r}; the file has {', '.join(columns) or 'no columns'}",
                    path=self.path,
                    line=self._header_line or None,
                    field=name,
                )

    # ---------------------------------------------------------------- batches
    def chunks(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[Chunk]:
        """Arrow arrays of ``columns`` (default all), ``chunk_rows`` rows at a time.

        Text columns are Arrow strings; Parquet columns keep their types.
        Raises :class:`InputError` with the exact line on whatever Arrow cannot
        parse, and naming the file when it has no data rows.
        """
        wanted = list(self.columns if columns is None else columns)
        self.require(wanted)
        first = 0
        batches = self._parquet_batches if self.layout.format == "parquet" else self._text_batches
        for batch in batches(chunk_rows, wanted):
            if batch.num_rows:
                arrays = {name: batch.column(i) for i, name in enumerate(wanted)}
                yield Chunk(arrays, first, batch.num_rows)
                first += batch.num_rows
        if first == 0:
            raise InputError(
                "no data rows after the header line"
                if self._header_line and self.layout.header
                else "no data rows: the file is empty",
                path=self.path,
            )

    def _parquet_batches(self, chunk_rows: int, wanted: list[str]):
        yield from self._parquet().iter_batches(batch_size=chunk_rows, columns=wanted)

    def _text_batches(self, chunk_rows: int, wanted: list[str]):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = self.columns
        generated = [f"f{i}" for i in range(len(names))]  # header names may repeat

        def invalid(row) -> str:
            return "skip" if not row.text.strip() else "error"

        stream = io.BufferedReader(_Normalised(open_bytes(self.path), self.layout), 1 << 22)
        try:
            if self._skip_first:
                while (line := stream.readline()) and not line.strip():
                    pass
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    column_names=generated, block_size=_BLOCK_BYTES, encoding=self.layout.encoding
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t" if self.layout.whitespace else self.layout.sep,
                    quote_char='"' if self.layout.quoting else False,
                    newlines_in_values=self.layout.quoting,
                    invalid_row_handler=invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={g: pa.string() for g in generated},
                    include_columns=[generated[names.index(n)] for n in wanted],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            # the rows come in Arrow's batches (one per parse block), cut to chunk_rows
            last = None
            for batch in reader:
                for start in range(0, batch.num_rows, chunk_rows):
                    if last is not None:
                        yield last
                    last = batch.slice(start, chunk_rows)
            if last is not None:
                self._check_last_row(last)
                yield last
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            self._parse_problem(str(exc))
        finally:
            stream.close()

    def _check_last_row(self, batch) -> None:
        """A quote that never closes swallows the rest of the file into the last row."""
        if not self.layout.quoting:
            return
        for column in batch.columns:
            value = column[batch.num_rows - 1].as_py()
            if isinstance(value, str) and ("\n" in value or "\r" in value):
                for _ in scan_records(self.path, self.layout):  # raises at the opening line
                    pass
                return

    def _parse_problem(self, message: str) -> None:
        """Name the line Arrow could not parse, by scanning the original file."""
        width = len(self.columns)
        for line, fields in scan_records(self.path, self.layout):
            longest = max(len(f) for f in fields)
            if longest >= _BLOCK_BYTES // 2:
                raise InputError(
                    f"a field of {longest:,} characters; a field may hold at most "
                    f"{_BLOCK_BYTES // 2:,}",
                    path=self.path,
                    line=line,
                )
            if line > self._header_line and len(fields) != width:
                raise InputError(self.field_count_problem(len(fields)), path=self.path, line=line)
        detail = message.removeprefix("CSV parse error: ").splitlines()[0]
        raise InputError(f"cannot parse: {detail}", path=self.path)

    def field_count_problem(self, count: int) -> str:
        """``"3 fields, expected 2 (src dst)"``: the text for a row of ``count`` fields."""
        if self._count_problem is not None:
            return self._count_problem(count)
        names = self.columns
        plural = "" if count == 1 else "s"
        if self.layout.header:
            return f"{count} field{plural}, expected {len(names)} as in the header"
        return f"{count} field{plural}, expected {len(names)} ({' '.join(names)})"

    # ---------------------------------------------------------------- lines
    def record(self, row: int) -> tuple[int, list[str] | None]:
        """``(line, raw fields)`` of data row ``row`` (0-based); Parquet: ``(row + 1, None)``."""
        if self.layout.format == "parquet":
            return row + 1, None
        seen = -1
        for line, fields in scan_records(self.path, self.layout):
            if line <= self._header_line and self._skip_first:
                continue
            seen += 1
            if seen == row:
                return line, fields
        return row + 1, None

    def error(self, message: str, row: int, field: str | None = None) -> InputError:
        """An :class:`InputError` at data row ``row``; a row with the wrong number of
        fields is reported as such, whichever rule noticed it first."""
        line, fields = self.record(row)
        if fields is not None and len(fields) != len(self.columns):
            return InputError(self.field_count_problem(len(fields)), path=self.path, line=line)
        return InputError(message, path=self.path, line=line, field=field)


# ---------------------------------------------------------------------- rules
#: Where a chunk's rows are: the row number of its first row, or one row number per row
#: (when some rows were dropped, such as repeated header lines).
Rows = int | np.ndarray


def _at(rows: Rows, position: int) -> int:
    return int(rows[position]) if isinstance(rows, np.ndarray) else rows + position


def _first(mask) -> int | None:
    """Position of the first true value of an Arrow or numpy boolean mask."""
    values = np.asarray(mask.fill_null(True) if hasattr(mask, "fill_null") else mask)
    hits = np.flatnonzero(values)
    return int(hits[0]) if len(hits) else None


def _trimmed(array):
    """Strings trimmed of surrounding spaces (Arrow); numbers become their text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    return pc.utf8_trim_whitespace(array)


def ids(array, name: str, source: TableSource, first_row: Rows, *, arrow: bool = False):
    """Validated external ids as an object array of ``str`` (see the module rules).

    ``arrow``: a pandas ``str`` array on the Arrow buffers instead (what a DataFrame
    column of text becomes anyway), without a Python object per id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(array.type):
        raise InputError(
            f"ids must be text or integers, got {array.type}", path=source.path, field=name
        )
    text = _trimmed(array)
    problems = (
        (pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_length(text), 0)), f"empty {name} id"),
        (pc.match_substring(text, "\x00"), f"{name} id contains a NUL byte"),
        (
            pc.match_substring_regex(text, _CONTROL),
            f"{name} id contains a control character (a line break or tab)",
        ),
        (
            pc.greater(pc.utf8_length(text), EXTERNAL_ID_LENGTH),
            f"{name} id longer than {EXTERNAL_ID_LENGTH} characters",
        ),
    )
    for mask, message in problems:
        row = _first(mask)
        if row is not None:
            raise source.error(message, _at(first_row, row), name)
    if arrow:
        import pandas as pd

        return pd.array(text, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    return text.to_numpy(zero_copy_only=False).astype(object, copy=False)


def timestamps(
    array,
    name: str,
    source: TableSource,
    first_row: Rows,
    empty: int | Literal["none"] | None = None,
) -> np.ndarray:
    """Whole unix seconds (int64) from integer, timestamp or text columns.

    Empty cells become ``empty`` (``"none"``: None, in an object array), or
    are an error when it is None. Values outside
    :data:`TIMESTAMP_MIN`..:data:`TIMESTAMP_MAX` are refused.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(array.type):
        array = pc.cast(array.cast(pa.timestamp("s", tz=array.type.tz), safe=False), pa.int64())
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        blank = pc.equal(pc.utf8_length(text), 0)
        text = pc.if_else(blank, pa.scalar(None, pa.string()), text)
        bad = pc.invert(pc.match_substring_regex(text, r"^[+-]?[0-9]{1,30}$"))
        row = _first(pc.and_kleene(pc.is_valid(text), bad).fill_null(False))
        if row is not None:
            value = text[row].as_py()
            raise source.error(f"non-integer {name} {value!r}", _at(first_row, row), name)
        too_long = pc.greater(pc.utf8_length(text), 19)
        row = _first(too_long.fill_null(False))
        if row is not None:
            raise source.error(
                timestamp_range_problem(name, text[row].as_py()), _at(first_row, row), name
            )
        try:
            array = text.cast(pa.int64())
        except pa.ArrowInvalid:  # 19 digits beyond int64
            values = text.to_pylist()
            row = next(i for i, v in enumerate(values) if v is not None and abs(int(v)) >= 2**63)
            raise source.error(
                timestamp_range_problem(name, values[row]), _at(first_row, row), name
            ) from None
    elif not pa.types.is_integer(array.type):
        raise InputError(
            f"{name} must be integers (unix seconds) or timestamps, got {array.type}",
            path=source.path,
            field=name,
        )
    if pa.types.is_uint64(array.type):
        row = _first(pc.greater(array, pa.scalar(TIMESTAMP_MAX, pa.uint64())).fill_null(False))
        if row is not None:
            raise source.error(
                timestamp_range_problem(name, array[row].as_py()), _at(first_row, row), name
            )
        array = array.cast(pa.int64())
    nulls = pc.is_null(array)
    missing = np.zeros(len(array), bool)
    if pc.any(nulls).as_py():
        if empty is None:
            raise source.error(f"empty {name}", _at(first_row, _first(nulls)), name)
        missing = np.asarray(nulls)
        array = array.fill_null(0 if empty == "none" else empty)
    values = np.asarray(array.cast(pa.int64()), dtype=np.int64)
    row = _first((values < TIMESTAMP_MIN) | (values > TIMESTAMP_MAX))
    if row is not None:
        raise source.error(
            timestamp_range_problem(name, int(values[row])), _at(first_row, row), name
        )
    if empty == "none":
        out = values.astype(object)
        out[missing] = None
        return out
    return values


def timestamp_range_problem(name: str, value: object) -> str:
    """The message for a time outside :data:`TIMESTAMP_MIN`..:data:`TIMESTAMP_MAX`."""
    hint = ""
    try:
        number = int(value)  # type: ignore[call-overload]
        if TIMESTAMP_MAX < abs(number) < TIMESTAMP_MAX * 10**6:
            hint = " (milliseconds or microseconds? give seconds)"
    except (TypeError, ValueError):
        pass
    return f"{name} {value} is out of range: unix seconds between year 1 and 9999{hint}"


def numbers(array, name: str, source: TableSource, first_row: Rows) -> np.ndarray:
    """Finite float64 values; empty cells are NaN (no value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
        try:
            array = text.cast(pa.float64())
        except pa.ArrowInvalid:
            for row, value in enumerate(text.to_pylist()):
                if value is not None:
                    try:
                        float(value)
                    except ValueError:
                        raise source.error(
                            f"not a finite number: {value!r}", _at(first_row, row), name
                        ) from None
            raise
    elif not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise InputError(f"{name} must be numbers, got {array.type}", path=source.path, field=name)
    values = np.asarray(array.cast(pa.float64()).fill_null(np.nan), dtype=np.float64)
    row = _first(np.isinf(values) | (np.isnan(values) & np.asarray(pc.is_valid(array))))
    if row is not None:
        raise source.error(
            f"not a finite number: {array[row].as_py()!r}", _at(first_row, row), name
        )
    return values


def labels(
    array, name: str, source: TableSource, first_row: Rows, allowed: Sequence[str]
) -> np.ndarray:
    """Lower-cased labels, each one of ``allowed``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_lower(_trimmed(array))
    row = _first(pc.invert(pc.is_in(text, value_set=pa.array(list(allowed)))))
    if row is not None:
        value = array[row].as_py()
        raise source.error(
            f"unknown {name} {value!r}; expected one of {', '.join(allowed)}",
            _at(first_row, row),
            name,
        )
    return text.to_numpy(zero_copy_only=False).astype(object, copy=False)


def fixed_label(value: str | None, allowed: Sequence[str], what: str) -> str | None:
    """A label given once for every row (``--kind``, ``--value``), checked; None stays None."""
    if value is None:
        return None
    label = value.strip().lower()
    if label not in allowed:
        raise InputError(
            f"unknown {what} {value!r}; expected one of {', '.join(allowed)}", field=what
        )
    return label


def optional_text(array) -> np.ndarray:
    """Trimmed text, None where empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _trimmed(array)
    text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
    return np.asarray(text.to_pylist(), dtype=object)


def json_objects(array, name: str, source: TableSource, first_row: Rows) -> list[dict | None]:
    """A JSON object per row (None where empty)."""
    import json

    out: list[dict | None] = []
    for row, text in enumerate(optional_text(array)):
        if text is None:
            out.append(None)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise source.error(
                f"{name} are not JSON: {exc.msg}", _at(first_row, row), name
            ) from None
        if not isinstance(value, dict):
            raise source.error(f"{name} must be a JSON object", _at(first_row, row), name)
        out.append(value)
    return out


__all__ = [
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "Chunk",
    "Format",
    "Layout",
    "TableSource",
    "fixed_label",
    "format_of",
    "ids",
    "json_objects",
    "labels",
    "numbers",
    "optional_text",
    "scan_records",
    "timestamps",
    "open_bytes",
    "parse_sep",
    "timestamp_range_problem",
    "table_layout",
]
