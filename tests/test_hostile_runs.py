"""Hostile `kare run`s, each a real process under a time and a memory limit: the run fails with a clear
message and leaves every published table exactly as it was."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kare_rules.loader import load_rules
from kare_rules.synth import synthesize
from kare_rules.tables import TABLES, same_rows
from kare_rules.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
DAY, LATER = dt.date(2026, 9, 30), dt.date(2026, 10, 31)
MEMORY_LIMIT = 3 * 2**30
TIME_LIMIT = 120


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def kare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kare_rules.cli", *args], capture_output=True, text=True, timeout=TIME_LIMIT,
        preexec_fn=_limit_memory, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with rules/, an input of 300 accounts, and a warehouse holding one run of them."""
    root = tmp_path_factory.mktemp("hostile-runs")
    shutil.copytree(ROOT / "rules" / "cloudnine", root / "rules" / "cloudnine")
    accounts = synthesize(load_rules(root / "rules" / "cloudnine"), 300, DAY, seed=11)
    accounts.write_parquet(root / "accounts.parquet")
    done = kare("run", "--org", "cloudnine", "--input", "accounts.parquet", "--as-of", str(DAY), cwd=root)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def folder(world, tmp_path) -> Path:
    shutil.copytree(world, tmp_path / "w")
    return tmp_path / "w"


def tables(folder: Path) -> dict[str, pl.DataFrame]:
    wh = Warehouse(folder / "data" / "warehouse.duckdb")
    return {t: wh.read(t) for t in TABLES}


def unchanged_but_logged(before: dict, after: dict) -> bool:
    """Every table as it was, but for failed runs logged in kare.runs."""
    runs = after["runs"].filter(pl.col("status") != "failed")
    return all(same_rows(after[t], before[t]) for t in TABLES if t != "runs") and same_rows(runs, before["runs"])


def _header_only(folder: Path) -> str:
    columns = pl.read_parquet(folder / "accounts.parquet").columns
    (folder / "empty.csv").write_text(",".join(columns) + "\n")
    return "empty.csv"


def _zero_rows(folder: Path) -> str:
    pl.read_parquet(folder / "accounts.parquet").head(0).write_parquet(folder / "zero.parquet")
    return "zero.parquet"


def _a_third(folder: Path) -> str:
    pl.read_parquet(folder / "accounts.parquet").head(100).write_parquet(folder / "third.parquet")
    return "third.parquet"


@pytest.mark.parametrize(
    ("make_input", "says"),
    [
        (_header_only, "the input has no rows; publishing it would remove all 300 current accounts"),
        (_zero_rows, "the input has no rows; publishing it would remove all 300 current accounts"),
        (_a_third, "would remove 200 of 300 current accounts (66.7%"),
    ],
)
def test_an_input_that_would_wipe_or_gut_the_tables_publishes_nothing(folder, make_input, says):
    before = tables(folder)
    ran = kare("run", "--org", "cloudnine", "--input", make_input(folder), "--as-of", str(LATER), cwd=folder)
    assert ran.returncode == 1, ran.stderr
    assert says in ran.stderr and "nothing was published" in ran.stderr and "Traceback" not in ran.stderr
    assert unchanged_but_logged(before, tables(folder))


def test_a_symlinked_organization_is_refused_before_anything_is_read(folder):
    (folder / "rules" / "evil").symlink_to("cloudnine")
    before = tables(folder)
    ran = kare("run", "--org", "evil", "--input", "accounts.parquet", "--as-of", str(LATER), cwd=folder)
    assert ran.returncode == 1
    assert "rules/evil/kare.yaml:1:1: rules/evil is a symbolic link (to cloudnine)" in ran.stderr
    after = tables(folder)
    assert all(same_rows(after[t], before[t]) for t in TABLES)
    assert set(after["account_categories"]["org"]) == {"cloudnine"}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--as-of", ""], "is not a date"),
        (["--as-of", str(LATER), "--max-removed-share", "nan"], "is not a finite number"),
        (["--as-of", str(LATER), "--wait", "inf"], "is not a finite number"),
        (["--as-of", str(LATER), "--memory-budget", "-1"], "is not a memory size"),
    ],
)
def test_options_that_cannot_work_are_usage_errors_and_touch_nothing(folder, extra, says):
    before = tables(folder)
    ran = kare("run", "--org", "cloudnine", "--input", "accounts.parquet", *extra, cwd=folder)
    assert ran.returncode == 2 and says in ran.stderr
    after = tables(folder)
    assert all(same_rows(after[t], before[t]) for t in TABLES)


def test_a_lock_path_that_is_a_directory_is_a_clear_error(folder):
    (folder / "data" / "warehouse.duckdb.lock").unlink(missing_ok=True)
    (folder / "data" / "warehouse.duckdb.lock").mkdir()
    before = tables(folder)
    ran = kare("run", "--org", "cloudnine", "--input", "accounts.parquet", "--as-of", str(LATER), cwd=folder)
    assert ran.returncode == 1
    assert "the lock file data/warehouse.duckdb.lock is a directory; remove it" in ran.stderr
    assert unchanged_but_logged(before, tables(folder))


def test_an_earlier_date_after_a_later_one_is_refused(folder):
    before = tables(folder)
    ran = kare("run", "--org", "cloudnine", "--input", "accounts.parquet", "--as-of", "2026-08-31", cwd=folder)
    assert ran.returncode == 1
    assert "was already published for 2026-09-30; a run for the earlier date 2026-08-31" in ran.stderr
    # and what to do when that date was missed, not only "run a later date"
    assert (
        "to put the missed date into the history, run every date again from the first, in order, into a new "
        "warehouse file" in " ".join(ran.stderr.split())
    )
    assert unchanged_but_logged(before, tables(folder))


def test_an_owner_column_named_like_a_working_column_of_the_actions_gives_its_own_value(tmp_path):
    # An input named source, title or priority (or account_id beside another key) made the action's owner
    # that working column's value ('category', the title, 'high'), or failed the run on a duplicate column.
    from kare_rules.cli import main

    names = ("source", "title", "priority", "account_id", "owner_column", "since")
    folder = tmp_path / "rules" / "mini"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        + "".join(f"  {n}: {{type: string}}\n" for n in names)
        + "precedence: [keep]\nprofiles:\n  keep:\n    when: {id: {ne: zzz}}\n    actions:\n"
        + "".join(f"      - {{id: {n.replace('_', '-')}, title: T, due_in_days: 3, owner: {n}}}\n" for n in names)
    )
    data = tmp_path / "a.csv"
    pl.DataFrame({"id": ["A"], **{n: [f"{n}@example.com"] for n in names}}).write_csv(data)
    warehouse = tmp_path / "w.duckdb"
    code = main(["run", "--org", "mini", "--rules-dir", str(tmp_path / "rules"), "--input", str(data),
                 "--as-of", "2026-01-01", "--warehouse", str(warehouse)])  # fmt: skip
    assert code == 0
    queue = Warehouse(warehouse).read("action_queue").sort("action_id")
    assert queue.select("action_id", "owner").rows() == sorted((n.replace("_", "-"), f"{n}@example.com") for n in names)


def test_trend_columns_named_like_the_account_values_columns_are_kept_as_themselves(tmp_path):
    # account_values is long (account_id, column_name, value): a trend on an input called value or
    # column_name failed every run on a duplicate column (one on account_id is refused by the loader).
    from kare_rules.cli import main

    names = ("value", "column_name")
    folder = tmp_path / "rules" / "mini"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        + "".join(f"  {n}: {{type: integer}}\n" for n in names)
        + "derived:\n"
        + "".join(f"  {n}_change: {{change_of: {n}}}\n" for n in names)
        + "precedence: [keep]\nprofiles:\n  keep: {when: {value_change: {gte: 0}}}\n"
    )
    warehouse = tmp_path / "w.duckdb"
    for day, base in (("2026-01-01", 1), ("2026-01-02", 2)):
        data = tmp_path / f"{day}.csv"
        pl.DataFrame({"id": ["A"], **{n: [base * (i + 1)] for i, n in enumerate(names)}}).write_csv(data)
        code = main(["run", "--org", "mini", "--rules-dir", str(tmp_path / "rules"), "--input", str(data),
                     "--as-of", day, "--warehouse", str(warehouse)])  # fmt: skip
        assert code == 0
    values = Warehouse(warehouse).read("account_values").filter(pl.col("as_of") == dt.date(2026, 1, 2))
    assert sorted(values.select("account_id", "column_name", "value").rows()) == [
        ("A", "column_name", 4.0), ("A", "value", 2.0),
    ]  # fmt: skip
    assert Warehouse(warehouse).read("account_categories")["category"].to_list() == ["keep"]  # value rose by 1


def test_a_blocked_run_shows_control_characters_of_the_data_escaped(tmp_path, capsys):
    # The first failures quote ids and values: a line break or ESC in one reached the terminal or a CI log
    # (where a line starting with '::' is a workflow command) as it was.
    from kare_rules.cli import main

    folder = tmp_path / "rules" / "mini"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        "  n: {type: integer}\nprecedence: [keep]\nprofiles:\n  keep: {when: {n: {gte: 0}}}\n"
    )
    data = tmp_path / "a.csv"
    pl.DataFrame({"id": ["A\x1b[2J"], "n": ["x\n::error::injected"]}).write_csv(data)
    code = main(["run", "--org", "mini", "--rules-dir", str(tmp_path / "rules"), "--input", str(data),
                 "--as-of", "2026-01-01", "--warehouse", str(tmp_path / "w.duckdb")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "First failures: row 1 (A\\x1b[2J): n: x\\n::error::injected is not" in err, err
    assert "\x1b" not in err and not any(line.lstrip().startswith("::") for line in err.splitlines()), err


ZETA = """format: kare/v1
organization: zeta
version: 1.0.0
inputs:
  acct: {type: string, key: true}
  score: {type: integer, min: 0}
precedence: [keep]
profiles:
  keep: {when: {score: {gte: 10}}}
"""


def _zeta(tmp_path: Path) -> Path:
    (tmp_path / "rules" / "zeta").mkdir(parents=True)
    (tmp_path / "rules" / "zeta" / "kare.yaml").write_text(ZETA)
    return tmp_path / "rules"


def test_an_input_in_several_chunks_quarantines_its_bad_values_in_any_of_them(tmp_path):
    # A sliced read of a large CSV comes in chunks: Polars panicked (a Rust backtrace, nothing logged)
    # writing the reasons of bad values when the filter emptied a chunk without any.
    from kare_rules.run import run_organization

    good = pl.DataFrame({"acct": [f"A{i:03d}" for i in range(100)], "score": ["50"] * 100})
    bad = pl.DataFrame({"acct": [f"B{i:03d}" for i in range(100)], "score": ["lots"] * 10 + ["5"] * 90})
    accounts = pl.concat([good, bad], rechunk=False)
    warehouse = Warehouse(tmp_path / "w.duckdb")
    for slices in (1, 3):
        run_organization("zeta", DAY, accounts, warehouse, rules_dir=_zeta(tmp_path / str(slices)), slices=slices)
    quarantine = warehouse.read("quarantine")
    assert quarantine.height == 10 and quarantine["account_id"].to_list() == [f"B{i:03d}" for i in range(10)]
    assert quarantine["reasons"].to_list()[0] == [
        "score: lots is not a valid integer; write a whole number such as 1200, without thousands separators or units"
    ]


def test_a_panic_inside_polars_fails_the_run_and_is_logged_like_any_failure(tmp_path, monkeypatch):
    from kare_rules.run import RunFailed, engine, run_organization

    def panic(*_args, **_kwargs):
        raise pl.exceptions.PanicException("assertion failed: i < self.len()")

    monkeypatch.setattr(engine, "validate_accounts", panic)
    warehouse = Warehouse(tmp_path / "w.duckdb")
    accounts = pl.DataFrame({"acct": ["A"], "score": ["50"]})
    with pytest.raises(RunFailed) as failed:
        run_organization("zeta", DAY, accounts, warehouse, rules_dir=_zeta(tmp_path))
    assert failed.value.recorded and "PanicException: assertion failed" in str(failed.value)
    runs = warehouse.read("runs")
    assert runs["status"].to_list() == ["failed"] and runs["input_rows"].to_list() == [1]
    assert warehouse.read("account_categories").height == 0


class _Connection:
    """A DuckDB connection that behaves as DuckDB does when Ctrl-C comes during one of its statements."""

    def __init__(self, con, interrupted: str, signum: int = signal.SIGINT):
        self._con, self._interrupted, self._signum = con, interrupted, signum

    def __getattr__(self, name: str):
        return getattr(self._con, name)

    def execute(self, query: str, *args, **kwargs):
        if not query.startswith(self._interrupted):
            return self._con.execute(query, *args, **kwargs)
        if query == "COMMIT":
            done = self._con.execute(query, *args, **kwargs)
            try:  # DuckDB looks for a signal while a statement runs, and reports it after the commit went through
                signal.raise_signal(self._signum)
            except KeyboardInterrupt:
                raise RuntimeError("Query interrupted") from None
            return done
        with contextlib.suppress(duckdb.Error):  # an interrupted statement aborts the transaction
            self._con.execute("SELECT error('interrupted')")
        raise RuntimeError("Query interrupted")


def _interrupting(monkeypatch, statement: str, signum: int = signal.SIGINT) -> None:
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: _Connection(real(*a, **k), statement, signum))


def test_ctrl_c_during_a_statement_is_an_interrupted_run_that_publishes_nothing(tmp_path, monkeypatch):
    # DuckDB turns Ctrl-C during a statement into RuntimeError('Query interrupted'); the run said
    # 'TransactionException: ... aborted' (unregistering a view in the aborted transaction hid it) and exit 1.
    from kare_rules.run import RunInterrupted, run_organization

    rules = _zeta(tmp_path)
    warehouse = Warehouse(tmp_path / "w.duckdb")
    run_organization("zeta", DAY, pl.DataFrame({"acct": ["A", "B"], "score": ["50", "5"]}), warehouse, rules_dir=rules)
    before = {t: warehouse.read(t) for t in TABLES}
    _interrupting(monkeypatch, "UPDATE")
    with pytest.raises(RunInterrupted) as stopped:
        run_organization("zeta", LATER, pl.DataFrame({"acct": ["A", "B"], "score": ["5", "50"]}), warehouse,
                         rules_dir=rules)  # fmt: skip
    assert str(stopped.value) == "interrupted; nothing was published: the tables are as they were"
    monkeypatch.undo()
    assert unchanged_but_logged(before, {t: warehouse.read(t) for t in TABLES})
    assert warehouse.read("runs").filter(pl.col("status") == "failed")["message"].to_list() == [
        "interrupted (Ctrl-C); nothing was published"
    ]


def test_ctrl_c_during_the_commit_is_too_late_the_run_is_published_and_says_so(tmp_path, monkeypatch):
    # DuckDB reported the COMMIT interrupted though it went through: the run said 'nothing was published'
    # and logged itself failed beside its own published row.
    from kare_rules.run import run_organization

    warehouse = Warehouse(tmp_path / "w.duckdb")
    _interrupting(monkeypatch, "COMMIT")
    result = run_organization("zeta", DAY, pl.DataFrame({"acct": ["A"], "score": ["50"]}), warehouse,
                              rules_dir=_zeta(tmp_path))  # fmt: skip
    monkeypatch.undo()
    assert result.run["status"] == "published"
    assert result.stopped  # the Ctrl-C is not lost: its caller stops after this run
    assert warehouse.read("runs")["status"].to_list() == ["published"]
    assert warehouse.read("account_categories")["category"].to_list() == ["keep"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_during_a_commit_of_all_orgs_stops_after_that_organization(tmp_path, monkeypatch, capsys, signum):
    # The Ctrl-C was swallowed to keep the COMMIT whole, and --all-orgs went on with the next organization;
    # a SIGTERM (kare run's, which stops a run as Ctrl-C does) was not held and said nothing was published.
    from kare_rules.cli import main

    rules = _zeta(tmp_path)
    (rules / "zeta-two").mkdir()
    (rules / "zeta-two" / "kare.yaml").write_text(ZETA.replace("organization: zeta", "organization: zeta-two"))
    pl.DataFrame({"acct": ["A"], "score": ["50"]}).write_csv(tmp_path / "a.csv")
    _interrupting(monkeypatch, "COMMIT", signum)
    code = main(["run", "--all-orgs", "--rules-dir", str(rules), "--input", str(tmp_path / "a.csv"), "--as-of",
                 str(DAY), "--warehouse", str(tmp_path / "w.duckdb")])  # fmt: skip
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert code == 130
    assert "kare run: zeta: interrupted once published; not run: zeta-two" in captured.err
    assert "published" in captured.out  # zeta's summary
    runs = Warehouse(tmp_path / "w.duckdb").read("runs")
    assert list(zip(runs["org"], runs["status"], strict=True)) == [("zeta", "published")]


def test_a_database_url_as_the_warehouse_is_refused_before_anything_is_made(tmp_path, monkeypatch, capsys):
    # It failed on a missing DuckDB extension and left a folder 'postgresql:/kare@db' (with a lock file) behind.
    from kare_rules.cli import main

    rules = _zeta(tmp_path)
    pl.DataFrame({"acct": ["A"], "score": ["50"]}).write_csv(tmp_path / "a.csv")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--org", "zeta", "--rules-dir", str(rules), "--input", "a.csv", "--as-of", str(DAY),
                 "--warehouse", "postgresql://kare@db/warehouse"])  # fmt: skip
    assert code == 1
    assert "the warehouse postgresql://kare@db/warehouse is a URL; kare run publishes to a DuckDB file" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "rules"]
