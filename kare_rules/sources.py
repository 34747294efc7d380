"""Reading account sources (Parquet, CSV, DuckDB tables, SQL over a database URL) and writing results.

`read_accounts` is the one way every command reads its input: whatever is wrong with a source (no
such file, a directory, an empty or truncated file, ragged rows, bytes that are not UTF-8, files of a
glob that disagree) becomes one DataError that names the path, says what is wrong and what to do.
"""

from __future__ import annotations

import csv
import glob
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import polars as pl

from kare_rules.errors import DataError, UsageError, one_line

DEFAULT_INPUT = "data/sample/{org}/latest.parquet"  # what `kare sample` writes; {org} and {as_of} are filled in
SOURCE_HELP = (
    "a source is a .parquet, .csv or tab-separated .tsv path (globs allowed), 'duckdb:PATH.duckdb:TABLE' for a "
    "DuckDB table, or 'sql:URL::QUERY' for a query against a database URL (postgresql://…, duckdb:///path)"
)
_CSV_SUFFIXES = (".csv", ".txt", ".tsv")
# Files that exports write but kare does not read, by name and by first bytes, with what to do instead.
_UNREAD_HINTS = {
    "an Excel workbook": "save the sheet as 'CSV UTF-8 (comma delimited)' and give that file",
    "a compressed file": "decompress it (gunzip, unzip) and give the CSV or Parquet file",
    "JSON": "write the accounts as CSV or Parquet",
    "UTF-16": "save the file as 'CSV UTF-8'",
    "zip": "save an Excel sheet as 'CSV UTF-8 (comma delimited)', or unzip an archive, and give the CSV file",
}
_UNREAD_SUFFIXES = {
    **dict.fromkeys((".xlsx", ".xlsm", ".xls", ".ods"), "an Excel workbook"),
    **dict.fromkeys((".gz", ".zip", ".bz2", ".xz", ".zst"), "a compressed file"),
    **dict.fromkeys((".json", ".jsonl", ".ndjson"), "JSON"),
}
_NOT_TEXT = {
    b"PK\x03\x04": ("a zip archive (an Excel workbook, or a compressed file)", "zip"),
    b"\x1f\x8b": ("a compressed file (gzip)", "a compressed file"),
    b"\xd0\xcf\x11\xe0": ("an Excel workbook", "an Excel workbook"),
    b"\xff\xfe": ("UTF-16 text (as Excel's 'Unicode Text' writes)", "UTF-16"),
    b"\xfe\xff": ("UTF-16 text", "UTF-16"),
}
_HEADER_LIMIT = 1 << 20  # a header line longer than 1 MiB is not a header: binary data, or no newline at all


def read_accounts(
    source: str | Path,
    *,
    allow_empty: bool = False,
    where: pl.Expr | Callable[[pl.Schema], pl.Expr] | None = None,
    row_index: str | None = None,
) -> pl.DataFrame:
    """Read a source into a frame, every column as written; any problem is a DataError for people.

    A source without rows is refused unless `allow_empty`: an empty extract is far more often a broken
    export than a real answer. `where` filters before anything is collected (kare explain reads one
    account of a large file; a sliced run, one slice of accounts); with it the emptiness of the source
    is not checked; it may be a function of the source's schema (a key compared as its column's type
    reads). `row_index` names a column added with each row's 0-based position in the source.
    """
    text = str(source)
    lazy = read_source(text)
    schema = _schema(lazy, text)
    if callable(where):
        where = where(schema)
    if row_index is not None:
        lazy = lazy.with_row_index(row_index)
    if where is not None:
        absent = [c for c in where.meta.root_names() if c not in schema.names()]
        if absent:
            from kare_rules.validation import separator_hint

            hint = separator_hint(schema.names())
            raise DataError(
                f"input {masked(text)} has no column {', '.join(map(repr, absent))}; present: "
                f"{one_line(', '.join(schema.names()))}" + (f". {hint}" if hint else "")
            )
        lazy = lazy.filter(where)
    try:
        frame = lazy.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(text, exc) from None
    if frame.height == 0 and where is None and not allow_empty:
        raise DataError(
            f"input {masked(text)} has no rows (columns: {one_line(', '.join(frame.columns)) or 'none'}); an empty "
            "extract is refused because it would make every account disappear. Check the export that wrote it"
        )
    return frame


def stream_accounts(source: str | Path) -> Iterator[pl.DataFrame]:
    """A source's rows in batches, in order, every column as written: one pass over a large input
    without holding all of it."""
    text = str(source)
    lazy = read_source(text)
    _schema(lazy, text)
    try:
        yield from lazy.collect_batches()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(text, exc) from None


def count_rows(source: str | Path) -> tuple[int, pl.DataFrame]:
    """How many rows a source has and its first few thousand (from the Parquet footer: no full read)."""
    text = str(source)
    lazy = read_source(text)
    _schema(lazy, text)
    try:
        return int(lazy.select(pl.len()).collect().item()), lazy.head(10_000).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(text, exc) from None


def file_state(source: str | Path) -> tuple | None:
    """Size and modification time of each file of a file source (None for databases): a run that reads
    its input more than once checks that nobody rewrote it in between."""
    text = str(source)
    if text.startswith(("duckdb:", "sql:")):
        return None
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in source_files(text))


def read_source(source: str | Path) -> pl.LazyFrame:
    """Open an account source lazily. Everything is read as written; typing happens in validation.

    Files are checked before Polars sees them (each is a regular, non-empty file of its format, a glob
    matches at least one, the files of a glob share one schema); `read_accounts` also turns what only
    shows while reading (ragged rows, bytes that are not UTF-8) into a located message.
    """
    text = str(source)
    if text.startswith("duckdb:"):
        return _read_duckdb_table(text.removeprefix("duckdb:"))
    if text.startswith("sql:"):
        return _read_sql(text.removeprefix("sql:"))
    suffix = Path(text).suffix.lower()
    if suffix not in (".parquet", *_CSV_SUFFIXES):
        if not _is_glob(text):
            _check_file(Path(text))  # a missing path or a directory says so, before its format
        kind = _UNREAD_SUFFIXES.get(suffix)
        hint = f": it looks like {kind}, which is not read; {_UNREAD_HINTS[kind]}" if kind else ""
        raise UsageError(f"cannot tell the format of {text!r}{hint}; {SOURCE_HELP}")
    files = source_files(text)
    try:
        if suffix == ".parquet":
            return _scan_parquet(text, files)
        separator = "\t" if suffix == ".tsv" else ","
        headers = {f: _csv_header(f, separator) for f in files}
        _same_schema(text, headers, ordered=True)
        for f, header in headers.items():
            _refuse_cut_short(f, separator, len(header))
        # Read every column as text: a value that does not fit its declared type is then
        # quarantined with a reason instead of failing the whole read.
        return pl.scan_csv(files, infer_schema=False, separator=separator)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(text, exc) from None


def source_files(text: str) -> list[Path]:
    """The files a path or glob names, each checked to be a readable, non-empty regular file of its format."""
    if _is_glob(text):
        files = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        if not files:
            raise DataError(f"input {masked(text)} matches no file; check the folder and the pattern ({SOURCE_HELP})")
    else:
        files = [Path(text)]
    for f in files:
        _check_file(f)
        if f.suffix.lower() == ".parquet":
            _check_parquet_magic(f)
    return files


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _check_file(path: Path) -> None:
    """A path that can be read as a file: it exists and is a regular, non-empty file (not a directory,
    device or pipe, which would be read as nothing or block forever)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"input {path} does not exist; {SOURCE_HELP}") from None
    except OSError as exc:
        raise DataError(f"cannot open input {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        pattern = path / f"*{path.suffix or '.parquet'}"
        raise DataError(f"input {path} is a directory; give a file in it, or a glob such as {pattern}")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"input {path} is not a regular file (a device, pipe or socket); give a .parquet or .csv file")
    if st.st_size == 0:
        raise DataError(f"input {path} is empty (0 bytes): no header, no rows; check the export that wrote it")


def _check_parquet_magic(path: Path) -> None:
    """A Parquet file starts and ends with PAR1; a truncated copy or a renamed CSV does not."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
    except OSError as exc:
        raise DataError(f"cannot read input {path}: {exc.strerror}") from None
    if size < 12:  # magic, footer length and magic again: anything shorter is not a whole file
        head = tail = b""
    if head != b"PAR1" or tail != b"PAR1":
        what = "it is truncated (it does not end with PAR1)" if head == b"PAR1" else "it does not start with PAR1"
        raise DataError(f"input {path} is not a Parquet file: {what}. Write it again, or give a CSV file a .csv name")


def _scan_parquet(text: str, files: list[Path]) -> pl.LazyFrame:
    """The files of a Parquet path or glob as one frame. A column that is all nulls in some files
    (pandas writes an all-None column, and every column of an empty part, as the null type) takes the
    type the other files give it: its nulls fit any type, and refusing it would refuse a folder for a
    file with no owner or no rows."""
    dtypes = {f: _parquet_dtypes(f) for f in files}
    typed: dict[str, pl.DataType] = {}
    for schema in dtypes.values():
        for name, dtype in schema.items():
            if dtype != pl.Null:
                typed.setdefault(name, dtype)
    filled = {f: {n: typed.get(n, d) if d == pl.Null else d for n, d in s.items()} for f, s in dtypes.items()}
    _same_schema(text, {f: {n: str(d) for n, d in s.items()} for f, s in filled.items()})
    if all(filled[f] == dict(dtypes[f]) for f in files):
        return pl.scan_parquet(files)  # exactly the files checked, not a second expansion of the glob
    casts = {f: [pl.col(n).cast(d) for n, d in filled[f].items() if d != dtypes[f][n]] for f in files}
    return pl.concat([pl.scan_parquet(f).with_columns(casts[f]) for f in files])


def _parquet_schema(path: Path) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in _parquet_dtypes(path).items()}


def _parquet_dtypes(path: Path) -> pl.Schema:
    try:
        return pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"input {path} is not a readable Parquet file: {_first_line(exc)}") from None


def _csv_header(path: Path, separator: str) -> dict[str, str]:
    """The header row of a CSV file as {name: 'text'}; duplicate names are refused, since the values
    under them could not be told apart. Blank names are extra columns like any other (pandas writes
    its index so, a spreadsheet its empty columns)."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(_HEADER_LIMIT)
    except OSError as exc:
        raise DataError(f"cannot read input {path}: {exc.strerror}") from None
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        found = next((kind for magic, kind in _NOT_TEXT.items() if first.startswith(magic)), None)
        if found:  # an export named .csv that is a workbook or compressed: re-encoding is not the fix
            what, hint = found
            raise DataError(f"input {path} is {what}, not UTF-8 CSV text; {_UNREAD_HINTS[hint]}") from None
        raise DataError(f"input {path}:1: the header row is not UTF-8 text; save the file as UTF-8 CSV") from None
    try:
        names = next(csv.reader([line], delimiter=separator), [])
    except csv.Error as exc:
        if "new-line" in str(exc):  # a CR not followed by LF: the line read up to the first LF holds more lines
            raise DataError(
                f"input {path}:1: the header row holds a carriage return (CR) that ends no line, as when a file's "
                "lines end with CR alone (Excel for Mac's 'CSV (Macintosh)'); save it as 'CSV UTF-8', with LF or "
                "CRLF line ends"
            ) from None
        raise DataError(
            f"input {path}:1: the first line holds a value of more than {csv.field_size_limit()} characters, which "
            "is no column name: the file does not look like CSV; give a CSV file whose first line names the columns"
        ) from None
    seen: dict[str, int] = {}
    repeats: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            if name.strip():
                raise DataError(
                    f"input {path}:1: column {name!r} appears twice in the header (fields {seen[name]} and {i}); "
                    "give each column its own name"
                )
            # Several blank names are unnamed extra columns (a spreadsheet's empty columns after the data, which
            # Excel writes as trailing commas): no input can be named so. Named as Polars reads them ('',
            # '_duplicated_0', …), so that every field is counted.
            repeats[name] = repeats.get(name, -1) + 1
            name = f"{name}_duplicated_{repeats[name]}"
        seen[name] = i
    return dict.fromkeys(seen, "text")


def _refuse_cut_short(path: Path, separator: str, fields: int) -> None:
    """A file that ends in the middle of a row (a copy cut short): its last line has no line end and fewer
    fields than the header. Polars would read the missing fields as empty values, silently. Only a last
    line without quotes is judged: one with a quote may end a value that spans lines."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - _HEADER_LIMIT))
        tail = fh.read()
    if not tail or tail.endswith((b"\n", b"\r")) or b"\n" not in tail:
        return  # ends a line, or is one line (the header)
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    if '"' in last:
        return
    got = len(last.split(separator))  # no quotes: every separator parts two fields (and no field-size limit)
    if got < fields:
        raise DataError(
            f"input {path}: its last line has {got} field(s) where the header has {fields}, and no line end: the "
            "file looks cut short; copy or export it again"
        )


def _same_schema(text: str, schemas: dict[Path, dict[str, str]], ordered: bool = False) -> None:
    """The files of one glob must agree on their columns and types (for CSV, in order: columns are
    matched by position): rows from each are read as one table."""
    (first, want), *rest = schemas.items()
    for path, got in rest:
        if got == want and (not ordered or list(got) == list(want)):
            continue
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        typed = [f"{c} is {got[c]} there and {want[c]} in {first}" for c in want if c in got and got[c] != want[c]]
        what = (
            [f"it lacks {', '.join(map(repr, missing))}"] * bool(missing)
            + [f"it adds {', '.join(map(repr, extra))}"] * bool(extra)
            + typed
            + ["its columns are in another order"] * (not (missing or extra or typed))
        )
        raise DataError(
            f"the files of input {masked(text)} do not share one schema: {path} differs from {first} "
            f"({'; '.join(what)}). Make them agree, or read them one at a time"
        )


def _schema(lazy: pl.LazyFrame, text: str) -> pl.Schema:
    try:
        # On a clone: in Polars 2.1 a Parquet scan whose schema was collected no longer skips row groups
        # by their statistics, and a filtered read (one slice of accounts) took 5x as long.
        schema = lazy.clone().collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(text, exc) from None
    refuse_pattern_names(schema.names(), f"input {masked(text)}")
    return schema


def refuse_pattern_names(columns: Iterable[str], source: str) -> None:
    """A DataError for a column named '*' or '^…$': Polars takes such a name for every column or for a
    pattern of names, not for itself, so the column could not be read alone (it made categorize and explain
    end in a traceback, a run fail with 'multiple fields with name ...', and its values would be lost from
    the quarantine's records). No rule file can name one; the source must rename or drop it."""
    odd = [c for c in columns if c == "*" or (len(c) > 1 and c.startswith("^") and c.endswith("$"))]
    if odd:
        raise DataError(
            f"{source} has a column named {one_line(', '.join(map(repr, odd)))}: kare's engine (Polars) reads a "
            "name '*' as every column and a name from '^' to '$' as a pattern of column names, so it cannot read "
            "that column as itself; rename or drop it in the source"
        )


def _read_error(text: str, exc: Exception) -> DataError:
    """What went wrong while reading, located to the file and line when it can be found."""
    message = str(exc)
    if message.startswith("empty CSV"):  # only line ends, or only a byte-order mark: as empty as 0 bytes
        return DataError(
            f"input {masked(text)} is empty (no header, no rows: only line ends or a byte-order mark); check the "
            "export that wrote it"
        )
    if "utf-8" in message.lower() or "utf8" in message.lower():
        for path in _files_of(text):
            line = _first_non_utf8_line(path)
            if line:
                return DataError(
                    f"input {path}:{line}: this line is not UTF-8 text; save the file as UTF-8 (or fix its bytes)"
                )
    if "more fields" in message or "ragged" in message:
        for path in _files_of(text):
            found = _first_ragged_row(path)
            if found and (wrong := _separator_error(path)):
                # A file separated by ';' with decimal commas ('0,3'): its header reads as one field and such
                # a row as two. The separator is the fix, not quoting the row.
                return wrong
            if found:
                line, fields, expected = found
                return DataError(
                    f"input {path}:{line}: {fields} fields where the header has {expected}; quote values that "
                    "contain the separator, or fix the row"
                )
    if "could not parse" in message or "malformed" in message:
        for path in _files_of(text):
            if path.suffix.lower() in _CSV_SUFFIXES and (found := _first_bad_quote(path)):
                # A file separated by ';' reads as one column: its quoted values are followed by ';…'.
                line, what = found
                if wrong := _separator_error(path):
                    return wrong
                return DataError(f"input {path}:{line}: {what}")
    return DataError(f"cannot read input {masked(text)}: {_first_line(exc)}")


def _separator_error(path: Path) -> DataError | None:
    """What to do about a CSV file whose header reads as one column holding several names."""
    from kare_rules.validation import separator_hint

    if hint := excel_separator_line(_first_text_line(path)):
        return DataError(f"input {path}:1: {hint}")
    hint = separator_hint(list(_csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")))
    return DataError(f"input {path}: {hint[0].lower()}{hint[1:]}") if hint else None


def nan_text(text: pl.Expr) -> pl.Expr:
    """Text that reads as NaN ('nan', ' NaN '): a missing number, as Python's csv module writes a missing
    value of pandas' float64 (beside the '3.0' an integer column accepts)."""
    return text.str.strip_chars().cast(pl.Float64, strict=False).is_nan().fill_null(False)


def _first_bad_quote(path: Path) -> tuple[int, str] | None:
    """(line, what is wrong) of the first value whose quotes a CSV reader cannot follow: a quote inside a
    value that does not start with one (12" screen), text after a closing quote, or a quote never closed.
    Polars reports these as a parse error of a whole chunk, without a line."""
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    state, opened = "start", 0  # start of a value, plain value, quoted value, just after a quote in one
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        for number, line in enumerate(fh, 1):
            if state == "start" and '"' not in line:
                continue
            for ch in line:
                ends = ch == separator or ch in "\r\n"
                if state == "start":
                    state = "quoted" if ch == '"' else "start" if ends else "plain"
                    opened = number if ch == '"' else opened
                elif state == "plain" and ch == '"':
                    return number, (
                        'a value has a quote (") inside it but does not start with one; quote the whole value '
                        'and double the quotes in it ("12"" screen" for 12" screen), or remove the quote'
                    )
                elif state == "plain":
                    state = "start" if ends else "plain"
                elif state == "quoted":
                    state = "closing" if ch == '"' else "quoted"
                elif ch == '"':
                    state = "quoted"  # a doubled quote: one quote inside the value
                elif ends:
                    state = "start"
                else:
                    return number, (
                        "a value has text after its closing quote; quote the whole value and double the quotes "
                        'in it ("""Gekko"" & Co" for "Gekko" & Co)'
                    )
    if state == "quoted":
        return opened, (
            "a quote opens a value that is never closed, so the rest of the file would be one value; close it, "
            'or double a quote that belongs to the value ("12"" screen")'
        )
    return None


def _files_of(text: str) -> Iterable[Path]:
    return [Path(p) for p in sorted(glob.glob(text, recursive=True))] if _is_glob(text) else [Path(text)]


def _first_non_utf8_line(path: Path) -> int | None:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def excel_separator_line(first_line: str) -> str:
    """What to do when a CSV's first line is Excel's separator hint ('sep=,' or 'sep=;'), read as the header
    (then each row has more fields than it, or the one column is 'sep=;'), else ''."""
    line = first_line.strip("\r\n")
    if not re.fullmatch(r"sep=.?", line, flags=re.IGNORECASE):
        return ""
    resave = "" if line[4:] in (",", "\t", "") else " (and save the file comma-separated)"
    return f"the first line is {line!r}, Excel's separator hint, not the header; delete that line{resave}"


def _first_text_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        return fh.readline(4096)


def _first_ragged_row(path: Path) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row longer than the header."""
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    # Polars read every value already: one longer than the csv module's default limit of 131072 characters
    # (a CRM's long text field: Salesforce allows 131072) is no reason to fail finding the row.
    limit = csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            rows = csv.reader(fh, delimiter=separator)
            expected = len(next(rows, []))
            for row in rows:
                if len(row) > expected:
                    return rows.line_num, len(row), expected
    finally:
        csv.field_size_limit(limit)
    return None


def _first_line(exc: BaseException) -> str:
    """An error's first line, any password of a URL in it masked (psycopg quotes the connection string)."""
    return masked((str(exc).strip().splitlines() or [type(exc).__name__])[0])


# A URL's user and the ':' before its password; the password runs to the last @ before a space (an unencoded @
# in a password hides the rest of it too).
_USER = re.compile(r"://[^:/@\s\[\]]+:")
_SPACE = re.compile(r"\s")
# libpq also takes the password as a parameter (postgresql://host/db?user=u&password=…, or password=… in a
# key=value string); its value runs to the next '&' or space.
_PASSWORD_PARAMETER = re.compile(r"(\bpassword=)[^&\s]+", re.IGNORECASE)


def masked(text: str) -> str:
    """`text` with the password of every URL in it (scheme://user:password@host, or a `password=` parameter)
    written as ***.

    In one pass: the pattern `(://user:)\\S*@` tried again at each '://' scanned the rest of the word each
    time, so an error message quoting a long value made of '://a:' took minutes (quadratic)."""
    text = _PASSWORD_PARAMETER.sub(r"\1***", text)
    out, done, start = [], 0, 0
    while (user := _USER.search(text, start)) is not None:
        space = _SPACE.search(text, user.end())
        word_end = space.start() if space else len(text)
        at = text.rfind("@", user.end(), word_end)
        if at < 0:  # no '@' up to the end of this word: no URL starting later in it has one either
            start = word_end
            continue
        out += [text[done : user.end()], "***"]
        done = start = at
    return "".join(out) + text[done:]


def check_source(source: str | Path) -> None:
    """Everything `read_source` checks before reading, for a reader that opens the source itself
    (DuckDB reading a Parquet glob or a DuckDB table with `kare categorize --trusted`)."""
    text = str(source)
    if text.startswith("duckdb:"):
        path, table = _duckdb_spec(text.removeprefix("duckdb:"))
        with _open_duckdb(path) as con:
            _duckdb_relation(con, path, table, limit=0)
    elif text.startswith("sql:"):
        return  # a query is checked by running it
    else:
        files = source_files(text)
        if files[0].suffix.lower() == ".parquet":
            _same_schema(text, {f: _parquet_schema(f) for f in files})
        else:
            separator = "\t" if files[0].suffix.lower() == ".tsv" else ","
            _same_schema(text, {f: _csv_header(f, separator) for f in files}, ordered=True)


def _read_duckdb_table(spec: str) -> pl.LazyFrame:
    path, table = _duckdb_spec(spec)
    with _open_duckdb(path) as con:
        return _duckdb_relation(con, path, table).lazy()


def _duckdb_spec(spec: str) -> tuple[str, str]:
    path, sep, table = spec.rpartition(":")
    if not sep or not path or not table:
        raise UsageError(f"write a DuckDB table source as duckdb:PATH.duckdb:TABLE (got duckdb:{spec})")
    if not Path(path).exists():
        raise DataError(f"DuckDB file {path} does not exist")
    _check_file(Path(path))
    return path, table


def _open_duckdb(path: str):
    import duckdb

    try:
        return locked_duckdb(path, read_only=True)
    except duckdb.Error as exc:
        raise DataError(_open_failure(path, exc)) from None


def _open_failure(database: str, exc: Exception) -> str:
    """Why a DuckDB source would not open, and what to do when another process holds it for writing (a
    loader, a notebook, or a kare run publishing to the warehouse read as a source): DuckDB lets no reader
    in then, and its message names the process but not the way out."""
    text = f"cannot open {database} as a DuckDB database: {_first_line(exc)}"
    if "Conflicting lock" in text:
        text += (
            "; another process has the database open for writing: run again once it has closed it (a kare run "
            "holds its warehouse until it publishes), or read a copy of the file or an export of the table"
        )
    return text


def locked_duckdb(database: str, read_only: bool):
    """A DuckDB connection for reading a source: without file or network access (a view in someone else's
    database file must not read local files or URLs into the accounts, and from there into the quarantine),
    in UTC, and with its configuration locked so the query cannot change either.

    UTC: DuckDB hands a TIMESTAMPTZ value over in the session's time zone, the machine's by default, and
    the engine counts a zoned value by its local time; the same table would then give other days (and
    categories) on a laptop in California than on a server in UTC. An instant has no zone "as written",
    so it counts by its UTC date wherever the run is. (Set after connecting: DuckDB refuses a TimeZone in
    the connect config before its built-in time zone support is loaded.)"""
    import duckdb

    con = duckdb.connect(database, read_only=read_only, config={"enable_external_access": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _duckdb_relation(con, path: str, table: str, limit: int | None = None) -> pl.DataFrame:
    """SELECT * from a table named TABLE or SCHEMA.TABLE, each part a quoted identifier."""
    import duckdb

    ident = ".".join('"' + p.replace('"', '""') + '"' for p in table.split("."))
    try:
        relation = con.sql(f"SELECT * FROM {ident}" + (f" LIMIT {int(limit)}" if limit is not None else ""))
        return _converted(relation.pl, f"duckdb:{path}:{table}")
    except duckdb.CatalogException:
        names = [".".join(r) for r in con.sql(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL").fetchall()]  # fmt: skip
        raise DataError(f"DuckDB file {path} has no table {table}; its tables: {', '.join(names) or 'none'}") from None
    except duckdb.Error as exc:
        raise DataError(f"cannot read table {table} from {path}: {_first_line(exc)}") from None


def _read_sql(spec: str) -> pl.LazyFrame:
    """Run an operator's query, read-only: a source reads accounts, it never writes anything.

    DuckDB opens the database read-only and without file system access (no COPY … TO, read_text or
    ATTACH), locked so the query cannot turn it back on; PostgreSQL runs it as one prepared statement
    in a read-only transaction of a session whose default is read-only.
    """
    start, bracket = 0, spec.find("[")
    if 0 <= bracket < spec.find("::") and "]" in spec[bracket:]:
        start = spec.index("]", bracket) + 1  # postgresql://u@[::1]:5432/db::SELECT …: an IPv6 host
    cut = spec.find("::", start)
    while cut >= 0 and spec[cut + 2 : cut + 3] == ":":  # duckdb:///:memory:::SELECT … keeps its colon
        cut += 1
    url, query = (spec[:cut], spec[cut + 2 :]) if cut >= 0 else (spec, "")
    if not query.strip():
        raise UsageError("write a SQL source as sql:URL::QUERY, e.g. sql:postgresql://host/db::SELECT * FROM accounts")
    # The query only ever runs as the FROM of a SELECT: one SELECT (or WITH … SELECT) reads accounts, and a
    # COPY … TO, a SET, DDL or a second statement is a syntax error (PostgreSQL runs COPY TO a server file,
    # even TO PROGRAM, in a read-only transaction). The line breaks keep a trailing -- comment inside.
    query = f"SELECT * FROM (\n{query.strip().rstrip(';').rstrip()}\n) AS kare_source"
    if url.startswith("duckdb:///"):
        import duckdb

        database = url.removeprefix("duckdb:///") or ":memory:"
        if database != ":memory:":
            if not Path(database).exists() and Path("/" + database).exists():
                # As in SQLAlchemy, the path after duckdb:/// is relative: an absolute one takes a fourth slash.
                raise DataError(
                    f"input {database} does not exist: the path after duckdb:/// is relative to the current "
                    f"folder; for /{database} write sql:duckdb:////{database}::QUERY (four slashes)"
                )
            _check_file(Path(database))
        try:
            con = locked_duckdb(database, read_only=database != ":memory:")
        except duckdb.Error as exc:
            raise DataError(_open_failure(database, exc)) from None
        with con:
            try:
                # DuckDB runs every statement of a text: one that closes the parenthesis and starts another
                # ("…) AS a; CREATE …; SELECT * FROM (…") would run. Parsed first, so only one ever does.
                if len(con.extract_statements(query)) != 1:
                    raise DataError(
                        f"the query of source sql:{url} holds more than one statement; a source is one SELECT"
                    )
                result = con.sql(query)
                if result is None:
                    raise DataError(f"the query of source sql:{url} returns no rows (it is not a SELECT)")
                return _converted(result.pl, f"sql:{url}").lazy()
            except duckdb.Error as exc:
                raise DataError(
                    f"the query of source sql:{url} failed (a source is one SELECT, run read-only): {_first_line(exc)}"
                ) from None
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise UsageError("reading from PostgreSQL needs psycopg: pip install 'kare-rules[postgres]'") from None
        try:
            with psycopg.connect(url, options="-c default_transaction_read_only=on") as conn:
                conn.read_only = True
                # NUMERIC 'NaN' and 'Infinity' come over as floats, as in a float8 column: Polars holds no
                # Decimal NaN (it panicked), and validation then reads NaN as a missing value in both.
                conn.adapters.register_loader("numeric", _numeric_loader())
                with conn.cursor() as cur:
                    # In UTC, as a DuckDB source: a timestamptz comes over in the session's zone (the server's
                    # default, or PGTZ here) and would count by that local date, so results would depend on
                    # where they ran. After connecting: PGTZ would override a TimeZone in the options.
                    cur.execute("SET TIME ZONE 'UTC'")
                    # Prepared, so the extended protocol runs exactly one statement: a trailing
                    # "; COMMIT; SET … read_only = off; DROP …" is a syntax error, not a way out.
                    cur.execute(query, prepare=True)
                    if cur.description is None:
                        raise DataError(f"the query of source sql:{masked(url)} returns no rows (it is not a SELECT)")
                    names = [d.name for d in cur.description]
                    rows = cur.fetchall()
                conn.rollback()  # nothing to keep: a source only reads
        except psycopg.Error as exc:
            raise DataError(
                f"the query of source sql:{masked(url)} failed (a source is one SELECT, run read-only): "
                f"{_first_line(exc)}"
            ) from None
        return _converted(lambda: pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None),
                          f"sql:{masked(url)}").lazy()  # fmt: skip
    raise UsageError(f"unsupported database URL {masked(url)!r}; use postgresql://… or duckdb:///path")


def _numeric_loader():
    """A psycopg loader for NUMERIC: a Decimal, or a float for 'NaN', 'Infinity' and '-Infinity'."""
    from psycopg.types.numeric import NumericLoader

    class Loader(NumericLoader):
        def load(self, data):
            text = bytes(data)
            return float(text) if text in (b"NaN", b"Infinity", b"-Infinity") else super().load(data)

    return Loader


# A Rust panic inside Polars (a value it cannot convert) reaches Python as a BaseException.
_PANIC = pl.exceptions.PanicException


def _converted(make: Callable[[], pl.DataFrame], source: str) -> pl.DataFrame:
    """A query's result as a frame; a value Polars cannot hold (an INTERVAL, a UUID, a NUMERIC of
    more than 38 digits, two columns of one name) is the source's problem, said in one line."""
    try:
        return make()
    except (pl.exceptions.PolarsError, ValueError, TypeError, RuntimeError, _PANIC) as exc:
        raise DataError(
            f"the result of source {source} has a value or column kare cannot read: {_first_line(exc)}. Select "
            "the account columns the rules declare, cast others to text in the query (e.g. id::text)"
        ) from None


def write_frame(df: pl.DataFrame, path: str | Path) -> None:
    """Write a result by extension: .parquet, or .csv (list columns joined with '|')."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        df.write_parquet(path)
    elif suffix == ".csv":
        lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
        df.with_columns(pl.col(c).list.join("|") for c in lists).write_csv(path)
    else:
        raise UsageError(f"cannot write {path}: the output must end in .parquet or .csv")


def read_previous(rules, source: str | Path) -> pl.DataFrame:
    """The accounts' values in the previous run, for the trends, from a source: its key column (the
    rules' key, or `account_id`) and the rules' trend columns, typed as `inputs:` declares them. Returns
    `account_id` (text) and each trend column as a float, the shape `categorize(previous=...)` takes.
    A value that is not a number, a missing key or a key given twice stops with a DataError naming it.
    """
    from kare_rules.engine import cast_expr

    text = str(source)
    try:
        frame = read_accounts(text, allow_empty=True)
    except DataError as exc:
        raise DataError(f"previous values: {exc}") from None
    key = next((k for k in (rules.key, "account_id") if k in frame.columns), None)
    trends = list(rules.trend_columns)
    missing = ([] if key else [rules.key]) + [c for c in trends if c not in frame.columns]
    if missing:
        raise DataError(
            f"previous values {masked(text)} have no column {', '.join(map(repr, missing))}; they need the key column "
            f"and the columns the trends read ({', '.join(trends)}); "
            f"columns present: {one_line(', '.join(frame.columns))}"
        )
    key_type = rules.input(rules.key).type
    # The key as the accounts' is published: a text key as written (' A-002' is not 'A-002'), any other
    # typed first (with an integer key, 07 and 7.0 are account 7; a text key read from floats, 123.0 is
    # '123'). An empty or blank cell is no key.
    as_written = key_type == "string" and frame.schema[key] == pl.String
    account = (pl.col(key) if as_written else cast_expr(key, key_type, frame.schema[key])).cast(pl.String)
    typed = frame.select(
        pl.when(account.str.strip_chars() != "").then(account).alias("account_id"),
        *[cast_expr(c, rules.input(c).type, frame.schema[c]) for c in trends],
    )
    for c in trends:
        # An empty cell, quoted ("") or not, or a NaN (a missing number) is no previous value, not a bad one.
        given = frame[c].str.strip_chars() != "" if frame.schema[c] == pl.String else frame[c].is_not_null()
        given = given & ~frame[c].is_nan() if frame.schema[c].is_float() else given
        if frame.schema[c] == pl.String and rules.input(c).type == "integer":  # the text 'nan', as validation reads it
            given = given & ~frame.select(nan_text(pl.col(c))).to_series()
        # An infinite value (a division by zero in the export) is not a previous value either: its trend
        # would be inf or NaN.
        wrong = pl.col(c).is_null() | pl.col(c).cast(pl.Float64).is_infinite()
        bad = typed.with_row_index("_row").filter(wrong & given.fill_null(False))
        if bad.height:
            row = bad.row(0, named=True)
            raise DataError(
                f"previous values {masked(text)}: account {row['account_id']!r} has {c} = {frame[c][row['_row']]!r}, "
                f"not {_a_value_of(rules.input(c).type, typed[c][row['_row']])}; fix the value "
                "or leave it empty (no previous value)"
            )
    if typed["account_id"].null_count():
        # A key that is there but not of the key's type (an integer key written 'C-100') is not a missing one.
        raw = frame[key].cast(pl.String).str.strip_chars()
        wrong_type = typed["account_id"].is_null() & raw.is_not_null() & (raw != "")
        if wrong_type.any():
            value = frame[key].filter(wrong_type)[0]
            raise DataError(
                f"previous values {masked(text)}: the key {value!r} is not {_a_value_of(key_type, None)}, as "
                f"{rules.key} is declared in inputs; give the accounts' keys as the input has them"
            )
        row = typed["account_id"].is_null().arg_max()
        blank = " (it is empty: a blank line, delete it)" if all(frame[c][row] is None for c in frame.columns) else ""
        raise DataError(
            f"previous values {masked(text)} have a row without a key ({key}), row {(row or 0) + 1} after the "
            f"header{blank}; every row needs one"
        )
    counts = typed.group_by("account_id").len().filter(pl.col("len") > 1)
    if counts.height:
        row = counts.sort("account_id").row(0, named=True)
        raise DataError(
            f"account {row['account_id']!r} appears {row['len']} times in the previous values {masked(text)}; "
            "give one row per account"
        )
    return typed.with_columns(pl.col(c).cast(pl.Float64).fill_nan(None) for c in trends)


def _a_value_of(kind: str, typed: float | int | None) -> str:
    """What a bad previous value is not: 'a float', 'an integer', or 'a finite number' for an infinity."""
    if typed is not None:
        return "a finite number"
    return f"{'an' if kind == 'integer' else 'a'} {kind}"
