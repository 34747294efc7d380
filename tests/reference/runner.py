"""One run of one organization, as a pure function: previous published state + input → next state.

The Dagster assets call these steps one by one; `kare run` and the tests use them through the
asset graph, and benchmarks call `compute_run` directly. Every step is independent across accounts,
so a large organization can be run bucket by bucket (`bucket_expr`, `input_buckets`, `BucketTotals`;
the warehouse does the I/O in `Warehouse.run_bucketed`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import polars as pl

from kare_rules import model as m
from kare_rules.engine import categorize
from kare_rules.errors import DataError, KareError, one_line
from kare_rules.overrides import Override, overrides_digest
from kare_rules.run.engine import categorize_run as engine_categorize_run
from kare_rules.tables import EDGE_COLUMNS, conformed, empty
from kare_rules.validation import Checked, validate_accounts
from tests.reference.actions import SUPERSEDED, update_actions
from tests.reference.history import rewind_history, transitions, update_history

DEFAULT_MAX_QUARANTINE_SHARE = 0.2
NO_QUARANTINE_LIMIT = 1.0  # a bucket's share is not the run's: a bucketed run checks the whole run's share
BUCKET_SEED = 0x6B617265  # fixed, so the input rows and the published rows of one run agree on buckets
RUN_COUNTS = ("input_rows", "valid_rows", "quarantined_rows", *m.ALL_CATEGORIES, "moved", "actions_opened",
              "actions_closed")  # fmt: skip


@dataclass
class PreviousState:
    """What the warehouse holds for one organization before this run."""

    categories: pl.DataFrame = field(default_factory=lambda: empty("account_categories"))
    history: pl.DataFrame = field(default_factory=lambda: empty("category_history"))
    actions: pl.DataFrame = field(default_factory=lambda: empty("action_queue"))
    last_as_of: dt.date | None = None
    last_run_id: str | None = None
    last_rules_digest: str | None = None
    previous_rules: m.RuleSet | None = None
    # The valid accounts' values in the last run before this one (account_id + inputs), for trends.
    values: pl.DataFrame | None = None
    # The last run before this one's date: (as_of, run_id, rules). A re-run of a date builds on it.
    before: tuple[dt.date, str, m.RuleSet] | None = None
    versions: dict[str, m.RuleSet] = field(default_factory=dict)  # every rule version published, by digest
    # account_categories as the run `before` left them: a held account's row there is that of the run that last
    # categorized it. A re-run of a date that holds the account again gives it that run's date, id and rules.
    categories_before: pl.DataFrame | None = None


@dataclass
class RunOutputs:
    """Everything one run publishes, already in the table contracts' shapes."""

    org: str
    as_of: dt.date
    run_id: str
    account_categories: pl.DataFrame
    category_history: pl.DataFrame
    category_transitions: pl.DataFrame
    action_queue: pl.DataFrame
    quarantine: pl.DataFrame
    run: dict
    unchanged: bool = False

    def summary(self) -> dict:
        return self.run


class QuarantineTooLarge(DataError):
    """Too much of the input failed validation to trust a run; nothing is published."""


def run_id_for(org: str, as_of: dt.date, rules: m.RuleSet, overrides: tuple[Override, ...], raw: pl.DataFrame) -> str:
    """Same organization, date, rules, overrides and input → same run id, so re-runs change nothing."""
    fingerprint = f"{raw.height}:{raw.hash_rows(seed=0).sum() if raw.height else 0}:{','.join(raw.columns)}"
    text = "|".join([org, as_of.isoformat(), rules.digest, overrides_digest(overrides), fingerprint])
    return f"{org}-{as_of:%Y%m%d}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def check_quarantine(quarantine: pl.DataFrame, rows: int, max_share: float) -> None:
    """Refuse a run whose quarantined rows (row_number, account_id, reasons) are more than `max_share` of `rows`."""
    share = quarantine.height / rows if rows else 0.0
    if share > max_share:
        first = quarantine.bottom_k(3, by="row_number").sort("row_number")
        examples = one_line("; ".join(
            f"row {r['row_number']} ({r['account_id'] or 'no key'}): {', '.join(r['reasons'])}"
            for r in first.iter_rows(named=True)
        ))  # fmt: skip
        raise QuarantineTooLarge(
            f"{quarantine.height} of {rows} input rows ({share:.1%}) failed validation, above the limit of "
            f"{max_share:.0%}; nothing was published. First failures: {examples}. Fix the source or raise the limit "
            "(--max-quarantine-share)."
        )


ENGINES = ("polars", "duckdb")


def categorize_with(rules: m.RuleSet, valid: pl.DataFrame, as_of: dt.date, engine: str = "polars") -> pl.DataFrame:
    """Categorize with the chosen engine. The DuckDB engine runs the compiled SQL and gives no
    explanations: reason is null and overlaps empty (kare explain shows any account's tree)."""
    if engine == "duckdb":
        from kare_rules.compile_sql import categorize_duckdb

        return categorize_duckdb(rules, valid, as_of).with_columns(
            pl.lit(None, dtype=pl.String).alias("reason"), pl.lit([], dtype=pl.List(pl.String)).alias("overlaps")
        )
    if engine != "polars":
        raise KareError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    return categorize(rules, valid, as_of, explain=True)


def categorize_run(
    rules: m.RuleSet,
    valid: pl.DataFrame,
    as_of: dt.date,
    run_id: str,
    overrides: tuple[Override, ...] = (),
    engine: str = "polars",
    values: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The account_categories rows of the valid accounts. Categorizing is not what this reference
    checks (history, actions and state are), so it is the library's own, early-warning columns included;
    the previous run's `values` feed the trends."""
    return engine_categorize_run(rules, valid, as_of, run_id, overrides, engine, values)


def step_validate(rules: m.RuleSet, raw: pl.DataFrame, max_quarantine_share: float) -> Checked:
    """Pandera validation; past the quarantine limit the run stops before anything is published."""
    checked = validate_accounts(rules, raw)
    check_quarantine(checked.quarantine, checked.input_rows, max_quarantine_share)
    return checked


def quarantine_rows(org: str, checked: Checked, as_of: dt.date, run_id: str) -> pl.DataFrame:
    extra = [pl.lit(org).alias("org"), pl.lit(as_of).alias("as_of"), pl.lit(run_id).alias("run_id")]
    return conformed("quarantine", checked.quarantine.with_columns(extra))


def step_categories(
    rules: m.RuleSet,
    checked: Checked,
    as_of: dt.date,
    run_id: str,
    previous_categories: pl.DataFrame,
    overrides: tuple[Override, ...] = (),
    engine: str = "polars",
    values: pl.DataFrame | None = None,
    replaced: tuple[str, pl.DataFrame, tuple[dt.date, str, m.RuleSet] | None] | None = None,
    categories_before: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """This run's categories, plus the previous row of every known account whose input rows were all
    quarantined: those keep their category (their run_id tells them apart). `replaced` (a re-run of the
    last date): the replaced run's id, the history and the last run before the date."""
    current = categorize_run(rules, checked.valid, as_of, run_id, overrides, engine, values)
    bad = checked.quarantine["account_id"].drop_nulls().unique()
    held = previous_categories.filter(
        pl.col("account_id").is_in(bad.implode()) & ~pl.col("account_id").is_in(current["account_id"].implode())
    )
    if replaced is not None:  # a re-run: what the replaced run wrote goes; the history before the date says
        run_id_replaced, history, before = replaced
        stale = held.filter(pl.col("run_id") == run_id_replaced)
        held = held.filter(pl.col("run_id") != run_id_replaced)
        if before is not None:
            restored = held_from_history(stale, history, as_of, before, categories_before)
            held = pl.concat([conformed("account_categories", held), restored])
    return pl.concat([current, conformed("account_categories", held)])


def held_from_history(
    stale: pl.DataFrame,
    history: pl.DataFrame,
    as_of: dt.date,
    before: tuple[dt.date, str, m.RuleSet],
    categories_before: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """A held account's row after a re-run replaced the run that had categorized it: its category in the
    history as it stood before the date, as of the run that last categorized it before (its row as the run
    before left it; that run itself when unknown)."""
    day, run_id, rules = before
    open_before = rewind_history(history, as_of).filter(pl.col("is_current") & pl.col("category").is_not_null())
    rows = open_before.join(stale.select("account_id"), on="account_id")
    run = ("as_of", "run_id", "rules_version", "rules_digest")
    known = categories_before if categories_before is not None else empty("account_categories")
    rows = rows.drop(c for c in run if c in rows.columns).join(known.select("account_id", *run), on="account_id",
                                                               how="left")  # fmt: skip
    fallback = {"as_of": day, "run_id": run_id, "rules_version": rules.version, "rules_digest": rules.digest}
    rows = rows.with_columns(pl.col(c).fill_null(pl.lit(v)) for c, v in fallback.items())
    reason = pl.format(
        "{}: kept while its input rows are quarantined (its explanation of {} was replaced when {} was run again)",
        "category", pl.col("as_of").dt.strftime("%Y-%m-%d"), pl.lit(str(as_of)),
    )  # fmt: skip
    return conformed("account_categories", rows.with_columns(
        reason.alias("reason"), pl.lit(None).alias("overlaps"), *[pl.lit(None).alias(c) for c in EDGE_COLUMNS],
    ))  # fmt: skip


def split_held(account_categories: pl.DataFrame, run_id: str) -> tuple[pl.DataFrame, pl.Series]:
    """(rows computed by this run, ids of held accounts)."""
    mine = pl.col("run_id") == run_id
    return account_categories.filter(mine), account_categories.filter(~mine)["account_id"]


def step_history(
    rules: m.RuleSet,
    checked: Checked,
    account_categories: pl.DataFrame,
    previous: PreviousState,
    as_of: dt.date,
    run_id: str,
    overrides: tuple[Override, ...] = (),
) -> pl.DataFrame:
    current, held = split_held(account_categories, run_id)
    old_rules_category = None
    prev_rules = previous.previous_rules
    if prev_rules is not None and prev_rules.digest != rules.digest:
        try:
            old_rules_category = categorize_run(prev_rules, checked.valid, as_of, run_id, overrides,
                                                values=previous.values)  # fmt: skip
        except KareError:
            old_rules_category = None  # the old rules cannot read today's data: a change is 'both'
    previous_digest = previous.last_rules_digest or (prev_rules.digest if prev_rules is not None else None)
    return update_history(
        previous.history, current, held, as_of, run_id,
        old_rules_category=old_rules_category, previous_digest=previous_digest,
        judged_apart=judged_apart(rules, checked, previous, as_of, run_id, overrides),
    )  # fmt: skip


def judged_apart(
    rules: m.RuleSet, checked: Checked, previous: PreviousState, as_of: dt.date, run_id: str,
    overrides: tuple[Override, ...],
) -> pl.DataFrame | None:  # fmt: skip
    """Accounts held in the run before (their account_categories row is an older run's): the digest of the
    rules that categorized them, and today's data under those rules."""
    if previous.before is None:
        return None
    runs = [previous.before[1], previous.last_run_id if previous.last_as_of == as_of else ""]
    apart = previous.categories.filter(
        ~pl.col("run_id").is_in(runs) & (pl.col("rules_digest") != previous.before[2].digest)
    )
    rows = []
    for digest in apart["rules_digest"].unique().to_list():
        ids = apart.filter(pl.col("rules_digest") == digest)["account_id"]
        old = previous.versions.get(digest)
        cats = None
        if old is not None and digest != rules.digest:
            valid = checked.valid.filter(pl.col(rules.key).cast(pl.String).is_in(ids.implode()))
            try:
                cats = categorize_run(old, valid, as_of, run_id, overrides, values=previous.values)
            except KareError:
                cats = None
        found = (
            cats.select("account_id", "category")
            if cats is not None
            else pl.DataFrame(schema={"account_id": pl.String, "category": pl.String})
        )
        rows.append(
            ids.to_frame().join(found, on="account_id", how="left").with_columns(pl.lit(digest).alias("digest"))
        )
    return pl.concat(rows) if rows else None


def step_actions(
    rules: m.RuleSet,
    history: pl.DataFrame,
    valid: pl.DataFrame,
    account_categories: pl.DataFrame,
    previous_actions: pl.DataFrame,
    as_of: dt.date,
    run_id: str,
) -> pl.DataFrame:
    _, held = split_held(account_categories, run_id)
    return update_actions(previous_actions, rules, history, valid, held, as_of)


def run_row(
    rules: m.RuleSet,
    input_rows: int,
    quarantined: int,
    account_categories: pl.DataFrame,
    moves: pl.DataFrame,
    queue: pl.DataFrame,
    as_of: dt.date,
    run_id: str,
    started_at: dt.datetime,
) -> dict:
    """The `runs` row of a run: counts in, counts out."""
    current, _ = split_held(account_categories, run_id)
    counts = dict(current.group_by("category").len().iter_rows())
    moved = moves.filter(
        (pl.col("from_category") != pl.col("to_category"))
        & (pl.col("from_category") != "new")
        & (pl.col("to_category") != "removed")
    )["accounts"].sum()
    return {
        "org": rules.organization,
        "run_id": run_id,
        "as_of": as_of,
        "rules_version": rules.version,
        "rules_digest": rules.digest,
        "input_rows": input_rows,
        "valid_rows": input_rows - quarantined,
        "quarantined_rows": quarantined,
        **{c: int(counts.get(c, 0)) for c in m.ALL_CATEGORIES},
        "moved": int(moved or 0),
        "actions_opened": queue.filter(pl.col("created_on") == as_of).height,
        "actions_closed": queue.filter((pl.col("status") == SUPERSEDED) & (pl.col("closed_on") == as_of)).height,
        "started_at": started_at,
        "finished_at": None,
        "status": "published",
        "message": None,
    }


def compute_run(
    rules: m.RuleSet,
    raw: pl.DataFrame,
    as_of: dt.date,
    previous: PreviousState,
    *,
    overrides: tuple[Override, ...] = (),
    max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
    started_at: dt.datetime | None = None,
    run_id: str | None = None,
    engine: str = "polars",
) -> RunOutputs:
    """Validate, categorize, update history and actions: the whole run, in order, without any I/O.

    A bucket of a larger run passes the whole run's `run_id` (its own input would give another)."""
    check_forward(rules.organization, as_of, previous.last_as_of)
    started_at = started_at or dt.datetime.now(dt.UTC)
    run_id = run_id or run_id_for(rules.organization, as_of, rules, overrides, raw)
    checked = step_validate(rules, raw, max_quarantine_share)
    replaced = (previous.last_run_id, previous.history, previous.before) if previous.last_as_of == as_of else None
    categories = step_categories(rules, checked, as_of, run_id, previous.categories, overrides, engine,
                                 previous.values, replaced, previous.categories_before)  # fmt: skip
    history = step_history(rules, checked, categories, previous, as_of, run_id, overrides)
    moves = transitions(history, as_of, run_id, rules.organization)
    queue = step_actions(rules, history, checked.valid, categories, previous.actions, as_of, run_id)
    run = run_row(rules, checked.input_rows, checked.quarantine.height, categories, moves, queue, as_of, run_id,
                  started_at)  # fmt: skip
    return RunOutputs(
        org=rules.organization,
        as_of=as_of,
        run_id=run_id,
        account_categories=categories,
        category_history=history,
        category_transitions=moves,
        action_queue=queue,
        quarantine=quarantine_rows(rules.organization, checked, as_of, run_id),
        run=run,
        unchanged=run_id == previous.last_run_id,
    )


def check_forward(org: str, as_of: dt.date, last_as_of: dt.date | None) -> None:
    """Runs move forward in time: an earlier date would rewrite later history."""
    if last_as_of and as_of < last_as_of:
        raise KareError(
            f"{org} was already published for {last_as_of}; a run for the earlier date {as_of} would rewrite "
            f"later history. Run {last_as_of} or a later date."
        )
