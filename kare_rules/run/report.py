"""What a run tells a person: a progress bar while it works, a summary and its checks when it is done."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import polars as pl

from kare_rules.model import ALL_CATEGORIES
from kare_rules.run.engine import SOON_DAYS, Progress, RunResult
from kare_rules.run.history import real_moves

STATUS = {
    "published": "published",
    "unchanged": "unchanged (same rules, overrides, data and engine as the last run)",
}


def _listed(result: RunResult) -> list[str]:
    """The categories the summary lists: the rules' own in precedence order and unassigned, then any other
    some account has (an override may pin one the rules do not define)."""
    return [*result.shown, *(c for c in ALL_CATEGORIES if c not in result.shown and result.run[c])]


def summary_lines(result: RunResult, polars_engine: str = "run with --engine polars") -> list[str]:
    """The run's summary: input, categories, moves, actions, then one line per check. An unchanged re-run
    published nothing: its figures are those of the run already published, and say so. `polars_engine`
    says how to ask for the Polars engine where the summary is read (kare run's option, or in Dagster the
    resource's setting)."""
    run, moves = result.run, result.transitions
    sliced = f", {result.slices} slices" if result.slices > 1 else ""
    lines = [
        f"{run['org']} {run['rules_version']} as of {run['as_of']}: {STATUS.get(run['status'], run['status'])} "
        f"(run {run['run_id']}{sliced})",
    ]
    if result.unchanged:
        lines.append("  nothing new was published: the figures below are those the run already published")
    since = "the run before it" if result.unchanged else "the last run"
    lines += [
        f"  input     {run['input_rows']:,} rows: {run['valid_rows']:,} valid, {run['quarantined_rows']:,} quarantined"
        + (" (see kare.quarantine)" if run["quarantined_rows"] else ""),
        "  category  " + " · ".join(f"{c} {run[c] or 0:,}" for c in _listed(result)),
    ]
    real = real_moves(moves).sort("accounts", descending=True)
    top = _kinds(real, "kare.category_transitions")
    new = moves.filter(pl.col("from_category") == "new")["accounts"].sum()
    gone = moves.filter(pl.col("to_category") == "removed")["accounts"].sum()
    lines.append(f"  moves     {run['moved'] or 0:,} since {since}" + (f" ({top})" if top else "")
                 + f"; {new:,} new, {gone:,} removed")  # fmt: skip
    lines.append(f"  actions   {run['actions_opened'] or 0:,} opened, {run['actions_closed'] or 0:,} closed")
    kinds = _kinds(result.upcoming, "kare.upcoming_moves")
    if result.early_warning:
        lines.append(f"  upcoming  {result.moving_soon:,} will move within {SOON_DAYS} days if nothing changes"
                     + (f" ({kinds})" if kinds else ""))  # fmt: skip
    else:
        lines.append("  upcoming  not computed: the duckdb engine gives categories only (no next moves, edges "
                     f"or watch actions); {polars_engine} for them")  # fmt: skip
    lines.extend(f"  note      {note}" for note in result.notes)
    if result.checks:
        lines.append("  checks    " + result.checks[0].line())
        lines.extend("            " + c.line() for c in result.checks[1:])
    return lines


def _kinds(moves: pl.DataFrame, table: str) -> str:
    """The four largest from → to counts (rows already sorted), and where to find the rest."""
    top = ", ".join(
        f"{r['from_category']} → {r['to_category']} {r['accounts']:,}" for r in moves.head(4).iter_rows(named=True)
    )
    rest = moves.height - 4
    return top + (f", and {rest} more {'kind' if rest == 1 else 'kinds'} ({table})" if rest > 0 else "")


# Off a terminal (a CI log, a file) a long run says where it is once a minute; a short one says nothing.
PLAIN_EVERY = 60.0


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool | None = None) -> Iterator[Progress]:
    """A rich progress bar (step, slice, ETA) on a terminal; otherwise a line at most every PLAIN_EVERY
    seconds (none for a run shorter than that), so that logs and CI stay clean but a long run shows life."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield progress_lines(label)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = bar.add_task(label, total=1)
    with bar:

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label}: {what}", completed=done, total=max(total, 1))

        yield update


def progress_lines(label: str, every: float = PLAIN_EVERY, clock: Callable[[], float] = time.monotonic) -> Progress:
    """Progress as plain lines on stderr: the step, the share done, the time taken and left, at most one
    line per `every` seconds and the first after `every` seconds."""
    start = last = clock()

    def update(what: str, done: int, total: int) -> None:
        nonlocal last
        now = clock()
        if now - last < every:
            return
        last = now
        share = done / max(total, 1)
        left = f", about {_duration((now - start) * (1 - share) / share)} left" if 0 < share < 1 else ""
        print(f"{label}: {what} ({share:.0%} done after {_duration(now - start)}{left})", file=sys.stderr, flush=True)

    return update


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"
