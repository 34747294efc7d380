"""compile_sql and categorize_duckdb on chosen examples: the text of the SQL, quoting, errors, and the CLI."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
import pytest
import sqlglot
from sqlglot import exp

from kare_rules import categorize, load_rules
from kare_rules import model as m
from kare_rules.cli import main
from kare_rules.compile_sql import DIALECTS, categorize_duckdb, compile_sql
from kare_rules.errors import DataError, UsageError

AS_OF = dt.date(2026, 11, 1)
HOSTILE = "it's \\'; drop table accounts; --"
ODD = 'we"ird col'


def small_rules(**categories: m.Condition) -> m.RuleSet:
    return m.RuleSet(
        organization="example",
        version="1.0.0",
        inputs=(
            m.InputColumn("account_id", "string", key=True),
            m.InputColumn(ODD, "string", nullable=True),
            m.InputColumn("seats", "integer", nullable=True),
            m.InputColumn("churned_on", "date", nullable=True),
        ),
        derived=(m.Derived("days_since_churn", "days_since", ("churned_on",)),),
        traits={"hostile": m.Predicate(ODD, "in", (HOSTILE, "", "日本"))},
        precedence=m.CATEGORIES,
        categories={name: m.CategoryRule(name, cond) for name, cond in categories.items()},
    )


RULES = small_rules(
    exit=m.TraitRef("hostile"),
    keep=m.All((m.Predicate("seats", "gte", 10), m.Not(m.Predicate(ODD, "eq", "x")))),
    recapture=m.Predicate("days_since_churn", "between", (0, 365)),
)
ACCOUNTS = pl.DataFrame(
    {
        "account_id": ["A", "B", "C", "D", "E"],
        ODD: [HOSTILE, None, "x", "y", None],
        "seats": [1, 12, 12, None, None],
        "churned_on": [None, None, dt.date(2025, 11, 1), dt.date(2025, 10, 31), None],
    }
)
EXPECTED = [
    ("A", "exit", "exit"),
    ("B", "keep", "profiles.keep"),  # not (null = 'x') holds: a predicate on null is false, its negation true
    ("C", "recapture", "profiles.recapture"),  # churned exactly 365 days before as_of: between includes both ends
    ("D", "unassigned", None),
    ("E", "unassigned", None),
]


def rows(df: pl.DataFrame) -> list[tuple]:
    return sorted(df.select("account_id", "category", "matched_rule").iter_rows())


def test_duckdb_and_polars_agree_on_a_worked_example():
    assert rows(categorize(RULES, ACCOUNTS, AS_OF)) == EXPECTED
    assert rows(categorize_duckdb(RULES, ACCOUNTS, AS_OF)) == EXPECTED


def test_duckdb_result_has_the_key_category_and_matched_rule_columns_as_text():
    result = categorize_duckdb(RULES, ACCOUNTS.lazy(), AS_OF)
    assert result.schema == pl.Schema({"account_id": pl.String, "category": pl.String, "matched_rule": pl.String})


def test_a_fractional_value_for_an_integer_column_is_truncated_as_polars_does():
    rules = small_rules(keep=m.Predicate("seats", "gte", 2.5))
    accounts = ACCOUNTS.with_columns(pl.Series("seats", [2, 3, 1, None, None]))
    expected = rows(categorize(rules, accounts, AS_OF))
    assert [r[1] for r in expected] == ["keep", "keep", "unassigned", "unassigned", "unassigned"]
    assert rows(categorize_duckdb(rules, accounts, AS_OF)) == expected


def test_no_categories_defined_leaves_every_account_unassigned():
    result = categorize_duckdb(small_rules(), ACCOUNTS, AS_OF)
    assert result["category"].to_list() == ["unassigned"] * 5
    assert result["matched_rule"].null_count() == 5


# ---- quoting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hostile_values_column_and_table_names_stay_quoted_in_every_dialect(dialect):
    text = compile_sql(RULES, dialect, 'my"schema.acc`ounts', AS_OF)
    tree = sqlglot.parse_one(text, read=dialect)
    strings = {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}
    assert {HOSTILE, "", "日本", "x", "2026-11-01"} <= strings
    columns = {c.name for c in tree.find_all(exp.Column)}
    assert ODD in columns
    table = next(tree.find_all(exp.Table))
    assert (table.db, table.name) in {('my"schema', "acc`ounts"), ('MY"SCHEMA', "acc`ounts")}
    assert len(list(tree.find_all(exp.Select))) == 3  # one statement: no injected second query


def test_postgres_text_for_a_predicate_on_a_hostile_value():
    text = compile_sql(RULES, "postgres", "accounts", AS_OF)
    assert """"we""ird col" IN ('it''s \\''; drop table accounts; --', '', '日本')""" in text
    days = """CAST('2026-11-01' AS DATE) - CAST("churned_on" AS DATE)\n      ) AS "days_since_churn\""""
    assert days in text
    assert "WHEN NOT COALESCE(" not in text  # `not` appears inside `all` here, not at the top
    assert """AND NOT COALESCE("we""ird col" = 'x', FALSE)""" in text


def test_bigquery_and_spark_escape_quotes_and_backslashes_with_backslashes():
    for dialect in ("bigquery", "spark"):
        text = compile_sql(RULES, dialect, "accounts", AS_OF)
        assert "'it\\'s \\\\\\'; drop table accounts; --'" in text
        assert '`we"ird col`' in text


def test_snowflake_folds_plain_names_to_upper_case_and_uses_datediff():
    text = compile_sql(RULES, "snowflake", "sales.accounts", AS_OF)
    assert 'FROM "SALES"."ACCOUNTS"' in text
    assert 'DATEDIFF(DAY, CAST("CHURNED_ON" AS DATE), CAST(\'2026-11-01\' AS DATE)) AS "DAYS_SINCE_CHURN"' in text
    assert '"we""ird col"' in text  # not a plain lower-case name: kept exactly


def test_bad_dialect_table_or_date_is_a_usage_error_for_people():
    with pytest.raises(UsageError, match="choose one of duckdb, postgres"):
        compile_sql(RULES, "oracle", "accounts", AS_OF)
    with pytest.raises(UsageError, match="not a table name"):
        compile_sql(RULES, "duckdb", "a..b", AS_OF)
    with pytest.raises(DataError, match="YYYY-MM-DD"):
        compile_sql(RULES, "duckdb", "accounts", "November")


# ---- sources read by DuckDB itself ----------------------------------------------------------------


def test_a_duckdb_table_is_categorized_in_place(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", ACCOUNTS)
        con.execute('CREATE SCHEMA "raw; x"')
        con.execute('CREATE TABLE "raw; x"."acc\'ounts" AS SELECT * FROM frame')
    assert rows(categorize_duckdb(RULES, f"duckdb:{db}:raw; x.acc'ounts", AS_OF)) == EXPECTED


def test_a_parquet_path_with_quotes_is_read_by_duckdb(tmp_path):
    path = tmp_path / "o'neil; drop.parquet"
    ACCOUNTS.write_parquet(path)
    assert rows(categorize_duckdb(RULES, str(path), AS_OF)) == EXPECTED


def test_a_parquet_column_of_the_wrong_type_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "accounts.parquet"
    ACCOUNTS.with_columns(pl.col("seats").cast(pl.String)).write_parquet(path)
    with pytest.raises(DataError, match="seats is VARCHAR \\(declared integer\\)"):
        categorize_duckdb(RULES, str(path), AS_OF)


def test_a_missing_column_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "accounts.parquet"
    ACCOUNTS.drop("seats").write_parquet(path)
    with pytest.raises(DataError, match="no column 'seats'"):
        categorize_duckdb(RULES, str(path), AS_OF)


# ---- the command line -----------------------------------------------------------------------------


def test_kare_compile_prints_one_select_that_duckdb_runs(tmp_path, capsys):
    rules = load_rules("rules/cloudnine")
    # The embedded tests' previous values (for the trend) are the previous run's table.
    assert main(["compile", "--rules", "rules/cloudnine", "--dialect", "duckdb", "--table", "accounts",
                 "--previous-table", "last_run", "--as-of", "2026-11-01"]) == 0  # fmt: skip
    sql = capsys.readouterr().out
    assert sql.startswith("SELECT") and sql.count("SELECT") == 4
    previous = [{"account_id": dict(t.account)["account_id"], **dict(t.previous)} for t in rules.tests if t.previous]
    assert previous
    with duckdb.connect() as con:
        con.register("typed", embedded_accounts(rules))
        con.execute("CREATE TABLE accounts AS SELECT * FROM typed")
        con.register("before", pl.DataFrame(previous, schema={"account_id": pl.String, "arr": pl.Float64}))
        con.execute("CREATE TABLE last_run AS SELECT * FROM before")
        got = dict(con.sql(sql).pl().select("account_id", "category").iter_rows())
    assert got == {dict(t.account)["account_id"]: t.expect for t in rules.tests}


def test_kare_compile_says_a_zoned_timestamp_needs_a_utc_session_to_match_the_engines(tmp_path, capsys):
    # A renewal at 23:30 UTC on 10 November is 11 November in a +14:00 session: days_until differs by one.
    rules_dir = tmp_path / "rules" / "tz"
    rules_dir.mkdir(parents=True)
    (rules_dir / "kare.yaml").write_text(
        "format: kare/v1\norganization: tz\nversion: 1.0.0\n"
        "inputs: {account_id: {type: string, key: true}, renewal_at: {type: datetime}}\n"
        "derived: {days_to_renewal: {days_until: renewal_at}}\n"
        "profiles: {keep: {when: {days_to_renewal: {lte: 9}}}}\n",
        encoding="utf-8",
    )
    assert main(["compile", "--rules", str(rules_dir), "--dialect", "duckdb", "--table", "accounts",
                 "--as-of", "2026-11-01"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert captured.err == (
        "note: renewal_at is read as a date in the session's time zone by this SQL; where such a column is a "
        "timestamp with a time zone, kare's own engines count it by its UTC date: run the query in a UTC session "
        "(SET TimeZone = 'UTC') for the same answers\n"
    )
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE accounts AS SELECT 'A' AS account_id, TIMESTAMPTZ '2026-11-10 23:30:00+00' AS renewal_at"
        )
        polars_says = categorize(load_rules(rules_dir), con.sql("SELECT * FROM accounts").pl(), AS_OF)["category"][0]
        con.execute("SET TimeZone = 'Pacific/Kiritimati'")
        assert con.sql(captured.out).fetchall() == [("A", "unassigned", None)]  # day 10 there
        con.execute("SET TimeZone = 'UTC'")
        assert con.sql(captured.out).fetchall() == [("A", "keep", "profiles.keep")] and polars_says == "keep"
    # BigQuery turns a TIMESTAMP into a date in UTC by default, and a rule file without a datetime has no note.
    assert main(["compile", "--rules", str(rules_dir), "--dialect", "bigquery", "--table", "t"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["compile", "--rules", "rules/cloudnine", "--dialect", "duckdb", "--table", "t",
                 "--previous-table", "p"]) == 0  # fmt: skip
    assert capsys.readouterr().err == ""


def embedded_accounts(rules: m.RuleSet) -> pl.DataFrame:
    """The accounts of the rule file's embedded tests as a typed table (a plan filled in to pass validation)."""
    from kare_rules.compile_polars import POLARS_TYPES

    records = [{c.name: None for c in rules.inputs} | {"plan": "team"} | dict(t.account) for t in rules.tests]
    return pl.DataFrame(records, schema={c.name: POLARS_TYPES[c.type] for c in rules.inputs})


def test_kare_compile_with_an_unknown_table_form_exits_2(capsys):
    code = main(["compile", "--rules", "rules/cloudnine", "--dialect", "postgres", "--table", ".x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a table name" in err
    assert "note:" not in err  # no notes about trends or time zones of a query that is never printed


def test_kare_categorize_with_the_duckdb_engine_matches_the_polars_engine(tmp_path, capsys):
    rules = load_rules("rules/cloudnine")
    source = tmp_path / "accounts.parquet"
    embedded_accounts(rules).write_parquet(source)
    # The embedded tests' previous values feed the trend in both engines.
    previous = [{"account_id": dict(t.account)["account_id"], **dict(t.previous)} for t in rules.tests if t.previous]
    pl.DataFrame(previous).write_csv(tmp_path / "previous.csv")
    outputs = {}
    for engine in ("polars", "duckdb"):
        target = tmp_path / f"{engine}.parquet"
        args = ["categorize", "--rules", "rules/cloudnine", "--input", str(source), "--as-of", "2026-11-01",
                "--output", str(target), "--engine", engine, "--previous", str(tmp_path / "previous.csv")]  # fmt: skip
        assert main(args) == 0
        outputs[engine] = pl.read_parquet(target).select("account_id", "category", "matched_rule").sort("account_id")
    assert outputs["duckdb"].equals(outputs["polars"])
    assert dict(outputs["duckdb"].select("account_id", "category").iter_rows()) == {
        dict(t.account)["account_id"]: t.expect for t in rules.tests
    }
    assert outputs["duckdb"]["category"].to_list().count("expand") == 5  # T13 lost a fifth of its ARR: keep
    assert "15 accounts categorized" in capsys.readouterr().out


def test_a_decimal_column_declared_float_is_categorized_in_place_as_polars_does(tmp_path):
    # A warehouse keeps money as DECIMAL: --trusted refused it ("arr is DECIMAL(12,2) (declared float)"),
    # though the SQL compares it with DOUBLE literals as Polars compares the Float64 conform() makes of it.
    rules = m.RuleSet(
        organization="example",
        version="1.0.0",
        inputs=(
            m.InputColumn("account_id", "string", key=True),
            m.InputColumn("arr", "float", nullable=True),
            m.InputColumn("rate", "float", nullable=True),
        ),
        derived=(m.Derived("arr_per_rate", "ratio", ("arr", "rate")),),
        traits={},
        precedence=m.CATEGORIES,
        categories={
            "expand": m.CategoryRule("expand", m.Predicate("rate", "eq", 0.55)),
            "keep": m.CategoryRule("keep", m.Predicate("arr", "gte", 1000.1)),
            "attain": m.CategoryRule("attain", m.Predicate("arr_per_rate", "gt", 100.0)),
        },
    )
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE accounts AS SELECT * FROM (VALUES ('a', 1000.10, 0.10), ('b', 1000.09, 0.55), "
            "('c', 30.00, 0.25), ('d', 59.99, 0.60), ('e', NULL, NULL)) AS t(account_id, arr, rate)"
        )
        con.execute(
            "ALTER TABLE accounts ALTER arr TYPE DECIMAL(12, 2); ALTER TABLE accounts ALTER rate TYPE DECIMAL(5, 2)"
        )
        frame = con.sql("SELECT * FROM accounts").pl()
    polars = rows(categorize(rules, frame, AS_OF))
    assert [row[:2] for row in polars] == [("a", "keep"), ("b", "expand"), ("c", "attain"), ("d", "unassigned"),
                                           ("e", "unassigned")]  # fmt: skip
    assert rows(categorize_duckdb(rules, f"duckdb:{db}:accounts", AS_OF)) == polars


def test_a_32_bit_float_column_is_refused_in_place_as_polars_reads_it_otherwise(tmp_path):
    # A FLOAT column holding 0.7 is 0.699999988: the Polars engine reads it as the decimal it holds (0.7),
    # while the SQL over the column as stored put the account below {gte: 0.7}, a silent disagreement.
    rules = m.RuleSet(
        organization="example",
        version="1.0.0",
        inputs=(m.InputColumn("account_id", "string", key=True), m.InputColumn("util", "float")),
        derived=(),
        traits={},
        precedence=m.CATEGORIES,
        categories={"keep": m.CategoryRule("keep", m.Predicate("util", "gte", 0.7))},
    )
    source = tmp_path / "accounts.parquet"
    pl.DataFrame({"account_id": ["a"], "util": [0.7]}, schema={"account_id": pl.String, "util": pl.Float32}
                 ).write_parquet(source)  # fmt: skip
    assert rows(categorize(rules, pl.read_parquet(source), AS_OF))[0][:2] == ("a", "keep")
    with pytest.raises(DataError) as caught:
        categorize_duckdb(rules, str(source), AS_OF)
    assert (
        "util is FLOAT (declared float; a 32-bit float holds 0.7 as 0.699999988, which would fail {gte: 0.7}). "
        "Fix the column types, or run the Polars engine"
    ) in str(caught.value)


def test_a_timestamp_column_declared_date_is_compared_by_its_day_as_polars_does():
    # A warehouse keeps a `date` input as a TIMESTAMP: Polars reads it by its day (conform casts it), but the SQL
    # compared the timestamp with a DATE literal (midnight), so 10:00 on 1 November was not `lte 2026-11-01`.
    rules = small_rules(
        exit=m.Predicate("churned_on", "eq", dt.date(2026, 11, 1)),
        keep=m.Predicate("churned_on", "lte", dt.date(2026, 11, 1)),
        recapture=m.Predicate("churned_on", "between", (dt.date(2026, 11, 2), dt.date(2026, 11, 3))),
        attain=m.Predicate("churned_on", "in", (dt.date(2026, 11, 4),)),
    )
    accounts = ACCOUNTS.with_columns(
        pl.Series(
            "churned_on",
            [dt.datetime(2026, 11, 1, 10), dt.datetime(2026, 10, 31, 23), dt.datetime(2026, 11, 3, 23, 59),
             dt.datetime(2026, 11, 4, 0, 0, 1), None],
        )
    )  # fmt: skip
    polars = rows(categorize(rules, accounts, AS_OF))
    assert [row[1] for row in polars] == ["exit", "keep", "recapture", "attain", "unassigned"]
    with duckdb.connect() as con:
        con.register("accounts", accounts)
        assert sorted(con.sql(compile_sql(rules, "duckdb", "accounts", AS_OF)).fetchall()) == polars
