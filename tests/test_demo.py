"""`make run` is `kare sample` then `kare demo`: the first command a new user types must work."""

from __future__ import annotations

import subprocess
import sys
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


def test_sample_makes_snapshots_for_an_organization_with_an_integer_key(tmp_path, capsys, monkeypatch):
    # Key values were always '<ORG>-0000001' text, cast to the key's type: an integer key stopped with a traceback.
    monkeypatch.chdir(tmp_path)
    org = tmp_path / "rules" / "numbered"
    org.mkdir(parents=True)
    (org / "kare.yaml").write_text(
        "format: kare/v1\norganization: numbered\nversion: 1.0.0\ninputs:\n  id: {type: integer, key: true}\n"
        "  seats: {type: integer, min: 0}\nprofiles:\n  keep: {when: {seats: {gt: 10}}}\n"
    )
    assert main(["sample", "--out", "sample", "--accounts", "100", "--months", "3", "--last", "2026-10-31"]) == 0
    frames = [pl.read_parquet(p) for p in sorted((tmp_path / "sample" / "numbered").glob("2026-*.parquet"))]
    assert len(frames) == 3
    assert frames[0]["id"].dtype == pl.Int64 and frames[0]["id"].to_list() == list(range(100))
    assert all(f["id"].is_unique().all() for f in frames)
    assert frames[-1]["id"].max() > 99  # accounts that arrived later got new numbers


def test_a_sample_text_column_without_allowed_holds_a_value_the_rules_do_not_name(tmp_path, capsys, monkeypatch):
    # Only the named values were drawn: with `not_in: [north]` every account was north, so the category
    # could never hold in the generated sample the pull-request report measures with.
    monkeypatch.chdir(tmp_path)
    org = tmp_path / "rules" / "regional"
    org.mkdir(parents=True)
    (org / "kare.yaml").write_text(
        "format: kare/v1\norganization: regional\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  region: {type: string}\nprofiles:\n  keep: {when: {region: {not_in: [north]}}}\n"
    )
    assert main(["sample", "--out", "sample", "--accounts", "200", "--months", "1", "--last", "2026-10-31"]) == 0
    regions = pl.read_parquet(tmp_path / "sample" / "regional" / "latest.parquet")["region"]
    assert set(regions) == {"north", "other"}
    assert 50 < (regions == "other").sum() < 150


def test_ctrl_c_stops_the_demo_not_only_the_run_it_came_during(tmp_path, capsys, monkeypatch):
    # The demo went on with the next date, and the next organization, after the run Ctrl-C interrupted.
    import kare_rules.run.engine as engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    rules, sample, wh = str(ROOT / "rules"), str(tmp_path / "sample"), str(tmp_path / "w.duckdb")
    assert main(["sample", "--rules-dir", rules, "--out", sample, "--accounts", "50", "--months", "2"]) == 0
    monkeypatch.setattr(engine, "_run", interrupted)
    assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", wh]) == 130
    runs = Warehouse(wh).read("runs")
    assert runs.select("org", "status", "message").rows() == [
        ("cloudnine", "failed", "interrupted (Ctrl-C); nothing was published")
    ]  # the interrupted run, logged; no other date or organization was started


def test_demo_waits_for_a_run_still_writing_the_warehouse_instead_of_failing(tmp_path, capsys):
    # Its look at what is already published did not wait at all, and told to 'pass --wait SECONDS', an
    # option kare demo does not have; its runs waited 30 s each.
    rules, sample, wh = str(ROOT / "rules"), str(tmp_path / "sample"), tmp_path / "w.duckdb"
    assert main(["sample", "--rules-dir", rules, "--out", sample, "--accounts", "100", "--months", "1"]) == 0
    assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", str(wh)]) == 0
    capsys.readouterr()
    # A writer (another kare run) holding the file for a moment.
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "time.sleep(2)")  # fmt: skip
    writer = subprocess.Popen([sys.executable, "-c", code, str(wh)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", str(wh)]) == 0
    finally:
        writer.wait()
    captured = capsys.readouterr()
    assert f"  waiting up to 30 s for the warehouse {wh}: another process" in captured.err
    assert "--wait" not in captured.err
    assert sorted(Warehouse(wh).read("runs", "cloudnine")["status"]) == ["published", "unchanged"]


def test_the_query_the_demo_suggests_runs_read_only_and_shows_the_categories(tmp_path):
    # It suggested `duckdb FILE "..."`: a command line kare does not install, opening the file read-write.
    import shlex

    from kare_rules.cli.run import demo_query

    rules, sample, wh = str(ROOT / "rules"), str(tmp_path / "sample"), str(tmp_path / "w.duckdb")
    assert main(["sample", "--rules-dir", rules, "--out", sample, "--accounts", "200", "--months", "1"]) == 0
    assert main(["demo", "--sample", sample, "--rules-dir", rules, "--warehouse", wh]) == 0
    command = shlex.split(demo_query(wh))
    assert "read_only=True" in command[2]
    shown = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "cloudnine" in shown and "forge-industrial" in shown and "keep" in shown


def test_demo_without_a_sample_says_how_to_make_one_that_works_from_where_it_runs(tmp_path, capsys, monkeypatch):
    # From another folder than the rules repository it said "create one with: kare sample --out data/sample",
    # which fails there too: there is no rules/ to make a sample of.
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err.strip() == (
        "kare demo: no sample in data/sample/ and no rules directory rules/: run kare demo from the folder holding "
        "rules/<org>/kare.yaml, or give --rules-dir DIR and --sample DIR"
    )
    assert main(["demo", "--rules-dir", str(ROOT / "rules"), "--sample", "s"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kare demo: no sample in s/; create one with: kare sample --out s --rules-dir {ROOT / 'rules'}"
    )
    assert not any(tmp_path.iterdir())  # nothing written
