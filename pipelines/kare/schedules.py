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
        # Windows are whole (weekly: Sunday to Saturday), so the first may begin days after KARE_START_DATE and a
        # tick can find none complete though that date is past: name the window awaited and when it closes.
        first = date_partitions.get_next_partition_window(date_partitions.start)
        first_key = first.start.date().isoformat()
        return dg.SkipReason(
            f"no complete date window yet: the first, {first_key} (as of {as_of_of(first_key, date_partitions)}), "
            f"closes {first.end:%Y-%m-%d %H:%M} UTC (the first whole {cadence()} window on or after KARE_START_DATE)"
        )
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
