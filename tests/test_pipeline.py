"""The Dagster asset graph end to end against a temporary warehouse: published tables and their
contracts, idempotent re-runs, failures that publish nothing, the quarantine limit, concurrent runs,
asset checks, workspace loading, the schedule and the sensor."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Partitions are read from KARE_RULES_DIR when pipelines is imported: the repo's rules name the orgs.
os.environ.setdefault("KARE_RULES_DIR", str(ROOT / "rules"))

import dagster as dg  # noqa: E402

from kare_rules import runner  # noqa: E402
from kare_rules.history import history_problems  # noqa: E402
from kare_rules.loader import load_rules  # noqa: E402
from kare_rules.synth import month_ends, snapshots  # noqa: E402
from kare_rules.tables import TABLES, json_contract, same_rows, schema_of, write_contracts  # noqa: E402
from kare_rules.warehouse import Warehouse, WarehouseBusy, warehouse_lock  # noqa: E402
from pipelines.kare import assets, resources, schedules, sensors  # noqa: E402
from pipelines.kare.partitions import org_partitions  # noqa: E402
from pipelines.run import RunFailed, run_org  # noqa: E402

ORG = "cloudnine"
ACCOUNTS = 400
DATES = month_ends(dt.date(2026, 11, 30), 4)  # three published in the fixture, the fourth for tests
STATE_TABLES = [
    "account_categories",
    "category_history",
    "category_transitions",
    "action_queue",
    "quarantine",
    "rule_versions",
]


class Setup:
    def __init__(self, root: Path):
        self.root = root
        self.rules_dir = root / "rules"
        shutil.copytree(ROOT / "rules" / ORG, self.rules_dir / ORG)
        self.rules = load_rules(self.rules_dir / ORG)
        self.inputs = root / "input"
        self.inputs.mkdir()
        for day, frame in snapshots(self.rules, ACCOUNTS, DATES, seed=11):
            frame.write_parquet(self.inputs / f"{day}.parquet")
        self.warehouse = root / "published.duckdb"

    def frame(self, day: dt.date) -> pl.DataFrame:
        return pl.read_parquet(self.inputs / f"{day}.parquet")

    def copy(self, tmp_path: Path) -> Path:
        """A private copy of the published warehouse for a test that changes it."""
        dst = tmp_path / "wh.duckdb"
        shutil.copy(self.warehouse, dst)
        return dst

    def run(self, warehouse: Path, day: dt.date, tmp_path: Path | None = None, **kw) -> runner.RunOutputs:
        kw.setdefault("input", str(self.inputs / "{as_of}.parquet"))
        staging = (tmp_path or self.root) / "staging"
        return run_org(
            ORG, warehouse=str(warehouse), as_of=str(day), rules_dir=str(self.rules_dir), staging=str(staging), **kw
        )


def state(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every published table except the runs log, in a stable order."""
    wh = Warehouse(warehouse)
    return {t: (lambda df: df.sort(df.columns, nulls_last=True))(wh.read(t)) for t in STATE_TABLES}


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for table in a:
        assert same_rows(a[table], b[table]), f"{table} changed"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    s = Setup(tmp_path_factory.mktemp("pipeline"))
    s.summaries = [s.run(s.warehouse, day) for day in DATES[:3]]
    return s


# ---- what gets published -----------------------------------------------------------------------


def test_every_table_is_published_with_its_contract_columns_and_types(setup):
    with duckdb.connect(str(setup.warehouse), read_only=True) as con:
        for table in TABLES:
            got = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'kare' AND table_name = $t ORDER BY ordinal_position",
                {"t": table},
            ).fetchall()
            want = [
                (name, spec["x-sql-type"].replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"))
                for name, spec in json_contract(table)["properties"].items()
            ]
            assert got == want, table
    wh = Warehouse(setup.warehouse)
    for table in TABLES:
        assert dict(wh.read(table).schema) == schema_of(table)


def test_three_runs_publish_history_actions_and_a_runs_log(setup):
    wh = Warehouse(setup.warehouse)
    runs = wh.read("runs", ORG).sort("as_of")
    assert runs["as_of"].to_list() == DATES[:3]
    assert runs["status"].to_list() == ["published"] * 3
    assert (runs["input_rows"] == runs["valid_rows"] + runs["quarantined_rows"]).all()
    assert runs["input_rows"][0] == ACCOUNTS
    cats = wh.read("account_categories", ORG)
    assert cats.height == runs["input_rows"][-1]
    assert cats["account_id"].n_unique() == cats.height
    assert set(cats["as_of"]) == {DATES[2]}
    history = wh.read("category_history", ORG)
    assert history_problems(history) == []
    assert set(history["change_cause"]) >= {"new", "data", "removed"}
    transitions = wh.read("category_transitions", ORG)
    assert sorted(set(transitions["as_of"])) == DATES[:3]
    for day, n in transitions.group_by("as_of").agg(pl.col("accounts").sum()).rows():
        current_then = history.filter((pl.col("valid_from") <= day) & (pl.col("valid_to") > day))
        assert (
            n
            == current_then.height
            - current_then.filter(pl.col("category").is_null() & (pl.col("valid_from") < day)).height
        )
    queue = wh.read("action_queue", ORG)
    open_ = queue.filter(pl.col("status") == "open")
    assert open_.group_by("account_id", "action_id").len()["len"].max() == 1
    assert (queue["due_on"] > queue["created_on"]).all()
    assert set(queue["status"]) == {"open", "superseded"}
    assert runs["moved"][2] == setup.summaries[2].run["moved"] > 0


# ---- re-runs and failures ----------------------------------------------------------------------


def test_rerunning_the_last_date_changes_nothing_and_logs_unchanged(setup, tmp_path):
    wh = setup.copy(tmp_path)
    before = state(wh)
    summary = setup.run(wh, DATES[2], tmp_path)
    assert summary.run["status"] == "unchanged"
    assert summary.run["run_id"] == setup.summaries[2].run["run_id"]
    assert_same(before, state(wh))
    statuses = Warehouse(wh).read("runs", ORG).sort("as_of", "finished_at")["status"].to_list()
    assert statuses == ["published", "published", "published", "unchanged"]


def test_a_failure_injected_mid_publish_leaves_every_table_unchanged(setup, tmp_path):
    wh_path = setup.copy(tmp_path)
    wh = Warehouse(wh_path)
    before = state(wh_path)
    runs_before = wh.read("runs")
    previous = wh.previous_state(ORG)
    out = runner.compute_run(setup.rules, setup.frame(DATES[3]), DATES[3], previous)
    text = (setup.rules_dir / ORG / "kare.yaml").read_text()
    for table in ("account_categories", "category_history", "action_queue"):
        with pytest.raises(RuntimeError, match=f"injected failure after {table}"):
            wh.publish(out, text, setup.rules.version, expected_previous_run=previous.last_run_id, fail_after=table)
        assert_same(before, state(wh_path))
        assert same_rows(wh.read("runs"), runs_before)
    # The same outputs then publish cleanly.
    wh.publish(out, text, setup.rules.version, expected_previous_run=previous.last_run_id)
    assert wh.last_run(ORG)["as_of"] == DATES[3]


def test_a_failing_asset_step_publishes_nothing(setup, tmp_path, monkeypatch):
    wh = setup.copy(tmp_path)
    before = state(wh)

    def broken(*args, **kwargs):
        raise ValueError("disk on fire")

    monkeypatch.setattr(runner, "step_actions", broken)
    with pytest.raises(RunFailed, match=r"step action_queue failed.*disk on fire"):
        setup.run(wh, DATES[3], tmp_path)
    assert_same(before, state(wh))
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[2]


def test_past_the_quarantine_limit_nothing_is_published_and_below_it_rows_are_quarantined(setup, tmp_path):
    wh = setup.copy(tmp_path)
    before = state(wh)
    frame = setup.frame(DATES[3])
    i = pl.int_range(pl.len())
    dirty = frame.with_columns(pl.when(i % 4 == 0).then(500).otherwise(pl.col("nps")).alias("nps"))
    source = tmp_path / "dirty.parquet"
    dirty.write_parquet(source)
    bad = dirty.height // 4 + (dirty.height % 4 > 0)
    with pytest.raises(RunFailed, match=r"above the limit of 20%; nothing was published.*nps: 500 is above"):
        setup.run(wh, DATES[3], tmp_path, input=str(source))
    assert_same(before, state(wh))
    summary = setup.run(wh, DATES[3], tmp_path, input=str(source), max_quarantine_share=0.3)
    assert summary.run["quarantined_rows"] == bad
    assert summary.run["valid_rows"] + bad == dirty.height
    q = Warehouse(wh).read("quarantine", ORG).filter(pl.col("as_of") == DATES[3])
    assert q.height == bad
    assert set(q["reasons"].list.join("; ")) == {"nps: 500 is above the maximum 100"}
    # The quarantined accounts that were known keep their category and are not removed.
    history = Warehouse(wh).read("category_history", ORG)
    removed_now = history.filter((pl.col("valid_from") == DATES[3]) & (pl.col("change_cause") == "removed"))
    assert not set(removed_now["account_id"]) & set(q["account_id"])
    cats = Warehouse(wh).read("account_categories", ORG)
    known = set(before["account_categories"]["account_id"]) & set(q["account_id"])
    assert known and known <= set(cats["account_id"])


# ---- one warehouse, one run at a time ----------------------------------------------------------


def test_a_second_run_while_one_holds_the_warehouse_fails_clearly(setup, tmp_path):
    wh = setup.copy(tmp_path)
    with warehouse_lock(wh), pytest.raises(WarehouseBusy, match=r"another kare run \(pid \d+ since .*\) is publishing"):
        setup.run(wh, DATES[3], tmp_path)
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[2]


def test_publishing_on_top_of_a_run_this_one_did_not_see_is_refused(setup, tmp_path):
    wh = Warehouse(setup.copy(tmp_path))
    previous = wh.previous_state(ORG)
    out = runner.compute_run(setup.rules, setup.frame(DATES[3]), DATES[3], previous)
    text = (setup.rules_dir / ORG / "kare.yaml").read_text()
    with pytest.raises(WarehouseBusy, match="published cloudnine while this one was computing; nothing was published"):
        wh.publish(out, text, setup.rules.version, expected_previous_run="cloudnine-20260101-stale")
    assert wh.last_run(ORG)["as_of"] == DATES[2]


def test_a_run_for_an_earlier_date_is_refused(setup, tmp_path):
    wh = setup.copy(tmp_path)
    before = state(wh)
    with pytest.raises(RunFailed, match=rf"already published for {DATES[2]}.*Run with --as-of {DATES[2]} or later"):
        setup.run(wh, DATES[0], tmp_path)
    assert_same(before, state(wh))


# ---- Dagster: checks, definitions, schedule, sensor --------------------------------------------


def test_materialize_reports_every_asset_check_for_the_partition(setup, tmp_path):
    wh = setup.copy(tmp_path)
    result = dg.materialize(
        assets.ALL,
        partition_key=ORG,
        resources=resources.default_resources(
            rules_dir=str(setup.rules_dir),
            warehouse=str(wh),
            input=str(setup.inputs / "{as_of}.parquet"),
            as_of=str(DATES[3]),
            staging=str(tmp_path / "staging"),
        ),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {
        "quarantine_share",
        "unassigned_share",
        "overlap_share",
        "category_mix_shift",
        "history_invariants",
    }
    assert checks["history_invariants"].passed
    assert checks["quarantine_share"].passed
    assert all(
        e.asset_check_key.asset_key.path[-1] in {"validated_accounts", "account_categories", "category_history"}
        for e in checks.values()
    )
    partitions = {m.partition for m in result.get_asset_materialization_events() for m in [m.materialization]}
    assert partitions == {ORG}
    assert Warehouse(wh).last_run(ORG)["as_of"] == DATES[3]


def test_workspace_yaml_loads_the_definitions_the_way_dagster_dev_does():
    env = {**os.environ, "KARE_RULES_DIR": str(ROOT / "rules")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipelines.definitions" in done.stdout + done.stderr
    dg_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    assert dg_config["project"]["root_module"] == "pipelines"
    assert dg_config["project"]["code_location_target_module"] == "pipelines.definitions"


def test_definitions_hold_the_graph_job_schedule_and_sensor():
    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {
        "raw_accounts",
        "run_manifest",
        "validated_accounts",
        "quarantine",
        "account_categories",
        "category_history",
        "category_transitions",
        "action_queue",
        "runs",
    }
    assert repo.has_schedule_def("daily") and repo.has_sensor_def("rule_version_sensor")
    assert set(org_partitions.get_partition_keys()) >= {"cloudnine", "forge-industrial"}


def test_the_daily_schedule_requests_one_run_per_organization():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC))
    requests = list(schedules.daily(context))
    assert [r.partition_key for r in requests] == org_partitions.get_partition_keys()
    assert len({r.run_key for r in requests}) == len(requests)
    for r in requests:
        assert r.run_config == {"resources": {"kare": {"config": {"as_of": "2026-11-02"}}}}


def test_the_sensor_requests_a_run_when_a_rule_version_changes(tmp_path, monkeypatch):
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / ORG, rules_dir / ORG)
    monkeypatch.setenv("KARE_RULES_DIR", str(rules_dir))
    first = dg.build_sensor_context()
    assert list(sensors.rule_version_sensor(first)) == []  # the first look only remembers
    cursor = first.cursor
    assert json.loads(cursor)[ORG].startswith("1.0.0@")
    same = dg.build_sensor_context(cursor=cursor)
    assert list(sensors.rule_version_sensor(same)) == []
    path = rules_dir / ORG / "kare.yaml"
    path.write_text(path.read_text().replace("version: 1.0.0", "version: 1.1.0").replace("gte: 100000", "gte: 90000"))
    changed = dg.build_sensor_context(cursor=cursor)
    requests = list(sensors.rule_version_sensor(changed))
    assert [(r.partition_key, r.run_key.split("@")[0]) for r in requests] == [(ORG, "cloudnine-1.1.0")]
    assert json.loads(changed.cursor)[ORG].startswith("1.1.0@")


# ---- the committed table contracts -------------------------------------------------------------


def test_committed_table_contracts_match_kare_rules_tables(tmp_path):
    generated = {p.name: p.read_text() for p in write_contracts(tmp_path)}
    committed = {p.name: p.read_text() for p in (ROOT / "schemas" / "tables").glob("*.json")}
    assert committed == generated, (
        "schemas/tables/*.json differ from kare_rules/tables.py; regenerate them with\n"
        "  .venv/bin/python -c \"from kare_rules.tables import write_contracts; write_contracts('schemas/tables')\""
    )
