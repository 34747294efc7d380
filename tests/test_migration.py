"""Upgrading kare on a warehouse an older kare published: the next runs carry its history on as if the
current kare had made it (found by running the current code on copies of warehouses built by older commits)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kare_rules.loader import load_rules
from kare_rules.run import RuleBundle, RunFailed, run_organization
from kare_rules.run.quality import Thresholds
from kare_rules.run.report import summary_lines
from kare_rules.tables import TABLES, _sql_type
from kare_rules.warehouse import Warehouse

D1, D2 = dt.date(2026, 9, 30), dt.date(2026, 10, 31)

RULES = """\
format: kare/v1
organization: acme
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  arr: {type: float, min: 0}
profiles:
  keep:
    when: {arr: {gt: 0}}
"""


def acme(tmp_path: Path, text: str = RULES) -> RuleBundle:
    folder = tmp_path / "rules" / "acme"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kare.yaml").write_text(text)
    return RuleBundle(load_rules(folder), text, ())


def accounts(**arr: float) -> pl.DataFrame:
    return pl.DataFrame({"account_id": list(arr), "arr": list(arr.values())})


def test_the_same_rules_under_an_older_kares_digest_are_no_rule_change(tmp_path):
    # kare between two commits of 2026-12-01 (4d09e74..421aabf) digested every rule file differently (an
    # empty watches section counted); the first run after the upgrade took that for a rule change and
    # gave every move the cause 'both'. Made here by giving the published rows another digest.
    rules, wh = acme(tmp_path), Warehouse(tmp_path / "wh.duckdb")
    run_organization("acme", D1, accounts(A=1.0, B=0.0, C=0.0), wh, bundle=rules)
    with duckdb.connect(str(wh.path)) as con:
        for table in ("runs", "category_history", "account_categories", "rule_versions"):
            con.execute(f"UPDATE kare.{table} SET rules_digest = 'sha256:0123456789abcdef'")

    # C's row is quarantined: held, its account_categories row stays the older kare's.
    lenient = Thresholds(max_quarantine_share=1.0)
    run_organization("acme", D2, accounts(A=0.0, B=5.0, C=-1.0), wh, bundle=rules, thresholds=lenient)
    history = wh.read("category_history", "acme").filter(pl.col("valid_from") == D2)
    causes = dict(history.select("account_id", "change_cause").iter_rows())
    assert causes == {"A": "data", "B": "data"}

    # C comes back valid and moves under the same rules: its data moved it, not the rules.
    run_organization("acme", dt.date(2026, 11, 30), accounts(A=0.0, B=5.0, C=7.0), wh, bundle=rules)
    c = wh.read("category_history", "acme").filter(pl.col("account_id") == "C").sort("valid_from")
    assert c.select("category", "change_cause").rows() == [("unassigned", "new"), ("keep", "data")]


TREND_RULES = RULES.replace("version: 1.0.0", "version: 1.1.0").replace(
    "profiles:",
    "derived:\n  arr_pct: {pct_change_of: arr}\nprecedence: [recapture, keep]\nprofiles:\n"
    "  recapture:\n    when: {arr_pct: {lte: -0.2}}",
)


def test_a_run_after_a_warehouse_without_trend_values_says_its_trends_are_null(tmp_path):
    # A kare from before kare.account_values (33562ad) kept no values to compare with: the first run of
    # the current kare cannot compute the trends, and says so instead of publishing nulls silently.
    rules, wh = acme(tmp_path, TREND_RULES), Warehouse(tmp_path / "wh.duckdb")
    run_organization("acme", D1, accounts(A=100.0, B=100.0), wh, bundle=rules)
    with duckdb.connect(str(wh.path)) as con:
        con.execute("DROP TABLE kare.account_values")

    result = run_organization("acme", D2, accounts(A=50.0, B=100.0), wh, bundle=rules)
    assert dict(wh.read("account_categories", "acme").select("account_id", "category").iter_rows()) == {
        "A": "keep", "B": "keep"
    }  # fmt: skip
    assert result.notes[1:] == [
        "trends arr_pct are null for every account: the run of 2026-09-30 kept no values of arr (made by a kare "
        "from before kare.account_values, or by rules without these trends); they compare from the next run on"
    ]
    assert result.notes[0].startswith("upgraded the warehouse, made by an older kare: added the table kare.account_")
    assert "  note      trends arr_pct are null for every account" in "\n".join(summary_lines(result))

    # The run kept its values: the next one compares with them, and has nothing to say.
    later = run_organization("acme", dt.date(2026, 11, 30), accounts(A=25.0, B=100.0), wh, bundle=rules)
    assert later.notes == []
    assert wh.read("account_categories", "acme").filter(pl.col("account_id") == "A")["category"].to_list() == [
        "recapture"
    ]


def test_the_run_that_migrates_an_older_kares_warehouse_says_what_it_added_and_how_to_go_back(tmp_path):
    # kare of 2026-12-01 (aa4ad78) wrote account_categories without the early-warning columns and no
    # account_values: the first run after the upgrade added them without a word, and the older kare, still
    # scheduled somewhere, then failed every run with DuckDB's 'table "account_categories" has 18 columns
    # but 10 values were supplied'.
    rules, wh = acme(tmp_path), Warehouse(tmp_path / "wh.duckdb")
    first = run_organization("acme", D1, accounts(A=1.0, B=0.0), wh, bundle=rules)
    assert first.notes == []  # a new warehouse is no upgrade
    early = ["next_category", "next_move_on", "edge_category", "edge_column", "edge_value", "edge_threshold",
             "edge_change", "watches"]  # fmt: skip
    with duckdb.connect(str(wh.path)) as con:
        con.execute("DROP VIEW kare.upcoming_moves")
        for column in early:
            con.execute(f'ALTER TABLE kare.account_categories DROP COLUMN "{column}"')
        con.execute("DROP TABLE kare.account_values")

    result = run_organization("acme", D2, accounts(A=0.0, B=5.0), wh, bundle=rules)
    assert result.notes == [
        "upgraded the warehouse, made by an older kare: added 8 columns to kare.account_categories, the table "
        "kare.account_values (null in the rows already there); an older kare can no longer write it, so to go "
        'back restore a copy made before the upgrade (docs/bi.md, "Upgrading kare-rules")'
    ]
    assert "  note      upgraded the warehouse, made by an older kare" in "\n".join(summary_lines(result))
    later = run_organization("acme", dt.date(2026, 11, 30), accounts(A=0.0, B=5.0), wh, bundle=rules)
    assert later.notes == []


def test_a_failed_first_run_after_the_upgrade_still_says_it_migrated_the_warehouse(tmp_path):
    # The migration is done before the run's transaction, so it stays when the run then fails (here on the
    # quarantine guard); the failure said only 'nothing was published', and the run after it, finding the
    # warehouse up to date, had nothing to say either.
    rules, wh = acme(tmp_path), Warehouse(tmp_path / "wh.duckdb")
    run_organization("acme", D1, accounts(A=1.0, B=0.0), wh, bundle=rules)
    with duckdb.connect(str(wh.path)) as con:
        con.execute("DROP TABLE kare.account_values")

    with pytest.raises(RunFailed) as failed:
        run_organization("acme", D2, accounts(A=-1.0, B=-1.0), wh, bundle=rules)
    assert "nothing else was published, but this run upgraded the warehouse, made by an older kare: added the " \
        "table kare.account_values" in str(failed.value)  # fmt: skip
    logged = wh.read("runs", "acme").filter(pl.col("status") == "failed")["message"][0]
    assert "this run upgraded the warehouse" in logged


def test_a_failed_run_an_older_kare_logged_without_its_start_gets_one_and_the_runs_key_is_not_null(tmp_path):
    # The pipeline before the run engine (daff21c..b5e6321) logged a failed run with started_at null, and
    # started_at is part of the runs key: the column stayed nullable for ever after the upgrade.
    path = tmp_path / "old.duckdb"
    columns = ", ".join(f'"{n}" {_sql_type(t)}' for n, t, _ in TABLES["runs"][2])
    failed_at = dt.datetime(2026, 8, 31, 6, 0, 5, tzinfo=dt.UTC)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA kare")
        con.execute(f"CREATE TABLE kare.runs ({columns})")
        con.execute("INSERT INTO kare.runs (org, as_of, finished_at, status, message) VALUES "
                    "('acme', DATE '2026-08-31', $t, 'failed', 'input not found')", {"t": failed_at})  # fmt: skip
    wh = Warehouse(path)
    run_organization("acme", D1, accounts(A=1.0), wh, bundle=acme(tmp_path))
    with duckdb.connect(str(path), read_only=True) as con:
        nullable = dict(con.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'kare' AND table_name = 'runs'").fetchall())  # fmt: skip
    assert nullable["started_at"] == nullable["finished_at"] == "NO"
    runs = wh.read("runs", "acme").sort("as_of")
    assert runs.select("status", "started_at").row(0) == ("failed", failed_at)
    assert runs["status"].to_list() == ["failed", "published"]


def test_an_older_warehouse_with_an_index_and_views_of_its_readers_on_the_kare_tables_still_runs(tmp_path):
    # A BI team indexed category_history for its dashboards: DuckDB alters no table an index depends on, and
    # making the never-null columns NOT NULL failed every run after the upgrade ('Cannot alter entry
    # "category_history" because there are entries that depend on it'), so nothing could be published.
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # the layout before NOT NULL (82d1cbc): every column nullable
        con.execute("CREATE SCHEMA kare")
        for table in ("category_history", "account_categories"):
            columns = ", ".join(f'"{n}" {_sql_type(t)}' for n, t, _ in TABLES[table][2])
            con.execute(f"CREATE TABLE kare.{table} ({columns})")
        con.execute("CREATE INDEX dashboard_history ON kare.category_history (account_id)")
        con.execute("CREATE VIEW kare.dashboard_mix AS SELECT category, count(*) AS n FROM kare.account_categories "
                    "GROUP BY ALL")  # fmt: skip
    wh = Warehouse(path)
    run_organization("acme", D1, accounts(A=1.0, B=0.0), wh, bundle=acme(tmp_path))
    run_organization("acme", D2, accounts(A=0.0, B=0.0), wh, bundle=acme(tmp_path))
    history = wh.read("category_history", "acme").sort("account_id", "valid_from")
    assert history.select("account_id", "category", "change_cause").rows() == [
        ("A", "keep", "new"), ("A", "unassigned", "data"), ("B", "unassigned", "new"),
    ]  # fmt: skip
    with duckdb.connect(str(path), read_only=True) as con:
        nullable = dict(con.execute(
            "SELECT table_name || '.' || column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'kare' AND column_name = 'run_id'").fetchall())  # fmt: skip
        assert con.execute("SELECT * FROM kare.dashboard_mix").fetchall() == [("unassigned", 2)]
        assert con.execute("SELECT index_name FROM duckdb_indexes()").fetchall() == [("dashboard_history",)]
    # NOT NULL where nothing depends on the table; where the index does, at a run after it is dropped.
    assert nullable["account_categories.run_id"] == "NO" and nullable["category_history.run_id"] == "YES"


def test_every_table_view_and_column_carries_its_contracts_description_for_bi_tools(tmp_path):
    # BI tools browsing the warehouse saw no descriptions: they were only in schemas/tables/ and Dagster.
    from kare_rules.warehouse.duckdb import VIEWS

    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("acme", D1, accounts(A=100.0), wh, bundle=acme(tmp_path))
    with duckdb.connect(str(wh.path)) as con:  # an older warehouse: one description lost, one changed by hand
        con.execute("COMMENT ON TABLE kare.runs IS NULL; COMMENT ON COLUMN kare.quarantine.record IS 'mine'")
    run_organization("acme", D2, accounts(A=50.0), wh, bundle=acme(tmp_path))
    with duckdb.connect(str(wh.path), read_only=True) as con:
        tables = dict(con.sql("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'kare'").fetchall())
        views = dict(con.sql("SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'kare'").fetchall())
        query = "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE schema_name = 'kare'"
        columns = {(t, c): text for t, c, text in con.sql(query).fetchall()}
    assert tables == {table: text for table, (text, _, _) in TABLES.items()}
    assert views == {view: text for view, (_, text) in VIEWS.items()}
    for table, (_, _, cols) in TABLES.items():
        assert {name: columns[table, name] for name, _, _ in cols} == {name: text for name, _, text in cols}, table
    assert "'" in TABLES["account_categories"][2][3][2]  # a description with a quote in it went in whole


def test_the_views_columns_carry_descriptions_too(tmp_path):
    # docs/bi.md promises a comment on every view column, but upcoming_moves' columns had none: a BI tool
    # browsing the view showed blank descriptions where account_categories' own columns had them.
    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("acme", D1, accounts(A=100.0), wh, bundle=acme(tmp_path))
    run_organization("acme", D2, accounts(A=50.0), wh, bundle=acme(tmp_path))  # the view is re-created by each run
    with duckdb.connect(str(wh.path), read_only=True) as con:
        query = "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'upcoming_moves'"
        columns = dict(con.sql(query).fetchall())
    source = {name: text for name, _, text in TABLES["account_categories"][2]}
    assert len(columns) == 14
    assert {name: text for name, text in columns.items() if name != "days_to_move"} == {
        name: source[name] for name in columns if name != "days_to_move"
    }
    assert columns["days_to_move"].startswith("Days from as_of to next_move_on")
