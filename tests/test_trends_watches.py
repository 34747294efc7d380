"""Trends (change_of, pct_change_of) and watches in the rule language: located errors for every mistake,
the previous run's values in embedded tests, and the same categories from Polars and the compiled SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from kare_rules.loader import check_rules, load_rules

# A valid rule file with two trends and two watches; each case below changes one snippet of it.
VALID = """\
format: kare/v1
organization: acme
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  arr: {type: float, nullable: true}
  seats: {type: integer}
  plan: {type: string}
  is_customer: {type: boolean}
  last_order: {type: date, nullable: true}
derived:
  days_since_order: {days_since: last_order}
  arr_change: {change_of: arr}
  arr_pct_change: {pct_change_of: arr}
traits:
  paying: {is_customer: true}
  shrinking: {arr_pct_change: {lte: -0.2}}
profiles:
  expand:
    when: {all: [paying, {arr: {gte: 100000}}, {not: shrinking}]}
    actions: [{id: qbr, title: Quarterly review, due_in_days: 30}]
  keep:
    when: {all: [paying, {days_since_order: {lte: 90}}]}
    actions: [{id: renew, title: Confirm renewal, due_in_days: 30}]
  recapture:
    when: {all: [{not: paying}, {arr_change: {lt: 0}}]}
watch:
  - id: keep-lapsing
    from: keep
    to: recapture
    within_days: 30
    actions: [{id: save-call, title: Call before they lapse, due_in_days: 7, priority: high}]
  - id: expand-slipping
    from: expand
    within: {arr: 10%, days_since_order: 14}
    actions: [{id: spend-review, title: Review the drop in spend, due_in_days: 14}]
tests:
  - name: a big account that shrank by a third is keep
    account: {account_id: T1, is_customer: true, arr: 100000, seats: 5, plan: pro, last_order: 2026-10-01}
    previous: {arr: 150000}
    as_of: 2026-11-01
    expect: keep
  - name: without previous values the same account is expand
    account: {account_id: T1, is_customer: true, arr: 100000, seats: 5, plan: pro, last_order: 2026-10-01}
    as_of: 2026-11-01
    expect: expand
"""
SHOWN = "rules/acme/kare.yaml"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # messages name files as a person typed them


def write_rules(root: Path, text: str) -> Path:
    path = root / "rules" / "acme" / "kare.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def mutate(*replacements: tuple[str, str]) -> str:
    text = VALID
    for old, new in replacements:
        assert text.count(old) == 1, f"the snippet {old!r} must occur exactly once in VALID"
        text = text.replace(old, new)
    return text


def at(text: str, marker: str) -> str:
    pos = text.index(marker)
    return f"{text.count(chr(10), 0, pos) + 1}:{pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def test_the_base_file_is_valid_and_holds_its_trends_and_watches(tmp_path):
    rules = load_rules(write_rules(tmp_path, VALID))
    assert rules.trend_columns == ("arr",)
    assert [(d.name, d.kind) for d in rules.derived if d.kind in ("change_of", "pct_change_of")] == [
        ("arr_change", "change_of"),
        ("arr_pct_change", "pct_change_of"),
    ]
    lapsing, slipping = rules.watches
    assert (lapsing.id, lapsing.from_category, lapsing.to_category, lapsing.within_days) == (
        "keep-lapsing", "keep", "recapture", 30,
    )  # fmt: skip
    assert [a.id for a in lapsing.actions] == ["save-call"]
    assert slipping.to_category is None and slipping.within_days is None
    assert [(w.column, w.amount, w.relative) for w in slipping.within] == [
        ("arr", 0.1, True),
        ("days_since_order", 14.0, False),
    ]
    assert rules.tests[0].previous == (("arr", 150000.0),)
    assert rules.tests[1].previous == ()


CASES = [
    pytest.param(
        [("{change_of: arr}", "{change_of: plan}")],
        "plan}",
        ["change_of needs a number column (integer or float); 'plan' is string", "e.g. 'arr_change: {change_of: arr}'"],
        id="trend-of-a-text-column",
    ),
    pytest.param(
        [("{pct_change_of: arr}", "{pct_change_of: last_order}")],
        "last_order}\ntraits",
        ["pct_change_of needs a number column (integer or float); 'last_order' is date"],
        id="trend-of-a-date-column",
    ),
    pytest.param(
        [("{change_of: arr}", "{change_of: days_since_order}")],
        "days_since_order}",
        ["change_of reads an input column, and 'days_since_order' is derived", "write the number input"],
        id="trend-of-a-derived-column",
    ),
    pytest.param(
        [("{change_of: arr}", "{change_of: ar}")],
        "ar}",
        ["unknown input column 'ar'; did you mean 'arr'?"],
        id="trend-of-an-unknown-column",
    ),
    pytest.param(
        [("    from: expand\n", "    from: attain\n")],
        "attain",
        ["watch from 'attain', a category these rules do not define", "watch one of: expand, keep, recapture"],
        id="watch-from-undefined-category",
    ),
    pytest.param(
        [("    from: expand\n", "    from: expnd\n")],
        "expnd",
        ["'expnd' is not allowed; did you mean 'expand'?"],
        id="watch-from-unknown-category",
    ),
    pytest.param(
        [("    to: recapture\n", "    to: attain\n")],
        "attain",
        ["watch to 'attain', a category these rules do not define"],
        id="watch-to-undefined-category",
    ),
    pytest.param(
        [("    to: recapture\n", "    to: keep\n")],
        "keep\n    within_days",
        ["a watch from 'keep' to 'keep' watches no move", "leave 'to' out for any move"],
        id="watch-from-equals-to",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {arr: -5}")],
        "-5",
        ["within -5 for 'arr': a distance is never negative", "such as {arr: 14}", "such as {arr: 10%}"],
        id="within-negative-amount",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {arr: -10%}")],
        "-10%",
        ["'-10%' is not an amount", "the nearest change up or down counts"],
        id="within-negative-share",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {arr: 10 percent}")],
        "10 percent",
        ["'10 percent' is not an amount; write a positive amount such as {arr: 14}"],
        id="within-percent-syntax",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {arr: 0}")],
        "0}\n    actions",
        ["within 0 for 'arr': a move needs some change, so 0 never holds"],
        id="within-zero",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {ar: 5}")],
        "ar: 5",
        ["unknown column 'ar' in within; did you mean 'arr'?"],
        id="within-unknown-column",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {plan: 5}")],
        "plan: 5",
        ["'plan' is a string column; within measures a change of a number", "a string value has no distance"],
        id="within-text-column",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {last_order: 5}")],
        "last_order: 5",
        ["'last_order' is a date column", "watch the days it counts instead, e.g. {days_since_order: 14}"],
        id="within-date-column",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {is_customer: 5}")],
        "is_customer: 5",
        [
            "'is_customer' is a boolean column",
            "a boolean value has no distance to measure; watch a number column, or the move with within_days",
        ],
        id="within-boolean-column",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {seats: 5}")],
        "seats: 5",
        ["no condition compares 'seats' with gt, gte, lt, lte or between", "the watch could never hold"],
        id="within-column-without-a-threshold",
    ),
    pytest.param(
        # Without a day count in any condition no account has a next move, so within_days alone never holds.
        [
            ("{days_since_order: {lte: 90}}", "{seats: {gte: 10}}"),
            ("within: {arr: 10%, days_since_order: 14}", "within: {arr: 10%}"),
        ],
        "within_days: 30",
        [
            "no condition uses a day count (days_since or days_until)",
            "a watch on within_days alone could never hold",
            "watch the nearest change instead, e.g. within: {arr: 10%}",
        ],
        id="within-days-without-a-day-count-in-any-condition",
    ),
    pytest.param(
        # expand's condition is broken, so what it compares is unknown: not also "no condition compares
        # 'arr' ... the watch could never hold"
        [("{arr: {gte: 100000}}", "{arr: {between: [1]}}")],
        "[1]}}",
        ["'between' takes [low, high] (two values, both included); got 1"],
        id="a-broken-condition-is-not-also-a-watch-on-an-uncompared-column",
    ),
    pytest.param(
        # a derived value whose spec the schema reports is declared: its uses are not "unknown column"
        [("days_since_order: {days_since: last_order}", "days_since_order: {days_sinse: last_order}")],
        "days_sinse",
        ["unknown key 'days_sinse' in derived.days_since_order; did you mean 'days_since'?"],
        id="a-malformed-derived-value-is-not-also-an-unknown-column",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: {}")],
        "{}",
        ["within is a mapping of column: amount"],
        id="within-empty",
    ),
    pytest.param(
        [("    within_days: 30\n", "")],
        "id: keep-lapsing",
        ["a watch says how close a move must be: add 'within_days: 30'", "'within: {column: amount}'"],
        id="watch-without-within-or-within-days",
    ),
    pytest.param(
        [("within_days: 30", "within_days: 400")],
        "400",
        ["within_days must be at most 366, not 400"],
        id="within-days-past-the-horizon",
    ),
    pytest.param(
        [("within_days: 30", "within_days: 0")],
        "0\n    actions",
        ["within_days must be at least 1, not 0"],
        id="within-days-zero",
    ),
    pytest.param(
        [("  - id: expand-slipping", "  - id: keep-lapsing")],
        "keep-lapsing\n    from: expand",
        ["a second watch 'keep-lapsing' (first is item 1); give each watch its own id"],
        id="duplicate-watch-id",
    ),
    pytest.param(
        [("{id: spend-review,", "{id: qbr,")],
        "qbr, title: Review",
        ["action id 'qbr' is already an action of expand", "e.g. 'qbr-expand-slipping'"],
        id="watch-action-id-clashes-with-its-category",
    ),
    pytest.param(
        [
            (
                "watch:\n",
                "transitions:\n  - {from: new, to: keep, actions: [{id: save-call, title: Hi, due_in_days: 5}]}\n"
                "watch:\n",
            ),
        ],
        "save-call, title: Call",
        ["action id 'save-call' is already an action of the transition new → keep", "e.g. 'save-call-keep-lapsing'"],
        id="watch-action-id-clashes-with-a-transition-into-its-category",
    ),
    pytest.param(
        [("    from: expand\n", "    from: keep\n"), ("{id: spend-review,", "{id: save-call,")],
        "save-call, title: Review",
        ["action id 'save-call' is already an action of watch 'keep-lapsing'", "e.g. 'save-call-expand-slipping'"],
        id="watch-action-id-clashes-with-another-watch-from-its-category",
    ),
    pytest.param(
        [("    within_days: 30\n", "    within_days: 30\n    colour: red\n")],
        "colour",
        ["unknown key 'colour' in watch.0"],
        id="watch-unknown-key",
    ),
    pytest.param(
        [("    from: expand\n", "    from: [expand]\n")],
        "[expand]",
        ["watch.1.from: ['expand'] is not allowed; write one of: exit, expand, keep, recapture, attain, unassigned"],
        id="watch-from-a-list-is-reported-not-a-crash",
    ),
    pytest.param(
        [("within: {arr: 10%, days_since_order: 14}", "within: [arr]")],
        "[arr]",
        ["within is a mapping of column: amount, e.g. {arr: 5000} or {arr: 10%}"],
        id="within-a-list",
    ),
    pytest.param(
        [("previous: {arr: 150000}", "previous: {seats: 3}")],
        "seats: 3",
        ["'seats' has no previous value a trend reads", "change_of and pct_change_of: arr"],
        id="test-previous-column-no-trend-reads",
    ),
    pytest.param(
        [("previous: {arr: 150000}", "previous: {arr: lots}")],
        "lots",
        ["'arr' is a float column; write a number, not 'lots'"],
        id="test-previous-value-of-wrong-type",
    ),
    pytest.param(
        [
            (
                "{account_id: T1, is_customer: true, arr: 100000, seats: 5, plan: pro, last_order: 2026-10-01}\n"
                "    previous",
                "{is_customer: true, arr: 100000, seats: 5, plan: pro, last_order: 2026-10-01}\n    previous",
            )
        ],
        "{arr: 150000}",
        ["a test with previous values needs the account's key", "add 'account_id: T1'"],
        id="test-previous-without-a-key",
    ),
]


@pytest.mark.parametrize(("replacements", "marker", "fragments"), CASES)
def test_each_mistake_is_one_located_line_with_a_fix(tmp_path, replacements, marker, fragments):
    text = mutate(*replacements)
    rules, problems = check_rules(write_rules(tmp_path, text))
    assert rules is None
    lines = [str(p) for p in problems]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{SHOWN}:{at(text, marker)}: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("wrong", ["ar", "days_since_order", "plan"])
def test_a_trend_on_a_wrong_column_is_reported_once_not_again_in_each_test_s_previous_values(tmp_path, wrong):
    # The test's `previous: {arr: ...}` is right once the trend is: it was called 'no previous value a trend
    # reads', listing the wrong column ('did you mean ar?') as the one to give.
    text = mutate(
        ("{change_of: arr}", f"{{change_of: {wrong}}}"), ("{pct_change_of: arr}", f"{{pct_change_of: {wrong}}}")
    )
    rules, problems = check_rules(write_rules(tmp_path, text))
    lines = [str(p) for p in problems]
    assert rules is None and len(lines) == 2, lines
    where = [at(text, f"{{change_of: {wrong}"), at(text, f"{{pct_change_of: {wrong}")]
    assert [line.split(": ", 1)[0].rsplit(":", 1)[0] for line in lines] == [f"{SHOWN}:{w.split(':')[0]}" for w in where]
    assert not any("previous" in line for line in lines), lines


def test_a_watch_with_within_days_and_within_needs_no_day_count(tmp_path):
    # Either part is enough, so the nearest change on seats can still make it hold.
    text = mutate(
        ("{days_since_order: {lte: 90}}", "{seats: {gte: 10}}"),
        ("within: {arr: 10%, days_since_order: 14}", "within: {arr: 10%}"),
        ("within_days: 30\n", "within_days: 30\n    within: {seats: 2}\n"),
    )
    rules, problems = check_rules(write_rules(tmp_path, text))
    assert [str(p) for p in problems] == []
    assert rules.watches[0].within_days == 30


def test_a_test_with_previous_values_and_no_key_is_told_an_id_of_the_key_type(tmp_path):
    text = TREND_RULES + (
        "tests:\n  - {name: t, account: {arr: 10}, previous: {arr: 5}, as_of: 2026-11-01, expect: keep}\n"
    )
    path = tmp_path / "rules" / "acme" / "kare.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    rules, problems = check_rules(path)
    assert rules is None
    assert [p.message.split("; ")[-1] for p in problems] == ["add 'id: 1' (any id) to the account"]


@pytest.mark.parametrize(
    ("within", "editor_flags_it"),
    [("{arr: 10%}", False), ("{arr: ' 10 %'}", False), ("{arr: 5000}", False), ("{arr: 0.5}", False),
     ("{arr: 10 percent}", True), ("{arr: -5}", True), ("{arr: 0}", True), ("{arr: true}", True), ("{}", True),
     ("{Arr: 5}", True)],
)  # fmt: skip
def test_the_json_schema_alone_flags_a_malformed_within_as_an_editor_shows_it(within, editor_flags_it):
    # Editors know only the JSON Schema: `within` was any mapping there, so `{arr: 10 percent}` or `{}`
    # got no squiggle until kare validate ran.
    import jsonschema
    import yaml

    from kare_rules.schema import jsonable, schema_json

    doc = yaml.safe_load(mutate(("within: {arr: 10%, days_since_order: 14}", f"within: {within}")))
    errors = list(jsonschema.Draft202012Validator(schema_json()).iter_errors(jsonable(doc)))
    assert bool(errors) is editor_flags_it, [e.message for e in errors]


def test_previous_in_rules_without_trends_is_refused_at_the_key(tmp_path):
    text = mutate(
        ("  arr_change: {change_of: arr}\n  arr_pct_change: {pct_change_of: arr}\n", ""),
        ("  shrinking: {arr_pct_change: {lte: -0.2}}\n", ""),
        ("{not: shrinking}", "{seats: {gte: 1}}"),
        ("{arr_change: {lt: 0}}", "{arr: {lt: 1}}"),
    )
    rules, problems = check_rules(write_rules(tmp_path, text))
    assert rules is None
    assert [str(p) for p in problems] == [
        f"{SHOWN}:{at(text, '{arr: 150000}')}: these rules have no trend (change_of or pct_change_of), so "
        "previous values are never read; remove 'previous'"
    ]


# ---- embedded tests with previous values ---------------------------------------------------------


def test_kare_test_feeds_previous_values_to_the_trends(tmp_path, capsys):
    from kare_rules.cli import main

    write_rules(tmp_path, VALID)
    assert main(["test", "rules/acme"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "2 passed, 0 failed"


def test_a_trend_test_that_fails_shows_the_trend_value_in_its_tree(tmp_path, capsys):
    from kare_rules.cli import main

    # A third less ARR than last run: shrinking, so not expand — expecting expand fails and says why.
    write_rules(tmp_path, mutate(("previous: {arr: 150000}\n    as_of: 2026-11-01\n    expect: keep",
                                  "previous: {arr: 150000}\n    as_of: 2026-11-01\n    expect: expand")))  # fmt: skip
    assert main(["test", "rules/acme"]) == 1
    text = capsys.readouterr().out
    assert "expected: expand" in text and "got:      keep" in text
    assert "✓ arr_pct_change ≤ -0.2   [arr_pct_change = -0.3333]" in text
    assert text.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_previous_values_of_one_test_do_not_leak_into_another_with_the_same_key(tmp_path):
    from kare_rules.testing import run_rule_tests

    # Both tests use account T1 on the same date; only the first has previous values.
    results = run_rule_tests(load_rules(write_rules(tmp_path, VALID)))
    assert [(r.test.name, r.got, r.passed) for r in results] == [
        ("a big account that shrank by a third is keep", "keep", True),
        ("without previous values the same account is expand", "expand", True),
    ]


# ---- trends in the engines -------------------------------------------------------------------------

TREND_RULES = """\
format: kare/v1
organization: acme
version: 1.0.0
inputs:
  id: {type: integer, key: true}
  arr: {type: float, nullable: true}
  seats: {type: integer, nullable: true}
derived:
  arr_pct_change: {pct_change_of: arr}
  seats_change: {change_of: seats}
precedence: [exit, expand, keep, attain]
exit:
  when: {arr_pct_change: {lte: -0.5}}
profiles:
  expand:
    when: {seats_change: {gte: 10}}
  keep:
    when: {arr_pct_change: {gte: 0.1}}
  attain:
    when: {arr_pct_change: {is_null: true}}
"""
# Integer keys: the previous values are matched by the key as text, in every engine.
TODAY = {"id": [1, 2, 3, 4, 5, 6, 7], "arr": [40.0, 110.0, 100.0, 100.0, None, 5.0, 100.0],
         "seats": [1, 1, 30, 1, 1, 1, 1]}  # fmt: skip
BEFORE = {"account_id": ["1", "2", "3", "4", "5", "6", "99"], "arr": [100.0, 100.0, 100.0, 0.0, 100.0, -10.0, 1.0],
          "seats": [1, 1, 5, 1, 1, 1, 1]}  # fmt: skip
EXPECTED = [
    (1, "exit"),  # 40 after 100: −60 %
    (2, "keep"),  # +10 % exactly
    (3, "expand"),  # 25 more seats
    (4, "attain"),  # previous arr 0: no share of it, null
    (5, "attain"),  # arr null today
    (6, "keep"),  # 5 after −10: +150 % of |−10|
    (7, "attain"),  # not in the previous run (99 is gone): a new account, every trend null
]


def trend_frames():
    import polars as pl

    return (
        pl.DataFrame(TODAY, schema={"id": pl.Int64, "arr": pl.Float64, "seats": pl.Int64}),
        pl.DataFrame(BEFORE, schema={"account_id": pl.String, "arr": pl.Float64, "seats": pl.Int64}),
    )


def test_trends_categorize_against_the_previous_run_in_polars(tmp_path):
    from kare_rules.engine import categorize

    rules = load_rules(write_rules(tmp_path, TREND_RULES))
    today, before = trend_frames()
    out = categorize(rules, today, "2026-11-01", previous=before)
    assert sorted(out.select("id", "category").iter_rows()) == EXPECTED
    assert out.filter(out["id"] == 1)["reason"][0] == "exit: arr_pct_change ≤ -0.5 [-0.6]"


def test_trends_categorize_the_same_in_duckdb_from_a_frame_a_parquet_file_and_a_table(tmp_path):
    import duckdb

    from kare_rules.compile_sql import categorize_duckdb

    rules = load_rules(write_rules(tmp_path, TREND_RULES))
    today, before = trend_frames()
    today.write_parquet(tmp_path / "today.parquet")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.register("today_frame", today)
    con.execute("CREATE TABLE today AS SELECT * FROM today_frame")
    con.close()
    for source in (today, str(tmp_path / "today.parquet"), f"duckdb:{tmp_path / 'w.duckdb'}:today"):
        out = categorize_duckdb(rules, source, "2026-11-01", previous=before)
        assert sorted(out.select("id", "category").iter_rows()) == EXPECTED


def test_without_a_previous_run_every_trend_is_null_in_polars_and_sql(tmp_path):
    import duckdb

    from kare_rules.compile_sql import categorize_duckdb, compile_sql
    from kare_rules.engine import categorize

    rules = load_rules(write_rules(tmp_path, TREND_RULES))
    today, _ = trend_frames()
    assert set(categorize(rules, today, "2026-11-01")["category"]) == {"attain"}
    assert set(categorize_duckdb(rules, today, "2026-11-01")["category"]) == {"attain"}
    sql = compile_sql(rules, "duckdb", "today_frame", "2026-11-01")
    assert "LEFT JOIN" not in sql and 'CAST(NULL AS DOUBLE) AS "seats_change"' in sql
    con = duckdb.connect()
    con.register("today_frame", today)
    assert {r[1] for r in con.sql(sql).fetchall()} == {"attain"}


def test_compiled_sql_joins_the_previous_table_by_key_as_text(tmp_path):
    import duckdb

    from kare_rules.compile_sql import compile_sql

    rules = load_rules(write_rules(tmp_path, TREND_RULES))
    today, before = trend_frames()
    sql = compile_sql(rules, "duckdb", "accounts", "2026-11-01", previous_table="history.last_run")
    assert 'LEFT JOIN (\n      SELECT\n        CAST("id" AS TEXT) AS "_kare_prev_key"' in sql
    assert 'FROM "history"."last_run"' in sql
    con = duckdb.connect()
    con.execute("CREATE SCHEMA history")
    con.register("today_frame", today)
    # The previous table holds last run's extract as it was: the key under its own name, as an integer.
    con.register("before_frame", before.with_columns(before["account_id"].cast(int).alias("id")))
    con.execute("CREATE TABLE accounts AS SELECT * FROM today_frame")
    con.execute("CREATE TABLE history.last_run AS SELECT id, arr, seats FROM before_frame")
    assert sorted(con.sql(sql).select("id", "category").fetchall()) == EXPECTED


# ---- kare diff ---------------------------------------------------------------------------------------


def changes_between(before: str, after: str) -> list[str]:
    from kare_rules.diff import rule_changes
    from kare_rules.loader import load_rules_text

    return [c.text for c in rule_changes(load_rules_text(before, "before.yaml"), load_rules_text(after, "after.yaml"))]


def test_diff_states_watch_threshold_and_action_changes_in_words():
    after = mutate(
        ("within_days: 30", "within_days: 14"),
        ("within: {arr: 10%, days_since_order: 14}", "within: {arr: 5%, seats: 3}"),
        ("title: Review the drop in spend", "title: Review spend"),
        ("    to: recapture\n", ""),
    ).replace("{all: [paying, {days_since_order: {lte: 90}}]}", "{all: [paying, {days_since_order: {lte: 90}}, "
              "{seats: {gte: 1}}]}")  # fmt: skip
    assert [t for t in changes_between(VALID, after) if t.startswith("watch")] == [
        "watch keep-lapsing: moves to any category (was recapture)",
        "watch keep-lapsing: within_days 30 → 14",
        "watch expand-slipping: within arr 10% → 5%",
        "watch expand-slipping: within days_since_order 14 removed",
        "watch expand-slipping: within seats 3 added",
        "watch expand-slipping: action spend-review: title 'Review the drop in spend' → 'Review spend'",
    ]


def test_diff_states_added_and_removed_watches():
    slipping = (
        "  - id: expand-slipping\n    from: expand\n    within: {arr: 10%, days_since_order: 14}\n"
        "    actions: [{id: spend-review, title: Review the drop in spend, due_in_days: 14}]\n"
    )
    one = mutate((slipping, ""))
    assert changes_between(one, VALID) == [
        "watch expand-slipping added: accounts in expand about to move to any category: nearest change of arr "
        "within 10% or nearest change of days_since_order within 14; actions spend-review"
    ]
    assert changes_between(VALID, one) == [
        "watch expand-slipping removed (was: accounts in expand about to move to any category: nearest change "
        "of arr within 10% or nearest change of days_since_order within 14)"
    ]


def test_a_watch_change_changes_the_digest_but_its_order_and_description_do_not(tmp_path):
    from kare_rules.loader import load_rules_text

    digest = load_rules_text(VALID, "a.yaml").digest
    assert load_rules_text(mutate(("within_days: 30", "within_days: 29")), "b.yaml").digest != digest
    described = mutate(("  - id: keep-lapsing\n", "  - id: keep-lapsing\n    description: Lapsing soon\n"))
    assert load_rules_text(described, "c.yaml").digest == digest
    first, second = VALID.split("  - id: keep-lapsing\n")[1].split("  - id: expand-slipping\n")
    second = second.split("tests:\n")[0]
    swapped = VALID.replace(
        f"  - id: keep-lapsing\n{first}  - id: expand-slipping\n{second}",
        f"  - id: expand-slipping\n{second}  - id: keep-lapsing\n{first}",
    )
    assert swapped != VALID
    assert load_rules_text(swapped, "d.yaml").digest == digest


def test_diff_names_a_new_trend_as_a_derived_value():
    after = mutate(("  arr_pct_change: {pct_change_of: arr}\n",
                    "  arr_pct_change: {pct_change_of: arr}\n  seats_change: {change_of: seats}\n"))  # fmt: skip
    assert changes_between(VALID, after) == ["derived seats_change added: change_of(seats)"]


# ---- the CLI: --previous, --previous-table ------------------------------------------------------------

TODAY_CSV = "account_id,arr,seats,plan,is_customer,last_order\nA,100000,5,pro,true,2026-10-01\n" \
    "B,100000,5,pro,true,2026-10-01\n"  # fmt: skip


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    from kare_rules.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_categorize_reads_previous_values_and_the_trends_use_them(tmp_path, capsys, engine):
    import polars as pl

    write_rules(tmp_path, VALID)
    (tmp_path / "today.csv").write_text(TODAY_CSV)
    # Last run's extract, with a column the trends do not read: A lost a third of its ARR; B is new.
    (tmp_path / "before.csv").write_text("account_id,arr,plan\nA,150000,pro\n")
    code, _, err = cli(capsys, "categorize", "--rules", "rules/acme", "--input", "today.csv", "--as-of",
                       "2026-11-01", "--output", "out.csv", "--previous", "before.csv", "--engine", engine)  # fmt: skip
    assert code == 0 and "note:" not in err
    assert pl.read_csv(tmp_path / "out.csv").select("account_id", "category").rows() == [
        ("A", "keep"),
        ("B", "expand"),
    ]


def test_without_previous_the_cli_says_once_that_trends_are_null(tmp_path, capsys):
    import polars as pl

    write_rules(tmp_path, VALID)
    (tmp_path / "today.csv").write_text(TODAY_CSV)
    code, _, err = cli(capsys, "categorize", "--rules", "rules/acme", "--input", "today.csv", "--as-of",
                       "2026-11-01", "--output", "out.csv")  # fmt: skip
    assert code == 0
    assert err.splitlines() == [
        "note: no --previous given, so the trends (arr_change, arr_pct_change) are null for every account, as "
        "for new accounts; give --previous FILE with account_id and arr from the previous run"
    ]
    assert pl.read_csv(tmp_path / "out.csv")["category"].to_list() == ["expand", "expand"]


def test_explain_with_previous_shows_the_trend_value(tmp_path, capsys):
    write_rules(tmp_path, VALID)
    (tmp_path / "today.csv").write_text(TODAY_CSV)
    (tmp_path / "before.csv").write_text("account_id,arr\nA,150000\n")
    code, out, err = cli(capsys, "explain", "--rules", "rules/acme", "--input", "today.csv", "--as-of",
                         "2026-11-01", "--account", "A", "--previous", "before.csv")  # fmt: skip
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "account A as of 2026-11-01 (acme 1.0.0): keep"
    assert "✓ arr_pct_change ≤ -0.2   [arr_pct_change = -0.3333]" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("account_id,arr\nA,lots\n", "previous values before.csv: account 'A' has arr = 'lots', not a float; fix the "
         "value or leave it empty (no previous value)"),
        ("account_id,arr\nA,1\nA,2\n", "account 'A' appears 2 times in the previous values before.csv; give one row "
         "per account"),
        ("id,arr\nA,1\n", "previous values before.csv have no column 'account_id'; they need the key column and the "
         "columns the trends read (arr); columns present: id, arr"),
        ("account_id,seats\nA,1\n", "previous values before.csv have no column 'arr'"),
    ],
    ids=["not-a-number", "key-twice", "no-key", "no-trend-column"],
)  # fmt: skip
def test_unusable_previous_values_stop_with_one_message(tmp_path, capsys, content, message):
    write_rules(tmp_path, VALID)
    (tmp_path / "today.csv").write_text(TODAY_CSV)
    (tmp_path / "before.csv").write_text(content)
    code, _, err = cli(capsys, "categorize", "--rules", "rules/acme", "--input", "today.csv", "--as-of",
                       "2026-11-01", "--output", "out.csv", "--previous", "before.csv")  # fmt: skip
    assert code == 1
    assert err.startswith(f"kare categorize: {message}"), err
    assert "Traceback" not in err and not (tmp_path / "out.csv").exists()


def test_compile_joins_the_previous_table_and_notes_when_it_is_missing(tmp_path, capsys):
    write_rules(tmp_path, VALID)
    code, out, err = cli(capsys, "compile", "--rules", "rules/acme", "--dialect", "postgres", "--table",
                         "crm.accounts", "--as-of", "2026-11-01", "--previous-table", "crm.last_month")  # fmt: skip
    assert code == 0 and err == ""
    assert 'FROM "crm"."last_month"' in out and "LEFT JOIN" in out
    code, out, err = cli(capsys, "compile", "--rules", "rules/acme", "--dialect", "postgres", "--table",
                         "crm.accounts", "--as-of", "2026-11-01")  # fmt: skip
    assert code == 0 and "LEFT JOIN" not in out
    assert err.startswith("note: no --previous-table given, so the trends are NULL for every account")


# ---- synthetic data ------------------------------------------------------------------------------------


def test_synthetic_previous_values_put_trends_on_both_sides_of_their_thresholds(tmp_path):
    import datetime as dt

    from kare_rules.engine import conform, with_derived
    from kare_rules.synth import previous_values, synthesize

    rules = load_rules(write_rules(tmp_path, VALID))
    accounts = synthesize(rules, 2000, dt.date(2026, 11, 1))
    previous = previous_values(rules, accounts, seed=3)
    assert previous.columns == ["account_id", "arr"] and previous.equals(previous_values(rules, accounts, seed=3))
    assert 1900 < previous.height < 2000  # a few accounts are new: no previous values
    trend = with_derived(rules, conform(accounts, rules), "2026-11-01", previous).collect()["arr_pct_change"]
    moved = trend.filter(trend.is_not_null() & (trend != 0))
    # The rules compare arr_pct_change with −0.2 (and arr_change with 0, a step of nothing): the steps
    # land within ±20 % of −0.2, on both sides.
    assert moved.len() > 80
    assert moved.min() >= -0.25 and moved.max() <= -0.15
    assert (moved <= -0.2).sum() > 30 and (moved > -0.2).sum() > 30


def test_the_pull_request_report_lists_watch_changes_and_asks_for_a_version_bump():
    from kare_rules.diff import diff_rules, render_markdown
    from kare_rules.loader import load_rules_text

    before = load_rules_text(VALID, "before.yaml")
    after = load_rules_text(mutate(("within_days: 30", "within_days: 14")), "after.yaml")
    report = diff_rules(before, after)
    text = render_markdown([report])
    assert "- watch keep-lapsing: within_days 30 → 14\n" in text
    assert not report.version_check.ok
    assert "write version: 1.1.0" in report.version_check.message


def test_a_test_file_beside_the_rules_may_give_previous_values(tmp_path):
    from kare_rules.testing import run_rule_tests

    write_rules(tmp_path, VALID)
    (tmp_path / "rules" / "acme" / "tests").mkdir()
    (tmp_path / "rules" / "acme" / "tests" / "trends.yaml").write_text(
        "tests:\n"
        "  - name: ARR up by half is not shrinking\n"
        "    account: {account_id: X1, is_customer: true, arr: 150000, seats: 1, plan: pro, last_order: 2026-10-01}\n"
        "    previous: {arr: 100000}\n"
        "    as_of: 2026-11-01\n"
        "    expect: expand\n"
        "  - name: a previous value of a column no trend reads\n"
        "    account: {account_id: X2, is_customer: true}\n"
        "    previous: {seats: 4}\n"
        "    as_of: 2026-11-01\n"
        "    expect: keep\n"
    )
    _, problems = check_rules(tmp_path / "rules" / "acme")
    assert [str(p) for p in problems] == [
        "rules/acme/tests/trends.yaml:9:16: 'seats' has no previous value a trend reads; previous values are given "
        "for the columns of change_of and pct_change_of: arr"
    ]
    text = (tmp_path / "rules" / "acme" / "tests" / "trends.yaml").read_text()
    (tmp_path / "rules" / "acme" / "tests" / "trends.yaml").write_text(text.split("  - name: a previous")[0])
    results = run_rule_tests(load_rules(tmp_path / "rules" / "acme"))
    assert [(r.test.name, r.passed) for r in results][-1] == ("ARR up by half is not shrinking", True)


def test_watches_are_the_same_whether_their_combinations_are_tabulated_or_built_per_account(monkeypatch):
    """`watch_expr` gathers each account's list from a table of every combination up to 12 watches and
    builds it per account beyond: both give the same lists (bundled cloudnine, two watches)."""
    import datetime as dt

    import polars as pl

    from kare_rules import watches
    from kare_rules.engine import categorize
    from kare_rules.synth import synthesize

    rules = load_rules(Path(__file__).resolve().parents[1] / "rules" / "cloudnine")
    day = dt.date(2026, 10, 31)
    accounts = synthesize(rules, 4000, day, seed=11)
    tabulated = categorize(rules, accounts, day, edges=True)["watches"]
    monkeypatch.setattr(watches, "_TABLE_WATCHES", 0)
    built = categorize(rules, accounts, day, edges=True)["watches"]
    assert tabulated.to_list() == built.to_list()
    assert tabulated.list.len().sum() > 0  # some watch holds, so the comparison says something
    assert tabulated.dtype == pl.List(pl.String)
