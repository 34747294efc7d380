"""Every operator on every column type, with nulls, through the public loader and engine; then precedence,
reasons, overlaps, counts and the explain tree, each checked against outcomes worked out by hand."""

from __future__ import annotations

import datetime as dt
import textwrap

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kare_rules import RuleFileError, categorize, categorize_lazy, category_counts
from kare_rules.engine import conform, explain_account, render_tree
from kare_rules.loader import load_rules_text
from kare_rules.model import ALL_CATEGORIES

AS_OF = dt.date(2026, 11, 1)

HEADER = """\
format: kare/v1
organization: operators
version: 1.0.0
inputs:
  id:      {type: string, key: true}
  plan:    {type: string, nullable: true}
  seats:   {type: integer, nullable: true}
  arr:     {type: float, nullable: true}
  active:  {type: boolean, nullable: true}
  churned: {type: date, nullable: true}
  used:    {type: integer, nullable: true}
derived:
  days_since_churn: {days_since: churned}
  utilization: {ratio: [used, seats]}
"""

# Derived values as of 2026-11-01, worked out by hand:
#   id  days_since_churn  utilization
#   a1  31                0.8   (8 / 10)
#   a2  365               null  (0 / 0: a zero denominator gives null, not inf or NaN)
#   a3  null              1.0
#   a4  null              null  (every input null)
#   a5  0                 null  (null numerator)
#   a6  -61               0.25  (churn date after as_of)
ACCOUNTS = pl.DataFrame(
    {
        "id": ["a1", "a2", "a3", "a4", "a5", "a6"],
        "plan": ["team", "free", "enterprise", None, "", "Team"],
        "seats": [10, 0, 100, None, 5, 20],
        "arr": [250000.0, 0.0, 100000.0, None, -1.5, 99999.99],
        "active": [True, False, True, None, False, None],
        "churned": [dt.date(2026, 10, 1), dt.date(2025, 11, 1), None, None, dt.date(2026, 11, 1), dt.date(2027, 1, 1)],
        "used": [8, 0, 100, None, None, 5],
    },
    schema={
        "id": pl.String,
        "plan": pl.String,
        "seats": pl.Int64,
        "arr": pl.Float64,
        "active": pl.Boolean,
        "churned": pl.Date,
        "used": pl.Int64,
    },
)
IDS = ACCOUNTS["id"].to_list()


def rules_with(body: str, traits: str = "", label: str = "operators.yaml"):
    """A rule file: the shared inputs, optional traits, then `body` (exit:, profiles:, precedence:)."""
    text = HEADER + (f"traits:\n{textwrap.indent(textwrap.dedent(traits), '  ')}" if traits else "")
    return load_rules_text(text + textwrap.dedent(body), label)


def keep_when(condition: str):
    return rules_with(f"profiles:\n  keep:\n    when: {condition}\n")


def categories(result: pl.DataFrame) -> dict[str, str]:
    return dict(zip(result["id"].to_list(), result["category"].to_list(), strict=True))


OPERATOR_CASES = [
    # ---- string: plan = team, free, enterprise, null, '', Team ----
    ("{plan: team}", {"a1"}),  # shorthand is equality; case-sensitive, so 'Team' does not match
    ("{plan: {eq: team}}", {"a1"}),
    ("{plan: {ne: team}}", {"a2", "a3", "a5", "a6"}),  # null plan: false
    ("{plan: {eq: ''}}", {"a5"}),  # the empty string is a value, not null
    ("{plan: {in: [team, free]}}", {"a1", "a2"}),
    ("{plan: {not_in: [team, free]}}", {"a3", "a5", "a6"}),  # null plan: false
    ("{plan: {is_null: true}}", {"a4"}),
    ("{plan: {is_null: false}}", {"a1", "a2", "a3", "a5", "a6"}),
    # ---- integer: seats = 10, 0, 100, null, 5, 20 ----
    ("{seats: 10}", {"a1"}),
    ("{seats: {eq: 10}}", {"a1"}),
    ("{seats: {ne: 10}}", {"a2", "a3", "a5", "a6"}),
    ("{seats: {gt: 10}}", {"a3", "a6"}),
    ("{seats: {gte: 10}}", {"a1", "a3", "a6"}),
    ("{seats: {gte: 10.0}}", {"a1", "a3", "a6"}),  # a whole float literal on an integer column
    ("{seats: {lt: 10}}", {"a2", "a5"}),
    ("{seats: {lte: 10}}", {"a1", "a2", "a5"}),
    ("{seats: {between: [5, 20]}}", {"a1", "a5", "a6"}),  # both ends included
    ("{seats: {in: [0, 100]}}", {"a2", "a3"}),
    ("{seats: {not_in: [0, 100]}}", {"a1", "a5", "a6"}),
    ("{seats: {is_null: true}}", {"a4"}),
    ("{seats: {is_null: false}}", {"a1", "a2", "a3", "a5", "a6"}),
    # ---- float: arr = 250000.0, 0.0, 100000.0, null, -1.5, 99999.99 ----
    ("{arr: 0}", {"a2"}),
    ("{arr: {eq: 250000}}", {"a1"}),  # an integer literal on a float column
    ("{arr: {ne: 0}}", {"a1", "a3", "a5", "a6"}),
    ("{arr: {gt: 100000}}", {"a1"}),
    ("{arr: {gte: 100000}}", {"a1", "a3"}),
    ("{arr: {lt: 0}}", {"a5"}),
    ("{arr: {lte: 0.0}}", {"a2", "a5"}),
    ("{arr: {between: [-1.5, 99999.99]}}", {"a2", "a5", "a6"}),
    ("{arr: {in: [0, 250000.0]}}", {"a1", "a2"}),
    ("{arr: {not_in: [0, 250000.0]}}", {"a3", "a5", "a6"}),
    ("{arr: {is_null: true}}", {"a4"}),
    ("{arr: {is_null: false}}", {"a1", "a2", "a3", "a5", "a6"}),
    # ---- boolean: active = true, false, true, null, false, null ----
    ("{active: true}", {"a1", "a3"}),
    ("{active: false}", {"a2", "a5"}),
    ("{active: {eq: false}}", {"a2", "a5"}),
    ("{active: {ne: true}}", {"a2", "a5"}),  # null is not "not true": a predicate on null is false
    ("{active: {in: [true]}}", {"a1", "a3"}),
    ("{active: {not_in: [true]}}", {"a2", "a5"}),
    ("{active: {is_null: true}}", {"a4", "a6"}),
    ("{active: {is_null: false}}", {"a1", "a2", "a3", "a5"}),
    # ---- date: churned = 2026-10-01, 2025-11-01, null, null, 2026-11-01, 2027-01-01 ----
    ("{churned: 2026-10-01}", {"a1"}),  # a YAML date
    ("{churned: {eq: '2026-10-01'}}", {"a1"}),  # a quoted date
    ("{churned: {ne: 2026-10-01}}", {"a2", "a5", "a6"}),
    ("{churned: {gt: 2026-10-01}}", {"a5", "a6"}),
    ("{churned: {gte: 2026-10-01}}", {"a1", "a5", "a6"}),
    ("{churned: {lt: 2026-10-01}}", {"a2"}),
    ("{churned: {lte: 2026-10-01}}", {"a1", "a2"}),
    ("{churned: {between: [2025-11-01, 2026-11-01]}}", {"a1", "a2", "a5"}),
    ("{churned: {in: [2025-11-01, 2027-01-01]}}", {"a2", "a6"}),
    ("{churned: {not_in: [2025-11-01, 2027-01-01]}}", {"a1", "a5"}),
    ("{churned: {is_null: true}}", {"a3", "a4"}),
    ("{churned: {is_null: false}}", {"a1", "a2", "a5", "a6"}),
    # ---- derived days_since: 31, 365, null, null, 0, -61 ----
    ("{days_since_churn: 0}", {"a5"}),
    ("{days_since_churn: {ne: 0}}", {"a1", "a2", "a6"}),
    ("{days_since_churn: {gt: 365}}", set()),
    ("{days_since_churn: {gte: 31}}", {"a1", "a2"}),
    ("{days_since_churn: {lt: 0}}", {"a6"}),
    ("{days_since_churn: {lte: 31}}", {"a1", "a5", "a6"}),
    ("{days_since_churn: {between: [0, 365]}}", {"a1", "a2", "a5"}),
    ("{days_since_churn: {in: [31, 365]}}", {"a1", "a2"}),
    ("{days_since_churn: {not_in: [31, 365]}}", {"a5", "a6"}),
    ("{days_since_churn: {is_null: true}}", {"a3", "a4"}),
    # ---- derived ratio: 0.8, null, 1.0, null, null, 0.25 ----
    ("{utilization: 1}", {"a3"}),
    ("{utilization: {ne: 1}}", {"a1", "a6"}),
    ("{utilization: {gt: 0.8}}", {"a3"}),
    ("{utilization: {gte: 0.8}}", {"a1", "a3"}),
    ("{utilization: {lt: 0.8}}", {"a6"}),
    ("{utilization: {lte: 0.25}}", {"a6"}),
    ("{utilization: {between: [0.25, 0.8]}}", {"a1", "a6"}),
    ("{utilization: {in: [0.25, 1.0]}}", {"a3", "a6"}),
    ("{utilization: {not_in: [0.25, 1.0]}}", {"a1"}),
    ("{utilization: {is_null: true}}", {"a2", "a4", "a5"}),
]


@pytest.mark.parametrize(("condition", "matching"), OPERATOR_CASES, ids=[c for c, _ in OPERATOR_CASES])
def test_operator_matches_exactly_the_accounts_worked_out_by_hand(condition, matching):
    result = categorize(keep_when(condition), ACCOUNTS, AS_OF)
    assert categories(result) == {i: "keep" if i in matching else "unassigned" for i in IDS}


# DESIGN §3: "a predicate on a null value is false (except is_null), and all/any/not are plain
# boolean". So `not` of a predicate on a null is true, and a null never stays "unknown" through not.
NULL_CASES = [
    ("{not: {plan: {eq: team}}}", {"a2", "a3", "a4", "a5", "a6"}),
    ("{not: {plan: {ne: team}}}", {"a1", "a4"}),
    ("{not: {plan: {not_in: [team, free]}}}", {"a1", "a2", "a4"}),
    ("{not: {seats: {gt: 10}}}", {"a1", "a2", "a4", "a5"}),
    ("{not: {active: true}}", {"a2", "a4", "a5", "a6"}),
    ("{not: {churned: {between: [2025-11-01, 2026-11-01]}}}", {"a3", "a4", "a6"}),
    ("{not: {days_since_churn: {lte: 365}}}", {"a3", "a4"}),
    ("{not: {utilization: {gte: 0.8}}}", {"a2", "a4", "a5", "a6"}),
    ("{not: {not: {seats: {gt: 10}}}}", {"a3", "a6"}),
    # A tautology on a non-null value is false on a null, so its negation holds exactly on nulls.
    ("{any: [{plan: {eq: team}}, {plan: {ne: team}}]}", {"a1", "a2", "a3", "a5", "a6"}),
    ("{not: {any: [{plan: {eq: team}}, {plan: {ne: team}}]}}", {"a4"}),
    # Three-valued logic would make not(any(null, null)) unknown; two-valued makes it true.
    ("{not: {any: [{seats: {gt: 1000}}, {arr: {gt: 1000000}}]}}", set(IDS)),
    ("{not: {all: [{seats: {gte: 0}}, {arr: {gte: 0}}]}}", {"a4", "a5"}),
    ("{all: [{not: {seats: {gt: 10}}}, {not: {arr: {gt: 0}}}]}", {"a2", "a4", "a5"}),
    ("{any: [{seats: {gt: 1000}}, {plan: {is_null: true}}]}", {"a4"}),
    ("{not: {all: [{plan: {is_null: false}}, {seats: {ne: 0}}]}}", {"a2", "a4"}),
]


@pytest.mark.parametrize(("condition", "matching"), NULL_CASES, ids=[c for c, _ in NULL_CASES])
def test_null_is_false_in_a_predicate_and_not_makes_it_true(condition, matching):
    result = categorize(keep_when(condition), ACCOUNTS, AS_OF)
    assert categories(result) == {i: "keep" if i in matching else "unassigned" for i in IDS}


def test_a_trait_means_the_same_as_its_condition_written_inline():
    inline = categorize(keep_when("{not: {all: [{active: true}, {arr: {gte: 100000}}]}}"), ACCOUNTS, AS_OF)
    with_traits = categorize(
        rules_with(
            "profiles:\n  keep:\n    when: {not: big_client}\n",
            traits="paying: {active: true}\nbig_client: {all: [paying, {arr: {gte: 100000}}]}\n",
        ),
        ACCOUNTS,
        AS_OF,
    )
    expected = {i: "unassigned" if i in ("a1", "a3") else "keep" for i in IDS}
    assert categories(inline) == categories(with_traits) == expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{seats: {gt: 10000000000000000000}}", "out of range"),
        ("{seats: {in: [1, -9223372036854775809]}}", "out of range"),
        ("{seats: {lt: .inf}}", "whole number"),
        ("{seats: {between: [0, .nan]}}", "whole number"),
        ("{seats: {gte: 2.5}}", "whole number"),
        ("{arr: {gt: 1" + "0" * 400 + "}}", "too large"),
        ("{arr: {gte: .nan}}", "'arr' is a float column; .nan is not a finite number: write a number, or"),
        ("{arr: {lt: .inf}}", ".inf is not a finite number"),
        ("{arr: {in: [1.5, -.inf]}}", "-.inf is not a finite number"),
    ],
)
def test_a_literal_its_column_type_cannot_hold_is_a_rule_file_error_not_a_crash(condition, message):
    with pytest.raises(RuleFileError) as caught:
        keep_when(condition)
    (problem,) = caught.value.problems
    assert problem.path == "operators.yaml"
    assert problem.line == HEADER.count("\n") + 3
    assert message in problem.message


def test_the_int64_extremes_are_valid_integer_literals():
    frame = ACCOUNTS.with_columns(pl.Series("seats", [2**63 - 1, -(2**63), None, None, 0, 1]))
    result = categorize(keep_when("{seats: {in: [9223372036854775807, -9223372036854775808]}}"), frame, AS_OF)
    assert categories(result) == {i: "keep" if i in ("a1", "a2") else "unassigned" for i in IDS}


# ---- precedence, matched rule, overlaps, reasons, counts ------------------------------------------

TRAITS = """\
paying: {active: true}
big: {arr: {gte: 100000}}
"""
PROFILES = """\
exit:
  when: {arr: {lt: 0}}
profiles:
  expand:
    when: {all: [paying, big]}
  keep:
    when: paying
  recapture:
    when: {all: [{not: paying}, {churned: {is_null: false}}]}
  attain:
    when: {plan: {is_null: true}}
"""
# a7 matches nothing: not paying, no churn date, a plan.
A7 = pl.DataFrame(
    {"id": ["a7"], "plan": ["team"], "seats": [1], "arr": [50.0], "active": [False], "churned": [None], "used": [1]},
    schema=ACCOUNTS.schema,
)
SEVEN = pl.concat([ACCOUNTS, A7])

# Which categories' conditions hold, per account, in the default precedence order:
#   a1: expand, keep    a2: recapture    a3: expand, keep    a4: attain (not paying, but no churn date)
#   a5: exit, recapture a6: recapture (active null is not paying)    a7: nothing
EXPECTED_DEFAULT = {
    "a1": ("expand", "profiles.expand", ["keep"]),
    "a2": ("recapture", "profiles.recapture", []),
    "a3": ("expand", "profiles.expand", ["keep"]),
    "a4": ("attain", "profiles.attain", []),
    "a5": ("exit", "exit", ["recapture"]),
    "a6": ("recapture", "profiles.recapture", []),
    "a7": ("unassigned", None, []),
}


def outcome(result: pl.DataFrame) -> dict[str, tuple]:
    return {r["id"]: (r["category"], r["matched_rule"], r["overlaps"]) for r in result.iter_rows(named=True)}


@pytest.fixture(scope="module")
def profiled():
    return rules_with(PROFILES, traits=TRAITS)


def test_first_category_in_default_precedence_wins_and_the_others_are_overlaps(profiled):
    assert profiled.precedence == ("exit", "expand", "keep", "recapture", "attain")
    result = categorize(profiled, SEVEN, AS_OF)
    assert result.columns == ["id", "category", "matched_rule", "reason", "overlaps"]
    assert outcome(result) == EXPECTED_DEFAULT


def test_a_different_precedence_changes_the_winner_and_lists_overlaps_in_that_order():
    # (keep before expand is refused: every expand account is a keep account, so expand could never win)
    rules = rules_with("precedence: [attain, recapture, expand, keep, exit]\n" + PROFILES, traits=TRAITS)
    assert outcome(categorize(rules, SEVEN, AS_OF)) == {
        "a1": ("expand", "profiles.expand", ["keep"]),
        "a2": ("recapture", "profiles.recapture", []),
        "a3": ("expand", "profiles.expand", ["keep"]),
        "a4": ("attain", "profiles.attain", []),
        "a5": ("recapture", "profiles.recapture", ["exit"]),
        "a6": ("recapture", "profiles.recapture", []),
        "a7": ("unassigned", None, []),
    }


def test_overlaps_list_every_other_category_that_held():
    rules = rules_with(
        """\
        precedence: [keep, attain, expand, recapture, exit]
        exit: {when: {seats: {gte: 10}}}
        profiles:
          expand: {when: {seats: {gte: 20}}}
          keep: {when: {seats: {gte: 100}}}
          recapture: {when: {seats: {gte: 0}}}
          attain: {when: {seats: {gte: 5}}}
        """
    )
    assert outcome(categorize(rules, ACCOUNTS, AS_OF)) == {
        "a1": ("attain", "profiles.attain", ["recapture", "exit"]),  # seats 10
        "a2": ("recapture", "profiles.recapture", []),  # seats 0
        "a3": ("keep", "profiles.keep", ["attain", "expand", "recapture", "exit"]),  # seats 100
        "a4": ("unassigned", None, []),  # seats null
        "a5": ("attain", "profiles.attain", ["recapture"]),  # seats 5
        "a6": ("attain", "profiles.attain", ["expand", "recapture", "exit"]),  # seats 20
    }


def test_no_match_is_unassigned_with_no_rule_and_a_plain_reason():
    result = categorize(keep_when("{seats: {gt: 1000}}"), ACCOUNTS, AS_OF)
    assert result["category"].to_list() == ["unassigned"] * 6
    assert result["matched_rule"].to_list() == [None] * 6
    assert result["reason"].to_list() == ["no category's conditions held"] * 6
    assert result["overlaps"].to_list() == [[]] * 6


def test_reason_names_the_traits_and_predicates_that_held_with_their_values(profiled):
    reasons = dict(categorize(profiled, SEVEN, AS_OF).select("id", "reason").iter_rows())
    assert reasons == {
        "a1": "expand: paying (active = true) and big (arr ≥ 100000 [250000.0])",
        "a2": "recapture: not (paying (active = true [false])) and churned is not null",
        "a3": "expand: paying (active = true) and big (arr ≥ 100000 [100000.0])",
        "a4": "attain: plan is null",
        "a5": "exit: arr < 0 [-1.5]",
        "a6": "recapture: not (paying (active = true [null])) and churned is not null",
        "a7": "no category's conditions held",
    }


def test_reason_for_any_names_the_first_alternative_that_held():
    rules = keep_when("{any: [{seats: {gt: 50}}, {plan: {ne: free}}, {churned: {lte: 2026-01-01}}]}")
    reasons = dict(categorize(rules, ACCOUNTS, AS_OF).select("id", "reason").iter_rows())
    assert reasons == {
        "a1": "keep: plan ≠ 'free' ['team']",
        "a2": "keep: churned ≤ 2026-01-01 [2025-11-01]",
        "a3": "keep: seats > 50 [100]",
        "a4": "no category's conditions held",
        "a5": "keep: plan ≠ 'free' ['']",
        "a6": "keep: plan ≠ 'free' ['Team']",
    }


def test_reason_shows_derived_values():
    rules = keep_when("{all: [{days_since_churn: {between: [0, 365]}}, {utilization: {gte: 0.5}}]}")
    reasons = dict(categorize(rules, ACCOUNTS, AS_OF).select("id", "reason").iter_rows())
    assert reasons["a1"] == "keep: days_since_churn between 0 and 365 [31] and utilization ≥ 0.5 [0.8]"
    assert {i for i, r in reasons.items() if r.startswith("keep: ")} == {"a1"}


def test_category_counts_lists_every_category_in_order_with_overlaps(profiled):
    counts = category_counts(categorize(profiled, SEVEN, AS_OF))
    assert counts.rows() == [
        ("exit", 1, 1),
        ("expand", 2, 2),
        ("keep", 0, 0),
        ("recapture", 2, 0),
        ("attain", 1, 0),
        ("unassigned", 1, 0),
    ]
    assert counts.columns == ["category", "accounts", "overlaps"]
    plain = category_counts(categorize(profiled, SEVEN, AS_OF, explain=False))
    assert plain.columns == ["category", "accounts"]
    assert plain.rows() == [(c, n) for c, n, _ in counts.rows()]
    assert plain["category"].to_list() == list(ALL_CATEGORIES)


# ---- frames in, frames out ------------------------------------------------------------------------


def test_lazy_input_gives_the_same_result_as_eager_input(profiled):
    eager = categorize(profiled, SEVEN, AS_OF)
    assert_frame_equal(categorize(profiled, SEVEN.lazy(), AS_OF), eager)
    assert_frame_equal(categorize_lazy(profiled, SEVEN.lazy(), AS_OF).collect(), eager)
    assert_frame_equal(categorize(profiled, SEVEN, "2026-11-01"), eager)
    assert outcome(eager) == EXPECTED_DEFAULT


def test_text_input_is_conformed_to_the_declared_types_and_categorized_the_same(profiled):
    as_text = SEVEN.with_columns(pl.exclude("id").cast(pl.String))
    assert conform(as_text, profiled).collect_schema() == SEVEN.schema
    assert_frame_equal(categorize(profiled, as_text, AS_OF), categorize(profiled, SEVEN, AS_OF))


def test_output_keeps_the_input_row_order(profiled):
    order = ["a6", "a2", "a7", "a4", "a1", "a5", "a3"]
    shuffled = SEVEN.with_columns(pl.col("id").replace_strict({i: n for n, i in enumerate(order)}).alias("_o"))
    shuffled = shuffled.sort("_o").drop("_o")
    result = categorize(profiled, shuffled, AS_OF)
    assert result["id"].to_list() == order
    assert result["category"].to_list() == [EXPECTED_DEFAULT[i][0] for i in order]


def test_row_order_and_reasons_stay_aligned_on_a_larger_interleaved_frame(profiled):
    # 7 000 rows cycling through the seven accounts, so every category's reasons interleave.
    copies = 1000
    big = pl.concat([SEVEN] * copies).with_columns(
        (pl.col("id") + "-" + (pl.int_range(pl.len()) // 7).cast(pl.String)).alias("id")
    )
    result = categorize(profiled, big, AS_OF)
    assert result["id"].to_list() == big["id"].to_list()
    single = {r[0]: r[1:] for r in categorize(profiled, SEVEN, AS_OF).rows()}
    assert [single[i.split("-")[0]] for i in result["id"]] == [r[1:] for r in result.rows()]
    assert result["category"].to_list() == [EXPECTED_DEFAULT[i][0] for i in SEVEN["id"]] * copies


def test_an_empty_frame_gives_an_empty_result_with_the_same_columns(profiled):
    result = categorize(profiled, SEVEN.clear(), AS_OF)
    assert result.height == 0
    assert result.columns == ["id", "category", "matched_rule", "reason", "overlaps"]


# ---- the evaluation tree of one account -----------------------------------------------------------


def test_explain_account_shows_every_categorys_tree_with_values(profiled):
    nodes = explain_account(profiled, SEVEN, AS_OF, "a6")
    assert [(n.label, n.value) for n in nodes] == [
        ("exit", False),
        ("expand", False),
        ("keep", False),
        ("recapture", True),
        ("attain", False),
    ]
    assert render_tree(nodes) == [
        "✗ exit",
        "└─ ✗ arr < 0   [arr = 99999.99]",
        "✗ expand",
        "└─ ✗ all of",
        "   ├─ ✗ trait paying",
        "   │  └─ ✗ active = true   [active = null]",
        "   └─ ✗ trait big",
        "      └─ ✗ arr ≥ 100000   [arr = 99999.99]",
        "✗ keep",
        "└─ ✗ trait paying",
        "   └─ ✗ active = true   [active = null]",
        "✓ recapture",
        "└─ ✓ all of",
        "   ├─ ✓ not",
        "   │  └─ ✗ trait paying",
        "   │     └─ ✗ active = true   [active = null]",
        "   └─ ✓ churned is not null   [churned = 2027-01-01]",
        "✗ attain",
        "└─ ✗ plan is null   [plan = 'Team']",
    ]


def test_explain_account_shows_derived_values_and_unknown_accounts_are_data_errors():
    from kare_rules import DataError

    rules = keep_when("{all: [{days_since_churn: {lt: 0}}, {utilization: {is_null: false}}]}")
    assert render_tree(explain_account(rules, ACCOUNTS, AS_OF, "a6")) == [
        "✓ keep",
        "└─ ✓ all of",
        "   ├─ ✓ days_since_churn < 0   [days_since_churn = -61]",
        "   └─ ✓ utilization is not null   [utilization = 0.25]",
    ]
    with pytest.raises(DataError, match="'zz' is not in the input"):
        explain_account(rules, ACCOUNTS, AS_OF, "zz")
