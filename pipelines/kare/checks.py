"""Asset checks, computed inside their assets (check_specs) so that each runs per organization."""

from __future__ import annotations

import dagster as dg
import polars as pl

from kare_rules.history import history_problems
from pipelines.kare.metadata import counts, shares


def quarantine_check(quarantined: int, input_rows: int, fail_limit: float) -> dg.AssetCheckResult:
    """Warn well before the share at which a run refuses to publish."""
    share = quarantined / max(input_rows, 1)
    return dg.AssetCheckResult(
        check_name="quarantine_share",
        asset_key="validated_accounts",
        passed=share <= fail_limit / 4,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": quarantined, "input_rows": input_rows, "share": share, "fail_limit": fail_limit},
    )


def history_check(history: pl.DataFrame) -> dg.AssetCheckResult:
    """Exactly one current row per account; intervals without gaps or overlaps."""
    problems = history_problems(history)
    return dg.AssetCheckResult(
        check_name="history_invariants",
        asset_key="category_history",
        passed=not problems,
        metadata={"problems": "\n".join(problems) or "none"},
    )


def category_checks(result: pl.DataFrame, last_run: dict | None, kare) -> list[dg.AssetCheckResult]:
    """Unassigned share, overlap share, and the category mix against the previous run's counts (warnings)."""
    total = max(result.height, 1)
    unassigned = result.filter(pl.col("category") == "unassigned").height / total
    overlap = result.filter(pl.col("overlaps").list.len() > 0).height / total
    now = counts(result)
    before = shares(last_run) if last_run else None
    shift = 0.0
    if before is not None:
        joined = now.join(before, on="category", suffix="_before")
        shift = float((joined["share"] - joined["share_before"]).abs().max())
    warn = dg.AssetCheckSeverity.WARN
    return [
        dg.AssetCheckResult(check_name="unassigned_share", asset_key="account_categories",
                            passed=unassigned <= kare.warn_unassigned_share, severity=warn,
                            metadata={"share": unassigned, "limit": kare.warn_unassigned_share}),
        dg.AssetCheckResult(check_name="overlap_share", asset_key="account_categories",
                            passed=overlap <= kare.warn_overlap_share, severity=warn,
                            metadata={"share": overlap, "limit": kare.warn_overlap_share}),
        dg.AssetCheckResult(check_name="category_mix_shift", asset_key="account_categories",
                            passed=shift <= kare.warn_mix_shift, severity=warn,
                            metadata={"largest_share_change": shift, "limit": kare.warn_mix_shift,
                                      "previous_run": "none" if before is None else "compared"}),
    ]  # fmt: skip
