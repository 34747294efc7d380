"""Category → history row: SCD type 2 with a change cause, and the per-run transition matrix.

Every function takes the previous state of ONE organization and returns its next state; nothing
here reads or writes the warehouse.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from kare_rules.tables import FAR_FUTURE, conformed, empty

NEW, REMOVED = "new", "removed"


def rewind_history(history: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The history as it stood before any run at or after `as_of`: re-running a date replaces it."""
    kept = history.filter(pl.col("valid_from") < as_of)
    reopened = pl.col("valid_to") >= as_of
    return kept.with_columns(
        pl.when(reopened).then(pl.lit(FAR_FUTURE)).otherwise(pl.col("valid_to")).alias("valid_to"),
        (reopened | pl.col("is_current")).alias("is_current"),
    )


def update_history(
    history: pl.DataFrame,
    current: pl.DataFrame,
    held: pl.Series,
    as_of: dt.date,
    run_id: str,
    *,
    old_rules_category: pl.DataFrame | None = None,
    previous_digest: str | None = None,
    judged_apart: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Apply one run to an organization's history.

    `current` has account_id, category, matched_rule, rules_version, rules_digest, org for every
    validly categorized account. `held` are the account ids whose input rows were quarantined: they
    keep their open row untouched (they are not removed). `old_rules_category` (account_id,
    category) is the current data categorized with the previous run's rules when the rules changed,
    which tells a `rules` change from `both`. `previous_digest` is the digest of the previous run's
    rules: whether the rules changed is a property of the run, not of the account's open row (an
    account that kept its category across an earlier rule change still carries the older digest).
    `judged_apart` (account_id, digest, category): accounts held in the previous run, the digest of the
    rules that last categorized them and today's data under those rules; theirs replace the run's.
    """
    base = rewind_history(history, as_of) if history.height else empty("category_history")
    open_rows = base.filter(pl.col("is_current")).select(
        "account_id",
        pl.col("category").alias("prev_category"),
        pl.col("matched_rule").alias("prev_rule"),
        pl.col("rules_digest").alias("prev_digest"),
        pl.lit(True).alias("_seen"),
    )
    now = current.select("org", "account_id", "category", "matched_rule", "rules_version", "rules_digest")
    joined = now.join(open_rows, on="account_id", how="full", coalesce=True)
    if old_rules_category is not None:
        joined = joined.join(
            old_rules_category.select("account_id", pl.col("category").alias("old_rules_category")),
            on="account_id",
            how="left",
        )
    else:
        joined = joined.with_columns(pl.lit(None, dtype=pl.String).alias("old_rules_category"))
    run_digest = pl.col("prev_digest") if previous_digest is None else pl.lit(previous_digest)
    if judged_apart is not None:
        apart = judged_apart.select("account_id", pl.col("digest").alias("_d"), pl.col("category").alias("_c"),
                                    pl.lit(True).alias("_apart"))  # fmt: skip
        joined = joined.join(apart, on="account_id", how="left").with_columns(
            pl.when(pl.col("_apart")).then(pl.col("_c")).otherwise(pl.col("old_rules_category")).alias("old_rules_category"),
            pl.when(pl.col("_apart")).then(pl.col("_d")).otherwise(run_digest).alias("_judged_by"),
        )  # fmt: skip
    else:
        joined = joined.with_columns(run_digest.alias("_judged_by"))

    in_input = pl.col("org").is_not_null()
    seen = pl.col("_seen").fill_null(False)
    is_held = pl.col("account_id").is_in(held.cast(pl.String).implode())
    changed_in_input = in_input & seen & pl.col("category").ne_missing(pl.col("prev_category"))
    removed = ~in_input & seen & ~is_held & pl.col("prev_category").is_not_null()
    cause = (
        pl.when(~seen)
        .then(pl.lit(NEW))
        .when(pl.col("prev_category").is_null())
        .then(pl.lit("data"))  # back in the input after being removed
        .when((pl.col("matched_rule") == "override") | (pl.col("prev_rule") == "override"))
        .then(pl.lit("override"))
        .when(
            (pl.col("rules_digest") == pl.col("_judged_by"))
            | pl.col("old_rules_category").eq_missing(pl.col("category"))
        )
        .then(pl.lit("data"))
        .when(pl.col("old_rules_category").eq_missing(pl.col("prev_category")))
        .then(pl.lit("rules"))
        .otherwise(pl.lit("both"))
    )
    opening = joined.filter((in_input & ~seen) | changed_in_input).select(
        "org",
        "account_id",
        "category",
        pl.col("prev_category").alias("previous_category"),
        pl.lit(as_of).alias("valid_from"),
        pl.lit(FAR_FUTURE).alias("valid_to"),
        pl.lit(True).alias("is_current"),
        cause.alias("change_cause"),
        "rules_version",
        "rules_digest",
        "matched_rule",
        pl.lit(run_id).alias("run_id"),
    )
    leaving = joined.filter(removed).select("account_id", "prev_category")
    org = current["org"][0] if current.height else (base["org"][0] if base.height else None)
    removal_rows = leaving.join(
        base.filter(pl.col("is_current")).select("account_id", "rules_version", "rules_digest"), on="account_id"
    ).select(
        pl.lit(org, dtype=pl.String).alias("org"),
        "account_id",
        pl.lit(None, dtype=pl.String).alias("category"),
        pl.col("prev_category").alias("previous_category"),
        pl.lit(as_of).alias("valid_from"),
        pl.lit(FAR_FUTURE).alias("valid_to"),
        pl.lit(True).alias("is_current"),
        pl.lit(REMOVED).alias("change_cause"),
        "rules_version",
        "rules_digest",
        pl.lit(None, dtype=pl.String).alias("matched_rule"),
        pl.lit(run_id).alias("run_id"),
    )
    closing_ids = pl.concat([opening.select("account_id"), removal_rows.select("account_id")])["account_id"]
    closes = pl.col("is_current") & pl.col("account_id").is_in(closing_ids.implode())
    closed = base.with_columns(
        pl.when(closes).then(pl.lit(as_of)).otherwise(pl.col("valid_to")).alias("valid_to"),
        (pl.col("is_current") & ~closes).alias("is_current"),
    )
    out = pl.concat([conformed("category_history", t) for t in (closed, opening, removal_rows)])
    return out


def transitions(history: pl.DataFrame, as_of: dt.date, run_id: str, org: str) -> pl.DataFrame:
    """The transition matrix of one run, from the history rows it opened plus the accounts that stayed."""
    opened = history.filter(pl.col("valid_from") == as_of)
    moves = opened.select(
        pl.col("previous_category").fill_null(NEW).alias("from_category"),
        pl.col("category").fill_null(REMOVED).alias("to_category"),
    )
    # A removed account that comes back has previous_category null, so it counts as new.
    stayed = history.filter(pl.col("is_current") & (pl.col("valid_from") < as_of) & pl.col("category").is_not_null())
    stays = stayed.select(pl.col("category").alias("from_category"), pl.col("category").alias("to_category"))
    all_moves = pl.concat([moves, stays])
    if not all_moves.height:
        return empty("category_transitions")
    counts = all_moves.group_by("from_category", "to_category").agg(pl.len().cast(pl.Int64).alias("accounts"))
    return conformed(
        "category_transitions",
        counts.with_columns(pl.lit(org).alias("org"), pl.lit(as_of).alias("as_of"), pl.lit(run_id).alias("run_id")),
    ).sort("from_category", "to_category")
