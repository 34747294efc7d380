"""The one run engine: one organization, one as_of — read, validate, categorize, change, check, publish.

`kare run`, the Dagster assets and the benchmarks all call `run_organization`. It reads only current
state, writes only the run's changes, slices large organizations to stay within a memory budget, and
does all of it in one warehouse transaction: a failed or interrupted run leaves every table as it was,
and is logged in `kare.runs` with what was known when it stopped (when the warehouse can take that).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from kare_rules import model as m
from kare_rules.engine import cast_expr, categorize
from kare_rules.errors import KareError, UsageError
from kare_rules.loader import is_safe_org, load_rules, load_rules_text, rule_file_in
from kare_rules.overrides import OVERRIDES_FILE, Override, apply_overrides, load_overrides, overrides_digest
from kare_rules.run.actions import OWNER_PREFIX, action_changes, held_owners, owner_columns
from kare_rules.run.history import history_changes, real_moves, transition_rows
from kare_rules.run.quality import (
    CheckResult,
    Thresholds,
    category_checks,
    history_check,
    quarantine_check,
    removed_check,
)
from kare_rules.run.slicing import (
    MIN_DUCKDB_MEMORY,
    budget_note,
    default_budget,
    in_slice,
    slice_bounds,
    slice_count,
    slice_range,
    unkept_budget,
)
from kare_rules.sources import count_rows, file_state, read_accounts, stream_accounts
from kare_rules.tables import EDGE_COLUMNS, SCHEMA, conformed, empty, empty_current, schema_of
from kare_rules.validation import require_columns, validate_accounts
from kare_rules.warehouse import DuckDBWarehouse, Session, WarehouseBusy, warehouse_lock
from kare_rules.warehouse.duckdb import IdRange, damaged_advice
from kare_rules.yamlsource import MAX_FILE_BYTES, read_regular_file

ENGINES = ("polars", "duckdb")
DUCKDB_SHARE = 6  # DuckDB gets a sixth of the run's memory budget (measured: no slower, 0.4–0.7 GiB less at 10M)
# Resident whatever the slices: the interpreter and libraries, DuckDB's allocations outside its buffer
# pool, and what the allocators keep after each slice (measured at 10M, docs/benchmarks.md).
RESIDENT_BYTES = 512 * 2**20
FAILURE_LOG_WAIT = 10.0  # seconds a failed run waits for the warehouse to log itself in kare.runs
OPEN_ACTION_COLUMNS = ("action_key", "account_id", "category", "source")  # what action_changes judges them by
SAMPLE_KEYS = 200_000  # account ids kept from the input's one streaming pass, to cut slices by
STEPS = ("validate", "categorize", "history", "actions", "write")  # per slice, for progress
SOON_DAYS = m.SOON_DAYS
# What an interruption is logged as in kare.runs: Ctrl-C, unless a stop-signal handler named its signal
# (stopped_by): an operator reading the log of a run `timeout` or a stopping container ended must not be
# told someone pressed Ctrl-C. A list, so the handler sets it without a global statement.
_stop_cause = ["Ctrl-C"]


def stopped_by(cause: str) -> None:
    """Name what is stopping the run ('SIGTERM'), before the handler raises KeyboardInterrupt; 'Ctrl-C' again
    once the handler is gone."""
    _stop_cause[0] = cause


class RunFailed(KareError):
    """The run stopped; nothing was published. `recorded` says whether the failure is logged in kare.runs
    (not when the warehouse could not be opened, or another run held it)."""

    def __init__(self, message: str, recorded: bool = False):
        super().__init__(message)
        self.recorded = recorded


class RunInterrupted(RunFailed):
    """Ctrl-C (or a stop signal) during a run; nothing was published."""


Progress = Callable[[str, int, int], None]  # (what is happening, units done, units in all)


def _no_progress(_what: str, _done: int, _total: int) -> None:
    return None


@dataclass(frozen=True)
class RuleBundle:
    """An organization's rules as read ONCE for a run: an edit during the run cannot mix versions."""

    rules: m.RuleSet
    text: str
    overrides: tuple[Override, ...]

    @property
    def digest(self) -> str:
        return self.rules.digest


def load_bundle(rules_dir: str | Path, org: str) -> RuleBundle:
    """Read rules/<org>/kare.yaml (and overrides.yaml) once, with every check of `kare validate`."""
    folder = Path(rules_dir) / org
    path = rule_file_in(folder)
    rules = load_rules(folder)  # refuses links, a directory named unlike its organization, special files
    text = read_regular_file(path, MAX_FILE_BYTES).decode("utf-8")
    if load_rules_text(text, str(path)).digest != rules.digest:
        raise KareError(f"{path} changed while it was being read; run again")
    return RuleBundle(rules, text, load_overrides(folder / OVERRIDES_FILE, rules))


@dataclass
class RunResult:
    """What a run did: its `runs` row, its transition matrix, its checks, and how it was sliced."""

    run: dict
    transitions: pl.DataFrame
    checks: list[CheckResult]
    slices: int
    unchanged: bool = False
    upcoming: pl.DataFrame = field(default_factory=pl.DataFrame)  # from_category, to_category, accounts
    notes: list[str] = field(default_factory=list)  # what a person should know about the run's results
    stopped: bool = False  # Ctrl-C (or SIGTERM) came once the run was committed: published, but asked to stop
    # False for the DuckDB engine, which computes no next moves: "0 will move" would then be untrue
    early_warning: bool = True
    shown: tuple[str, ...] = m.ALL_CATEGORIES  # the categories the summary lists (RuleSet.shown_categories)

    @property
    def moving_soon(self) -> int:
        """Accounts whose next move (data unchanged) is at most SOON_DAYS away."""
        return int(self.upcoming["accounts"].sum()) if self.upcoming.height else 0

    @property
    def categories(self) -> dict[str, int]:
        return {c: int(self.run.get(c) or 0) for c in m.ALL_CATEGORIES}


def fingerprint_of(raw: pl.DataFrame) -> str:
    """The input's identity for the run id: rows, a hash of every row, column names."""
    return f"{raw.height}:{raw.hash_rows(seed=0).sum() if raw.height else 0}:{','.join(raw.columns)}"


def run_id_for(org: str, as_of: dt.date, bundle: RuleBundle, engine: str, raw: pl.DataFrame | str) -> str:
    """Same organization, date, rules, overrides, engine and input → same run id: re-runs change nothing.
    `raw` is the input, or its fingerprint (`fingerprint_of`) when it was read in a streaming pass."""
    fingerprint = raw if isinstance(raw, str) else fingerprint_of(raw)
    parts = [org, as_of.isoformat(), bundle.digest, overrides_digest(bundle.overrides), engine, fingerprint]
    return f"{org}-{as_of:%Y%m%d}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:10]}"


class OutOfOrder(KareError):
    """A run for a date before the organization's last published one (`last_as_of`)."""

    def __init__(self, message: str, last_as_of: dt.date):
        super().__init__(message)
        self.last_as_of = last_as_of


def check_forward(org: str, as_of: dt.date, last_as_of: dt.date | None) -> None:
    """Runs move forward in time: an earlier date would rewrite later history."""
    if last_as_of and as_of < last_as_of:
        raise OutOfOrder(
            f"{org} was already published for {last_as_of}; a run for the earlier date {as_of} would rewrite "
            f"later history. Run {last_as_of} or a later date; to put the missed date into the history, run every "
            f"date again from the first, in order, into a new warehouse file (actions marked done are not carried "
            f"over).",
            last_as_of,
        )


def categorize_with(
    rules: m.RuleSet, valid: pl.DataFrame, as_of: dt.date, engine: str = "polars", previous: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Categorize with the chosen engine. The DuckDB engine runs the compiled SQL and gives no
    explanations: reason and overlaps are null, not computed (kare explain shows any account's tree).
    `previous`: the accounts' values in the previous run, for trends."""
    if engine == "duckdb":
        from kare_rules.compile_sql import categorize_duckdb

        return categorize_duckdb(rules, valid, as_of, previous).with_columns(
            pl.lit(None, dtype=pl.String).alias("reason"), pl.lit(None, dtype=pl.List(pl.String)).alias("overlaps")
        )
    if engine != "polars":
        raise KareError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    return categorize(rules, valid, as_of, explain=True, previous=previous, edges=True)


def categories_only(
    rules: m.RuleSet,
    valid: pl.DataFrame,
    as_of: dt.date,
    overrides: tuple[Override, ...],
    previous: pl.DataFrame | None,
) -> pl.DataFrame:
    """account_id and category, overrides applied: all a change cause needs of the previous rules."""
    result = categorize(rules, valid, as_of, explain=False, previous=previous)
    result = apply_overrides(result.with_columns(pl.lit(None, dtype=pl.String).alias("reason")), rules.key, overrides,
                             as_of)  # fmt: skip
    return result.select(pl.col(rules.key).cast(pl.String).alias("account_id"), "category")


def categorize_run(
    rules: m.RuleSet, valid: pl.DataFrame, as_of: dt.date, run_id: str, overrides: tuple[Override, ...] = (),
    engine: str = "polars", previous: pl.DataFrame | None = None,
) -> pl.DataFrame:  # fmt: skip
    """The account_categories rows of the valid accounts: category, rule, reason, versioned."""
    result = categorize_with(rules, valid, as_of, engine, previous)
    types = schema_of("account_categories")
    if "watches" not in result.columns:  # the SQL engine gives no early warning: unknown, null (not "none holds")
        result = result.with_columns(pl.lit(None, dtype=types[c]).alias(c) for c in EDGE_COLUMNS)
    result = pin_overrides(rules, valid, result, as_of, overrides, previous, moves=engine == "polars")
    return conformed(
        "account_categories",
        result.with_columns(
            pl.lit(rules.organization).alias("org"),
            pl.col(rules.key).cast(pl.String).alias("account_id"),
            pl.lit(rules.version).alias("rules_version"),
            pl.lit(rules.digest).alias("rules_digest"),
            pl.lit(as_of).alias("as_of"),
            pl.lit(run_id).alias("run_id"),
        ),
    )


def pin_overrides(
    rules: m.RuleSet,
    valid: pl.DataFrame,
    result: pl.DataFrame,
    as_of: dt.date,
    overrides: tuple[Override, ...],
    previous: pl.DataFrame | None = None,
    moves: bool = True,
) -> pl.DataFrame:
    """`result` (categorized with edges) with the overrides in force on `as_of` applied as a run applies
    them: the pinned category and reason, no nearest change and no watches, and (with `moves`) the move
    the override's end brings. `kare run` and `kare diff` both call it, so they pin the same accounts."""
    if not overrides:
        return result
    result = apply_overrides(result, rules.key, overrides, as_of)
    # An override pins the category: where the rules would move the account says nothing about it.
    pinned = pl.col("matched_rule").eq_missing("override")
    result = result.with_columns(
        *[pl.when(~pinned).then(pl.col(c)).alias(c) for c in EDGE_COLUMNS if c != "watches"],
        pl.when(pinned).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(pl.col("watches")).alias("watches"),
    )
    return override_moves(rules, valid, result, as_of, overrides, previous) if moves else result


def override_moves(
    rules: m.RuleSet,
    valid: pl.DataFrame,
    result: pl.DataFrame,
    as_of: dt.date,
    overrides: tuple[Override, ...],
    previous: pl.DataFrame | None = None,
    horizon: int = m.DEFAULT_HORIZON_DAYS,
) -> pl.DataFrame:
    """`result` (categorized, overrides applied) with the next move of every pinned account whose
    override ends within the horizon. The day after its expiry the rules decide again: that day is the
    move when they give another category; when they give the same one, the move is the rules' own next
    move from that day on (the data unchanged, as for every next move)."""
    key = pl.col(rules.key).cast(pl.String)
    ends: dict[dt.date, list[str]] = {}
    for o in overrides:
        day = o.expires + dt.timedelta(days=1)
        if as_of < day and (day - as_of).days <= horizon:
            ends.setdefault(day, []).append(o.account)
    if not ends:
        return result
    # the accounts whose override ends, picked from every valid row once; then per day from those few
    pinned_ids = pl.Series([a for ids in ends.values() for a in ids], dtype=pl.String)
    ending_rows = valid.filter(key.is_in(pinned_ids.implode()))
    found = []
    for day, ids in sorted(ends.items()):
        rows = ending_rows.filter(key.is_in(pl.Series(ids, dtype=pl.String).implode()))
        if rows.height:
            later = categorize(rules, rows, day, explain=False, previous=previous, edges=True,
                               horizon=horizon - (day - as_of).days)  # fmt: skip
            found.append(later.select(
                key.alias("_kare_pinned"), pl.col("category").alias("_then"), pl.lit(day).alias("_then_on"),
                pl.col("next_category").alias("_later"), pl.col("next_move_on").alias("_later_on"),
            ))  # fmt: skip
    if not found:
        return result
    moves = pl.concat(found)
    joined = result.with_columns(key.alias("_kare_pinned")).join(moves, on="_kare_pinned", how="left",
                                                                 maintain_order="left")  # fmt: skip
    ending = pl.col("matched_rule").eq_missing("override") & pl.col("_then").is_not_null()
    other = pl.col("_then") != pl.col("category")

    def pick(moved: str, later: str, now: str) -> pl.Expr:
        return pl.when(ending & other).then(pl.col(moved)).when(ending).then(pl.col(later)).otherwise(pl.col(now))

    return joined.with_columns(
        pick("_then", "_later", "next_category").alias("next_category"),
        pick("_then_on", "_later_on", "next_move_on").alias("next_move_on"),
    ).drop("_kare_pinned", "_then", "_then_on", "_later", "_later_on")


def trend_values(rules: m.RuleSet, valid: pl.DataFrame, org: str, as_of: dt.date) -> pl.DataFrame:
    """Today's values of the columns trends read, long (account_values rows): the next run's baseline."""
    # Under names of our own until unpivoted: a trend column may be called value, column_name or account_id.
    private = {f"_kare_trend_{i}": c for i, c in enumerate(rules.trend_columns)}
    return (
        valid.select(
            pl.col(rules.key).cast(pl.String).alias("account_id"),
            *[pl.col(c).cast(pl.Float64).alias(p) for p, c in private.items()],
        )
        .unpivot(index="account_id", on=list(private), variable_name="column_name", value_name="value")
        .with_columns(
            pl.col("column_name").replace_strict(private, return_dtype=pl.String),
            pl.lit(org).alias("org"),
            pl.lit(as_of).alias("as_of"),
        )
    )


def read_input(source: str | pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The whole input, read once; whatever is wrong with a source is a DataError naming it. An empty
    input is read as such: the removed-share guard decides whether it may be published."""
    if isinstance(source, pl.DataFrame):
        return source
    if isinstance(source, pl.LazyFrame):
        return source.collect()
    return read_accounts(source, allow_empty=True)


@dataclass
class RunInput:
    """A run's input: held whole, or (a large file source) read one slice of accounts at a time.

    Held whole unless the run is sliced and the source is a Parquet or CSV file: then one streaming pass
    takes the fingerprint of the run id and a sample of the account ids to cut the slices by, and each
    slice reads only its own accounts' rows (Parquet skips what it can), so the input is never resident
    at once. The source's files must not change between the passes; the run fails if they do."""

    height: int
    columns: list[str]
    schema: pl.Schema
    fingerprint: str
    bounds: list[str]  # where the slices of account ids begin (slicing.slice_bounds); [] for one slice
    frame: pl.DataFrame | None = None
    source: str | None = None  # re-read per slice when `frame` is None
    state: tuple | None = None  # file_state(source) when it was first read
    budget: int | None = None  # the memory budget, when no slicing could keep to it (slicing.unkept_budget)

    @property
    def slices(self) -> int:
        return len(self.bounds) + 1

    def part(self, key: pl.Expr, k: int, row: str) -> tuple[pl.DataFrame, pl.Series | None]:
        """Slice k's input rows, and their 0-based positions in the input (None: the whole input, in order)."""
        if self.slices == 1 and self.frame is not None:
            return self.frame, None
        where = in_slice(key, self.bounds, k)
        if self.frame is not None:
            part = self.frame.with_row_index(row).filter(where)
        else:
            part = read_accounts(self.source, allow_empty=True, where=where, row_index=row)
            if file_state(self.source) != self.state:
                raise KareError(f"input {self.source} changed while the run was reading it; run again")
        return part.drop(row), part[row]


def open_input(
    source: str | pl.DataFrame | pl.LazyFrame, rules: m.RuleSet, budget: int, reserved: int, slices: int | None
) -> RunInput:
    """Read the input (or, when it is large and sliced, just take its measure); see RunInput."""
    key = rules.input(rules.key)
    if isinstance(source, str | Path) and not str(source).startswith(("duckdb:", "sql:")):
        state = file_state(source)
        height, head = count_rows(source)
        if head.height and key.name in head.columns:
            estimate = int(head.estimated_size() * height / head.height)
            n = slices or slice_count(height, estimate, budget, reserved)
            if n > 1:
                streamed = _streamed(str(source), state, head.schema, key, n, height)
                streamed.budget = None if slices or not unkept_budget(height, estimate, budget, reserved) else budget
                return streamed
    raw = read_input(source)
    size = int(raw.estimated_size())
    n = slices or slice_count(raw.height, size, budget, reserved + size)
    bounds = []
    if n > 1 and key.name in raw.columns:
        bounds = slice_bounds(raw.select(cast_expr(key.name, key.type, raw.schema[key.name])).to_series(), n)
    unkept = not slices and unkept_budget(raw.height, size, budget, reserved + size)
    return RunInput(raw.height, raw.columns, raw.schema, fingerprint_of(raw), bounds, frame=raw,
                    budget=budget if unkept else None)  # fmt: skip


def _streamed(source: str, state: tuple | None, schema: pl.Schema, key: m.InputColumn, n: int, rows: int) -> RunInput:
    """One pass over a large file source: its fingerprint (the same as `fingerprint_of` the whole input:
    row hashes add up) and an even sample of its account ids."""
    height, total, sample = 0, 0, []
    text = cast_expr(key.name, key.type, schema[key.name]).cast(pl.String)
    every = max(1, rows // SAMPLE_KEYS)
    for batch in stream_accounts(source):
        if batch.height:
            total += int(batch.hash_rows(seed=0).sum())  # wraps like the sum over the whole input
            sample.append(batch.select(text).to_series().gather_every(every, offset=(-height) % every))
            height += batch.height
    fingerprint = f"{height}:{total % 2**64 if height else 0}:{','.join(schema.names())}"
    bounds = slice_bounds(pl.concat(sample) if sample else pl.Series([], dtype=pl.String), n)
    return RunInput(height, list(schema.names()), schema, fingerprint, bounds, source=source, state=state)


@dataclass
class _Totals:
    """What the slices of a run add up to before it publishes."""

    input_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    overlapping: int = 0
    moves: list[pl.DataFrame] = field(default_factory=list)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    current: int = 0  # accounts with a category before the run
    removed: int = 0
    closes: int = 0
    closed: int = 0
    opened_ids: list[pl.Series] = field(default_factory=list)
    actions_opened: int = 0
    actions_closed: int = 0


def run_organization(
    org: str,
    as_of: dt.date,
    source: str | pl.DataFrame | pl.LazyFrame,
    warehouse: DuckDBWarehouse,
    *,
    rules_dir: str | Path = "rules",
    bundle: RuleBundle | None = None,
    engine: str = "polars",
    thresholds: Thresholds | None = None,
    memory_budget: int | None = None,
    slices: int | None = None,
    progress: Progress = _no_progress,
    fail_at: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one organization as of one date and publish it; raise RunFailed (nothing published) otherwise.

    `bundle` is the rules as already read (the Dagster layer reads them once); `slices` overrides the
    number of slices chosen from `memory_budget` (default: a fraction of the machine's memory).
    `fail_at(step)` is called before every write (tests inject failures there).
    """
    thresholds = thresholds or Thresholds()
    if engine not in ENGINES:
        raise KareError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if not is_safe_org(org):  # it names a folder and every published row: './x' would publish beside 'x'
        raise UsageError(
            f"{org!r} is not an organization name: lowercase letters, digits and inner hyphens, as the folder "
            "under the rules directory is named"
        )
    if bundle is not None and bundle.rules.organization != org:
        raise UsageError(f"the rules given for {org} are those of {bundle.rules.organization}; pass {org}'s rules")
    known: dict = {"org": org, "as_of": as_of, "started_at": dt.datetime.now(dt.UTC)}
    session: Session | None = None
    try:
        # Rules and input are read before the warehouse is locked: a queued run holds nobody up meanwhile.
        bundle = bundle or load_bundle(rules_dir, org)
        known |= {"rules_version": bundle.rules.version, "rules_digest": bundle.digest}
        progress("reading the input", 0, 1)
        budget = memory_budget or default_budget()
        duckdb_memory = max(budget // DUCKDB_SHARE, MIN_DUCKDB_MEMORY)
        raw = open_input(source, bundle.rules, budget, duckdb_memory + RESIDENT_BYTES, slices)
        known |= {"input_rows": raw.height, "run_id": run_id_for(org, as_of, bundle, engine, raw.fingerprint)}
        require_columns(bundle.rules, raw.columns)
        with (
            warehouse_lock(warehouse.path, timeout=warehouse.wait, on_wait=warehouse.on_wait),
            warehouse.transaction(memory_limit=duckdb_memory) as session,
        ):
            result = _run(session, bundle, raw, known, engine, thresholds, progress, fail_at)
        if session.migrated:
            result.notes.insert(0, migration_note(session.migrated))
        result.shown = bundle.rules.shown_categories
        return result
    except WarehouseBusy as exc:
        raise RunFailed(str(exc)) from exc  # someone else holds the warehouse: not even a log line can go in
    # A panic inside Polars is no Exception, nor is Ctrl-C.
    except (Exception, KeyboardInterrupt, pl.exceptions.PanicException) as exc:
        if _stopped_by_ctrl_c(exc):
            if session is not None and session.committed:
                # Ctrl-C once published (during the COMMIT, closing the file, freeing the lock): nothing of
                # this run is left to stop, but its caller is (--all-orgs runs no further).
                result.stopped = True
                return result
            raise _interrupted(warehouse, known) from None
        message = str(exc) if isinstance(exc, KareError) else f"{type(exc).__name__}: {exc}{damaged_advice(exc)}"
        if session is not None and session.migrated:  # done before the run's transaction: it stays
            message = f"{message} (nothing else was published, but this run {migration_note(session.migrated)})"
        raise RunFailed(message, _record_failure(warehouse, known, message)) from exc
    except BaseException as exc:
        # Another stop that is no error: an orchestrator's own (Dagster raises DagsterExecutionInterruptedError
        # in the step when a run is terminated). Logged as an interruption, whichever way the run was launched,
        # and passed on unchanged for the orchestrator to finish its termination.
        if not (session is not None and session.committed):
            _record_failure(warehouse, known, f"interrupted ({type(exc).__name__}); nothing was published")
        raise


def _interrupted(warehouse: DuckDBWarehouse, known: dict) -> RunInterrupted:
    recorded = _record_failure(warehouse, known, f"interrupted ({_stop_cause[0]}); nothing was published")
    return RunInterrupted("interrupted; nothing was published: the tables are as they were", recorded)


def _stopped_by_ctrl_c(exc: BaseException) -> bool:
    """Ctrl-C (or kare run's SIGTERM): a KeyboardInterrupt, or, while DuckDB runs a statement, DuckDB's error."""
    return isinstance(exc, KeyboardInterrupt | duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc) == "Query interrupted"
    )


def _record_failure(warehouse: DuckDBWarehouse, known: dict, message: str) -> bool:
    """Log a failed run with everything known when it stopped, and say whether it went in; a warehouse
    that cannot take even that is left alone (the run's own error is the one to report)."""

    def on_wait(text: str) -> None:  # after a Ctrl-C, a bare 'waiting for the warehouse' reads as the run going on
        warehouse.on_wait(f"to log the stopped run in kare.runs: {text}")

    # Briefly: a Ctrl-C must not hang for --wait while a queued run holds the warehouse. A log line that
    # cannot go in says so (`recorded` False); the run's own error is the one to report.
    brief = DuckDBWarehouse(warehouse.path, wait=min(warehouse.wait, FAILURE_LOG_WAIT), on_wait=on_wait)
    try:
        brief.record_failure(known, message)
    except Exception:
        return False
    return True


def _run(
    s: Session,
    bundle: RuleBundle,
    raw: RunInput,
    known: dict,
    engine: str,
    t: Thresholds,
    progress: Progress,
    fail_at: Callable[[str], None] | None,
) -> RunResult:
    rules, org, as_of, run_id = bundle.rules, known["org"], known["as_of"], known["run_id"]
    step = fail_at or (lambda _: None)
    last = s.last_run(org)
    check_forward(org, as_of, last["as_of"] if last else None)
    if last and last["run_id"] == run_id:
        return _unchanged(s, last, known, engine)
    rerun = bool(last and last["as_of"] == as_of)
    if rerun:
        step("rewind")
        s.rewind(org, as_of)  # a re-run of the last date replaces it
    ruled = s.last_run(org, before=as_of)  # the run the change causes and the trends compare with
    trends = rules.trend_columns
    stored: dict[str, m.RuleSet | None] = {}

    def rules_of(digest: str) -> m.RuleSet | None:
        """A rule version an earlier run used (its text is kept in rule_versions); None when the loader no
        longer accepts it or it was not kept: changes measured against it count as 'both'."""
        if digest not in stored:
            text = s.rules_text(org, digest)
            try:
                stored[digest] = load_rules_text(text, f"{org}@{digest}") if text else None
            except KareError:
                stored[digest] = None
        return stored[digest]

    def under(old_rules: m.RuleSet | None, valid: pl.DataFrame, within: IdRange | None) -> pl.DataFrame | None:
        """Today's valid accounts categorized by an earlier rule version (account_id, category)."""
        if old_rules is None:
            return None
        try:
            old = old_rules.trend_columns
            old_before = s.previous_values(org, ruled["as_of"], old, within) if old and ruled else None
            return categories_only(old_rules, valid, as_of, bundle.overrides, old_before)
        except KareError:
            return None  # the old rules cannot read today's data: a change is 'both'

    def as_now(digest: str) -> str:
        """Today's digest for a stored version that is these very rules: an older kare gave the same rules
        another digest (its canonical form changed since), and taking that for a rule change would make
        every move of the first run after an upgrade 'both'."""
        old = rules_of(digest) if digest != rules.digest else None
        return rules.digest if old is not None and old.digest == rules.digest else digest

    previous_digest = as_now(ruled["rules_digest"]) if ruled else None
    previous_rules = rules_of(previous_digest) if previous_digest and previous_digest != rules.digest else None
    # Runs whose account_categories rows say nothing about an account's last evaluation before today's.
    recent_runs = (ruled["run_id"] if ruled else "", last["run_id"] if rerun else "")

    n = raw.slices
    key = rules.input(rules.key)
    key_text = cast_expr(key.name, key.type, raw.schema[key.name]) if key.name in raw.schema else pl.lit(None)
    row = _unused_name("_kare_input_row", raw.columns)
    owners = owner_columns(rules)
    totals = _Totals(input_rows=raw.height)
    total_units = n * len(STEPS)
    # The accounts of overrides in force, until some slice's input (valid or quarantined) holds them.
    unseen = pl.Series([o.account for o in bundle.overrides if as_of <= o.expires], dtype=pl.String)
    for k in range(n):
        units = k * len(STEPS)
        where = f"slice {k + 1}/{n}: " if n > 1 else ""
        progress(f"{where}validating", units, total_units)
        part, rows = raw.part(key_text, k, row)
        within = slice_range(raw.bounds, k) if n > 1 else None
        checked = validate_accounts(rules, part)
        quarantined = checked.quarantine
        if rows is not None and quarantined.height:
            quarantined = quarantined.with_columns(
                (rows.gather(quarantined["row_number"] - 1).cast(pl.Int64) + 1).alias("row_number")
            )
        totals.quarantine.append(quarantined)
        if unseen.len():
            here = pl.concat([checked.valid.get_column(rules.key).cast(pl.String), quarantined["account_id"]])
            unseen = unseen.filter(~unseen.is_in(here.implode()))
        del part

        progress(f"{where}categorizing", units + 1, total_units)
        before = s.previous_values(org, ruled["as_of"], trends, within) if trends and ruled else None
        categories = categorize_run(rules, checked.valid, as_of, run_id, bundle.overrides, engine, before)
        held_ids = checked.quarantine["account_id"].drop_nulls().unique()
        if held_ids.len():  # accounts whose every input row is quarantined keep their category
            held_ids = held_ids.filter(~held_ids.is_in(categories["account_id"].implode()))
        current = s.current_rows(org, within)
        kept = s.categories_of(org, held_ids)
        restored = empty("account_categories")
        if rerun and held_ids.len():
            # Rows the replaced run wrote are not the account's any more: after the rewind its category is
            # the history's current one, as of the run before (an account new in the replaced run has none).
            # So for an account the replaced run removed (absent from its input): it has no row at all, and
            # left out it would be removed again although its input row is here, only quarantined.
            replaced = pl.col("run_id") == last["run_id"]
            removed = held_ids.filter(~held_ids.is_in(kept["account_id"].implode())).cast(pl.String)
            lost = pl.concat([kept.filter(replaced).select("account_id"), removed.to_frame("account_id")])
            judged = s.last_categorized(org, lost["account_id"], as_of)
            restored = restored_categories(lost, current, ruled, judged, org, as_of)
            kept = kept.filter(~replaced)
        held = pl.concat([kept["account_id"], restored["account_id"]])

        progress(f"{where}history", units + 2, total_units)

        # An account held (quarantined) in the run before was last judged by the rules of an earlier run:
        # whether the rules changed for it is measured against those (its account_categories row says).
        earlier = empty_current().select("account_id", "rules_digest")
        if ruled:
            apart = s.evaluated_apart(org, recent_runs, within)
            digests = {d: as_now(d) for d in apart["rules_digest"].unique().drop_nulls()}
            earlier = apart.with_columns(pl.col("rules_digest").replace(digests)).filter(
                pl.col("rules_digest") != previous_digest
            )
        account_rules = None
        if earlier.height:
            ids = checked.valid.get_column(rules.key).cast(pl.String)
            parts = []
            for (digest,), group in earlier.group_by("rules_digest"):
                mine = checked.valid.filter(ids.is_in(group["account_id"].implode()))
                old = under(rules_of(digest), mine, within) if digest != rules.digest else None
                old = old if old is not None else pl.DataFrame(schema={"account_id": pl.String, "category": pl.String})
                parts.append(group.join(old.rename({"category": "last_rules_category"}), on="account_id", how="left"))
            account_rules = pl.concat(parts).rename({"rules_digest": "last_digest"})
        changes = history_changes(current, categories, held, as_of, run_id, org,
                                  old_rules_category=under(previous_rules, checked.valid, within),
                                  previous_digest=previous_digest, account_rules=account_rules)  # fmt: skip

        progress(f"{where}actions", units + 3, total_units)
        people = checked.valid.select(
            pl.col(rules.key).cast(pl.String).alias("account_id"),
            *[pl.col(c).cast(pl.String).alias(OWNER_PREFIX + c) for c in owners],
        )
        if owners and held.len():
            people = pl.concat([people, held_owners(checked.quarantine, owners, held)])
        open_now = s.open_actions(org, within, OPEN_ACTION_COLUMNS)
        watched = categories.select("account_id", "watches")
        if ruled is not None and previous_digest == rules.digest:
            # Same rules as the last run: an account whose category stay goes on and that no watch
            # concerns asks for exactly the actions it already has, so only the others are judged. Who
            # moved is known by row from the history change set; only watches need a lookup by id.
            watching = pl.concat([
                watched.filter(pl.col("watches").list.len() > 0)["account_id"],
                open_now.filter(pl.col("source").str.starts_with("watch:"))["account_id"],
            ])  # fmt: skip
            touched = pl.concat([changes.opens["account_id"], changes.closes, watching])
            focus = (
                changes.current.filter(pl.lit(changes.opened) | _among(watching)),
                open_now.filter(_among(touched)),
                watched.filter(pl.lit(changes.moved) | _among(watching)),
            )
        else:
            focus = (changes.current, open_now, watched)
        actions = action_changes(
            rules, focus[0], changes.opens, people, focus[1], held, as_of,
            lambda keys: s.known_action_keys(org, keys), focus[2], rerun, watches_known=engine == "polars",
        )  # fmt: skip

        progress(f"{where}writing", units + 4, total_units)
        step("category_history")
        totals.closed += s.close_history(org, changes.closes, as_of, within)
        s.insert("category_history", changes.opens)
        step("action_queue")
        totals.actions_closed += s.supersede(org, actions.superseded, as_of, within)
        s.insert("action_queue", actions.opened)
        step("account_categories")
        s.delete_categories(org, keep=kept["account_id"], within=within)
        s.insert("account_categories", categories)
        s.insert("account_categories", restored)
        if trends:
            step("account_values")
            s.insert("account_values", trend_values(rules, checked.valid, org, as_of))

        for c, count in categories.group_by("category").len().iter_rows():
            totals.counts[c] = totals.counts.get(c, 0) + count
        totals.overlapping += categories.filter(pl.col("overlaps").list.len() > 0).height
        totals.moves.append(changes.transitions)
        totals.current += current.filter(pl.col("category").is_not_null()).height
        totals.removed += changes.removed
        totals.closes += changes.closes.len()
        opened = changes.opens["account_id"]
        totals.opened_ids.append(opened.filter(opened.is_duplicated()))  # an account is in one slice only
        totals.actions_opened += actions.opened.height
        del checked, categories, current, changes, actions, people, open_now

    progress("checking", total_units, total_units)
    columns = ("row_number", "account_id", "reasons", "record")
    quarantine = pl.concat([empty("quarantine").select(columns), *[q.select(columns) for q in totals.quarantine]])
    # Known now: a run that a guard stops is logged with its valid and quarantined rows (the guard's figures).
    known.update(valid_rows=totals.input_rows - quarantine.height, quarantined_rows=quarantine.height)
    checks = [
        quarantine_check(quarantine, totals.input_rows, t.max_quarantine_share),
        removed_check(totals.removed, totals.current, totals.input_rows, t),
        # a re-run: against the run before; the duckdb engine finds no overlaps (None: not a share of 0)
        *category_checks(totals.counts, totals.overlapping if engine == "polars" else None, ruled, t),
        history_check(totals.closed, totals.closes, pl.concat([pl.Series([], dtype=pl.String), *totals.opened_ids])),
    ]
    moves = transition_rows(totals.moves, org, as_of, run_id)
    step("quarantine")
    extra = [pl.lit(org).alias("org"), pl.lit(as_of).alias("as_of"), pl.lit(run_id).alias("run_id")]
    s.replace_day("quarantine", org, as_of, conformed("quarantine", quarantine.with_columns(extra)))
    step("category_transitions")
    s.replace_day("category_transitions", org, as_of, moves)
    s.forget_values(org, before=ruled["as_of"] if ruled else as_of)
    step("runs")
    s.remember_rules(org, rules.digest, rules.version, bundle.text, as_of)
    run = _run_row(known, totals, moves, "published")
    notes = _unkept_trends(rules, ruled, s.kept_columns(org, ruled["as_of"]) if trends and ruled else set())
    if unseen.len():  # a misspelt id pins nothing, and would go on pinning nothing until it expires
        shown = ", ".join(repr(a) for a in unseen.head(5))
        more = f" and {unseen.len() - 5:,} more" if unseen.len() > 5 else ""
        notes.append(
            f"overrides.yaml pins {unseen.len():,} account(s) not in the input, which it therefore left alone: "
            f"{shown}{more}; check those ids against the input's {rules.key}"
        )
    # Measured, not predicted: the estimate of a wide input counts columns the run never reads.
    if raw.budget and (note := budget_note(raw.budget)):
        notes.append(note)
    s.insert("runs", pl.DataFrame([run]))
    upcoming = s.upcoming(org, as_of, SOON_DAYS)
    step("commit")
    progress("published", total_units, total_units)
    return RunResult(run=run, transitions=moves, checks=checks, slices=n, upcoming=upcoming, notes=notes,
                     early_warning=engine == "polars")  # fmt: skip


def migration_note(added: list[tuple[str, str | None]]) -> str:
    """What a run that migrated an older kare's warehouse did (`ensure_tables`' (table, column) pairs), and what
    follows: it happened silently, and an older kare then stops at its first write with DuckDB's 'has 18
    columns but 10 values were supplied'."""
    columns = Counter(f"{SCHEMA}.{table}" for table, column in added if column is not None)
    parts = [f"{n} column{'s' * (n > 1)} to {t}" for t, n in columns.items()]
    parts += [f"the table {SCHEMA}.{table}" for table, column in added if column is None]
    return (
        f"upgraded the warehouse, made by an older kare: added {', '.join(parts)} (null in the rows already "
        "there); an older kare can no longer write it, so to go back restore a copy made before the upgrade "
        '(docs/bi.md, "Upgrading kare-rules")'
    )


def _unkept_trends(rules: m.RuleSet, ruled: dict | None, kept: set[str]) -> list[str]:
    """Trends null for every account because the run they compare with kept no values of their column: a
    warehouse of a kare from before kare.account_values, or that run's rules had no such trend."""
    if ruled is None:
        return []
    missing = [c for c in rules.trend_columns if c not in kept]
    if not missing:
        return []
    names = [d.name for d in rules.derived if d.kind in m.TREND_KINDS and d.args[0] in missing]
    return [
        f"trends {', '.join(names)} are null for every account: the run of {ruled['as_of']} kept no values of "
        f"{', '.join(missing)} (made by a kare from before kare.account_values, or by rules without these "
        "trends); they compare from the next run on"
    ]


def restored_categories(
    replaced: pl.DataFrame, current: pl.DataFrame, ruled: dict | None, judged: pl.DataFrame, org: str, as_of: dt.date
) -> pl.DataFrame:
    """account_categories rows for held accounts whose row a re-run of `as_of` replaced: the category of
    their current history row (after the rewind), as of the run that last categorized them before (`judged`,
    from Session.last_categorized; the run before when it is not known); what explained it is gone."""
    if ruled is None or not replaced.height:
        return empty("account_categories")
    rows = current.join(replaced.select("account_id"), on="account_id").filter(pl.col("category").is_not_null())
    # An account held in the run before as well was last categorized earlier: that run's date, id and rules
    # are its row's (docs/bi.md), and the next run measures a rule change against those rules.
    run = ("as_of", "run_id", "rules_version", "rules_digest")
    rows = rows.drop(c for c in run if c in rows.columns).join(judged.select("account_id", *run), on="account_id",
                                                               how="left")  # fmt: skip
    rows = rows.with_columns(pl.col(c).fill_null(pl.lit(ruled[c])) for c in run)
    return conformed(
        "account_categories",
        rows.select(
            pl.lit(org).alias("org"), "account_id", "category", "matched_rule",
            # concat_str, not pl.format: Polars 2.1's panics on some frames a filter leaves (validation._text)
            pl.concat_str("category", pl.lit(": kept while its input rows are quarantined (its explanation of "),
                          pl.col("as_of").dt.strftime("%Y-%m-%d"), pl.lit(f" was replaced when {as_of} was run again)")
                          ).alias("reason"),
            "rules_version", "rules_digest", "as_of", "run_id",
            *[pl.lit(None).alias(c) for c in ("overlaps", *EDGE_COLUMNS)],  # unknown: their run was replaced
        ),
    )  # fmt: skip


def _among(ids: pl.Series) -> pl.Expr:
    """Whether `account_id` is one of `ids`; no lookup at all when there are none."""
    return pl.col("account_id").is_in(ids.implode()) if ids.len() else pl.lit(False)


def _unused_name(name: str, columns: list[str]) -> str:
    while name in columns:
        name = "_" + name
    return name


def _run_row(known: dict, totals: _Totals, moves: pl.DataFrame, status: str) -> dict:
    quarantined = sum(q.height for q in totals.quarantine)
    real = real_moves(moves)
    return {
        **known,
        "input_rows": totals.input_rows,
        "valid_rows": totals.input_rows - quarantined,
        "quarantined_rows": quarantined,
        **{c: int(totals.counts.get(c, 0)) for c in m.ALL_CATEGORIES},
        "moved": int(real["accounts"].sum() or 0),
        "actions_opened": totals.actions_opened,
        "actions_closed": totals.actions_closed,
        "finished_at": dt.datetime.now(dt.UTC),
        "status": status,
        "message": None,
    }


def _unchanged(s: Session, last: dict, known: dict, engine: str) -> RunResult:
    """The same run as the last one (same engine too: it is part of the run id): log it, change nothing else."""
    run = {**last, "started_at": known["started_at"], "finished_at": dt.datetime.now(dt.UTC), "status": "unchanged"}
    s.insert("runs", pl.DataFrame([run]))
    moves = s.day_rows("category_transitions", known["org"], known["as_of"])
    upcoming = s.upcoming(known["org"], known["as_of"], SOON_DAYS)
    return RunResult(run=run, transitions=moves, checks=[], slices=0, unchanged=True, upcoming=upcoming,
                     early_warning=engine == "polars")  # fmt: skip
