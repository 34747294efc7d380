"""Rule-file commands: kare validate, test, init, schema."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from kare_rules.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    command,
    out,
    rule_files,
)
from kare_rules.errors import DataError, UsageError, display_path, one_line


@command
def cmd_validate(args: argparse.Namespace) -> int:
    from kare_rules.loader import check_rules, organization_problems

    files = rule_files(args.paths)
    bad = 0
    # A rules directory's own problems (two organizations sharing one rule file) come from no one file.
    shared = {p for d in (args.paths or ["rules"]) if Path(d).is_dir() for p in organization_problems(d)}
    for path in files:
        rules, problems = check_rules(path)
        problems = sorted(set(problems) | {p for p in shared if Path(p.path) == Path(display_path(path))})
        if rules is not None and not problems:
            problems = _override_problems(path, rules)
        for p in problems:
            out(str(p))
        bad += bool(problems)
    # A folder whose rule file is misnamed is no organization, so none of the files above: each is one more
    # invalid one (it would otherwise pass validation, and CI, while nothing ever reads it).
    checked = {Path(display_path(f)) for f in files}
    stray = sorted(p for p in shared if Path(p.path) not in checked)
    for p in stray:
        out(str(p))
    out(f"{len(files) - bad} valid, {bad + len(stray)} invalid")
    return EXIT_FAIL if bad or stray else EXIT_OK


def _override_problems(path: Path, rules) -> list:
    """The problems of the overrides.yaml beside a valid rule file: `kare run` reads it, so a mistake in it
    must fail validation (and the pre-commit hook, and CI) before it fails a scheduled run."""
    from kare_rules.errors import RuleFileError
    from kare_rules.overrides import overrides_beside

    try:
        overrides_beside(path, rules)
    except RuleFileError as exc:
        return exc.problems
    return []


@command
def cmd_test(args: argparse.Namespace) -> int:
    """Run every rule file's embedded tests; report as text (closing line `N passed, M failed`), JSON or
    JUnit XML. An invalid file counts as one failure, and so does a file without tests under --require-tests."""
    from kare_rules.loader import check_rules
    from kare_rules.testing import run_rule_tests

    reports = []
    for path in rule_files(args.paths):
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
            # Names, values and reasons come from the rule file: each shown on its own line, escaped.
            if r.passed:
                if verbose:
                    lines.append(f"PASS {where} {one_line(r.test.name)}")
                continue
            lines.append(f"FAIL {where} {one_line(r.test.name)}")
            lines.extend("     " + one_line(line) for line in _failure_lines(r))
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

    if r.got == r.test.expect:  # what failed is below: the matched rule, the actions or the next move
        lines = [f"category: {r.got}, as expected", f"reason:   {r.reason}"]
    else:
        lines = [f"expected: {r.test.expect}", f"got:      {r.got}", f"reason:   {r.reason}"]
    for mm in r.mismatches:
        if mm.what != "category":
            # A move the author did not expect, or to another category: when it comes says why.
            when = f" on {r.next_move_on}" if mm.what == "next_category" and mm.got != "none" else ""
            lines.append(f"{mm.what}: expected {_shown(mm.expected)}, got {_shown(mm.got)}{when}")
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
            **_next_move_json(t.next_category, t.next_move_on and t.next_move_on.isoformat(), t),
        },
        "got": {
            "category": r.got,
            "matched_rule": r.matched_rule,
            "actions": sorted(r.actions),
            "reason": r.reason,
            **_next_move_json(r.next_category, r.next_move_on, t),
        },
        "mismatches": [
            {"what": mm.what, "expected": _plain(mm.expected), "got": _plain(mm.got)} for mm in r.mismatches
        ],
        "why": r.why or None,
        "tree": [_tree_json(n) for n in r.tree],
    }


def _next_move_json(category: str | None, day: str | None, t) -> dict:
    """`next_category` and `next_move_on` for a test that expects a next move ('none': no move); a test that
    does not has neither key, as its next move is not computed."""
    if t.next_category is None and t.next_move_on is None:
        return {}
    return {"next_category": category, "next_move_on": day}


def _plain(value):
    return sorted(value) if isinstance(value, tuple) else value


# Characters XML 1.0 cannot hold at all, not even as &#...; (a test name may carry an ESC, written "\x1b" in YAML).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """`text` with each character XML cannot hold written as its escape, e.g. \\x1b: one such character
    would make the whole report unreadable to the CI system."""
    return _NOT_XML.sub(lambda ch: ch.group().encode("unicode_escape").decode("ascii"), text)


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
    for element in root.iter():
        element.text = element.text and _xml_safe(element.text)
        for k, v in element.attrib.items():
            element.set(k, _xml_safe(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


@command
def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold rules/ORG/kare.yaml from a CSV or Parquet sample of the organization's accounts."""
    import datetime as dt

    import polars as pl

    from kare_rules.errors import display_path
    from kare_rules.loader import is_safe_org
    from kare_rules.scaffold import scaffold
    from kare_rules.sources import read_accounts, read_source, refuse_pattern_names
    from kare_rules.validation import separator_hint

    if not is_safe_org(args.org):
        raise UsageError(f"{args.org!r} is not an organization name: use lowercase letters, digits and '-', e.g. acme")
    source = Path(args.source)
    if source.suffix.lower() not in (".csv", ".tsv", ".parquet"):
        raise UsageError(f"--from {args.source}: give a .csv, .tsv or .parquet file of accounts")
    if not source.is_file():
        raise UsageError(f"--from {args.source}: no such file")
    target = Path(args.rules_dir) / args.org / "kare.yaml"
    if target.exists() and not args.force:
        raise UsageError(f"{display_path(target)} already exists; pass --force to overwrite it")
    if source.suffix.lower() in (".csv", ".tsv"):
        read_source(str(source))  # its header checked as every command checks it (UTF-16, a workbook named .csv)
    try:
        if source.suffix.lower() in (".csv", ".tsv"):  # types inferred from the text, as a person reading it would
            # From every row: a type guessed from the first rows fails to read a later 'n/a' in that column.
            separator = "\t" if source.suffix.lower() == ".tsv" else ","  # as every other command reads it
            # Digits with a leading zero ('00123', a ZIP code '02134') are text: read as integers, the zeros
            # are lost, so a key would no longer match the CRM's ids and '0123' and '00123' would collide.
            text = pl.read_csv(source, separator=separator, infer_schema_length=0)
            refuse_pattern_names(text.columns, f"--from {args.source}")  # before text[name] takes one as a pattern
            zero_led = {name: pl.String for name in text.columns if text[name].str.contains(r"^\s*0[0-9]+\s*$").any()}
            frame = pl.read_csv(source, separator=separator, infer_schema_length=None, schema_overrides=zero_led)
            # Dates as validation reads them (ISO order), decided from every value: Polars' own date parsing
            # takes its format from the first value and stops at the first that differs (one '31/12/2025'
            # among ISO dates), and reads '01/05/2024' day first, which validation would set aside.
            frame = frame.with_columns(_iso_dates(frame))
        else:
            frame = pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError) as exc:
        # The source reader of every other command says what is wrong, and where (an empty file, the line
        # that is not UTF-8, a ragged row); Polars' own first line ('invalid utf-8 sequence') does not.
        read_accounts(str(source), allow_empty=True)
        raise DataError(f"cannot read {args.source}: {str(exc).splitlines()[0]}") from None
    refuse_pattern_names(frame.columns, f"--from {args.source}")
    # A row without a value (a blank line at the end of an export) would make every column nullable and the key
    # look missing: it is left out of the inference, and said so (a run quarantines it).
    empty = pl.all_horizontal(pl.all().is_null()) if frame.width else pl.lit(False)
    blank = frame.filter(empty).height
    frame = frame.filter(~empty) if blank else frame
    if frame.height == 0:
        raise DataError(f"{args.source} has no rows: kare init infers the inputs from sample accounts")
    if hint := separator_hint(frame.columns):
        raise DataError(f"{args.source} reads as one column, {frame.columns[0][:60]!r}. {hint}")
    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else dt.date.today()
    schema_ref = _schema_ref(target)
    text = scaffold(frame, args.org, source=source.name, schema_ref=schema_ref, as_of=as_of,
                    target=display_path(target.parent))  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataError(
            f"cannot write {display_path(target)}: {exc.strerror or exc}; choose a writable --rules-dir"
        ) from None
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.lstrip().startswith("when:"))
    out(f"wrote {display_path(target)} ({frame.width} columns, {frame.height} rows of {args.source})")
    if blank:
        out(f"left out {blank:,} empty row{'s' * (blank > 1)} (blank lines, or separators only) of {args.source}: "
            "a run quarantines such rows, so delete them from the export")  # fmt: skip
    out(f"next: review the inputs (the key column is marked REVIEW), fill in profiles.keep.when "
        f"(line {line}) and the test's account, then: kare validate {display_path(target.parent)}")  # fmt: skip
    if "://" in schema_ref:  # no schemas/ folder in this repository: the modeline names the schema's URL
        out("editor checks: the first line names the schema by its URL; for checks that need no network, run "
            "kare schema > schemas/kare-rules.v1.schema.json at the top of your repository and kare init again "
            "(with --force), or point the line at that file")  # fmt: skip
    return EXIT_OK


def _iso_dates(frame) -> list:
    """The text columns every written value of which reads as an ISO date (else date-time), cast to it;
    one value that does not leaves the column text, as one that is not a number leaves a number column text."""
    import polars as pl

    from kare_rules.engine import cast_expr

    casts = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        written = frame[name].str.strip_chars().fill_null("") != ""
        if not written.any():
            continue
        for kind in ("date", "datetime"):
            read = frame.select(cast_expr(name, kind, pl.String)).to_series()
            if not (written & read.is_null()).any():
                casts.append(read)
                break
    return casts


def _schema_ref(target: Path) -> str:
    """The modeline's schema: a relative path to a schemas/ folder in the repository holding the rules
    (as this repository's rule files have), else the schema's published URL."""

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
    from kare_rules.schema import RULES_SCHEMA, schema_path
    from kare_rules.tables import TABLES

    if args.table is not None and args.table not in TABLES:
        from kare_rules.warehouse.duckdb import VIEW_COLUMNS, VIEWS

        if args.table in VIEW_COLUMNS:  # a view has no schema of its own
            import sqlglot

            base, computed = VIEW_COLUMNS[args.table]
            columns = sqlglot.parse_one(VIEWS[args.table][0], read="duckdb").named_selects
            raise UsageError(f"--table {args.table!r} is a view over {base} (docs/bi.md), not a table: its columns "
                             f"are {', '.join(columns)}; {', '.join(computed)} {'is' if len(computed) == 1 else 'are'} "
                             f"its own; the others come from {base} (kare schema --table {base})")  # fmt: skip
        raise UsageError(f"--table {args.table!r} is not a kare table; give one of {', '.join(TABLES)}")
    path = schema_path(f"tables/{args.table}.json") if args.table else RULES_SCHEMA
    out(path.read_text(encoding="utf-8").rstrip())
    return EXIT_OK
