"""`kare run` as a data team meets it: readers holding the DuckDB file, locks, bad options, guards."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kare_rules.cli import main
from kare_rules.loader import load_rules
from kare_rules.synth import synthesize
from kare_rules.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 10, 31)


@pytest.fixture
def published(tmp_path):
    """A warehouse with one published run of 400 cloudnine accounts, and the input it was made from."""
    source = tmp_path / "accounts.parquet"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 400, DAY, seed=5).write_parquet(source)
    warehouse = tmp_path / "w.duckdb"
    assert main(args(source, warehouse)) == 0
    return source, warehouse


def args(source: Path, warehouse: Path, *extra: str, day: dt.date = DAY) -> list[str]:
    return ["run", "--org", "cloudnine", "--rules-dir", str(ROOT / "rules"), "--input", str(source),
            "--warehouse", str(warehouse), "--as-of", str(day), *extra]  # fmt: skip


def hold_open(warehouse: Path, seconds: float) -> subprocess.Popen:
    """Another process (a BI tool, a notebook) holding a read-only connection to the warehouse."""
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print('open', flush=True); time.sleep(float(sys.argv[2]))")  # fmt: skip
    reader = subprocess.Popen([sys.executable, "-c", code, str(warehouse), str(seconds)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert reader.stdout.readline().strip() == "open"
    return reader


def test_a_run_waits_for_a_reader_holding_the_file_and_then_publishes(published, capsys):
    source, warehouse = published
    reader = hold_open(warehouse, 2)
    started = time.monotonic()
    try:
        code = main(args(source, warehouse, "--wait", "60", day=DAY + dt.timedelta(days=30)))
    finally:
        reader.wait()
    assert code == 0 and time.monotonic() - started >= 1
    assert "waiting up to 60 s for the warehouse" in capsys.readouterr().err
    assert Warehouse(warehouse).last_run("cloudnine")["as_of"] == DAY + dt.timedelta(days=30)


def test_a_reader_holding_the_file_past_wait_fails_the_run_clearly_and_changes_nothing(published, capsys):
    source, warehouse = published
    reader = hold_open(warehouse, 60)
    try:
        code = main(args(source, warehouse, "--wait", "1", day=DAY + dt.timedelta(days=30)))
    finally:
        reader.kill()
        reader.wait()
    err = capsys.readouterr().err
    assert code == 1
    assert "is held by another process" in err and "--wait SECONDS" in err and "nothing was published" in err
    assert err.count("nothing was published") == 1  # the refusal says it; the line after it said it again
    assert Warehouse(warehouse).last_run("cloudnine")["as_of"] == DAY


def test_logging_a_stopped_run_while_a_reader_holds_the_file_says_that_is_what_it_waits_for(published):
    """After Ctrl-C, 'waiting up to 10 s for the warehouse' read as the run going on; it is only its log line."""
    from kare_rules.run.engine import _record_failure

    _, warehouse = published
    said: list[str] = []
    reader = hold_open(warehouse, 60)
    try:
        stopped = {"org": "cloudnine", "as_of": DAY}
        recorded = _record_failure(Warehouse(warehouse, wait=0.5, on_wait=said.append), stopped, "interrupted")
    finally:
        reader.kill()
        reader.wait()
    assert not recorded
    assert len(said) == 1 and said[0].startswith("to log the stopped run in kare.runs: waiting up to 0.5 s for")


def test_ctrl_c_while_kare_loads_is_a_line_not_a_traceback():
    """Ctrl-C in the first second of `kare run` (a wrong date typed) came while Polars and jsonschema were being
    imported, before main() could catch it: forty lines of traceback. The entry point catches it."""
    import tomllib

    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["kare"]
    module, function = entry.split(":")
    code = (  # Ctrl-C lands while polars is imported, as it does from the keyboard
        "import builtins, importlib, sys\n"
        "real = builtins.__import__\n"
        "def ctrl_c_on_polars(name, *a, **k):\n"
        "    if name == 'polars':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = ctrl_c_on_polars\n"
        f"sys.exit(getattr(importlib.import_module({module!r}), {function!r})())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, "run", "--org", "x"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130 and done.stderr == "kare: interrupted before it started; nothing was done\n"


def test_a_damaged_warehouse_says_to_restore_it(published, capsys):
    """A warehouse cut short (a disk that filled during a copy) said only DuckDB's 'Could not read enough
    bytes': the operator re-ran it night after night. It now says the file is damaged and what to do."""
    source, warehouse = published
    with warehouse.open("r+b") as f:
        f.truncate(warehouse.stat().st_size // 2)
    code = main(args(source, warehouse, day=DAY + dt.timedelta(days=30)))
    err = capsys.readouterr().err
    assert code == 1 and "the warehouse file is damaged (cut short or corrupt): restore it from a backup" in err


def test_a_second_kare_run_on_the_same_warehouse_waits_its_turn(published):
    source, warehouse = published
    later = DAY + dt.timedelta(days=30)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "kare_rules.cli", *args(source, warehouse, "--wait", "120", day=later)]
    first = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    # Nothing on stderr but kare's own lines: no traceback, and no native binding reporting objects it
    # could not free at exit (DuckDB's nanobind printed "leaked N instances" when objects were frozen at exit).
    for _, err in outs:
        assert "Traceback" not in err and "leaked" not in err, err
    statuses = sorted(Warehouse(warehouse).read("runs").filter(pl.col("as_of") == later)["status"])
    assert statuses == ["published", "unchanged"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--as-of", "", "is not a date"),
        ("--as-of", "2026-02-30", "is not a date"),
        ("--max-quarantine-share", "nan", "is not a finite number"),
        ("--max-removed-share", "1.5", "is not a share between 0 and 1"),
        ("--wait", "nan", "is not a finite number"),
        ("--wait", "-1", "is not a number of seconds"),
        ("--memory-budget", "lots", "is not a memory size"),
        ("--buckets", "0", "is out of range"),
    ],
)
def test_wrong_options_are_usage_errors_before_anything_runs(published, option, value, message, capsys):
    source, warehouse = published
    before = Warehouse(warehouse).read("runs").height
    with pytest.raises(SystemExit) as stop:
        code = main([*args(source, warehouse, day=DAY + dt.timedelta(days=30)), option, value])
        raise SystemExit(code)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert Warehouse(warehouse).read("runs").height == before


def test_a_header_only_csv_is_refused_and_the_tables_stay(published, tmp_path, capsys):
    _, warehouse = published
    header = tmp_path / "empty.csv"
    header.write_text(",".join(pl.read_parquet(published[0]).columns) + "\n")
    before = Warehouse(warehouse).read("account_categories")
    assert main(args(header, warehouse, day=DAY + dt.timedelta(days=30))) == 1
    err = capsys.readouterr().err
    assert "the input has no rows" in err and "--allow-empty-input" in err
    assert Warehouse(warehouse).read("account_categories").height == before.height == 400


def test_the_empty_input_refusal_names_every_option_that_publishes_it(published, tmp_path, capsys):
    # It said "pass --allow-empty-input"; passed alone, that met the removed-share limit (every account
    # removed is 100%) and a second refusal. The options it names must be enough to publish.
    source, warehouse = published
    header = tmp_path / "empty.csv"
    header.write_text(",".join(pl.read_parquet(source).columns) + "\n")
    later = DAY + dt.timedelta(days=30)
    assert main(args(header, warehouse, day=later)) == 1
    err = capsys.readouterr().err
    assert "pass --allow-empty-input --max-removed-share 1 if the organization" in err
    assert main(args(header, warehouse, "--allow-empty-input", "--max-removed-share", "1", day=later)) == 0
    assert Warehouse(warehouse).read("account_categories").height == 0


def test_a_lock_path_that_is_a_directory_and_an_unwritable_folder_are_clear_errors(tmp_path, capsys):
    source = tmp_path / "a.parquet"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 10, DAY).write_parquet(source)
    (tmp_path / "w.duckdb.lock").mkdir()
    assert main(args(source, tmp_path / "w.duckdb")) == 1
    assert "the lock file" in capsys.readouterr().err
    # A folder that cannot be created (its parent is a file) stands for any unwritable place, root included.
    (tmp_path / "plain-file").write_text("")
    assert main(args(source, tmp_path / "plain-file" / "w.duckdb")) == 1
    assert "cannot create the folder of the warehouse" in capsys.readouterr().err


@pytest.mark.parametrize(("kinds", "tail"), [(5, ", and 1 more kind (t)"), (6, ", and 2 more kinds (t)"), (4, "")])
def test_the_summary_counts_the_move_kinds_it_leaves_out_in_words(kinds, tail):
    from kare_rules.run.report import _kinds

    moves = pl.DataFrame({"from_category": ["keep"] * kinds, "to_category": [f"c{i}" for i in range(kinds)],
                          "accounts": list(range(kinds, 0, -1))})  # fmt: skip
    text = _kinds(moves, "t")
    assert text.startswith(f"keep → c0 {kinds}, keep → c1 {kinds - 1}")
    assert text.endswith(f"keep → c3 {kinds - 3}{tail}")


@pytest.mark.parametrize("target", ["accounts.csv", ":memory:"])
def test_a_warehouse_that_is_not_a_duckdb_file_is_refused_not_published_to_memory(
    tmp_path, capsys, monkeypatch, target
):
    # DuckDB opens an existing CSV (or ':memory:') as a database in memory: the run said 'published', kept nothing.
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "accounts.csv"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 50, DAY, seed=5).write_csv(source)
    before = source.read_bytes()
    warehouse = tmp_path / target if target != ":memory:" else Path(target)
    assert main(args(source, warehouse)) == 1
    err = capsys.readouterr().err
    if target == ":memory:":
        assert "the warehouse ':memory:' would keep nothing after the run; give a file" in err
    else:
        assert f"{warehouse} is not a DuckDB database (it holds other data, perhaps accounts); give --warehouse" in err
    assert source.read_bytes() == before
    assert not Path(f"{warehouse}.lock").exists()  # refused before a lock file is made beside it
    # nothing could be logged in a warehouse that is not one, so the run does not point there, nor says
    # that it holds a previous run
    assert "nothing was published" in err and "kare.runs" not in err and "previous run" not in err


def test_a_duckdb_file_whose_schema_kare_is_another_tools_is_refused_by_name(tmp_path, capsys):
    # DuckDB's own error came at the first insert and named nothing: 'ConversionException: Could not convert
    # string 'cloudnine' to INT32 when casting from source column org'.
    source = tmp_path / "accounts.csv"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 20, DAY, seed=5).write_csv(source)
    warehouse = tmp_path / "other.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA kare")
        con.execute("CREATE TABLE kare.runs (org INTEGER, started_at TIMESTAMP, note VARCHAR)")
        con.execute("INSERT INTO kare.runs VALUES (1, TIMESTAMP '2026-01-01 00:00:00', 'theirs')")
    assert main(args(source, warehouse)) == 1
    err = capsys.readouterr().err
    assert (
        f"the warehouse {warehouse} has a schema kare that kare did not make (kare.runs.org is INTEGER, not "
        "VARCHAR; kare.runs.started_at is TIMESTAMP, not TIMESTAMPTZ); give --warehouse another file" in err
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:  # left exactly as it was
        tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'kare'")
        assert tables.fetchall() == [("runs",)]
        assert con.execute("SELECT * FROM kare.runs").fetchall() == [(1, dt.datetime(2026, 1, 1), "theirs")]


def test_a_warehouse_a_newer_kare_wrote_is_refused_by_name_and_left_as_it_was(published, capsys):
    # A newer kare-rules adds columns; this one writes by name, so it would leave them null in every row it
    # adds (or fail on a NOT NULL with DuckDB's own words): it says to upgrade instead.
    source, warehouse = published
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE kare.account_categories ADD COLUMN churn_risk DOUBLE")
        before = con.execute("SELECT count(*) FROM kare.runs").fetchall()
    capsys.readouterr()
    assert main(args(source, warehouse, day=DAY + dt.timedelta(days=30))) == 1
    err = capsys.readouterr().err
    assert "has columns this kare-rules does not know (kare.account_categories.churn_risk)" in err
    assert "upgrade kare-rules to run into it" in err
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM kare.runs").fetchall() == before


def test_an_unchanged_rerun_says_its_figures_are_those_already_published(published, capsys):
    source, warehouse = published
    capsys.readouterr()
    assert main(args(source, warehouse)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "unchanged (same rules, overrides, data and engine as the last run)" in lines[1]
    assert lines[2] == "  nothing new was published: the figures below are those the run already published"
    # the information is kept: the first run's counts, its moves counted against the run before it
    assert lines[5].startswith("  moves     0 since the run before it; 400 new, 0 removed")
    assert lines[6].startswith("  actions   ") and not lines[6].startswith("  actions   0 opened")
    # a run that publishes says nothing of the kind
    assert main(args(source, warehouse, day=DAY + dt.timedelta(days=1))) == 0
    text = capsys.readouterr().out
    assert "already published" not in text and "since the last run" in text


def test_a_failed_run_points_to_kare_runs_only_when_the_failure_was_logged_there(tmp_path, capsys, monkeypatch):
    from kare_rules.warehouse import DuckDBWarehouse

    accounts = synthesize(load_rules(ROOT / "rules" / "cloudnine"), 50, DAY, seed=5)
    source, lacking = tmp_path / "accounts.parquet", tmp_path / "lacking.parquet"
    accounts.write_parquet(source)
    accounts.drop("arr").write_parquet(lacking)
    warehouse = tmp_path / "w.duckdb"
    assert main(args(lacking, warehouse)) == 1  # a missing column: logged in the warehouse
    assert "(the failure is in kare.runs)" in capsys.readouterr().err
    runs = Warehouse(warehouse).read("runs")
    assert runs["status"].to_list() == ["failed"] and "arr" in runs["message"][0]

    # A folder the run cannot write: neither the lock file nor the failed run's row can be made there.
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "touch", refuse)
    monkeypatch.setattr(DuckDBWarehouse, "record_failure", refuse)
    assert main(args(source, tmp_path / "other.duckdb")) == 1
    err = capsys.readouterr().err
    assert "cannot lock the warehouse" in err and "nothing was published" in err and "kare.runs" not in err


def test_a_run_without_an_input_says_the_missing_file_is_the_default_not_one_it_was_given(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KARE_INPUT", raising=False)
    code = main(["run", "--org", "cloudnine", "--rules-dir", str(ROOT / "rules"), "--as-of", DAY.isoformat(),
                 "--warehouse", str(tmp_path / "w.duckdb")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "input data/sample/cloudnine/latest.parquet does not exist" in err
    assert "(that is the default input, where kare sample writes; name yours with --input or KARE_INPUT)" in err


def test_a_warehouse_whose_lock_file_cannot_be_made_says_so_not_that_another_run_holds_it(tmp_path, monkeypatch):
    from kare_rules.errors import KareError
    from kare_rules.warehouse.lock import warehouse_lock

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "touch", refuse)
    with pytest.raises(KareError) as info, warehouse_lock(tmp_path / "w.duckdb", timeout=5):
        pass
    assert str(info.value) == (
        f"cannot lock the warehouse {tmp_path / 'w.duckdb'} ({tmp_path / 'w.duckdb.lock'}: Permission denied); "
        "make its folder writable or choose another --warehouse"
    )


def test_a_run_that_waited_its_whole_wait_for_another_run_asks_for_a_longer_wait(tmp_path):
    """A run given --wait 2 that timed out was told to 'pass --wait SECONDS', as if it had passed none."""
    from kare_rules.warehouse.lock import WarehouseBusy, warehouse_lock

    warehouse = tmp_path / "w.duckdb"
    with warehouse_lock(warehouse), pytest.raises(WarehouseBusy) as info, warehouse_lock(warehouse, timeout=0.3):
        pass
    assert "publishing to" in str(info.value) and "(waited 0.3 s)" in str(info.value)
    assert "pass a longer --wait SECONDS" in str(info.value)
    with warehouse_lock(warehouse), pytest.raises(WarehouseBusy) as info, warehouse_lock(warehouse):
        pass
    assert "(waited" not in str(info.value) and "or pass --wait SECONDS to queue behind it" in str(info.value)


def test_all_orgs_with_no_organization_is_an_error_not_a_silent_success(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "odd" / "Bad").mkdir(parents=True)
    (tmp_path / "odd" / "Bad" / "kare.yaml").write_text("format: kare/v1\n")
    wh = str(tmp_path / "w.duckdb")
    assert main(["run", "--all-orgs", "--rules-dir", str(tmp_path / "empty"), "--warehouse", wh]) == 2
    assert "no organizations in" in capsys.readouterr().err
    assert main(["run", "--all-orgs", "--rules-dir", str(tmp_path / "missing"), "--warehouse", wh]) == 2
    assert "no rules directory" in capsys.readouterr().err
    assert main(["run", "--all-orgs", "--rules-dir", str(tmp_path / "odd"), "--warehouse", wh]) == 1
    assert "the directory name 'Bad' is not an organization name" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_all_orgs_names_a_folder_whose_rule_file_is_misnamed(tmp_path, capsys):
    # rules/newco/Kare.yaml: no organization, so --all-orgs ran nothing for it and said nothing.
    (tmp_path / "rules" / "newco").mkdir(parents=True)
    (tmp_path / "rules" / "newco" / "Kare.yaml").write_text((ROOT / "rules" / "cloudnine" / "kare.yaml").read_text())
    wh = tmp_path / "w.duckdb"
    assert main(["run", "--all-orgs", "--rules-dir", str(tmp_path / "rules"), "--warehouse", str(wh)]) == 1
    assert "newco has no kare.yaml, so no command reads this file" in capsys.readouterr().err
    assert not wh.exists()


def test_all_orgs_fails_when_an_organization_folder_is_skipped_though_the_others_publish(tmp_path, capsys):
    # A daily `kare run --all-orgs` whose rules directory gained a folder it cannot run (a bad name, a
    # linked rule file) must not exit 0: that organization would silently stop being published.
    rules = tmp_path / "rules"
    (rules / "cloudnine").mkdir(parents=True)
    (rules / "cloudnine" / "kare.yaml").write_text((ROOT / "rules" / "cloudnine" / "kare.yaml").read_text())
    (rules / "Cloud_Nine").mkdir()
    (rules / "Cloud_Nine" / "kare.yaml").write_text((ROOT / "rules" / "cloudnine" / "kare.yaml").read_text())
    source = tmp_path / "accounts.parquet"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 50, DAY, seed=3).write_parquet(source)
    wh = tmp_path / "w.duckdb"
    code = main(["run", "--all-orgs", "--rules-dir", str(rules), "--input", str(source), "--warehouse", str(wh),
                 "--as-of", str(DAY)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "skipped: " in captured.err and "'Cloud_Nine' is not an organization name" in captured.err
    assert "1 organization folder(s) of" in captured.err
    assert "cloudnine 1.1.0 as of 2026-10-31: published" in captured.out  # the valid one still ran
    assert Warehouse(wh).last_run("cloudnine")["as_of"] == DAY


def _three_orgs(tmp_path: Path) -> tuple[Path, Path]:
    text = (ROOT / "rules" / "cloudnine" / "kare.yaml").read_text()
    rules = tmp_path / "rules"
    for org in ("org-a", "org-b", "org-c"):
        (rules / org).mkdir(parents=True)
        (rules / org / "kare.yaml").write_text(text.replace("organization: cloudnine", f"organization: {org}"))
    accounts = synthesize(load_rules(ROOT / "rules" / "cloudnine"), 50, DAY, seed=3)
    for org in ("org-a", "org-c"):  # org-b's input is missing
        accounts.write_parquet(tmp_path / f"{org}.parquet")
    return rules, tmp_path / "{org}.parquet"


def test_all_orgs_ends_naming_the_organizations_that_failed(tmp_path, capsys):
    # In the log of a daily run over many organizations, the one that failed is one error among pages of
    # summaries: the last line names it.
    rules, source = _three_orgs(tmp_path)
    code = main(["run", "--all-orgs", "--rules-dir", str(rules), "--input", str(source),
                 "--warehouse", str(tmp_path / "w.duckdb"), "--as-of", str(DAY)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "org-c 1.1.0 as of 2026-10-31: published" in captured.out
    assert captured.err.splitlines()[-1] == "kare run: 1 of 3 organizations failed (above): org-b"


def test_ctrl_c_in_all_orgs_says_which_organizations_were_published_and_which_did_not_run(
    tmp_path, capsys, monkeypatch
):
    import kare_rules.run as run

    rules, source = _three_orgs(tmp_path)
    (tmp_path / "org-b.parquet").write_bytes((tmp_path / "org-a.parquet").read_bytes())
    real = run.run_organization

    def interrupt_org_b(org, *args, **kwargs):
        if org == "org-b":
            raise run.RunInterrupted("interrupted; nothing was published: the tables are as they were")
        return real(org, *args, **kwargs)

    monkeypatch.setattr(run, "run_organization", interrupt_org_b)
    code = main(["run", "--all-orgs", "--rules-dir", str(rules), "--input", str(source),
                 "--warehouse", str(tmp_path / "w.duckdb"), "--as-of", str(DAY)])  # fmt: skip
    assert code == 130
    assert capsys.readouterr().err.splitlines()[-1] == "  published before it: org-a; not run: org-c"


def test_ctrl_c_in_all_orgs_does_not_call_an_organization_that_failed_before_it_published(
    tmp_path, capsys, monkeypatch
):
    """org-a refused (quarantine), then Ctrl-C in org-b: 'published before it: org-a' was wrong."""
    import kare_rules.run as run

    rules, source = _three_orgs(tmp_path)

    def fail_a_interrupt_b(org, *args, **kwargs):
        if org == "org-a":
            raise run.RunFailed("too many quarantined rows", recorded=True)
        raise run.RunInterrupted("interrupted; nothing was published: the tables are as they were")

    monkeypatch.setattr(run, "run_organization", fail_a_interrupt_b)
    code = main(["run", "--all-orgs", "--rules-dir", str(rules), "--input", str(source),
                 "--warehouse", str(tmp_path / "w.duckdb"), "--as-of", str(DAY)])  # fmt: skip
    assert code == 130
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == "  published before it: none; failed before it: org-a; not run: org-c"


def test_sigterm_stops_a_run_as_ctrl_c_does_and_says_so(tmp_path, capsys, monkeypatch):
    # A cancelled CI job, `timeout` or a stopping container sends SIGTERM: the process vanished, nothing said
    # and nothing in kare.runs. The handler kare run installs is called as the signal would call it.
    import signal

    import kare_rules.run as run

    rules, source = _three_orgs(tmp_path)
    real, before = run.run_organization, signal.getsignal(signal.SIGTERM)

    def stop(step: str) -> None:
        if step == "runs":
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)

    monkeypatch.setattr(run, "run_organization", lambda *a, **k: real(*a, **{**k, "fail_at": stop}))
    code = main(["run", "--org", "org-a", "--rules-dir", str(rules), "--input", str(source),
                 "--warehouse", str(tmp_path / "w.duckdb"), "--as-of", str(DAY)])  # fmt: skip
    assert code == 130
    assert (
        capsys.readouterr().err == "kare run: org-a: interrupted; nothing was published: the tables are as they were\n"
    )
    assert Warehouse(tmp_path / "w.duckdb").last_run("org-a") is None
    assert signal.getsignal(signal.SIGTERM) == before  # given back once the command ends


def test_a_run_stopped_by_sigterm_is_logged_as_stopped_by_sigterm_not_ctrl_c(tmp_path, monkeypatch):
    # kare.runs said 'interrupted (Ctrl-C)' for a run `timeout`, a cancelled CI job or a stopping container
    # ended: the operator reading the log was told someone pressed Ctrl-C. A Ctrl-C after it still says Ctrl-C.
    import signal

    import kare_rules.run as run

    rules, source = _three_orgs(tmp_path)
    real = run.run_organization

    def stop_with(signum: int):
        def stop(step: str) -> None:
            if step == "runs":
                if signum == signal.SIGTERM:
                    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
                raise KeyboardInterrupt

        return stop

    args = ["run", "--org", "org-a", "--rules-dir", str(rules), "--input", str(source), "--warehouse",
            str(tmp_path / "w.duckdb"), "--as-of", str(DAY)]  # fmt: skip
    for signum in (signal.SIGTERM, signal.SIGINT):
        monkeypatch.setattr(
            run, "run_organization", lambda *a, s=signum, **k: real(*a, **{**k, "fail_at": stop_with(s)})
        )
        assert main(args) == 130
    runs = Warehouse(tmp_path / "w.duckdb").read("runs")
    assert runs["status"].to_list() == ["failed", "failed"]
    assert runs.sort("started_at")["message"].to_list() == [
        "interrupted (SIGTERM); nothing was published",
        "interrupted (Ctrl-C); nothing was published",
    ]


def test_logging_a_failure_waits_briefly_not_for_the_whole_wait(published, monkeypatch, capsys):
    from kare_rules.run import engine

    monkeypatch.setattr(engine, "FAILURE_LOG_WAIT", 0.5)
    source, warehouse = published
    reader = hold_open(warehouse, 60)  # holds the file while the failed run would log itself
    started = time.monotonic()
    try:
        code = main(args(source.with_name("missing.parquet"), warehouse, "--wait", "300"))
    finally:
        reader.kill()
        reader.wait()
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - started < 30
    assert "nothing was published" in err and "(the failure is in kare.runs)" not in err


def test_a_failed_first_run_does_not_claim_a_previous_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "accounts.csv"
    synthesize(load_rules(ROOT / "rules" / "cloudnine"), 50, DAY, seed=5).drop("arr").write_csv(source)
    warehouse = tmp_path / "new.duckdb"
    assert main(args(source, warehouse)) == 1
    err = capsys.readouterr().err
    # The run logged its failure in a warehouse it made; no run of the organization was ever published there.
    assert "nothing was published; the tables are as they were (the failure is in kare.runs)" in err
    assert "previous run" not in err
    assert Warehouse(warehouse).read("runs")["status"].to_list() == ["failed"]


def test_off_a_terminal_a_long_run_says_where_it_is_once_a_minute_and_a_short_one_says_nothing(capsys):
    from kare_rules.run.report import progress_lines

    ticks = iter([0.0, 30.0, 61.0, 90.0, 125.0, 200.0])
    update = progress_lines("acme", clock=lambda: next(ticks))
    update("validating", 0, 10)  # 30 s in: nothing yet
    update("slice 2/4: history", 4, 10)
    update("slice 3/4: history", 5, 10)  # 29 s after the last line: nothing
    update("slice 4/4: writing", 9, 10)
    update("published", 10, 10)
    assert capsys.readouterr().err.splitlines() == [
        "acme: slice 2/4: history (40% done after 61 s, about 2 min left)",
        "acme: slice 4/4: writing (90% done after 2 min, about 14 s left)",
        "acme: published (100% done after 3 min)",
    ]


def test_kare_as_of_and_kare_input_from_the_environment_are_read_as_the_options_are(tmp_path, capsys, monkeypatch):
    # $KARE_AS_OF skipped --as-of's checks: a bad one said "as_of ... is not a date" (exit 1, as a failed run),
    # without naming the variable; a blank one (a CI template's empty input) was refused instead of meaning today.
    base = ["run", "--org", "cloudnine", "--rules-dir", str(ROOT / "rules"), "--warehouse", str(tmp_path / "w.duckdb")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KARE_AS_OF", "2026-13-01")
    assert main(base) == 2
    assert capsys.readouterr().err == (
        "kare run: KARE_AS_OF: '2026-13-01' is not a date: there is no such day on the calendar\n"
    )
    monkeypatch.setenv("KARE_AS_OF", " ")
    monkeypatch.setenv("KARE_INPUT", "")
    assert main(base) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"cloudnine: running as of {dt.date.today()} → ")
    assert "input data/sample/cloudnine/latest.parquet does not exist" in captured.err
    assert "(that is the default input, where kare sample writes" in captured.err


def ledger(rules_dir: Path, accounts: Path) -> Path:
    """A small organization, `ledger`, in `rules_dir`, and two of its accounts in `accounts`: its folder."""
    folder = rules_dir / "ledger"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(
        "format: kare/v1\norganization: ledger\nversion: 1.0.0\n"
        "inputs: {account_id: {type: string, key: true}, is_customer: {type: boolean}}\n"
        "profiles: {keep: {when: {is_customer: true}}}\n",
        encoding="utf-8",
    )
    accounts.write_text("account_id,is_customer\nL-1,true\nL-2,false\n", encoding="utf-8")
    return folder


def test_kare_run_publishes_into_kare_warehouse_as_the_pipeline_does_unless_told_otherwise(
    tmp_path, capsys, monkeypatch
):
    # With the settings exported for Dagster (README), kare run read $KARE_INPUT but not $KARE_WAREHOUSE: it
    # published into ./data/warehouse.duckdb, a second history the pipeline never reads.
    monkeypatch.chdir(tmp_path)
    ledger(tmp_path / "rules", tmp_path / "accounts.csv")
    monkeypatch.setenv("KARE_INPUT", "accounts.csv")
    monkeypatch.setenv("KARE_WAREHOUSE", str(tmp_path / "shared.duckdb"))
    assert main(["run", "--org", "ledger", "--as-of", "2026-11-01"]) == 0
    assert capsys.readouterr().out.startswith(f"ledger: running as of 2026-11-01 → {tmp_path / 'shared.duckdb'}\n")
    assert (tmp_path / "shared.duckdb").exists() and not (tmp_path / "data").exists()
    assert main(["run", "--org", "ledger", "--as-of", "2026-11-01", "--warehouse", "own.duckdb"]) == 0
    assert (tmp_path / "own.duckdb").exists()
    monkeypatch.setenv("KARE_WAREHOUSE", " ")  # blank is unset, as for KARE_INPUT
    assert main(["run", "--org", "ledger", "--as-of", "2026-11-01"]) == 0
    assert (tmp_path / "data" / "warehouse.duckdb").exists()


def test_kare_run_reads_the_rules_from_kare_rules_dir_as_the_pipeline_does(tmp_path, capsys, monkeypatch):
    # kare run read $KARE_INPUT and $KARE_WAREHOUSE but not $KARE_RULES_DIR: from any other folder than the
    # rules repository's, the settings exported for Dagster gave "no rules for 'ledger' in rules/".
    folder = ledger(tmp_path / "repo" / "rules", tmp_path / "accounts.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("KARE_RULES_DIR", str(folder.parent))
    run = ["run", "--org", "ledger", "--as-of", "2026-11-01", "--input", str(tmp_path / "accounts.csv")]
    assert main([*run, "--warehouse", "w.duckdb"]) == 0
    assert "keep 1" in capsys.readouterr().out
    monkeypatch.setenv("KARE_RULES_DIR", "")  # blank is unset: rules/ here, which is not there
    assert main([*run, "--warehouse", "w.duckdb"]) == 2
    assert (
        "no rules directory rules/ (give the folder of rules/<org>/kare.yaml with --rules-dir, or set "
        "KARE_RULES_DIR)" in capsys.readouterr().err
    )
    assert main([*run, "--warehouse", "w.duckdb", "--rules-dir", str(folder.parent)]) == 0
    capsys.readouterr()
    assert main([*run, "--warehouse", "w.duckdb", "--rules-dir", str(tmp_path / "accounts.csv")]) == 2
    assert (
        f"the rules directory {tmp_path / 'accounts.csv'} is a file, not a folder; give the folder of "
        "<org>/kare.yaml with --rules-dir, or set KARE_RULES_DIR"
    ) in capsys.readouterr().err


def test_the_summaries_list_the_categories_the_rules_define_in_their_precedence(tmp_path, capsys, monkeypatch):
    # An organization with only keep and exit (keep first) read 'expand 0 · recapture 0 · attain 0' in kare
    # run's summary and kare categorize's table, as a category defined but never matched reads.
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "rules" / "ledger"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(
        "format: kare/v1\norganization: ledger\nversion: 1.0.0\n"
        "inputs: {id: {type: integer, key: true}, paying: {type: boolean}, late: {type: boolean}}\n"
        "precedence: [keep, exit]\nexit: {when: {late: true}}\nprofiles: {keep: {when: {paying: true}}}\n"
    )
    pl.DataFrame({"id": [1, 2, 3, 4], "paying": [True, True, False, False], "late": [True, False, True, False]}
                 ).write_parquet("a.parquet")  # fmt: skip
    run = ["run", "--org", "ledger", "--input", "a.parquet", "--warehouse", "w.duckdb", "--as-of", "2026-11-01"]
    assert main(run) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  category  keep 2 · exit 1 · unassigned 1" in lines, lines
    categorize = ["categorize", "--rules", "rules/ledger", "--input", "a.parquet", "--output", "o.csv", "--as-of",
                  "2026-11-01"]  # fmt: skip
    assert main(categorize) == 0
    table = capsys.readouterr().out
    assert "expand" not in table and "attain" not in table
    assert table.index("keep") < table.index("exit") < table.index("unassigned"), table
