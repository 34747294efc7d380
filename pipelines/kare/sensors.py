"""Re-run an organization's latest date partition when its rule file or its overrides.yaml change."""

import json
from pathlib import Path

import dagster as dg

from kare_rules.errors import KareError
from kare_rules.run import load_bundle
from pipelines.kare.assets import data_version_of
from pipelines.kare.partitions import date_partitions, org_partitions, organizations, partition_key, rules_dir
from pipelines.kare.schedules import kare_job


def rule_versions(directory: Path) -> dict[str, str]:
    """org -> 'version@digest' of every valid rule file, with the overrides' digest when it has overrides
    (invalid files are skipped: CI reports them)."""
    out = {}
    for org in organizations(directory):
        try:
            bundle = load_bundle(directory, org)
        except KareError:
            continue
        out[org] = f"{bundle.rules.version}@{data_version_of(bundle)}"
    return out


@dg.sensor(job=kare_job, minimum_interval_seconds=60)
def rule_version_sensor(context: dg.SensorEvaluationContext):
    """A new rule version means new categories: re-run the last complete date with it instead of waiting
    for the next one (a re-run of the last published date replaces it)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    now = rule_versions(rules_dir())
    date_key = date_partitions.get_last_partition_key()
    known = set(org_partitions.get_partition_keys())
    for org, version in now.items():
        if seen and seen.get(org) != version and org in known and date_key:
            yield dg.RunRequest(run_key=f"{org}|{date_key}|{version}", partition_key=partition_key(org, date_key))
    context.update_cursor(json.dumps(now))
