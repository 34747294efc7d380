"""Run state beyond history and actions: the in-place migration of an older warehouse, and the values
trends compare with (kept for the last two run dates only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from kare_rules.loader import load_rules
from kare_rules.run import RuleBundle, run_organization
from kare_rules.synth import synthesize
from kare_rules.tables import EDGE_COLUMNS, TABLES, _sql_type
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
