"""Categorize accounts with a RuleSet: the public, frame-in frame-out entry points."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import (
    MAX_TABLE,
    POLARS_TYPES,
    SHOWN_DECIMALS,
    KeyRange,
    PolarsCompiler,
    Shown,
    derived_exprs,
    describe_predicate,
    format_value,
    negative_zero,
    piece_columns,
    previous_column,
)
from kare_rules.errors import DataError, one_line

Frame = pl.DataFrame | pl.LazyFrame


def as_date(value: dt.date | str | None) -> dt.date:
    """A run date from a date or YYYY-MM-DD text; None means today (only ever at the CLI edge)."""
    if value is None:
        return dt.date.today()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise DataError(f"as_of {value!r} is not a date; write YYYY-MM-DD, e.g. 2026-11-01") from None


def missing_columns(rules: m.RuleSet, columns: list[str]) -> list[str]:
    return [c.name for c in rules.inputs if c.name not in columns]


def conform(accounts: Frame, rules: m.RuleSet) -> pl.LazyFrame:
    """The accounts with every declared input present and cast to its declared type.

    Extra columns pass through untouched. A missing column is a DataError that names it.
    """
    lf = accounts.lazy()
    schema = lf.collect_schema()
    missing = missing_columns(rules, schema.names())
    if missing:
        raise DataError(
            f"the input has no column {', '.join(repr(c) for c in missing)} required by {rules.path or 'the rules'}; "
            f"columns present: {one_line(', '.join(schema.names()))}"
        )
    casts = [cast_expr(c.name, c.type, schema[c.name]) for c in rules.inputs if schema[c.name] != POLARS_TYPES[c.type]]
    return lf.with_columns(casts) if casts else lf


def _same_kind(ctype: str, source: pl.DataType) -> bool:
    """Whether a typed (not text) column can hold values of the declared type: a flag only a boolean, a
    date or date-time only a date or date-time (a number is handled before)."""
    if ctype == "string" or source == pl.Null:
        return True
    if source == pl.Boolean:
        return ctype == "boolean"
    if source.is_temporal():
        return ctype in ("date", "datetime") and (source == pl.Date or source == pl.Datetime)
    return True


_TRUTHY = {"true": True, "t": True, "yes": True, "y": True, "1": True,
           "false": False, "f": False, "no": False, "n": False, "0": False}  # fmt: skip


def cast_expr(name: str, ctype: str, source: pl.DataType) -> pl.Expr:
    """Cast one column to its declared type; a value that does not parse becomes null (validation
    compares nulls before and after to quarantine such rows with a reason)."""
    col = pl.col(name)
    target = POLARS_TYPES[ctype]
    if source == pl.String:
        text = col.str.strip_chars()
        text = pl.when(text == "").then(None).otherwise(text)
        if ctype == "boolean":
            return text.str.to_lowercase().replace_strict(_TRUTHY, default=None, return_dtype=pl.Boolean).alias(name)
        if ctype == "date":
            return text.str.to_date("%Y-%m-%d", strict=False).alias(name)
        if ctype == "datetime":
            # A date-time written with an offset or Z counts by its time as written (see below).
            text = text.str.replace(_OFFSET, "${1}").str.replace(_ISO_T, "${1} ")
            # Each value in ISO order, by explicit formats: without one, Polars takes the format of the first
            # value, so a first '01/05/2024 10:00' made every value day-first (1 May) and the ISO ones null.
            read = [text.str.to_datetime(f, time_unit="us", strict=False) for f in _DATETIME_FORMATS]
            return pl.coalesce(read).alias(name)
        if ctype == "string":
            return col
        if ctype == "integer":  # '3' and '3.0' are 3; '3.5' is not an integer and must not be truncated
            number = text.cast(pl.Float64, strict=False)
            whole = pl.when(number == number.round()).then(number).cast(pl.Int64, strict=False)
            return pl.coalesce(text.cast(pl.Int64, strict=False), whole).alias(name)
        return text.cast(target, strict=False).alias(name)
    if ctype == "integer" and (source.is_float() or (isinstance(source, pl.Decimal) and source.scale)):
        # 3.0 is an integer; 3.5 is not, and must not be truncated silently (a NUMERIC or DECIMAL column
        # with decimals neither: 99.9 seats are not 99).
        number = col.cast(pl.Float64) if isinstance(source, pl.Decimal) else col
        return pl.when(number == number.round()).then(col).otherwise(None).cast(pl.Int64, strict=False).alias(name)
    if ctype in ("date", "datetime") and source.is_numeric():
        # A number is no date: read as days (or microseconds) since 1970, 20250115 would be the year 57442.
        # Null here, so validation sets the row aside: "... is not a valid date; write YYYY-MM-DD".
        return pl.lit(None, dtype=target).alias(name)
    if not _same_kind(ctype, source):
        # A date where a number is declared would count days since 1970 and a flag would be 1 or 0; a date
        # cast to a boolean fails outright. A value of another kind does not fit: validation sets it aside.
        return pl.lit(None, dtype=target).alias(name)
    if ctype == "string" and source == pl.Binary:
        return col.map_batches(decoded, return_dtype=pl.String).alias(name)
    if ctype == "string" and source.is_float():
        col = col.fill_nan(None)  # NaN is how pandas writes a missing value, not the text 'NaN'
        # A whole number is written as one: pandas writes an integer id column holding a missing value as
        # floats, and 123.0 as text, '123.0', would be another account than the '123' of any other day.
        whole = (col == col.round()) & (col.abs() < 2**53)
        return pl.when(whole).then(col.cast(pl.Int64).cast(pl.String)).otherwise(col.cast(pl.String)).alias(name)
    if ctype == "float" and source == pl.Float32:
        # A 32-bit float holds 0.7 as 0.699999988: widened as is, it fails {gte: 0.7}. Its shortest decimal
        # form is the value the export wrote, and that is read as a 64-bit float.
        return col.cast(pl.String).cast(pl.Float64, strict=False).alias(name)
    if isinstance(source, pl.Datetime) and source.time_zone is not None:
        # The rules compare dates and times without a zone: a zoned value counts by its local time in
        # its own zone (00:30 in Berlin on 30 October is 30 October), not by the instant in UTC.
        col = col.dt.replace_time_zone(None)
    return col.cast(target, strict=False).alias(name)


def decoded(values: pl.Series) -> pl.Series:
    """A column of bytes as text (Parquet BINARY written without its UTF-8 annotation), a value that is not
    UTF-8 becoming null: validation then sets its row aside, where a cast (even a lenient one) fails the whole run."""
    try:
        return values.cast(pl.String)
    except pl.exceptions.ComputeError:
        return values.map_elements(utf8_or_none, return_dtype=pl.String, skip_nulls=True)


def utf8_or_none(value: bytes) -> str | None:
    """The bytes as UTF-8 text, or None when they are not."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


# A time of day followed by an offset or Z: the time is kept (group 1), the offset dropped.
_OFFSET = r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# The date of an ISO date-time followed by its 'T': written as a space, so one format reads both.
_ISO_T = r"^(\d{4}-\d{1,2}-\d{1,2})[Tt]"
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def with_derived(
    rules: m.RuleSet, lf: pl.LazyFrame, as_of: dt.date | str, previous: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """Conformed accounts with the derived columns added.

    `previous` holds each account's values in the previous published run: `account_id` (the key as
    text) and the rules' `trend_columns`. Accounts missing from it (and every account when it is None)
    get null trends, as a new account does.
    """
    if not rules.derived:
        return lf
    trends = rules.trend_columns
    if trends:
        before = [pl.lit(None, dtype=pl.Float64).alias(previous_column(c)) for c in trends]
        if previous is not None:
            prev = previous.lazy().select(
                pl.col("account_id").cast(pl.String).alias("_kare_key"),
                *[pl.col(c).cast(pl.Float64).alias(previous_column(c)) for c in trends],
            )
            lf = lf.with_columns(pl.col(rules.key).cast(pl.String).alias("_kare_key"))
            lf = lf.join(prev, on="_kare_key", how="left", maintain_order="left").drop("_kare_key")
        else:
            lf = lf.with_columns(before)
    return lf.with_columns(derived_exprs(rules, as_date(as_of)))


def _prepared(
    rules: m.RuleSet,
    accounts: Frame,
    as_of: dt.date | str,
    compiler: PolarsCompiler,
    previous: pl.DataFrame | None,
    extra: Extra | None = None,
) -> pl.LazyFrame:
    """The accounts conformed, with derived columns and the `_mask` of categories that held (and the
    `extra` columns, with the mask computed from them when they say how)."""
    lf = with_derived(rules, conform(accounts, rules), as_of, previous)
    if extra is None:
        return lf.with_columns(compiler.mask())
    if extra.mask is None:
        return lf.with_columns(*extra.columns, compiler.mask())
    return lf.with_columns(*extra.columns).with_columns(extra.mask.alias("_mask"))


@dataclass(frozen=True)
class Extra:
    """Columns computed in the same pass as the categories, for a caller that reads the accounts again
    (the early warning's predicate bit patterns): `columns`, and optionally `_mask` as an expression
    of them (a lookup instead of evaluating every condition a second time)."""

    columns: tuple[pl.Expr, ...]
    mask: pl.Expr | None = None


def categorize_lazy(
    rules: m.RuleSet, accounts: Frame, as_of: dt.date | str, explain: bool = True, previous: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """The plan behind `categorize`, for streaming sinks and large inputs. Without `explain` it is a
    lazy plan end to end; with it, the explanations are assembled eagerly (see `categorize`) and the
    finished frame is returned as a LazyFrame."""
    if explain:
        return categorize(rules, accounts, as_of, explain=True, previous=previous).lazy()
    compiler = PolarsCompiler.of(rules)
    category, matched_rule, _ = compiler.lookup()
    return _prepared(rules, accounts, as_of, compiler, previous).select(pl.col(rules.key), category, matched_rule)


def categorize(
    rules: m.RuleSet,
    accounts: Frame,
    as_of: dt.date | str,
    explain: bool = True,
    previous: pl.DataFrame | None = None,
    edges: bool = False,
    horizon: int = m.DEFAULT_HORIZON_DAYS,
) -> pl.DataFrame:
    """Give every account exactly one category: the first in precedence whose condition holds.

    Returns the key column, `category` and `matched_rule`; with `explain`, also `reason` (the traits
    and predicates that held, with their values) and `overlaps` (other categories that held too).

    Every category's condition is evaluated once into a small bit mask; category, matched rule and
    overlaps are lookups on it. A reason with no values in it (`keep: paying (is_customer = true)`) is
    a lookup too; the others are built only for the rows their category won (one flat text per
    alternative of an `any`, `PolarsCompiler.reason_variants`), with integer, date, boolean and float values in a
    narrow range looked up rather than formatted (`_bounds`, `_key_ranges`), so each row pays for at most one
    explanation, not one per category. Every reason then reaches its row by one gather. `previous`
    feeds the trends (`with_derived`). With `edges`, the early-warning columns of
    `kare_rules.edges.EDGE_SCHEMA` follow (next move within `horizon` days, nearest value change;
    Polars only).
    """
    if edges:
        from kare_rules.edges import with_edges  # edges builds on this module

        return with_edges(rules, accounts, as_of, horizon, explain=explain, previous=previous)
    if not explain:
        return categorize_lazy(rules, accounts, as_of, explain=False, previous=previous).collect()
    return categories_of(rules, prepare(rules, accounts, as_of, explain=True, previous=previous))


def prepare(
    rules: m.RuleSet,
    accounts: Frame,
    as_of: dt.date | str,
    explain: bool = True,
    previous: pl.DataFrame | None = None,
    extra: Extra | None = None,
) -> pl.DataFrame:
    """The accounts as `categories_of` reads them: the rules' columns conformed and derived, `_mask`,
    the `extra` columns and, when some reason carries values, the row number `_row`."""
    compiler = PolarsCompiler.of(rules)
    names = [e.meta.output_name() for e in extra.columns] if extra is not None else []
    # Only the columns the rules read: the data's other columns (one may be named `_row`) are not needed.
    # The row number is made once here, not once per variant's rows in `categories_of`.
    frame = _prepared(rules, accounts, as_of, compiler, previous, extra).select(*rules.columns, "_mask", *names)
    return (frame.with_row_index("_row") if explain and _varying(compiler) else frame).collect()


def _varying(compiler: PolarsCompiler) -> bool:
    """Whether some category whose reason carries values can win (so `categories_of` builds texts by row)."""
    return any(compiler.fixed_reason(c) is None and compiler.masks_of(c) for c in (*compiler.names, m.UNASSIGNED))


def categories_of(rules: m.RuleSet, frame: pl.DataFrame, explain: bool = True) -> pl.DataFrame:
    """The key, `category` and `matched_rule` (with `explain`, also `reason` and `overlaps`) of the
    accounts `prepare` made ready, in their order."""
    compiler = PolarsCompiler.of(rules)
    mask = pl.col("_mask")
    category, matched_rule, overlaps = compiler.lookup()
    if not explain:
        return frame.select(pl.col(rules.key), category, matched_rule)
    fixed = {c: compiler.fixed_reason(c) for c in (*compiler.names, m.UNASSIGNED)}
    varying = [c for c, text in fixed.items() if text is None and compiler.masks_of(c)]
    # Every reason is looked up in one list of texts: the fixed ones first, then the ones built for the
    # rows of `varying` categories, in the order built. `_text` holds the fixed text's position and gets
    # the built ones' positions put in: one gather of strings instead of a scatter of them.
    texts = [text for text in fixed.values() if text is not None]
    position = {c: texts.index(text) for c, text in fixed.items() if text is not None}
    main = frame.lazy().select(
        pl.col(rules.key), category, matched_rule, compiler.by_winner_position(mask, position).alias("_text"), overlaps
    )
    # First the rows (and the columns) each variant of a reason is for, then its text: the values' ranges
    # over those rows decide which values are looked up in a table of texts rather than formatted.
    rows = frame.lazy()
    variants, subsets, shown = [], [], []
    for c in varying:
        won = mask.is_in(pl.Series(compiler.masks_of(c), dtype=pl.UInt8).implode())
        for guard, pieces in compiler.reason_variants(c):
            variants.append(pieces)
            subsets.append(rows.filter(won if guard is None else won & guard).select("_row", *piece_columns(pieces)))
            shown.append({p.column for p in pieces if isinstance(p, Shown)})
    result, *chosen = pl.collect_all([main, *subsets])
    # The bounds of each variant's values (`_bounds`) from its rows as collected: planned beside the rows'
    # own plans, each filtered every account again (10M accounts: 0.43 against 0.51 s in all, medians of 8).
    found = pl.collect_all(
        [_bounds(part.lazy(), compiler, columns) for part, columns in zip(chosen, shown, strict=True)]
    )
    table = pl.Series("reason", texts, dtype=pl.String)
    where = result.get_column_index("_text")
    at = result.drop_in_place("_text")  # owned alone, so the scatter below writes in place
    if variants:
        parts = []
        for pieces, part, bounded in zip(variants, chosen, found, strict=True):
            limit = min(MAX_TABLE, max(4096, part.height // 4))
            ranges = _key_ranges(bounded, compiler, limit)
            parts.append(part.lazy().select("_row", compiler.reason_text(pieces, ranges, limit)))
        # Collected apart and then put together: one lazy concat collects into hundreds of chunks, and
        # the scatter below reads its row numbers from them (10M accounts: 0.45 s against 0.53 s in all).
        built = pl.concat(pl.collect_all(parts), rechunk=False)
        built_at = pl.int_range(len(texts), len(texts) + built.height, eager=True, dtype=pl.UInt32)
        at = at.scatter(built["_row"].rechunk(), built_at)
        table = pl.concat([table, built["reason"]], rechunk=True)
    return result.insert_column(where, _gathered(table, at))


# Rows per piece of the reason column (`_gathered`): 4 MiB of string views, under the 8 MiB beyond which
# Polars' allocator (jemalloc) serves a block from an arena that returns it to the system as soon as it
# is freed, so every run paid page faults for the whole column again.
GATHER_ROWS = 1 << 18


def _gathered(table: pl.Series, at: pl.Series) -> pl.Series:
    """`table.gather(at)` in pieces of GATHER_ROWS rows (one Series of several chunks)."""
    if len(at) <= GATHER_ROWS:
        return table.gather(at)
    return pl.concat([table.gather(at.slice(i, GATHER_ROWS)) for i in range(0, len(at), GATHER_ROWS)], rechunk=False)


def _bounds(rows: pl.LazyFrame, compiler: PolarsCompiler, columns: set[str]) -> pl.LazyFrame:
    """What decides which values of `columns` are looked up in a table of texts rather than formatted
    (`_key_ranges`). One row, in one pass over `rows`: the smallest and largest key of each integer,
    date, boolean and float column of `columns` (a key grows with its value: the keys' range is the keys
    of the values' range) and, for a float, its smallest and largest value, whether one is NaN and
    whether one is shown as -0.0. No row when there are no such columns."""
    exprs = []
    for c in sorted(columns):
        ctype = compiler.types[c]
        if ctype not in ("integer", "date", "boolean", "float"):
            continue
        value = pl.col(c)
        low, high = value.min(), value.max()  # NaN is neither (it is looked for apart)
        exprs += [compiler.value_key(c, low).alias(f"{c}\0low"), compiler.value_key(c, high).alias(f"{c}\0high")]
        if ctype == "float":
            # Only a value in (-0.0001, 0] can be shown as -0.0: round those few, not every row.
            near = value.filter((value <= 0) & (value > -(10.0**-SHOWN_DECIMALS))).round(SHOWN_DECIMALS)
            exprs += [low.alias(f"{c}\0min"), high.alias(f"{c}\0max"), value.is_nan().any().alias(f"{c}\0nan"),
                      negative_zero(near).any().alias(f"{c}\0-0")]  # fmt: skip
    return rows.select(exprs) if exprs else pl.LazyFrame()


# The largest float magnitude whose values are looked up in a table of texts by key (`_key_ranges`). Below
# it, a value rounded to SHOWN_DECIMALS is the double nearest a number of SHOWN_DECIMALS decimals, and
# that number times 10**SHOWN_DECIMALS is an integer well inside the 2**53 a double holds exactly, so
# the value its key stands for is that same double, shown the same (tests/test_reason_text.py checks it
# on random values); from about 1e12 on, texts differ in the last digits.
FLOAT_KEYS_BELOW = 1e11


def _key_ranges(found: pl.DataFrame, compiler: PolarsCompiler, limit: int) -> dict[str, KeyRange]:
    """The columns of `_bounds`' row whose keys span at most `limit` keys, with their range. A float
    column only when no value is NaN and every value is under FLOAT_KEYS_BELOW in magnitude (infinities
    included): then each value's key gives it the text formatting would."""
    if found.height == 0:
        return {}
    row = found.row(0, named=True)
    out = {}
    for c in dict.fromkeys(name.split("\0")[0] for name in found.columns):
        low, high = row[f"{c}\0low"], row[f"{c}\0high"]
        if low is None or high is None or high - low >= limit:
            continue
        float_ = compiler.types[c] == "float"
        if float_ and (row[f"{c}\0nan"] or not max(-row[f"{c}\0min"], row[f"{c}\0max"]) < FLOAT_KEYS_BELOW):
            continue
        out[c] = KeyRange(low, high, float_ and bool(row[f"{c}\0-0"]))
    return out


def category_counts(result: pl.DataFrame, rules: m.RuleSet | None = None) -> pl.DataFrame:
    """Accounts per category (zeros included) and, with explanations, how many of them also matched
    another category. Every category is listed; with `rules`, those the rules define in their precedence
    order, then unassigned, and any other that some account has."""
    counts = result.group_by("category").agg(
        pl.len().alias("accounts"),
        *([(pl.col("overlaps").list.len() > 0).sum().alias("overlaps")] if "overlaps" in result.columns else []),
    )
    names = list(m.ALL_CATEGORIES) if rules is None else list(rules.shown_categories)
    names += [c for c in m.ALL_CATEGORIES if c not in names and c in set(counts["category"])]
    order = pl.DataFrame({"category": names, "_order": range(len(names))})
    out = order.join(counts, on="category", how="left").sort("_order").drop("_order")
    return out.with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in out.columns if c != "category")


# ---- the evaluation tree of one account (kare explain) ------------------------------------------


@dataclass
class Node:
    label: str
    value: bool
    children: list[Node]


def explain_account(
    rules: m.RuleSet, accounts: Frame, as_of: dt.date | str, account_id: str, previous: pl.DataFrame | None = None
) -> list[Node]:
    """Every category's condition for one account, evaluated node by node, with the values seen."""
    key = rules.key
    row = conform(accounts, rules).filter(pl.col(key).cast(pl.String) == str(account_id)).collect()
    if row.height == 0:
        raise DataError(f"account {account_id!r} is not in the input (key column '{key}')")
    if row.height > 1:
        raise DataError(f"account {account_id!r} appears {row.height} times in the input; the key must be unique")
    return explain_row(rules, row, as_of, previous)


def explain_row(rules: m.RuleSet, row: Frame, as_of: dt.date | str, previous: pl.DataFrame | None = None) -> list[Node]:
    """The evaluation tree of every category for a frame holding exactly one account (found by key in
    `kare explain`, or an embedded test's account, which may have no key at all)."""
    as_of = as_date(as_of)
    lf = with_derived(rules, conform(row, rules), as_of, previous)
    compiler = PolarsCompiler.of(rules)
    exprs: list[pl.Expr] = []

    def plan(cond: m.Condition) -> tuple[int, list]:
        exprs.append(compiler.truth(cond).alias(f"_kare_n{len(exprs)}"))  # "_" names are not columns
        i = len(exprs) - 1
        if isinstance(cond, m.TraitRef):
            return i, [plan(rules.traits[cond.name])]
        if isinstance(cond, m.All | m.Any_):
            return i, [plan(c) for c in cond.items]
        if isinstance(cond, m.Not):
            return i, [plan(cond.item)]
        return i, []

    plans = [(r, plan(r.when)) for r in rules.ordered()]
    frame = lf.select([pl.col(c) for c in rules.columns] + exprs).collect()
    if frame.height != 1:
        raise DataError(f"explain_row needs exactly one account, got {frame.height}")
    values = frame.row(0, named=True)

    def build(cond: m.Condition, p: tuple[int, list]) -> Node:
        i, kids = p
        held = bool(values[f"_kare_n{i}"])
        if isinstance(cond, m.Predicate):
            label = f"{describe_predicate(cond)}   [{cond.column} = {show_value(values[cond.column], cond.value)}]"
            return Node(label, held, [])
        if isinstance(cond, m.TraitRef):
            return Node(f"trait {cond.name}", held, [build(rules.traits[cond.name], kids[0])])
        if isinstance(cond, m.All | m.Any_):
            label = "all of" if isinstance(cond, m.All) else "any of"
            return Node(label, held, [build(c, k) for c, k in zip(cond.items, kids, strict=True)])
        return Node("not", held, [build(cond.item, kids[0])])

    return [Node(r.name, bool(values[f"_kare_n{p[0]}"]), [build(r.when, p)]) for r, p in plans]


def show_value(value: object, beside: object = ()) -> str:
    """A value the tree saw, as the reason shows it: a float to SHOWN_DECIMALS places (a ratio of
    1.4166666666666667 reads 1.4167). In full when the rounding would change how it compares with a
    number `beside` it (a threshold, or the ends of a `between`): a margin of 0.03504 beside `< 0.035`
    must not read 0.035, nor -0.00004 beside `between -100 and 0` read 0."""
    if isinstance(value, float) and math.isfinite(value):
        rounded = round(value, SHOWN_DECIMALS)
        numbers = beside if isinstance(beside, tuple) else (beside,)
        crossed = any(
            (rounded > t) - (rounded < t) != (value > t) - (value < t)
            for t in numbers
            if isinstance(t, int | float) and not isinstance(t, bool)
        )
        if not crossed:
            value = rounded
    return "null" if value is None else format_value(value)


def render_tree(nodes: list[Node]) -> list[str]:
    lines: list[str] = []

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        mark = "✓" if node.value else "✗"
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{mark} {node.label}")
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for i, child in enumerate(node.children):
            walk(child, inner, i == len(node.children) - 1, False)

    for n in nodes:
        walk(n, "", True, True)
    return lines
