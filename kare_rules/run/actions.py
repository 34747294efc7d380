"""Categories and moves → the action queue's change set: actions to open, open actions to supersede.

Reads only the open actions of the run's accounts; an action is never opened twice for one stay in a
category (its key carries the day the stay began), and leaving a category supersedes what it asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from kare_rules import model as m
from kare_rules.tables import conformed, empty

OPEN, DONE, SUPERSEDED = "open", "done", "superseded"


@dataclass(frozen=True)
class ActionChanges:
    opened: pl.DataFrame  # new action_queue rows
    superseded: pl.Series  # action keys of open actions that are closed as superseded on as_of


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


# The owner columns travel as OWNER_PREFIX + input name: an input may be called account_id (beside another
# key), source, title or priority, like a column of the wanted actions, and the action's owner was then
# that column's value ('high'), or the run failed on a duplicate column.
OWNER_PREFIX = "_kare_owner_"


def owner_columns(rules: m.RuleSet) -> list[str]:
    """Input columns that name an action's owner."""
    owners = {a.owner for r in rules.categories.values() for a in r.actions}
    owners |= {a.owner for t in rules.transitions for a in t.actions}
    owners |= {a.owner for w in rules.watches for a in w.actions}
    return sorted(o for o in owners if o)


def held_owners(quarantine: pl.DataFrame, owners: list[str], held: pl.Series) -> pl.DataFrame:
    """account_id and the owner columns (OWNER_PREFIX + input) of held accounts, read from their quarantined
    rows (the first value given): a rule change opens a held account's new category actions today, and
    without these they had no owner, out of their owner's queue until the account's data was valid again."""
    rows = quarantine.filter(pl.col("account_id").is_in(held.cast(pl.String).implode()))
    return rows.group_by("account_id", maintain_order=True).agg(
        # Input names are identifiers ([a-z_][a-z0-9_]*), so `$.name` is a plain JSONPath.
        pl.col("record").str.json_path_match(f"$.{c}").drop_nulls().first().alias(OWNER_PREFIX + c)
        for c in owners
    )


def wanted_actions(
    rules: m.RuleSet,
    current: pl.DataFrame,
    opened: pl.DataFrame,
    owners: pl.DataFrame,
    as_of: dt.date,
    watched: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every action the current categories, this run's moves and the watches that hold ask for, keyed stably.

    `current` (account_id, category, valid_from) holds every categorized account after the run;
    `opened` the history rows this run opened; `owners` account_id and the owner columns of today's valid
    accounts (each named OWNER_PREFIX + its input);
    `watched` (account_id, watches) the ids of the watches holding for today's accounts.
    A category action's key carries the date the account entered the category, so an action done
    during a stay is not reopened, and a later return to the category opens a fresh one. A watch's
    action follows the same rule: one per stay in the watch's `from` category.
    """
    parts = []
    for rule in rules.categories.values():
        if rule.actions:
            members = current.filter(pl.col("category") == rule.name)
            parts.append(
                members.join(_action_rows(rule.actions), how="cross").with_columns(
                    pl.lit("category").alias("source"), pl.col("valid_from").alias("since")
                )
            )
    for t in rules.transitions:
        came_from = (
            pl.col("previous_category").is_null()
            if t.from_category == "new"
            else pl.col("previous_category") == t.from_category
        )
        movers = opened.filter(came_from & (pl.col("category") == t.to_category))
        parts.append(
            movers.select("account_id", "category", "valid_from")
            .join(_action_rows(t.actions), how="cross")
            .with_columns(
                pl.lit(f"transition:{t.from_category}>{t.to_category}").alias("source"), pl.lit(as_of).alias("since")
            )
        )
    if watched is not None and any(w.actions for w in rules.watches):
        held = watched.explode("watches").drop_nulls("watches").join(current, on="account_id")
        for w in rules.watches:
            members = held.filter(pl.col("watches") == w.id).select("account_id", "category", "valid_from")
            parts.append(
                members.join(_action_rows(w.actions), how="cross").with_columns(
                    pl.lit(f"watch:{w.id}").alias("source"), pl.col("valid_from").alias("since")
                )
            )
    if not parts:
        return empty("action_queue")
    wanted = pl.concat(parts)
    if owners.width > 1:  # without owner columns the join would add nothing (measured 0.25 s at 1M accounts)
        wanted = wanted.join(owners, on="account_id", how="left")
    owner = pl.lit(None, dtype=pl.String)
    for c in owners.columns[1:]:
        name = c.removeprefix(OWNER_PREFIX)
        owner = pl.when(pl.col("owner_column") == name).then(pl.col(c)).otherwise(owner)
    tag = (
        pl.when(pl.col("source") == "category")
        .then(pl.col("category"))
        .when(pl.col("source").str.starts_with("watch:"))
        .then(pl.col("source"))
        .otherwise(pl.col("source").str.strip_prefix("transition:"))
    )
    org = rules.organization
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


def action_changes(
    rules: m.RuleSet,
    current: pl.DataFrame,
    opened: pl.DataFrame,
    owners: pl.DataFrame,
    open_actions: pl.DataFrame,
    held: pl.Series,
    as_of: dt.date,
    known_keys: Callable[[pl.Series], pl.Series],
    watched: pl.DataFrame | None = None,
    rerun: bool = False,
    watches_known: bool = True,
) -> ActionChanges:
    """Open wanted actions not yet in the queue; supersede open ones the account's category no longer
    asks for. Held (quarantined) accounts keep their open actions.

    `open_actions` are the open rows of this slice's accounts. A wanted action that is not open may
    still be in the queue, done or superseded during the same stay: `known_keys(keys)` returns which
    of these keys the queue already holds (asked only for keys of stays that began before today, unless
    this is a `rerun` of the date, after which the queue keeps the day's actions people marked done).
    `watches_known` is False when the engine computed no watches (the SQL engine): watch actions are then
    neither opened nor superseded on a guess, but an open one still ends with its account's stay.
    """
    wanted = wanted_actions(rules, current, opened, owners, as_of, watched)
    not_open = wanted.join(open_actions.select("action_key"), on="action_key", how="anti")
    # A key's last part is the day its stay (or move) began; keys of today's cannot be in the queue yet,
    # unless the day was published before.
    older = not_open if rerun else not_open.filter(~pl.col("action_key").str.ends_with(f"|{as_of.isoformat()}"))
    if older.height:
        not_open = not_open.join(pl.DataFrame({"action_key": known_keys(older["action_key"])}), on="action_key",
                                 how="anti")  # fmt: skip
    still = wanted.select("action_key", pl.lit(True).alias("_wanted"))
    # A held account has no data today to judge its watches or moves by, so those actions stay open; its
    # category it keeps, so the category's actions are today's rules' (a rule change that renames one
    # supersedes the old one, as for every other account in the category, instead of leaving both open).
    unwanted = (
        open_actions.select("action_key", "account_id", "category", "source")  # the only columns judged
        .join(still, on="action_key", how="left")
        .filter(
            pl.col("_wanted").is_null()
            & ~(pl.col("account_id").is_in(held.cast(pl.String).implode()) & (pl.col("source") != "category"))
        )
    )
    if not watches_known:
        # Not knowing whether a watch holds is not its stopping: superseded, it would never reopen during
        # the stay (one action per stay), so one run of the SQL engine lost every open watch action.
        stay = current.select("account_id", pl.col("category").alias("_now"), "valid_from")
        ongoing = (
            unwanted.filter(pl.col("source").str.starts_with("watch:"))
            .join(stay, on="account_id", how="inner")
            .filter(
                (pl.col("_now") == pl.col("category"))
                & pl.col("action_key").str.ends_with("|" + pl.col("valid_from").cast(pl.String))
            )
        )
        unwanted = unwanted.join(ongoing.select("action_key"), on="action_key", how="anti")
    # A category or watch action stays open while it is still wanted (same category, same stay, the watch
    # still holding); a transition action while the account stays where it moved to: only those need
    # today's category.
    kept_while_wanted = (pl.col("source") == "category") | pl.col("source").str.starts_with("watch:")
    moves = unwanted.filter(~kept_while_wanted)
    if moves.height:
        now = current.select("account_id", pl.col("category").alias("now"))
        moves = moves.join(now, on="account_id", how="left").filter(pl.col("now").ne_missing(pl.col("category")))
    stale = pl.concat([unwanted.filter(kept_while_wanted)["action_key"], moves["action_key"]])
    return ActionChanges(opened=not_open, superseded=stale)
