"""Run commands: kare run (the run engine, no Dagster), kare sample, kare demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from kare_rules.cli.common import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    command,
    date_arg,
    err,
    out,
)
from kare_rules.errors import RuleFileError, UsageError

DEMO_WAIT = 30  # seconds kare demo waits for the warehouse (another run writing it), in each of its steps


@command
def cmd_run(args: argparse.Namespace) -> int:
    """Run one or every organization as of one date through the run engine, and summarize each run."""
    with _stop_signal_as_ctrl_c():
        return _run_organizations(args)


@contextlib.contextmanager
def _stop_signal_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `timeout`, systemd, a container stopping) ends a run as Ctrl-C does:
    logged in kare.runs as interrupted and said, instead of the process vanishing with nothing said."""

    from kare_rules.run.engine import stopped_by

    def interrupt(signum: int, frame: object) -> None:
        stopped_by("SIGTERM")  # kare.runs says what stopped the run, not 'Ctrl-C'
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (kare run called from a thread): SIGTERM stays as it was
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        stopped_by("Ctrl-C")


def _run_organizations(args: argparse.Namespace) -> int:
    from kare_rules.engine import as_date
    from kare_rules.loader import is_safe_org, organization_problems, organizations
    from kare_rules.run import RunFailed, RunInterrupted, Thresholds, run_organization
    from kare_rules.run.report import progress_bar, summary_lines
    from kare_rules.run.slicing import parse_size
    from kare_rules.sources import DEFAULT_INPUT
    from kare_rules.warehouse import Warehouse
    from kare_rules.warehouse.duckdb import DEFAULT_WAREHOUSE
    from kare_rules.warehouse.lock import holds_duckdb

    # As the Dagster layer reads it (README): with the settings exported for it, a run from another folder
    # found no organization.
    args.rules_dir = args.rules_dir or os.environ.get("KARE_RULES_DIR", "").strip() or "rules"
    root = Path(args.rules_dir)
    known = organizations(root)
    skipped = []  # organization folders --all-orgs could not run: they fail the command like a failed run
    if args.all_orgs:
        orgs = known
        refused = organization_problems(root)
        if not orgs:  # a cron job with a wrong --rules-dir must not succeed doing nothing
            if refused:
                raise RuleFileError(refused)
            _require_folder(root, args.rules_dir)
            raise UsageError(
                f"no organizations in {args.rules_dir}/: each is a folder {args.rules_dir}/<org>/ holding kare.yaml "
                "(kare init ORG --from SAMPLE makes one)"
            )
        for problem in refused:  # the others run; say which were left out and why
            err(f"kare run: skipped: {problem}")
        skipped = refused
    elif args.org:
        if not is_safe_org(args.org):
            raise UsageError(f"{args.org!r} is not an organization name (lowercase letters, digits and '-')")
        if args.org not in known:
            refused = [p for p in organization_problems(root) if Path(p.path).parent.name == args.org]
            if refused:
                raise RuleFileError(refused)
            _require_folder(root, args.rules_dir)
            raise UsageError(
                f"no rules for {args.org!r} in {args.rules_dir}/; organizations: {', '.join(known) or 'none'}"
            )
        orgs = [args.org]
    else:
        raise UsageError("name an organization with --org ORG, or run them all with --all-orgs")
    as_of = as_date(args.as_of or _env_as_of())
    thresholds = Thresholds(max_quarantine_share=args.max_quarantine_share, max_removed_share=args.max_removed_share,
                            allow_empty_input=args.allow_empty_input)  # fmt: skip
    budget = parse_size(args.memory_budget) if args.memory_budget else None
    # A variable set but blank (a CI template's empty input) is unset, as a shell's ${KARE_INPUT:-...} reads it.
    source = args.input or os.environ.get("KARE_INPUT", "").strip() or DEFAULT_INPUT
    # The Dagster layer's warehouse too: with the settings exported for it, a run from the command line
    # published into ./data/warehouse.duckdb, a second history the pipeline never reads.
    args.warehouse = args.warehouse or os.environ.get("KARE_WAREHOUSE", "").strip() or DEFAULT_WAREHOUSE
    _refuse_folder_warehouse(args.warehouse)
    warehouse = Warehouse(args.warehouse, wait=args.wait, on_wait=lambda what: err(f"  {what}"))
    failed: list[str] = []
    published: list[str] = []
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
            if len(orgs) > 1:  # the ones before it stay published (not those that failed): say which
                rest = orgs[orgs.index(org) + 1 :]
                also = f"; failed before it: {', '.join(failed)}" if failed else ""
                done = ", ".join(published) or "none"
                err(f"  published before it: {done}{also}; not run: {', '.join(rest) or 'none'}")
            return EXIT_INTERRUPTED
        except RunFailed as exc:
            failed.append(org)
            err(f"kare run: {org}: {exc}")
            if source == DEFAULT_INPUT and not Path(source.replace("{org}", org)).exists():
                # The person never named that path: it is where `kare sample` writes, not their accounts.
                err("  (that is the default input, where kare sample writes; name yours with --input or KARE_INPUT)")
            # said once: most refusals already end in it
            said = [] if "nothing was published" in str(exc) else ["nothing was published"]
            # only a warehouse that is one holds a previous run (not a new path, not some other file)
            kept = ["the tables are as they were"] if holds_duckdb(Path(args.warehouse)) else []
            logged = "(the failure is in kare.runs)" if exc.recorded else ""
            line = " ".join(part for part in ("; ".join([*said, *kept]), logged) if part)
            if line:
                err(f"  {line}")
            continue
        published.append(org)
        for line in summary_lines(result):
            out(line)
        if result.stopped:  # Ctrl-C came as it committed: published, and the command stops there
            rest = orgs[orgs.index(org) + 1 :]
            err(f"kare run: {org}: interrupted once published" + (f"; not run: {', '.join(rest)}" if rest else ""))
            return EXIT_INTERRUPTED
    if failed and len(orgs) > 1:  # in a long log of many organizations, the ones to look at, in one line
        err(f"kare run: {len(failed)} of {len(orgs)} organizations failed (above): {', '.join(failed)}")
    if skipped:  # a daily job must not succeed while an organization silently stops being published
        err(
            f"kare run: {len(skipped)} organization folder(s) of {args.rules_dir}/ skipped (above); "
            "fix them, or move them out of the rules directory"
        )
    return EXIT_FAIL if failed or skipped else EXIT_OK


def _env_as_of() -> str | None:
    """$KARE_AS_OF checked as --as-of is, its errors naming the variable (blank is unset: today)."""
    text = os.environ.get("KARE_AS_OF", "").strip()
    if not text:
        return None
    try:
        return date_arg(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"KARE_AS_OF: {exc}") from None


def demo_query(warehouse: str) -> str:
    """A command that shows the categories per organization: the Python kare runs on (a DuckDB command
    line of 2.0 or later is not installed with kare), the file opened read-only, so a run can still take it."""
    code = ("import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
            "con.sql(sys.argv[2]).show(); con.close()")  # fmt: skip
    query = "SELECT org, category, count(*) AS accounts FROM kare.account_categories GROUP BY ALL ORDER BY ALL"
    return shlex.join([sys.executable, "-c", code, warehouse, query])


def _refuse_folder_warehouse(path: str) -> None:
    """A folder given as the warehouse is a usage error before anything is written (not a DuckDB "IO Error"
    after a stray FOLDER.lock beside it)."""
    if Path(path).is_dir():
        example = Path(path) / "warehouse.duckdb"
        raise UsageError(f"the warehouse {path} is a folder; give a DuckDB file, e.g. {example}")


def _require_folder(root: Path, given: str) -> None:
    """A rules directory that is not there says so, rather than that it holds no organization."""
    if root.is_file():
        raise UsageError(f"the rules directory {given} is a file, not a folder; give the folder of <org>/kare.yaml "
                         "with --rules-dir, or set KARE_RULES_DIR")  # fmt: skip
    if not root.is_dir():
        raise UsageError(
            f"no rules directory {given}/ (give the folder of rules/<org>/kare.yaml with --rules-dir, or set "
            "KARE_RULES_DIR)"
        )


@command
def cmd_sample(args: argparse.Namespace) -> int:
    """Write deterministic monthly snapshots for every organization in the rules directory."""
    from kare_rules.engine import as_date
    from kare_rules.loader import find_rule_files, load_rules
    from kare_rules.synth import month_ends, snapshots

    root = Path(args.rules_dir)
    if not root.is_dir():  # not "nope:1:1: cannot read the file", nor a silent nothing for a folder without rules
        what = "is a file, not a folder" if root.is_file() else "does not exist"
        raise UsageError(f"--rules-dir {args.rules_dir} {what}; give the folder of <org>/kare.yaml, or run "
                         "from the folder that holds rules/")  # fmt: skip
    files = find_rule_files([root])
    if not files:
        raise UsageError(f"no rule files (<org>/kare.yaml) in {args.rules_dir}/; kare init ORG --from FILE makes one")
    dates = month_ends(as_date(args.last), args.months)
    for path in files:
        rules = load_rules(path)
        folder = Path(args.out) / rules.organization
        folder.mkdir(parents=True, exist_ok=True)
        for day, frame in snapshots(rules, args.accounts, dates, seed=args.seed):
            frame.write_parquet(folder / f"{day}.parquet")
        frame.write_parquet(folder / "latest.parquet")
        noun = "monthly snapshot" if len(dates) == 1 else "monthly snapshots"
        out(f"{rules.organization}: {len(dates)} {noun} {dates[0]} … {dates[-1]} "
            f"({args.accounts:,}+ accounts) in {folder}/")  # fmt: skip
    return EXIT_OK


@command
def cmd_demo(args: argparse.Namespace) -> int:
    """Run every organization over every snapshot in a sample directory, oldest first."""
    from kare_rules.cli.parser import build_parser  # the parser imports this module's siblings
    from kare_rules.warehouse import Warehouse

    sample = Path(args.sample)
    if not sample.is_dir():
        # kare sample reads the rules directory too: from elsewhere than the rules repository, name both
        where = "" if args.rules_dir == "rules" else f" --rules-dir {args.rules_dir}"
        if not Path(args.rules_dir).is_dir():
            raise UsageError(
                f"no sample in {sample}/ and no rules directory {args.rules_dir}/: run kare demo from the folder "
                "holding rules/<org>/kare.yaml, or give --rules-dir DIR and --sample DIR"
            )
        raise UsageError(f"no sample in {sample}/; create one with: kare sample --out {sample}{where}")
    code = EXIT_OK
    # Patient as its runs are: a run still writing (or its checkpoint) is waited for, not an error.
    _refuse_folder_warehouse(args.warehouse)
    warehouse = Warehouse(args.warehouse, wait=DEMO_WAIT, on_wait=lambda what: err(f"  {what}"))
    for org_dir in sorted(p for p in sample.iterdir() if p.is_dir()):
        dates = sorted(f.stem for f in org_dir.glob("*.parquet") if f.stem != "latest")
        last = warehouse.last_run(org_dir.name) if Path(args.warehouse).exists() else None
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
                "--input", str(org_dir / "{as_of}.parquet"), "--warehouse", args.warehouse, "--wait", str(DEMO_WAIT),
            ])  # fmt: skip
            done = cmd_run(ns)
            if done == EXIT_INTERRUPTED:  # Ctrl-C stops the demo, not only the date it came during
                return done
            code = max(code, done)
    hint = "or see docs/bi.md for dashboard queries (open the file read-only and briefly: a run waits for readers)"
    out(f"\nwarehouse: {args.warehouse} (schema kare). Try:\n  {demo_query(args.warehouse)}\n  {hint}")
    return code
