"""The assets are the published tables: one engine step (kare_rules.run.run_organization) publishes all six
for one organization and date, downstream of the organization's account source and its rule file."""

import contextlib
import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
from dagster._core.definitions.data_version import DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG

from kare_rules.errors import DataError, KareError
from kare_rules.loader import organization_problems
from kare_rules.model import ALL_CATEGORIES
from kare_rules.overrides import overrides_digest
from kare_rules.run import OutOfOrder, RuleBundle, RunBlocked, RunFailed, RunResult, load_bundle, run_organization
from kare_rules.run.engine import SOON_DAYS
from kare_rules.run.report import summary_lines
from kare_rules.sources import masked
from kare_rules.tables import SCHEMA, TABLES, json_contract
from kare_rules.warehouse import WarehouseBusy
from pipelines.kare import checks
from pipelines.kare.checks import table_key
from pipelines.kare.partitions import as_of_of, chosen_dagster_features, org_and_as_of, org_partitions, partitions
from pipelines.kare.resources import KareSettings

GROUP = "kare"
BACKFILL_TAG, ORG_TAG, DATE_TAG = "dagster/backfill", "dagster/partition/org", "dagster/partition/date"
POOL = "kare_warehouse"  # one warehouse, one run at a time: dagster.yaml gives every pool a limit of 1
PUBLISHED = ("account_categories", "category_history", "category_transitions", "action_queue", "quarantine", "runs")


def column_schema(table: str) -> dg.TableSchema:
    """The BI contract of a table (kare_rules.tables), with each column's SQL type, meaning and whether it is
    never null: without the constraint Dagster reports every column as nullable, `org` and the keys too."""
    contract = json_contract(table)
    props, not_null = contract["properties"], set(contract["x-not-null"])
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                props[name]["x-sql-type"],
                description=text,
                constraints=dg.TableColumnConstraints(nullable=name not in not_null),
            )
            for name, _, text in TABLES[table][2]
        ]
    )


account_source = dg.AssetSpec(
    key=["kare", "account_source"],
    description="The organization's accounts as of the date (KareSettings.input, with {org} and {as_of} filled "
    "in): a Parquet/CSV file, a DuckDB table or a SQL query. Kept outside Dagster; the run reads it once.",
    group_name=GROUP,
    partitions_def=partitions,
)


with chosen_dagster_features():

    @dg.observable_source_asset(key=["kare", "rules"], group_name=GROUP, partitions_def=org_partitions)
    def rules(context: dg.AssetExecutionContext, kare: KareSettings) -> dg.DataVersionsByPartition:
        """rules/<org>/kare.yaml and overrides.yaml: the data version is the rules digest (and the overrides'), so a
        change of either shows the tables as stale."""
        versions = {}
        for org in org_partitions.get_partition_keys():
            try:
                versions[org] = data_version_of(load_bundle(kare.rules_dir, org))
            except KareError as exc:  # an invalid file keeps its last version; CI and `kare validate` say why
                context.log.warning(f"{org}: {exc}")
        for problem in organization_problems(kare.rules_dir):  # no partitions, never run: say so here too
            context.log.warning(f"not an organization, never run: {problem}")
        with chosen_dagster_features():  # each observation builds one: the warning came with every Observe
            return dg.DataVersionsByPartition(versions)


def _specs() -> list[dg.AssetSpec]:
    # Each org × date partition depends on its organization's rules.
    with chosen_dagster_features():
        by_org = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="org")
    deps = [dg.AssetDep(account_source), dg.AssetDep(rules.key, partition_mapping=by_org)]
    return [
        dg.AssetSpec(
            table_key(table),
            description=TABLES[table][0],
            deps=deps,
            group_name=GROUP,
            kinds={"duckdb"},
            metadata={"dagster/column_schema": column_schema(table), "dagster/table_name": f"{SCHEMA}.{table}"},
        )
        for table in PUBLISHED
    ]


@dg.multi_asset(
    name="kare_run",
    specs=_specs(),
    check_specs=checks.SPECS,
    partitions_def=partitions,
    can_subset=False,
    pool=POOL,
)
def kare_run(context: dg.AssetExecutionContext, kare: KareSettings):
    """Run one organization as of the partition's date and publish every table in one transaction."""
    org, as_of = org_and_as_of(context.partition_key)
    tags = {"kare/org": org, "kare/as_of": as_of.isoformat()}
    context.instance.add_run_tags(context.run.run_id, tags)
    warehouse = kare.open_warehouse(on_wait=context.log.info)
    engine, budget = kare.checked_engine(), kare.budget()  # settings, not runs: a Failure naming the field
    _refuse_after_a_failed_date(context, warehouse, org, as_of)
    _refuse_one_input_for_many_dates(context, kare, org, as_of)
    try:
        thresholds = kare.thresholds_for(org)
        bundle = load_bundle(kare.rules_dir, org)  # read once; the engine never re-reads it
    except KareError as exc:
        with contextlib.suppress(Exception):  # logged like the engine's failures; the rules' error is the one to tell
            warehouse.record_failure({"org": org, "as_of": as_of, "started_at": dt.datetime.now(dt.UTC)}, str(exc))
        hint = _rules_dir_hint(kare, org)
        raise dg.Failure(description=with_hint(f"{org} as of {as_of}: {exc}", hint), metadata=tags) from None
    versions = {"kare/rules_version": bundle.rules.version, "kare/rules_digest": bundle.digest}
    context.instance.add_run_tags(context.run.run_id, versions)
    observe_rules_read(context, org, data_version_of(bundle))
    failure: dg.Failure | None = None
    try:
        result = run_organization(
            org, as_of, kare.source(org, as_of), warehouse, bundle=bundle, engine=engine, thresholds=thresholds,
            memory_budget=budget,
        )  # fmt: skip
    except RunFailed as exc:
        hint = _order_hint(exc.__cause__, org)
        if isinstance(exc.__cause__, RunBlocked):
            yield checks.check_result(exc.__cause__.check)  # the guard that stopped it, on the table it judges
            hint += _limit_hint(exc.__cause__.check.name, org)
        elif isinstance(exc.__cause__, WarehouseBusy) and "--wait" in str(exc):
            hint += f" In Dagster the wait is the kare resource's wait (KARE_WAIT, now {kare.wait:g} s)."
        elif isinstance(exc.__cause__, WarehouseBusy):  # a warehouse that cannot be opened or written
            hint += (
                f" In Dagster the warehouse is the kare resource's warehouse (KARE_WAREHOUSE, now {kare.warehouse!r})."
            )
        elif isinstance(exc.__cause__, DataError):
            hint += _input_hint(kare, kare.source(org, as_of), str(exc))
        failure = dg.Failure(description=with_hint(str(exc), hint), metadata={**tags, **versions})
    if failure:
        # Raised here, not in the except: there the Failure's context would be the engine's exception, whose
        # traceback holds the run's frames and open DuckDB session. Dagster keeps the Failure to the end of
        # the process, among objects pipelines/__init__.py froze: DuckDB then printed "leaked N instances".
        raise failure
    context.instance.add_run_tags(context.run.run_id, {"kare/run_id": result.run["run_id"]})
    # kare run's summary; its one option (--engine) is the resource's engine here, as the failures say.
    context.log.info("\n".join(summary_lines(result, "set the kare resource's engine (KARE_ENGINE) to polars")))
    for table, metadata in table_metadata(result).items():
        yield dg.MaterializeResult(
            asset_key=table_key(table), metadata=metadata, data_version=dg.DataVersion(result.run["run_id"])
        )
    if result.unchanged:
        yield from checks.unchanged(result.run["run_id"])
    else:
        yield from (checks.check_result(check) for check in result.checks)


def data_version_of(bundle: RuleBundle) -> str:
    """The rules digest, and the overrides' when there are any: both decide what a run publishes."""
    return f"{bundle.digest}+overrides:{overrides_digest(bundle.overrides)}" if bundle.overrides else bundle.digest


def observe_rules_read(context: dg.AssetExecutionContext, org: str, version: str) -> None:
    """Record the rules this run read as an observation of kare/rules[org], and point the tables' provenance at it.

    Dagster judges staleness by the rules observation a materialization recorded as its input. It looks that
    up when the step starts, so tables published before the rule file was ever observed kept no pointer and
    never showed as stale; tables published after a rule edit that nobody had observed pointed at the old
    version and showed as stale once it was observed, though made with the new rules."""
    tags = {DATA_VERSION_TAG: version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
    context.log_event(dg.AssetObservation(asset_key=rules.key, partition=org, tags=tags))
    # The cached input record is from the step's start; drop it so the tables' provenance reads this one.
    context.get_step_execution_context().wipe_input_asset_version_info(rules.key)


def with_hint(message: str, hint: str) -> str:
    """The engine's message, ended as a sentence, then what to change in Dagster terms."""
    if not hint:
        return message
    return (message if message.endswith(".") else message + ".") + hint


def _rules_dir_hint(kare: KareSettings, org: str) -> str:
    """The organizations are the folders of KARE_RULES_DIR when the code location loaded; the resource may
    read another folder (or the organization's folder may be gone since)."""
    if (Path(kare.rules_dir) / org).is_dir():
        return ""
    return (
        f" In Dagster the rules are read from the kare resource's rules_dir (KARE_RULES_DIR, now "
        f"{kare.rules_dir!r}), which has no folder {org}/; point it at the folder the organizations were loaded "
        "from, or reload the definitions after adding or removing an organization."
    )


def _input_hint(kare: KareSettings, source: str, message: str) -> str:
    """A problem of the data: which input, in Dagster terms. A missing column's message names no file (kare run's
    user typed it), and in Dagster the file is the resource's input with the partition filled in."""
    if source in message:
        where = ""
    elif masked(source) != source:  # a database URL with a password: not into the run's logs
        return ""
    else:
        where = f" The input was {source}."
    return (
        f"{where} In Dagster the input is the kare resource's input (KARE_INPUT, now {kare.input!r}; {{org}} and "
        "{as_of} are filled in per partition)."
    )


def _limit_hint(check: str, org: str) -> str:
    """The engine's message names kare run's options; in Dagster the same limits are the kare resource's."""
    field = {"quarantine_share": "max_quarantine_share", "removed_share": "max_removed_share"}.get(check)
    if field is None:
        return ""
    extra = (
        "; for an input with no rows, allow_empty_input (KARE_ALLOW_EMPTY_INPUT) with max_removed_share 1"
        if check == "removed_share"
        else ""
    )
    return (
        f" In Dagster the limit is the kare resource's {field} ({('KARE_' + field).upper()}{extra}), or for this "
        f"organization only thresholds: {{{org}: {{{field}: ...}}}}."
    )


def _refuse_after_a_failed_date(context: dg.AssetExecutionContext, warehouse, org: str, as_of: dt.date) -> None:
    """In a backfill, a date whose run failed must publish before any later date of the organization: once a
    later one publishes, the engine refuses the failed date for good (it would rewrite later history), and
    the backfill's range keeps a hole. So a later date of the same backfill stops until the failed one is
    published (fixed and re-executed)."""
    backfill = context.run.tags.get(BACKFILL_TAG)
    if not backfill:
        return
    # A run canceled in the backfill (terminated in the UI while it queued) leaves the same hole as a failed one.
    statuses = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    failed = context.instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill, ORG_TAG: org},
                                                             statuses=statuses))  # fmt: skip
    dates = {as_of_of(run.tags[DATE_TAG]): run for run in failed if DATE_TAG in run.tags}
    earlier = sorted(day for day in dates if day < as_of)
    if not earlier:
        return
    try:
        last = warehouse.last_run(org)
    except KareError:  # the warehouse cannot be read now; the engine will say why
        return
    pending = [day for day in earlier if not last or last["as_of"] < day]
    if pending:
        first = pending[0]
        how = "was canceled" if dates[first].status == dg.DagsterRunStatus.CANCELED else "failed"
        raise dg.Failure(
            description=f"{org} as of {as_of}: not run, because {first} {how} earlier in this backfill (Dagster run "
            f"{dates[first].run_id}) and is not published; publishing {as_of} first would make {first} impossible "
            f"to run (a run never rewrites later history). Fix what failed, then re-execute this backfill's failed "
            f"runs from {first} on, in date order.",
            metadata={"kare/org": org, "kare/as_of": as_of.isoformat(), "failed_date": first.isoformat()},
        )


def _refuse_one_input_for_many_dates(context: dg.AssetExecutionContext, kare: KareSettings, org: str,
                                     as_of: dt.date) -> None:  # fmt: skip
    """A backfill publishes past dates; an input that does not name the date (no {as_of}) is the same
    accounts for every one of them: today's data published as the past, silently. A single run or the
    schedule's (yesterday, from the latest extract) is what such an input is for."""
    if context.run.tags.get(BACKFILL_TAG) and "{as_of}" not in kare.input:
        raise dg.Failure(
            description=f"{org} as of {as_of}: not run: this is a backfill, and the kare resource's input "
            f"(KARE_INPUT, now {kare.input!r}) has no {{as_of}}, so every date would read the same accounts and "
            "publish them as that date's. Point the input at one snapshot per date, e.g. "
            "'data/{org}/{as_of}.parquet' (in a sql: query, compare with '{as_of}').",
            metadata={"kare/org": org, "kare/as_of": as_of.isoformat()},
        )


def _order_hint(cause: BaseException | None, org: str) -> str:
    """The engine refuses a date before the last published one; say how to launch dates in order. (From
    the error itself: opening the warehouse again could wait for it, or fail, and hide the run's error.)"""
    if not isinstance(cause, OutOfOrder):
        return ""
    return (
        f" In Dagster: materialize the date partitions of {org} in date order, from {cause.last_as_of} on; launch "
        "a range backfill as one run per partition (the kare_warehouse pool runs them oldest first)."
    )


def table_metadata(result: RunResult) -> dict[str, dict]:
    """Per table: the partition's rows (what this org and date put there), the schema, and who made them."""
    run, moves = result.run, result.transitions
    common = {
        "org": run["org"],
        "as_of": str(run["as_of"]),
        "run_id": run["run_id"],
        "status": run["status"],
        "rules_version": run["rules_version"],
        "rules_digest": run["rules_digest"],
    }
    opened = int(moves.filter(pl.col("from_category") != pl.col("to_category"))["accounts"].sum() or 0)
    rows = {
        "account_categories": sum(result.categories.values()),  # accounts categorized
        "category_history": opened,  # intervals the run opened (new, moved, removed)
        "category_transitions": moves.height,
        "action_queue": int(run["actions_opened"] or 0),  # actions the run opened
        "quarantine": int(run["quarantined_rows"] or 0),
        "runs": 1,
    }
    # Left out when the engine computed no next moves (duckdb): a 0 there would be untrue.
    upcoming = (
        {f"moving_within_{SOON_DAYS}_days": result.moving_soon, "upcoming_moves": transition_matrix(result.upcoming)}
        if result.early_warning
        else {}
    )
    extra = {
        "account_categories": {
            "categories": category_table(result.categories),
            **upcoming,
        },
        "category_transitions": {"transition_matrix": transition_matrix(moves)},
        "action_queue": {"actions_closed": int(run["actions_closed"] or 0)},
        "quarantine": {"input_rows": int(run["input_rows"] or 0)},
        # What the summary's `note` lines tell a person (a memory budget slicing could not keep to, trends
        # whose previous values were not kept): the runs table is where a run's own facts are shown.
        "runs": {"notes": dg.MetadataValue.md("\n".join(f"- {note}" for note in result.notes))} if result.notes else {},
    }
    return {
        table: {
            "dagster/row_count": rows[table],
            "dagster/column_schema": column_schema(table),
            **common,
            **extra.get(table, {}),
        }
        for table in PUBLISHED
    }


def category_table(counts: dict[str, int]) -> dg.MetadataValue:
    total = max(sum(counts.values()), 1)
    schema = dg.TableSchema(columns=[dg.TableColumn("category", "string"), dg.TableColumn("accounts", "int"),
                                     dg.TableColumn("share", "float")])  # fmt: skip
    records = [
        dg.TableRecord({"category": c, "accounts": counts.get(c, 0), "share": round(counts.get(c, 0) / total, 4)})
        for c in ALL_CATEGORIES
    ]
    return dg.MetadataValue.table(records, schema=schema)


def transition_matrix(moves: pl.DataFrame) -> dg.MetadataValue:
    """Rows: from_category (or 'new'); columns: to_category (or 'removed'); cells: accounts. Also the
    matrix of upcoming moves (from the current category to the next one, data unchanged)."""
    order = ["new", *ALL_CATEGORIES, "removed"]
    froms = [c for c in order if c in set(moves["from_category"])]
    tos = [c for c in order if c in set(moves["to_category"])]
    cell = {(r["from_category"], r["to_category"]): int(r["accounts"]) for r in moves.iter_rows(named=True)}
    schema = dg.TableSchema(columns=[dg.TableColumn("from_category", "string"),
                                     *[dg.TableColumn(t, "int") for t in tos]])  # fmt: skip
    records = [dg.TableRecord({"from_category": f, **{t: cell.get((f, t), 0) for t in tos}}) for f in froms]
    return dg.MetadataValue.table(records, schema=schema)


ALL = [account_source, rules, kare_run]
