"""`make run` is `kare sample` then `kare demo`: the first command a new user types must work."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from kare_rules.cli import main
from kare_rules.warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent


def test_sample_then_demo_publishes_every_org_and_month_and_a_second_demo_changes_nothing(tmp_path, capsys):
    rules, sample, wh = str(ROOT / "rules"), str(tmp_path / "sample"), str(tmp_path / "w.duckdb")
    assert main(["sample", "--rules-dir", rules, "--out", sample, "--accounts", "300", "--months", "2"]) == 0
    assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", wh]) == 0
    runs = Warehouse(wh).read("runs")
    assert sorted(zip(runs["org"], runs["as_of"].cast(pl.String), runs["status"], strict=True)) == [
        ("cloudnine", "2026-09-30", "published"),
        ("cloudnine", "2026-10-31", "published"),
        ("forge-industrial", "2026-09-30", "published"),
        ("forge-industrial", "2026-10-31", "published"),
    ]
    categories = Warehouse(wh).read("account_categories")
    assert set(categories["org"]) == {"cloudnine", "forge-industrial"}
    assert categories.filter(pl.col("reason").is_null()).height == 0
    capsys.readouterr()

    assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", wh]) == 0
    out = capsys.readouterr().out
    assert "cloudnine: 1 snapshot(s) up to 2026-09-30 already published, skipped" in out
    again = Warehouse(wh).read("runs")
    assert sorted(again.filter(pl.col("as_of") == pl.date(2026, 10, 31))["status"]) == [
        "published",
        "published",
        "unchanged",
        "unchanged",
    ]
