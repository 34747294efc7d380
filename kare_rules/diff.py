"""What a rule change means: two RuleSets compared as trees, their impact on real accounts, and the version rule.

The reviewer of a pull request reads "expand: arr ≥ 100000 → ≥ 80000" and "412 accounts move from keep
to expand", not a YAML diff. Everything here is a pure function of two models and a frame; reading
git, files and printing are the CLI's job.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import columns_used, describe, describe_predicate, format_value
from kare_rules.engine import as_date, categorize
from kare_rules.overrides import Override, apply_overrides
from kare_rules.testing import run_rule_tests
from kare_rules.validation import validate_accounts

MARKER = "<!-- kare-diff -->"
QUARANTINED = "quarantined"  # an input row the contract of that version rejects: visible, never dropped
_ROW = "_kare_diff_row"


# ---- the rule change in plain words -------------------------------------------------------------


@dataclass(frozen=True)
class RuleChange:
    """One semantic difference between two rule versions, in words a reviewer reads."""

    kind: str  # e.g. threshold_changed, trait_added, action_changed, input_removed
    target: str  # what kind of thing changed: category, trait, action, input, derived, transition, precedence, watch
    name: str  # which one: 'expand', 'healthy', 'expand/exec-qbr', 'arr', 'keep → recapture'
    text: str
    before: str | None = None  # the whole condition before and after, for condition changes
    after: str | None = None
    breaking: bool = False  # needs a MAJOR version bump

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, self.target: self.name, "text": self.text}
        if self.before is not None or self.after is not None:
            out.update(before=self.before, after=self.after)
        if self.breaking:
            out["breaking"] = True
        return out


def rule_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    """Every semantic difference, in reading order: inputs, derived, traits, precedence, categories,
    transitions, watches. Prose (descriptions, owners, comments) and embedded tests are not rule changes."""
    return [
        *_input_changes(before, after),
        *_derived_changes(before, after),
        *_trait_changes(before, after),
        *_precedence_changes(before, after),
        *_category_changes(before, after),
        *_transition_changes(before, after),
        *_watch_changes(before, after),
    ]


def _input_text(c: m.InputColumn) -> str:
    parts = [c.type]
    if c.key:
        parts.append("key")
    if c.nullable:
        parts.append("nullable")
    if c.min is not None:
        parts.append(f"min {format_value(c.min)}")
    if c.max is not None:
        parts.append(f"max {format_value(c.max)}")
    if c.allowed is not None:
        parts.append(f"allowed {format_value(c.allowed)}")
    return ", ".join(parts)


def _input_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    old = {c.name: c for c in before.inputs}
    new = {c.name: c for c in after.inputs}
    out = []
    for name, c in new.items():
        if name not in old:
            out.append(RuleChange("input_added", "input", name, f"input {name} added ({_input_text(c)})"))
    for name, c in old.items():
        if name not in new:
            text = f"input {name} removed (was {_input_text(c)}) — a MAJOR change"
            out.append(RuleChange("input_removed", "input", name, text, breaking=True))
    for name in old.keys() & new.keys():
        a, b = old[name], new[name]
        diffs = []
        for attr in ("type", "key", "nullable", "min", "max"):
            x, y = getattr(a, attr), getattr(b, attr)
            if x != y:
                diffs.append(f"{attr} {_show(x)} → {_show(y)}")
        if a.allowed != b.allowed:
            if a.allowed is None or b.allowed is None:
                diffs.append(f"allowed {_show(a.allowed)} → {_show(b.allowed)}")
            else:
                added = [v for v in b.allowed if v not in a.allowed]
                removed = [v for v in a.allowed if v not in b.allowed]
                bits = [f"+{format_value(v)}" for v in added] + [f"−{format_value(v)}" for v in removed]
                diffs.append("allowed " + (" ".join(bits) if bits else "reordered"))
        if diffs:
            out.append(RuleChange("input_changed", "input", name, f"input {name}: " + ", ".join(diffs)))
    return sorted(out, key=lambda c: (c.kind != "input_removed", c.name))


def _show(value: Any) -> str:
    return "none" if value is None else format_value(value)


def _derived_text(d: m.Derived) -> str:
    return f"{d.kind}({', '.join(d.args)})"


def _derived_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    old = {d.name: d for d in before.derived}
    new = {d.name: d for d in after.derived}
    out = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            out.append(RuleChange("derived_added", "derived", name, f"derived {name} added: {_derived_text(b)}"))
        elif b is None:
            out.append(
                RuleChange("derived_removed", "derived", name, f"derived {name} removed (was {_derived_text(a)})")
            )
        elif a != b:
            text = f"derived {name}: {_derived_text(a)} → {_derived_text(b)}"
            out.append(RuleChange("derived_changed", "derived", name, text))
    return out


def _renamed(old: dict[str, Any], new: dict[str, Any], same: Any = None) -> dict[str, str]:
    """{old name: new name} for each item that left under one name and came back under another unchanged
    (`same(a, b)`, default equality; first match in file order): a reviewer reads one rename, not an item
    removed and an unrelated one added."""
    same = same or (lambda a, b: a == b)
    gone = [k for k in old if k not in new]
    came = [k for k in new if k not in old]
    pairs: dict[str, str] = {}
    for k in gone:
        match = next((n for n in came if n not in pairs.values() and same(old[k], new[n])), None)
        if match is not None:
            pairs[k] = match
    return pairs


def _trait_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    out = []
    renamed = _renamed(before.traits, after.traits)
    for name in [*before.traits, *(t for t in after.traits if t not in before.traits)]:
        a, b = before.traits.get(name), after.traits.get(name)
        if a == b or name in renamed.values():
            continue
        if name in renamed:
            new = renamed[name]
            users = _trait_users(after, new)
            used = f"; used by {', '.join(users)}" if users else ""
            text = f"trait {name} renamed to {new} (same condition: {describe(a)}{used})"
            out.append(RuleChange("trait_renamed", "trait", new, text))
            continue
        users = _trait_users(after if b is not None else before, name)
        used = f" (used by {', '.join(users)})" if users else ""
        if a is None and not users:  # usually a condition the author meant to change and did not
            used = " (used by no category yet: it moves no account until a condition names it)"
        if a is None:
            out.append(
                RuleChange("trait_added", "trait", name, f"trait {name} added: {describe(b)}{used}", None, describe(b))
            )
        elif b is None:
            out.append(
                RuleChange(
                    "trait_removed", "trait", name, f"trait {name} removed (was {describe(a)})", describe(a), None
                )
            )
        else:
            for kind, text in condition_changes(a, b):
                out.append(RuleChange(kind, "trait", name, f"trait {name}: {text}{used}", describe(a), describe(b)))
    return out


def _trait_users(rules: m.RuleSet, trait: str) -> list[str]:
    """The categories whose condition reads a trait, directly or through other traits."""

    def reads(cond: m.Condition, seen: frozenset[str]) -> bool:
        if isinstance(cond, m.TraitRef):
            if cond.name == trait:
                return True
            body = rules.traits.get(cond.name)
            return body is not None and cond.name not in seen and reads(body, seen | {cond.name})
        if isinstance(cond, m.All | m.Any_):
            return any(reads(c, seen) for c in cond.items)
        if isinstance(cond, m.Not):
            return reads(cond.item, seen)
        return False

    return [r.name for r in rules.ordered() if reads(r.when, frozenset())]


def _precedence_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    if before.precedence == after.precedence:
        return []
    text = f"precedence {' → '.join(before.precedence)} became {' → '.join(after.precedence)} (first match wins)"
    return [RuleChange("precedence_changed", "precedence", "precedence", text)]


def _category_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    out = []
    for name in m.CATEGORIES:
        a, b = before.categories.get(name), after.categories.get(name)
        if a is None and b is None:
            continue
        if a is None:
            text = f"category {name} added: {describe(b.when)}" + (
                f"; actions {', '.join(x.id for x in b.actions)}" if b.actions else ""
            )
            out.append(RuleChange("category_added", "category", name, text, None, describe(b.when)))
            continue
        if b is None:
            text = f"category {name} removed (was {describe(a.when)}) — a MAJOR change"
            out.append(RuleChange("category_removed", "category", name, text, describe(a.when), None, breaking=True))
            continue
        if a.when != b.when:
            for kind, text in condition_changes(a.when, b.when):
                out.append(RuleChange(kind, "category", name, f"{name}: {text}", describe(a.when), describe(b.when)))
        out.extend(_action_changes(a.actions, b.actions, name))
    return out


def _action_text(a: m.Action) -> str:
    owner = f", owner {a.owner}" if a.owner else ""
    return f"'{a.title}', due in {a.due_in_days} days, {a.priority} priority{owner}"


# The action queue keys an action by its id (and a watch's by the watch id): a new name is a new action
# there, so a reviewer told "same action" must also be told what the next run does to the queue.
_REKEYED = "the next run supersedes {what} and opens them again under {new}, even where marked done"


def _action_changes(
    old: tuple[m.Action, ...], new: tuple[m.Action, ...], where: str, rekeyed: bool = True
) -> list[RuleChange]:
    """Actions compared by id. `rekeyed`: a rename re-opens the action in the queue (a category's or a watch's
    action, wanted on every run; a transition's is opened on the move only, so its open ones stay)."""
    a_by = {x.id: x for x in old}
    b_by = {x.id: x for x in new}
    renamed = _renamed(a_by, b_by, lambda x, y: replace(x, id=y.id) == y)
    out = []
    for was, now in renamed.items():
        text = f"{where}: action {was} renamed to {now} (same action: {_action_text(b_by[now])})"
        if rekeyed:
            text += "; " + _REKEYED.format(what=f"the open {was} actions", new=now)
        out.append(RuleChange("action_renamed", "action", f"{where}/{now}", text))
    for x in new:
        if x.id not in a_by and x.id not in renamed.values():
            out.append(
                RuleChange(
                    "action_added", "action", f"{where}/{x.id}", f"{where}: action {x.id} added: {_action_text(x)}"
                )
            )
    for x in old:
        if x.id not in b_by and x.id not in renamed:
            out.append(RuleChange("action_removed", "action", f"{where}/{x.id}", f"{where}: action {x.id} removed"))
    for x in old:
        y = b_by.get(x.id)
        if y is None or x == y:
            continue
        diffs = []
        for attr in ("title", "due_in_days", "priority", "owner"):
            p, q = getattr(x, attr), getattr(y, attr)
            if p != q:
                p, q = (f"'{p}'", f"'{q}'") if attr == "title" else (p or "none", q or "none")
                diffs.append(f"{attr} {p} → {q}")
        out.append(
            RuleChange("action_changed", "action", f"{where}/{x.id}", f"{where}: action {x.id}: " + ", ".join(diffs))
        )
    common_old = [x.id for x in old if x.id in b_by]
    common_new = [x.id for x in new if x.id in a_by]
    if common_old != common_new:
        text = f"{where}: actions reordered: {', '.join(common_old)} → {', '.join(common_new)}"
        out.append(RuleChange("actions_reordered", "action", where, text))
    return out


def _transition_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    old = {(t.from_category, t.to_category): t for t in before.transitions}
    new = {(t.from_category, t.to_category): t for t in after.transitions}
    out = []
    for pair in [*old, *(p for p in new if p not in old)]:
        a, b = old.get(pair), new.get(pair)
        name = f"{pair[0]} → {pair[1]}"
        if a is None:
            ids = ", ".join(x.id for x in b.actions)
            out.append(RuleChange("transition_added", "transition", name, f"transition {name} added: actions {ids}"))
        elif b is None:
            out.append(RuleChange("transition_removed", "transition", name, f"transition {name} removed"))
        elif a != b:
            for c in _action_changes(a.actions, b.actions, f"transition {name}", rekeyed=False):
                out.append(RuleChange(c.kind, "transition", name, c.text))
    return out


def _amount_text(a: m.WithinAmount) -> str:
    """`10%` or `14`, as the rule file writes it."""
    value = round(a.amount * 100, 6) if a.relative else a.amount
    return f"{format_value(float(value))}{'%' if a.relative else ''}"


def _watch_text(w: m.Watch) -> str:
    """What a watch asks for, in words: 'keep → recapture within 30 days; or arr within 10%'."""
    conditions = []
    if w.within_days is not None:
        conditions.append(f"next move within {w.within_days} days")
    conditions += [f"nearest change of {a.column} within {_amount_text(a)}" for a in w.within]
    return (
        f"accounts in {w.from_category} about to move to {w.to_category or 'any category'}: {' or '.join(conditions)}"
    )


def _watch_changes(before: m.RuleSet, after: m.RuleSet) -> list[RuleChange]:
    """Watches compared by id: added, removed, and for one that stayed each part that changed ("within_days
    30 → 14", "within arr 10% → 5%") and its actions."""
    old = {w.id: w for w in before.watches}
    new = {w.id: w for w in after.watches}
    renamed = _renamed(old, new, lambda a, b: replace(a, id=b.id, description=b.description) == b)
    out = []
    for wid in [*old, *(i for i in new if i not in old)]:
        a, b = old.get(wid), new.get(wid)
        name = f"watch {wid}"
        if wid in renamed.values():
            continue
        if wid in renamed:
            text = f"{name} renamed to {renamed[wid]} (same watch: {_watch_text(a)})"
            text += "; " + _REKEYED.format(what="the watch's open actions", new=renamed[wid])  # keyed by the watch id
            out.append(RuleChange("watch_renamed", "watch", renamed[wid], text))
            continue
        if a is None:
            ids = ", ".join(x.id for x in b.actions)
            out.append(RuleChange("watch_added", "watch", wid, f"{name} added: {_watch_text(b)}; actions {ids}"))
            continue
        if b is None:
            out.append(RuleChange("watch_removed", "watch", wid, f"{name} removed (was: {_watch_text(a)})"))
            continue
        if a.from_category != b.from_category:
            text = f"{name}: watches {b.from_category} instead of {a.from_category}"
            out.append(RuleChange("watch_changed", "watch", wid, text))
        if a.to_category != b.to_category:
            text = f"{name}: moves to {b.to_category or 'any category'} (was {a.to_category or 'any category'})"
            out.append(RuleChange("watch_changed", "watch", wid, text))
        if a.within_days != b.within_days:
            if a.within_days is None or b.within_days is None:
                text = (
                    f"{name}: next move within {b.within_days} days added"
                    if a.within_days is None
                    else f"{name}: next move within {a.within_days} days removed"
                )
            else:
                text = f"{name}: within_days {a.within_days} → {b.within_days}"
            out.append(RuleChange("watch_threshold_changed", "watch", wid, text))
        was = {x.column: x for x in a.within}
        now = {x.column: x for x in b.within}
        for column in [*was, *(c for c in now if c not in was)]:
            p, q = was.get(column), now.get(column)
            if p == q:
                continue
            if p is None:
                text = f"{name}: within {column} {_amount_text(q)} added"
            elif q is None:
                text = f"{name}: within {column} {_amount_text(p)} removed"
            else:
                text = f"{name}: within {column} {_amount_text(p)} → {_amount_text(q)}"
            out.append(RuleChange("watch_threshold_changed", "watch", wid, text))
        for c in _action_changes(a.actions, b.actions, name):
            out.append(RuleChange(c.kind, "watch", wid, c.text))
    return out


# ---- overrides.yaml ----------------------------------------------------------------------------


def _pin_text(o: Override) -> str:
    return f"{o.category} until {o.expires.isoformat()} ({o.author}: {o.reason})"


def override_changes(before: tuple[Override, ...], after: tuple[Override, ...]) -> list[RuleChange]:
    """The accounts pinned, unpinned or re-pinned by an overrides.yaml change, by account, in file order.
    Not rule changes: they need no version bump (the run id records the overrides), but they move accounts."""
    old = {o.account: o for o in before}
    new = {o.account: o for o in after}
    out = []
    for account in [*old, *(a for a in new if a not in old)]:
        a, b = old.get(account), new.get(account)
        if a == b:
            continue
        if a is None:
            out.append(RuleChange("override_added", "override", account, f"{account} pinned to {_pin_text(b)}"))
        elif b is None:
            out.append(RuleChange("override_removed", "override", account, f"{account} unpinned (was {_pin_text(a)})"))
        else:
            diffs = [
                f"{what} {_quoted(x, what)} → {_quoted(y, what)}"
                for what, x, y in (
                    ("category", a.category, b.category),
                    ("expires", a.expires.isoformat(), b.expires.isoformat()),
                    ("reason", a.reason, b.reason),
                    ("author", a.author, b.author),
                )
                if x != y
            ]
            out.append(RuleChange("override_changed", "override", account, f"{account} pin: " + ", ".join(diffs)))
    return out


def _quoted(value: str, what: str) -> str:
    return f"'{value}'" if what == "reason" else value


# ---- condition trees ----------------------------------------------------------------------------


def condition_changes(before: m.Condition, after: m.Condition) -> list[tuple[str, str]]:
    """The differences between two condition trees as (kind, text), matching the parts that stayed.

    A predicate whose column and operator stayed reads as a new value ("arr ≥ 100000 → ≥ 80000");
    items of an all/any are paired by what they test, so an added item reads as added, not as a
    rewrite of the whole condition.
    """
    if before == after:
        return []
    if isinstance(before, m.Predicate) and isinstance(after, m.Predicate) and before.column == after.column:
        if before.op == after.op and before.op not in ("is_null", "between"):
            rhs = f"{m.OP_SYMBOL[after.op]} {format_value(after.value)}"
            return [("threshold_changed", f"{describe_predicate(before)} → {rhs}")]
        return [("condition_changed", f"{describe_predicate(before)} → {describe_predicate(after)}")]
    if isinstance(before, m.Not) and isinstance(after, m.Not):
        return [(k, f"inside not: {t}") for k, t in condition_changes(before.item, after.item)]
    # One side gained or lost a wrapping all/any: compare as if the plain side were a one-item list.
    combinators = (m.All, m.Any_)
    if isinstance(after, combinators) and not isinstance(before, combinators):
        before = type(after)((before,))
    elif isinstance(before, combinators) and not isinstance(after, combinators):
        after = type(before)((after,))
    if type(before) is type(after) and isinstance(before, combinators):
        return _item_changes(before, after)
    return [("condition_changed", f"{describe(before)} → {describe(after)}")]


def _anchor(cond: m.Condition) -> tuple:
    """What a condition tests, to pair the items of two lists: the column, the trait, the combinator."""
    if isinstance(cond, m.Predicate):
        return ("column", cond.column)
    if isinstance(cond, m.TraitRef):
        return ("trait", cond.name)
    if isinstance(cond, m.Not):
        return ("not", _anchor(cond.item))
    return (type(cond).__name__,)


def _item_changes(before: m.All | m.Any_, after: m.All | m.Any_) -> list[tuple[str, str]]:
    old = list(before.items)
    new = list(after.items)
    for item in list(new):  # what stayed exactly is no change
        if item in old:
            old.remove(item)
            new.remove(item)
    word = "condition" if isinstance(before, m.All) else "alternative"
    out: list[tuple[str, str]] = []
    unpaired_new = []
    for item in new:
        mate = next((o for o in old if _anchor(o) == _anchor(item)), None)
        if mate is None:
            unpaired_new.append(item)
        else:
            old.remove(mate)
            out.extend(condition_changes(mate, item))
    out.extend((f"{word}_added", f"added {word} {describe(x)}") for x in unpaired_new)
    out.extend((f"{word}_removed", f"removed {word} {describe(x)}") for x in old)
    if not out:  # same items, another order: meaningless for all/any, but the digest sees it
        out.append(("condition_reordered", f"{describe(before)} → {describe(after)} (same items, new order)"))
    return out


# ---- impact on real accounts --------------------------------------------------------------------


@dataclass
class Impact:
    """What the change does to one input: category counts, the accounts that move and why."""

    as_of: dt.date
    accounts: int = 0
    counts_before: dict[str, int] = field(default_factory=dict)
    counts_after: dict[str, int] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)  # {from, to, accounts}
    moved_total: int = 0
    moved: list[dict[str, Any]] = field(default_factory=list)  # {account_id, from, to, reason_before, reason_after}
    # Early warning: accounts whose next move (data unchanged) is at most SOON_DAYS away, per version,
    # by {from, to, before, after}; and how many valid-both accounts come within / leave that window.
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    came_near: int = 0
    left_near: int = 0
    left_near_moved: int = 0  # of left_near, the accounts the change moves now: their move came, not went
    # The first `limit` of the accounts the change brings within SOON_DAYS of a move, so a reviewer sees
    # which ones: {account_id, category, next_category, next_move_on, before} (before: their outlook then).
    came_within: list[dict[str, Any]] = field(default_factory=list)
    # The trends the rules' conditions read: null here for every account (the comparison has one input
    # and no previous run's values), so a change to a condition on them moves no account in this report.
    null_trends: list[str] = field(default_factory=list)
    # Per watch of either version: {watch, before, after}, the accounts it flags (None where the version
    # has no such watch), as `kare run` opens their actions.
    watches: list[dict[str, Any]] = field(default_factory=list)
    # Set when the new version's contract quarantines more of the input than a run accepts: the run would
    # publish nothing, which a reviewer must know before merging.
    quarantine_note: str | None = None


SOON_DAYS = m.SOON_DAYS


def _outcome(
    rules: m.RuleSet, accounts: pl.DataFrame, as_of: dt.date, overrides: tuple[Override, ...] = ()
) -> tuple[pl.DataFrame, Any]:
    """Per input row: its account id and category under these rules, overrides applied as `kare run`
    applies them (`quarantined` if the contract rejects the row), plus the validation result to explain
    moved accounts later."""
    from kare_rules.run.engine import pin_overrides  # the run's own step: diff and run pin alike

    checked = validate_accounts(rules, accounts)
    result = categorize(rules, checked.valid, as_of, explain=False, edges=True)
    if overrides:
        result = result.with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
        result = pin_overrides(rules, checked.valid, result, as_of, overrides)
    soon = pl.col("next_move_on") <= pl.lit(as_of + dt.timedelta(days=SOON_DAYS))
    valid = pl.DataFrame(
        {
            _ROW: checked.valid[_ROW],
            "account_id": checked.valid[rules.key].cast(pl.String),
            "category": result["category"],
            "soon": result.select(pl.when(soon).then(pl.col("next_category"))).to_series(),
            "next": result["next_category"],
            "next_on": result["next_move_on"],
            "watches": result["watches"].cast(pl.List(pl.String)),
        }
    )
    quarantined = checked.quarantine.select(
        (pl.col("row_number") - 1).cast(valid[_ROW].dtype).alias(_ROW),
        pl.col("account_id"),
        pl.lit(QUARANTINED).alias("category"),
        pl.lit(None, dtype=pl.String).alias("soon"),
        pl.lit(None, dtype=pl.String).alias("next"),
        pl.lit(None, dtype=pl.Date).alias("next_on"),
        pl.lit([], dtype=pl.List(pl.String)).alias("watches"),  # not categorized: no watch holds
    )
    return pl.concat([valid, quarantined]).sort(_ROW), checked


def _counts(outcome: pl.DataFrame, names: list[str]) -> dict[str, int]:
    got = dict(outcome.group_by("category").len().iter_rows())
    names = names + [c for c in [*m.ALL_CATEGORIES, QUARANTINED] if c not in names and c in got]
    return {c: int(got.get(c, 0)) for c in names}


def _shown_categories(before: m.RuleSet | None, after: m.RuleSet | None, show_quarantined: bool) -> list[str]:
    """The categories the counts list, as kare run's summary does: those either version defines (the new
    precedence first), then unassigned; a category neither defines would read 0 as if it could hold."""
    defined = [r.name for rules in (after, before) if rules is not None for r in rules.ordered()]
    return [*dict.fromkeys(defined), m.UNASSIGNED, *([QUARANTINED] if show_quarantined else [])]


def _reasons(
    rules: m.RuleSet, checked: Any, rows: pl.Series, as_of: dt.date, overrides: tuple[Override, ...] = ()
) -> dict[int, str]:
    """Why each of a few rows got its category under these rules and overrides (explanations for the
    moved only)."""
    valid = checked.valid.filter(pl.col(_ROW).is_in(rows.implode()))
    out: dict[int, str] = {}
    if valid.height:
        explained = apply_overrides(categorize(rules, valid, as_of, explain=True), rules.key, overrides, as_of)
        out.update(zip(valid[_ROW].to_list(), explained["reason"].to_list(), strict=True))
    q = checked.quarantine.filter((pl.col("row_number") - 1).is_in(rows.cast(pl.Int64).implode()))
    for row_number, reasons in q.select("row_number", "reasons").iter_rows():
        out[row_number - 1] = "quarantined: " + "; ".join(reasons)
    return out


def impact(
    before: m.RuleSet | None,
    after: m.RuleSet | None,
    accounts: pl.DataFrame | pl.LazyFrame,
    as_of: dt.date | str,
    limit: int = 20,
    overrides_before: tuple[Override, ...] = (),
    overrides_after: tuple[Override, ...] = (),
) -> Impact:
    """Categorize the same input with both versions at the same as_of and compare, row by row.

    Each version validates the input against its own contract; a row one version quarantines counts
    as `quarantined` there, so a stricter contract shows up as moves instead of vanishing accounts.
    Each version's overrides are applied as `kare run` applies them, so a new pin is a move too.
    A missing side (a rule file added or removed) gives counts for the other side only.
    """
    as_of = as_date(as_of)
    frame = accounts.collect() if isinstance(accounts, pl.LazyFrame) else accounts
    frame = frame.with_row_index(_ROW)
    result = Impact(as_of=as_of, accounts=frame.height)
    for rules in (before, after):
        if rules is not None:
            used = columns_used(rules)
            trends = [d.name for d in rules.derived if d.kind in m.TREND_KINDS and d.name in used]
            result.null_trends += [t for t in trends if t not in result.null_trends]
    sides = {}
    pins = {"before": overrides_before, "after": overrides_after}
    for label, rules in (("before", before), ("after", after)):
        if rules is not None:
            sides[label] = _outcome(rules, frame, as_of, pins[label])
    show_q = any((o["category"] == QUARANTINED).any() for o, _ in sides.values())
    shown = _shown_categories(before, after, show_q)
    if "before" in sides:
        result.counts_before = _counts(sides["before"][0], shown)
    if "after" in sides:
        result.counts_after = _counts(sides["after"][0], shown)
    result.watches = _watch_counts(before, after, {label: o for label, (o, _) in sides.items()})
    result.quarantine_note = _quarantine_note(result)
    if len(sides) < 2:  # a rule file added or removed: its own early warning, none to compare with
        result.upcoming = _upcoming_counts({label: outcome for label, (outcome, _) in sides.items()})
        return result
    (old, old_checked), (new, new_checked) = sides["before"], sides["after"]
    _upcoming(result, old, new, limit)
    joined = old.join(new, on=_ROW, how="inner", suffix="_after").rename({"category": "from", "category_after": "to"})
    moved = joined.filter(pl.col("from") != pl.col("to"))
    order = {c: i for i, c in enumerate([*m.ALL_CATEGORIES, QUARANTINED])}
    flows = moved.group_by("from", "to").len("accounts").to_dicts()
    result.transitions = sorted(flows, key=lambda f: (-f["accounts"], order[f["from"]], order[f["to"]]))
    result.moved_total = moved.height
    first = moved.head(max(limit, 0))
    why_before = _reasons(before, old_checked, first[_ROW], as_of, overrides_before)
    why_after = _reasons(after, new_checked, first[_ROW], as_of, overrides_after)
    for row in first.iter_rows(named=True):
        result.moved.append(
            {
                "account_id": row["account_id_after"] or row["account_id"],
                "from": row["from"],
                "to": row["to"],
                "reason_before": why_before.get(row[_ROW], ""),
                "reason_after": why_after.get(row[_ROW], ""),
            }
        )
    return result


def _quarantine_note(result: Impact) -> str | None:
    """Say so when the new version quarantines more of the input than a run's blocking quality check
    allows by default (`kare run --max-quarantine-share`, the pipeline's quarantine_share check)."""
    from kare_rules.run.quality import Thresholds  # the limit the runs apply, not a copy of it

    limit = Thresholds().max_quarantine_share
    rows = result.counts_after.get(QUARANTINED, 0)
    if not result.accounts or rows / result.accounts <= limit:
        return None
    was = result.counts_before.get(QUARANTINED)
    before = f"; before: {was / result.accounts:.1%}" if was is not None and result.counts_before else ""
    return (
        f"{rows:,} of {result.accounts:,} input rows ({rows / result.accounts:.1%}{before}) fail this version's "
        f"input contract, above a run's default limit of {limit:.0%} (--max-quarantine-share): kare run and "
        "the pipeline would publish nothing for this organization until the data or the contract is fixed, "
        "or the limit raised"
    )


def _watch_counts(
    before: m.RuleSet | None, after: m.RuleSet | None, outcomes: dict[str, pl.DataFrame]
) -> list[dict[str, Any]]:
    """How many accounts each watch flags under each version (in the order the watches are written,
    before's first); None on a side whose rules have no such watch."""
    ids = {label: [w.id for w in rules.watches] for label, rules in (("before", before), ("after", after)) if rules}
    order = [*ids.get("before", []), *(i for i in ids.get("after", []) if i not in ids.get("before", []))]
    if not order:
        return []
    flagged = {
        label: dict(outcome.select(pl.col("watches").explode().drop_nulls()).group_by("watches").len().iter_rows())
        for label, outcome in outcomes.items()
    }
    return [
        {
            "watch": wid,
            **{
                label: int(flagged[label].get(wid, 0)) if wid in ids.get(label, []) else None
                for label in ("before", "after")
            },
        }
        for wid in order
    ]


def _upcoming_counts(outcomes: dict[str, pl.DataFrame]) -> list[dict[str, Any]]:
    """Moves within SOON_DAYS by from → to, for each side given; None on a side without rules (a rule
    file added or removed), as in the watches' counts."""
    order = {c: i for i, c in enumerate(m.ALL_CATEGORIES)}
    per = {}
    for label, side in outcomes.items():
        near = side.filter(pl.col("soon").is_not_null())
        per[label] = {(f, t): n for f, t, n in near.group_by("category", "soon").len().iter_rows()}
    pairs = sorted({ft for counts in per.values() for ft in counts}, key=lambda ft: (order[ft[0]], order[ft[1]]))
    return [
        {
            "from": f,
            "to": t,
            **{label: per[label].get((f, t), 0) if label in per else None for label in ("before", "after")},
        }
        for f, t in pairs
    ]


def _upcoming(result: Impact, old: pl.DataFrame, new: pl.DataFrame, limit: int = 20) -> None:
    """How the change moves the early warning: moves within SOON_DAYS per version, by from → to, and
    the accounts that come within (or leave) that window."""
    result.upcoming = _upcoming_counts({"before": old, "after": new})
    both = old.select(_ROW, "category", pl.col("soon").is_not_null().alias("was")).join(
        new.select(_ROW, pl.col("category").alias("category_now"), pl.col("soon").is_not_null().alias("now")),
        on=_ROW,
    )
    result.came_near = both.filter(pl.col("now") & ~pl.col("was")).height
    left = both.filter(~pl.col("now") & pl.col("was"))
    result.left_near = left.height
    result.left_near_moved = left.filter(pl.col("category") != pl.col("category_now")).height
    came = both.filter(pl.col("now") & ~pl.col("was")).select(_ROW).head(max(limit, 0))
    came = came.join(old, on=_ROW).join(new, on=_ROW, suffix="_after").sort(_ROW)
    for row in came.iter_rows(named=True):
        if row["category"] == QUARANTINED:
            was = "quarantined"
        elif row["next"] is None:
            was = f"{row['category']}, no move within {m.DEFAULT_HORIZON_DAYS} days"
        else:
            was = f"{row['category']} → {row['next']} on {row['next_on'].isoformat()}"
        result.came_within.append(
            {
                "account_id": row["account_id_after"],
                "category": row["category_after"],
                "next_category": row["next_after"],
                "next_move_on": row["next_on_after"].isoformat(),
                "before": was,
            }
        )


# ---- embedded tests and the version rule --------------------------------------------------------


def rule_test_summary(rules: m.RuleSet) -> dict[str, Any]:
    """The embedded tests of one version: pass/fail counts and each failure."""
    results = run_rule_tests(rules)
    failures = [
        {
            "name": r.test.name,
            "file": _test_file(r.test.path),
            "line": r.test.line,
            "expect": r.test.expect,
            "got": r.got,
            "reason": r.reason,
            # Every expectation that did not hold: a test may get its category and still fail on its
            # matched_rule, actions or next move, which "expected keep, got keep" alone does not say.
            "mismatches": [
                {"what": mm.what, "expected": _listed(mm.expected), "got": _listed(mm.got)} for mm in r.mismatches
            ],
        }
        for r in results
        if not r.passed
    ]  # fmt: skip
    return {"passed": len(results) - len(failures), "failed": len(failures), "failures": failures}


def _test_file(path: str) -> str:
    """Where a test is, within its organization's folder: `kare.yaml` or `tests/NAME.yaml` (a version read
    from git sits in a scratch folder, so the full path would mean nothing to a reviewer)."""
    file = Path(path or "kare.yaml")
    return f"tests/{file.name}" if file.parent.name == "tests" else file.name


def _listed(value: Any) -> Any:
    """A mismatch's value as JSON writes it: action ids as a sorted list, anything else as it is."""
    return sorted(value) if isinstance(value, tuple) else value


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?\Z")


def parse_version(text: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...] | None]:
    """MAJOR.MINOR.PATCH[-PRERELEASE]; the prerelease split for comparison (numbers below words)."""
    match = _SEMVER.match(text or "")
    if not match:
        from kare_rules.errors import UsageError

        raise UsageError(f"version {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    pre = None
    if match.group(4):
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in match.group(4).split("."))
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), pre


def version_key(text: str) -> tuple:
    """A sort key that orders versions as semver does: 1.2.0-rc.1 < 1.2.0 < 1.10.0."""
    major, minor, patch, pre = parse_version(text)
    return (major, minor, patch, (1,) if pre is None else (0, pre))


@dataclass(frozen=True)
class VersionCheck:
    ok: bool
    required: str  # none, bump (any increase), major
    message: str
    suggested_version: str | None = None


def check_version(
    before: m.RuleSet | None,
    after: m.RuleSet | None,
    changes: list[RuleChange],
    base_problem: str | None = None,
    base_version: str | None = None,
) -> VersionCheck:
    """Every semantic change bumps the version; removing a category or an input bumps MAJOR.

    A version never goes down: history rows store it, and readers order by it. `base_problem` says the
    previous files were not valid (then `before` is None and `base_version` is what they stated).
    """
    if before is None and after is not None and base_problem:
        return _check_repaired(after, base_version)
    if before is None or after is None:
        which = "added" if before is None else "removed"
        version = (after or before).version
        return VersionCheck(True, "none", f"rule file {which} (version {version})")
    old, new = version_key(before.version), version_key(after.version)
    major, minor, _, _ = parse_version(before.version)
    breaking = [c for c in changes if c.breaking]
    if before.digest == after.digest:
        if new < old:
            return VersionCheck(
                False,
                "none",
                f"the version went down ({before.version} → {after.version}); versions never go back: "
                f"write version: {before.version}",
                before.version,
            )
        return VersionCheck(True, "none", "no semantic change; the digest is the same")
    if breaking:
        suggested = f"{major + 1}.0.0"
        why = "; ".join(c.text.removesuffix(" — a MAJOR change") for c in breaking)
        if parse_version(after.version)[0] > major:
            return VersionCheck(True, "major", f"MAJOR bump for a breaking change ({why})", suggested)
        return VersionCheck(
            False,
            "major",
            f"{why}: removing a category or an input needs a MAJOR bump; write version: {suggested}",
            suggested,
        )
    suggested = f"{major}.{minor + 1}.0"
    if new > old:
        return VersionCheck(True, "bump", f"version bumped {before.version} → {after.version}", suggested)
    return VersionCheck(
        False,
        "bump",
        f"the rules changed (digest {before.digest} → {after.digest}) but the version did not increase "
        f"({before.version} → {after.version}); write version: {suggested}",
        suggested,
    )


def _version_at(path: str) -> str:
    """Where `version:` is written in a rule file, as PATH:LINE:COL (the path alone if it cannot be read
    again): a failed version check is a problem of that line, located like every other one."""
    from kare_rules.yamlsource import load_document  # only a failed check reads the file again

    doc = load_document(path)
    if ("version",) not in doc.value_at:
        return path
    line, column = doc.value_at[("version",)]
    return f"{path}:{line}:{column}"


def _check_repaired(after: m.RuleSet, base_version: str | None) -> VersionCheck:
    """Files that were not valid at the base have no meaning to compare with, so a valid version is a
    change of meaning: the version must pass the one stated there (when it states one)."""
    try:
        old = version_key(base_version) if base_version else None
    except ValueError:
        old = None
    if old is None or base_version is None:
        return VersionCheck(True, "bump", f"the base stated no readable version; this one is {after.version}")
    major, minor, _, _ = parse_version(base_version)
    suggested = f"{major}.{minor + 1}.0"
    if version_key(after.version) > old:
        return VersionCheck(True, "bump", f"version bumped {base_version} → {after.version}", suggested)
    return VersionCheck(
        False,
        "bump",
        f"the rule files at the base were not valid, so this valid version changes what they mean, but the "
        f"version did not increase ({base_version} → {after.version}); write version: {suggested}",
        suggested,
    )


# ---- the whole report for one organization ------------------------------------------------------


@dataclass
class OrgDiff:
    """Everything a reviewer needs about one organization's rule change."""

    organization: str
    status: str  # changed, unchanged, added, removed
    version_before: str | None
    version_after: str | None
    digest_before: str | None
    digest_after: str | None
    rule_changes: list[RuleChange]
    tests_before: dict[str, Any] | None
    tests_after: dict[str, Any] | None
    version_check: VersionCheck
    impact: Impact | None = None
    impact_note: str | None = None  # why there is no impact section, when there is none
    path_after: str | None = None  # the rule file to edit
    override_changes: list[RuleChange] = field(default_factory=list)  # overrides.yaml: pins added, removed, changed
    base_problem: str | None = None  # status repaired: why the files at the base could not be compared
    version_at: str | None = None  # PATH:LINE:COL of the `version:` to edit, when the version check failed

    def to_json(self) -> dict[str, Any]:
        imp = self.impact
        return {
            "organization": self.organization,
            "status": self.status,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "digest_before": self.digest_before,
            "digest_after": self.digest_after,
            "rule_changes": [c.to_json() for c in self.rule_changes],
            "override_changes": [c.to_json() for c in self.override_changes],
            "as_of": imp.as_of.isoformat() if imp else None,
            "accounts": imp.accounts if imp else None,
            "counts_before": imp.counts_before if imp else None,
            "counts_after": imp.counts_after if imp else None,
            "transitions": imp.transitions if imp else [],
            "moved_total": imp.moved_total if imp else 0,
            "moved": imp.moved if imp else [],
            "upcoming": imp.upcoming if imp else [],
            "came_within_30_days": imp.came_near if imp else 0,
            "left_within_30_days": imp.left_near if imp else 0,
            "left_within_30_days_moved": imp.left_near_moved if imp else 0,
            "came_within": imp.came_within if imp else [],
            "null_trends": imp.null_trends if imp else [],
            "watches": imp.watches if imp else [],
            "quarantine_note": imp.quarantine_note if imp else None,
            "impact_note": self.impact_note,
            "base_problem": self.base_problem,
            "tests_before": self.tests_before,
            "tests_after": self.tests_after,
            "version_check": asdict(self.version_check),
        }


def diff_rules(
    before: m.RuleSet | None,
    after: m.RuleSet | None,
    accounts: pl.DataFrame | pl.LazyFrame | None = None,
    as_of: dt.date | str | None = None,
    limit: int = 20,
    overrides_before: tuple[Override, ...] = (),
    overrides_after: tuple[Override, ...] = (),
    base_problem: str | None = None,
    base_version: str | None = None,
) -> OrgDiff:
    """Compare two versions of one organization's rules (either may be None: added or removed) and the
    overrides beside each (empty when there is no overrides.yaml). `base_problem` (with `before` None):
    the previous files were not valid, `base_version` the version they stated; the report is `repaired`."""
    if before is None and after is None:
        raise ValueError("diff_rules needs at least one rule set")
    org = (after or before).organization
    changes = rule_changes(before, after) if before is not None and after is not None else []
    if before is None and base_problem:
        status = "repaired"
    elif before is None:
        status = "added"
    elif after is None:
        status = "removed"
    else:
        status = "unchanged" if before.digest == after.digest else "changed"
    report = OrgDiff(
        organization=org,
        status=status,
        version_before=before.version if before else base_version,
        version_after=after.version if after else None,
        digest_before=before.digest if before else None,
        digest_after=after.digest if after else None,
        rule_changes=changes,
        tests_before=rule_test_summary(before) if before else None,
        tests_after=rule_test_summary(after) if after else None,
        version_check=check_version(before, after, changes, base_problem, base_version),
        path_after=(after.path or None) if after else None,
        override_changes=override_changes(overrides_before, overrides_after),
        base_problem=base_problem,
    )
    if not report.version_check.ok and report.path_after:
        report.version_at = _version_at(report.path_after)
    if accounts is None:
        report.impact_note = "no input given: impact on accounts not computed"
    elif as_of is None:
        raise ValueError("diff_rules needs as_of to compute the impact on accounts")
    else:
        report.impact = impact(before, after, accounts, as_of, limit, overrides_before, overrides_after)
        if after is not None:
            report.override_changes = _flag_absent_pins(
                report.override_changes, after, accounts, overrides_after, as_of
            )
    return report


def _flag_absent_pins(
    changes: list[RuleChange],
    rules: m.RuleSet,
    accounts: pl.DataFrame | pl.LazyFrame,
    overrides: tuple[Override, ...],
    as_of: dt.date,
) -> list[RuleChange]:
    """Say so when a new or changed pin pins nothing on `as_of`: it expired before, or it names an account
    the input does not hold (a mistyped id), and a run would not tell anyone."""
    expired = {o.account: o.expires for o in overrides if o.expires < as_of}
    changes = [
        replace(c, text=c.text + f" — expired on {expired[c.name]}, before {as_of}: it pins nothing")
        if c.kind in ("override_added", "override_changed") and c.name in expired
        else c
        for c in changes
    ]
    pinned = [c.name for c in changes if c.kind in ("override_added", "override_changed") and c.name not in expired]
    if not pinned:
        return changes
    frame = accounts.lazy() if isinstance(accounts, pl.DataFrame) else accounts
    key = pl.col(rules.key).cast(pl.String)  # a run matches pins on the key as text
    present = set(frame.filter(key.is_in(pinned)).select(key).collect().to_series().to_list())
    note = " — ⚠️ not in the input: check the account id (a mistyped id pins nothing)"
    return [replace(c, text=c.text + note) if c.name in pinned and c.name not in present else c for c in changes]


# ---- Markdown for a pull-request comment --------------------------------------------------------


# Text from a rule file or the data (a title, a test name, a value, an account id) is shown, never read as
# Markdown or HTML: in the pull-request comment a '<!--' would hide everything after it (failing tests, the
# version check), and '![x](url)' would load an image from anywhere. An '&' starts an entity: '&#64;team' is
# shown as '@team', and GitHub would notify that team as if the @ had been typed.
_MD_ACTIVE = re.compile(r"[\\`<&]|\]\(")  # '<' starts every tag and comment; '>' alone does nothing here
_MENTION = re.compile(r"(?<!\w)@(?=\w)")  # an e-mail address mentions nobody
_REFERENCE = re.compile(r"#(?=\d)")  # '#12', 'acme/crm#12': GitHub links the issue and notes the mention there


def _flat(text: Any) -> str:
    """Text on one line: a line break inside would end a list item or a table row."""
    return " ".join(str(text).splitlines())


def _md(text: Any) -> str:
    """Plain text as inert Markdown on one line: HTML, code spans and links are escaped, and an @name
    mentions nobody (a zero-width space after the @, as GitHub's own bots write it): an action titled
    'Escalate to @acme/sales' would notify that team each time the comment is posted. So for '#12': each
    posting would add a cross-reference to issue 12."""
    inert = _MD_ACTIVE.sub(lambda hit: "\\" + hit[0] if len(hit[0]) == 1 else "]\\(", _flat(text))
    return _REFERENCE.sub("#\u200b", _MENTION.sub("@\u200b", inert))


def _code(text: Any) -> str:
    """Text as one inline code span, whatever backticks it holds (the fence is longer than any of its runs)."""
    flat = _flat(text)
    fence = "`" * (max(map(len, re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _cell(text: Any) -> str:
    return _flat(text).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
        *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows),
    ]


def _delta(n: int) -> str:
    return f"+{n:,}" if n > 0 else (f"−{-n:,}" if n < 0 else "0")


def summary_line(d: OrgDiff) -> str:
    versions = {
        "added": f"{d.organization} {d.version_after} (new)",
        "removed": f"{d.organization} {d.version_before} (removed)",
        "repaired": f"{d.organization} {d.version_before or '?'} (not valid) → {d.version_after}",
    }.get(d.status, f"{d.organization} {d.version_before} → {d.version_after}")
    n = len(d.rule_changes)
    parts = [f"**{versions}**"]
    if d.status != "repaired":  # nothing valid to compare with: a count of 0 would read as "nothing changed"
        parts.append(f"{n} rule change{'s' if n != 1 else ''}")
    if d.override_changes:
        k = len(d.override_changes)
        parts.append(f"{k} override change{'s' if k != 1 else ''}")
    if d.impact is not None and d.status not in ("added", "removed", "repaired"):
        parts.append(f"{d.impact.moved_total:,} of {d.impact.accounts:,} accounts move")
    if d.impact is not None and d.impact.quarantine_note:
        parts.append("⚠️ runs would be blocked (quarantine)")
    parts.append("version check " + ("✅" if d.version_check.ok else "❌"))
    return " · ".join(parts)


def render_org_markdown(d: OrgDiff, heading: str = "###") -> list[str]:
    lines = [f"{heading} {d.organization}", "", summary_line(d), ""]
    if d.status in ("changed", "unchanged"):
        lines.append(f"Digest `{d.digest_before}` → `{d.digest_after}`" if d.status == "changed" else "")
        same = "the rules did not change; overrides.yaml did" if d.override_changes else "no semantic change"
        lines[-1] = lines[-1] or f"Digest `{d.digest_after}` (unchanged: {same})"
        lines.append("")
    if d.base_problem:
        lines += [
            f"⚠️ **The rule files at the base are not valid**, so there is nothing to compare with: no rule "
            f"changes are listed and the accounts are counted under this version only. {_md(d.base_problem)}",
            "",
        ]
    if d.rule_changes:
        lines += ["**Rule changes**", ""]
        shown: set[tuple] = set()
        for i, c in enumerate(d.rule_changes):
            lines.append(f"- {'⚠️ ' if c.breaking else ''}{_md(c.text)}")
            group = (c.target, c.name, c.before, c.after)
            following = d.rule_changes[i + 1] if i + 1 < len(d.rule_changes) else None
            last_of_group = following is None or (following.target, following.name) != (c.target, c.name)
            if c.before and c.after and last_of_group and group not in shown:
                shown.add(group)
                lines.append(f"  - was {_code(c.before)}, now {_code(c.after)}")
        lines.append("")
    if d.override_changes:
        lines += ["**Overrides** (overrides.yaml: accounts pinned to a category)", ""]
        lines += [f"- {_md(c.text)}" for c in d.override_changes]
        lines.append("")
    imp = d.impact
    if imp is None:
        if d.impact_note:
            lines += [f"_Impact: {_md(d.impact_note)}._", ""]
    else:
        lines += [f"**Accounts** ({imp.accounts:,} input rows, as of {imp.as_of.isoformat()})", ""]
        cats = list((imp.counts_after or imp.counts_before).keys())
        rows = []
        for c in cats:
            b, a = imp.counts_before.get(c), imp.counts_after.get(c)
            rows.append(
                [
                    f"`{c}`",
                    "–" if b is None else f"{b:,}",
                    "–" if a is None else f"{a:,}",
                    "–" if a is None or b is None else _delta(a - b),
                ]
            )
        lines += [*_table(["category", "before", "after", "Δ"], rows), ""]
        if imp.quarantine_note:
            lines += [f"⚠️ **Runs would be blocked**: {_md(imp.quarantine_note)}.", ""]
        if imp.null_trends:
            lines += [
                f"_The trends ({', '.join(imp.null_trends)}) are null for every account here, as for new "
                "accounts: the comparison reads one input, without the previous run's values, so no "
                "comparison with them holds, and changing one moves no account in this report._",
                "",
            ]
        if imp.transitions:
            lines += [*_matrix(imp), ""]
            shown = len(imp.moved)
            if not shown:  # --limit 0: the count only, not an empty table
                lines += [f"**Moved accounts**: {imp.moved_total:,} (none listed: --limit 0)", ""]
            else:
                title = f"**Moved accounts** (first {shown} of {imp.moved_total:,})"
                lines += [title if shown < imp.moved_total else f"**Moved accounts** ({imp.moved_total:,})", ""]
                lines += _table(
                    ["account", "before", "after", "reason before", "reason after"],
                    [
                        [_code(x["account_id"]), x["from"], x["to"], _md(x["reason_before"]), _md(x["reason_after"])]
                        for x in imp.moved
                    ],
                    align="lllll",
                )
                lines.append("")
        elif d.status not in ("added", "removed", "repaired"):
            lines += ["No account changes category.", ""]
        lines += _upcoming_lines(imp)
        lines += _watch_lines(imp)
    lines += ["**Embedded tests**", ""]
    for label, t in (("before", d.tests_before), ("after", d.tests_after)):
        if t is not None:
            mark = "✅" if not t["failed"] else "❌"
            lines.append(f"- {label}: {t['passed']} passed, {t['failed']} failed {mark}")
    for f in (d.tests_after or {}).get("failures", []):
        lines.append(f"  - FAIL {_md(f['file'])} line {f['line']} _{_md(f['name'])}_: {_test_failure(f)}")
    vc = d.version_check
    lines += ["", f"**Version check** {'✅' if vc.ok else '❌'} {_md(vc.message)}"]
    if not vc.ok and vc.suggested_version:
        where = d.path_after or f"rules/{d.organization}/kare.yaml"
        line = d.version_at.removeprefix(f"{where}:").split(":")[0] if d.version_at else ""
        where += f" line {line}" if line.isdigit() else ""
        lines += ["", f"> Set `version: {vc.suggested_version}` in {_md(where)} and push again."]
    lines.append("")
    return lines


def _test_failure(f: dict[str, Any]) -> str:
    """What a failed embedded test expected and got: the category with its reason when that is what
    failed, then each other expectation that did not hold (matched_rule, actions, next move)."""
    parts = []
    if f["expect"] != f["got"]:
        parts.append(f"expected {_code(f['expect'])}, got {_code(f['got'])} ({_md(f['reason'])})")
    for mm in f.get("mismatches", []):
        if mm["what"] != "category":
            parts.append(f"{mm['what']} expected {_code(_shown(mm['expected']))}, got {_code(_shown(mm['got']))}")
    return "; ".join(parts) or f"got {_code(f['got'])} ({_md(f['reason'])})"


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "null" if value is None else str(value)


def _upcoming_lines(imp: Impact) -> list[str]:
    """The early warning before and after: who will move within SOON_DAYS, data unchanged."""
    if not imp.upcoming and not imp.came_near and not imp.left_near:
        return []
    title = f"**Upcoming moves** (within {SOON_DAYS} days of {imp.as_of.isoformat()}, data unchanged)"
    rows = [[f"`{u['from']}` → `{u['to']}`", *_before_after(u["before"], u["after"])] for u in imp.upcoming]
    lines = [title, "", *_table(["move", "before", "after", "Δ"], rows), ""]
    if any(u["before"] is None or u["after"] is None for u in imp.upcoming):
        return lines  # a rule file added or removed: no account comes within or leaves the window
    # An account the change moves today has left the window by moving, not by growing safer: say how many.
    moved_now = f" ({imp.left_near_moved:,} of them because the change moves them now)" if imp.left_near_moved else ""
    lines += [f"Accounts coming within {SOON_DAYS} days of a move: {imp.came_near:,}; "
              f"no longer within: {imp.left_near:,}{moved_now}.", ""]  # fmt: skip
    if not imp.came_within:
        return lines
    shown = len(imp.came_within)
    more = f" (first {shown} of {imp.came_near:,})" if shown < imp.came_near else ""
    rows = [
        [
            _code(x["account_id"]),
            f"{x['category']} → {x['next_category']} on {x['next_move_on']}, {_in_days(x['next_move_on'], imp.as_of)}",
            x["before"],
        ]
        for x in imp.came_within
    ]
    title = f"Which accounts come within {SOON_DAYS} days of a move{more}, with their data unchanged:"
    return [*lines, title, "", *_table(["account", "after the change", "before the change"], rows, align="lll"), ""]


def _in_days(on: str, as_of: dt.date) -> str:
    days = (dt.date.fromisoformat(on) - as_of).days
    return f"in {days} day{'s' if days != 1 else ''}"


def _before_after(before: int | None, after: int | None) -> list[str]:
    """The before, after and Δ cells of a count; `–` where a version has none (no such rule file or watch)."""
    if before is None or after is None:
        return ["–" if before is None else f"{before:,}", "–" if after is None else f"{after:,}", "–"]
    return [f"{before:,}", f"{after:,}", _delta(after - before)]


def _watch_lines(imp: Impact) -> list[str]:
    """The accounts each watch flags before and after (their watch actions open in a run)."""
    if not imp.watches:
        return []
    rows = [[f"`{w['watch']}`", *_before_after(w["before"], w["after"])] for w in imp.watches]
    title = f"**Watches** (accounts each watch flags as of {imp.as_of.isoformat()}; a run opens their actions)"
    return [title, "", *_table(["watch", "before", "after", "Δ"], rows), ""]


def _matrix(imp: Impact) -> list[str]:
    """Who moves where: rows are the category before, columns the category after."""
    order = [*m.ALL_CATEGORIES, QUARANTINED]
    froms = [c for c in order if any(t["from"] == c for t in imp.transitions)]
    tos = [c for c in order if any(t["to"] == c for t in imp.transitions)]
    cell = {(t["from"], t["to"]): t["accounts"] for t in imp.transitions}
    rows = [[f"`{f}`", *(f"{cell[(f, t)]:,}" if (f, t) in cell else "·" for t in tos)] for f in froms]
    return ["**Transitions** (rows: before, columns: after)", "", *_table(["before ↓ / after →", *tos], rows)]


def render_markdown(reports: list[OrgDiff], base: str | None = None) -> str:
    """The whole pull-request comment: a hidden marker (so CI updates one comment), then each org."""
    title = f"## KARE rule changes against {_code(base)}" if base else "## KARE rule change"
    lines = [MARKER, title, ""]
    if not reports:
        none = f"No rule, test or overrides file differs from {_code(base)}." if base else "No rule files compared."
        lines += [none, ""]
    if len(reports) > 1:
        lines += [f"- {summary_line(d)}" for d in reports] + [""]
    for d in reports:
        lines += render_org_markdown(d)
    failed = [d.organization for d in reports if not d.version_check.ok]
    if failed:
        lines.append(f"❌ Version check failed for {', '.join(failed)}: bump the version as shown above.")
    return "\n".join(lines).rstrip() + "\n"


def render_json(reports: list[OrgDiff], base: str | None = None) -> dict[str, Any]:
    """One organization: its report. With a git base: {base, ok, organizations: [...]}."""
    if base is None and len(reports) == 1:
        return reports[0].to_json()
    return {
        "base": base,
        "ok": all(d.version_check.ok for d in reports),
        "organizations": [d.to_json() for d in reports],
    }
