"""The Dagster layer over the run engine: a materialization publishes what `kare run` publishes, checks are
reported per partition (a blocking one fails the step and publishes nothing), two organizations at once both
publish, the definitions load as `dagster dev` loads them, and the schedule asks for one run per organization."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Partitions are read when pipelines is imported: the repo's rules name the organizations, dates are daily.
os.environ.setdefault("KARE_RULES_DIR", str(ROOT / "rules"))
os.environ.setdefault("KARE_CADENCE", "daily")
USES_PIPELINE_SETTINGS = True  # tests/conftest.py: the Dagster layer reads them

import dagster as dg  # noqa: E402

from kare_rules.cli import main as kare  # noqa: E402
from kare_rules.loader import load_rules  # noqa: E402
from kare_rules.run import RunResult  # noqa: E402, F401  (before kare_rules.warehouse: see the lead's import cycle)
from kare_rules.synth import month_ends, snapshots  # noqa: E402
from kare_rules.tables import TABLES, json_contract, same_rows, write_contracts  # noqa: E402
from kare_rules.warehouse import Warehouse  # noqa: E402
from pipelines.kare import assets, schedules, sensors  # noqa: E402
from pipelines.kare.partitions import org_partitions, partition_key  # noqa: E402
from pipelines.kare.resources import KareSettings  # noqa: E402

ORG, OTHER = "cloudnine", "forge-industrial"
ACCOUNTS = 300
DATES = month_ends(dt.date(2026, 3, 31), 3)  # daily partitions: each date is its own partition key
CHECKS = {  # name -> (table judged, severity)
    "quarantine_share": ("quarantine", dg.AssetCheckSeverity.ERROR),
    "removed_share": ("category_history", dg.AssetCheckSeverity.ERROR),
    "unassigned_share": ("account_categories", dg.AssetCheckSeverity.WARN),
    "overlap_share": ("account_categories", dg.AssetCheckSeverity.WARN),
    "category_mix_shift": ("account_categories", dg.AssetCheckSeverity.WARN),
    "history_invariants": ("category_history", dg.AssetCheckSeverity.WARN),
}


class Setup:
    """Two organizations' rules and generated monthly snapshots in a temporary folder."""

    def __init__(self, root: Path):
        self.root = root
        self.rules_dir = root / "rules"
        for org in (ORG, OTHER):
            shutil.copytree(ROOT / "rules" / org, self.rules_dir / org)
            (root / "input" / org).mkdir(parents=True)
            for day, frame in snapshots(load_rules(self.rules_dir / org), ACCOUNTS, DATES, seed=11):
                if org == ORG:  # a few invalid rows (5%, under the limit): quarantine has rows too
                    frame = with_bad_nps(frame, every=20)
                frame.write_parquet(root / "input" / org / f"{day}.parquet")
        self.input = str(root / "input" / "{org}" / "{as_of}.parquet")

    def settings(self, warehouse: Path, **kw) -> KareSettings:
        return KareSettings(rules_dir=str(self.rules_dir), warehouse=str(warehouse), input=kw.pop("input", self.input),
                            wait=60.0, **kw)  # fmt: skip

    def materialize(self, warehouse: Path, day: dt.date, org: str = ORG, **kw) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [assets.kare_run],
            partition_key=partition_key(org, day.isoformat()),
            resources={"kare": self.settings(warehouse, **kw)},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    def kare_run(self, warehouse: Path, day: dt.date, org: str = ORG) -> int:
        return kare(["run", "--org", org, "--as-of", day.isoformat(), "--input", self.input, "--warehouse",
                     str(warehouse), "--rules-dir", str(self.rules_dir)])  # fmt: skip


def with_bad_nps(frame: pl.DataFrame, every: int) -> pl.DataFrame:
    """Every `every`-th row gets an NPS of 500, above the rule file's maximum of 100."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) % every == 0).then(500).otherwise(pl.col("nps")).alias("nps")
    )


def tables(warehouse: Path) -> dict[str, pl.DataFrame]:
    wh = Warehouse(warehouse)
    return {t: wh.read(t) for t in TABLES}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def published(setup):
    """Two dates materialized through Dagster on one warehouse, and through `kare run` on another."""
    by_dagster, by_cli = setup.root / "dagster.duckdb", setup.root / "cli.duckdb"
    results = [setup.materialize(by_dagster, day) for day in DATES[:2]]
    assert [r.success for r in results] == [True, True]
    assert [setup.kare_run(by_cli, day) for day in DATES[:2]] == [0, 0]
    return by_dagster, by_cli, results


# ---- the same rows as kare run ----------------------------------------------------------------------


def test_a_materialization_publishes_the_same_rows_as_kare_run(published):
    by_dagster, by_cli, _ = published
    dagster_tables, cli_tables = tables(by_dagster), tables(by_cli)
    for table in TABLES:
        a, b = dagster_tables[table], cli_tables[table]
        if table == "runs":
            a, b = a.drop("started_at", "finished_at"), b.drop("started_at", "finished_at")
        assert a.height > 0, table
        assert same_rows(a, b), f"{table} differs between the Dagster materialization and kare run"
    runs = dagster_tables["runs"].sort("as_of")
    assert runs["as_of"].to_list() == DATES[:2]
    assert runs["status"].to_list() == ["published", "published"]


# ---- metadata ----------------------------------------------------------------------------------------


def test_every_table_reports_its_row_count_column_schema_and_rules(published):
    by_dagster, _, results = published
    second = results[1]
    events = {e.asset_key.path[-1]: e.materialization for e in second.get_asset_materialization_events()}
    assert set(events) == set(assets.PUBLISHED)
    run = Warehouse(by_dagster).last_run(ORG)
    history = Warehouse(by_dagster).read("category_history", ORG)
    transitions = Warehouse(by_dagster).read("category_transitions", ORG).filter(pl.col("as_of") == DATES[1])
    want_rows = {
        "account_categories": run["valid_rows"],
        "category_history": history.filter(pl.col("run_id") == run["run_id"]).height,
        "category_transitions": transitions.height,
        "action_queue": run["actions_opened"],
        "quarantine": run["quarantined_rows"],
        "runs": 1,
    }
    for table, materialization in events.items():
        meta = materialization.metadata
        assert meta["dagster/row_count"].value == want_rows[table], table
        schema = meta["dagster/column_schema"].schema
        assert [(c.name, c.description) for c in schema.columns] == [(n, d) for n, _, d in TABLES[table][2]]
        not_null = {c.name for c in schema.columns if not c.constraints.nullable}  # the contract's never-null columns
        assert not_null == set(json_contract(table)["x-not-null"]) and "org" in not_null, table
        assert meta["rules_version"].value == run["rules_version"]
        assert meta["rules_digest"].value == run["rules_digest"]
        assert (meta["org"].value, meta["as_of"].value, meta["run_id"].value) == (ORG, str(DATES[1]), run["run_id"])
        assert materialization.partition == f"{DATES[1]}|{ORG}"
    categories = {
        r.data["category"]: r.data["accounts"] for r in events["account_categories"].metadata["categories"].records
    }
    assert categories == {c: run[c] for c in categories}
    matrix = events["category_transitions"].metadata["transition_matrix"].records
    cells = sum(v for r in matrix for k, v in r.data.items() if k != "from_category")
    assert cells == transitions["accounts"].sum()
    tags = second.dagster_run.tags
    assert (tags["kare/org"], tags["kare/as_of"], tags["kare/run_id"]) == (ORG, str(DATES[1]), run["run_id"])
    assert tags["kare/rules_digest"] == run["rules_digest"]


def test_what_the_summary_notes_is_in_the_runs_tables_metadata(setup, tmp_path, monkeypatch):
    # A memory budget no slicing keeps to: `kare run` prints a note; Dagster shows it on kare/runs.
    from kare_rules.run import slicing

    monkeypatch.setattr(slicing, "MIN_SLICE_ROWS", 2)
    result = setup.materialize(tmp_path / "wh.duckdb", DATES[0], memory_budget="64MiB")
    assert result.success
    events = {e.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()}
    notes = events["runs"].metadata["notes"].value
    assert notes.startswith("- memory peaked at ") and "above the budget of 64 MiB" in notes, notes
    assert "notes" not in events["account_categories"].metadata


def test_the_upcoming_moves_are_left_out_of_the_metadata_when_the_engine_computes_none(setup, tmp_path):
    # With the duckdb engine (no next moves) account_categories showed 'moving_within_30_days: 0'.
    events = {}
    for engine in ("polars", "duckdb"):
        result = setup.materialize(tmp_path / f"{engine}.duckdb", DATES[0], engine=engine)
        assert result.success
        [categories] = [e.materialization for e in result.get_asset_materialization_events()
                        if e.asset_key.path[-1] == "account_categories"]  # fmt: skip
        events[engine] = categories.metadata
    assert {"moving_within_30_days", "upcoming_moves"} <= set(events["polars"])
    assert not {"moving_within_30_days", "upcoming_moves"} & set(events["duckdb"])
    assert "categories" in events["duckdb"]


def test_the_overlap_check_says_the_duckdb_engine_computes_no_overlaps_instead_of_a_share_of_0(setup, tmp_path):
    # The SQL engine finds no overlaps, and overlap_share reported 'share 0.0%' where Polars found some.
    shares = {}
    for engine in ("polars", "duckdb"):
        result = setup.materialize(tmp_path / f"{engine}.duckdb", DATES[0], engine=engine)
        [overlap] = [e for e in result.get_asset_check_evaluations() if e.check_name == "overlap_share"]
        assert overlap.passed
        shares[engine] = overlap.metadata["share"].value
    assert shares["polars"] > 0
    assert shares["duckdb"] == "not computed by the duckdb engine"


def test_the_logged_summary_says_in_dagster_terms_how_to_get_the_upcoming_moves(setup, tmp_path):
    """With the duckdb engine the summary's upcoming line said 'run with --engine polars', an option of kare run."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([assets.kare_run], partition_key=partition_key(ORG, DATES[0].isoformat()),
                            resources={"kare": setup.settings(tmp_path / "wh.duckdb", engine="duckdb")},
                            instance=instance)  # fmt: skip
    [summary] = [e.user_message for e in instance.all_logs(result.run_id) if "  upcoming  " in e.user_message]
    assert "--engine" not in summary
    assert "set the kare resource's engine (KARE_ENGINE) to polars" in summary


# ---- asset checks ------------------------------------------------------------------------------------


def test_every_check_is_reported_on_the_table_it_judges_for_the_partition(published):
    _, _, results = published
    evaluations = {e.check_name: e for e in results[1].get_asset_check_evaluations()}
    assert set(evaluations) == set(CHECKS)
    for name, (table, severity) in CHECKS.items():
        e = evaluations[name]
        assert e.asset_key == dg.AssetKey(["kare", table]), name
        assert e.severity == severity, name
        assert e.partition == f"{DATES[1]}|{ORG}", name
        assert e.passed, name


def test_a_blocking_quarantine_share_fails_the_step_and_publishes_nothing_unless_the_org_allows_it(setup, tmp_path):
    wh = tmp_path / "wh.duckdb"
    assert setup.materialize(wh, DATES[0]).success
    before = tables(wh)
    dirty = with_bad_nps(pl.read_parquet(setup.root / "input" / ORG / f"{DATES[1]}.parquet"), every=4)
    source = tmp_path / "dirty.parquet"
    dirty.write_parquet(source)

    failed = setup.materialize(wh, DATES[1], input=str(source))
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "above the limit of 20%; nothing was published" in failure.description
    assert "nps: 500 is above" in failure.description
    assert failure.description.endswith(
        "In Dagster the limit is the kare resource's max_quarantine_share (KARE_MAX_QUARANTINE_SHARE), or for this "
        f"organization only thresholds: {{{ORG}: {{max_quarantine_share: ...}}}}."
    )
    assert failed.get_asset_materialization_events() == []
    [check] = failed.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity) == ("quarantine_share", False, dg.AssetCheckSeverity.ERROR)
    assert check.asset_key == dg.AssetKey(["kare", "quarantine"])
    after = tables(wh)
    for table in TABLES:
        if table != "runs":
            assert same_rows(before[table], after[table]), f"{table} changed"
    assert after["runs"].sort("finished_at")["status"].to_list() == ["published", "failed"]
    logged = after["runs"].filter(pl.col("status") == "failed").to_dicts()[0]
    bad_rows = dirty.height // 4 + (dirty.height % 4 > 0)
    assert (logged["input_rows"], logged["valid_rows"], logged["quarantined_rows"]) == (
        dirty.height, dirty.height - bad_rows, bad_rows,
    )  # fmt: skip

    # The same input publishes when this organization's limit is raised (others keep the global one).
    limits = {ORG: {"max_quarantine_share": 0.3}, OTHER: {"max_quarantine_share": 0.0}}
    allowed = setup.materialize(wh, DATES[1], input=str(source), thresholds=limits)
    assert allowed.success
    quarantine = {e.check_name: e for e in allowed.get_asset_check_evaluations()}["quarantine_share"]
    assert quarantine.passed and quarantine.metadata["limit"].value == 0.3
    assert Warehouse(wh).last_run(ORG)["quarantined_rows"] == bad_rows


def test_a_rerun_changes_nothing_and_an_earlier_date_is_refused_saying_how_to_backfill(setup, published, tmp_path):
    wh = tmp_path / "copy.duckdb"
    shutil.copy(published[0], wh)
    before = tables(wh)
    again = setup.materialize(wh, DATES[1])
    assert again.success
    evaluations = again.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == set(CHECKS) and all(e.passed for e in evaluations)
    assert {e.metadata["unchanged_run"].value for e in evaluations} == {Warehouse(wh).last_run(ORG)["run_id"]}
    earlier = setup.materialize(wh, DATES[0])
    assert not earlier.success
    text = earlier.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert f"already published for {DATES[1]}; a run for the earlier date {DATES[0]} would rewrite" in text
    assert "launch a range backfill as one run per partition" in text
    assert "--as-of" not in text  # kare run's option means nothing in the UI
    after = tables(wh)
    for table in TABLES:
        if table != "runs":
            assert same_rows(before[table], after[table]), f"{table} changed"
    assert after["runs"].sort("finished_at")["status"].to_list()[-2:] == ["unchanged", "failed"]


def test_in_a_backfill_a_failed_date_stops_the_later_dates_of_its_organization_until_it_is_published(setup, tmp_path):
    """Otherwise the later dates publish and the failed one can never run: a hole in the backfilled range."""
    wh, instance = tmp_path / "wh.duckdb", dg.DagsterInstance.ephemeral()
    missing = str(tmp_path / "nowhere" / "{org}-{as_of}.parquet")

    def backfill(day: dt.date, org: str = ORG, **kw) -> dg.ExecuteInProcessResult:
        kare = KareSettings(rules_dir=str(setup.rules_dir), warehouse=str(wh), input=kw.pop("input", setup.input))
        return dg.materialize([assets.kare_run], partition_key=partition_key(org, day.isoformat()),
                              resources={"kare": kare}, instance=instance, raise_on_error=False,
                              tags={"dagster/backfill": "bf1"})  # fmt: skip

    assert backfill(DATES[0]).success
    assert not backfill(DATES[1], input=missing).success
    stopped = backfill(DATES[2])
    text = failure_text(stopped)
    assert text.startswith(f"{ORG} as of {DATES[2]}: not run, because {DATES[1]} failed earlier in this backfill")
    assert text.endswith(f"re-execute this backfill's failed runs from {DATES[1]} on, in date order.")
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[0]
    assert backfill(DATES[2], org=OTHER).success  # another organization is not held up
    # Once the failed date is fixed and published, the later ones run.
    assert backfill(DATES[1]).success
    assert backfill(DATES[2]).success
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[2]


def test_in_a_backfill_a_canceled_date_stops_the_later_dates_of_its_organization_too(setup, tmp_path):
    """A run terminated while it queued (Terminate in the UI) leaves the same hole as a failed one."""
    from dagster._core.storage.dagster_run import DagsterRun

    wh, instance = tmp_path / "wh.duckdb", dg.DagsterInstance.ephemeral()
    tags = {"dagster/backfill": "bf3", "dagster/partition/org": ORG, "dagster/partition/date": DATES[1].isoformat()}
    instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="canceled-run", tags=tags,
                                status=dg.DagsterRunStatus.CANCELED))  # fmt: skip
    kare = KareSettings(rules_dir=str(setup.rules_dir), warehouse=str(wh), input=setup.input)

    def backfill(day: dt.date) -> dg.ExecuteInProcessResult:
        return dg.materialize([assets.kare_run], partition_key=partition_key(ORG, day.isoformat()),
                              resources={"kare": kare}, instance=instance, raise_on_error=False,
                              tags={"dagster/backfill": "bf3"})  # fmt: skip

    assert backfill(DATES[0]).success
    stopped = backfill(DATES[2])
    assert failure_text(stopped).startswith(
        f"{ORG} as of {DATES[2]}: not run, because {DATES[1]} was canceled earlier in this backfill (Dagster run "
        "canceled-run)"
    )
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[0]


def test_an_invalid_rule_file_fails_the_step_with_its_located_error_and_logs_the_run(setup, tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(setup.rules_dir, rules_dir)
    path = rules_dir / ORG / "kare.yaml"
    path.write_text(path.read_text().replace("version: 1.1.0", "version: one"))
    wh = tmp_path / "wh.duckdb"
    result = dg.materialize(
        [assets.kare_run],
        partition_key=partition_key(ORG, DATES[0].isoformat()),
        resources={"kare": KareSettings(rules_dir=str(rules_dir), warehouse=str(wh), input=setup.input)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    text = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert text.startswith(f"{ORG} as of {DATES[0]}: ") and f"{path}:" in text
    [run] = Warehouse(wh).read("runs").to_dicts()
    assert (run["org"], run["as_of"], run["status"]) == (ORG, DATES[0], "failed")
    assert f"{path}:" in run["message"]
    assert Warehouse(wh).read("account_categories").height == 0


def test_an_unknown_threshold_name_fails_saying_which_limits_exist(setup, tmp_path):
    result = setup.materialize(tmp_path / "wh.duckdb", DATES[0], thresholds={ORG: {"max_quarantine": 0.3}})
    assert not result.success
    text = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "thresholds.cloudnine names max_quarantine, which is not a limit" in text
    assert "max_quarantine_share" in text


def test_thresholds_for_an_organization_the_rules_do_not_hold_fail_naming_the_organizations(setup, tmp_path):
    # A typo in the organization's name left its limits unused: the run went on with the global ones.
    result = setup.materialize(tmp_path / "wh.duckdb", DATES[0], thresholds={"cloud_nine": {"warn_mix_shift": 0.3}})
    assert failure_text(result) == (
        f"thresholds names cloud_nine, which is not an organization of the rules directory {setup.rules_dir} "
        f"(KARE_RULES_DIR); use its folder names: {ORG}, {OTHER}"
    )
    assert Warehouse(tmp_path / "wh.duckdb").last_run(ORG) is None


def stale_status(instance: dg.DagsterInstance, kare: KareSettings, day: dt.date) -> str:
    """What the UI shows for kare/account_categories of ORG on `day`: FRESH, STALE or MISSING."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver

    graph = dg.Definitions(assets=assets.ALL, resources={"kare": kare}).get_repository_def().asset_graph
    now = TemporalContext(effective_dt=dt.datetime.now(dt.UTC), last_event_id=None)
    resolver = CachingStaleStatusResolver(instance, graph, AssetGraphView(temporal_context=now, instance=instance,
                                                                         asset_graph=graph))  # fmt: skip
    return resolver.get_status(dg.AssetKey(["kare", "account_categories"]), partition_key(ORG, day.isoformat())).value


def observe_rules(instance: dg.DagsterInstance, kare: KareSettings) -> None:
    """What *Observe* on kare/rules records: each organization's digest as its partition's data version."""
    observed = assets.rules.observe_fn(dg.build_op_context(), kare).data_versions_by_partition
    for org, version in observed.items():
        tags = {"dagster/data_version": version.value}
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=assets.rules.key, partition=org, tags=tags))


OVERRIDES = """format: kare-overrides/v1
overrides:
  - {account: C-000001, category: keep, reason: Renegotiated, author: ana@cloudnine.example, expires: 2027-01-31}
"""


def test_tables_show_as_stale_when_their_rules_change_whether_or_not_the_rules_were_observed_before(setup, tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(setup.rules_dir, rules_dir)
    path = rules_dir / ORG / "kare.yaml"
    kare = KareSettings(rules_dir=str(rules_dir), warehouse=str(tmp_path / "wh.duckdb"), input=setup.input)
    instance = dg.DagsterInstance.ephemeral()

    def materialize(day: dt.date) -> None:
        result = dg.materialize([assets.kare_run, assets.rules], partition_key=partition_key(ORG, day.isoformat()),
                                resources={"kare": kare}, instance=instance)  # fmt: skip
        assert result.success

    # Published before the rule file was ever observed: a later observation of the same rules is no change.
    materialize(DATES[0])
    observe_rules(instance, kare)
    assert stale_status(instance, kare, DATES[0]) == "FRESH"
    # A rule change nobody observed yet, then a run: that run's tables are made with the new rules.
    path.write_text(path.read_text().replace("version: 1.1.0", "version: 1.2.0").replace("gte: 100000", "gte: 90000"))
    materialize(DATES[1])
    observe_rules(instance, kare)
    assert (stale_status(instance, kare, DATES[0]), stale_status(instance, kare, DATES[1])) == ("STALE", "FRESH")
    # The next rule change shows the last run's tables as stale once it is observed.
    path.write_text(path.read_text().replace("version: 1.2.0", "version: 1.3.0").replace("gte: 90000", "gte: 80000"))
    assert stale_status(instance, kare, DATES[1]) == "FRESH"
    observe_rules(instance, kare)
    assert stale_status(instance, kare, DATES[1]) == "STALE"
    # So does a new override (it changes what a run publishes as much as a rule does).
    materialize(DATES[1])
    assert stale_status(instance, kare, DATES[1]) == "FRESH"
    (rules_dir / ORG / "overrides.yaml").write_text(OVERRIDES)
    observe_rules(instance, kare)
    assert stale_status(instance, kare, DATES[1]) == "STALE"
    materialize(DATES[1])
    observe_rules(instance, kare)
    assert stale_status(instance, kare, DATES[1]) == "FRESH"


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return result.get_step_failure_events()[0].step_failure_data.user_failure_data.description


def test_a_failure_says_which_setting_of_the_kare_resource_to_change(setup, tmp_path):
    """The engine's messages name kare run's options; in Dagster each says the resource field (and variable)."""
    wh = tmp_path / "wh.duckdb"
    missing = str(tmp_path / "exports" / "{org}-{as_of}.parquet")
    text = failure_text(setup.materialize(wh, DATES[0], input=missing))
    assert text.startswith(f"input {tmp_path / 'exports' / f'{ORG}-{DATES[0]}.parquet'} does not exist; ")
    assert text.endswith(
        f"). In Dagster the input is the kare resource's input (KARE_INPUT, now {missing!r}; {{org}} and {{as_of}} are "
        "filled in per partition)."
    )

    # A column missing: the engine's message names no file, so the failure says which one the partition read.
    exports = tmp_path / "no-nps"
    (exports / ORG).mkdir(parents=True)
    pl.read_parquet(setup.input.format(org=ORG, as_of=DATES[0])).drop("nps").write_parquet(
        exports / ORG / f"{DATES[0]}.parquet"
    )
    template = str(exports / "{org}" / "{as_of}.parquet")
    text = failure_text(setup.materialize(wh, DATES[0], input=template))
    assert text.startswith("the input has no column 'nps', required by the inputs of ")
    assert (
        f". The input was {exports / ORG / f'{DATES[0]}.parquet'}. In Dagster the input is the kare resource's "
        f"input (KARE_INPUT, now {template!r};" in text
    )

    text = failure_text(setup.materialize(wh, DATES[0], thresholds={ORG: {"warn_mix_shift": 2.0}}))
    assert text == "thresholds.cloudnine.warn_mix_shift: warn_mix_shift must be a share between 0 and 1 (got 2.0)"
    text = failure_text(setup.materialize(wh, DATES[0], max_quarantine_share=-0.1))
    assert text.startswith("the kare resource's max_quarantine_share (KARE_MAX_QUARANTINE_SHARE): ")
    text = failure_text(setup.materialize(wh, DATES[0], memory_budget="lots"))
    assert text.startswith("the kare resource's memory_budget (KARE_MEMORY_BUDGET): 'lots' is not a memory size;")
    text = failure_text(setup.materialize(wh, DATES[0], engine="spark"))
    assert text == "the kare resource's engine (KARE_ENGINE) is 'spark'; use one of: polars, duckdb"

    elsewhere = tmp_path / "other-rules"
    elsewhere.mkdir()
    result = dg.materialize(
        [assets.kare_run],
        partition_key=partition_key(ORG, DATES[0].isoformat()),
        resources={"kare": KareSettings(rules_dir=str(elsewhere), warehouse=str(wh), input=setup.input)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert failure_text(result).endswith(
        f"In Dagster the rules are read from the kare resource's rules_dir (KARE_RULES_DIR, now {str(elsewhere)!r}), "
        f"which has no folder {ORG}/; point it at the folder the organizations were loaded from, or reload the "
        "definitions after adding or removing an organization."
    )

    # A warehouse setting that names something else than a DuckDB file (a folder, a CSV): no traceback.
    folder = tmp_path / "a-folder"
    folder.mkdir()
    text = failure_text(setup.materialize(folder, DATES[0]))
    assert text.startswith(f"cannot open the warehouse {folder}: ")
    assert text.endswith(
        f". In Dagster the warehouse is the kare resource's warehouse (KARE_WAREHOUSE, now {str(folder)!r})."
    )
    csv = tmp_path / "accounts.csv"
    csv.write_text("account_id,arr\nA1,5\n")
    text = failure_text(setup.materialize(csv, DATES[0]))
    assert text.startswith(f"{csv} is not a DuckDB database") and "KARE_WAREHOUSE" in text

    # A reader holding the warehouse longer than the run may wait: the wait to raise is KARE_WAIT.
    assert setup.materialize(wh, DATES[0]).success
    hold = f"import duckdb, time; c = duckdb.connect({str(wh)!r}, read_only=True); print('held', flush=True); "
    hold += "time.sleep(60)"
    reader = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "held"
        kare = KareSettings(rules_dir=str(setup.rules_dir), warehouse=str(wh), input=setup.input, wait=0.5)
        result = dg.materialize([assets.kare_run], partition_key=partition_key(ORG, DATES[1].isoformat()),
                                resources={"kare": kare}, instance=dg.DagsterInstance.ephemeral(),
                                raise_on_error=False)  # fmt: skip
    finally:
        reader.kill()
        reader.wait()
    text = failure_text(result)
    assert "is held by another process" in text
    assert text.endswith("to wait longer. In Dagster the wait is the kare resource's wait (KARE_WAIT, now 0.5 s).")


# ---- two organizations at once -----------------------------------------------------------------------


MATERIALIZE = """
import sys
import dagster as dg
from pipelines.kare import assets
from pipelines.kare.partitions import partition_key
from pipelines.kare.resources import KareSettings
rules_dir, warehouse, source, org, day = sys.argv[1:]
kare = KareSettings(rules_dir=rules_dir, warehouse=warehouse, input=source, wait=120.0)
result = dg.materialize([assets.kare_run], partition_key=partition_key(org, day), resources={"kare": kare},
                        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def test_two_organizations_materialized_at_once_on_one_warehouse_both_publish(setup, tmp_path):
    """Two processes, as two runs of a schedule would be: the second waits for the warehouse instead of failing."""
    wh = tmp_path / "shared.duckdb"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE, str(setup.rules_dir), str(wh), setup.input, org, DATES[0].isoformat()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for org in (ORG, OTHER)
    ]
    logs = [p.communicate(timeout=180)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], "\n".join(logs)
    # pipelines freezes Dagster's objects for the garbage collector, not DuckDB's: frozen, DuckDB's
    # bindings print "leaked N instances" at exit.
    assert not [log for log in logs if "leaked" in log], "\n".join(logs)
    published = Warehouse(wh).read("runs")
    assert sorted(zip(published["org"], published["status"], strict=True)) == [(ORG, "published"), (OTHER, "published")]


def test_a_failed_materialization_leaves_no_duckdb_objects_to_leak_at_exit(setup, tmp_path):
    """A blocked run's Failure, kept by Dagster among the objects pipelines froze, must not hold the engine's
    traceback: its frames held the open DuckDB session, and DuckDB's bindings printed "leaked N instances"."""
    source = tmp_path / "bad.parquet"
    with_bad_nps(pl.read_parquet(setup.input.format(org=ORG, as_of=DATES[0])), every=2).write_parquet(source)
    done = subprocess.run(
        [sys.executable, "-c", MATERIALIZE, str(setup.rules_dir), str(tmp_path / "wh.duckdb"), str(source), ORG,
         DATES[0].isoformat()],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed validation, above the limit of 20%" in done.stdout + done.stderr
    assert "leaked" not in done.stdout + done.stderr, done.stderr[-3000:]


# ---- definitions, schedule, sensor -------------------------------------------------------------------


def test_workspace_yaml_loads_the_definitions_the_way_dagster_dev_does():
    env = {**os.environ, "KARE_RULES_DIR": str(ROOT / "rules")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipelines.definitions" in done.stdout + done.stderr
    dg_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    assert dg_config["project"]["root_module"] == "pipelines"
    assert dg_config["project"]["code_location_target_module"] == "pipelines.definitions"


@pytest.mark.parametrize("duckdb_first", [False, True])
def test_dagsters_objects_are_frozen_for_the_garbage_collector_but_never_duckdbs(duckdb_first):
    """Frozen, Dagster's import costs nothing at each collection and at exit; DuckDB's objects stay
    collectable whichever is imported first (frozen, its bindings print "leaked N instances" at exit)."""
    first = "import duckdb\n" if duckdb_first else ""
    code = first + "import gc, pipelines.definitions, duckdb\nduckdb.connect().sql('select 1').fetchall()\n"
    code += "print(gc.get_freeze_count())"
    env = {**os.environ, "KARE_RULES_DIR": str(ROOT / "rules")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr
    assert (int(done.stdout) == 0) is duckdb_first


def test_loading_the_definitions_prints_no_beta_or_preview_warnings():
    """Every dagster/dg command loads them (twice for a launch); the features are chosen, the README names them."""
    env = {**os.environ, "KARE_RULES_DIR": str(ROOT / "rules")}
    done = subprocess.run([sys.executable, "-W", "always", "-c", "import pipelines.definitions"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "BetaWarning" not in done.stderr and "PreviewWarning" not in done.stderr, done.stderr


def test_loading_the_definitions_warns_when_the_rules_directory_has_no_organization(tmp_path):
    # A mistyped KARE_RULES_DIR (or dagster dev started away from rules/) loaded with no partitions, silently.
    from pipelines.kare.partitions import warn_of_skipped_folders

    (tmp_path / "empty").mkdir()
    for folder, what in (("missing", "does not exist"), ("empty", "holds no <org>/kare.yaml")):
        with pytest.warns(UserWarning, match="no organization, nothing to run") as caught:
            warn_of_skipped_folders(tmp_path / folder)
        assert f"{tmp_path / folder} (KARE_RULES_DIR) {what}" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_of_skipped_folders(ROOT / "rules")  # two organizations: nothing to say


def test_dg_check_defs_shows_the_warning_of_a_rules_directory_without_organizations(tmp_path):
    # dg check defs (dagster definitions validate) sends warnings to a logger with only a NullHandler: it said
    # "All definitions loaded successfully." and nothing else for a mistyped KARE_RULES_DIR.
    env = {
        **os.environ,
        "KARE_RULES_DIR": str(tmp_path / "missing"),
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
    }
    done = subprocess.run([str(Path(sys.executable).with_name("dg")), "check", "defs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"no organization, nothing to run: the rules directory {tmp_path / 'missing'} (KARE_RULES_DIR) does "
        "not exist" in done.stdout + done.stderr
    )


def test_loading_the_definitions_warns_of_a_rules_folder_that_is_no_organization(tmp_path):
    # Such a folder got no partitions and never ran, and nothing said so (kare run --all-orgs does).
    rules = tmp_path / "rules"
    (rules / "Cloud_Nine").mkdir(parents=True)
    (rules / "Cloud_Nine" / "kare.yaml").write_text((ROOT / "rules" / "cloudnine" / "kare.yaml").read_text())
    shutil.copytree(ROOT / "rules" / "cloudnine", rules / "cloudnine")
    env = {**os.environ, "KARE_RULES_DIR": str(rules)}
    code = (
        "from dagster._core.definitions.observe import observe; import pipelines.definitions as d; "
        "from pipelines.kare import assets; "
        "print(observe([assets.rules], resources={'kare': d.defs.resources['kare']}).success and 'observed')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "observed" in done.stdout, done.stderr
    assert "UserWarning: not an organization, never run: " in done.stderr  # where the definitions load
    assert "WARNING - in_process_observation_job" in done.stderr  # and in the Observe run's log
    assert done.stderr.count("the directory name 'Cloud_Nine' is not an organization name") == 2, done.stderr


def test_the_readmes_command_line_launch_publishes_a_partition_into_the_projects_instance(setup, tmp_path):
    """The README's `dg launch` line, run as written (other folders, another partition), in a Dagster home."""
    readme = (ROOT / "README.md").read_text().replace("\\\n", "")
    [line] = [ln for ln in readme.splitlines() if "/dg launch " in ln]
    words = shlex.split(line)
    # dg warns when the project's virtual environment is not the active one: the line names both.
    assert words[:3] == ["DAGSTER_HOME=$PWD/.dagster_home", "VIRTUAL_ENV=$PWD/.venv", ".venv/bin/dg"], words
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "pipelines" / "dagster.yaml", home / "dagster.yaml")
    args = [str(Path(sys.executable).with_name("dg")), *words[3:]]
    args[args.index("--partition") + 1] = f"{DATES[0]}|{ORG}"
    wh = tmp_path / "wh.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KARE_RULES_DIR": str(setup.rules_dir),
        "KARE_INPUT": setup.input,
        "KARE_WAREHOUSE": str(wh),
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
    }
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "does not match the virtual environment" not in done.stdout + done.stderr
    assert Warehouse(wh).last_run(ORG)["status"] == "published"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags["kare/org"], run.tags["kare/as_of"]) == (ORG, DATES[0].isoformat())


def test_the_shipped_instance_settings_give_the_warehouse_pool_one_run_at_a_time(tmp_path):
    shutil.copy(ROOT / "pipelines" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        pools = instance.get_concurrency_config().pool_config
    assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "run")
    makefile = (ROOT / "Makefile").read_text()
    assert "cp pipelines/dagster.yaml .dagster_home/dagster.yaml" in makefile
    assert f"dagster instance concurrency set {assets.POOL} 1" in makefile


def test_the_definitions_hold_the_tables_their_sources_checks_schedule_and_sensor():
    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {f"kare/{t}" for t in (*assets.PUBLISHED, "account_source", "rules")}
    for table in assets.PUBLISHED:
        node = repo.asset_graph.get(dg.AssetKey(["kare", table]))
        assert node.parent_keys == {dg.AssetKey(["kare", "account_source"]), dg.AssetKey(["kare", "rules"])}
        assert node.description == TABLES[table][0]
    checks = {(k.asset_key.path[-1], k.name) for k in repo.asset_graph.asset_check_keys}
    assert checks == {(table, name) for name, (table, _) in CHECKS.items()}
    assert assets.kare_run.op.pool == "kare_warehouse"
    assert not assets.kare_run.can_subset
    assert repo.has_schedule_def("kare_schedule") and repo.has_sensor_def("rule_version_sensor")
    assert org_partitions.get_partition_keys() == [ORG, OTHER]


def test_the_schedule_requests_one_run_per_organization_for_the_day_that_ended():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC))
    requests = list(schedules.kare_schedule(context))
    assert [r.partition_key for r in requests] == [f"2026-11-01|{ORG}", f"2026-11-01|{OTHER}"]
    assert [(r.tags["kare/org"], r.tags["kare/as_of"]) for r in requests] == [
        (ORG, "2026-11-01"),
        (OTHER, "2026-11-01"),
    ]
    assert len({r.run_key for r in requests}) == 2


def test_a_schedule_tick_before_the_first_whole_window_closes_names_that_window(monkeypatch):
    """Weekly from 2026-01-01 (a Thursday): the first window is Sunday 4 to Saturday 10 January, so the tick of
    Sunday 4 January has nothing to run; it said KARE_START_DATE was in the future, a date already past."""
    from pipelines.kare.partitions import date_partitions_for

    monkeypatch.setattr(schedules, "date_partitions", date_partitions_for("weekly", "2026-01-01"))
    monkeypatch.setattr(schedules, "cadence", lambda: "weekly")
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 1, 4, 6, tzinfo=dt.UTC))
    skip = schedules.kare_schedule(context)
    assert isinstance(skip, dg.SkipReason)
    assert "in the future" not in skip.skip_message
    assert "the first, 2026-01-04 (as of 2026-01-10), closes 2026-01-11 00:00 UTC" in skip.skip_message


@pytest.mark.parametrize("every", ["daily", "weekly", "monthly"])
def test_each_cadences_schedule_fires_within_a_day_after_its_window_closes(every):
    """The README: the schedule runs shortly after each window closes (a weekly window ends on Sunday 00:00)."""
    from dagster._utils.schedules import cron_string_iterator

    from pipelines.kare.partitions import CRON, date_partitions_for

    dates = date_partitions_for(every, "2026-01-01")
    for key in dates.get_partition_keys(current_time=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)):
        closes = dates.time_window_for_partition_key(key).end
        fires = next(cron_string_iterator(closes.timestamp(), CRON[every], "UTC"))
        assert dt.timedelta(0) <= fires - closes < dt.timedelta(days=1), (every, key, fires)


def test_the_sensor_reruns_the_last_published_date_of_an_organization_whose_rule_version_changes(
    published, tmp_path, monkeypatch
):
    _, by_cli, _ = published  # cloudnine published up to DATES[1]; the last complete date is long after
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / ORG, rules_dir / ORG)
    monkeypatch.setenv("KARE_RULES_DIR", str(rules_dir))

    def context(cursor=None, warehouse=by_cli):
        return dg.build_sensor_context(cursor=cursor, resources={"kare": KareSettings(warehouse=str(warehouse))})

    first = context()
    assert list(sensors.rule_version_sensor(first)) == []  # the first look only remembers
    cursor = first.cursor
    assert json.loads(cursor)[ORG].startswith("1.1.0@")
    assert list(sensors.rule_version_sensor(context(cursor))) == []
    path = rules_dir / ORG / "kare.yaml"
    path.write_text(path.read_text().replace("version: 1.1.0", "version: 1.2.0").replace("gte: 100000", "gte: 90000"))
    changed = context(cursor)
    [request] = list(sensors.rule_version_sensor(changed))
    # The last published date, not the last complete one: that would publish past the dates in between.
    assert request.partition_key == partition_key(ORG, DATES[1].isoformat())
    assert request.run_key.startswith(f"{ORG}|") and "|1.2.0@" in request.run_key
    assert json.loads(changed.cursor)[ORG].startswith("1.2.0@")
    # A new overrides.yaml changes what a run publishes too: the same re-run, with a new run key.
    (rules_dir / ORG / "overrides.yaml").write_text(OVERRIDES)
    pinned = context(changed.cursor)
    [again] = list(sensors.rule_version_sensor(pinned))
    assert again.partition_key == request.partition_key and again.run_key != request.run_key
    # Nothing published yet: nothing to re-run (the schedule publishes the first date).
    assert list(sensors.rule_version_sensor(context(cursor, warehouse=tmp_path / "empty.duckdb"))) == []


def test_the_rules_source_is_observed_as_each_organizations_digest(setup):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        observed = assets.rules.observe_fn(dg.build_op_context(), setup.settings(setup.root / "unused.duckdb"))
    assert not [w for w in caught if issubclass(w.category, dg.BetaWarning | dg.PreviewWarning)]
    assert {org: v.value for org, v in observed.data_versions_by_partition.items()} == {
        org: load_rules(setup.rules_dir / org).digest for org in (ORG, OTHER)
    }


# ---- the committed table contracts -------------------------------------------------------------------


def test_committed_table_contracts_match_kare_rules_tables(tmp_path):
    generated = {p.name: p.read_text() for p in write_contracts(tmp_path)}
    committed = {p.name: p.read_text() for p in (ROOT / "schemas" / "tables").glob("*.json")}
    assert committed == generated, (
        "schemas/tables/*.json differ from kare_rules/tables.py; regenerate them with\n"
        "  .venv/bin/python -c \"from kare_rules.tables import write_contracts; write_contracts('schemas/tables')\""
    )


def test_a_backfill_from_an_input_that_does_not_name_the_date_is_refused(setup, tmp_path):
    """Every past date would read the same (today's) accounts and publish them as that date's."""
    wh = tmp_path / "wh.duckdb"
    latest = str(tmp_path / "input" / "{org}-latest.parquet")
    (tmp_path / "input").mkdir()
    shutil.copy(setup.input.replace("{org}", ORG).replace("{as_of}", DATES[1].isoformat()),
                latest.replace("{org}", ORG))  # fmt: skip
    kare = KareSettings(rules_dir=str(setup.rules_dir), warehouse=str(wh), input=latest)
    refused = dg.materialize([assets.kare_run], partition_key=partition_key(ORG, DATES[0].isoformat()),
                             resources={"kare": kare}, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                             tags={"dagster/backfill": "bf2"})  # fmt: skip
    assert not refused.success
    assert "this is a backfill, and the kare resource's input (KARE_INPUT" in failure_text(refused)
    assert not wh.exists() or Warehouse(wh).last_run(ORG) is None
    single = dg.materialize(
        [assets.kare_run],
        partition_key=partition_key(ORG, DATES[0].isoformat()),
        resources={"kare": kare},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert single.success  # one date from the latest extract is what such an input is for


def test_kare_allow_empty_input_reads_yes_and_no_in_any_case_and_refuses_anything_else():
    # KARE_ALLOW_EMPTY_INPUT=True was read as no: the guard stayed on while its message asked for it.
    code = "from pipelines.kare.resources import KareSettings; print(KareSettings().allow_empty_input)"

    def setting(value: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "KARE_ALLOW_EMPTY_INPUT": value, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)

    for value, expected in [("True", "True"), ("YES", "True"), ("on", "True"), ("False", "False"), ("0", "False")]:
        done = setting(value)
        assert done.returncode == 0 and done.stdout.strip() == expected, (value, done.stderr)
    wrong = setting("maybe")
    assert wrong.returncode != 0 and "KARE_ALLOW_EMPTY_INPUT='maybe' is not yes or no" in wrong.stderr


def test_a_blank_setting_in_the_environment_is_unset_as_kare_run_reads_it():
    # A CI template's empty input (KARE_INPUT="") made the resource read the current directory as the
    # input; kare run already took a blank variable as unset.
    script = (
        "from pipelines.kare.resources import KareSettings; from kare_rules.sources import DEFAULT_INPUT; "
        "s = KareSettings(); print(s.input == DEFAULT_INPUT, s.rules_dir, s.engine)"
    )
    env = {**os.environ, "KARE_INPUT": "", "KARE_RULES_DIR": "  ", "KARE_ENGINE": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "rules", "polars"]
    # The numbers, the memory budget and the partitions' settings too: a blank one stopped the definitions loading.
    script = (
        "from pipelines.kare.resources import KareSettings; from pipelines.kare import partitions as p; "
        "s = KareSettings(); print(s.wait, s.max_quarantine_share, s.memory_budget, p.cadence(), p.start_date())"
    )
    blank = ["KARE_WAIT", "KARE_MAX_QUARANTINE_SHARE", "KARE_MEMORY_BUDGET", "KARE_CADENCE", "KARE_START_DATE"]
    env = {**os.environ, "KARE_RULES_DIR": str(ROOT / "rules"), **dict.fromkeys(blank, " ")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["300.0", "0.2", "None", "daily", "2026-01-01"]
