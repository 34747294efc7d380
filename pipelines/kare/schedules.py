"""One run per organization for each date partition, shortly after its window closes."""

import dagster as dg

from pipelines.kare.assets import kare_run
from pipelines.kare.partitions import CRON, as_of_of, cadence, date_partitions, org_partitions, partition_key

kare_job = dg.define_asset_job(
    "kare_publish",
    selection=dg.AssetSelection.assets(kare_run),
    description="Run the engine for one organization and date: publish every kare.* table and its checks.",
)


@dg.schedule(job=kare_job, cron_schedule=CRON[cadence()], execution_timezone="UTC")
def kare_schedule(context: dg.ScheduleEvaluationContext):
    """Every organization, for the last complete date window (daily: yesterday). The runs queue through the
    kare_warehouse pool: one publishes at a time."""
    complete = date_partitions.get_partition_keys(current_time=context.scheduled_execution_time)
    if not complete:
        return dg.SkipReason("no complete date window yet (KARE_START_DATE is in the future)")
    date_key = complete[-1]
    as_of = as_of_of(date_key)
    return [
        dg.RunRequest(
            run_key=f"{org}|{date_key}",
            partition_key=partition_key(org, date_key),
            tags={"kare/org": org, "kare/as_of": as_of.isoformat()},
        )
        for org in org_partitions.get_partition_keys()
    ]
