"""Dagster entry point (`make dev`: `dagster dev -w workspace.yaml` on the project instance): the kare tables."""

import dagster as dg

from pipelines.kare import assets, resources, schedules, sensors

defs = dg.Definitions(
    assets=assets.ALL,
    jobs=[schedules.kare_job],
    schedules=[schedules.kare_schedule],
    sensors=[sensors.rule_version_sensor],
    resources={"kare": resources.KareSettings()},
)
