"""Category → history change set: which current rows a run closes and which rows it opens (SCD type 2).

Works on the current row of each account only, never on the closed past: the warehouse applies the
change set (close = valid_to := as_of, is_current := false; open = insert).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from kare_rules.tables import FAR_FUTURE, conformed, empty

NEW, REMOVED = "new", "removed"


@dataclass(frozen=True)
class HistoryChanges:
    """What one run (or one slice of it) does to category_history."""

    closes: pl.Series  # account ids whose current row ends on as_of
    opens: pl.DataFrame  # new current rows, in the category_history contract
    transitions: pl.DataFrame  # from_category, to_category, accounts (this slice's counts)
    current: pl.DataFrame  # account_id, category, valid_from: every categorized current row after the run
    moved: pl.Series  # per row of the run's categories: the account opens a row today (new or moved)
    opened: pl.Series  # per row of `current`: the row opens today

    @property
    def removed(self) -> int:
        return self.opens.filter(pl.col("change_cause") == REMOVED).height


def change_cause(previous_digest: str | None) -> pl.Expr:
    """Why an account's category changed: a new account, its data, the rules, both, or an override.

    Whether the rules changed is measured against the rules that last judged the account: those of the
    previous run (`previous_digest`), not of the account's open row, which may carry an older digest from
    before an earlier rule change; for an account held (quarantined) in that run, those of the run that
    last categorized it (`last_digest`, with `last_rules_category` today's data under them)."""
    run_digest = pl.col("prev_digest") if previous_digest is None else pl.lit(previous_digest)
    judged = pl.col("last_digest").is_not_null()
    same_rules = pl.col("rules_digest") == pl.coalesce(pl.col("last_digest"), run_digest)
    old_category = pl.when(judged).then(pl.col("last_rules_category")).otherwise(pl.col("old_rules_category"))
    return (
        pl.when(~pl.col("_seen"))
        .then(pl.lit(NEW))
        .when(pl.col("prev_category").is_null())
        .then(pl.lit("data"))  # back in the input after being removed
        .when((pl.col("matched_rule") == "override") | (pl.col("prev_rule") == "override"))
        .then(pl.lit("override"))
        .when(same_rules | old_category.eq_missing(pl.col("category")))
        .then(pl.lit("data"))  # the old rules move it just as well: the change of rules made no difference
        .when(old_category.eq_missing(pl.col("prev_category")))
        .then(pl.lit("rules"))
        .otherwise(pl.lit("both"))  # the old rules move it too, but elsewhere
    )


def history_changes(
    current_rows: pl.DataFrame,
    categories: pl.DataFrame,
    held: pl.Series,
    as_of: dt.date,
    run_id: str,
    org: str,
    *,
    old_rules_category: pl.DataFrame | None = None,
    previous_digest: str | None = None,
    account_rules: pl.DataFrame | None = None,
) -> HistoryChanges:
    """The history change set of one run over one slice of accounts.

    `current_rows` are the accounts' current history rows (CURRENT_COLUMNS), `categories` this run's
    computed account_categories rows, `held` the ids of accounts whose input rows were all quarantined
    (they keep their current row: not removed). `old_rules_category` (account_id, category) is today's
    data under the previous run's rules, when the rules changed: it tells a `rules` change from `both`.
    `account_rules` (account_id, last_digest, last_rules_category) does the same for the accounts last
    judged by other rules (held in the previous run).
    """
    now = categories.select("account_id", "category", "matched_rule", "rules_version", "rules_digest")
    at = positions(now.get_column("account_id"), current_rows.get_column("account_id"))
    seen = at.is_not_null()
    prev_category = current_rows.get_column("category").gather(at)
    # Today's accounts: new ones and those whose category differs open a row; the others stay.
    moved = ~seen | now.get_column("category").ne_missing(prev_category)
    changed_at = at.filter(moved)  # only the moving rows need the rest of their current row
    prev = current_rows.select(
        pl.col("category").alias("prev_category"),
        pl.col("matched_rule").alias("prev_rule"),
        pl.col("rules_digest").alias("prev_digest"),
    ).select(pl.all().gather(changed_at))
    joined = pl.concat([now.filter(moved), prev], how="horizontal").with_columns(
        changed_at.is_not_null().alias("_seen")
    )
    if old_rules_category is not None:
        old = old_rules_category.select("account_id", pl.col("category").alias("old_rules_category"))
        joined = joined.join(old, on="account_id", how="left", maintain_order="left")
    else:  # the rules did not change: no second join
        joined = joined.with_columns(pl.lit(None, dtype=pl.String).alias("old_rules_category"))
    if account_rules is not None:
        joined = joined.join(account_rules, on="account_id", how="left", maintain_order="left")
    else:
        joined = joined.with_columns(
            pl.lit(None, dtype=pl.String).alias(c) for c in ("last_digest", "last_rules_category")
        )
    opening = joined.select(
        pl.lit(org).alias("org"),
        "account_id",
        "category",
        pl.col("prev_category").alias("previous_category"),
        pl.lit(as_of).alias("valid_from"),
        pl.lit(FAR_FUTURE).alias("valid_to"),
        pl.lit(True).alias("is_current"),
        change_cause(previous_digest).alias("change_cause"),
        "rules_version",
        "rules_digest",
        "matched_rule",
        pl.lit(run_id).alias("run_id"),
    )
    # Current accounts missing from today's input: removed, unless held (every input row quarantined)
    # or already removed (a null category).
    matched = pl.repeat(False, current_rows.height, eager=True).scatter(at.drop_nulls(), True)
    gone = current_rows.filter(~matched)
    is_held = pl.col("account_id").is_in(held.cast(pl.String).implode())
    removing = gone.filter(~is_held & pl.col("category").is_not_null())
    removal = removing.select(
        pl.lit(org).alias("org"),
        "account_id",
        pl.lit(None, dtype=pl.String).alias("category"),
        pl.col("category").alias("previous_category"),
        pl.lit(as_of).alias("valid_from"),
        pl.lit(FAR_FUTURE).alias("valid_to"),
        pl.lit(True).alias("is_current"),
        pl.lit(REMOVED).alias("change_cause"),
        "rules_version",
        "rules_digest",
        pl.lit(None, dtype=pl.String).alias("matched_rule"),
        pl.lit(run_id).alias("run_id"),
    )
    opens = pl.concat([conformed("category_history", opening), conformed("category_history", removal)])
    closes = pl.concat([opening.filter(joined.get_column("_seen"))["account_id"], removing["account_id"]])
    # Accounts that kept a category (held ones included) count as X → X; removed ones that stay removed
    # are not counted.
    stayed = pl.concat([
        now.filter(~moved & prev_category.is_not_null()).select(
            "account_id", "category", current_rows.get_column("valid_from").gather(at.filter(~moved))
        ),
        gone.filter(is_held & pl.col("category").is_not_null()).select("account_id", "category", "valid_from"),
    ])  # fmt: skip
    stays = (  # counted per category first: grouping every account by two text columns cost 0.16 s at 1M
        stayed.group_by("category")
        .agg(pl.len().cast(pl.Int64).alias("accounts"))
        .select(pl.col("category").alias("from_category"), pl.col("category").alias("to_category"), "accounts")
    )
    current = pl.concat([stayed, opening.select("account_id", "category", "valid_from")])
    opened = pl.repeat(False, stayed.height, eager=True).extend(pl.repeat(True, opening.height, eager=True))
    moves = opens.select(
        pl.col("previous_category").fill_null(NEW).alias("from_category"),
        pl.col("category").fill_null(REMOVED).alias("to_category"),
    )
    move_counts = moves.group_by("from_category", "to_category").agg(pl.len().cast(pl.Int64).alias("accounts"))
    counts = pl.concat([move_counts, stays]).group_by("from_category", "to_category").agg(pl.col("accounts").sum())
    return HistoryChanges(closes=closes, opens=opens, transitions=counts, current=current, moved=moved, opened=opened)


def positions(ids: pl.Series, among: pl.Series) -> pl.Series:
    """For each of `ids`, its row number in `among` (UInt32; null when absent); both hold unique keys.
    Same ids in the same order need no join, only a comparison. The warehouse returns current rows in
    the order they were written (no sort), so that happens while no account has moved since the first
    run of an input kept in one order; otherwise it is the join."""
    if ids.equals(among, check_names=False):
        return pl.int_range(0, ids.len(), dtype=pl.UInt32, eager=True)
    found = ids.to_frame("k").join(among.to_frame("k").with_row_index("at"), on="k", how="left", maintain_order="left")
    return found.get_column("at")


def real_moves(moves: pl.DataFrame) -> pl.DataFrame:
    """The transition rows of accounts that changed category (not new ones, not removed ones)."""
    return moves.filter(
        (pl.col("from_category") != pl.col("to_category"))
        & (pl.col("from_category") != NEW)
        & (pl.col("to_category") != REMOVED)
    )


def transition_rows(counts: list[pl.DataFrame], org: str, as_of: dt.date, run_id: str) -> pl.DataFrame:
    """The run's transition matrix (category_transitions rows) from its slices' counts."""
    parts = [c for c in counts if c.height]
    if not parts:
        return empty("category_transitions")
    total = pl.concat(parts).group_by("from_category", "to_category").agg(pl.col("accounts").sum())
    return conformed(
        "category_transitions",
        total.with_columns(pl.lit(org).alias("org"), pl.lit(as_of).alias("as_of"), pl.lit(run_id).alias("run_id")),
    ).sort("from_category", "to_category")


def history_problems(history: pl.DataFrame) -> list[str]:
    """Invariants: exactly one current row per account, and contiguous, non-overlapping intervals."""
    problems = []
    per_account = history.group_by("account_id").agg(pl.col("is_current").sum().alias("current"))
    bad = per_account.filter(pl.col("current") != 1)
    if bad.height:
        problems.append(f"{bad.height} accounts do not have exactly one current row (e.g. {bad['account_id'].min()})")
    # Contiguous and non-overlapping, checked by hash joins rather than a sort: no two rows of an
    # account start (or end) on the same day, and every closed row is followed by one that starts
    # where it ends. With one current row and no inverted interval, the rows then form one chain.
    starts = history.select("account_id", pl.col("valid_from").alias("day"))
    closed = history.filter(pl.col("valid_to") != FAR_FUTURE).select("account_id", pl.col("valid_to").alias("day"))
    unlinked = closed.join(starts, on=["account_id", "day"], how="anti")
    doubled = pl.concat([starts.filter(starts.is_duplicated()), closed.filter(closed.is_duplicated())])
    gaps = pl.concat([unlinked, doubled]).unique("account_id")
    if gaps.height:
        problems.append(
            f"{gaps.height} accounts have intervals that do not end where the next begins "
            f"(e.g. {gaps['account_id'].min()})"
        )
    inverted = history.filter(pl.col("valid_to") <= pl.col("valid_from"))
    if inverted.height:
        problems.append(f"{inverted.height} intervals end before they begin (e.g. {inverted['account_id'].min()})")
    wrong_current = history.filter(pl.col("is_current") != (pl.col("valid_to") == FAR_FUTURE))
    if wrong_current.height:
        problems.append(f"{wrong_current.height} rows disagree on is_current and valid_to")
    return problems
