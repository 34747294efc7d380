"""Quality checks of a run, on the whole run (never per slice): blocking guards and warnings.

Each check names the table it judges, so the Dagster layer attaches it there and `kare run` prints it.
A blocking check that fails stops the run before anything is published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from kare_rules import model as m
from kare_rules.errors import DataError, UsageError, one_line


@dataclass(frozen=True)
class Thresholds:
    """Limits of the checks; configurable per organization (CLI options, Dagster resource config)."""

    max_quarantine_share: float = 0.2  # blocking
    max_removed_share: float = 0.5  # blocking: share of current accounts a run may remove
    allow_empty_input: bool = False  # blocking: an empty input is never a silent wipe
    warn_unassigned_share: float = 0.5
    warn_overlap_share: float = 0.5
    warn_mix_shift: float = 0.10

    def __post_init__(self) -> None:
        for name in ("max_quarantine_share", "max_removed_share", "warn_unassigned_share", "warn_overlap_share",
                     "warn_mix_shift"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
                raise UsageError(f"{name} must be a share between 0 and 1 (got {value!r})")


# The checks a run makes: name -> (the published table it judges, whether it blocks, what it checks). The
# Dagster layer declares one asset check per entry.
CHECKS: dict[str, tuple[str, bool, str]] = {
    "quarantine_share": ("quarantine", True, "Share of input rows that failed validation; above the limit the "
                         "run publishes nothing (blocking)."),
    "removed_share": ("category_history", True, "Share of current accounts the run removes because they left "
                      "the input; an empty input or too many removals publishes nothing (blocking)."),
    "unassigned_share": ("account_categories", False, "Share of accounts no category matched (warning)."),
    "overlap_share": ("account_categories", False, "Share of accounts more than one category matched (warning)."),
    "category_mix_shift": ("account_categories", False, "Largest change of a category's share since the run "
                           "before (warning)."),
    "history_invariants": ("category_history", False, "The run keeps one current row per account: each change "
                           "ends exactly the row it replaces and opens one (warning)."),
}  # fmt: skip


def check(name: str, passed: bool, metadata: dict) -> CheckResult:
    """The result of the check `name` (CHECKS says what it judges)."""
    table, blocking, description = CHECKS[name]
    return CheckResult(name, table, passed, blocking, description, metadata)


@dataclass(frozen=True)
class CheckResult:
    name: str
    table: str  # the published table it judges
    passed: bool
    blocking: bool
    description: str
    metadata: dict = field(default_factory=dict)

    def line(self) -> str:
        mark = "✓" if self.passed else ("✗" if self.blocking else "!")
        details = ", ".join(f"{k} {_show(v)}" for k, v in self.metadata.items())
        return f"{mark} {self.name} ({self.table}): {details}"


class RunBlocked(DataError):
    """A blocking check failed; nothing was published."""

    def __init__(self, message: str, check: CheckResult):
        super().__init__(message)
        self.check = check


def percent(limit: float) -> str:
    """A limit as the percentage it was given as: 0.2 -> '20%', 0.055 -> '5.5%', 0.005 -> '0.5%' (not '0%')."""
    return f"{limit * 100:.10g}%"


def share_over(share: float, limit: float) -> str:
    """A share above `limit`, with as many decimals as it takes to read as above it: 50.003% over a 50% limit
    is '50.003%', not '50.0%' (which reads as within it)."""
    for decimals in range(1, 7):
        text = f"{share * 100:.{decimals}f}"
        if float(text) > limit * 100:
            break
    return f"{text}%"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def quarantine_check(quarantine: pl.DataFrame, input_rows: int, limit: float) -> CheckResult:
    """Refuse a run whose quarantined rows are more than `limit` of its input rows."""
    share = quarantine.height / input_rows if input_rows else 0.0
    result = check("quarantine_share", share <= limit, {"share": share, "quarantined": quarantine.height,
                                                         "input_rows": input_rows, "limit": limit})  # fmt: skip
    if not result.passed:
        first = quarantine.sort("row_number").head(3)
        # The ids and reasons quote the data: a line break or ESC in a value is shown escaped, not obeyed by
        # the terminal or a CI log (where a line starting with '::' is a workflow command).
        examples = one_line("; ".join(
            f"row {r['row_number']} ({r['account_id'] or 'no key'}): {', '.join(r['reasons'])}"
            for r in first.iter_rows(named=True)
        ))  # fmt: skip
        valid = input_rows - quarantine.height
        # With no valid row a higher limit publishes no account: only the source can be fixed.
        fix = (
            "Fix the source: no row is valid, so a higher limit would publish no account"
            if valid <= 0
            else f"Fix the source or raise the limit (e.g. --max-quarantine-share {_enough(share)}, to publish the "
            f"{valid:,} valid row{'' if valid == 1 else 's'} and keep these aside with their reasons)"
        )
        raise RunBlocked(
            f"{quarantine.height:,} of {input_rows:,} input rows ({share_over(share, limit)}) failed validation, "
            f"above the limit of {percent(limit)}; nothing was published. First failures: {examples}. {fix}.",
            result,
        )
    return result


def _enough(share: float) -> str:
    """The smallest limit of two decimals that lets `share` through (0.31 for 30.4%), as an option reads it."""
    return f"{min(math.ceil(round(share * 100, 9)) / 100, 1.0):g}"


def removed_check(removed: int, current: int, input_rows: int, t: Thresholds) -> CheckResult:
    """Refuse an empty input, and a run that would remove more than the allowed share of current accounts."""
    share = removed / current if current else 0.0
    empty = input_rows == 0
    passed = (not empty or t.allow_empty_input) and share <= t.max_removed_share
    result = check("removed_share", passed, {"share": share, "removed": removed, "current_accounts": current,
                                             "limit": t.max_removed_share})  # fmt: skip
    if empty and not t.allow_empty_input:
        # Removing every current account is above any removed-share limit below 1: say both options at once,
        # rather than name one that, passed alone, only leads to the next refusal.
        also = " --max-removed-share 1" if current and t.max_removed_share < 1 else ""
        raise RunBlocked(
            f"the input has no rows; publishing it would remove all {current:,} current accounts. Nothing was "
            f"published. Check the source, or pass --allow-empty-input{also} if the organization really has no "
            "accounts any more.",
            result,
        )
    if not passed:
        raise RunBlocked(
            f"the run would remove {removed:,} of {current:,} current accounts "
            f"({share_over(share, t.max_removed_share)}: they are not in the input), above the limit of "
            f"{percent(t.max_removed_share)}; nothing was published. Check that the source is complete, or allow "
            "it with --max-removed-share (for example --max-removed-share 1).",
            result,
        )
    return result


def category_checks(
    counts: dict[str, int], overlapping: int | None, previous: dict | None, t: Thresholds
) -> list[CheckResult]:
    """Warnings on the categories: unassigned share, overlap share, mix shift against the last run.
    `overlapping` is None when the engine finds no overlaps (duckdb): the check then says so, where a share of
    0.0% would be untrue."""
    total = max(sum(counts.values()), 1)
    unassigned = counts.get("unassigned", 0) / total
    if overlapping is None:
        overlap_check = check("overlap_share", True, {"share": "not computed by the duckdb engine",
                                                      "limit": t.warn_overlap_share})  # fmt: skip
    else:
        overlap = overlapping / total
        overlap_check = check("overlap_share", overlap <= t.warn_overlap_share,
                              {"share": overlap, "limit": t.warn_overlap_share})  # fmt: skip
    shift = 0.0
    if previous is not None:
        before_total = max(sum(int(previous.get(c) or 0) for c in m.ALL_CATEGORIES), 1)
        shift = max(abs(counts.get(c, 0) / total - int(previous.get(c) or 0) / before_total) for c in m.ALL_CATEGORIES)
    return [
        check("unassigned_share", unassigned <= t.warn_unassigned_share,
              {"share": unassigned, "limit": t.warn_unassigned_share}),
        overlap_check,
        check("category_mix_shift", shift <= t.warn_mix_shift,
              {"largest_share_change": shift, "limit": t.warn_mix_shift,
               "previous_run": "none" if previous is None else "compared"}),
    ]  # fmt: skip


def history_check(closed: int, expected_closes: int, opened: pl.Series) -> CheckResult:
    """The change set keeps the history whole: every close ended exactly one current row, and no account
    got two new current rows."""
    doubled = int(opened.is_duplicated().sum()) if opened.len() else 0
    problems = []
    if closed != expected_closes:
        problems.append(f"{expected_closes:,} current rows should have ended but {closed:,} did")
    if doubled:
        problems.append(f"{doubled:,} accounts got two new current rows")
    return check("history_invariants", not problems, {"problems": "; ".join(problems) or "none"})
