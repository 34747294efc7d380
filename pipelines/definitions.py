"""Dagster entry point (`dagster dev -w workspace.yaml`, `dg dev`): one code location, the kare domain."""

import dagster as dg

from pipelines.kare import assets, resources, schedules, sensors

defs = dg.Definitions(
    assets=assets.ALL,
    jobs=[schedules.kare_job],
    schedules=[schedules.daily],
    sensors=[sensors.rule_version_sensor],
    resources=resources.default_resources(),
    executor=dg.in_process_executor,
)
