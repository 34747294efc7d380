"""Run state beyond history and actions: the in-place migration of an older warehouse, and the values
trends compare with (kept for the last two run dates only)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl

from kare_rules.cli import main
from kare_rules.loader import load_rules
from kare_rules.run import RuleBundle, run_organization
from kare_rules.run.quality import Thresholds
from kare_rules.synth import synthesize
from kare_rules.tables import EDGE_COLUMNS, TABLES, _sql_type, json_contract
from kare_rules.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
D1, D2 = dt.date(2026, 9, 30), dt.date(2026, 10, 31)


def bundle(folder: Path) -> RuleBundle:
    return RuleBundle(load_rules(folder), (folder / "kare.yaml").read_text(), ())


def test_an_older_warehouse_gains_the_new_columns_in_place_and_keeps_its_rows(tmp_path):
    cloudnine = bundle(ROOT / "rules" / "cloudnine")
    path = tmp_path / "old.duckdb"
    # The account_categories of the first release: no early-warning columns, and no account_values table.
    old = [(n, t) for n, t, _ in TABLES["account_categories"][2] if n not in EDGE_COLUMNS]
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA kare")
        con.execute("CREATE TABLE kare.account_categories (" + ", ".join(f'"{n}" {_sql_type(t)}' for n, t in old) + ")")
        con.execute("INSERT INTO kare.account_categories (org, account_id, category) VALUES ('gone', 'X1', 'keep')")
    wh = Warehouse(path)
    assert wh.read("account_categories", "gone")["next_category"].to_list() == [None]  # readable before migrating

    accounts = synthesize(cloudnine.rules, 50, D1, seed=3)
    result = run_organization("cloudnine", D1, accounts, wh, bundle=cloudnine)

    published = wh.read("account_categories")
    assert published.filter(pl.col("org") == "gone")["category"].to_list() == ["keep"]
    assert published.filter(pl.col("org") == "cloudnine").height == result.run["valid_rows"] == 50
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'kare' "
            "AND table_name = 'account_categories' ORDER BY ordinal_position").fetchall()]  # fmt: skip
        views = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kare' AND table_type = 'VIEW'"
        ).fetchall()}  # fmt: skip
    assert columns[-len(EDGE_COLUMNS) :] == list(EDGE_COLUMNS)
    assert "upcoming_moves" in views


TREND_RULES = """\
format: kare/v1
organization: trendy
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  arr: {type: float, nullable: true}
derived:
  arr_change: {change_of: arr}
  arr_pct: {pct_change_of: arr}
precedence: [recapture, keep]
profiles:
  recapture:
    when: {arr_pct: {lte: -0.2}}
  keep:
    when: {arr: {gt: 0}}
"""


def trendy(tmp_path: Path) -> RuleBundle:
    folder = tmp_path / "rules" / "trendy"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(TREND_RULES)
    return bundle(folder)


def arr(**values: float | None) -> pl.DataFrame:
    return pl.DataFrame({"account_id": list(values), "arr": list(values.values())}, schema={"account_id": pl.String,
                        "arr": pl.Float64})  # fmt: skip


def categories(wh: Warehouse) -> dict[str, str]:
    return dict(wh.read("account_categories", "trendy").select("account_id", "category").iter_rows())


def test_trends_compare_with_the_previous_published_run_and_state_keeps_two_dates(tmp_path):
    rules, wh = trendy(tmp_path), Warehouse(tmp_path / "wh.duckdb")
    d3 = dt.date(2026, 11, 30)
    run_organization("trendy", D1, arr(A=100.0, B=100.0, C=100.0), wh, bundle=rules)
    assert categories(wh) == {"A": "keep", "B": "keep", "C": "keep"}  # no previous run: trends are null

    # A falls 30 %, B 10 %; C is absent, D is new.
    run_organization("trendy", D2, arr(A=70.0, B=90.0, D=10.0), wh, bundle=rules)
    assert categories(wh) == {"A": "recapture", "B": "keep", "D": "keep"}

    # Re-running the last date with other data compares with the run before it, not with itself.
    run_organization("trendy", D2, arr(A=100.0, B=70.0, D=10.0), wh, bundle=rules)
    assert categories(wh) == {"A": "keep", "B": "recapture", "D": "keep"}

    # C comes back: it was not in the previous run, so it has no trend (as a new account).
    run_organization("trendy", d3, arr(A=50.0, B=70.0, C=1.0, D=None), wh, bundle=rules)
    assert categories(wh) == {"A": "recapture", "B": "keep", "C": "keep", "D": "unassigned"}

    state = wh.read("account_values", "trendy")
    assert sorted(set(state["as_of"])) == [D2, d3]  # only the last two run dates
    assert state.filter(pl.col("as_of") == D2).sort("account_id")["value"].to_list() == [100.0, 70.0, 10.0]
    assert state.filter((pl.col("as_of") == d3) & (pl.col("account_id") == "D"))["value"].to_list() == [None]


def test_trends_are_the_same_whatever_the_slice_count(tmp_path):
    rules = trendy(tmp_path)
    ids = [f"A{i:03d}" for i in range(60)]
    first = pl.DataFrame({"account_id": ids, "arr": [100.0] * 60})
    second = pl.DataFrame({"account_id": ids, "arr": [100.0 - i for i in range(60)]})
    out = {}
    for slices in (1, 4):
        wh = Warehouse(tmp_path / f"s{slices}.duckdb")
        run_organization("trendy", D1, first, wh, bundle=rules, slices=slices)
        run_organization("trendy", D2, second, wh, bundle=rules, slices=slices)
        out[slices] = categories(wh)
    assert out[1] == out[4]
    assert sum(c == "recapture" for c in out[1].values()) == 40  # arr 80 … 41: a fall of 20 % or more


def test_the_duckdb_engine_reads_the_same_trend_state(tmp_path):
    rules = trendy(tmp_path)
    out = {}
    for engine in ("polars", "duckdb"):
        wh = Warehouse(tmp_path / f"{engine}.duckdb")
        run_organization("trendy", D1, arr(A=100.0, B=100.0), wh, bundle=rules, engine=engine)
        run_organization("trendy", D2, arr(A=70.0, B=95.0), wh, bundle=rules, engine=engine)
        out[engine] = categories(wh)
    assert out["polars"] == out["duckdb"] == {"A": "recapture", "B": "keep"}


def test_the_warehouse_enforces_the_never_null_columns_of_the_contract(tmp_path):
    # schemas/tables/*.json promise a non-null type (and list x-not-null) for the key and the columns every
    # published row fills; a BI reader can rely on that because the warehouse declares them NOT NULL.
    cloudnine = bundle(ROOT / "rules" / "cloudnine")
    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("cloudnine", D1, synthesize(cloudnine.rules, 50, D1, seed=3), wh, bundle=cloudnine)
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'kare' AND table_name IN (SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'kare' AND table_type = 'BASE TABLE')"
        ).fetchall()
    declared = {(t, c) for t, c, nullable in rows if nullable == "NO"}
    promised = {(t, c) for t in TABLES for c in json_contract(t)["x-not-null"]}
    assert declared == promised
    assert ("runs", "run_id") not in promised  # a run failing before its input was read has none
    assert {("account_categories", "category"), ("action_queue", "status")} <= promised


def test_an_older_warehouse_gets_not_null_where_its_rows_allow_it(tmp_path):
    path = tmp_path / "old.duckdb"
    columns = ", ".join(f'"{n}" {_sql_type(t)}' for n, t, _ in TABLES["account_categories"][2])
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA kare")
        con.execute(f"CREATE TABLE kare.account_categories ({columns})")
        con.execute("INSERT INTO kare.account_categories (org, account_id, category) VALUES ('gone', 'X1', 'keep')")
    cloudnine = bundle(ROOT / "rules" / "cloudnine")
    wh = Warehouse(path)
    run_organization("cloudnine", D1, synthesize(cloudnine.rules, 20, D1, seed=3), wh, bundle=cloudnine)
    with duckdb.connect(str(path), read_only=True) as con:
        nullable = dict(con.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'kare' AND table_name = 'account_categories'").fetchall())  # fmt: skip
    assert nullable["org"] == nullable["category"] == "NO"
    assert nullable["rules_version"] == "YES"  # the old row has none: the column stays as it was
    assert wh.read("account_categories", "gone")["category"].to_list() == ["keep"]


def test_kare_schema_table_prints_the_contract_of_the_published_table(tmp_path, capsys):
    # A BI reader with only the installed package gets each table's contract from the command line, and it
    # names exactly the columns and types the warehouse has.
    cloudnine = bundle(ROOT / "rules" / "cloudnine")
    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("cloudnine", D1, synthesize(cloudnine.rules, 20, D1, seed=3), wh, bundle=cloudnine)
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'kare' ORDER BY table_name, ordinal_position"
        ).fetchall()
    same = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    for table in TABLES:
        assert main(["schema", "--table", table]) == 0
        contract = json.loads(capsys.readouterr().out)
        assert contract["title"] == f"kare.{table}"
        real = [(c, same.get(t, t)) for n, c, t in rows if n == table]
        assert [(c, p["x-sql-type"]) for c, p in contract["properties"].items()] == real
    assert main(["schema", "--table", "upcoming"]) == 2
    assert "is not a kare table; give one of account_categories" in capsys.readouterr().err
    # the view BI tools see beside the tables is named as one, with where its columns are described
    assert main(["schema", "--table", "upcoming_moves"]) == 2
    err = capsys.readouterr().err
    assert "is a view over account_categories (docs/bi.md), not a table: its columns are org, account_id," in err
    # it said "the columns of account_categories", which the view has only some of (no watches, no overlaps)
    assert "next_move_on, days_to_move, edge_category," in err and "watches" not in err
    assert "days_to_move is its own; the others come from account_categories (kare schema --table" in err


WINDOW_RULES = """\
format: kare/v1
organization: window
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  churned_on: {type: date}
  score: {type: integer, min: 0}
derived:
  days_since_churn: {days_since: churned_on}
profiles:
  recapture:
    when: {days_since_churn: {between: [0, 60]}}
"""


def test_the_run_summary_counts_only_moves_still_ahead(tmp_path):
    # B's row is quarantined on the second date, so B keeps its older row, whose move (recapture → unassigned
    # on 2026-11-15) is already past by 2026-11-20: it is not a move "within 30 days" of that run.
    folder = tmp_path / "rules" / "window"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(WINDOW_RULES)
    rules, wh = bundle(folder), Warehouse(tmp_path / "wh.duckdb")
    first = pl.DataFrame(
        {"account_id": ["A", "B"], "churned_on": [dt.date(2026, 10, 15), dt.date(2026, 9, 15)], "score": [1, 1]}
    )
    result = run_organization("window", dt.date(2026, 11, 1), first, wh, bundle=rules)
    assert result.upcoming.rows() == [("recapture", "unassigned", 1)]  # B on 2026-11-15; A on 2026-12-15
    later = first.with_columns(score=pl.Series([1, -1]))  # B breaks min: 0, so B is held
    thresholds = Thresholds(max_quarantine_share=0.6)
    result = run_organization("window", dt.date(2026, 11, 20), later, wh, bundle=rules, thresholds=thresholds)
    assert result.run["quarantined_rows"] == 1
    assert result.upcoming.rows() == [("recapture", "unassigned", 1)]  # A on 2026-12-15 only
