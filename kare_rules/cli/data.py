"""Data commands: kare categorize, explain, compile, diff."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kare_rules.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    command,
    err,
    out,
    rules_option,
    table,
)
from kare_rules.errors import DataError, UsageError, one_line


def previous_values(args: argparse.Namespace, rules):
    """The previous run's values from --previous, or None (then the trends are null: see trend_note)."""
    from kare_rules.sources import read_previous

    if not rules.trend_columns or args.previous is None:
        return None
    return read_previous(rules, args.previous)


def trend_note(args: argparse.Namespace, rules) -> None:
    """Without --previous the rules' trends are null for every account: said once on stderr, after the
    command succeeded (a note, not an error: a first run has no previous run). And a --previous the rules
    have no use for is said too, not taken in silence (a misspelt path looked read)."""
    if not rules.trend_columns and args.previous is not None:
        err(f"note: --previous {args.previous} was not read: the rules have no trends (change_of, pct_change_of)")
        return
    if not rules.trend_columns or args.previous is not None:
        return
    trends = ", ".join(d.name for d in rules.derived if d.kind in ("change_of", "pct_change_of"))
    err(
        f"note: no --previous given, so the trends ({trends}) are null for every account, as for new "
        f"accounts; give --previous FILE with {rules.key} and {', '.join(rules.trend_columns)} from the "
        "previous run"
    )


@command
def cmd_categorize(args: argparse.Namespace) -> int:
    import polars as pl

    from kare_rules import model as m
    from kare_rules.engine import as_date, categorize, category_counts
    from kare_rules.loader import load_rules
    from kare_rules.sources import check_source, read_accounts, write_frame
    from kare_rules.validation import validate_accounts

    if Path(args.output).suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"cannot write {args.output}: the output must end in .parquet or .csv")
    _refuse_to_overwrite_a_source(args)
    if args.edges and (args.engine != "polars" or args.trusted):
        raise UsageError("--edges needs the Polars engine (edges are not compiled to SQL); drop --engine duckdb")
    if args.horizon != m.DEFAULT_HORIZON_DAYS and not args.edges:
        raise UsageError("--horizon goes with --edges (how many days ahead next_move_on looks)")
    rules = load_rules(rules_option(args.rules))
    as_of = as_date(args.as_of)
    if args.trusted:
        if args.engine != "duckdb":
            raise UsageError("--trusted goes with --engine duckdb (the Polars engine reads the input into Python)")
        from kare_rules.compile_sql import categorize_duckdb

        # DuckDB reads a Parquet file or DuckDB table itself: the rows never enter Python, and nothing is
        # validated. It is checked as every other read is first, so a bad source gets the same message.
        check_source(args.input)
        previous = previous_values(args, rules)
        by_duckdb = args.input.startswith("duckdb:") or Path(args.input).suffix.lower() == ".parquet"
        result = categorize_duckdb(rules, args.input if by_duckdb else read_accounts(args.input), as_of, previous)
        if result.height == 0:
            raise DataError(
                f"input {args.input} has no rows; an empty extract is refused. Check the export that wrote it"
            )
        write_frame(result, args.output)
        if _quarantine_twin(args.output).is_file():  # an earlier run's; nothing is validated here
            _quarantine_twin(args.output).unlink()
        out(f"{_accounts(result.height)} categorized in DuckDB with {rules.organization} {rules.version} as of {as_of} "
            f"→ {args.output} (input trusted, not validated)")  # fmt: skip
        out(table(category_counts(result, rules)))
        trend_note(args, rules)
        return EXIT_OK
    checked = validate_accounts(rules, read_accounts(args.input))
    previous = previous_values(args, rules)
    if args.engine == "duckdb":
        from kare_rules.compile_sql import categorize_duckdb

        result = categorize_duckdb(rules, checked.valid, as_of, previous)
    else:
        result = categorize(
            rules, checked.valid, as_of, explain=not args.no_explain, previous=previous, edges=args.edges,
            horizon=args.horizon,
        )  # fmt: skip
    write_frame(result, args.output)
    counts = category_counts(result, rules)
    done = f"{_accounts(result.height)} categorized with {rules.organization} {rules.version} as of {as_of}"
    out(f"{done} → {args.output}")
    out(table(counts))
    if args.edges:
        moving = result.filter(pl.col("next_move_on").is_not_null()).height
        out(
            f"{moving} of them would change category within {args.horizon} days with their data unchanged "
            "(next_move_on)"
        )
    q = _quarantine_twin(args.output)
    if checked.quarantine.height:
        write_frame(checked.quarantine, q)
        n = checked.quarantine.height
        rows, its = (
            ("1 input row failed validation and was", "its")
            if n == 1
            else (f"{n} input rows failed validation and were", "their")
        )
        err(f"{rows} set aside in {q} with {its} reasons")
    elif q.is_file():  # an earlier run's: left there, its rows would read as this run's
        q.unlink()
    trend_note(args, rules)
    return EXIT_OK


def _refuse_to_overwrite_a_source(args: argparse.Namespace) -> None:
    """An --output (or its quarantine twin) that is a file the command reads: writing it would replace the
    accounts with their results, and the extract would be gone. A usage error before anything is read."""
    import glob
    import os

    written = [p for p in (Path(args.output), _quarantine_twin(args.output)) if p.is_file()]
    for option, source in (("--input", args.input), ("--previous", args.previous)):
        if not written or source is None or source.startswith(("duckdb:", "sql:")):
            continue
        read = glob.glob(source, recursive=True) if any(ch in source for ch in "*?[") else [source]
        for name in read:
            for target in written:
                if Path(name).is_file() and os.path.samefile(name, target):
                    raise UsageError(
                        f"--output {args.output} would overwrite {name}, which {option} reads; write the "
                        "results to another file"
                    )


def _one_account(rules, account: str):
    """The input rows of one account and the account as its typed key reads as text, matched as validation
    and categorize read keys: a string key exactly as written (' A' and 'A' are two accounts), any other
    type as its text parses, spaces around it ignored; an integer key is one account however it is
    written: '5', '5.0' and 5 are account 5."""
    import polars as pl

    if rules.input(rules.key).type == "string":
        from kare_rules.engine import cast_expr

        # As validation reads the key from the source's type: from floats (pandas' ids with a gap), 123.0 is '123'.
        def same(schema: pl.Schema) -> pl.Expr:
            return cast_expr(rules.key, "string", schema.get(rules.key, pl.String)).cast(pl.String) == account

        return same, account
    written = pl.col(rules.key).cast(pl.String).str.strip_chars()
    wanted = account.strip()
    if rules.input(rules.key).type == "integer":
        number = _whole_number(wanted)
        if number is not None:
            same = pl.coalesce(written.cast(pl.Int64, strict=False) == number,
                               written.cast(pl.Float64, strict=False) == float(number))  # fmt: skip
            return same.fill_null(False) | (written == wanted), str(number)
    return written == wanted, wanted


def _near(rules, args: argparse.Namespace) -> str:
    """For a string key not found as written: the keys that differ from it only by spaces around them, by
    leading zeros or by case ('Acme-1' for 'acme-1'); for an integer key, that the account is not a number."""
    import polars as pl

    from kare_rules.sources import read_accounts

    if rules.input(rules.key).type == "integer" and _whole_number(args.account.strip()) is None:
        return f"; {rules.key} is an integer key: give the account's number"  # a CRM's 'C-1001' for its number
    if rules.input(rules.key).type != "string" or not args.account.strip():
        return ""
    # leading zeros too: an id typed as 123 where the data holds '00123'
    written = pl.col(rules.key).cast(pl.String).str.strip_chars().str.to_lowercase().str.strip_chars_start("0")
    close = read_accounts(args.input, where=written == args.account.strip().lower().lstrip("0"))
    keys = close[rules.key].cast(pl.String).head(3).to_list()
    if not keys:
        return ""
    wanted = args.account.strip()

    def zeros(text: str) -> int:
        return len(text) - len(text.lstrip("0"))

    differs = ["spaces"]  # what a match takes exactly: always spaces, and what else sets these keys apart
    if any(zeros(k.strip()) != zeros(wanted) for k in keys):
        differs.append("leading zeros")
    if any(k.strip().lstrip("0") != wanted.lstrip("0") for k in keys):
        differs.append("case")
    included = ", ".join(differs[:-1]) + f" and {differs[-1]}" if len(differs) > 1 else differs[0]
    return f"; keys match exactly, {included} included, and the input has {', '.join(repr(k) for k in keys)}"


def _whole_number(text: str) -> int | None:
    """'5' and '5.0' as 5; None for text that is not a whole number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _quarantine_twin(output: str) -> Path:
    """Where kare categorize sets invalid rows aside: OUTPUT's .quarantine twin (r.csv → r.quarantine.csv)."""
    return Path(output).with_name(Path(output).stem + ".quarantine" + Path(output).suffix)


@command
def cmd_explain(args: argparse.Namespace) -> int:
    from kare_rules.edges import describe_edges
    from kare_rules.engine import as_date, categorize, explain_account, render_tree
    from kare_rules.loader import load_rules
    from kare_rules.overrides import overrides_beside
    from kare_rules.sources import read_accounts
    from kare_rules.validation import validate_accounts

    rules = load_rules(rules_option(args.rules))
    as_of = as_date(args.as_of)
    where, account = _one_account(rules, args.account)
    mine = read_accounts(args.input, where=where, row_index="_kare_source_row")
    rows = mine["_kare_source_row"]  # 0-based rows of the input, to name in the quarantine lines below
    mine = mine.drop("_kare_source_row")
    if mine.height == 0:
        raise DataError(f"account {account!r} is not in the input (key column '{rules.key}'){_near(rules, args)}")
    # ' A' is not A: show where it ends; and a control character is shown, not sent to the terminal
    shown = account if account == account.strip() and account.isprintable() else repr(account)
    checked = validate_accounts(rules, mine)
    if checked.quarantine.height:  # as `kare categorize` and `kare run` would: not categorized, set aside
        err(f"account {shown} is not categorized: its input fails validation and would be quarantined")
        for r in checked.quarantine.iter_rows(named=True):  # row_number counts the rows read, 1-based
            err(f"  row {rows[r['row_number'] - 1] + 1}: {one_line('; '.join(r['reasons']))}")
        return EXIT_FAIL
    previous = previous_values(args, rules)
    nodes = explain_account(rules, checked.valid, as_of, account, previous)
    result = categorize(rules, checked.valid, as_of, previous=previous, edges=True)
    out(f"account {shown} as of {as_of} ({rules.organization} {rules.version}): {result['category'][0]}")
    if pin := _pinned(rules, checked.valid, as_of, overrides_beside(args.rules, rules)):  # what a run publishes
        out(f"override: a run publishes {pin.category} (pinned by {one_line(pin.author)} until {pin.expires}: "
            f"{one_line(pin.reason)}); "
            "the category above and the lines below are the rules' own view")  # fmt: skip
    # Reasons and the tree quote the account's values: a line break or ESC in one is shown escaped.
    out(one_line(f"reason: {result['reason'][0]}"))
    out(one_line(f"next: {describe_edges(rules, checked.valid, as_of, previous=previous)[0]}"))
    if watches := result["watches"][0].to_list():
        # A run gives a pinned account no watch actions (docs/rule-format.md, overrides): saying they open
        # would send the reader to look for actions that are not there.
        opens = (
            "a run opens none of their actions while the account is pinned" if pin else "their actions open in a run"
        )
        out(f"watches: {', '.join(watches)} ({opens})")
    out()
    # the categories the file defines, in order: without `precedence:` the default order names all five
    out("precedence: " + " → ".join(r.name for r in rules.ordered()) + " (first that holds wins)")
    for line in render_tree(nodes):
        out(one_line(line))
    trend_note(args, rules)
    return EXIT_OK


def _pinned(rules, account, as_of, overrides):
    """The override that pins this one account (a frame of one valid row) on `as_of`, if any: matched on
    the key as text, as a run matches it."""
    import polars as pl

    key = account.select(pl.col(rules.key).cast(pl.String)).item()
    return next((o for o in overrides if o.account == key and as_of <= o.expires), None)


@command
def cmd_compile(args: argparse.Namespace) -> int:
    from kare_rules.compile_sql import compile_sql
    from kare_rules.engine import as_date
    from kare_rules.loader import load_rules

    rules = load_rules(rules_option(args.rules))
    # Compiled first: a bad --table is one error, not notes about a query that is never printed.
    sql = compile_sql(rules, args.dialect, args.table, as_date(args.as_of), args.previous_table)
    # Only the SELECT goes to stdout (no comment header: nothing from the rule file lands in SQL text
    # unquoted), so it pipes straight into psql, duckdb or a CREATE VIEW.
    if rules.trend_columns and args.previous_table is None:
        err(
            "note: no --previous-table given, so the trends are NULL for every account in this SQL; give "
            f"--previous-table NAME with {rules.key} and {', '.join(rules.trend_columns)} from the previous run"
        )
    zoned = _datetimes_read(rules)
    if zoned and args.dialect in _UTC_SESSION:
        err(
            f"note: {', '.join(zoned)} {'is' if len(zoned) == 1 else 'are'} read as a date in the session's time "
            "zone by this SQL; where such a column is a timestamp with a time zone, kare's own engines count it by "
            f"its UTC date: run the query in a UTC session ({_UTC_SESSION[args.dialect]}) for the same answers"
        )
    out(sql)
    return EXIT_OK


# How each dialect's session is put in UTC. A zoned timestamp becomes a date, or meets a date-time literal, in
# the session's zone there; kare reads such a column by its UTC date (docs/rule-format.md, inputs). BigQuery
# turns a TIMESTAMP into a date in UTC unless told otherwise, so it needs no note.
_UTC_SESSION = {
    "duckdb": "SET TimeZone = 'UTC'",
    "postgres": "SET TIME ZONE 'UTC'",
    "snowflake": "ALTER SESSION SET TIMEZONE = 'UTC'",
    "spark": "SET spark.sql.session.timeZone = UTC",
}


def _datetimes_read(rules) -> list[str]:
    """The `datetime` inputs the categories depend on: read by a day count or compared by a condition."""
    from kare_rules import model as m

    read = {a for d in rules.derived if d.kind in m.DATE_KINDS for a in d.args}
    stack = [rule.when for rule in rules.categories.values()]
    seen: set[str] = set()
    while stack:
        c = stack.pop()
        if isinstance(c, m.Predicate):
            read.add(c.column)
        elif isinstance(c, m.TraitRef):
            if c.name not in seen:
                seen.add(c.name)
                stack.append(rules.traits[c.name])
        elif isinstance(c, m.All | m.Any_):
            stack.extend(c.items)
        elif isinstance(c, m.Not):
            stack.append(c.item)
    return [i.name for i in rules.inputs if i.type == "datetime" and i.name in read]


@command
def cmd_diff(args: argparse.Namespace) -> int:
    """Rule-change impact for a pull request: exit 1 when a version check fails."""
    import json

    from kare_rules.diff import diff_rules, render_json, render_markdown
    from kare_rules.engine import as_date
    from kare_rules.git_rules import OrgVersions
    from kare_rules.loader import load_rules
    from kare_rules.overrides import overrides_beside
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
        rules_option(args.before, "--before"), rules_option(args.after, "--after")
        # A copy of the old version (git show main:rules/acme/kare.yaml > old/kare.yaml) sits in any folder.
        before, after = load_rules(args.before, any_folder=True), load_rules(args.after, any_folder=True)
        if before.organization != after.organization:
            raise UsageError(f"--before is {before.organization} and --after is {after.organization}; compare one org")
        pairs = [
            OrgVersions(after.organization, before, after, overrides_beside(args.before, before),
                        overrides_beside(args.after, after))
        ]  # fmt: skip
        as_of = as_date(args.as_of) if args.as_of else None
    if args.output:
        _refuse_to_overwrite_what_diff_reads(args, [pair[0] for pair in pairs], as_of)
    reports = []
    for org, before, after, overrides_before, overrides_after, base_problem, base_version in pairs:
        pins = {
            "overrides_before": overrides_before,
            "overrides_after": overrides_after,
            "base_problem": base_problem,
            "base_version": base_version,
        }
        accounts, note = None, None
        if args.input:
            try:
                source = args.input.replace("{org}", org)
                # the same source template as kare run's: {as_of} is the date the impact is measured on
                accounts = read_accounts(source.replace("{as_of}", as_of.isoformat()) if as_of else source)
                reports.append(diff_rules(before, after, accounts, as_of, args.limit, **pins))
                continue
            except DataError as exc:
                if not args.base:
                    raise
                note = f"not computed: {exc}"  # one org's input problem must not hide the others
                err(f"kare diff: {org}: impact {note}")
        report = diff_rules(before, after, None, as_of, args.limit, **pins)
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
            pins = f", {len(r.override_changes)} override change(s)" if r.override_changes else ""
            check = r.version_check.message
            out(f"{r.organization}: {len(r.rule_changes)} rule change(s){pins}; version check: {check}")
        out(f"report written to {args.output}")
    else:
        sys.stdout.write(text)
    failed = [r for r in reports if not r.version_check.ok]
    for r in failed:
        # Located like every other problem of a rule file: at its `version:` line.
        err(f"kare diff: {r.version_at or r.organization}: {r.version_check.message}")
    return EXIT_FAIL if failed else EXIT_OK


def _refuse_to_overwrite_what_diff_reads(args: argparse.Namespace, orgs: list[str], as_of) -> None:
    """An --output that is a file kare diff reads — the accounts (`--input` with each organization's
    {org} and the {as_of} filled in, a DuckDB file) or a rule file — would be replaced by the report: a
    usage error before anything is written."""
    import glob
    import os

    target = Path(args.output)
    if not target.is_file():
        return
    read: list[tuple[str, str]] = []
    if args.input and not args.input.startswith("sql:"):
        for org in orgs:
            source = args.input.replace("{org}", org)
            source = source.replace("{as_of}", as_of.isoformat()) if as_of else source
            if source.startswith("duckdb:"):
                source = source.removeprefix("duckdb:").rpartition(":")[0]
            names = glob.glob(source, recursive=True) if any(ch in source for ch in "*?[") else [source]
            read += [("--input", name) for name in names]
    if args.base:
        read += [("--rules-dir", str(f)) for f in Path(args.rules_dir).glob("**/*.y*ml")]
    for option, path in (("--before", args.before), ("--after", args.after)) if not args.base else ():
        folder = Path(path).parent if Path(path).is_file() else Path(path)  # the rule file, its tests, overrides
        read += [(option, str(f)) for pattern in ("*.y*ml", "tests/*.y*ml") for f in folder.glob(pattern)]
    for option, name in read:
        if Path(name).is_file() and os.path.samefile(name, target):
            raise UsageError(
                f"--output {args.output} would overwrite {name}, which {option} reads; write the report to another file"
            )


def _accounts(n: int) -> str:
    return f"{n} account" if n == 1 else f"{n} accounts"
