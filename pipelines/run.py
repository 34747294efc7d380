"""`kare run`: materialize one organization's asset graph in-process and summarize what changed."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import polars as pl

from kare_rules.engine import as_date
from kare_rules.errors import KareError
from kare_rules.warehouse import Warehouse, warehouse_lock
from pipelines.kare.assets import ALL
from pipelines.kare.resources import default_resources

STEPS = ["raw_accounts", "run_manifest", "validated_accounts", "account_categories", "category_history",
         "category_transitions", "action_queue", "runs"]  # fmt: skip


@dataclass
class RunSummary:
    run: dict
    transitions: pl.DataFrame


class RunFailed(KareError):
    """A step failed; nothing was published."""


def _progress_logger(report: Callable[[str], None]) -> dg.LoggerDefinition:
    started = time.monotonic()
    done: list[str] = []

    @dg.logger
    def progress(_context):
        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                event = getattr(record, "dagster_meta", {}).get("dagster_event")
                if event is None or not event.step_key:
                    return
                if event.event_type_value == "STEP_SUCCESS":
                    done.append(event.step_key)
                    report(f"  [{len(done)}/{len(STEPS)}] {event.step_key} ({time.monotonic() - started:.1f} s)")

        log = logging.Logger("kare-progress", level=logging.DEBUG)
        log.addHandler(Handler())
        return log

    return progress


def run_org(
    org: str,
    *,
    warehouse: str,
    input: str | None = None,
    as_of: str | None = None,
    rules_dir: str = "rules",
    staging: str | None = None,
    max_quarantine_share: float = 0.2,
    engine: str = "polars",
    wait: float = 0.0,
    report: Callable[[str], None] = lambda _: None,
) -> RunSummary:
    """Run the asset graph for one organization; raise RunFailed (with the step's own message) on failure."""
    settings = {"rules_dir": rules_dir, "warehouse": warehouse, "max_quarantine_share": max_quarantine_share,
                "engine": engine}  # fmt: skip
    if input:
        settings["input"] = input
    if as_of:
        settings["as_of"] = as_of
    if staging:
        settings["staging"] = staging
    with warehouse_lock(warehouse, timeout=wait):
        return _materialize(org, settings, report)


def _materialize(org: str, settings: dict, report: Callable[[str], None]) -> RunSummary:
    job = dg.Definitions(
        assets=ALL,
        resources=default_resources(**dict(settings)),
        jobs=[dg.define_asset_job("kare_run", selection=dg.AssetSelection.assets(*ALL))],
        loggers={"progress": _progress_logger(report)},
        executor=dg.in_process_executor,
    ).resolve_job_def("kare_run")
    result = job.execute_in_process(
        partition_key=org,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config={"loggers": {"progress": {}}},
    )
    if not result.success:
        raise RunFailed(_failure_message(result))
    run = result.output_for_node("runs").row(0, named=True)
    moves = result.output_for_node("category_transitions")
    return RunSummary(run=run, transitions=moves)


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            cause = error.cause or error
            while cause.cause is not None and cause.cls_name not in ("KareError", "DataError", "RuleFileError"):
                cause = cause.cause
            message = cause.message.strip()
            # Dagster prefixes "ClassName: "; people need only the sentence.
            if ": " in message.split("\n")[0]:
                head, _, rest = message.partition(": ")
                if head.isidentifier() or head.replace(".", "").isidentifier():
                    message = rest
            return f"step {event.step_key} failed: {message}"
    return "the run failed before any step ran"


def record_failure(warehouse: str, org: str, as_of: str | None, message: str) -> None:
    """Log a failed run in kare.runs; a warehouse that cannot even take that is left alone."""
    with contextlib.suppress(KareError):
        Warehouse(warehouse).record_failure({"org": org, "as_of": as_date(as_of)}, message)
