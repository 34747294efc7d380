"""RuleSet → one SQL SELECT per warehouse dialect, built as a sqlglot expression tree; and DuckDB runs of it.

The SQL has the semantics of the Polars compiler (compile_polars), which is the reference: SQL's
three-valued AND/OR behave like Kleene logic there, a NULL condition never selects a category, and
every NOT folds NULL to FALSE first — so a predicate on a null value is false in every engine.
Everything taken from a rule file (column names, values, the table name) enters the tree as a quoted
identifier or a literal; the dialect's generator writes the quoting, never string pasting.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import polars as pl
from sqlglot import exp

from kare_rules import model as m
from kare_rules.compile_polars import previous_column, rule_id
from kare_rules.engine import Frame, as_date, conform
from kare_rules.errors import DataError, UsageError, one_line

DIALECTS: tuple[str, ...] = ("duckdb", "postgres", "snowflake", "bigquery", "spark")

SQL_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
}

# The names DuckDB sees for Polars frames handed to categorize_duckdb (ours, not the user's).
FRAME_VIEW = "kare_accounts"
PREVIOUS_VIEW = "kare_previous_values"
_INPUT, _CATEGORIZED, _PREVIOUS = "kare_input", "kare_categorized", "kare_previous"
_PREVIOUS_KEY = "_kare_prev_key"

# Snowflake folds unquoted identifiers to upper case; a plain lower-case rule-file name is meant the
# way a person would type it unquoted, so it is quoted in its folded form.
_PLAIN_LOWER = re.compile(r"[a-z_][a-z0-9_$]*\Z")


def compile_sql(
    rules: m.RuleSet, dialect: str, table: str, as_of: dt.date | str, previous_table: str | None = None
) -> str:
    """The rules as one SQL SELECT over `table` (optionally schema-qualified: `schema.table`) in a
    warehouse dialect: key column, `category`, `matched_rule`. Derived values use `as_of`.

    Trends (change_of, pct_change_of) read `previous_table`: the accounts' values in the previous run,
    one row per account, with the key column and the trend columns under their input names (last
    run's extract of `table` will do). It is LEFT JOINed on the key, compared as text as the Polars
    engine does; an account missing from it, and every account without it, gets null trends.
    """
    check_dialect(dialect)
    previous = table_expr(previous_table, dialect) if previous_table is not None else None
    return select_for(rules, dialect, table_expr(table, dialect), as_of_date(as_of), previous).sql(
        dialect=dialect, pretty=True
    )


def check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise UsageError(f"unknown SQL dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")


def as_of_date(as_of: dt.date | str | None) -> dt.date:
    if as_of is None:
        raise UsageError("the SQL needs a run date: pass as_of (YYYY-MM-DD); derived values are relative to it")
    return as_date(as_of)


def table_expr(table: str, dialect: str) -> exp.Table:
    """A table name as quoted identifiers: `a.b.c` is catalog.schema.table; each part is quoted alone."""
    parts = str(table).split(".")
    if not table or len(parts) > 3 or any(not p for p in parts):
        raise UsageError(f"table {table!r} is not a table name; write TABLE, SCHEMA.TABLE or CATALOG.SCHEMA.TABLE")
    idents = [ident(p, dialect) for p in parts]
    return exp.Table(
        this=idents[-1],
        db=idents[-2] if len(idents) > 1 else None,
        catalog=idents[-3] if len(idents) > 2 else None,
    )


def ident(name: str, dialect: str) -> exp.Identifier:
    if dialect == "snowflake" and _PLAIN_LOWER.match(name):
        name = name.upper()
    return exp.Identifier(this=name, quoted=True)


def select_for(
    rules: m.RuleSet, dialect: str, source: exp.Expression, as_of: dt.date, previous: exp.Expression | None = None
) -> exp.Select:
    """The whole query as a sqlglot tree over `source` (a table, or a table function such as read_parquet),
    with the previous run's values from `previous` (a table) when the rules have trends."""
    return SqlCompiler(rules, dialect, as_of, previous is not None).select(source, previous)


class SqlCompiler:
    """Compiles the condition tree of one RuleSet to sqlglot expressions; traits are inlined."""

    def __init__(self, rules: m.RuleSet, dialect: str, as_of: dt.date, with_previous: bool = False):
        check_dialect(dialect)
        self.rules = rules
        self.dialect = dialect
        self.as_of = as_of
        self.types = rules.columns
        self.with_previous = with_previous and bool(rules.trend_columns)

    def col(self, name: str) -> exp.Column:
        return exp.Column(this=ident(name, self.dialect))

    # ---- the query ---------------------------------------------------------------------------------

    def select(self, source: exp.Expression, previous: exp.Expression | None = None) -> exp.Select:
        """SELECT key, category, matched_rule, in three layers: inputs + derived values (with the previous
        run's values joined for the trends), the category (first in precedence whose condition holds),
        then the rule that matched."""
        inputs = [self.col(c.name) for c in self.rules.inputs]
        derived = [exp.alias_(self.derived(d), ident(d.name, self.dialect)) for d in self.rules.derived]
        rows = exp.select(*inputs, *derived).from_(source) if derived else source
        if self.with_previous and previous is not None:
            rows = rows.join(self.previous_values(previous), on=self.previous_match(), join_type="left")
        key = self.col(self.rules.key)
        category = exp.alias_(self.category(), ident("category", self.dialect))
        categorized = exp.select(key, category).from_(_aliased(rows, ident(_INPUT, self.dialect)))
        matched = exp.alias_(self.matched_rule(), ident("matched_rule", self.dialect))
        return exp.select(key.copy(), self.col("category"), matched).from_(
            _aliased(categorized, ident(_CATEGORIZED, self.dialect))
        )

    def category(self) -> exp.Expression:
        ordered = self.rules.ordered()
        if not ordered:
            return exp.Literal.string(m.UNASSIGNED)
        case = exp.Case()
        for rule in ordered:
            case = case.when(self.raw(rule.when), exp.Literal.string(rule.name))
        return case.else_(exp.Literal.string(m.UNASSIGNED))

    def matched_rule(self) -> exp.Expression:
        ordered = self.rules.ordered()
        if not ordered:
            return exp.cast(exp.null(), SQL_TYPES["string"])
        case = exp.Case(this=self.col("category"))
        for rule in ordered:
            case = case.when(exp.Literal.string(rule.name), exp.Literal.string(rule_id(rule.name)))
        return case.else_(exp.cast(exp.null(), SQL_TYPES["string"]))

    # ---- derived values ----------------------------------------------------------------------------

    def previous_values(self, previous: exp.Expression) -> exp.Subquery:
        """The previous run's values under names of our own (`_kare_prev_<column>`, a name no declared
        column can have), so the input columns stay unambiguous beside them."""
        key = exp.alias_(exp.cast(self.col(self.rules.key), SQL_TYPES["string"]), ident(_PREVIOUS_KEY, self.dialect))
        values = [
            exp.alias_(exp.cast(self.col(c), SQL_TYPES["float"]), ident(previous_column(c), self.dialect))
            for c in self.rules.trend_columns
        ]
        return exp.Subquery(
            this=exp.select(key, *values).from_(previous), alias=exp.TableAlias(this=ident(_PREVIOUS, self.dialect))
        )

    def previous_match(self) -> exp.Expression:
        """Key equality as text, as the Polars engine joins (an integer key matches its text)."""
        return exp.EQ(
            this=exp.cast(self.col(self.rules.key), SQL_TYPES["string"]),
            expression=exp.Column(this=ident(_PREVIOUS_KEY, self.dialect), table=ident(_PREVIOUS, self.dialect)),
        )

    def previous(self, column: str) -> exp.Expression:
        return exp.Column(this=ident(previous_column(column), self.dialect), table=ident(_PREVIOUS, self.dialect))

    def derived(self, d: m.Derived) -> exp.Expression:
        if d.kind in m.TREND_KINDS:
            if not self.with_previous:  # no previous run given: every trend is null, as for a new account
                return exp.cast(exp.null(), SQL_TYPES["float"])
            # As compile_polars.derived_exprs: now − before, and for pct_change_of that over |before|,
            # null when before is 0 or either is null.
            change = exp.Sub(
                this=exp.cast(self.col(d.args[0]), SQL_TYPES["float"]), expression=self.previous(d.args[0])
            )
            if d.kind == "change_of":
                return exp.paren(change)
            share = exp.Div(this=exp.paren(change), expression=exp.Abs(this=self.previous(d.args[0])))
            return exp.Case().when(exp.NEQ(this=self.previous(d.args[0]), expression=exp.Literal.number(0)), share)
        if d.kind in ("days_since", "days_until"):
            day = exp.cast(self.col(d.args[0]), "DATE")
            as_of = date_literal(self.as_of)
            start, end = (day, as_of) if d.kind == "days_since" else (as_of, day)
            if self.dialect in ("duckdb", "postgres"):
                return exp.paren(exp.Sub(this=end, expression=start))  # date - date is whole days there
            return exp.DateDiff(this=end, expression=start, unit=exp.var("DAY"))
        num, den = (self.col(a) for a in d.args)
        quotient = exp.Div(this=exp.cast(num, "DOUBLE"), expression=exp.cast(den, "DOUBLE"))
        # NULL when either is null or the denominator is 0, as in compile_polars.derived_exprs.
        return exp.Case().when(exp.NEQ(this=den.copy(), expression=exp.Literal.number(0)), quotient)

    # ---- truth -------------------------------------------------------------------------------------

    def raw(self, cond: m.Condition) -> exp.Expression:
        """Three-valued SQL whose NULL means false: AND/OR need no folding (NULL and FALSE behave the
        same through them, and CASE WHEN skips NULL); NOT folds NULL to FALSE first."""
        if isinstance(cond, m.Predicate):
            return self.predicate(cond)
        if isinstance(cond, m.TraitRef):
            return self.raw(self.rules.traits[cond.name])
        if isinstance(cond, m.All | m.Any_):
            items = [self.raw(c) for c in cond.items]
            if len(items) == 1:
                return items[0]
            combine = exp.and_ if isinstance(cond, m.All) else exp.or_
            return combine(*items, copy=False)  # wraps nested AND/OR in parentheses
        return exp.Not(this=self.truth(cond.item))

    def truth(self, cond: m.Condition) -> exp.Expression:
        """Two-valued: TRUE or FALSE, never NULL (DESIGN §3)."""
        return exp.Coalesce(this=self.raw(cond), expressions=[exp.false()])

    def predicate(self, p: m.Predicate) -> exp.Expression:
        col = self.col(p.column)
        ctype = self.types[p.column]
        if ctype == "date" and p.op != "is_null":
            # A date input kept as a timestamp in the warehouse counts by its day, as Polars casts it (conform);
            # compared as it is with a DATE literal, 10:00 on the day would be after it.
            col = exp.cast(col, "DATE")
        v = p.value
        match p.op:
            case "is_null":
                is_null = exp.Is(this=col, expression=exp.null())
                return is_null if v else exp.Not(this=is_null)
            case "eq":
                return exp.EQ(this=col, expression=literal(v, ctype))
            case "ne":
                return exp.NEQ(this=col, expression=literal(v, ctype))
            case "gt":
                return exp.GT(this=col, expression=literal(v, ctype))
            case "gte":
                return exp.GTE(this=col, expression=literal(v, ctype))
            case "lt":
                return exp.LT(this=col, expression=literal(v, ctype))
            case "lte":
                return exp.LTE(this=col, expression=literal(v, ctype))
            case "between":
                return exp.Between(this=col, low=literal(v[0], ctype), high=literal(v[1], ctype))
            case "in" | "not_in":
                # NULL IN (...) is NULL, so NOT IN stays NULL (false) on a null value, as in Polars.
                member = exp.In(this=col, expressions=[literal(x, ctype) for x in v])
                return member if p.op == "in" else exp.Not(this=member)
        raise AssertionError(p.op)


def _aliased(rows: exp.Expression, alias: exp.Identifier) -> exp.Expression:
    if isinstance(rows, exp.Select):
        return exp.Subquery(this=rows, alias=exp.TableAlias(this=alias))
    return rows


# ---- literals ---------------------------------------------------------------------------------------


def literal(value: m.Scalar, ctype: str) -> exp.Expression:
    """A rule-file value as a typed SQL literal for a column of `ctype`; the generator quotes it."""
    if ctype == "string":
        return exp.Literal.string(str(value))
    if ctype == "boolean":
        return exp.Boolean(this=bool(value))
    if ctype == "integer":
        # Polars casts a literal to the column type (pl.lit(2.5, dtype=Int64) is 2): truncate the same way.
        return exp.Literal.number(int(value))
    if ctype == "float":
        number = float(value)
        if not math.isfinite(number):
            text = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
            return exp.cast(exp.Literal.string(text), SQL_TYPES["float"])
        return exp.cast(exp.Literal.number(repr(number)), SQL_TYPES["float"])
    if ctype == "date":
        return date_literal(value.date() if isinstance(value, dt.datetime) else value)
    if ctype == "datetime":
        moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
        return exp.cast(exp.Literal.string(moment.isoformat(sep=" ")), SQL_TYPES["datetime"])
    raise AssertionError(ctype)


def date_literal(day: dt.date) -> exp.Expression:
    return exp.cast(exp.Literal.string(day.isoformat()), "DATE")


# ---- running the SQL inside DuckDB --------------------------------------------------------------------

# DuckDB types a Parquet file or table column may have for each declared type, so the SQL sees
# values as the Polars engine would after conform(); anything else needs validation first. A DECIMAL
# (a warehouse's money column) is a float: the SQL compares it with DOUBLE literals and divides it as
# DOUBLE, as conform() casts it to Float64.
_DUCKDB_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("VARCHAR",),
    "integer": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"),
    # not FLOAT: a 32-bit float holds 0.7 as 0.699999988, which fails {gte: 0.7}; conform() reads it as the
    # decimal it holds, and SQL over the column as stored would not
    "float": ("DOUBLE", "DECIMAL", "TINYINT", "SMALLINT", "INTEGER", "BIGINT"),
    "boolean": ("BOOLEAN",),
    "date": ("DATE",),
    "datetime": ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP_S", "DATE"),
}


def categorize_duckdb(
    rules: m.RuleSet, accounts: Frame | str | Path, as_of: dt.date | str, previous: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Categorize inside DuckDB with the compiled SQL: key column, `category`, `matched_rule`.

    `previous` feeds the trends as in the Polars engine's `categorize`: `account_id` (the key as text)
    and the rules' trend columns; without it every trend is null.

    `accounts` is a Polars frame (conformed to the declared types first, as `categorize` does), or a
    source string: a Parquet path or glob, or 'duckdb:PATH:TABLE'. Those two are read by DuckDB
    itself, never loaded into Python first; their column types must already match `inputs:` (checked
    from the schema alone). No validation or quarantine happens here: rows are categorized as their
    values say. Run validate_accounts first (as `kare categorize` does) when the data is not trusted.
    """
    import duckdb

    day = as_of_date(as_of)
    if isinstance(accounts, pl.DataFrame | pl.LazyFrame):
        frame = conform(accounts, rules).collect()
        con = duckdb.connect()
        try:
            con.register(FRAME_VIEW, frame)
            return _run(con, rules, exp.Table(this=ident(FRAME_VIEW, "duckdb")), [], day, FRAME_VIEW, previous)
        finally:
            con.close()
    text = str(accounts)
    if text.startswith("duckdb:"):
        path, sep, table = text.removeprefix("duckdb:").rpartition(":")
        if not sep or not path or not table:
            raise UsageError(f"write a DuckDB table source as duckdb:PATH.duckdb:TABLE (got {text})")
        if not Path(path).exists():
            raise DataError(f"DuckDB file {path} does not exist")
        from kare_rules.sources import locked_duckdb

        try:
            # As every DuckDB source is read: a view or macro in the file must not read local files or URLs.
            con = locked_duckdb(path, read_only=True)
        except duckdb.Error as exc:
            raise DataError(f"cannot open DuckDB file {path}: {exc}") from None
        try:
            return _run(con, rules, table_expr(table, "duckdb"), [], day, f"table {table} in {path}", previous)
        finally:
            con.close()
    if Path(text).suffix.lower() == ".parquet":
        if not any(ch in text for ch in "*?[") and not Path(text).exists():
            raise DataError(f"input {text} does not exist")
        con = duckdb.connect()
        try:
            # The path is a bound parameter, never part of the SQL text.
            return _run(con, rules, exp.func("read_parquet", exp.Placeholder()), [text], day, text, previous)
        finally:
            con.close()
    from kare_rules.sources import read_source

    return categorize_duckdb(rules, read_source(text), day, previous)


def _run(
    con,
    rules: m.RuleSet,
    source: exp.Expression,
    params: list,
    as_of: dt.date,
    name: str,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    import duckdb

    before = None
    if previous is not None and rules.trend_columns:
        # The SQL reads the previous run's values under the rules' key name, as compile_sql documents.
        values = previous.select(
            pl.col("account_id").cast(pl.String).alias(rules.key),
            *[pl.col(c).cast(pl.Float64) for c in rules.trend_columns],
        )
        con.register(PREVIOUS_VIEW, values)
        before = exp.Table(this=ident(PREVIOUS_VIEW, "duckdb"))
    try:
        probe = con.sql(exp.select(exp.Star()).from_(source.copy()).limit(0).sql(dialect="duckdb"), params=params)
        _check_types(rules, dict(zip(probe.columns, (str(t) for t in probe.types), strict=True)), name)
        sql = select_for(rules, "duckdb", source, as_of, before).sql(dialect="duckdb")
        result = con.sql(sql, params=params).pl()
    except duckdb.Error as exc:
        raise DataError(f"DuckDB could not categorize {name}: {exc}") from None
    key = rules.key
    return result.with_columns(pl.col("category").cast(pl.String), pl.col("matched_rule").cast(pl.String)).select(
        key, "category", "matched_rule"
    )


def _check_types(rules: m.RuleSet, schema: dict[str, str], name: str) -> None:
    missing = [c.name for c in rules.inputs if c.name not in schema]
    if missing:
        raise DataError(
            f"{name} has no column {', '.join(repr(c) for c in missing)} required by {rules.path or 'the rules'}; "
            f"columns present: {one_line(', '.join(schema))}"
        )
    wrong = [
        f"{c.name} is {schema[c.name]} (declared {c.type}"
        + ("; a 32-bit float holds 0.7 as 0.699999988, which would fail {gte: 0.7})" if schema[c.name] == "FLOAT"
           else ")")
        for c in rules.inputs
        if schema[c.name].split("(")[0] not in _DUCKDB_TYPES[c.type]
    ]  # fmt: skip
    if wrong:
        raise DataError(
            f"{name} does not match the inputs of {rules.path or 'the rules'}: {'; '.join(wrong)}. "
            "Fix the column types, or run the Polars engine, which validates and casts them"
        )
