"""Re-run an organization's last published date when its rule file or its overrides.yaml change."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from kare_rules.errors import KareError
from kare_rules.run import load_bundle
from kare_rules.warehouse import Warehouse
from pipelines.kare.assets import data_version_of
from pipelines.kare.partitions import date_partitions, org_partitions, organizations, partition_key, rules_dir
from pipelines.kare.resources import KareSettings
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


def last_published_date_key(warehouse: Warehouse, org: str) -> str | None:
    """The date partition of the organization's last published run, or None when it has none (in Dagster's
    dates). Not the last complete date: when that one is not published yet (before the schedule's 06:00, or
    after a missed day) running it would publish past the dates in between, which could then never run."""
    last = warehouse.last_run(org)
    if last is None:
        return None
    moment = dt.datetime.combine(last["as_of"], dt.time(), tzinfo=dt.UTC)
    key = date_partitions.get_partition_key_for_timestamp(moment.timestamp())
    return key if date_partitions.has_partition_key(key) else None


@dg.sensor(job=kare_job, minimum_interval_seconds=60)
def rule_version_sensor(context: dg.SensorEvaluationContext, kare: KareSettings):
    """A new rule version means new categories: re-run the organization's last published date with it instead
    of waiting for the next one (a re-run of the last published date replaces it)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    now = rule_versions(rules_dir())
    known = set(org_partitions.get_partition_keys())
    warehouse = Warehouse(kare.warehouse)  # no wait: a busy warehouse is looked at again on the next tick
    for org, version in now.items():
        if not seen or seen.get(org) == version or org not in known:
            continue
        try:
            date_key = last_published_date_key(warehouse, org)
        except KareError as exc:
            context.log.info(f"{org}: the warehouse cannot be read now ({exc}); trying again on the next tick")
            now[org] = seen.get(org)
            continue
        if date_key:
            yield dg.RunRequest(run_key=f"{org}|{date_key}|{version}", partition_key=partition_key(org, date_key))
    context.update_cursor(json.dumps(now))
