"""Run the embedded `tests:` of a rule file: each example account must get its expected category (and,
when the test says so, its matched rule and actions); a failure carries the evaluation tree that shows why."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES, rule_id
from kare_rules.engine import Node, categorize, explain_row


@dataclass(frozen=True)
class Mismatch:
    """One expectation of a test that did not hold: `what` is category, matched_rule, actions,
    next_category or next_move_on (dates as YYYY-MM-DD, no move as 'none')."""

    what: str
    expected: str | tuple[str, ...] | None
    got: str | tuple[str, ...] | None


@dataclass(frozen=True)
class RuleTestResult:
    test: m.RuleTest
    got: str  # the category the account got
    reason: str
    matched_rule: str | None = None
    actions: tuple[str, ...] = ()
    mismatches: tuple[Mismatch, ...] = ()
    why: str = ""  # for a wrong category: why the expected one did not win, in words ...
    tree: tuple[Node, ...] = ()  # ... and the evaluation tree (as `kare explain` prints it) that shows it
    # The next move as the test judged it (YYYY-MM-DD, or 'none' for no move); computed, and so set, only
    # when the test expects one.
    next_category: str | None = None
    next_move_on: str | None = None

    @property
    def passed(self) -> bool:
        return not self.mismatches


def account_frame(rules: m.RuleSet, account: dict) -> pl.DataFrame:
    """One account as a typed frame; columns the test leaves out are null."""
    return accounts_frame(rules, [account])


def accounts_frame(rules: m.RuleSet, accounts: list[dict]) -> pl.DataFrame:
    """Test accounts as one typed frame, a row each in order; columns a test leaves out are null."""
    return pl.DataFrame(
        {c.name: [a.get(c.name) for a in accounts] for c in rules.inputs},
        schema={c.name: POLARS_TYPES[c.type] for c in rules.inputs},
    )


def previous_frame(rules: m.RuleSet, t: m.RuleTest) -> pl.DataFrame | None:
    """A test's `previous:` values as the engine reads them (account_id and the trend columns), or None
    when the test gives none: its trends are then null, as for a new account."""
    if not t.previous:
        return None
    given = dict(t.previous)
    key = dict(t.account).get(rules.key)
    return pl.DataFrame(
        {"account_id": [None if key is None else str(key)], **{c: [given.get(c)] for c in rules.trend_columns}},
        schema={"account_id": pl.String, **{c: pl.Float64 for c in rules.trend_columns}},
    )


def actions_on_first_run(rules: m.RuleSet, category: str, watches: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The action ids a run opens for a test account: it is seen for the first time, so its category's
    actions, those of a `new → category` transition, and those of the watches that hold for it (`watches`,
    ids as in the `watches` column)."""
    ids = [a.id for a in rules.categories[category].actions] if category in rules.categories else []
    for t in rules.transitions:
        if t.from_category == "new" and t.to_category == category:
            ids.extend(a.id for a in t.actions)
    held = set(watches)
    for w in rules.watches:
        if w.id in held:
            ids.extend(a.id for a in w.actions)
    return tuple(dict.fromkeys(ids))


def run_rule_tests(rules: m.RuleSet) -> list[RuleTestResult]:
    """Every embedded test's result, in file order. Accounts sharing an as_of are categorized together;
    only a failed test's account is evaluated again, node by node, for its explanation."""
    by_date: dict[tuple[dt.date, int], list[int]] = {}
    for i, t in enumerate(rules.tests):
        # A test with previous values runs alone: test accounts may share a key, and previous values are
        # matched by key.
        by_date.setdefault((t.as_of, i if t.previous else -1), []).append(i)
    got: dict[int, tuple[str, str | None, str]] = {}
    moves: dict[int, tuple[str | None, dt.date | None]] = {}
    watching: dict[int, tuple[str, ...]] = {}
    for (as_of, alone), indexes in by_date.items():
        frame = accounts_frame(rules, [dict(rules.tests[i].account) for i in indexes])
        previous = previous_frame(rules, rules.tests[alone]) if alone >= 0 else None
        # The early warning (next move, nearest changes) is computed when the rules have watches, whose
        # actions are among the account's, or when a test of this date expects a next move.
        edges = bool(rules.watches) or any(
            rules.tests[i].next_category is not None or rules.tests[i].next_move_on is not None for i in indexes
        )
        out = categorize(rules, frame, as_of, explain=True, previous=previous, edges=edges)
        for i, row in zip(indexes, out.iter_rows(named=True), strict=True):
            got[i] = (row["category"], row["matched_rule"], row["reason"])
            moves[i] = (row.get("next_category"), row.get("next_move_on"))
            watching[i] = tuple(row.get("watches") or ())
    return [_judge(rules, t, *got[i], next_move=moves[i], watches=watching[i]) for i, t in enumerate(rules.tests)]


NO_MOVE = "none"  # how a test says, and a failure shows, that the account does not move within the horizon


def _judge(
    rules: m.RuleSet,
    t: m.RuleTest,
    category: str,
    matched_rule: str | None,
    reason: str,
    next_move: tuple[str | None, dt.date | None] = (None, None),
    watches: tuple[str, ...] = (),
) -> RuleTestResult:
    actions = actions_on_first_run(rules, category, watches)
    mismatches = []
    if category != t.expect:
        mismatches.append(Mismatch("category", t.expect, category))
    if t.matched_rule is not None and matched_rule != t.matched_rule:
        mismatches.append(Mismatch("matched_rule", t.matched_rule, matched_rule))
    if t.actions is not None and sorted(actions) != sorted(t.actions):
        mismatches.append(Mismatch("actions", tuple(t.actions), actions))
    mismatches += _next_move_mismatches(t, *next_move)
    why, tree = "", ()
    if category != t.expect:
        why, tree = _why_not(rules, t, category)
    expects_move = t.next_category is not None or t.next_move_on is not None
    got_category = (next_move[0] or NO_MOVE) if expects_move else None
    got_day = (next_move[1].isoformat() if next_move[1] else NO_MOVE) if expects_move else None
    return RuleTestResult(
        t, category, reason, matched_rule, actions, tuple(mismatches), why, tree, got_category, got_day
    )


def _next_move_mismatches(t: m.RuleTest, next_category: str | None, next_move_on: dt.date | None) -> list[Mismatch]:
    """`next_category` / `next_move_on` expectations (the move with the data unchanged, default horizon)."""
    out = []
    got_category = next_category or NO_MOVE
    got_day = next_move_on.isoformat() if next_move_on else NO_MOVE
    if t.next_category is not None and t.next_category != got_category:
        out.append(Mismatch("next_category", t.next_category, got_category))
    if t.next_move_on is not None and t.next_move_on.isoformat() != got_day:
        out.append(Mismatch("next_move_on", t.next_move_on.isoformat(), got_day))
    return out


def _why_not(rules: m.RuleSet, t: m.RuleTest, got: str) -> tuple[str, tuple[Node, ...]]:
    """Why the account did not get the expected category, and the tree that shows it: the expected
    category's conditions when they failed, else the winner's (which came first in precedence, or held
    when `unassigned` was expected)."""
    frame = account_frame(rules, dict(t.account))
    nodes = {n.label: n for n in explain_row(rules, frame, t.as_of, previous_frame(rules, t))}
    if t.expect == m.UNASSIGNED:
        return f"{got} held, so the account is not {m.UNASSIGNED}", (nodes[got],)
    expected = nodes[t.expect]
    if not expected.value:
        return f"{t.expect} did not hold", (expected,)
    return (
        f"{t.expect} held, but {got} held too and comes first in precedence ({rule_id(got)})",
        (nodes[got],),
    )
