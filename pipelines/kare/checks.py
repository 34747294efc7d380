"""Asset checks: the engine's quality checks, attached to the tables they judge, run per partition."""

from __future__ import annotations

import dagster as dg

from kare_rules.run import CheckResult
from pipelines.kare.partitions import chosen_dagster_features, partitions

# name -> (table judged, blocking, what it checks); the engine's CheckResult names, one spec each.
CHECKS = {
    "quarantine_share": ("quarantine", True, "Share of input rows that failed validation; above the limit the "
                         "run publishes nothing."),
    "removed_share": ("category_history", True, "Share of current accounts the run removes; an empty input or "
                      "too many removals publishes nothing."),
    "unassigned_share": ("account_categories", False, "Share of accounts no category matched."),
    "overlap_share": ("account_categories", False, "Share of accounts more than one category matched."),
    "category_mix_shift": ("account_categories", False, "Largest change of a category's share since the last run."),
    "history_invariants": ("category_history", False, "One current row per account; each change ends the row "
                           "it replaces."),
}  # fmt: skip


def table_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["kare", table])


# Partitioned like the tables (a Dagster preview feature): each result belongs to one organization and date.
with chosen_dagster_features():
    SPECS = [
        dg.AssetCheckSpec(name, asset=table_key(table), blocking=blocking, description=text, partitions_def=partitions)
        for name, (table, blocking, text) in CHECKS.items()
    ]


def check_result(check: CheckResult) -> dg.AssetCheckResult:
    """A blocking check fails with ERROR severity, a warning with WARN."""
    severity = dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=check.name,
        asset_key=table_key(check.table),
        passed=check.passed,
        severity=severity,
        description=check.description,
        metadata={k: v for k, v in check.metadata.items() if v is not None},
    )


def unchanged(run_id: str) -> list[dg.AssetCheckResult]:
    """A re-run with the same rules, data and engine publishes nothing new: nothing new to judge. Each check
    passes and names the run whose results stand (Dagster requires a result for every spec)."""
    return [
        dg.AssetCheckResult(
            check_name=name,
            asset_key=table_key(table),
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Unchanged: same rules, data and engine as run {run_id}, whose check results stand.",
            metadata={"unchanged_run": run_id},
        )
        for name, (table, _, _) in CHECKS.items()
    ]
