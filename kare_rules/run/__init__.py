"""The run engine: one organization, one as_of, read → validate → categorize → change sets → checks → publish."""

from kare_rules.run.engine import (
    ENGINES,
    OutOfOrder,
    RuleBundle,
    RunFailed,
    RunInterrupted,
    RunResult,
    categorize_run,
    load_bundle,
    run_organization,
)
from kare_rules.run.quality import CheckResult, RunBlocked, Thresholds

__all__ = ["ENGINES", "CheckResult", "OutOfOrder", "RuleBundle", "RunBlocked", "RunFailed", "RunInterrupted",
           "RunResult", "Thresholds", "categorize_run", "load_bundle", "run_organization"]  # fmt: skip
