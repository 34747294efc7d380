"""The `kare` rule commands as a person uses them: validate, test, schema, categorize, explain and help,
with their output lines and exit codes (0 ok, 1 invalid or failed, 2 usage error), and never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kare_rules.cli import main

ROOT = Path(__file__).resolve().parents[1]
KARE = Path(sys.executable).with_name("kare")

RULES = """\
format: kare/v1
organization: acme
version: 1.2.0
inputs:
  account_id: {type: string, key: true}
  account_owner: {type: string, nullable: true}
  sector: {type: string}
  revenue_musd: {type: float, nullable: true}
  seats: {type: integer, min: 0}
  is_customer: {type: boolean}
  churned_on: {type: date, nullable: true}
derived:
  days_since_churn: {days_since: churned_on}
traits:
  paying: {is_customer: true}
  big: {revenue_musd: {gte: 10}}
  churned_lately: {days_since_churn: {lte: 365}}
precedence: [exit, expand, keep, recapture, attain]
exit:
  when: {all: [paying, {sector: other}]}
  actions:
    - {id: exit-review, title: Review the account, due_in_days: 14, priority: high, owner: account_owner}
profiles:
  expand:
    when: {all: [paying, big, {seats: {gte: 100}}]}
  keep:
    when: {all: [paying, big]}
  recapture:
    when: {all: [{not: paying}, churned_lately]}
  attain:
    when: {all: [{not: paying}, {seats: {gte: 5}}]}
tests:
  - name: big paying is keep
    account: {account_id: T1, is_customer: true, revenue_musd: 20, sector: retail, seats: 3}
    as_of: 2026-11-01
    expect: keep
  - name: prospect with seats is attain
    account: {account_id: T2, is_customer: false, seats: 10}
    as_of: 2026-11-01
    expect: attain
"""

AS_OF = "2026-10-31"

# One account per outcome; the comment says why it gets its category.
ACCOUNTS = pl.DataFrame(
    {
        "account_id": ["A", "B", "C", "D", "E", "F"],
        "account_owner": ["ana", "bo", None, "dee", None, "fay"],
        "sector": ["other", "retail", "retail", "retail", "retail", "retail"],
        "revenue_musd": [50.0, 50.0, None, 1.0, None, 20.0],
        "seats": [200, 200, 3, 10, 10, 3],
        "is_customer": [True, True, True, False, False, True],
        "churned_on": [None, None, None, dt.date(2026, 6, 1), None, None],
    }
)
EXPECTED = {
    "A": ("exit", "exit", ["expand", "keep"]),  # exit wins over expand and keep, which held too
    "B": ("expand", "profiles.expand", ["keep"]),
    "C": ("unassigned", None, []),  # paying, but a null revenue is never big
    "D": ("recapture", "profiles.recapture", ["attain"]),  # churned 152 days ago, 10 seats
    "E": ("attain", "profiles.attain", []),
    "F": ("keep", "profiles.keep", []),
}


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working directory holding rules/acme/kare.yaml and accounts.parquet / accounts.csv."""
    monkeypatch.chdir(tmp_path)
    write_org(tmp_path, "acme", RULES)
    ACCOUNTS.write_parquet(tmp_path / "accounts.parquet")
    ACCOUNTS.write_csv(tmp_path / "accounts.csv")
    return tmp_path


def write_org(root: Path, org: str, text: str | bytes) -> Path:
    path = root / "rules" / org / "kare.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    """Call `kare` in-process: exit code, stdout lines, stderr lines. argparse usage errors exit via SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


# ---- kare validate ------------------------------------------------------------------------------


def test_validate_a_valid_directory_exits_0_with_a_summary(work, capsys):
    code, out, err = run(capsys, "validate", "rules")
    assert (code, out, err) == (0, ["1 valid, 0 invalid"], [])


def test_validate_defaults_to_the_rules_directory(work, capsys):
    write_org(work, "bravo", RULES.replace("organization: acme", "organization: bravo"))
    code, out, _ = run(capsys, "validate")
    assert (code, out) == (0, ["2 valid, 0 invalid"])


def test_validate_prints_one_located_line_per_problem_and_exits_1(work, capsys):
    bad = RULES.replace("big: {revenue_musd: {gte: 10}}", "big: {revenue_usd: {gte: 10}}").replace(
        "priority: high", "priority: urgent"
    )
    write_org(work, "bad", bad.replace("organization: acme", "organization: bad"))
    code, out, err = run(capsys, "validate", "rules")
    assert code == 1
    assert out == [
        "rules/bad/kare.yaml:16:9: unknown column 'revenue_usd'; did you mean 'revenue_musd'?",
        "rules/bad/kare.yaml:22:79: exit.actions.0.priority: 'urgent' is not allowed; write one of: high, medium, low",
        "1 valid, 1 invalid",
    ]
    assert err == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "rules/acme/kare.yaml:1:1: the file is empty; it should start with 'format: kare/v1'"),
        (b"format: [kare\n", "rules/acme/kare.yaml:2:1: YAML syntax error: did not find expected ',' or ']'"),
        (b"- a\n- b\n", "rules/acme/kare.yaml:1:1: a rule file is a mapping"),
        (b"\x00\x01\x02binary", "rules/acme/kare.yaml:1:1: this is a binary file, not YAML text"),
        (b"format: caf\xe9\n", "rules/acme/kare.yaml:1:1: the file is not UTF-8 text; save it as UTF-8"),
    ],
    ids=["empty", "yaml-syntax", "a-list", "binary", "not-utf8"],
)
def test_validate_a_broken_file_is_one_line_and_exit_1(work, capsys, content, message):
    write_org(work, "acme", content)
    code, out, err = run(capsys, "validate", "rules/acme/kare.yaml")
    assert code == 1
    assert len(out) == 2
    assert out[0].startswith(message)
    assert out[1] == "0 valid, 1 invalid"
    assert err == []


@pytest.mark.parametrize("stray", ["Kare.yaml", "rules.yml", "overrides.yaml", "tests/renewals.yaml"])
def test_validate_refuses_a_folder_whose_rule_file_is_misnamed(work, capsys, stray):
    # Such a folder is no organization: validate, test, diff and run all passed over it in silence, so a
    # new organization added as rules/newco/Kare.yaml passed CI and was never run.
    (work / "rules" / "newco" / stray).parent.mkdir(parents=True)
    (work / "rules" / "newco" / stray).write_text(RULES, encoding="utf-8")
    (work / "rules" / "acme" / "tests").mkdir()  # an organization's own tests/ folder is no stray
    (work / "rules" / "acme" / "tests" / "more.yaml").write_text("tests: []\n", encoding="utf-8")
    code, out, _ = run(capsys, "validate")
    assert code == 1
    assert out == [
        f"rules/newco/{stray}:1:1: rules/newco has no kare.yaml, so no command reads this file and 'newco' is no "
        "organization: name its rule file kare.yaml (or kare.yml), or move the folder out of rules",
        "1 valid, 1 invalid",
    ]
    assert run(capsys, "validate", "rules/acme") == (0, ["1 valid, 0 invalid"], [])


def test_validate_passes_over_a_folder_without_yaml_files(work, capsys):
    (work / "rules" / "docs").mkdir()
    (work / "rules" / "docs" / "README.md").write_text("# how we write rules\n", encoding="utf-8")
    assert run(capsys, "validate") == (0, ["1 valid, 0 invalid"], [])


def test_validate_checks_the_overrides_file_beside_the_rules(work, capsys):
    # kare run reads rules/<org>/overrides.yaml; a mistake there must fail validation (and CI), not a scheduled run.
    (work / "rules/acme/overrides.yaml").write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: expnd, reason: Strategic partner, author: ana, expires: 2027-01-15}\n"
        "  - {account: B, category: keep, reason: Repricing agreed, author: ana, expires: 2027-01-15, extra: 1}\n"
    )
    code, out, err = run(capsys, "validate", "rules")
    assert code == 1
    assert out[0].startswith(
        "rules/acme/overrides.yaml:3:28: overrides.0.category: 'expnd' is not allowed; did you mean 'expand'?"
    )
    assert out[1].startswith("rules/acme/overrides.yaml:4:94: unknown key 'extra' in overrides.1")
    assert out[2:] == ["0 valid, 1 invalid"]
    assert err == []


def test_validate_passes_a_valid_overrides_file(work, capsys):
    (work / "rules/acme/overrides.yaml").write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: keep, reason: Repricing agreed, author: ana, expires: 2027-01-15}\n"
    )
    assert run(capsys, "validate", "rules") == (0, ["1 valid, 0 invalid"], [])


def test_validate_a_missing_path_is_a_usage_error(work, capsys):
    code, out, err = run(capsys, "validate", "rules/nowhere/kare.yaml")
    assert code == 2
    assert out == []
    assert err == ["kare validate: rules/nowhere/kare.yaml: no such file or directory; give rule files or directories"]


def test_validate_a_directory_without_rule_files_is_a_usage_error(work, capsys):
    (work / "empty").mkdir()
    code, _, err = run(capsys, "validate", "empty")
    assert code == 2
    assert err == ["kare validate: no rule files (*/kare.yaml) found in empty"]


def test_validate_an_unknown_option_is_a_usage_error(work, capsys):
    code, _, err = run(capsys, "validate", "--strict", "rules")
    assert code == 2
    assert err[-1] == "kare validate: error: unrecognized arguments: --strict; see kare validate --help"


def test_kare_without_a_command_prints_help_and_exits_2(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    assert out[0].startswith("usage: kare")


# ---- kare test ----------------------------------------------------------------------------------


def test_test_passing_tests_end_with_the_exact_summary_line(work, capsys):
    code, out, _ = run(capsys, "test", "rules")
    assert code == 0
    assert out == ["2 passed, 0 failed"]


def test_test_verbose_lists_each_passing_test_with_its_line(work, capsys):
    code, out, _ = run(capsys, "test", "-v", "rules")
    assert code == 0
    assert out == [
        "PASS rules/acme/kare.yaml:33 big paying is keep",
        "PASS rules/acme/kare.yaml:37 prospect with seats is attain",
        "2 passed, 0 failed",
    ]


def test_test_a_failure_shows_expected_got_and_reason_and_exits_1(work, capsys):
    write_org(work, "acme", RULES.replace("expect: attain", "expect: recapture"))
    code, out, _ = run(capsys, "test", "rules")
    assert code == 1
    assert out == [
        "FAIL rules/acme/kare.yaml:37 prospect with seats is attain",
        "     expected: recapture",
        "     got:      attain",
        "     reason:   attain: not (paying (is_customer = true [false])) and seats ≥ 5 [10]",
        "     why:      recapture did not hold:",
        "       ✗ recapture",
        "       └─ ✗ all of",
        "          ├─ ✓ not",
        "          │  └─ ✗ trait paying",
        "          │     └─ ✗ is_customer = true   [is_customer = false]",
        "          └─ ✗ trait churned_lately",
        "             └─ ✗ days_since_churn ≤ 365   [days_since_churn = null]",
        "1 passed, 1 failed",
    ]


def test_test_an_invalid_rule_file_counts_as_failed_and_shows_its_problems(work, capsys):
    write_org(work, "acme", RULES.replace("expect: attain", "expect: atain"))
    code, out, _ = run(capsys, "test", "rules")
    assert code == 1
    assert out[0].startswith("rules/acme/kare.yaml:40:13: expect 'atain' is not a category; did you mean 'attain'?")
    assert out[1].endswith("the rule file is invalid, its tests were not run")
    assert out[-1] == "0 passed, 1 failed"


def test_test_the_bundled_organizations_all_pass(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "test")
    assert code == 0
    passed, failed = out[-1].split(", ")
    assert failed == "0 failed"
    assert int(passed.removesuffix(" passed")) >= 16  # at least eight per organization


# ---- kare schema --------------------------------------------------------------------------------


def test_schema_prints_the_rule_file_json_schema(capsys):
    code = main(["schema"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed == json.loads((ROOT / "schemas" / "kare-rules.v1.schema.json").read_text(encoding="utf-8"))
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# ---- kare categorize ----------------------------------------------------------------------------


def _by_account(df: pl.DataFrame) -> dict[str, tuple]:
    return {r["account_id"]: (r["category"], r["matched_rule"], r["overlaps"]) for r in df.iter_rows(named=True)}


@pytest.mark.parametrize("source", ["accounts.parquet", "accounts.csv"])
def test_categorize_to_parquet_writes_category_rule_reason_and_overlaps(work, capsys, source):
    code, out, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", source, "--as-of", AS_OF, "--output", "out/r.parquet"
    )
    assert code == 0, err
    assert out[0] == "6 accounts categorized with acme 1.2.0 as of 2026-10-31 → out/r.parquet"
    assert out[1].split() == ["category", "accounts", "overlaps"]
    assert out[2].split() == ["exit", "1", "1"]
    result = pl.read_parquet(work / "out" / "r.parquet")
    assert result.columns == ["account_id", "category", "matched_rule", "reason", "overlaps"]
    assert result.schema["overlaps"] == pl.List(pl.String)
    assert _by_account(result) == EXPECTED
    reasons = dict(zip(result["account_id"], result["reason"], strict=True))
    assert reasons["A"] == "exit: paying (is_customer = true) and sector = 'other'"
    assert reasons["C"] == "no category's conditions held"
    assert "seats ≥ 100 [200]" in reasons["B"]


def test_categorize_to_csv_joins_overlaps_with_a_bar(work, capsys):
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "accounts.csv", "--as-of", AS_OF, "--output", "r.csv"
    )
    assert code == 0, err
    result = pl.read_csv(work / "r.csv", infer_schema=False)
    assert result.columns == ["account_id", "category", "matched_rule", "reason", "overlaps"]
    rows = {r["account_id"]: (r["category"], r["matched_rule"], r["overlaps"]) for r in result.iter_rows(named=True)}
    assert rows == {
        "A": ("exit", "exit", "expand|keep"),
        "B": ("expand", "profiles.expand", "keep"),
        "C": ("unassigned", None, ""),  # an empty list is an empty quoted field; no rule is an empty field
        "D": ("recapture", "profiles.recapture", "attain"),
        "E": ("attain", "profiles.attain", ""),
        "F": ("keep", "profiles.keep", ""),
    }


def test_categorize_no_explain_writes_only_key_category_and_rule(work, capsys):
    code, out, _ = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF,
        "--output", "r.csv", "--no-explain",
    )  # fmt: skip
    assert code == 0
    assert out[1].split() == ["category", "accounts"]
    result = pl.read_csv(work / "r.csv", infer_schema=False)
    assert result.columns == ["account_id", "category", "matched_rule"]
    assert dict(zip(result["account_id"], result["category"], strict=True)) == {k: v[0] for k, v in EXPECTED.items()}


def test_categorize_sets_invalid_rows_aside_with_their_reasons(work, capsys):
    (work / "dirty.csv").write_text(
        "account_id,account_owner,sector,revenue_musd,seats,is_customer,churned_on\n"
        "A,ana,other,50,200,true,\n"
        "Z,zed,retail,5,-3,true,\n"
        "Y,yan,retail,5,many,false,\n"
    )
    code, out, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "dirty.csv", "--as-of", AS_OF, "--output", "r.csv"
    )
    assert code == 0
    assert out[0].startswith("1 account categorized")
    assert err == ["2 input rows failed validation and were set aside in r.quarantine.csv with their reasons"]
    quarantine = pl.read_csv(work / "r.quarantine.csv", infer_schema=False)
    assert sorted(quarantine["account_id"]) == ["Y", "Z"]
    assert all("seats" in reasons for reasons in quarantine["reasons"])

    # The same output again from clean data: the earlier run's quarantine file must not stay to be misread.
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "accounts.csv", "--as-of", AS_OF, "--output", "r.csv"
    )
    assert (code, err) == (0, [])
    assert not (work / "r.quarantine.csv").exists()

    # One row set aside is one row, not "1 input rows".
    (work / "one.csv").write_text((work / "dirty.csv").read_text().rsplit("\n", 2)[0] + "\n")
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "one.csv", "--as-of", AS_OF, "--output", "r.csv"
    )
    assert (code, err) == (0, ["1 input row failed validation and was set aside in r.quarantine.csv with its reasons"])


def test_categorize_the_output_of_kare_sample_covers_every_input_row(work, capsys):
    code, out, _ = run(capsys, "sample", "--out", "sample", "--rules-dir", "rules", "--accounts", "60", "--months", "1")
    assert code == 0
    assert out == ["acme: 1 monthly snapshot 2026-10-31 … 2026-10-31 (60+ accounts) in sample/acme/"]
    source = work / "sample" / "acme" / "latest.parquet"
    rows = pl.read_parquet(source).height
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", str(source), "--as-of", AS_OF, "--output", "s.parquet"
    )
    assert code == 0
    result = pl.read_parquet(work / "s.parquet")
    quarantined = int(err[0].split()[0]) if err else 0
    assert result.height + quarantined == rows
    assert set(result["category"]) <= {"exit", "expand", "keep", "recapture", "attain", "unassigned"}
    assert result["account_id"].is_unique().all()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--as-of", "2026-13-01", "--output", "r.csv"], 2, "argument --as-of: '2026-13-01' is not a date"),
        (["--as-of", AS_OF, "--output", "r.json"], 2, "the output must end in .parquet or .csv"),
        (["--as-of", AS_OF], 2, "the following arguments are required: --output"),
    ],
    ids=["bad-date", "bad-output-extension", "no-output"],
)
def test_categorize_usage_errors_exit_2_and_write_nothing(work, capsys, argv, code, message):
    got, _, err = run(capsys, "categorize", "--rules", "rules/acme", "--input", "accounts.parquet", *argv)
    assert got == code
    assert message in err[-1]
    assert not (work / "r.json").exists()


@pytest.mark.parametrize("command", ["categorize", "diff"])
def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(work, capsys, command):
    (work / "taken").write_text("a file where a folder should be")
    argv = {
        "categorize": ["--rules", "rules/acme", "--input", "accounts.csv", "--as-of", AS_OF, "--output", "taken/r.csv"],
        "diff": ["--before", "rules/acme", "--after", "rules/acme", "--output", "taken/r.md"],
    }[command]
    code, _, err = run(capsys, command, *argv)
    assert code == 1
    assert err[-1].startswith(f"kare {command}: ")
    assert err[-1].endswith("; check the path, and that its folder can be written")
    assert "taken" in err[-1]


def test_categorize_a_missing_input_is_one_clear_line_and_exit_1(work, capsys):
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "nope.parquet", "--as-of", AS_OF, "--output", "r.csv"
    )
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("kare categorize: input nope.parquet does not exist;")


@pytest.mark.parametrize(
    ("command", "rules", "message"),
    [
        ("categorize", "rules/nope", "--rules rules/nope: no such file or directory; give a rule file (kare.yaml) or"),
        ("explain", "rules/nope", "--rules rules/nope: no such file or directory"),
        ("compile", "rules/nope", "--rules rules/nope: no such file or directory"),
        ("categorize", "rules", "--rules rules: no kare.yaml in this directory; give one organization's directory"),
    ],
    ids=["categorize-missing", "explain-missing", "compile-missing", "categorize-the-rules-directory"],
)
def test_a_rules_option_naming_no_rule_file_is_a_usage_error(work, capsys, command, rules, message):
    # As in kare validate and kare diff: exit 2 and what to give, not "rules/nope:1:1: cannot read the file".
    options = {
        "categorize": ["--input", "accounts.parquet", "--as-of", AS_OF, "--output", "r.csv"],
        "explain": ["--input", "accounts.parquet", "--as-of", AS_OF, "--account", "A"],
        "compile": ["--dialect", "duckdb", "--table", "accounts"],
    }[command]
    code, out, err = run(capsys, command, "--rules", rules, *options)
    assert (code, out) == (2, [])
    assert err[-1].startswith(f"kare {command}: {message}")


def test_categorize_with_invalid_rules_lists_the_problems_and_exits_1(work, capsys):
    write_org(work, "acme", RULES.replace("{seats: {gte: 5}}", "{seats: {gte: five}}"))
    code, _, err = run(
        capsys, "categorize", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF,
        "--output", "r.csv",
    )  # fmt: skip
    assert code == 1
    assert err == [
        "rules/acme/kare.yaml:31:47: 'seats' is an integer column; write a number, not 'five'",
        "1 problem(s) in the rule file; fix them and run again (kare validate shows them)",
    ]
    assert not (work / "r.csv").exists()


# ---- kare explain -------------------------------------------------------------------------------


def test_explain_prints_every_category_as_a_tree_with_marks_and_values(work, capsys):
    code, out, err = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF, "--account", "D"
    )
    assert code == 0, err
    assert out[0] == "account D as of 2026-10-31 (acme 1.2.0): recapture"
    assert out[1].startswith("reason: recapture: not (paying")
    assert out[2].startswith("next: recapture → ")  # the early warning in words (tests/test_edges.py)
    assert out[4] == "precedence: exit → expand → keep → recapture → attain (first that holds wins)"
    tree = out[5:]
    tops = [line for line in tree if not line.startswith((" ", "└", "├", "│"))]
    assert tops == ["✗ exit", "✗ expand", "✗ keep", "✓ recapture", "✓ attain"]
    assert "   │  └─ ✗ is_customer = true   [is_customer = false]" in tree
    assert "      └─ ✓ days_since_churn ≤ 365   [days_since_churn = 152]" in tree
    assert "   └─ ✓ seats ≥ 5   [seats = 10]" in tree


@pytest.mark.parametrize("expires", ["2027-01-31", "2026-10-30"])
def test_explain_says_when_an_override_pins_the_account(work, capsys, expires):
    # a run publishes the pinned category while as_of is on or before expires; explain shows the rules'
    # own view and says so, and says nothing of an override that has ended
    (work / "rules" / "acme" / "overrides.yaml").write_text(
        "format: kare-overrides/v1\noverrides:\n"
        f"  - {{account: D, category: expand, reason: Board decision, author: ana@acme.example, expires: {expires}}}\n"
    )
    code, out, err = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF, "--account", "D"
    )
    assert code == 0, err
    assert out[0] == "account D as of 2026-10-31 (acme 1.2.0): recapture"
    pinned = (
        "override: a run publishes expand (pinned by ana@acme.example until 2027-01-31: Board decision); "
        "the category above and the lines below are the rules' own view"
    )
    assert (out[1] == pinned) if expires == "2027-01-31" else not any(line.startswith("override:") for line in out)
    assert any(line.startswith("reason: recapture: ") for line in out)


def test_categorize_refuses_an_output_that_is_one_of_its_inputs(work, capsys):
    # `--output accounts.csv` with `--input accounts.csv` replaced the extract with its results.
    before = (work / "accounts.csv").read_bytes()
    argv = ["categorize", "--rules", "rules/acme", "--as-of", AS_OF]
    code, out, err = run(capsys, *argv, "--input", "accounts.csv", "--output", "accounts.csv")
    assert (code, out) == (2, [])
    assert err == ["kare categorize: --output accounts.csv would overwrite accounts.csv, which --input reads; "
                   "write the results to another file"]  # fmt: skip
    assert (work / "accounts.csv").read_bytes() == before
    # the quarantine twin is written (or removed) too: it may not be an input either
    (work / "r.quarantine.csv").write_bytes(before)
    code, _, err = run(capsys, *argv, "--input", "r.quarantine.csv", "--output", "r.csv")
    assert code == 2 and err[0].startswith("kare categorize: --output r.csv would overwrite r.quarantine.csv")
    assert (work / "r.quarantine.csv").read_bytes() == before


def test_explain_lists_only_the_categories_the_file_defines_in_its_precedence_line(work, capsys):
    # Without `precedence:` the default order named exit, expand and attain for a file defining neither.
    write_org(work, "duo", "format: kare/v1\norganization: duo\nversion: 1.0.0\ninputs:\n"
              "  account_id: {type: string, key: true}\n  is_customer: {type: boolean}\nprofiles:\n"
              "  keep: {when: {is_customer: true}}\n  recapture: {when: {is_customer: false}}\n")  # fmt: skip
    code, out, _ = run(
        capsys, "explain", "--rules", "rules/duo", "--input", "accounts.csv", "--as-of", AS_OF, "--account", "A"
    )
    assert code == 0
    assert out[4] == "precedence: keep → recapture (first that holds wins)"


def test_explain_shows_a_float_to_four_decimals_as_the_reason_does(work, capsys):
    # The tree printed 50.123456789 in full where the reason shows 50.1235.
    ACCOUNTS.with_columns(pl.col("revenue_musd") + 0.123456789).write_csv(work / "fractions.csv")
    code, out, _ = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "fractions.csv", "--as-of", AS_OF, "--account", "B"
    )
    assert code == 0
    assert (
        out[1]
        == "reason: expand: paying (is_customer = true) and big (revenue_musd ≥ 10 [50.1235]) and seats ≥ 100 [200]"
    )
    assert "   │  └─ ✓ revenue_musd ≥ 10   [revenue_musd = 50.1235]" in out


def test_explain_shows_null_values_and_false_predicates_on_them(work, capsys):
    code, out, _ = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "accounts.csv", "--as-of", AS_OF, "--account", "C"
    )
    assert code == 0
    assert out[0] == "account C as of 2026-10-31 (acme 1.2.0): unassigned"
    assert "      └─ ✗ revenue_musd ≥ 10   [revenue_musd = null]" in out


@pytest.mark.parametrize("given", ["5", "5.0", "05"])
def test_explain_finds_an_integer_key_however_the_csv_or_the_option_writes_it(work, capsys, given):
    # categorize reads '5.0' in an integer key column as account 5; explain must find the same account.
    write_org(work, "numbered", "format: kare/v1\norganization: numbered\nversion: 1.0.0\ninputs:\n"
              "  id: {type: integer, key: true}\n  seats: {type: integer}\n"
              "profiles:\n  keep: {when: {seats: {gt: 1}}}\n")  # fmt: skip
    (work / "numbered.csv").write_text("id,seats\n4,1\n5.0,3\n")
    code, out, err = run(
        capsys, "explain", "--rules", "rules/numbered", "--input", "numbered.csv", "--as-of", AS_OF, "--account", given
    )
    assert (code, err) == (0, [])
    assert out[0] == f"account 5 as of {AS_OF} (numbered 1.0.0): keep"


def test_explain_an_account_that_is_no_number_for_an_integer_key_says_the_key_is_a_number(work, capsys):
    # 'C-5' for an integer key said only that it is not in the input, as if a typo of the id.
    write_org(work, "numbered", "format: kare/v1\norganization: numbered\nversion: 1.0.0\ninputs:\n"
              "  id: {type: integer, key: true}\n  seats: {type: integer}\n"
              "profiles:\n  keep: {when: {seats: {gt: 1}}}\n")  # fmt: skip
    (work / "numbered.csv").write_text("id,seats\n4,1\n5,3\n")
    argv = ["explain", "--rules", "rules/numbered", "--input", "numbered.csv", "--as-of", AS_OF, "--account"]
    code, out, err = run(capsys, *argv, "C-5")
    assert (code, out) == (1, [])
    assert err == [
        "kare explain: account 'C-5' is not in the input (key column 'id'); id is an integer key: give the "
        "account's number"
    ]
    assert run(capsys, *argv, "6")[2] == ["kare explain: account '6' is not in the input (key column 'id')"]


def test_explain_matches_a_string_key_exactly_as_validation_and_categorize_do(work, capsys):
    # ' D' and 'D' are two accounts to validation and categorize; explain must not mix their rows.
    spaced = ACCOUNTS.with_columns(
        pl.when(pl.col("account_id") == "A").then(pl.lit(" D")).otherwise(pl.col("account_id")).alias("account_id")
    )
    spaced.write_csv(work / "spaced.csv")
    assert run(capsys, "categorize", "--rules", "rules/acme", "--input", "spaced.csv", "--as-of", AS_OF,
               "--output", "r.csv")[0] == 0  # fmt: skip
    categories = dict(pl.read_csv(work / "r.csv").select("account_id", "category").iter_rows())
    assert categories[" D"] != categories["D"]
    argv = ["explain", "--rules", "rules/acme", "--input", "spaced.csv", "--as-of", AS_OF, "--account"]
    code, out, _ = run(capsys, *argv, "D")
    assert (code, out[0]) == (0, f"account D as of 2026-10-31 (acme 1.2.0): {categories['D']}")
    code, out, _ = run(capsys, *argv, " D")
    assert (code, out[0]) == (0, f"account ' D' as of 2026-10-31 (acme 1.2.0): {categories[' D']}")
    code, out, err = run(capsys, *argv, "D ")
    assert (code, out) == (1, [])
    assert err == [
        "kare explain: account 'D ' is not in the input (key column 'account_id'); keys match exactly, spaces "
        "included, and the input has ' D', 'D'"
    ]
    code, out, err = run(capsys, *argv, "d")
    assert (code, out) == (1, [])
    assert err == [
        "kare explain: account 'd' is not in the input (key column 'account_id'); keys match exactly, spaces and "
        "case included, and the input has ' D', 'D'"
    ]
    # an id typed without the leading zeros the data keeps ('00123' read as text): found, not "not in the input"
    zeroed = ACCOUNTS.with_columns(
        pl.when(pl.col("account_id") == "A").then(pl.lit("00123")).otherwise(pl.col("account_id")).alias("account_id")
    )
    zeroed.write_csv(work / "zeroed.csv")
    argv[argv.index("spaced.csv")] = "zeroed.csv"
    assert run(capsys, *argv, "123")[2] == [
        "kare explain: account '123' is not in the input (key column 'account_id'); keys match exactly, spaces and "
        "leading zeros included, and the input has '00123'"
    ]


def test_explain_an_unknown_account_is_one_clear_line_and_exit_1(work, capsys):
    code, out, err = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF,
        "--account", "NOPE",
    )  # fmt: skip
    assert code == 1
    assert out == []
    assert err == ["kare explain: account 'NOPE' is not in the input (key column 'account_id')"]


def test_explain_a_bad_as_of_is_a_usage_error(work, capsys):
    code, _, err = run(
        capsys, "explain", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", "31/10/2026",
        "--account", "A",
    )  # fmt: skip
    assert code == 2
    assert err[-1] == (
        "kare explain: error: argument --as-of: '31/10/2026' is not a date; write YYYY-MM-DD, e.g. 2026-11-01"
    )


# ---- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], ["validate", "test", "schema", "categorize", "explain", "Exit codes: 0 success"]),
        (["validate"], ["PATH", "rule files or directories"]),
        (["test"], ["PATH", "--verbose"]),
        (["schema"], ["usage: kare schema", "Print the JSON Schema of the rule file"]),
        (
            ["categorize"],
            [
                "--rules",
                "--input",
                "--as-of",
                "--output",
                "--no-explain",
                ".parquet or .csv",
                "(watches)",
                "kare.account_values",
            ],
        ),  # what --edges adds; previous values of a run
        (
            ["explain"],
            ["--rules", "--input", "--as-of", "--account", "✓", "kare.account_values", "next move", "watches"],
        ),  # the early warning it prints before the tree
        (["demo"], ["--sample", "written by kare sample", "what make run does"]),
    ],
    ids=["kare", "validate", "test", "schema", "categorize", "explain", "demo"],
)
def test_help_exits_0_and_mentions_the_options(capsys, argv, mentions):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in mentions:
        assert word in text


@pytest.mark.parametrize("command", ["categorize", "explain", "run", "diff"])
def test_help_of_a_command_that_reads_accounts_says_what_a_source_can_be(capsys, command):
    # An installed package has no README: --help itself names the forms of --input (it said "see README").
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "'duckdb:PATH.duckdb:TABLE'" in text and "'sql:URL::QUERY'" in text and "globs allowed" in text
    assert "README" not in text
    # and the tab-separated form, which it left out (a .tsv export looked unsupported)
    assert ".csv or tab- separated .tsv path" in text or ".csv or tab-separated .tsv path" in text


# ---- the installed console script ---------------------------------------------------------------


def _kare(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KARE), *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_kare_script_exit_codes_are_0_1_and_2(work):
    ok = _kare(work, "validate")
    assert (ok.returncode, ok.stdout) == (0, "1 valid, 0 invalid\n")

    write_org(work, "broken", b"\x89PNG\r\n\x1a\n\x00\x00")
    bad = _kare(work, "validate", "rules")
    assert bad.returncode == 1
    assert bad.stdout == "rules/broken/kare.yaml:1:1: this is a binary file, not YAML text\n1 valid, 1 invalid\n"
    assert "Traceback" not in bad.stderr

    usage = _kare(work, "validate", "--bogus")
    assert usage.returncode == 2
    assert "unrecognized arguments: --bogus" in usage.stderr
    assert "Traceback" not in usage.stderr


def test_the_kare_script_test_command_ends_with_the_summary(work):
    write_org(work, "acme", RULES.replace("expect: keep", "expect: expand"))
    done = _kare(work, "test", "rules/acme/kare.yaml")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "1 passed, 1 failed"
    assert "     expected: expand\n     got:      keep\n" in done.stdout
    assert done.stderr == ""


def test_test_a_failure_in_a_tests_file_names_that_file_and_line(work, capsys):
    extra = work / "rules" / "acme" / "tests" / "more.yaml"
    extra.parent.mkdir()
    extra.write_text(
        "tests:\n  - name: wrongly expected\n    account: {account_id: X, is_customer: false, seats: 10}\n"
        "    as_of: 2026-11-01\n    expect: recapture\n",
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "test", "rules")
    assert code == 1
    assert out[0] == "FAIL rules/acme/tests/more.yaml:2 wrongly expected"
    assert out[-1] == "2 passed, 1 failed"


def test_a_closed_pipe_ends_quietly_without_a_traceback(work):
    # The reader is gone before kare writes a byte (as with `kare schema | head -0`).
    kare = Path(sys.executable).with_name("kare")
    proc = subprocess.Popen([str(kare), "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=work)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


@pytest.mark.parametrize("trusted", [[], ["--trusted"]])
def test_categorize_in_duckdb_gives_the_polars_categories(work, capsys, trusted):
    argv = ["categorize", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF]
    code, out, err = run(capsys, *argv, "--output", "d.parquet", "--engine", "duckdb", *trusted)
    assert code == 0, err
    assert out[0].endswith("(input trusted, not validated)") == bool(trusted)
    result = pl.read_parquet(work / "d.parquet")
    assert result.columns == ["account_id", "category", "matched_rule"]
    got = {r["account_id"]: (r["category"], r["matched_rule"]) for r in result.iter_rows(named=True)}
    assert got == {k: v[:2] for k, v in EXPECTED.items()}


def test_categorize_trusted_needs_the_duckdb_engine(work, capsys):
    argv = ["categorize", "--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF]
    code, _, err = run(capsys, *argv, "--output", "t.parquet", "--trusted")
    assert code == 2
    assert "--trusted goes with --engine duckdb" in err[0]
    assert not (work / "t.parquet").exists()


def test_explain_refuses_an_account_whose_row_would_be_quarantined(work, capsys):
    dirty = pl.when(pl.col("account_id") == "B").then(-5).otherwise(pl.col("seats")).alias("seats")
    ACCOUNTS.with_columns(dirty).write_csv(work / "dirty.csv")
    argv = ["explain", "--rules", "rules/acme", "--input", "dirty.csv", "--as-of", AS_OF, "--account"]
    code, out, err = run(capsys, *argv, "B")
    assert code == 1 and out == []
    assert err == [
        "account B is not categorized: its input fails validation and would be quarantined",
        "  row 2: seats: -5 is below the minimum 0",
    ]
    code, out, _ = run(capsys, *argv, "F")
    assert code == 0 and out[0] == "account F as of 2026-10-31 (acme 1.2.0): keep"
    # A key given twice: each row is named by its place in the input, as in the quarantine file, so the two
    # lines are not the same line twice.
    pl.concat([ACCOUNTS, ACCOUNTS.filter(pl.col("account_id") == "C")]).write_csv(work / "twice.csv")
    argv[4] = "twice.csv"
    code, out, err = run(capsys, *argv, "C")
    assert code == 1 and out == []
    assert err == [
        "account C is not categorized: its input fails validation and would be quarantined",
        "  row 3: account_id: C appears more than once (the key must be unique)",
        "  row 7: account_id: C appears more than once (the key must be unique)",
    ]


def test_diff_with_a_missing_rule_file_is_a_usage_error(work, capsys):
    argv = ["diff", "--before", "nope.yaml", "--after", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err == [
        "kare diff: --before nope.yaml: no such file or directory; give a rule file (kare.yaml) or its directory"
    ]


def test_version_prints_the_installed_version_in_kare_and_python_m_kare_rules(capsys):
    from importlib.metadata import version

    assert run(capsys, "--version") == (0, [f"kare {version('kare-rules')}"], [])
    done = subprocess.run([sys.executable, "-m", "kare_rules", "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f"kare {version('kare-rules')}", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["categorize", "--rules", "rules/acme", "--input", "accounts.csv", "--ouput", "r.csv"],
         "kare categorize: error: unrecognized arguments: --ouput; did you mean --output?"),
        (["compile", "--rules", "rules/acme", "--dialect", "duckdb", "--table", "t", "extra"],
         "kare compile: error: unrecognized arguments: extra; see kare compile --help"),
        (["categorise", "--rules", "rules/acme"],
         "kare: error: unknown command 'categorise'; did you mean categorize?"),
        (["run", "--org", "acme", "--all-orgs"],
         "kare run: error: argument --all-orgs: not allowed with argument --org"),
        (["diff", "--before", "rules", "--after", "rules/acme"],
         "kare diff: --before rules: no kare.yaml in this directory; give one organization's directory"),
        (["sample", "--rules-dir", "nope", "--out", "s"],
         "kare sample: --rules-dir nope does not exist; give the folder"),
        (["sample", "--rules-dir", "empty", "--out", "s"], "kare sample: no rule files (<org>/kare.yaml) in empty/"),
        (["run", "--org", "acme", "--warehouse", "empty"],
         "kare run: the warehouse empty is a folder; give a DuckDB file, e.g. empty/warehouse.duckdb"),
        (["demo", "--sample", "empty", "--warehouse", "empty"], "kare demo: the warehouse empty is a folder"),
    ],
    ids=["misspelt-option", "extra-argument", "misspelt-command", "org-and-all-orgs", "diff-folder",
         "sample-missing-rules-dir", "sample-empty-rules-dir", "run-warehouse-folder", "demo-warehouse-folder"],
)  # fmt: skip
def test_usage_mistakes_say_what_is_wrong_in_the_commands_own_words_exit_2_and_write_nothing(
    work, capsys, argv, message
):
    (work / "empty").mkdir()
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, [])
    assert err[-1].startswith(message), err
    assert not any(line.startswith("Traceback") for line in err)
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # no sample, warehouse or .lock file


def test_every_command_help_ends_with_examples_that_use_its_real_options(capsys):
    # A newcomer learns kare from --help alone: each command shows how it is called, and every example parses.
    import shlex

    from kare_rules.cli.parser import EXAMPLES, build_parser

    commands = build_parser().get_default("subparsers")
    assert sorted(EXAMPLES) == sorted(commands)
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert f"examples:\n{EXAMPLES[command]}\n" in text  # kept line by line, not rewrapped
        for line in EXAMPLES[command].splitlines():
            for call in line.split("&&"):
                words = shlex.split(call.split(">")[0].strip().split("   ")[0])  # without the comment after it
                assert words[0] == "kare", line
                build_parser().parse_args(words[1:])  # exits 2 on an option that does not exist


def test_a_previous_file_the_rules_have_no_trends_for_is_said_not_read(work, capsys):
    # A misspelt --previous path was taken in silence: the rules without trends never read it.
    argv = ["--rules", "rules/acme", "--input", "accounts.parquet", "--as-of", AS_OF, "--previous", "nope.parquet"]
    code, _, err = run(capsys, "categorize", *argv, "--output", "r.csv")
    assert code == 0
    assert err == ["note: --previous nope.parquet was not read: the rules have no trends (change_of, pct_change_of)"]
