"""The argument parser of every command: each option says what it does and its default."""

from __future__ import annotations

import argparse

from kare_rules.cli.common import (
    count_arg,
    date_arg,
    seconds_arg,
    share_arg,
)
from kare_rules.sources import SOURCE_HELP

MAX_HORIZON_DAYS = 3650  # ten years: further ahead a date move says nothing a user can act on


# Shown under each command's --help as written (a newcomer has the installed package, not the docs).
EXAMPLES = {
    "validate": """\
  kare validate                      every rules/<org>/kare.yaml under the current folder
  kare validate rules/acme           one organization (its folder or its kare.yaml)""",
    "test": """\
  kare test -v rules/acme
  kare test --require-tests --format junit > kare-tests.xml""",
    "schema": """\
  kare schema > schemas/kare-rules.v1.schema.json
  kare schema --table account_categories""",
    "init": """\
  kare init acme --from exports/accounts.csv
  kare validate rules/acme && kare test rules/acme""",
    "categorize": """\
  kare categorize --rules rules/acme --input accounts.parquet --as-of 2026-11-01 --output categories.parquet
  kare categorize --rules rules/acme --input 'exports/*.csv' --output categories.csv --edges --horizon 90""",
    "explain": """\
  kare explain --rules rules/acme --input accounts.parquet --as-of 2026-11-01 --account A-1042""",
    "compile": """\
  kare compile --rules rules/acme --dialect snowflake --table analytics.crm.accounts --as-of 2026-11-01 > acme.sql""",
    "diff": """\
  kare diff --before old/acme/kare.yaml --after rules/acme --input accounts.parquet --as-of 2026-11-01
  kare diff --base origin/main --input 'extracts/{org}/latest.parquet' --output diff.md""",
    "run": """\
  kare run --org acme --input accounts.parquet --as-of 2026-11-01
  kare run --all-orgs --as-of 2026-11-01 --input 'extracts/{org}/{as_of}.parquet' --warehouse data/warehouse.duckdb""",
    "sample": """\
  kare sample --accounts 1000 --months 3 && kare demo""",
    "demo": """\
  kare sample --out /tmp/sample && kare demo --sample /tmp/sample --warehouse /tmp/warehouse.duckdb""",
}


class _ExamplesFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps the lines of an 'examples:' epilog as they are written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def horizon_arg(text: str) -> int:
    """--horizon: whole days, 1 .. MAX_HORIZON_DAYS."""
    try:
        days = int(text.strip())
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_HORIZON_DAYS:
        raise argparse.ArgumentTypeError(
            f"--horizon takes a whole number of days from 1 to {MAX_HORIZON_DAYS}, e.g. 30; got {text!r}"
        )
    return days


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kare",
        description="KARE account profiles as code: validate and test rule files, categorize accounts, "
        "explain a category, compile rules to SQL, show a rule change's impact, run the pipeline.",
        epilog="Exit codes: 0 success, 1 invalid rules / failed tests / failed run, 2 usage error. "
        "Docs: README.md and docs/ of the kare-rules repository (not installed with the package); "
        "'kare COMMAND --help' for each command.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    p.set_defaults(subparsers=sub.choices)  # main() reports a misspelt option with the command's own usage

    s = sub.add_parser(
        "validate",
        help="check rule files against the schema and semantically",
        description="Check rule files: one line PATH:LINE:COL: message per problem, all at once.",
    )
    s.add_argument("paths", nargs="*", metavar="PATH", help="rule files or directories (default: rules/)")

    s = sub.add_parser(
        "test",
        help="run the embedded tests of rule files",
        description="Run each rule file's embedded tests; the last line is 'N passed, M failed'.",
    )
    s.add_argument("paths", nargs="*", metavar="PATH", help="rule files or directories (default: rules/)")
    s.add_argument("-v", "--verbose", action="store_true", help="list passing tests too (text format)")
    s.add_argument(
        "--format",
        choices=["text", "json", "junit"],
        default="text",
        help="text (closing line 'N passed, M failed'), json, or junit (JUnit XML for CI systems: a testsuite "
        "per rule file, a testcase per test) (default: %(default)s)",
    )
    s.add_argument(
        "--require-tests", action="store_true", help="fail a rule file that has no tests (by default it only says so)"
    )

    s = sub.add_parser(
        "schema",
        help="print the rule file JSON Schema (format v1), or a warehouse table's contract",
        description="Print the JSON Schema of the rule file (format v1) that kare validate checks first; point an "
        "editor at it for completion (docs/rule-format.md, 'Editor setup'). With --table, the contract of a "
        "published table instead: its columns, types, key and never-null columns (docs/bi.md).",
    )
    s.add_argument(
        "--table",
        metavar="TABLE",
        help="a table of schema kare: account_categories, category_history, category_transitions, action_queue, "
        "quarantine, runs, rule_versions or account_values",
    )

    s = sub.add_parser(
        "init",
        help="scaffold rules/ORG/kare.yaml from a CSV or Parquet file of accounts",
        description="Write a first rule file for ORG from sample account data: inputs with inferred types, "
        "nullability, min and allowed values, the key column guessed (marked REVIEW), commented example "
        "categories and one test per category to fill in. It validates once profiles.keep.when is filled in.",
    )
    s.add_argument("org", metavar="ORG", help="the organization: lowercase letters, digits and '-'")
    s.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help="sample accounts: a .csv, .tsv or .parquet file"
    )
    s.add_argument(
        "--rules-dir", default="rules", metavar="DIR", help="where ORG/kare.yaml is written (default: %(default)s)"
    )
    s.add_argument("--force", action="store_true", help="overwrite an existing rule file")
    s.add_argument(
        "--as-of", type=date_arg, metavar="DATE", help="the date of the scaffolded tests, YYYY-MM-DD (default: today)"
    )

    s = sub.add_parser(
        "categorize",
        help="categorize accounts from a file",
        description="Validate, categorize and write one row per account with its category, "
        "matched rule, reason and overlaps. Invalid rows go to OUTPUT's .quarantine twin.",
    )
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument("--input", required=True, metavar="SOURCE", help=f"accounts: {SOURCE_HELP}")
    s.add_argument(
        "--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD for derived values (default: today)"
    )
    s.add_argument("--output", required=True, metavar="FILE", help="result file, .parquet or .csv")
    s.add_argument(
        "--engine",
        choices=["polars", "duckdb"],
        default="polars",
        help="where the rules run: polars, or duckdb (compiled to SQL, no explanations) (default: %(default)s)",
    )
    s.add_argument("--no-explain", action="store_true", help="skip reason and overlaps (faster)")
    s.add_argument(
        "--edges",
        action="store_true",
        help="add the early warning: next_category and next_move_on (the first change within --horizon days with "
        "the data unchanged) and the nearest single-value change (edge_category, edge_column, edge_value, "
        "edge_threshold, edge_change) and the watches of the rule file that hold (watches); Polars engine only",
    )
    s.add_argument(
        "--horizon",
        type=horizon_arg,
        default=366,
        metavar="DAYS",
        help="with --edges: how many days after --as-of next_move_on looks (default: %(default)s)",
    )
    s.add_argument(
        "--trusted",
        action="store_true",
        help="with --engine duckdb: skip validation and let DuckDB read a Parquet file/glob or duckdb:PATH:TABLE "
        "itself, so the accounts never load into Python (column types must already match inputs:)",
    )
    _previous_option(s)

    s = sub.add_parser(
        "explain",
        help="show the whole evaluation tree of one account, and its next move",
        description="Evaluate every category's condition for one account and print each node, "
        "true (✓) or false (✗), with the values it saw. Before the tree: the account's category and reason, "
        "its next move with the data unchanged (next_move_on, within 366 days) and the nearest change of one "
        "value that would move it, and the watches of the rule file that hold for it.",
    )
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument("--input", required=True, metavar="SOURCE", help=f"accounts: {SOURCE_HELP}")
    s.add_argument("--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD (default: today)")
    s.add_argument("--account", required=True, metavar="ID", help="the account's key value")
    _previous_option(s)

    s = sub.add_parser(
        "compile",
        help="print the rules as one SQL SELECT for a warehouse",
        description="Compile the rules to one SQL SELECT over TABLE that returns the key column, category and "
        "matched_rule, with the Polars engine's semantics. Identifiers and values are quoted for the dialect; "
        "derived values are relative to --as-of. See docs/warehouse.md.",
    )
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument(
        "--dialect",
        required=True,
        choices=["duckdb", "postgres", "snowflake", "bigquery", "spark"],
        help="the SQL dialect of the warehouse",
    )
    s.add_argument(
        "--table", required=True, metavar="NAME", help="the account table: TABLE, SCHEMA.TABLE or CATALOG.SCHEMA.TABLE"
    )
    s.add_argument(
        "--previous-table",
        metavar="NAME",
        help="the previous run's values for the trends (change_of, pct_change_of): a table with the key column "
        "and the trend columns, one row per account (e.g. last run's extract of --table), LEFT JOINed on the "
        "key; without it every trend is null",
    )
    s.add_argument(
        "--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD for derived values (default: today)"
    )

    s = sub.add_parser(
        "diff",
        help="show what a rule change means and does to accounts (for a pull request)",
        description="Compare two versions of rules as trees: the change in plain words, category counts "
        "before/after, the accounts that move and why, the embedded tests, and the version rule "
        "(every semantic change bumps the version; removing a category or an input bumps MAJOR). "
        "Exit 1 when a version check fails.",
    )
    s.add_argument("--before", metavar="PATH", help="the old rule file")
    s.add_argument("--after", metavar="PATH", help="the new rule file")
    s.add_argument(
        "--base",
        metavar="GITREF",
        help="compare every org whose rule, test or overrides files differ from this git ref",
    )
    s.add_argument("--rules-dir", default="rules", metavar="DIR", help="with --base: the rules directory (rules/)")
    s.add_argument(
        "--input",
        metavar="SOURCE",
        help="accounts to measure the impact on; '{org}' in it becomes each org's name and '{as_of}' the --as-of date; "
        + SOURCE_HELP,
    )
    s.add_argument(
        "--as-of",
        type=date_arg,
        metavar="DATE",
        help="run date YYYY-MM-DD (required with --before/--after and --input; with --base, default: today)",
    )
    s.add_argument("--format", choices=["markdown", "json"], default="markdown", help="report format (markdown)")
    s.add_argument(
        "--limit",
        type=count_arg(0),
        default=20,
        metavar="N",
        help="moved accounts listed, and accounts brought within 30 days of a move (default 20; totals always shown)",
    )
    s.add_argument("--output", metavar="FILE", help="write the report here instead of to stdout")

    s = sub.add_parser(
        "run",
        help="run one organization (or all) as of a date and publish to the warehouse",
        description="Read the source, validate (Pandera), categorize, update history and action queues, check "
        "quality, and publish only the changes, in one transaction. Large organizations are processed in slices "
        "of accounts chosen from the memory budget. Ends with a summary of what changed and the checks.",
    )
    which = s.add_mutually_exclusive_group()
    which.add_argument("--org", help="the organization (a directory under --rules-dir)")
    which.add_argument("--all-orgs", action="store_true",
                       help="run every organization in --rules-dir, one after another")  # fmt: skip
    s.add_argument("--rules-dir", metavar="DIR",
                   help="where <org>/kare.yaml live (default: $KARE_RULES_DIR, else rules)")  # fmt: skip
    s.add_argument(
        "--input", metavar="SOURCE",
        help="accounts; {org} and {as_of} are filled in (default: $KARE_INPUT, else "
        f"data/sample/{{org}}/latest.parquet); {SOURCE_HELP}",
    )  # fmt: skip
    s.add_argument("--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD (default: $KARE_AS_OF, else "
                   "today)")  # fmt: skip
    s.add_argument("--warehouse", metavar="PATH",
                   help="DuckDB file (default: $KARE_WAREHOUSE, else data/warehouse.duckdb)")  # fmt: skip
    s.add_argument("--max-quarantine-share", type=share_arg, default=0.2, metavar="SHARE",
                   help="publish nothing when more than this share of input rows is invalid "
                   "(default: %(default)s)")  # fmt: skip
    s.add_argument("--max-removed-share", type=share_arg, default=0.5, metavar="SHARE",
                   help="publish nothing when the run would remove more than this share of the current accounts "
                   "(accounts missing from the input; default: %(default)s)")  # fmt: skip
    s.add_argument("--allow-empty-input", action="store_true",
                   help="publish an input with no rows (every account removed: with --max-removed-share 1 when "
                   "there are current accounts); refused otherwise")  # fmt: skip
    s.add_argument("--wait", type=seconds_arg, default=300.0, metavar="SECONDS",
                   help="how long to wait for another kare run, or a reader holding the DuckDB file, "
                   "before failing (default: %(default)s)")  # fmt: skip
    s.add_argument(
        "--engine", choices=["polars", "duckdb"], default="polars",
        help="where the rules run: polars (with reasons and overlaps) or duckdb (compiled SQL; reason left empty, "
        "use kare explain for one account; default: %(default)s)",
    )  # fmt: skip
    s.add_argument("--memory-budget", metavar="SIZE",
                   help="memory the run may use, like 4GiB; it picks its number of slices of accounts from it "
                   "(default: an eighth of the machine's memory)")  # fmt: skip
    s.add_argument("--buckets", type=count_arg(1, 10_000), metavar="N",
                   help="process exactly N slices of accounts instead of choosing from --memory-budget")  # fmt: skip

    s = sub.add_parser(
        "sample",
        help="write deterministic sample snapshots for the organizations in rules/",
        description="Synthetic monthly account snapshots drawn around each rule file's own thresholds.",
    )
    s.add_argument(
        "--out", default="data/sample", metavar="DIR", help="where ORG/DATE.parquet files go (default: %(default)s)"
    )
    s.add_argument(
        "--rules-dir", default="rules", metavar="DIR", help="the organizations' rule files (default: %(default)s)"
    )
    s.add_argument(
        "--accounts", type=count_arg(1, 100_000_000), default=5000, metavar="N",
        help="accounts in the first snapshot (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--months", type=count_arg(1, 1200), default=6, metavar="M",
        help="number of monthly snapshots (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--last", type=date_arg, default="2026-10-31", metavar="DATE",
        help="month of the last snapshot (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed gives the same data (default: %(default)s)"
    )

    s = sub.add_parser(
        "demo",
        help="run every organization over every snapshot of a sample (what make run does)",
        description="Run kare run for each organization of a sample written by kare sample, over its snapshots "
        "oldest first (dates already published are skipped), into one warehouse: what make run does.",
    )
    s.add_argument(
        "--sample", default="data/sample", metavar="DIR", help="snapshots written by kare sample (default: %(default)s)"
    )
    s.add_argument(
        "--rules-dir", default="rules", metavar="DIR", help="the organizations' rule files (default: %(default)s)"
    )
    s.add_argument(
        "--warehouse", default="data/warehouse.duckdb", metavar="PATH", help="DuckDB file (default: %(default)s)"
    )
    for name, examples in EXAMPLES.items():
        sub.choices[name].epilog = f"examples:\n{examples}"
        sub.choices[name].formatter_class = _ExamplesFormatter
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kare-rules")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _previous_option(s: argparse.ArgumentParser) -> None:
    """`--previous`, shared by categorize and explain."""
    s.add_argument(
        "--previous",
        metavar="SOURCE",
        help="the accounts' values in the previous run, for the trends (change_of, pct_change_of): a .parquet or "
        ".csv path (or a source) with the key column and the trend columns, e.g. last run's extract when none of its "
        "rows was quarantined, or what kare run kept (kare.account_values, through a sql: source; see "
        "docs/rule-format.md); without it every trend is null, as for a new account",
    )
