"""A run computed bucket by bucket publishes exactly what the whole run publishes: the same rows in every
table over several months of dirty input, a rule change and an override; a failure in any bucket or too
large a quarantine publishes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kare_rules.cli import main
from kare_rules.engine import cast_expr
from kare_rules.loader import load_rules, load_rules_text, rule_file_in
from kare_rules.overrides import Override
from kare_rules.run import RuleBundle, RunFailed, Thresholds, run_organization
from kare_rules.run.history import history_problems
from kare_rules.run.slicing import in_slice, slice_bounds, slice_range
from kare_rules.synth import month_ends, snapshots, synthesize
from kare_rules.tables import TABLES, same_rows
from kare_rules.warehouse import Warehouse
from kare_rules.warehouse.duckdb import _within

ROOT = Path(__file__).resolve().parents[1]
RULES = load_rules(ROOT / "rules" / "cloudnine")
RULES_TEXT = rule_file_in(ROOT / "rules" / "cloudnine").read_text(encoding="utf-8")
# From the second month on the rules have a lower expand threshold: history sees 'rules' and 'both' changes.
CHANGED_TEXT = RULES_TEXT.replace("version: 1.1.0", "version: 1.2.0").replace("gte: 100000", "gte: 60000")
CHANGED = load_rules_text(CHANGED_TEXT, "cloudnine@changed")
ACCOUNTS = 3000
DATES = month_ends(dt.date(2026, 10, 31), 3)
TIMESTAMPS = ["started_at", "finished_at"]


def dirty(frame: pl.DataFrame, month: int) -> pl.DataFrame:
    """Null keys, out-of-range and not-allowed values, and duplicated keys (of known accounts too, so
    some accounts are held with their previous category)."""
    i = pl.int_range(pl.len())
    bad = frame.with_columns(
        pl.when(i % 397 == month).then(None).otherwise(pl.col("account_id")).alias("account_id"),
        pl.when(i % 211 == month).then(-3).otherwise(pl.col("seats")).alias("seats"),
        pl.when(i % 293 == 5 + month).then(pl.lit("gold")).otherwise(pl.col("plan")).alias("plan"),
    )
    return pl.concat([bad, bad.slice(100 * month + 7, 6)])


@pytest.fixture(scope="module")
def months() -> list[tuple[dt.date, pl.DataFrame, object, str]]:
    """(as_of, input, rules, rules text) per month."""
    out = []
    for n, (day, frame) in enumerate(snapshots(RULES, ACCOUNTS, DATES, seed=3)):
        rules, text = (CHANGED, CHANGED_TEXT) if n else (RULES, RULES_TEXT)
        out.append((day, dirty(frame, n), rules, text))
    return out


def overrides(frame: pl.DataFrame) -> tuple[Override, ...]:
    some = frame["account_id"].drop_nulls().sort().gather([10, 20])
    until = DATES[1]
    return tuple(Override(a, "keep", "pilot", "ana", until) for a in some)


def run_buckets(path: Path, as_of: dt.date, raw: pl.DataFrame, rules, text: str, pins, buckets: int, **kw) -> dict:
    """One run in `buckets` slices of accounts (1: the whole organization at once)."""
    bundle = RuleBundle(rules, text, tuple(pins))
    limits = Thresholds(max_removed_share=1.0)
    return run_organization(rules.organization, as_of, raw, Warehouse(path), bundle=bundle, slices=buckets,
                            thresholds=limits, **kw).run  # fmt: skip


def tables(path: Path) -> dict[str, pl.DataFrame]:
    wh = Warehouse(path)
    return {t: wh.read(t).drop(TIMESTAMPS if t == "runs" else []) for t in TABLES}


def differing(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> list[str]:
    return [t for t in TABLES if not same_rows(a[t], b[t])]


@pytest.fixture(scope="module")
def published(tmp_path_factory, months) -> dict[str, Path]:
    """Warehouses after every month: whole runs, and bucketed runs with 3 and 1 buckets; every month
    compared as it is published."""
    root = tmp_path_factory.mktemp("buckets")
    paths = {"whole": root / "whole.duckdb", "3": root / "b3.duckdb", "1": root / "b7.duckdb"}
    pins = overrides(months[0][1])
    for day, raw, rules, text in months:
        run_buckets(paths["whole"], day, raw, rules, text, pins, 1)
        run_buckets(paths["3"], day, raw, rules, text, pins, 3)
        run_buckets(paths["1"], day, raw, rules, text, pins, 7)
        whole = tables(paths["whole"])
        assert differing(whole, tables(paths["3"])) == [], day
        assert differing(whole, tables(paths["1"])) == [], day
    return paths


def copy(path: Path, tmp_path: Path) -> Path:
    dst = tmp_path / path.name
    shutil.copy(path, dst)
    return dst


def test_bucketed_runs_publish_the_same_rows_as_whole_runs_in_every_table(published):
    whole = tables(published["whole"])
    assert differing(whole, tables(published["3"])) == []
    assert differing(whole, tables(published["1"])) == []
    # The data really exercises what a bucket could get wrong.
    history = whole["category_history"]
    assert set(history["change_cause"].unique()) >= {"new", "data", "rules", "removed", "override"}
    assert whole["quarantine"]["reasons"].list.join(" ").str.contains("appears more than once").any()
    assert whole["quarantine"]["account_id"].is_null().any()
    runs = whole["runs"].sort("as_of")
    assert runs["quarantined_rows"].min() > 0 and runs["moved"][1:].min() > 0
    assert history_problems(history) == []


def test_a_sliced_run_of_a_file_reads_it_slice_by_slice_and_publishes_what_a_whole_run_does(published, months,
                                                                                         tmp_path):  # fmt: skip
    path = tmp_path / "from-files.duckdb"
    pins = overrides(months[0][1])
    for day, raw, rules, text in months:
        source = tmp_path / f"{day}.parquet"
        raw.write_parquet(source, row_group_size=500)  # several row groups: slices skip some
        run_buckets(path, day, str(source), rules, text, pins, 3)
    # Same rows in every table, run ids included (the streamed fingerprint is the whole input's), and
    # the quarantine's row numbers are positions in the whole file.
    assert differing(tables(published["whole"]), tables(path)) == []


def test_a_file_changed_while_a_sliced_run_reads_it_publishes_nothing(published, months, tmp_path):
    path = copy(published["3"], tmp_path)
    before = tables(path)
    day, raw, rules, text = months[-1]
    source = tmp_path / "changing.parquet"
    raw.write_parquet(source)

    def rewrite(what: str, _done: int, _total: int) -> None:
        if what == "slice 2/3: validating":
            raw.head(100).write_parquet(source)

    with pytest.raises(RunFailed, match=r"changed while the run was reading it; run again"):
        run_buckets(path, day + dt.timedelta(days=31), str(source), rules, text, (), 3, progress=rewrite)
    after = tables(path)
    assert differing(before, after) == ["runs"]  # the failure is logged, nothing else changed
    failed = after["runs"].filter(pl.col("status") == "failed")
    assert failed.height == 1 and "changed while the run was reading it" in failed["message"][0]


def test_slice_of_an_account_is_the_same_from_the_input_and_from_the_published_ids():
    ids = ["A-1", "A-2", None, "A-1", "B-9", "C-3"]
    raw = synthesize(RULES, len(ids), DATES[0]).with_columns(pl.Series("account_id", ids, dtype=pl.String))
    key = cast_expr("account_id", "string", raw.schema["account_id"])
    bounds = slice_bounds(raw.select(key).to_series(), 3)
    assert bounds == ["A-2", "B-9"]  # cut at a third and two thirds of the distinct ids
    of_row = [next(k for k in range(3) if raw.select(in_slice(key, bounds, k))[i, 0]) for i in range(len(ids))]
    assert of_row == [0, 1, 0, 0, 2, 2]  # a null key (quarantined) is in slice 0; duplicates meet in one slice
    published = ["A-1", "A-2", "B-9", "C-3", "Z-1", "a-0", "É-1"]  # byte order: DuckDB and Polars agree
    con = duckdb.connect()
    con.execute("CREATE TABLE t (account_id VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[i] for i in published])
    for k in range(3):  # the warehouse selects a slice's published ids by the same range
        cond, params = _within(slice_range(bounds, k))
        in_duckdb = sorted(r[0] for r in con.execute(f"SELECT account_id FROM t WHERE true{cond}", params).fetchall())
        in_polars = pl.DataFrame({"id": published}).filter(in_slice(pl.col("id"), bounds, k))["id"].sort()
        assert in_duckdb == in_polars.to_list()
    assert slice_bounds(pl.Series([None], dtype=pl.String), 3) == ["", ""]  # no id: everything in the last slice


def test_rerunning_a_date_bucketed_changes_nothing_and_logs_unchanged(published, months, tmp_path):
    path = copy(published["3"], tmp_path)
    before = tables(path)
    day, raw, rules, text = months[-1]
    run = run_buckets(path, day, raw, rules, text, overrides(months[0][1]), 3)
    assert run["status"] == "unchanged"
    after = tables(path)
    assert differing({**before, "runs": after["runs"]}, after) == []
    assert after["runs"].height == before["runs"].height + 1


def test_a_failure_after_a_bucket_is_written_leaves_every_table_as_it_was(published, months, tmp_path):
    path = copy(published["3"], tmp_path)
    before = tables(path)
    day, raw, rules, text = months[-1]
    shifted = raw.with_columns(pl.col("nps").fill_null(0).clip(-100, 99) + 1)  # a different run
    for write in range(3):  # after the first, the second and the last slice is written

        def fail(step: str, seen=[0], write=write) -> None:  # noqa: B006 - a counter across calls
            seen[0] += step == "account_categories"
            if seen[0] > write:
                raise RuntimeError(f"injected failure after slice {write}")

        with pytest.raises(RunFailed, match=f"injected failure after slice {write}"):
            run_buckets(path, day, shifted, rules, text, (), 3, fail_at=fail)
        after = tables(path)
        assert differing(before, {**after, "runs": after["runs"].filter(pl.col("status") != "failed")}) == []


def test_too_large_a_quarantine_publishes_nothing_and_names_the_first_failures(published, months, tmp_path):
    path = copy(published["3"], tmp_path)
    before = tables(path)
    day, raw, rules, text = months[-1]
    broken = raw.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(500).otherwise(pl.col("nps")).alias("nps"))
    with pytest.raises(RunFailed, match=r"above the limit of 20%; nothing was published.*row 1 \("):
        run_buckets(path, day, broken, rules, text, (), 3)
    after = tables(path)
    assert differing(before, {**after, "runs": after["runs"].filter(pl.col("status") != "failed")}) == []


def test_kare_run_with_buckets_summarizes_with_checks_without_importing_dagster(months, tmp_path, capsys, monkeypatch):
    for module in ("dagster", "pipelines"):  # importing either would fail the run
        monkeypatch.setitem(sys.modules, module, None)
    day, raw, _, _ = months[0]
    raw.write_parquet(tmp_path / f"{day}.parquet")
    warehouse = tmp_path / "cli.duckdb"
    args = ["run", "--org", "cloudnine", "--rules-dir", str(ROOT / "rules"), "--as-of", str(day), "--buckets", "3",
            "--input", str(tmp_path / "{as_of}.parquet"), "--warehouse", str(warehouse)]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"cloudnine 1.1.0 as of {day}: published") and lines[1].endswith(", 3 slices)")
    assert f"input     {raw.height:,} rows" in lines[2]
    assert lines[6].startswith("  upcoming  ") and " will move within 30 days if nothing changes" in lines[6]
    assert lines[7].startswith("  checks    ✓ quarantine_share (quarantine): share 1.5%, quarantined 45")
    assert any("history_invariants (category_history): problems none" in line for line in lines)
    assert Warehouse(warehouse).last_run("cloudnine")["input_rows"] == raw.height
