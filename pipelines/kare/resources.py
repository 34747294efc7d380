"""Resources: where the rules, the accounts and the warehouse are, and the staging I/O between assets."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import polars as pl

from kare_rules.engine import as_date
from kare_rules.loader import load_rules, rule_file_in
from kare_rules.model import RuleSet
from kare_rules.overrides import OVERRIDES_FILE, Override, load_overrides
from kare_rules.sources import DEFAULT_INPUT, read_source
from kare_rules.warehouse import DEFAULT_WAREHOUSE, Warehouse


class KareSettings(dg.ConfigurableResource):
    """Everything a run needs to know; each field has an environment-variable default."""

    rules_dir: str = os.environ.get("KARE_RULES_DIR", "rules")
    warehouse: str = os.environ.get("KARE_WAREHOUSE", DEFAULT_WAREHOUSE)
    input: str = os.environ.get("KARE_INPUT", DEFAULT_INPUT)
    as_of: str | None = os.environ.get("KARE_AS_OF")
    max_quarantine_share: float = float(os.environ.get("KARE_MAX_QUARANTINE_SHARE", "0.2"))
    engine: str = os.environ.get("KARE_ENGINE", "polars")
    warn_unassigned_share: float = 0.5
    warn_overlap_share: float = 0.5
    warn_mix_shift: float = 0.10

    def run_date(self) -> dt.date:
        return as_date(self.as_of)

    def rules(self, org: str) -> RuleSet:
        return load_rules(Path(self.rules_dir) / org)

    def rules_text(self, org: str) -> str:
        return rule_file_in(Path(self.rules_dir) / org).read_text(encoding="utf-8")

    def overrides(self, org: str, rules: RuleSet) -> tuple[Override, ...]:
        return load_overrides(Path(self.rules_dir) / org / OVERRIDES_FILE, rules)

    def source(self, org: str) -> str:
        return self.input.replace("{org}", org).replace("{as_of}", self.run_date().isoformat())

    def read_accounts(self, org: str) -> pl.DataFrame:
        return read_source(self.source(org)).collect()

    def open_warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse)


class StagingIOManager(dg.ConfigurableIOManager):
    """Frames between assets as Parquet files per organization, so any asset can be re-run alone."""

    directory: str = os.environ.get("KARE_STAGING", "data/staging")

    def _path(self, asset_key: dg.AssetKey, context) -> Path:
        part = context.partition_key if context.has_partition_key else "all"
        return Path(self.directory) / part / f"{'/'.join(asset_key.path)}.parquet"

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        path = self._path(context.asset_key, context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        obj.write_parquet(tmp)
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context.asset_key, context)
        if not path.exists():
            raise dg.Failure(f"{path} is missing: materialize the upstream asset for this organization first")
        return pl.read_parquet(path)


def default_resources(**settings) -> dict:
    staging = settings.pop("staging", None)
    io = StagingIOManager(directory=staging) if staging else StagingIOManager()
    return {"kare": KareSettings(**settings), "io_manager": io}
