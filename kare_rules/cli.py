"""The `kare` command line: validate, test, categorize, explain, compile, diff, run. Errors for people."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from kare_rules.errors import DataError, KareError, RuleFileError, UsageError, display_path

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
    """Run every rule file's embedded tests; report as text (closing line `N passed, M failed`), JSON or
    JUnit XML. An invalid file counts as one failure, and so does a file without tests under --require-tests."""
    from kare_rules.loader import check_rules
    from kare_rules.testing import run_rule_tests

    reports = []
    for path in _rule_files(args.paths):
        rules, problems = check_rules(path)
        results = run_rule_tests(rules) if rules is not None and not problems else []
        reports.append(_FileTests(path, rules, problems, results, args.require_tests))
    passed = sum(r.passed for r in reports)
    failed = sum(r.failed for r in reports)
    if args.format == "json":
        import json

        doc = {"files": [r.as_json() for r in reports], "passed": passed, "failed": failed}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "junit":
        sys.stdout.write(_junit(reports))
    else:
        for r in reports:
            for line in r.text(args.verbose):
                out(line)
        out(f"{passed} passed, {failed} failed")
    return EXIT_FAIL if failed else EXIT_OK


class _FileTests:
    """One rule file's test outcome, for the three output formats of `kare test`."""

    def __init__(self, path: Path, rules, problems: list, results: list, require_tests: bool):
        from kare_rules.errors import display_path

        self.path = display_path(path)
        self.rules, self.problems, self.results = rules, problems, results
        self.invalid = bool(problems) or rules is None
        self.no_tests = not self.invalid and not results
        self.missing_tests = self.no_tests and require_tests  # fails the file
        self.passed = sum(r.passed for r in results)
        self.failed = sum(not r.passed for r in results) + self.invalid + self.missing_tests

    @property
    def status(self) -> str:
        if self.invalid:
            return "invalid"
        if self.no_tests:
            return "no tests"
        return "failed" if self.failed else "passed"

    def text(self, verbose: bool) -> list[str]:
        if self.invalid:
            return [*map(str, self.problems), f"{self.path}: the rule file is invalid, its tests were not run"]
        if self.missing_tests:
            return [f"FAIL {self.path}: no tests, and --require-tests asks for at least one; add a 'tests:' list"]
        if self.no_tests:
            return [f"{self.path}: no tests"]
        lines = []
        for r in self.results:
            where = f"{r.test.path or self.path}:{r.test.line}"
            if r.passed:
                if verbose:
                    lines.append(f"PASS {where} {r.test.name}")
                continue
            lines.append(f"FAIL {where} {r.test.name}")
            lines.extend("     " + line for line in _failure_lines(r))
        return lines

    def as_json(self) -> dict:
        return {
            "path": self.path,
            "organization": self.rules.organization if self.rules else None,
            "version": self.rules.version if self.rules else None,
            "status": self.status,
            "passed": self.passed,
            "failed": self.failed,
            "problems": [
                {"path": p.path, "line": p.line, "column": p.column, "message": p.message} for p in self.problems
            ],
            "tests": [_test_json(r) for r in self.results],
        }


def _failure_lines(r) -> list[str]:
    """What a failed test expected and got, and for a wrong category the tree that shows why."""
    from kare_rules.engine import render_tree

    lines = [f"expected: {r.test.expect}", f"got:      {r.got}", f"reason:   {r.reason}"]
    for mm in r.mismatches:
        if mm.what != "category":
            lines.append(f"{mm.what}: expected {_shown(mm.expected)}, got {_shown(mm.got)}")
    if r.tree:
        lines.append(f"why:      {r.why}:")
        lines.extend("  " + line for line in render_tree(list(r.tree)))
    return lines


def _shown(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(sorted(value)) + "]"
    return "null" if value is None else str(value)


def _tree_json(node) -> dict:
    return {"label": node.label, "holds": node.value, "children": [_tree_json(c) for c in node.children]}


def _test_json(r) -> dict:
    t = r.test
    return {
        "name": t.name,
        "path": t.path,
        "line": t.line,
        "as_of": t.as_of.isoformat(),
        "passed": r.passed,
        "expected": {
            "category": t.expect,
            "matched_rule": t.matched_rule,
            "actions": sorted(t.actions) if t.actions is not None else None,
        },
        "got": {"category": r.got, "matched_rule": r.matched_rule, "actions": sorted(r.actions), "reason": r.reason},
        "mismatches": [
            {"what": mm.what, "expected": _plain(mm.expected), "got": _plain(mm.got)} for mm in r.mismatches
        ],
        "why": r.why or None,
        "tree": [_tree_json(n) for n in r.tree],
    }


def _plain(value):
    return sorted(value) if isinstance(value, tuple) else value


def _junit(reports: list[_FileTests]) -> str:
    """JUnit XML as CI systems read it: a testsuite per rule file, a testcase per embedded test; only
    the elements and attributes of the common (Jenkins/xunit2) schema."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="kare test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for f in reports:
        suite = ET.SubElement(root, "testsuite", name=f.path)
        counts = {"tests": 0, "failures": 0, "errors": 0}
        if f.invalid:
            case = ET.SubElement(suite, "testcase", name="the rule file is valid", classname=f.path, time="0")
            message = f"{len(f.problems)} problem(s) in the rule file; its tests were not run"
            error = ET.SubElement(case, "error", message=message, type="invalid")
            error.text = "\n".join(map(str, f.problems))
            counts["tests"], counts["errors"] = 1, 1
        elif f.missing_tests:
            case = ET.SubElement(suite, "testcase", name="the rule file has tests", classname=f.path, time="0")
            ET.SubElement(case, "failure", message="no tests, and --require-tests asks for at least one",
                          type="no-tests").text = "add a 'tests:' list to the rule file"  # fmt: skip
            counts["tests"], counts["failures"] = 1, 1
        elif f.no_tests:
            ET.SubElement(suite, "system-out").text = f"{f.path}: no tests"
        for r in f.results:
            where = f"{r.test.path or f.path}:{r.test.line}"
            case = ET.SubElement(suite, "testcase", name=r.test.name, classname=r.test.path or f.path, time="0")
            counts["tests"] += 1
            if not r.passed:
                counts["failures"] += 1
                summary = "; ".join(f"{mm.what}: expected {_shown(mm.expected)}, got {_shown(mm.got)}"
                                    for mm in r.mismatches)  # fmt: skip
                failure = ET.SubElement(case, "failure", message=summary, type="mismatch")
                failure.text = "\n".join([where, *_failure_lines(r)])
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("skipped", "0")
        suite.set("time", "0")
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


@command
def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold rules/ORG/kare.yaml from a CSV or Parquet sample of the organization's accounts."""
    import datetime as dt

    import polars as pl

    from kare_rules.errors import DataError, display_path
    from kare_rules.loader import is_safe_org
    from kare_rules.scaffold import scaffold

    if not is_safe_org(args.org):
        raise UsageError(f"{args.org!r} is not an organization name: use lowercase letters, digits and '-', e.g. acme")
    source = Path(args.source)
    if source.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--from {args.source}: give a .csv or .parquet file of accounts")
    if not source.is_file():
        raise UsageError(f"--from {args.source}: no such file")
    target = Path(args.rules_dir) / args.org / "kare.yaml"
    if target.exists() and not args.force:
        raise UsageError(f"{display_path(target)} already exists; pass --force to overwrite it")
    try:
        if source.suffix.lower() == ".csv":  # types inferred from the text, as a person reading it would
            frame = pl.read_csv(source, try_parse_dates=True, infer_schema_length=10_000)
        else:
            frame = pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {args.source}: {str(exc).splitlines()[0]}") from None
    if frame.height == 0:
        raise DataError(f"{args.source} has no rows: kare init infers the inputs from sample accounts")
    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else dt.date.today()
    text = scaffold(frame, args.org, source=source.name, schema_ref=_schema_ref(target), as_of=as_of,
                    target=display_path(target.parent))  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.lstrip().startswith("when:"))
    out(f"wrote {display_path(target)} ({frame.width} columns, {frame.height} rows of {args.source})")
    out(f"next: review the inputs (the key column is marked REVIEW), fill in profiles.keep.when "
        f"(line {line}) and the test's account, then: kare validate {display_path(target.parent)}")  # fmt: skip
    return EXIT_OK


def _schema_ref(target: Path) -> str:
    """The modeline's schema: a relative path to a schemas/ folder in the repository holding the rules
    (as this repository's rule files have), else the schema's published URL."""
    import os

    from kare_rules.schema import schema_json

    name = "schemas/kare-rules.v1.schema.json"
    folder = target.parent.resolve()
    for parent in [folder, *folder.parents]:
        if (parent / name).is_file():
            return Path(os.path.relpath(parent / name, folder)).as_posix()
        if (parent / ".git").exists():
            break  # the top of the repository: a schemas/ folder above it is someone else's
    return schema_json()["$id"]


@command
def cmd_schema(args: argparse.Namespace) -> int:
    from kare_rules.schema import RULES_SCHEMA

    out(RULES_SCHEMA.read_text(encoding="utf-8").rstrip())
    return EXIT_OK


@command
def cmd_categorize(args: argparse.Namespace) -> int:
    from kare_rules.engine import as_date, categorize, category_counts
    from kare_rules.loader import load_rules
    from kare_rules.sources import check_source, read_accounts, write_frame
    from kare_rules.validation import validate_accounts

    if Path(args.output).suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"cannot write {args.output}: the output must end in .parquet or .csv")
    rules = load_rules(args.rules)
    as_of = as_date(args.as_of)
    if args.trusted:
        if args.engine != "duckdb":
            raise UsageError("--trusted goes with --engine duckdb (the Polars engine reads the input into Python)")
        from kare_rules.compile_sql import categorize_duckdb

        # DuckDB reads a Parquet file or DuckDB table itself: the rows never enter Python, and nothing is
        # validated. It is checked as every other read is first, so a bad source gets the same message.
        check_source(args.input)
        by_duckdb = args.input.startswith("duckdb:") or Path(args.input).suffix.lower() == ".parquet"
        result = categorize_duckdb(rules, args.input if by_duckdb else read_accounts(args.input), as_of)
        if result.height == 0:
            raise DataError(
                f"input {args.input} has no rows; an empty extract is refused. Check the export that wrote it"
            )
        write_frame(result, args.output)
        out(f"{result.height} accounts categorized in DuckDB with {rules.organization} {rules.version} as of {as_of} "
            f"→ {args.output} (input trusted, not validated)")  # fmt: skip
        out(_table(category_counts(result)))
        return EXIT_OK
    checked = validate_accounts(rules, read_accounts(args.input))
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
    from kare_rules.sources import read_accounts
    from kare_rules.validation import validate_accounts

    rules = load_rules(args.rules)
    as_of = as_date(args.as_of)
    mine = read_accounts(args.input, where=pl.col(rules.key).cast(pl.String).str.strip_chars() == args.account.strip())
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
    from kare_rules.loader import load_rules
    from kare_rules.sources import read_accounts

    if args.base and (args.before or args.after):
        raise UsageError("use either --base GITREF or --before PATH --after PATH, not both")
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
                accounts = read_accounts(args.input.replace("{org}", org))
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
    """Run one or every organization as of one date through the run engine, and summarize each run."""
    from kare_rules.engine import as_date
    from kare_rules.loader import is_safe_org, organization_problems, organizations
    from kare_rules.run import RunFailed, RunInterrupted, Thresholds, run_organization
    from kare_rules.run.report import progress_bar, summary_lines
    from kare_rules.run.slicing import parse_size
    from kare_rules.sources import DEFAULT_INPUT
    from kare_rules.warehouse import Warehouse

    root = Path(args.rules_dir)
    known = organizations(root)
    if args.all_orgs:
        orgs = known
    elif args.org:
        if not is_safe_org(args.org):
            raise UsageError(f"{args.org!r} is not an organization name (lowercase letters, digits and '-')")
        if args.org not in known:
            refused = [p for p in organization_problems(root) if Path(p.path).parent.name == args.org]
            if refused:
                raise RuleFileError(refused)
            raise UsageError(
                f"no rules for {args.org!r} in {args.rules_dir}/; organizations: {', '.join(known) or 'none'}"
            )
        orgs = [args.org]
    else:
        raise UsageError("name an organization with --org ORG, or run them all with --all-orgs")
    as_of = as_date(args.as_of or os.environ.get("KARE_AS_OF"))
    thresholds = Thresholds(max_quarantine_share=args.max_quarantine_share, max_removed_share=args.max_removed_share,
                            allow_empty_input=args.allow_empty_input)  # fmt: skip
    budget = parse_size(args.memory_budget) if args.memory_budget else None
    source = args.input or os.environ.get("KARE_INPUT", DEFAULT_INPUT)
    warehouse = Warehouse(args.warehouse, wait=args.wait, on_wait=lambda what: err(f"  {what}"))
    failed = 0
    for org in orgs:
        out(f"{org}: running as of {as_of} → {args.warehouse}")
        try:
            with progress_bar(org) as progress:
                result = run_organization(
                    org, as_of, source.replace("{org}", org).replace("{as_of}", as_of.isoformat()), warehouse,
                    rules_dir=root, engine=args.engine, thresholds=thresholds, memory_budget=budget,
                    slices=args.buckets, progress=progress,
                )  # fmt: skip
        except RunInterrupted as exc:
            err(f"kare run: {org}: {exc}")
            return 130
        except RunFailed as exc:
            failed += 1
            err(f"kare run: {org}: {exc}")
            err("  nothing was published; the warehouse still holds the previous run (the failure is in kare.runs)")
            continue
        for line in summary_lines(result):
            out(line)
    return EXIT_FAIL if failed else EXIT_OK


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
            ])  # fmt: skip
            code = max(code, cmd_run(ns))
    out(f"\nwarehouse: {args.warehouse} (schema kare). Try:\n"
        f"  duckdb {args.warehouse} \"SELECT org, category, count(*) FROM kare.account_categories GROUP BY ALL\"\n"
        "  or see docs/bi.md for dashboard queries")  # fmt: skip
    return code


def _rule_files(paths: list[str]) -> list[Path]:
    from kare_rules.loader import find_rule_files

    if not paths and not Path("rules").is_dir():
        raise UsageError(
            "no rules/ directory in the current folder; give the rule files or directories to check "
            "(e.g. rules/acme/kare.yaml or path/to/rules), or run it from the folder that holds rules/"
        )
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such file or directory; give rule files or directories")
    files = find_rule_files(paths or ["rules"])
    if not files:
        raise UsageError(f"no rule files (*/kare.yaml) found in {', '.join(paths or ['rules'])}")
    return files


# ---- option types: a value that cannot work is a usage error (exit 2) before any work is done ----

FIRST_DAY, LAST_DAY = "1900-01-01", "2999-12-31"  # run dates outside are typing mistakes (and dates past 9999 overflow)
MAX_WAIT_SECONDS = 86_400.0


def date_arg(text: str) -> str:
    """A run date (--as-of, --last) as YYYY-MM-DD text; empty, malformed or far-off dates are refused."""
    import datetime as dt

    try:
        # fromisoformat also takes 20261101 and 2026-W44-7; the value goes on as plain YYYY-MM-DD.
        day = dt.date.fromisoformat(text.strip()).isoformat() if text.strip() else None
    except ValueError:
        day = None
    if day is None:
        import re

        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a date: there is no such day on the calendar")
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-11-01")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(
            f"{day} is not a plausible run date; give one between {FIRST_DAY} and {LAST_DAY}"
        )
    return day


def _number(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def share_arg(text: str) -> float:
    """A share of rows, 0 to 1 (0.2 is 20%); nan, inf and percentages like 20 are refused."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1 (write 0.2 for 20%)")
    return value


def seconds_arg(text: str) -> float:
    """A duration in seconds, 0 up to a day; nan, inf and negative durations are refused."""
    value = _number(text)
    if not 0.0 <= value <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds between 0 and {MAX_WAIT_SECONDS:,.0f}")
    return value


def count_arg(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number within [minimum, maximum], as an argparse type."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum:,} to {maximum:,}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a whole number {bound}")
        return value

    return parse


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

    sub.add_parser("schema", help="print the rule file JSON Schema (format v1)")

    s = sub.add_parser(
        "init",
        help="scaffold rules/ORG/kare.yaml from a CSV or Parquet file of accounts",
        description="Write a first rule file for ORG from sample account data: inputs with inferred types, "
        "nullability, min and allowed values, the key column guessed (marked REVIEW), commented example "
        "categories and one test per category to fill in. It validates once profiles.keep.when is filled in.",
    )
    s.add_argument("org", metavar="ORG", help="the organization: lowercase letters, digits and '-'")
    s.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help="sample accounts: a .csv or .parquet file"
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
    s.add_argument("--input", required=True, metavar="SOURCE", help="accounts: .parquet or .csv path, or a source")
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
    s.add_argument("--rules", required=True, metavar="FILE", help="the rule file (kare.yaml) or its directory")
    s.add_argument(
        "--input", required=True, metavar="SOURCE", help="accounts: .parquet or .csv path, or a source (see README)"
    )
    s.add_argument("--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD (default: today)")
    s.add_argument("--account", required=True, metavar="ID", help="the account's key value")

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
    s.add_argument("--table", required=True, metavar="NAME", help="the account table: TABLE or SCHEMA.TABLE")
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
    s.add_argument("--base", metavar="GITREF", help="compare every org whose rule files differ from this git ref")
    s.add_argument("--rules-dir", default="rules", metavar="DIR", help="with --base: the rules directory (rules/)")
    s.add_argument(
        "--input", metavar="SOURCE", help="accounts to measure the impact on; '{org}' in it becomes each org's name"
    )
    s.add_argument(
        "--as-of",
        type=date_arg,
        metavar="DATE",
        help="run date YYYY-MM-DD (required with --before/--after and --input)",
    )
    s.add_argument("--format", choices=["markdown", "json"], default="markdown", help="report format (markdown)")
    s.add_argument("--limit", type=count_arg(0), default=20, metavar="N", help="moved accounts listed (default 20)")
    s.add_argument("--output", metavar="FILE", help="write the report here instead of to stdout")

    s = sub.add_parser(
        "run",
        help="run one organization (or all) as of a date and publish to the warehouse",
        description="Read the source, validate (Pandera), categorize, update history and action queues, check "
        "quality, and publish only the changes, in one transaction. Large organizations are processed in slices "
        "of accounts chosen from the memory budget. Ends with a summary of what changed and the checks.",
    )
    s.add_argument("--org", help="the organization (a directory under --rules-dir)")
    s.add_argument("--all-orgs", action="store_true", help="run every organization in --rules-dir, one after another")
    s.add_argument("--rules-dir", default="rules", metavar="DIR",
                   help="where rules/<org>/kare.yaml live (default: %(default)s)")  # fmt: skip
    s.add_argument(
        "--input", metavar="SOURCE",
        help="accounts source; {org} and {as_of} are filled in (default: $KARE_INPUT, else "
        "data/sample/{org}/latest.parquet)",
    )  # fmt: skip
    s.add_argument("--as-of", type=date_arg, metavar="DATE", help="run date YYYY-MM-DD (default: $KARE_AS_OF, else "
                   "today)")  # fmt: skip
    s.add_argument("--warehouse", default="data/warehouse.duckdb", metavar="PATH",
                   help="DuckDB file (default: %(default)s)")  # fmt: skip
    s.add_argument("--max-quarantine-share", type=share_arg, default=0.2, metavar="SHARE",
                   help="publish nothing when more than this share of input rows is invalid "
                   "(default: %(default)s)")  # fmt: skip
    s.add_argument("--max-removed-share", type=share_arg, default=0.5, metavar="SHARE",
                   help="publish nothing when the run would remove more than this share of the current accounts "
                   "(accounts missing from the input; default: %(default)s)")  # fmt: skip
    s.add_argument("--allow-empty-input", action="store_true",
                   help="publish an input with no rows (every account removed); refused otherwise")  # fmt: skip
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

    s = sub.add_parser("demo", help="run every organization over every snapshot of a sample (what make run does)")
    s.add_argument(
        "--sample", default="data/sample", metavar="DIR", help="snapshots written by kare sample (default: %(default)s)"
    )
    s.add_argument(
        "--rules-dir", default="rules", metavar="DIR", help="the organizations' rule files (default: %(default)s)"
    )
    s.add_argument(
        "--warehouse", default="data/warehouse.duckdb", metavar="PATH", help="DuckDB file (default: %(default)s)"
    )
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
