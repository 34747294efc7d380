"""Start a run for an organization when its rule file's version changes."""

import json
from pathlib import Path

import dagster as dg

from kare_rules.errors import KareError
from kare_rules.loader import load_rules
from pipelines.kare.partitions import organizations, rules_dir
from pipelines.kare.schedules import kare_job


def rule_versions(directory: Path) -> dict[str, str]:
    """org -> 'version@digest' of every valid rule file (invalid files are skipped: CI reports them)."""
    out = {}
    for org in organizations(directory):
        try:
            rules = load_rules(directory / org)
        except KareError:
            continue
        out[org] = f"{rules.version}@{rules.digest}"
    return out


@dg.sensor(job=kare_job, minimum_interval_seconds=60)
def rule_version_sensor(context: dg.SensorEvaluationContext):
    """A new rule version means new categories: run that organization now instead of tomorrow."""
    seen = json.loads(context.cursor) if context.cursor else {}
    now = rule_versions(rules_dir())
    for org, version in now.items():
        if seen and seen.get(org) != version:
            yield dg.RunRequest(run_key=f"{org}-{version}", partition_key=org)
    context.update_cursor(json.dumps(now))
