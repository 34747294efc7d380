"""The `kare` command line: validate, test, categorize, explain, compile, diff, run. Errors for people."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from kare_rules.errors import KareError, RuleFileError, UsageError, display_path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def out(text: str = "") -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- rule commands ------------------------------------------------------------------------------


@command
def cmd_validate(args: argparse.Namespace) -> int:
    from kare_rules.loader import check_rules, organization_problems

    files = _rule_files(args.paths)
    bad = 0
    # A rules directory's own problems (two organizations sharing one rule file) come from no one file.
    shared = {p for d in (args.paths or ["rules"]) if Path(d).is_dir() for p in organization_problems(d)}
    for path in files:
        _, problems = check_rules(path)
        problems = sorted(set(problems) | {p for p in shared if Path(p.path) == Path(display_path(path))})
        for p in problems:
            out(str(p))
        bad += bool(problems)
    out(f"{len(files) - bad} valid, {bad} invalid")
    return EXIT_FAIL if bad else EXIT_OK


@command
def cmd_test(args: argparse.Namespace) -> int:
    from kare_rules.loader import check_rules
    from kare_rules.testing import run_rule_tests

    passed = failed = 0
    for path in _rule_files(args.paths):
        rules, problems = check_rules(path)
        if problems:
            for p in problems:
                out(str(p))
            out(f"{path}: the rule file is invalid, its tests were not run")
            failed += 1
            continue
        for r in run_rule_tests(rules):
            where = f"{r.test.path or rules.path}:{r.test.line}"
            if r.passed:
                passed += 1
                if args.verbose:
                    out(f"PASS {where} {r.test.name}")
            else:
                failed += 1
                out(
                    f"FAIL {where} {r.test.name}\n     expected: {r.test.expect}\n     got:      {r.got}\n"
                    f"     reason:   {r.reason}"
                )
    out(f"{passed} passed, {failed} failed")
    return EXIT_FAIL if failed else EXIT_OK


@command
def cmd_schema(args: argparse.Namespace) -> int:
    from kare_rules.schema import RULES_SCHEMA

    out(RULES_SCHEMA.read_text(encoding="utf-8").rstrip())
    return EXIT_OK


@command
def cmd_categorize(args: argparse.Namespace) -> int:
    from kare_rules.engine import as_date, categorize, category_counts
    from kare_rules.loader import load_rules
    from kare_rules.sources import read_source, write_frame
    from kare_rules.validation import validate_accounts

    if Path(args.output).suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"cannot write {args.output}: the output must end in .parquet or .csv")
    rules = load_rules(args.rules)
    as_of = as_date(args.as_of)
    if args.trusted:
        if args.engine != "duckdb":
            raise UsageError("--trusted goes with --engine duckdb (the Polars engine reads the input into Python)")
        from kare_rules.compile_sql import categorize_duckdb

        # DuckDB reads a Parquet file or DuckDB table itself: the rows never enter Python, and nothing is validated.
        result = categorize_duckdb(rules, args.input, as_of)
        write_frame(result, args.output)
        out(f"{result.height} accounts categorized in DuckDB with {rules.organization} {rules.version} as of {as_of} "
            f"→ {args.output} (input trusted, not validated)")  # fmt: skip
        out(_table(category_counts(result)))
        return EXIT_OK
    checked = validate_accounts(rules, read_source(args.input).collect())
    if args.engine == "duckdb":
        from kare_rules.compile_sql import categorize_duckdb

        result = categorize_duckdb(rules, checked.valid, as_of)
    else:
        result = categorize(rules, checked.valid, as_of, explain=not args.no_explain)
    write_frame(result, args.output)
    counts = category_counts(result)
    out(f"{result.height} accounts categorized with {rules.organization} {rules.version} as of {as_of} → {args.output}")
    out(_table(counts))
    if checked.quarantine.height:
        q = Path(args.output).with_name(Path(args.output).stem + ".quarantine" + Path(args.output).suffix)
        write_frame(checked.quarantine, q)
        err(f"{checked.quarantine.height} input rows failed validation and were set aside in {q} with their reasons")
    return EXIT_OK


@command
def cmd_explain(args: argparse.Namespace) -> int:
    import polars as pl

    from kare_rules.engine import as_date, categorize, explain_account, render_tree
    from kare_rules.loader import load_rules
    from kare_rules.sources import read_source
    from kare_rules.validation import validate_accounts

    rules = load_rules(args.rules)
    as_of = as_date(args.as_of)
    data = read_source(args.input)
    mine = data.filter(pl.col(rules.key).cast(pl.String).str.strip_chars() == args.account.strip()).collect()
    checked = validate_accounts(rules, mine)
    if checked.quarantine.height:  # as `kare categorize` and `kare run` would: not categorized, set aside
        err(f"account {args.account} is not categorized: its input fails validation and would be quarantined")
        for r in checked.quarantine.iter_rows(named=True):
            err(f"  {'; '.join(r['reasons'])}")
        return EXIT_FAIL
    nodes = explain_account(rules, checked.valid, as_of, args.account)
    result = categorize(rules, checked.valid, as_of)
    out(f"account {args.account} as of {as_of} ({rules.organization} {rules.version}): {result['category'][0]}")
    out(f"reason: {result['reason'][0]}")
    out()
    out("precedence: " + " → ".join(rules.precedence) + " (first that holds wins)")
    for line in render_tree(nodes):
        out(line)
    return EXIT_OK


@command
def cmd_compile(args: argparse.Namespace) -> int:
    from kare_rules.compile_sql import compile_sql
    from kare_rules.engine import as_date
    from kare_rules.loader import load_rules

    rules = load_rules(args.rules)
    # Only the SELECT goes to stdout (no comment header: nothing from the rule file lands in SQL text
    # unquoted), so it pipes straight into psql, duckdb or a CREATE VIEW.
    out(compile_sql(rules, args.dialect, args.table, as_date(args.as_of)))
    return EXIT_OK


@command
def cmd_diff(args: argparse.Namespace) -> int:
    """Rule-change impact for a pull request: exit 1 when a version check fails."""
    import json

    from kare_rules.diff import diff_rules, render_json, render_markdown
    from kare_rules.engine import as_date
    from kare_rules.errors import DataError
    from kare_rules.loader import load_rules
    from kare_rules.sources import read_source

    if args.base and (args.before or args.after):
        raise UsageError("use either --base GITREF or --before PATH --after PATH, not both")
    if args.limit < 0:
        raise UsageError("--limit is a number of accounts, 0 or more")
    if args.base:
        from kare_rules.git_rules import changed_rules

        pairs = changed_rules(args.base, args.rules_dir)
        as_of = as_date(args.as_of)
    else:
        if not (args.before and args.after):
            raise UsageError("give --before PATH and --after PATH (two rule files), or --base GITREF")
        if args.input and not args.as_of:
            raise UsageError("--as-of DATE is required with --before/--after, e.g. --as-of 2026-11-01")
        missing = [p for p in (args.before, args.after) if not Path(p).exists()]
        if missing:
            raise UsageError(
                f"{', '.join(missing)}: no such file or directory; give a rule file (kare.yaml) or its directory"
            )
        before, after = load_rules(args.before), load_rules(args.after)
        if before.organization != after.organization:
            raise UsageError(f"--before is {before.organization} and --after is {after.organization}; compare one org")
        pairs, as_of = [(after.organization, before, after)], as_date(args.as_of) if args.as_of else None
    reports = []
    for org, before, after in pairs:
        accounts, note = None, None
        if args.input:
            try:
                accounts = read_source(args.input.replace("{org}", org)).collect()
                reports.append(diff_rules(before, after, accounts, as_of, args.limit))
                continue
            except DataError as exc:
                if not args.base:
                    raise
                note = f"impact not computed: {exc}"  # one org's input problem must not hide the others
                err(f"kare diff: {org}: {note}")
        report = diff_rules(before, after, None, as_of, args.limit)
        report.impact_note = note or report.impact_note
        reports.append(report)
    if args.format == "json":
        text = json.dumps(render_json(reports, args.base), indent=2, ensure_ascii=False, default=str) + "\n"
    else:
        text = render_markdown(reports, args.base)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        for r in reports:
            out(f"{r.organization}: {len(r.rule_changes)} rule change(s); version check: {r.version_check.message}")
        out(f"report written to {args.output}")
    else:
        sys.stdout.write(text)
    failed = [r for r in reports if not r.version_check.ok]
    for r in failed:
        err(f"kare diff: {r.organization}: {r.version_check.message}")
    return EXIT_FAIL if failed else EXIT_OK


# ---- pipeline commands (the Dagster graph is imported only when they run) -------------------------


@command
def cmd_run(args: argparse.Namespace) -> int:
    """Materialize the asset graph in-process for one or every organization and summarize the run."""

    from kare_rules.loader import find_rule_files, is_safe_org

    buckets = args.buckets
    if buckets < 1:
        raise UsageError(f"--buckets is a number of slices of accounts, 1 or more (got {buckets})")
    if buckets > 1:  # the library computes and publishes bucket by bucket: no Dagster is loaded
        root = Path(args.rules_dir)
        known = sorted({f.parent.name for f in find_rule_files([root]) if f.parent.parent == root})
        known = [o for o in known if is_safe_org(o)]
    else:
        os.environ["KARE_RULES_DIR"] = args.rules_dir  # partitions are read from it when pipelines loads
        from pipelines.kare.partitions import organizations
        from pipelines.run import RunFailed, record_failure, run_org

        known = organizations(Path(args.rules_dir))
    if args.all_orgs:
        orgs = known
    elif args.org:
        if not is_safe_org(args.org):
            raise UsageError(f"{args.org!r} is not an organization name (lowercase letters, digits and '-')")
        if args.org not in known:
            raise UsageError(
                f"no rules for {args.org!r} in {args.rules_dir}/; organizations: {', '.join(known) or 'none'}"
            )
        orgs = [args.org]
    else:
        raise UsageError("name an organization with --org ORG, or run them all with --all-orgs")
    failed = 0
    for org in orgs:
        out(f"{org}: running as of {args.as_of or 'today'} → {args.warehouse}"
            + (f" in {buckets} buckets" if buckets > 1 else ""))  # fmt: skip
        if buckets > 1:
            failed += not _run_bucketed(org, args, buckets)
            continue
        try:
            summary = run_org(
                org, warehouse=args.warehouse, input=args.input, as_of=args.as_of, rules_dir=args.rules_dir,
                staging=args.staging, max_quarantine_share=args.max_quarantine_share, wait=args.wait, report=out,
                engine=args.engine,
            )  # fmt: skip
        except RunFailed as exc:
            failed += 1
            err(f"kare run: {org}: {exc}")
            err("  nothing was published; the warehouse still holds the previous run")
            record_failure(args.warehouse, org, args.as_of, str(exc))
            continue
        for line in run_summary_lines(summary.run, summary.transitions):
            out(line)
    return EXIT_FAIL if failed else EXIT_OK


def _run_bucketed(org: str, args: argparse.Namespace, buckets: int) -> bool:
    """`kare run --buckets N`: one organization's run computed and published N slices of accounts at a
    time by the library, in one transaction. False when it failed: nothing published, failure logged."""
    import contextlib

    import polars as pl

    from kare_rules.engine import as_date
    from kare_rules.loader import load_rules, rule_file_in
    from kare_rules.overrides import OVERRIDES_FILE, load_overrides
    from kare_rules.sources import DEFAULT_INPUT, read_source
    from kare_rules.warehouse import Warehouse, warehouse_lock

    folder = Path(args.rules_dir) / org
    as_of = as_date(args.as_of or os.environ.get("KARE_AS_OF"))
    source = args.input or os.environ.get("KARE_INPUT", DEFAULT_INPUT)
    warehouse = Warehouse(args.warehouse)
    with warehouse_lock(args.warehouse, timeout=args.wait):
        try:
            rules = load_rules(folder)
            raw = read_source(source.replace("{org}", org).replace("{as_of}", as_of.isoformat())).collect()
            run = warehouse.run_bucketed(
                rules, raw, as_of, buckets=buckets, rules_text=rule_file_in(folder).read_text(encoding="utf-8"),
                overrides=load_overrides(folder / OVERRIDES_FILE, rules), engine=args.engine, report=out,
                max_quarantine_share=args.max_quarantine_share,
            )  # fmt: skip
        except Exception as exc:  # as a failing asset step: the message, never a traceback
            message = str(exc) if isinstance(exc, KareError) else f"{type(exc).__name__}: {exc}"
            err(f"kare run: {org}: {message}")
            err("  nothing was published; the warehouse still holds the previous run")
            with contextlib.suppress(KareError):
                warehouse.record_failure({"org": org, "as_of": as_of}, message)
            return False
    moves = warehouse.read("category_transitions", org).filter(pl.col("as_of") == run["as_of"])
    for line in run_summary_lines(run, moves):
        out(line)
    return True


def run_summary_lines(run: dict, moves) -> list[str]:
    import polars as pl

    from kare_rules.model import ALL_CATEGORIES

    status = {"published": "published", "unchanged": "unchanged (same rules and data as the last run)"}
    lines = [
        f"{run['org']} {run['rules_version']} as of {run['as_of']}: {status.get(run['status'], run['status'])} "
        f"(run {run['run_id']})",
        f"  input     {run['input_rows']:,} rows: {run['valid_rows']:,} valid, {run['quarantined_rows']:,} quarantined"
        + (" (see kare.quarantine)" if run["quarantined_rows"] else ""),
        "  category  " + " · ".join(f"{c} {run[c]:,}" for c in ALL_CATEGORIES),
    ]
    real = moves.filter(
        (pl.col("from_category") != pl.col("to_category"))
        & (pl.col("from_category") != "new")
        & (pl.col("to_category") != "removed")
    ).sort("accounts", descending=True)
    top = ", ".join(
        f"{r['from_category']} → {r['to_category']} {r['accounts']:,}" for r in real.head(4).iter_rows(named=True)
    ) + (f", and {real.height - 4} more kinds (kare.category_transitions)" if real.height > 4 else "")
    new = moves.filter(pl.col("from_category") == "new")["accounts"].sum()
    gone = moves.filter(pl.col("to_category") == "removed")["accounts"].sum()
    lines.append(f"  moves     {run['moved']:,} since the last run" + (f" ({top})" if top else "")
                 + f"; {new:,} new, {gone:,} removed")  # fmt: skip
    lines.append(f"  actions   {run['actions_opened']:,} opened, {run['actions_closed']:,} closed")
    return lines


@command
def cmd_sample(args: argparse.Namespace) -> int:
    """Write deterministic monthly snapshots for every organization in the rules directory."""
    from kare_rules.engine import as_date
    from kare_rules.loader import find_rule_files, load_rules
    from kare_rules.synth import month_ends, snapshots

    dates = month_ends(as_date(args.last), args.months)
    for path in find_rule_files([args.rules_dir]):
        rules = load_rules(path)
        folder = Path(args.out) / rules.organization
        folder.mkdir(parents=True, exist_ok=True)
        for day, frame in snapshots(rules, args.accounts, dates, seed=args.seed):
            frame.write_parquet(folder / f"{day}.parquet")
        frame.write_parquet(folder / "latest.parquet")
        out(f"{rules.organization}: {len(dates)} monthly snapshots {dates[0]} … {dates[-1]} "
            f"({args.accounts:,}+ accounts) in {folder}/")  # fmt: skip
    return EXIT_OK


@command
def cmd_demo(args: argparse.Namespace) -> int:
    """Run every organization over every snapshot in a sample directory, oldest first."""
    from kare_rules.warehouse import Warehouse

    sample = Path(args.sample)
    if not sample.is_dir():
        raise UsageError(f"no sample in {sample}/; create one with: kare sample --out {sample}")
    code = EXIT_OK
    for org_dir in sorted(p for p in sample.iterdir() if p.is_dir()):
        dates = sorted(f.stem for f in org_dir.glob("*.parquet") if f.stem != "latest")
        last = Warehouse(args.warehouse).last_run(org_dir.name) if Path(args.warehouse).exists() else None
        if last:
            # Runs move forward: dates already behind the warehouse are kept as they are.
            skipped = [d for d in dates if d < last["as_of"].isoformat()]
            if skipped:
                out(f"{org_dir.name}: {len(skipped)} snapshot(s) up to {skipped[-1]} already published, skipped")
            dates = [d for d in dates if d not in skipped]
        for day in dates:
            # Through the parser, so every option of `kare run` has its default here too.
            ns = build_parser().parse_args([
                "run", "--org", org_dir.name, "--rules-dir", args.rules_dir, "--as-of", day,
                "--input", str(org_dir / "{as_of}.parquet"), "--warehouse", args.warehouse, "--wait", "30",
                *(["--staging", args.staging] if args.staging else []),
            ])  # fmt: skip
            code = max(code, cmd_run(ns))
    out(f"\nwarehouse: {args.warehouse} (schema kare). Try:\n"
        f"  duckdb {args.warehouse} \"SELECT org, category, count(*) FROM kare.account_categories GROUP BY ALL\"\n"
        "  or see docs/bi.md for dashboard queries")  # fmt: skip
    return code


def _rule_files(paths: list[str]) -> list[Path]:
    from kare_rules.loader import find_rule_files

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such file or directory; give rule files or directories")
    files = find_rule_files(paths or ["rules"])
    if not files:
        raise UsageError(f"no rule files (*/kare.yaml) found in {', '.join(paths or ['rules'])}")
    return files


def _date_arg(text: str):
    """--as-of as a date; a malformed date is a usage error (exit 2), caught before any work is done."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-11-01") from None


def _table(df) -> str:
    """A small frame as an aligned plain-text table."""
    cols = df.columns
    rows = [[str(v) for v in r] for r in df.iter_rows()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(cols), *(line(r) for r in rows)])


# ---- the parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kare",
        description="KARE account profiles as code: validate and test rule files, categorize accounts, "
        "explain a category, compile rules to SQL, show a rule change's impact, run the pipeline.",
        epilog="Exit codes: 0 success, 1 invalid rules / failed tests / failed run, 2 usage error. "
        "Docs: README.md and docs/.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

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
    s.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")

    sub.add_parser("schema", help="print the rule file JSON Schema (format v1)")

    s = sub.add_parser(
        "categorize",
        help="categorize accounts from a file",
        description="Validate, categorize and write one row per account with its category, "
        "matched rule, reason and overlaps. Invalid rows go to OUTPUT's .quarantine twin.",
    )
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument("--input", required=True, metavar="SOURCE", help="accounts: .parquet or .csv path, or a source")
    s.add_argument(
        "--as-of", type=_date_arg, metavar="DATE", help="run date YYYY-MM-DD for derived values (default: today)"
    )
    s.add_argument("--output", required=True, metavar="FILE", help="result file, .parquet or .csv")
    s.add_argument(
        "--engine",
        choices=["polars", "duckdb"],
        default="polars",
        help="where the rules run (duckdb: compiled to SQL, no explanations)",
    )
    s.add_argument("--no-explain", action="store_true", help="skip reason and overlaps (faster)")
    s.add_argument(
        "--trusted",
        action="store_true",
        help="with --engine duckdb: skip validation and let DuckDB read a Parquet file/glob or duckdb:PATH:TABLE "
        "itself, so the accounts never load into Python (column types must already match inputs:)",
    )

    s = sub.add_parser(
        "explain",
        help="show the whole evaluation tree of one account",
        description="Evaluate every category's condition for one account and print each node, "
        "true (✓) or false (✗), with the values it saw.",
    )
    s.add_argument("--rules", required=True, metavar="FILE")
    s.add_argument("--input", required=True, metavar="SOURCE")
    s.add_argument("--as-of", type=_date_arg, metavar="DATE", help="run date YYYY-MM-DD (default: today)")
    s.add_argument("--account", required=True, metavar="ID", help="the account's key value")

    s = sub.add_parser(
        "compile",
        help="print the rules as one SQL SELECT for a warehouse",
        description="Compile the rules to one SQL SELECT over TABLE that returns the key column, category and "
        "matched_rule, with the Polars engine's semantics. Identifiers and values are quoted for the dialect; "
        "derived values are relative to --as-of. See docs/warehouse.md.",
    )
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument("--dialect", required=True, choices=["duckdb", "postgres", "snowflake", "bigquery", "spark"])
    s.add_argument("--table", required=True, metavar="NAME", help="the account table: TABLE or SCHEMA.TABLE")
    s.add_argument("--as-of", metavar="DATE", help="run date YYYY-MM-DD for derived values (default: today)")

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
    s.add_argument("--base", metavar="GITREF", help="compare every org whose rule files differ from this git ref")
    s.add_argument("--rules-dir", default="rules", metavar="DIR", help="with --base: the rules directory (rules/)")
    s.add_argument(
        "--input", metavar="SOURCE", help="accounts to measure the impact on; '{org}' in it becomes each org's name"
    )
    s.add_argument("--as-of", metavar="DATE", help="run date YYYY-MM-DD (required with --before/--after and --input)")
    s.add_argument("--format", choices=["markdown", "json"], default="markdown", help="report format (markdown)")
    s.add_argument("--limit", type=int, default=20, metavar="N", help="moved accounts listed (default 20)")
    s.add_argument("--output", metavar="FILE", help="write the report here instead of to stdout")

    s = sub.add_parser(
        "run",
        help="run the Dagster asset graph in-process and publish to the warehouse",
        description="Ingest, validate (Pandera), categorize, update history and action queues, and publish "
        "everything in one transaction. Ends with a summary of what changed.",
    )
    s.add_argument("--org", help="the organization (a directory under --rules-dir)")
    s.add_argument("--all-orgs", action="store_true", help="run every organization in --rules-dir")
    s.add_argument(
        "--rules-dir", default="rules", metavar="DIR", help="where rules/<org>/kare.yaml live (default: rules)"
    )
    s.add_argument(
        "--input",
        metavar="SOURCE",
        help="accounts source; {org} and {as_of} are filled in (default: data/sample/{org}/latest.parquet)",
    )
    s.add_argument("--as-of", metavar="DATE", help="run date YYYY-MM-DD (default: today)")
    s.add_argument(
        "--warehouse", default="data/warehouse.duckdb", metavar="PATH", help="DuckDB file (default: %(default)s)"
    )
    s.add_argument("--staging", metavar="DIR", help="where intermediate frames go (default: data/staging)")
    s.add_argument(
        "--max-quarantine-share",
        type=float,
        default=0.2,
        metavar="SHARE",
        help="fail (publish nothing) when more than this share of rows is invalid (default: 0.2)",
    )
    s.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run on the same warehouse instead of failing at once",
    )
    s.add_argument(
        "--engine",
        choices=["polars", "duckdb"],
        default="polars",
        help="where the rules run: polars (default, with reasons and overlaps) or duckdb (compiled SQL; "
        "reason left empty, use kare explain for one account)",
    )
    s.add_argument(
        "--buckets",
        type=int,
        default=1,
        metavar="N",
        help="for organizations of several million accounts: compute and publish the run N slices of accounts "
        "at a time (by a hash of the account id), still in one transaction and with the same result, without "
        "the Dagster graph or staging files. Peak memory scales with accounts/N (about 2 GiB per million "
        "accounts in a slice, plus the input itself): N = millions of accounts, e.g. 10 for 10M accounts "
        "(~4.7 GiB peak). Default 1: the Dagster asset graph",
    )

    s = sub.add_parser(
        "sample",
        help="write deterministic sample snapshots for the organizations in rules/",
        description="Synthetic monthly account snapshots drawn around each rule file's own thresholds.",
    )
    s.add_argument("--out", default="data/sample", metavar="DIR")
    s.add_argument("--rules-dir", default="rules", metavar="DIR")
    s.add_argument("--accounts", type=int, default=5000, metavar="N", help="accounts in the first snapshot")
    s.add_argument("--months", type=int, default=6, metavar="M", help="number of monthly snapshots")
    s.add_argument("--last", default="2026-10-31", metavar="DATE", help="month of the last snapshot")
    s.add_argument("--seed", type=int, default=7)

    s = sub.add_parser("demo", help="run every organization over every snapshot of a sample (what make run does)")
    s.add_argument("--sample", default="data/sample", metavar="DIR")
    s.add_argument("--rules-dir", default="rules", metavar="DIR")
    s.add_argument("--warehouse", default="data/warehouse.duckdb", metavar="PATH")
    s.add_argument("--staging", metavar="DIR")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except RuleFileError as exc:
        for p in exc.problems:
            err(str(p))
        err(f"{len(exc.problems)} problem(s) in the rule file; fix them and run again (kare validate shows them)")
        return EXIT_FAIL
    except UsageError as exc:
        err(f"kare {args.command}: {exc}")
        return EXIT_USAGE
    except KareError as exc:
        err(f"kare {args.command}: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (kare compile ... | head): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
