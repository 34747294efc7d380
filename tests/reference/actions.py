"""Categories and transitions → the action queue: open what a category asks for, never twice, and
supersede what an account's new category no longer asks for."""

from __future__ import annotations

import datetime as dt

import polars as pl

from kare_rules import model as m
from kare_rules.tables import conformed, empty

OPEN, DONE, SUPERSEDED = "open", "done", "superseded"


def rewind_actions(queue: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The queue as it stood before any run at or after `as_of` (done actions stay done)."""
    kept = queue.filter(pl.col("created_on") < as_of)
    reopen = (pl.col("status") == SUPERSEDED) & (pl.col("closed_on") >= as_of)
    return kept.with_columns(
        pl.when(reopen).then(pl.lit(OPEN)).otherwise(pl.col("status")).alias("status"),
        pl.when(reopen).then(pl.lit(None, dtype=pl.Date)).otherwise(pl.col("closed_on")).alias("closed_on"),
    )


def _action_rows(actions: tuple[m.Action, ...]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "action_id": [a.id for a in actions],
            "title": [a.title for a in actions],
            "priority": [a.priority for a in actions],
            "due_in_days": [a.due_in_days for a in actions],
            "owner_column": [a.owner for a in actions],
        },
        schema={"action_id": pl.String, "title": pl.String, "priority": pl.String, "due_in_days": pl.Int64,
                "owner_column": pl.String},
    )  # fmt: skip


def wanted_actions(rules: m.RuleSet, history: pl.DataFrame, accounts: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Every action the current categories and this run's transitions ask for, keyed stably.

    A category action's key carries the date the account entered the category, so an action done
    during a stay is not reopened, and a later return to the category opens a fresh one.
    """
    org = rules.organization
    key = rules.key
    current = history.filter(pl.col("is_current") & pl.col("category").is_not_null())
    owners = {a.owner for r in rules.categories.values() for a in r.actions} | {
        a.owner for t in rules.transitions for a in t.actions
    }
    owner_cols = sorted(o for o in owners if o)
    people = accounts.select(
        pl.col(key).cast(pl.String).alias("account_id"), *[pl.col(c).cast(pl.String) for c in owner_cols]
    )
    parts = []
    for rule in rules.categories.values():
        if not rule.actions:
            continue
        members = current.filter(pl.col("category") == rule.name).select("account_id", "category", "valid_from")
        parts.append(
            members.join(_action_rows(rule.actions), how="cross").with_columns(
                pl.lit("category").alias("source"), pl.col("valid_from").alias("since")
            )
        )
    opened_now = history.filter(pl.col("valid_from") == as_of)
    for t in rules.transitions:
        frm = (
            pl.col("previous_category").is_null()
            if t.from_category == "new"
            else (pl.col("previous_category") == t.from_category)
        )
        movers = opened_now.filter(frm & (pl.col("category") == t.to_category)).select(
            "account_id", "category", "valid_from"
        )
        parts.append(
            movers.join(_action_rows(t.actions), how="cross").with_columns(
                pl.lit(f"transition:{t.from_category}>{t.to_category}").alias("source"),
                pl.lit(as_of).alias("since"),
            )
        )
    if not parts:
        return empty("action_queue")
    wanted = pl.concat(parts).join(people, on="account_id", how="left")
    owner = pl.lit(None, dtype=pl.String)
    for c in owner_cols:
        owner = pl.when(pl.col("owner_column") == c).then(pl.col(c)).otherwise(owner)
    tag = (
        pl.when(pl.col("source") == "category")
        .then(pl.col("category"))
        .otherwise(pl.col("source").str.strip_prefix("transition:"))
    )
    return conformed(
        "action_queue",
        wanted.with_columns(
            pl.concat_str([pl.lit(org), pl.col("account_id"), tag, pl.col("action_id"),
                           pl.col("since").cast(pl.String)], separator="|").alias("action_key"),
            pl.lit(org).alias("org"),
            owner.alias("owner"),
            pl.lit(as_of).alias("created_on"),
            (pl.lit(as_of) + pl.duration(days=pl.col("due_in_days"))).cast(pl.Date).alias("due_on"),
            pl.lit(OPEN).alias("status"),
            pl.lit(None, dtype=pl.Date).alias("closed_on"),
        ),
    )  # fmt: skip


def update_actions(
    queue: pl.DataFrame,
    rules: m.RuleSet,
    history: pl.DataFrame,
    accounts: pl.DataFrame,
    held: pl.Series,
    as_of: dt.date,
) -> pl.DataFrame:
    """Open wanted actions not yet in the queue; supersede open ones the account's category no longer
    asks for. Quarantined (held) accounts keep their open actions untouched."""
    base = rewind_actions(queue, as_of) if queue.height else empty("action_queue")
    wanted = wanted_actions(rules, history, accounts, as_of)
    new = wanted.join(base.select("action_key"), on="action_key", how="anti")
    current = history.filter(pl.col("is_current")).select("account_id", pl.col("category").alias("now"))
    still_wanted = wanted.select("action_key", pl.lit(True).alias("_wanted"))
    checked = base.join(current, on="account_id", how="left").join(still_wanted, on="action_key", how="left")
    held_ids = held.cast(pl.String).implode()
    stale = (
        (pl.col("status") == OPEN)
        & ~pl.col("account_id").is_in(held_ids)
        & pl.col("_wanted").is_null()
        & (pl.col("now").ne_missing(pl.col("category")) | (pl.col("source") == "category"))
    )
    # A transition action stays open while the account stays where it moved to; a category action
    # stays open while it is still wanted (same category, same stay).
    updated = checked.with_columns(
        pl.when(stale).then(pl.lit(SUPERSEDED)).otherwise(pl.col("status")).alias("status"),
        pl.when(stale).then(pl.lit(as_of)).otherwise(pl.col("closed_on")).alias("closed_on"),
    ).drop("now", "_wanted")
    return pl.concat([conformed("action_queue", updated), new])
