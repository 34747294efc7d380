"""The asset graph. Every body is a call into kare_rules; this file only wires inputs to outputs."""

import datetime as dt

import dagster as dg
import polars as pl

from kare_rules import runner
from kare_rules.history import transitions
from kare_rules.tables import conformed
from kare_rules.validation import Checked
from pipelines.kare import checks
from pipelines.kare import metadata as md
from pipelines.kare.partitions import org_partitions
from pipelines.kare.resources import KareSettings

GROUP = "kare"


def _manifest_of(frame: pl.DataFrame) -> dict:
    return frame.row(0, named=True)


@dg.asset(partitions_def=org_partitions, group_name=GROUP, kinds={"polars"})
def raw_accounts(context: dg.AssetExecutionContext, kare: KareSettings) -> dg.Output[pl.DataFrame]:
    """The organization's accounts as read from the source (Parquet, CSV, DuckDB table or SQL)."""
    org = context.partition_key
    frame = kare.read_accounts(org)
    return dg.Output(frame, metadata={**md.frame(frame), "source": kare.source(org)})


@dg.asset(partitions_def=org_partitions, group_name=GROUP, kinds={"polars"})
def run_manifest(
    context: dg.AssetExecutionContext, kare: KareSettings, raw_accounts: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Who, when and with which rules: the run id every other asset stamps on its rows."""
    org = context.partition_key
    rules = kare.rules(org)
    as_of = kare.run_date()
    last = kare.open_warehouse().last_run(org) or {}
    runner.check_forward(org, as_of, last.get("as_of"))
    overrides = kare.overrides(org, rules)
    run_id = runner.run_id_for(org, as_of, rules, overrides, raw_accounts)
    manifest = pl.DataFrame([{
        "org": org, "as_of": as_of, "run_id": run_id, "rules_version": rules.version, "rules_digest": rules.digest,
        "input_rows": raw_accounts.height, "previous_run_id": last.get("run_id"),
        "started_at": dt.datetime.now(dt.UTC),
    }], schema_overrides={"previous_run_id": pl.String})  # fmt: skip
    return dg.Output(manifest, metadata={"run_id": run_id, "as_of": str(as_of), "rules_version": rules.version})


@dg.multi_asset(
    partitions_def=org_partitions,
    group_name=GROUP,
    outs={
        "validated_accounts": dg.AssetOut(kinds={"pandera"}, description="Rows that passed the generated schema."),
        "quarantine": dg.AssetOut(kinds={"pandera"}, description="Rows that failed, with every reason."),
    },
    check_specs=[dg.AssetCheckSpec("quarantine_share", asset="validated_accounts")],
)
def validated_accounts(
    context: dg.AssetExecutionContext, kare: KareSettings, raw_accounts: pl.DataFrame, run_manifest: pl.DataFrame
):
    """Pandera validation built from the rule file's inputs; failing rows are quarantined, never dropped."""
    m = _manifest_of(run_manifest)
    checked = runner.step_validate(kare.rules(m["org"]), raw_accounts, kare.max_quarantine_share)
    yield dg.Output(checked.valid, "validated_accounts", metadata=md.frame(checked.valid))
    quarantine = runner.quarantine_rows(m["org"], checked, m["as_of"], m["run_id"])
    yield dg.Output(quarantine, "quarantine", metadata={"dagster/row_count": quarantine.height})
    yield checks.quarantine_check(checked.quarantine.height, checked.input_rows, kare.max_quarantine_share)


def _checked(validated_accounts: pl.DataFrame, quarantine: pl.DataFrame) -> Checked:
    return Checked(validated_accounts, quarantine.select("row_number", "account_id", "reasons", "record"))


@dg.asset(
    partitions_def=org_partitions,
    group_name=GROUP,
    kinds={"polars"},
    check_specs=[
        dg.AssetCheckSpec("unassigned_share", asset="account_categories"),
        dg.AssetCheckSpec("overlap_share", asset="account_categories"),
        dg.AssetCheckSpec("category_mix_shift", asset="account_categories"),
    ],
)
def account_categories(
    context: dg.AssetExecutionContext,
    kare: KareSettings,
    validated_accounts: pl.DataFrame,
    quarantine: pl.DataFrame,
    run_manifest: pl.DataFrame,
):
    """Every account's category, matched rule and reason; quarantined known accounts keep theirs."""
    m = _manifest_of(run_manifest)
    rules = kare.rules(m["org"])
    warehouse = kare.open_warehouse()
    # Only accounts whose rows were all quarantined keep a previous category: read just those.
    held = warehouse.categories_of(m["org"], quarantine["account_id"].drop_nulls().unique())
    result = runner.step_categories(
        rules, _checked(validated_accounts, quarantine), m["as_of"], m["run_id"], held,
        kare.overrides(m["org"], rules), kare.engine,
    )  # fmt: skip
    yield dg.Output(result, metadata={**md.frame(result), "categories": md.category_table(result)})
    yield from checks.category_checks(result, warehouse.last_run(m["org"]), kare)


@dg.asset(
    partitions_def=org_partitions,
    group_name=GROUP,
    kinds={"polars"},
    check_specs=[dg.AssetCheckSpec("history_invariants", asset="category_history")],
)
def category_history(
    context: dg.AssetExecutionContext,
    kare: KareSettings,
    account_categories: pl.DataFrame,
    validated_accounts: pl.DataFrame,
    quarantine: pl.DataFrame,
    run_manifest: pl.DataFrame,
):
    """SCD type 2 history with a change cause (new, data, rules, both, override, removed)."""
    m = _manifest_of(run_manifest)
    rules = kare.rules(m["org"])
    previous = kare.open_warehouse().previous_state(m["org"], tables=("category_history",), as_of=m["as_of"])
    history = runner.step_history(
        rules, _checked(validated_accounts, quarantine), account_categories, previous, m["as_of"], m["run_id"],
        kare.overrides(m["org"], rules),
    )  # fmt: skip
    causes = history.filter(pl.col("valid_from") == m["as_of"])["change_cause"].value_counts()
    yield dg.Output(history, metadata={**md.frame(history), "changes": md.markdown(causes)})
    yield checks.history_check(history)


@dg.asset(partitions_def=org_partitions, group_name=GROUP, kinds={"polars"})
def category_transitions(
    context: dg.AssetExecutionContext, category_history: pl.DataFrame, run_manifest: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """How many accounts went from each category to each other since the last run."""
    m = _manifest_of(run_manifest)
    moves = transitions(category_history, m["as_of"], m["run_id"], m["org"])
    return dg.Output(moves, metadata={**md.frame(moves), "transition_matrix": md.transition_matrix(moves)})


@dg.asset(partitions_def=org_partitions, group_name=GROUP, kinds={"polars"})
def action_queue(
    context: dg.AssetExecutionContext,
    kare: KareSettings,
    category_history: pl.DataFrame,
    account_categories: pl.DataFrame,
    validated_accounts: pl.DataFrame,
    run_manifest: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Open actions per account: one per (account, action) at most; superseded when the account moves."""
    m = _manifest_of(run_manifest)
    rules = kare.rules(m["org"])
    previous = kare.open_warehouse().read("action_queue", m["org"])
    queue = runner.step_actions(
        rules, category_history, validated_accounts, account_categories, previous, m["as_of"], m["run_id"]
    )
    status = queue.filter(pl.col("status") == "open").group_by("category").len().sort("category")
    return dg.Output(queue, metadata={**md.frame(queue), "open_by_category": md.markdown(status)})


@dg.asset(partitions_def=org_partitions, group_name=GROUP, kinds={"duckdb"}, io_manager_key="io_manager")
def runs(
    context: dg.AssetExecutionContext,
    kare: KareSettings,
    run_manifest: pl.DataFrame,
    account_categories: pl.DataFrame,
    category_history: pl.DataFrame,
    category_transitions: pl.DataFrame,
    action_queue: pl.DataFrame,
    quarantine: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Publish the run to the warehouse in one transaction and log it in `kare.runs`."""
    m = _manifest_of(run_manifest)
    rules = kare.rules(m["org"])
    row = runner.run_row(
        rules, m["input_rows"], quarantine.height, account_categories, category_transitions, action_queue,
        m["as_of"], m["run_id"], m["started_at"],
    )  # fmt: skip
    out = runner.RunOutputs(
        org=m["org"], as_of=m["as_of"], run_id=m["run_id"], account_categories=account_categories,
        category_history=category_history, category_transitions=category_transitions, action_queue=action_queue,
        quarantine=quarantine, run=row, unchanged=m["run_id"] == m["previous_run_id"],
    )  # fmt: skip
    published = kare.open_warehouse().publish(
        out, kare.rules_text(m["org"]), rules.version, expected_previous_run=m["previous_run_id"]
    )
    frame = conformed("runs", pl.DataFrame([published]))
    return dg.Output(frame, metadata={"status": published["status"], **{k: published[k] for k in md.SUMMARY_KEYS}})


ALL = [raw_accounts, run_manifest, validated_accounts, account_categories, category_history, category_transitions,
       action_queue, runs]  # fmt: skip
