"""Input validation with Pandera, built per organization from the rule file's `inputs:`.

Every failing row is quarantined with all its reasons and the rest goes on; valid + quarantined rows
always add up to the input rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES, format_value
from kare_rules.engine import cast_expr, decoded, missing_columns, utf8_or_none
from kare_rules.errors import DataError, one_line
from kare_rules.loader import snake_form
from kare_rules.sources import excel_separator_line, nan_text, refuse_pattern_names

ROW = "_kare_row"

QUARANTINE_SCHEMA = {"row_number": pl.Int64, "account_id": pl.String, "reasons": pl.List(pl.String),
                     "record": pl.String}  # fmt: skip


@dataclass(frozen=True)
class Checked:
    """The outcome of validation: rows to categorize, and rows set aside with their reasons."""

    valid: pl.DataFrame
    quarantine: pl.DataFrame  # row_number (1-based), account_id, reasons, record (the row as JSON)

    @property
    def input_rows(self) -> int:
        return self.valid.height + self.quarantine.height


def pandera_schema(rules: m.RuleSet, unique_key: bool = True) -> pa.DataFrameSchema:
    """The account table contract as a Pandera schema: types, nullability, bounds, allowed, unique key
    (without the uniqueness check when `unique_key` is False: the caller has proven it)."""
    columns = {}
    for c in rules.inputs:
        checks = []
        if c.min is not None:
            checks.append(pa.Check.ge(c.min))
        if c.max is not None:
            checks.append(pa.Check.le(c.max))
        if c.allowed is not None:
            checks.append(pa.Check.isin(list(c.allowed)))
        columns[c.name] = pa.Column(
            POLARS_TYPES[c.type],
            checks=checks,
            nullable=c.nullable and not c.key,
            unique=c.key and unique_key,
            description=c.description,
        )
    return pa.DataFrameSchema(columns, name=f"{rules.organization} accounts", strict=False)


def validate_accounts(rules: m.RuleSet, accounts: pl.DataFrame | pl.LazyFrame) -> Checked:
    """Split accounts into valid rows (typed as declared) and quarantined rows with every reason."""
    raw = accounts.lazy().collect() if isinstance(accounts, pl.LazyFrame) else accounts
    refuse_pattern_names(raw.columns, "the input")
    require_columns(rules, raw.columns)
    require_flat(rules, raw.schema)
    if ROW in raw.columns:  # the rule file cannot declare it (names starting with '_' are refused there)
        raise DataError(
            f"the input has a column named '{ROW}', the name kare gives its own row numbers while validating; "
            "rename or drop that column in the source"
        )
    # Text read as categories (a dictionary-encoded Parquet column) is text: the same blank rule applies.
    categorical = [c.name for c in rules.inputs if raw.schema[c.name] in (pl.Categorical, pl.Enum)]
    raw = raw.with_columns(pl.col(categorical).cast(pl.String)).with_row_index(ROW)
    schema = raw.schema
    text = raw.with_columns(
        decoded(raw[c.name]) for c in rules.inputs if c.type == "string" and schema[c.name] == pl.Binary
    )
    blank = _may_be_blank(
        text, [c.name for c in rules.inputs if c.type == "string" and text.schema[c.name] == pl.String]
    )
    typed = text.with_columns(_typed(c, text.schema[c.name], c.name in blank) for c in rules.inputs)

    type_failures = pl.concat([_type_failures(rules, raw, typed), _infinite_failures(rules, typed)])
    # NaN (not a number) is how pandas and others write a missing number: a missing value here. Left as
    # NaN it would pass every check and then compare as greater than any number ({x: {gte: 100}} true).
    typed = typed.with_columns(pl.col(c.name).fill_nan(None) for c in rules.inputs if c.type == "float")
    # A value that did not parse is null after the cast; "missing value" on top of "not a valid
    # integer" would send people looking for an empty cell, so that second reason is dropped.
    schema_failures = _pandera_failures(rules, typed).join(
        type_failures.select(ROW, "column", pl.lit(True).alias("_unparsed")), on=[ROW, "column"], how="left"
    )
    schema_failures = schema_failures.filter(~(pl.col("_unparsed").fill_null(False) & pl.col("null_check")))
    reasons = [type_failures.select(ROW, "reason"), schema_failures.select(ROW, "reason")]
    failures = pl.concat([r for r in reasons if r.height], how="vertical") if any(r.height for r in reasons) else None
    if failures is None:
        return Checked(typed.drop(ROW), pl.DataFrame(schema=QUARANTINE_SCHEMA))
    per_row = failures.group_by(ROW).agg(pl.col("reason").unique(maintain_order=True).alias("reasons"))
    record_cols = [c for c in raw.columns if c != ROW]
    per_row = _empty_rows_said_so(per_row, raw, record_cols)
    # Only our own names after the selects (the input may have a column named `reasons` or `record`).
    # The account id is the key as published when it parses (an integer key written 1.0 or 05 is
    # account 1 or 5, so a quarantined row holds that account), else the key as written.
    bad_raw = raw.join(per_row.select(ROW), on=ROW, how="semi")
    written = bad_raw.select(
        ROW,
        as_text(pl.col(rules.key), schema[rules.key]).alias("written"),
        pl.struct(_recordable(schema, record_cols, bad_raw)).struct.json_encode().alias("record"),
    )
    typed_key = typed.join(per_row.select(ROW), on=ROW, how="semi").select(
        ROW, pl.col(rules.key).cast(pl.String).alias("typed")
    )
    bad = per_row.join(written, on=ROW).join(typed_key, on=ROW, how="left").sort(ROW)
    quarantine = bad.select(
        (pl.col(ROW).cast(pl.Int64) + 1).alias("row_number"),
        pl.coalesce("typed", "written").alias("account_id"),
        pl.col("reasons"),
        pl.col("record"),
    )
    valid = typed.join(per_row.select(ROW), on=ROW, how="anti").sort(ROW).drop(ROW)
    return Checked(valid, quarantine)


def require_columns(rules: m.RuleSet, columns: list[str]) -> None:
    """A DataError naming every declared input the data lacks: no row can be validated without it."""
    missing = missing_columns(rules, columns)
    if missing:
        present = [c for c in columns if not c.startswith("_kare_")]  # not the row numbers kare adds itself
        raise DataError(
            f"the input has no column {', '.join(repr(c) for c in missing)}, required by the inputs of "
            f"{rules.path or rules.organization}; present: {one_line(', '.join(present))}. Rename the column in the "
            f"source or change 'inputs:'{_near_columns(missing, columns)}"
        )


def separator_hint(columns: list[str]) -> str:
    """For a CSV read as one column whose name holds several (a file separated by ';', tabs or '|'): what
    to do about it, else ''."""
    if hint := excel_separator_line(",".join(columns)):  # 'sep=;' is one column, 'sep=,' two
        return hint[0].upper() + hint[1:]
    if len(columns) != 1:
        return ""
    for separator, name, instead in ((";", "';'", ""), ("\t", "tabs", "name it .tsv, or "), ("|", "'|'", "")):
        if len(columns[0].split(separator)) > 1:
            return f"The file looks separated by {name}, not commas: {instead}save it as comma-separated CSV"
    return ""


def _near_columns(missing: list[str], columns: list[str]) -> str:
    """Why the columns may be missing, when it can be seen: a CSV separated by ';' or tabs reads as one
    column holding every name, and a header written 'Account ID' or ' arr' differs only in case, spaces or
    punctuation."""
    if hint := separator_hint(columns):
        return ". " + hint
    # By form: lowercase, each run of spaces or punctuation one '_' ('Account ID' of a CRM report is account_id).
    by_form = {snake_form(c): c for c in columns}
    near = [f"{by_form[snake_form(c)]!r} for {c!r}" for c in missing if snake_form(c) in by_form]
    if near:
        return f". Column names match exactly, case and spaces included: the input has {', '.join(near)}"
    return ""


def require_flat(rules: m.RuleSet, schema: pl.Schema) -> None:
    """A DataError naming every declared input that holds lists or records: a rule compares one value."""
    nested = [f"column {c.name!r} is {schema[c.name]}" for c in rules.inputs if schema[c.name].is_nested()]
    if nested:
        raise DataError(
            f"the input's {'; '.join(nested)}, but the inputs of {rules.path or rules.organization} are single "
            "values; flatten the column in the source (one value per row) or change 'inputs:'"
        )


def _may_be_blank(raw: pl.DataFrame, columns: list[str]) -> set[str]:
    """The text columns that may hold an empty or blank value. Such a value is empty or starts with
    whitespace, which is ASCII (at most ' ') or from U+0085 on: a column whose least value comes after
    ' ' (its first character: '  ' sorts after ' ') and whose greatest before U+0085 (most ids and codes)
    holds none, and is not stripped row by row
    (1M rows, two columns: 13 ms for the bounds against 25 ms for stripping)."""
    if not columns:
        return set()
    bounds = raw.select(pl.col(columns).min().name.suffix("_min"), pl.col(columns).max().name.suffix("_max"))
    row = bounds.row(0, named=True)
    least, greatest = ([row[f"{c}{end}"] for c in columns] for end in ("_min", "_max"))
    return {
        c
        for c, a, b in zip(columns, least, greatest, strict=True)
        if a is not None and not (a[:1] > " " and b < "\x85")
    }


def _typed(column: m.InputColumn, source: pl.DataType, may_be_blank: bool = True) -> pl.Expr:
    """The column cast to its declared type, a value that does not fit becoming null (then quarantined)."""
    raw = pl.col(column.name)
    if column.type == "string" and source == pl.String:
        if not may_be_blank:
            return raw
        # An empty or blank text cell is a missing value in every column: the casts make it null in the others,
        # and a text column must agree, or a CSV that quotes its empty cells ("") gives an account id ''.
        return pl.when(present(raw)).then(raw).alias(column.name)
    typed = cast_expr(column.name, column.type, source)
    if column.type == "boolean" and source.is_numeric():
        # A number is a boolean only as 1 or 0, as in text: a cast makes every other number true.
        return pl.when((raw == 0) | (raw == 1)).then(typed).alias(column.name)
    return typed


def _given(raw: pl.Expr, source: pl.DataType, ctype: str) -> pl.Expr:
    """A value is in the input: not null, not blank text, and not NaN (a missing number, see above)."""
    if source == pl.String:
        if ctype == "integer":  # the text 'nan' is a missing number here as in a float column
            return present(raw) & ~nan_text(raw)
        return present(raw)
    return raw.is_not_null() & ~raw.is_nan() if source.is_float() else raw.is_not_null()


def present(text: pl.Expr) -> pl.Expr:
    """A text value is given: not null, and not empty or only blanks (an empty CSV cell, quoted or not)."""
    return text.is_not_null() & (text.str.strip_chars() != "")


def _type_failures(rules: m.RuleSet, raw: pl.DataFrame, typed: pl.DataFrame) -> pl.DataFrame:
    """Values present in the input that did not parse as the declared type."""
    frames = []
    for c in rules.inputs:
        if typed[c.name].null_count() == raw[c.name].null_count():
            continue  # a cast keeps a null null: no value was lost
        lost = raw.select(_given(pl.col(c.name), raw.schema[c.name], c.type)).to_series() & typed[c.name].is_null()
        if lost.any():
            text = raw.schema[c.name] == pl.String
            hint = _FORMAT.get(c.type) or (_TEXT_FORMAT.get(c.type, "") if text else "")
            why = pl.lit(f" is not a valid {c.type}{hint}")
            if text and c.type == "date":  # '2026-06-01 00:00:00', as exports write a date: say what to change
                with_time = cast_expr(c.name, "datetime", pl.String).is_not_null()
                why = pl.when(with_time).then(why + pl.lit(_DATE_WITH_TIME)).otherwise(why)
            if text and c.nullable:  # an export's 'N/A' or 'null' for a missing value: say how to write one
                marker = pl.col(c.name).str.strip_chars().str.to_lowercase().is_in(_MISSING_MARKERS)
                why = pl.when(marker).then(why + pl.lit(_EMPTY_HINT)).otherwise(why)
            rows = raw.filter(lost).select(
                ROW,
                pl.lit(c.name).alias("column"),
                _text(f"{c.name}: ", as_text(pl.col(c.name), raw.schema[c.name]), why).alias("reason"),
            )
            frames.append(rows)
    empty_failures = pl.DataFrame(schema={ROW: pl.UInt32, "column": pl.String, "reason": pl.String})
    return pl.concat(frames) if frames else empty_failures


def _infinite_failures(rules: m.RuleSet, typed: pl.DataFrame) -> pl.DataFrame:
    """Float values that are infinite: what a division by zero in an export writes. Let through, inf would
    pass `min: 0` and every `gte`, and give trends and edges of inf or NaN; the row is set aside instead."""
    floats = [c.name for c in rules.inputs if c.type == "float"]
    if not floats or not typed.select(pl.any_horizontal(pl.col(floats).is_infinite().any())).item():
        return pl.DataFrame(schema={ROW: pl.UInt32, "column": pl.String, "reason": pl.String})
    return pl.concat(
        typed.filter(pl.col(c).is_infinite()).select(
            ROW,
            pl.lit(c).alias("column"),
            _text(
                f"{c}: ",
                pl.col(c).cast(pl.String),
                " is not a finite number; fix the value, or leave it empty when it is unknown",
            ).alias("reason"),
        )
        for c in floats
    )


def as_text(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A value of the input as text, whatever its type: Polars casts neither a duration nor bytes that are
    not UTF-8 to text (an error, where a reason must show the value). Bytes that are text show as text,
    others as hexadecimal (0x…)."""
    if isinstance(dtype, pl.Duration):
        return value.dt.to_string("polars")
    if dtype == pl.Binary:  # row by row: Polars refuses to cast a column with any byte string that is not UTF-8
        return value.map_elements(_bytes_text, return_dtype=pl.String, skip_nulls=True)
    return value.cast(pl.String)


def _bytes_text(value: bytes) -> str:
    text = utf8_or_none(value)
    return "0x" + value.hex() if text is None else text


_EMPTY_ROW = (
    "the row is empty: every value is missing (a blank line, or a line of separators only, as spreadsheets "
    "leave at the end of an export); delete it from the export"
)


def _empty_rows_said_so(per_row: pl.DataFrame, raw: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """A row without a single value (a blank line of a CSV file) gets one reason saying so, instead of a
    'missing value' for each column that is not nullable and no key to find it by."""
    bad = raw.join(per_row.select(ROW), on=ROW, how="semi")
    missing = [~present(pl.col(c)) if bad.schema[c] == pl.String else pl.col(c).is_null() for c in columns]
    empty = bad.filter(pl.all_horizontal(missing)).get_column(ROW)
    if empty.is_empty():
        return per_row
    said = pl.lit([_EMPTY_ROW], dtype=pl.List(pl.String))
    return per_row.with_columns(
        pl.when(pl.col(ROW).is_in(empty.implode())).then(said).otherwise(pl.col("reasons")).alias("reasons")
    )


def _recordable(schema: pl.Schema, columns: list[str], rows: pl.DataFrame) -> list[pl.Expr]:
    """The columns of a quarantined row as its JSON record can hold them: Polars cannot write bytes to
    JSON (it panics), so bytes become text (`as_text`), and a list or record holding bytes its printed
    form (quarantined rows only, so few). JSON has no infinity (Polars writes null, a record that
    contradicts its reason '... inf is not a finite number'), so a float column holding one among `rows`
    is written as text ('inf', '200000.5')."""
    out = []
    for c in columns:
        if schema[c].is_float() and rows.get_column(c).is_infinite().any():
            out.append(pl.col(c).cast(pl.String).alias(c))
        elif schema[c] == pl.Binary:
            out.append(as_text(pl.col(c), schema[c]).alias(c))
        elif _holds_bytes(schema[c]):
            out.append(pl.col(c).map_elements(_printed, return_dtype=pl.String, skip_nulls=True).alias(c))
        else:
            out.append(pl.col(c))
    return out


def _printed(value: object) -> str:
    """Python's form of a list or record (a list reaches map_elements as a Series)."""
    return repr(value.to_list() if isinstance(value, pl.Series) else value)


def _holds_bytes(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_bytes(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_bytes(f.dtype) for f in dtype.fields)
    return dtype == pl.Binary


# The one text form a type is read from ('2026-01-05 00:00:00' or '05/01/2026' is no date): say it.
_FORMAT = {
    "date": "; write YYYY-MM-DD",
    "datetime": "; write YYYY-MM-DD HH:MM:SS (or YYYY-MM-DDTHH:MM:SSZ, or YYYY-MM-DD)",
}
# And for text read as a number or a flag (a spreadsheet's '$1,200.50', '12%' or 'x'): a symbol or separator is
# not guessed at ('1,200' is 1.2 in half of Europe), so say what is read.
_TEXT_FORMAT = {
    "integer": "; write a whole number such as 1200, without thousands separators or units",
    "float": "; write a number such as 1200.5 (a point for decimals), without thousands separators, currency or %",
    "boolean": "; write true or false (or yes/no, y/n, t/f, 1/0)",
}


# Text that exports write for a missing value. Not read as missing (a 'null' could be a value), but a reason
# for one in a nullable column says what a missing value is.
_MISSING_MARKERS = ["n/a", "na", "#n/a", "null", "none", "nil", "-", "--", "?"]
_DATE_WITH_TIME = " (the date alone, without the time), or declare the column 'type: datetime'"
_EMPTY_HINT = "; for a missing value leave the cell empty (the column is nullable)"


def _text(before: str, value: pl.Expr, after: str | pl.Expr) -> pl.Expr:
    """A reason around a value. Not pl.format: Polars 2.1 panics when it puts a literal beside a column
    whose first chunk is empty, which a filter leaves of a CSV or Parquet file read in several chunks."""
    return pl.concat_str([pl.lit(before), value, after if isinstance(after, pl.Expr) else pl.lit(after)])


_FAILURE_SCHEMA = {ROW: pl.UInt32, "column": pl.String, "reason": pl.String, "null_check": pl.Boolean}


def _pandera_failures(rules: m.RuleSet, typed: pl.DataFrame) -> pl.DataFrame:
    """Pandera's failure cases as (row, column, reason, is-a-not-null-check)."""
    schema = pandera_schema(rules, unique_key=not _distinct(typed.get_column(rules.key)))
    try:
        schema.validate(typed.drop(ROW), lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
    else:
        return pl.DataFrame(schema=_FAILURE_SCHEMA)
    fc = fc.filter(pl.col("index").is_not_null())
    # Several null keys are missing values, not a duplicated key: the not-null reason says it all.
    fc = fc.filter(~((pl.col("check") == "field_uniqueness") & pl.col("failure_case").is_null()))
    fc = fc.with_columns((pl.col("check") == "not_nullable").alias("null_check"))
    explain = {c.name: c for c in rules.inputs}
    # Each distinct failure worded once: a column that came out empty is one text for every row, however
    # many rows (a column of distinct bad values costs about a microsecond a value).
    distinct = fc.select("column", "check", "failure_case").unique()
    texts = [_reason_text(explain.get(col), check, case) for col, check, case in distinct.iter_rows()]
    worded = distinct.with_columns(pl.Series("reason", texts, dtype=pl.String))
    fc = fc.join(worded, on=["column", "check", "failure_case"], how="left", nulls_equal=True)
    positions = typed.select(ROW).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
    found = fc.select(pl.col("index").cast(pl.Int64), "column", "reason", "null_check")
    return positions.join(found, on="index").select(ROW, "column", "reason", "null_check")


def _distinct(keys: pl.Series) -> bool:
    """True when every key is provably distinct: their 64-bit hashes are. Equal keys hash alike, so
    distinct hashes prove distinct keys; otherwise (a duplicate, or two nulls, or a collision) Pandera's
    own uniqueness check decides and reports. Hashing first costs about a tenth of that check (1M text
    keys: 15 ms against 150 ms), and the keys are nearly always unique."""
    return keys.hash().n_unique() == keys.len()


def _reason_text(col: m.InputColumn | None, check: str, case: str | None) -> str:
    """A Pandera check failure in the rule file's own words."""
    if col is None:
        return f"{check}: {case}"
    name = col.name
    if check == "not_nullable":
        return f"{name}: missing value (the column is not nullable)"
    if check == "field_uniqueness":
        return f"{name}: {case} appears more than once (the key must be unique)"
    if check.startswith("greater_than_or_equal_to"):
        return f"{name}: {case} is below the minimum {format_value(col.min)}"
    if check.startswith("less_than_or_equal_to"):
        return f"{name}: {case} is above the maximum {format_value(col.max)}"
    if check.startswith("isin"):
        return f"{name}: {case!r} is not one of the allowed values ({', '.join(map(str, col.allowed or ()))})"
    if check.startswith("dtype"):
        return f"{name}: wrong type ({case}); expected {col.type}"
    return f"{name}: {check} failed for {case}"
