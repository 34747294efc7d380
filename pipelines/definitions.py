"""Dagster entry point (`dagster dev -w workspace.yaml`, `dg dev`): the kare tables, their schedule and sensor."""

import dagster as dg

from pipelines.kare import assets, resources, schedules, sensors

defs = dg.Definitions(
    assets=assets.ALL,
    jobs=[schedules.kare_job],
    schedules=[schedules.kare_schedule],
    sensors=[sensors.rule_version_sensor],
    resources={"kare": resources.KareSettings()},
)
