"""Asset checks: the engine's quality checks, attached to the tables they judge, run per partition."""

from __future__ import annotations

import dagster as dg

from kare_rules.run import CheckResult
from kare_rules.run.quality import CHECKS
from pipelines.kare.partitions import chosen_dagster_features, partitions


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
