"""A daily run of every organization."""

import dagster as dg

from pipelines.kare.assets import ALL
from pipelines.kare.partitions import org_partitions

kare_job = dg.define_asset_job(
    "kare_daily", selection=dg.AssetSelection.assets(*ALL),
    description="Ingest, validate, categorize and publish one organization.",
)  # fmt: skip


@dg.schedule(job=kare_job, cron_schedule="0 6 * * *", execution_timezone="UTC")
def daily(context: dg.ScheduleEvaluationContext):
    """Every organization, every morning at 06:00 UTC, as of that day."""
    day = context.scheduled_execution_time.date().isoformat()
    for org in org_partitions.get_partition_keys():
        yield dg.RunRequest(
            run_key=f"{org}-{day}",
            partition_key=org,
            run_config={"resources": {"kare": {"config": {"as_of": day}}}},
        )
