"""A first rule file from a sample of account data (`kare init`): inputs inferred, the rest left to fill in."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from kare_rules.errors import DataError
from kare_rules.loader import COMBINATORS, OUTPUT_COLUMNS, snake_form

# The schema's pattern for column names, ending at the end of the text: its "$" would also take a name
# with a trailing line break ("score\n" from a quoted CSV header), and the file written would not parse.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")
ACCOUNT_NUMBER = re.compile(r"(account|customer|client|company|member)_(number|no|num|key|code)")
MAX_ALLOWED = 12  # a text column with at most this many distinct values (and repeats) gets an `allowed` list
# Plain words YAML 1.1 reads as true/false/null: as a key they must be quoted to stay a column name.
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_BOOLEAN_TEXT = frozenset({"true", "false", "yes", "no", "t", "f", "y", "n"})
# Characters of data values that JSON leaves as they are but YAML does not: DEL and the C1 controls (the
# file would not load), U+0085, U+2028 and U+2029 (line breaks, folded to a space in a quoted value, so the
# value would load back changed and its rows be quarantined), U+FFFE and U+FFFF. Written as \u escapes.
_NOT_YAML_TEXT = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")

PROFILE_HELP = {
    "exit": "Accounts to stop serving (no margin, no contact): not a profile, one quick action.",
    "expand": "The most valuable, strategic current clients. Invest.",
    "keep": "Average current clients: not rainmakers, but most of the revenue. Protect.",
    "recapture": "Former clients we would welcome back. Win back.",
    "attain": "Target prospects we do not sell to yet and want to win. Pursue.",
}
EXAMPLE_ACTIONS = {
    "exit": "{id: exit-review, title: Decide exit or repricing, due_in_days: 14, priority: high}",
    "expand": "{id: account-plan, title: Write an account plan with an exec sponsor, due_in_days: 30, priority: high}",
    "keep": "{id: renewal-check, title: Confirm renewal plan, due_in_days: 60, priority: medium}",
    "recapture": "{id: win-back, title: Win-back call, due_in_days: 21, priority: high}",
    "attain": "{id: outreach, title: Start outreach sequence, due_in_days: 30, priority: medium}",
}


@dataclass(frozen=True)
class InputGuess:
    """One column of the data as an `inputs:` entry, inferred from the values seen."""

    name: str
    type: str
    nullable: bool = False
    key: bool = False
    min: int | None = None
    allowed: tuple[str, ...] | None = None
    review: str | None = None  # a REVIEW comment: text that is nearly all numbers or dates

    def yaml(self) -> str:
        parts = [f"type: {self.type}"]
        if self.key:
            parts.append("key: true")
        if self.min is not None:
            parts.append(f"min: {self.min}")
        if self.allowed is not None:
            parts.append(f"allowed: [{', '.join(yaml_scalar(v) for v in self.allowed)}]")
        if self.nullable:
            parts.append("nullable: true")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Inference:
    inputs: tuple[InputGuess, ...]
    key_note: str  # why this column was taken as the key, for the REVIEW comment
    left_out: tuple[str, ...]  # comment lines on columns a rule file cannot declare
    frame: pl.DataFrame  # the data with boolean-like text read as booleans


def infer_inputs(frame: pl.DataFrame) -> Inference:
    """The `inputs:` a frame suggests: types, nullability, `min: 0` for non-negative numbers, `allowed`
    for low-cardinality text, and the key (unique, never null, preferably named like an id)."""
    guesses: list[InputGuess] = []
    left_out: list[str] = []
    casts = []
    # A blank text cell ("" as exporters that quote every field write it) and a NaN (as pandas writes a
    # missing number) are missing values, as validation reads them: inferred as values, they would make a
    # column wrongly not nullable (and '' an allowed value), so those rows would then be quarantined.
    frame = frame.with_columns(
        *(pl.when(pl.col(n).str.strip_chars() != "").then(pl.col(n)).alias(n)
          for n, dtype in frame.schema.items() if dtype == pl.String),
        *(pl.col(n).fill_nan(None) for n, dtype in frame.schema.items() if dtype.is_float()),
    )  # fmt: skip
    # Text 'nan' (what Python's csv module writes for a missing float) leaves a CSV column as text in Polars,
    # but validation casts it to NaN, a missing number: numbers with 'nan' among them are a float column.
    frame = frame.with_columns(
        pl.col(n).str.strip_chars().cast(pl.Float64, strict=False).fill_nan(None)
        for n, dtype in frame.schema.items()
        if dtype == pl.String and _numbers_and_nan(frame[n])
    )
    for name, dtype in frame.schema.items():
        if not IDENTIFIER.match(name):
            left_out.append(
                f"column {name!r} is left out: rule files name columns in snake_case (lowercase letters, digits, '_');"
                f" rename it in the source{_to_snake(name)} to use it"
            )
            continue
        if name in OUTPUT_COLUMNS or name in COMBINATORS or name.startswith("_"):  # the file would not validate
            why = (
                f"{name} is a result column of kare" if name in OUTPUT_COLUMNS
                else f"{name} is a condition word of rule files" if name in COMBINATORS
                else "names starting with '_' are kare's"
            )  # fmt: skip
            left_out.append(
                f"column {name!r} is left out: {why}; rename it in the source "
                f"(e.g. 'input_{name.lstrip('_')}') to use it"
            )
            continue
        col = frame[name]
        ctype = _column_type(dtype)
        if ctype == "string" and dtype == pl.String and _boolean_text(col):
            ctype = "boolean"
            casts.append(col.str.strip_chars().str.to_lowercase().is_in(["true", "yes", "t", "y"]).alias(name))
        if ctype is None:
            left_out.append(
                f"column {name!r} ({dtype}) is left out: inputs are string, integer, float, boolean, date or datetime"
            )
            continue
        values = col.drop_nulls()
        low = None
        if ctype in ("integer", "float") and values.len() and values.min() >= 0:
            low = 0
        allowed = None
        if ctype == "string" and values.len():
            distinct = values.cast(pl.String).unique().sort()
            if distinct.len() <= MAX_ALLOWED and distinct.len() < values.len():
                allowed = tuple(distinct.to_list())
        review = _nearly_typed(col) if ctype == "string" and dtype == pl.String else None
        guesses.append(InputGuess(name, ctype, nullable=col.null_count() > 0, min=low, allowed=allowed, review=review))
    if not guesses:
        # A CRM or spreadsheet export ('Customer Number', 'Annual Contract Value'): every column is left out for
        # its name alone. Say which names to write, not only the rule they break.
        renames = [
            f"{n!r} to {s}" for n in frame.columns if not IDENTIFIER.match(n) and IDENTIFIER.match(s := snake_form(n))
        ]
        if renames:
            shown = ", ".join(renames[:4]) + (f" (and {len(renames) - 4} more)" if len(renames) > 4 else "")
            raise DataError(
                "no column of the data can be an input: rule files name columns in snake_case (lowercase letters, "
                f"digits, '_'); rename the columns in the source (a CSV's header line), e.g. {shown}, "
                "and run kare init again"
            )
        raise DataError(
            "no column of the data can be an input: rule files name columns in snake_case and type them as string, "
            "integer, float, boolean, date or datetime"
        )
    if casts:
        frame = frame.with_columns(casts)
    key, note = _guess_key(frame, guesses)
    guesses = [
        InputGuess(g.name, g.type, key=True) if g.name == key else g  # a key is never nullable, bounded or listed
        for g in guesses
    ]
    return Inference(tuple(guesses), note, tuple(left_out), frame)


def _to_snake(name: str) -> str:
    """', e.g. to customer_number' for a header 'Customer Number': the name a rule file can use."""
    snake = snake_form(name)
    return f", e.g. to {snake}," if snake and IDENTIFIER.match(snake) else ""


def _nearly_typed(col: pl.Series) -> str | None:
    """Why a text column may be meant as numbers or dates: all but a few of its values read as one (a CRM
    export's 'lots' among amounts, one '31/12/2025' among ISO dates). Declared as text, the bad values would
    pass and every comparison with a number or date be refused; declared as that type, those rows are
    quarantined with a reason. The author decides, told which values stand in the way."""
    from kare_rules.engine import cast_expr

    text = col.str.strip_chars()
    written = text.is_not_null() & (text != "")
    total = int(written.sum())
    if total < 2 or text.filter(written).str.contains(r"^[-+]?0\d").any():  # 00123 is an id or a ZIP code: text
        return None
    best = None
    for kind in ("integer", "float", "date", "datetime"):
        read = pl.DataFrame({"v": text}).select(cast_expr("v", kind, pl.String)).to_series().is_not_null()
        if best is None or int(read.sum()) > int(best[1].sum()):
            best = (kind, read)
    kind, read = best
    bad = written & ~read
    if int(read.sum()) < 0.9 * total or not bad.any():
        return None
    rows = bad.arg_true()
    shown = ", ".join(f"{col[i]!r} (row {i + 1})" for i in rows[:3]) + (", …" if rows.len() > 3 else "")
    return (
        f"{total - rows.len()} of {total} values read as {kind}, but not {shown}: declare "
        f"{{type: {kind}, nullable: true}} to quarantine such rows with a reason, or fix them in the export"
    )


def _numbers_and_nan(col: pl.Series) -> bool:
    """Numbers and at least one 'nan', none with a leading zero (00123 is an id or a ZIP code: text)."""
    text = col.drop_nulls().str.strip_chars()
    return (
        bool(text.str.to_lowercase().eq("nan").any())
        and not text.cast(pl.Float64, strict=False).null_count()
        and not text.str.contains(r"^[-+]?0\d").any()
    )


def _column_type(dtype: pl.DataType) -> str | None:
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype == pl.Date:
        return "date"
    if dtype == pl.Datetime:
        return "datetime"
    if dtype in (pl.String, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum):
        return "string"
    return None


def _boolean_text(col: pl.Series) -> bool:
    values = col.drop_nulls().str.strip_chars().str.to_lowercase().unique()
    return values.len() > 0 and set(values.to_list()) <= _BOOLEAN_TEXT


def _guess_key(frame: pl.DataFrame, guesses: list[InputGuess]) -> tuple[str, str]:
    """The account identifier: a column unique and never null, preferably named like an id and text or integer."""
    rows = frame.height

    def id_like(name: str) -> bool:
        # A CRM's 'Customer Number' or 'Account No' is its id too; a phone_number or zip_code is not.
        return (
            name == "id" or name.endswith("_id") or name.startswith("id_") or "id" in name.split("_")
            or ACCOUNT_NUMBER.fullmatch(name) is not None
        )  # fmt: skip

    unique = [
        g
        for g in guesses
        if g.type in ("string", "integer")
        and rows
        and not frame[g.name].null_count()
        and frame[g.name].n_unique() == rows
    ]
    named = [g for g in unique if id_like(g.name)] or [g for g in unique if "id" in g.name]
    if named:
        return named[0].name, f"unique and never null in {rows} rows, and named like an id"
    # A CRM export's account_id with a blank or a repeated row is still the identifier: an integer count
    # that happens to be unique in a small sample (employees) would key the history by it.
    flawed = next((g for g in guesses if g.type in ("string", "integer") and id_like(g.name)), None)
    if flawed:
        col = frame[flawed.name]
        missing, repeated = col.null_count(), int((col.is_duplicated() & col.is_not_null()).sum())
        return flawed.name, (
            f"named like an id, but {missing} missing and {repeated} repeated value(s) in {rows} rows: those rows "
            "are quarantined; fix the export, or choose the account identifier"
        )
    # An export's 'Account ID' is left out (not snake_case), so a column named like no id would key the
    # accounts: say which one to rename.
    declared = {g.name for g in guesses}
    renamed = next(
        (
            (name, snake) for name in frame.columns
            if name not in declared and (snake := snake_form(name))
            and id_like(snake) and not frame[name].null_count() and frame[name].n_unique() == rows
        ),
        None,
    )  # fmt: skip
    instead = (
        f"; the data's {renamed[0]!r} looks like the identifier but is left out: rename it to {renamed[1]} in "
        "the source and run kare init again"
        if renamed and rows
        else ""
    )
    if unique:
        return unique[0].name, f"unique and never null in {rows} rows, but not named like an id{instead}"
    first = next((g for g in guesses if g.type in ("string", "integer")), guesses[0])
    return first.name, f"no column is unique and never null in the data: choose the account identifier{instead}"


def yaml_scalar(value: object) -> str:
    """A data value as YAML that loads back as the same value (text always quoted, floats with a dot)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):  # a Parquet decimal column (money) is inferred as float: write a number
        value = float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"
        text = repr(value)
        if "e" in text:  # YAML 1.1 reads 1e-05 as text: write it out
            text = format(value, "f").rstrip("0")
        return text if "." in text else text + ".0"
    if isinstance(value, dt.datetime):
        # A zoned value counts by its local time as written (validation drops the zone), and a rule file
        # refuses an offset: write that local time without it.
        return json.dumps(value.replace(tzinfo=None).isoformat())
    if isinstance(value, dt.date):
        return value.isoformat()
    return _NOT_YAML_TEXT.sub(lambda ch: f"\\u{ord(ch[0]):04x}", json.dumps(str(value), ensure_ascii=False))


def _key(name: str) -> str:
    return json.dumps(name) if name in _YAML_WORDS else name


def _number(value: float, integer: bool) -> str:
    """A threshold for a commented example: whole when large or the column is integer."""
    if integer or abs(value) >= 100:
        return str(round(value))
    return yaml_scalar(round(float(value), 2))


@dataclass(frozen=True)
class _Picks:
    """The columns the commented examples are written on: a customer flag, a money-like number, a date
    and a listed text, each where the data has one."""

    flag: InputGuess | None
    number: InputGuess | None
    day: InputGuess | None
    text: InputGuess | None


def _picks(inference: Inference) -> _Picks:
    by_type: dict[str, list[InputGuess]] = {}
    for g in inference.inputs:
        if not g.key:
            by_type.setdefault(g.type, []).append(g)

    def pick(kind: str, words: tuple[str, ...]) -> InputGuess | None:
        options = by_type.get(kind, [])
        # The words in order of preference: with `last_login` and `churned_on`, the churn date says when a former
        # client was lost (the recapture example's `days_since`), whichever column comes first.
        return next((g for w in words for g in options if w in g.name), options[0] if options else None)

    listed = [g for g in by_type.get("string", []) if g.allowed]
    words = ("segment", "industry", "sector", "region", "tier", "market")
    return _Picks(
        flag=pick("boolean", ("customer", "client", "active", "paying")),
        number=pick("float", ("revenue", "arr", "value", "spend", "sales")) or pick("integer", ("revenue", "value")),
        # days_since reads a datetime too: a CRM export often has timestamps (last_activity_at) and no date.
        day=pick("date", ("churn", "last", "order", "end")) or pick("datetime", ("churn", "last", "order", "end")),
        text=next((g for g in listed if any(w in g.name for w in words)), listed[0] if listed else None),
    )


# A flag named for a loss is true for former clients: with a CRM's `churned`, the current clients are
# {churned: false}, and the examples written {churned: true} made every churned account a keep.
_LOST_WORDS = ("churn", "lost", "cancel", "inactive", "former", "lapsed", "terminated")  # not "closed": closed_won


def _means_lost(name: str) -> bool:
    return any(w in name for w in _LOST_WORDS)


def _bounds(inference: Inference, number: InputGuess) -> tuple[str, str]:
    """The example thresholds on `number`: its 90th percentile (expand) and 10th (exit), as YAML text."""
    values = inference.frame[number.name].drop_nulls().cast(pl.Float64)
    integer = number.type == "integer"
    high = _number(values.quantile(0.9), integer) if values.len() else "1000"
    low = _number(values.quantile(0.1), integer) if values.len() else "10"
    return high, low


def _examples(inference: Inference) -> dict[str, str]:
    """Example conditions for each category, on the data's own columns where one fits."""
    p = _picks(inference)
    flag, number, day, text = p.flag, p.number, p.day, p.text
    lost = flag is not None and _means_lost(flag.name)
    current = f"{{{_key(flag.name)}: {str(not lost).lower()}}}" if flag else "{is_customer: true}"
    former = f"{{{_key(flag.name)}: {str(lost).lower()}}}" if flag else "{is_customer: false}"
    big = small = "{annual_revenue: {gte: 1000000}}"
    if number is not None:
        high, low = _bounds(inference, number)
        big = f"{{{_key(number.name)}: {{gte: {high}}}}}"
        small = f"{{{_key(number.name)}: {{lt: {low}}}}}"
    else:
        small = "{margin_pct: {lt: 0.05}}"
    recent = f"{{days_since_{day.name}: {{lte: 365}}}}" if day else "{days_since_last_order: {lte: 365}}"
    target = (
        f"{{{_key(text.name)}: {{in: [{yaml_scalar(text.allowed[0])}]}}}}" if text else "{industry: {in: [software]}}"
    )
    return {
        "keep": current,
        "expand": f"{{all: [{current}, {big}]}}",
        "exit": f"{{all: [{current}, {small}]}}",
        "recapture": f"{{all: [{former}, {recent}]}}",
        "attain": f"{{all: [{former}, {target}]}}",
        "derived": f"days_since_{day.name}: {{days_since: {day.name}}}" if day else "",
    }


def _example_rows(inference: Inference, as_of: dt.date) -> dict[str, int]:
    """For each commented example test, a row of the data that its category's example condition holds
    for and no example before it in precedence does, so that uncommenting the examples gives tests that
    pass; the next row of the data where the columns are missing or no row fits."""
    p, frame = _picks(inference), inference.frame
    fallback = {name: min(i, max(frame.height - 1, 0)) for i, name in enumerate(_EXAMPLE_ORDER, start=1)}
    if p.flag is None or p.number is None or frame.height == 0:
        return fallback
    high, low = (float(b) for b in _bounds(inference, p.number))
    number = pl.col(p.number.name).cast(pl.Float64)
    flag = ~pl.col(p.flag.name) if _means_lost(p.flag.name) else pl.col(p.flag.name)
    current, former = flag.fill_null(False), (~flag).fill_null(False)
    exit_, expand = current & (number < low), current & (number >= high)
    if p.day is not None:
        since = (pl.lit(as_of) - pl.col(p.day.name).cast(pl.Date)).dt.total_days()
        recapture = former & (since <= 365)
    else:
        recapture = pl.lit(False)
    attain = former & ~recapture.fill_null(False)
    if p.text is not None:
        attain = attain & (pl.col(p.text.name).cast(pl.String) == str(p.text.allowed[0]))
    holds = {"exit": exit_, "expand": expand & ~exit_.fill_null(False), "recapture": recapture, "attain": attain}
    found = (
        frame.with_row_index("_row")
        .select(*(pl.col("_row").filter(e.fill_null(False)).first().alias(name) for name, e in holds.items()))
        .row(0, named=True)
    )
    return {name: found[name] if found[name] is not None else fallback[name] for name in _EXAMPLE_ORDER}


_EXAMPLE_ORDER = ("exit", "expand", "recapture", "attain")


def _account(inference: Inference, row: int) -> str:
    frame = inference.frame
    row = min(row, frame.height - 1)
    values = frame.row(row, named=True) if frame.height else {}
    return "{" + ", ".join(f"{_key(g.name)}: {yaml_scalar(values.get(g.name))}" for g in inference.inputs) + "}"


# The examples' client flag when the sample has no yes/no column: uncommented as is, `is_customer` is an unknown column.
NO_FLAG_NOTE = (
    "#   (the examples' is_customer stands for a yes/no client column, which the data has none of: add one to "
    "the data and to inputs, or write the conditions on columns it has)"
)
# `derived:`'s example when the sample has no date column (the example names one it does not have).
NO_DATE_EXAMPLE = "days_since_last_order: {days_since: last_order_date}   # needs a date input: the sample has none"


def scaffold(
    frame: pl.DataFrame, org: str, *, source: str, schema_ref: str, as_of: dt.date, target: str | None = None
) -> str:
    """A rule file for `org` from a sample of its account data, as commented YAML text.

    It validates once the author fills in the one empty `when:` (keep's); the other categories,
    traits and derived columns are commented examples on the data's own columns, and each category
    has a test to fill in (keep's active, with the first row of the data as its account).
    """
    inference = infer_inputs(frame)
    ex = _examples(inference)
    where = target or f"rules/{org}"
    rows = frame.height
    width = max(len(_key(g.name)) for g in inference.inputs) + 2
    out = [
        f"# yaml-language-server: $schema={schema_ref}",
        f"# Scaffolded by `kare init {org}` from {source} ({rows} rows). Review it, then:",
        "#   1. check each input below (type, nullable, min, allowed); the key column is marked REVIEW",
        "#   2. fill in profiles.keep.when; uncomment and fill in the other categories you use",
        "#   3. give each test an account that must get its category; add tests for the boundaries",
        *([NO_FLAG_NOTE] if _picks(inference).flag is None else []),
        f"#   kare validate {where} && kare test {where}",
        "# The format: docs/rule-format.md in kare-rules, or `kare schema`.",
        "format: kare/v1",
        f"organization: {org}",
        "version: 0.1.0                     # bump on every semantic change (kare diff checks it)",
        f"description: {json.dumps(org + ' account profiles')}",
        "# owners: [revops@example.com]     # who reviews changes to these rules",
        "",
        f"inputs:                            # the account table contract, inferred from {rows} rows",
    ]
    for g in inference.inputs:
        if g.key:
            out.append(f"  # REVIEW the key: {g.name} was guessed ({inference.key_note})")
        elif g.review:
            out.append(f"  # REVIEW {g.name}: {g.review}")
        out.append(f"  {(_key(g.name) + ':').ljust(width)}{g.yaml()}")
    out.extend(f"  # {line}" for line in inference.left_out)
    out += [
        "",
        "# derived:                          # computed per run, relative to the run's as_of",
        f"#   {ex['derived'] or NO_DATE_EXAMPLE}",
        "",
        "# traits:                           # named, reusable conditions; use them by name in `when`",
        f"#   current_client: {ex['keep']}",
        "",
        "# precedence: [exit, expand, keep, recapture, attain]   # first match wins; this is the default order",
        "",
        "# exit:",
        f"#   description: {json.dumps(PROFILE_HELP['exit'])}",
        f"#   when: {ex['exit']}",
        f"#   actions: [{EXAMPLE_ACTIONS['exit']}]",
        "",
        "profiles:",
        "  keep:",
        f"    description: {json.dumps(PROFILE_HELP['keep'])}",
        f"    when:                          # FILL IN: when is an account keep? e.g. {ex['keep']}",
        "    actions: []                    # what to do for every keep account, e.g.",
        f"    # - {EXAMPLE_ACTIONS['keep']}",
    ]
    for name in ("expand", "recapture", "attain"):
        out += [
            f"  # {name}:",
            f"  #   description: {json.dumps(PROFILE_HELP[name])}",
            f"  #   when: {ex[name]}",
            f"  #   actions: [{EXAMPLE_ACTIONS[name]}]",
        ]
    out += [
        "",
        "tests:                             # embedded examples, run by `kare test` and in CI",
        f"  - name: {json.dumps('keep example: FILL IN why this account is keep')}",
        f"    account: {_account(inference, 0)}   # the first row of {source}: edit it",
        f"    as_of: {as_of.isoformat()}",
        "    expect: keep",
    ]
    rows = _example_rows(inference, as_of)
    for name in _EXAMPLE_ORDER:
        out += [
            f"  # - name: {name} example, FILL IN why this account is {name}",
            f"  #   account: {_account(inference, rows[name])}",
            f"  #   as_of: {as_of.isoformat()}",
            f"  #   expect: {name}",
        ]
    return "\n".join(out) + "\n"
