"""Edges (issue 11) agree with brute force: every day of the horizon scanned one by one, and every
quantity scanned over a fine grid around every threshold; plus readable examples."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kare_rules import categorize, compile_polars
from kare_rules import edges as edges_module
from kare_rules.edges import EDGE_SCHEMA, column_edges, edge_columns, edges
from kare_rules.engine import conform, with_derived
from kare_rules.errors import RuleFileError
from kare_rules.loader import load_rules_text
from tests.rulegen import load_generated

AS_OF = dt.date(2026, 11, 1)
KEY = "id"
CATEGORIES = ("exit", "expand", "keep", "recapture", "attain")
PROFILES = ("expand", "keep", "recapture", "attain")

INPUTS = {KEY: "string", "i1": "integer", "f1": "float", "f2": "float", "b1": "boolean", "d1": "date", "d2": "date"}
DERIVED = {"since_d1": {"days_since": "d1"}, "until_d2": {"days_until": "d2"}, "r1": {"ratio": ["f1", "f2"]}}
TYPES = {**INPUTS, "since_d1": "integer", "until_d2": "integer", "r1": "float"}
COLUMN_ORDER = [c for c in TYPES if c != KEY]  # inputs, then derived: the tie order across columns
NUMERIC = ("i1", "f1", "f2", "since_d1", "until_d2", "r1")
POLARS = {"string": pl.String, "integer": pl.Int64, "float": pl.Float64, "boolean": pl.Boolean, "date": pl.Date}

INTS = [-3, -1, 0, 1, 2, 3, 10, 100]
FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, 2.5, 1e-7, 100.0, 1 / 3, 0.8]
SINCE = [0, 1, 2, 30, 31, 90, 365, 400]
UNTIL = [-5, 0, 1, 7, 30, 200, 366]
LITERALS = {"i1": INTS, "f1": FLOATS, "f2": FLOATS, "r1": [*FLOATS, 2.0, 0.25], "since_d1": SINCE, "until_d2": UNTIL}


@st.composite
def predicates(draw) -> dict:
    column = draw(st.sampled_from([*NUMERIC, "b1", "b1"]))
    if column == "b1":
        return {"b1": draw(st.booleans())}
    op = draw(
        st.sampled_from(["gt", "gte", "lt", "lte", "between", "gt", "lte", "eq", "ne", "in", "not_in", "is_null"])
    )
    values = st.sampled_from(LITERALS[column])
    if op == "is_null":
        return {column: {op: draw(st.booleans())}}
    if op in ("in", "not_in"):
        return {column: {op: draw(st.lists(values, min_size=1, max_size=3))}}
    if op == "between":
        return {column: {op: sorted([draw(values), draw(values)])}}
    return {column: {op: draw(values)}}


def conditions(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs})
            | st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs})
            | inner.map(lambda x: {"not": x})
        ),
        max_leaves=6,
    )


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


@st.composite
def rule_files(draw) -> str:
    traits: dict[str, object] = {}
    for i in range(draw(st.integers(0, 2))):
        traits[f"trait_{i}"] = draw(conditions(predicates()))
    leaves = predicates() | st.sampled_from(sorted(traits)) if traits else predicates()
    profiles = draw(st.lists(st.sampled_from(PROFILES), min_size=1, max_size=4, unique=True))
    defined = (["exit"] if draw(st.booleans()) else []) + profiles
    doc: dict[str, object] = {
        "format": "kare/v1",
        "organization": "edges",
        "version": "1.0.0",
        "inputs": {n: {"type": t, **({"key": True} if n == KEY else {"nullable": True})} for n, t in INPUTS.items()},
        "derived": DERIVED,
    }
    if traits:
        doc["traits"] = traits
    if draw(st.booleans()):
        doc["precedence"] = draw(st.permutations(defined))
    if "exit" in defined:
        doc["exit"] = {"when": draw(conditions(leaves))}
    doc["profiles"] = {name: {"when": draw(conditions(leaves))} for name in profiles}
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False)


DAYS = [0, 1, 2, 29, 30, 31, 89, 90, 91, 200, 364, 365, 366, 400]
DATA = {
    "i1": st.sampled_from([*INTS, 4, -2, 99]),
    "f1": st.sampled_from([*FLOATS, 0.3, 2.0, 150.0, -5.0]),
    "f2": st.sampled_from([*FLOATS, 0.3, 2.0, 4.0]),
    "b1": st.booleans(),
    "d1": st.sampled_from([AS_OF - dt.timedelta(days=d) for d in DAYS]),
    "d2": st.sampled_from([AS_OF + dt.timedelta(days=d) for d in [-10, *DAYS]]),
}


@st.composite
def account_rows(draw) -> list[dict]:
    rows = []
    for i in range(draw(st.integers(1, 8))):
        row: dict = {KEY: f"r{i}"}
        for name, values in DATA.items():
            row[name] = draw(st.one_of(values, values, values, st.none()))
        rows.append(row)
    return rows


# ---- the reference: the rules read literally, one account at a time ------------------------------


def derived(row: dict, as_of: dt.date) -> dict:
    out = dict(row)
    out["since_d1"] = None if row["d1"] is None else (as_of - row["d1"]).days
    out["until_d2"] = None if row["d2"] is None else (row["d2"] - as_of).days
    f1, f2 = row["f1"], row["f2"]
    out["r1"] = None if f1 is None or f2 is None or f2 == 0 else f1 / f2
    return out


def typed(column: str, v):
    return int(v) if TYPES[column] == "integer" else float(v) if TYPES[column] == "float" else v


def predicate_holds(column: str, body, row: dict) -> bool:
    op, literal = next(iter(body.items())) if isinstance(body, dict) else ("eq", body)
    value = row[column]
    if op == "is_null":
        return (value is None) is literal
    if value is None:
        return False
    if op in ("in", "not_in"):
        return any(value == typed(column, x) for x in literal) is (op == "in")
    if op == "between":
        return typed(column, literal[0]) <= value <= typed(column, literal[1])
    other = typed(column, literal)
    return {"eq": value == other, "ne": value != other, "gt": value > other, "gte": value >= other,
            "lt": value < other, "lte": value <= other}[op]  # fmt: skip


def holds(cond, row: dict, traits: dict) -> bool:
    if isinstance(cond, str):
        return holds(traits[cond], row, traits)
    ((key, body),) = cond.items()
    if key == "all":
        return all(holds(c, row, traits) for c in body)
    if key == "any":
        return any(holds(c, row, traits) for c in body)
    if key == "not":
        return not holds(body, row, traits)
    return predicate_holds(key, body, row)


def category_of(doc: dict, row: dict) -> str:
    whens = {"exit": doc["exit"]["when"]} if "exit" in doc else {}
    whens.update({name: body["when"] for name, body in doc["profiles"].items()})
    traits = doc.get("traits") or {}
    order = [c for c in doc.get("precedence", CATEGORIES) if c in whens]
    return next((c for c in order if holds(whens[c], row, traits)), "unassigned")


def predicates_in(doc: dict) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []

    def walk(c) -> None:
        if isinstance(c, str):
            walk(doc["traits"][c])
            return
        ((key, body),) = c.items()
        if key in ("all", "any"):
            for x in body:
                walk(x)
        elif key == "not":
            walk(body)
        else:
            out.append((key, body))

    for body in [doc.get("exit", {}).get("when"), *(p["when"] for p in doc["profiles"].values())]:
        if body is not None:
            walk(body)
    return out


def reference_move(rules, rows: list[dict], horizon: int) -> list[tuple]:
    """Every day of the horizon, one by one, through categorize: on day t the account is
    categorized at as_of + t (its dates are held; here as_of + t is reached by moving every date
    t days back at as_of, which gives the same day counts)."""
    frame = pl.DataFrame(
        [
            {**r, KEY: f"{r[KEY]}@{t}", "d1": r["d1"] and r["d1"] - dt.timedelta(days=t),
             "d2": r["d2"] and r["d2"] - dt.timedelta(days=t)}
            for t in range(horizon + 1)
            for r in rows
        ],
        schema={n: POLARS[t] for n, t in INPUTS.items()},
    )  # fmt: skip
    got = dict(categorize(rules, frame, AS_OF, explain=False).select(KEY, "category").iter_rows())
    out = []
    for r in rows:
        now = got[f"{r[KEY]}@0"]
        day = next((t for t in range(1, horizon + 1) if got[f"{r[KEY]}@{t}"] != now), None)
        out.append((None, None) if day is None else (got[f"{r[KEY]}@{day}"], AS_OF + dt.timedelta(days=day)))
    return out


def grid(thresholds: list[float], integer: bool) -> list[float]:
    """Values around every threshold: itself, its float neighbours, small and unit steps, midpoints."""
    out: set[float] = set()
    for c in thresholds:
        if integer:
            out.update(range(math.floor(c) - 2, math.ceil(c) + 3))
            continue
        out.update([c, math.nextafter(c, -math.inf), math.nextafter(c, math.inf), c - 0.5, c + 0.5, c - 1, c + 1])
        out.update([c - 1e-9 * max(1.0, abs(c)), c + 1e-9 * max(1.0, abs(c))])
    ordered = sorted(thresholds)
    out.update((a + b) / 2 for a, b in itertools.pairwise(ordered))
    if ordered:
        out.update([ordered[0] - 10, ordered[-1] + 10])
    return sorted(int(v) for v in out) if integer else sorted(out)


def crossed(thresholds: list[float], x: float, v: float, integer: bool) -> float:
    """The threshold a change from x to v crosses: v is that threshold itself, or its next
    representable value beyond it (the nearest to x when several qualify); a v deeper inside a segment
    belongs to the segment's threshold on x's side."""

    def step(c: float, up: bool) -> float:
        if integer:
            return math.floor(c) + 1 if up else math.ceil(c) - 1
        return math.nextafter(c, math.inf if up else -math.inf)

    up = v > x
    between = [c for c in thresholds if (x <= c <= v if up else v <= c <= x)]
    exact = [c for c in between if c == v or v == step(c, up)]
    if exact:
        return min(exact, key=lambda c: abs(c - x))
    return max(between) if up else min(between)


def reference_edges(doc: dict, rows: list[dict]) -> dict[str, list[tuple]]:
    """Per account: the nearest edge of each quantity (scanning the grid) and the nearest overall."""
    preds = predicates_in(doc)
    quantities = [c for c in COLUMN_ORDER if any(col == c and isinstance(b, dict) and next(iter(b)) in
                  ("gt", "gte", "lt", "lte", "between") for col, b in preds)]  # fmt: skip
    per_column: dict[str, list[tuple]] = {q: [] for q in quantities}
    nearest = []
    for r in rows:
        row = derived(r, AS_OF)
        now = category_of(doc, row)
        best = None
        for q in quantities:
            x = row[q]
            found = None
            if x is not None:
                cs = sorted({float(v) for col, b in preds if col == q and isinstance(b, dict)
                             for op, lit in b.items() if op != "is_null"
                             for v in (lit if isinstance(lit, list) else [lit])})  # fmt: skip
                for v in grid(cs, TYPES[q] == "integer"):
                    if v == x or category_of(doc, {**row, q: v}) == now:
                        continue
                    thr = crossed(cs, x, v, TYPES[q] == "integer")
                    key = (abs(thr - x), v > x, v != thr)  # nearest threshold; the decrease; onto it before past it
                    if found is None or key < found[0]:
                        found = (key, thr, category_of(doc, {**row, q: v}))
            per_column[q].append(None if found is None else (found[2], found[1] - float(x)))
            if found is not None:
                thr, x = found[1], float(x)
                scale = max(abs(x), abs(thr))
                rel = 0.0 if scale == 0 else abs(thr - x) / scale
                if best is None or rel < best[0]:
                    best = (rel, found[2], q, x, thr, thr - x)
        nearest.append((None,) * 5 if best is None else best[1:])
    return {"nearest": nearest, **per_column}


@contextlib.contextmanager
def tuned(word: int, table_bits: int, subset_share: float):
    """Other code paths: fewer predicate bits per word, no full table (rule sets with many
    predicates), every quantity computed on a subset of the accounts or on all of them."""
    saved = edges_module._WORD, edges_module._TABLE_BITS, edges_module._SUBSET_SHARE
    edges_module._WORD, edges_module._TABLE_BITS, edges_module._SUBSET_SHARE = word, table_bits, subset_share
    compile_polars._COMPILED.clear()  # a predicate space compiled before would keep the old word and table
    try:
        yield
    finally:
        edges_module._WORD, edges_module._TABLE_BITS, edges_module._SUBSET_SHARE = saved
        compile_polars._COMPILED.clear()


PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(text=rule_files(), rows=account_rows(), horizon=st.sampled_from([366, 366, 40, 1]))
def test_edges_agree_with_brute_force(text, rows, horizon):
    rules = load_generated(text, "edges.yaml")
    doc = yaml.safe_load(text)
    frame = pl.DataFrame(rows, schema={n: POLARS[t] for n, t in INPUTS.items()})
    result = categorize(rules, frame, AS_OF, edges=True, horizon=horizon)
    assert result.schema == pl.Schema(
        {**categorize(rules, frame, AS_OF).schema, **EDGE_SCHEMA, "watches": pl.List(pl.String)}
    )
    assert list(result["category"]) == [category_of(doc, derived(r, AS_OF)) for r in rows]
    plain = categorize(rules, frame, AS_OF, explain=False, edges=True, horizon=horizon)
    assert plain.equals(result.drop("reason", "overlaps"))

    assert list(result.select("next_category", "next_move_on").iter_rows()) == reference_move(rules, rows, horizon)

    expected = reference_edges(doc, rows)
    got = result.select("edge_category", "edge_column", "edge_value", "edge_threshold", "edge_change").rows()
    assert got == expected["nearest"]

    # The category is a pure function of the predicates' two-valued truths: the edges' bit patterns
    # give every account the category categorize gave it.
    prepared = with_derived(rules, conform(frame, rules), AS_OF).collect()
    space = edges_module._Space(rules)
    patterns = edges_module._patterns(space, edges_module._working(space, prepared, [], []))
    by_pattern = [space.names[space.category(patterns.bits[p])] for p in patterns.frame["_edge_pat"]]
    assert by_pattern == list(result["category"])

    # The same answers when patterns span several words and are not tabulated (large rule sets), and
    # whether each quantity is computed on the accounts that can cross its edges only or on all.
    # (categorize evaluates the categories' mask itself then, instead of looking it up by pattern.)
    for word, table_bits, subset_share in ((3, 2, 1.0), (63, 20, -1.0)):
        with tuned(word, table_bits, subset_share):
            tuned_space = edges_module._Space.of(rules)  # compiled anew, with the word and table asked for
            assert tuned_space.words == max(1, -(-tuned_space.n // word))
            assert (tuned_space._table is None) == (tuned_space.n > table_bits)
            assert edge_columns(rules, prepared, AS_OF, horizon).equals(result.select(list(EDGE_SCHEMA)))
            assert categorize(rules, frame, AS_OF, edges=True, horizon=horizon).equals(result)

    columns = [q for q in expected if q != "nearest"]
    if columns:
        each = column_edges(rules, prepared, columns)
        for q in columns:
            pairs = each.select(f"_edge_category__{q}", f"_edge_change__{q}").rows()
            assert [None if p == (None, None) else p for p in pairs] == expected[q]
        for word, table_bits, subset_share in ((3, 2, 1.0), (63, 20, -1.0)):
            with tuned(word, table_bits, subset_share):
                assert column_edges(rules, prepared, columns).equals(each)


def test_what_a_rule_set_learned_from_earlier_accounts_changes_no_answer(monkeypatch):
    # `_ColumnRows` keeps each pattern's rows for the next call on the same rule set (and forgets them all
    # past _KEPT_PATTERNS): answers on new accounts equal those of a rule set that never saw any.
    from kare_rules.synth import synthesize

    text = RULES
    batches = [synthesize(load_rules_text(text, "examples.yaml"), 400, AS_OF, seed=s) for s in (1, 2, 3)]
    fresh = [edges(load_rules_text(text, "examples.yaml"), b, AS_OF) for b in batches]
    for kept in (1 << 18, 5):
        monkeypatch.setattr(edges_module, "_KEPT_PATTERNS", kept)
        rules = load_rules_text(text, "examples.yaml")
        for batch, expected in zip([*batches, *batches[::-1]], [*fresh, *fresh[::-1]], strict=True):
            assert edges(rules, batch, AS_OF).equals(expected)
        space = edges_module._Space.of(rules)
        last = edges_module._working(space, with_derived(rules, conform(batches[0], rules), AS_OF).collect(), [], [])
        present = len(edges_module._patterns(space, last).bits)  # the patterns of the last call
        known = len(space.column_rows("value_last_90d").of)
        assert known == present if kept < present else known > present
    assert any(f.filter(pl.col("edge_column").is_not_null()).height for f in fresh)


# ---- examples a person can read -------------------------------------------------------------------

RULES = """
format: kare/v1
organization: examples
version: 1.0.0
inputs:
  account_id:      {type: string, key: true}
  is_customer:     {type: boolean}
  ever_customer:   {type: boolean}
  value_last_90d:  {type: float, nullable: true}
  employees:       {type: integer, nullable: true}
  last_order_date: {type: date, nullable: true}
derived:
  days_since_last_order: {days_since: last_order_date}
profiles:
  expand:
    when: {all: [{is_customer: true}, {value_last_90d: {gte: 100000}}]}
  keep:
    when: {all: [{is_customer: true}, {days_since_last_order: {lte: 90}}, {value_last_90d: {gte: 35000}}]}
  recapture:
    when: {all: [{ever_customer: true}, {days_since_last_order: {lte: 730}}]}
  attain:
    when: {all: [{ever_customer: false}, {employees: {gte: 500}}]}
"""


def example(**account) -> pl.DataFrame:
    base = {"account_id": "A1", "is_customer": False, "ever_customer": False, "value_last_90d": None,
            "employees": None, "last_order_date": None}  # fmt: skip
    return pl.DataFrame([{**base, **account}])


def test_a_keep_account_lapses_to_recapture_the_day_after_its_90th_day_without_an_order():
    rules = load_rules_text(RULES, "examples.yaml")
    accounts = example(is_customer=True, ever_customer=True, value_last_90d=40000.0,
                       last_order_date=dt.date(2026, 10, 1))  # fmt: skip
    out = categorize(rules, accounts, AS_OF, edges=True).row(0, named=True)
    assert out["category"] == "keep"
    # 31 days since the order today; day 91 (the first over 90) is 60 days later.
    assert (out["next_category"], out["next_move_on"]) == ("recapture", dt.date(2026, 12, 31))
    # 5000 less spend also loses keep; relative to 40000 that is nearer (0.125) than 59 more days (0.66).
    assert (out["edge_category"], out["edge_column"], out["edge_value"], out["edge_threshold"], out["edge_change"]) == (
        "recapture", "value_last_90d", 40000.0, 35000.0, -5000.0,
    )  # fmt: skip


def test_a_prospect_one_step_from_attain_is_unassigned_with_an_edge_of_one_employee():
    rules = load_rules_text(RULES, "examples.yaml")
    out = categorize(rules, example(employees=499), AS_OF, edges=True).row(0, named=True)
    assert out["category"] == "unassigned"
    assert (out["next_category"], out["next_move_on"]) == (None, None)  # nothing moves with the date
    assert (out["edge_category"], out["edge_column"], out["edge_change"]) == ("attain", "employees", 1.0)


def test_no_move_within_the_horizon_is_null_and_the_horizon_is_inclusive():
    rules = load_rules_text(RULES, "examples.yaml")
    accounts = example(ever_customer=True, last_order_date=AS_OF - dt.timedelta(days=700))
    # recapture until day 730; day 731 is 31 days away
    expected = ("A1", None, None, "unassigned", "days_since_last_order", 700.0, 730.0, 30.0)
    assert edges(rules, accounts, AS_OF, horizon=30).row(0) == expected
    assert edges(rules, accounts, AS_OF, horizon=31)["next_move_on"].to_list() == [AS_OF + dt.timedelta(days=31)]


def test_column_edges_names_the_columns_it_can_answer():
    rules = load_rules_text(RULES, "examples.yaml")
    prepared = with_derived(rules, conform(example(employees=10), rules), AS_OF).collect()
    with pytest.raises(ValueError, match="'is_customer' is not a quantity"):
        column_edges(rules, prepared, ["is_customer"])
    # The accounts as read, without their derived values, are refused with what to pass instead.
    with pytest.raises(ValueError, match=r"no 'days_since_last_order'; pass kare_rules.engine.with_derived\(rules"):
        column_edges(rules, example(employees=10), ["employees"])
    out = column_edges(rules, prepared, ["employees"])
    assert out.rows() == [(490.0, "attain")] and out.columns == ["_edge_change__employees", "_edge_category__employees"]
    assert edge_columns(rules, prepared, AS_OF).schema == pl.Schema(EDGE_SCHEMA)


TIES = """
format: kare/v1
organization: ties
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  seats:      {type: integer}
  visits:     {type: integer}
  spend:      {type: float}
profiles:
  expand:    {when: {seats: {gt: 12}}}
  keep:      {when: {any: [{seats: {lt: 8}}, {visits: {lt: 8}}, {spend: {gte: 110}}]}}
  recapture: {when: {spend: {lte: 90}}}
"""


def test_ties_within_a_column_go_to_the_decrease_and_across_columns_to_the_column_declared_first():
    rules = load_rules_text(TIES, "ties.yaml")
    accounts = pl.DataFrame(
        {
            "account_id": ["T1", "T2", "T3"],
            "seats": [10, 10, 12],
            "visits": [100, 10, 100],
            "spend": [100.0, 50.0, 100.0],
        }
    )
    out = edges(rules, accounts, AS_OF).select("edge_category", "edge_column", "edge_threshold", "edge_change").rows()
    # T1 (unassigned): seats is 2 from 8 (keep) and from 12 (expand), spend 10 from 90 (recapture) and from 110
    # (keep): within each column the tie goes to the decrease; across them spend's 10/100 beats seats' 2/10.
    assert out[0] == ("recapture", "spend", 90.0, -10.0)
    # T2 (recapture): seats and visits are both 2/10 from keep; seats is declared first.
    assert out[1] == ("keep", "seats", 8.0, -2.0)
    # T3: seats is at 12; the next seat makes it expand (a change of 0 to the boundary).
    assert out[2] == ("expand", "seats", 12.0, 0.0)


# ---- embedded tests may expect the next move ---------------------------------------------------------

EMBEDDED = (
    RULES
    + """
tests:
  - name: keep lapses to recapture on the last day of the year
    account: {account_id: K1, is_customer: true, ever_customer: true, value_last_90d: 40000,
              last_order_date: 2026-10-01}
    as_of: 2026-11-01
    expect: keep
    next_category: recapture
    next_move_on: 2026-12-31
  - name: a prospect does not move with the date
    account: {account_id: P1, ever_customer: false, employees: 499}
    as_of: 2026-11-01
    expect: unassigned
    next_category: none
"""
)


def test_embedded_tests_check_the_next_move_and_say_what_they_got():
    from kare_rules.testing import run_rule_tests

    results = run_rule_tests(load_rules_text(EMBEDDED, "examples.yaml"))
    assert [(r.test.name, r.passed) for r in results] == [
        ("keep lapses to recapture on the last day of the year", True),
        ("a prospect does not move with the date", True),
    ]
    wrong = EMBEDDED.replace("next_move_on: 2026-12-31", "next_move_on: 2026-12-30").replace(
        "next_category: none", "next_category: attain"
    )
    results = run_rule_tests(load_rules_text(wrong, "examples.yaml"))
    assert [[(mm.what, mm.expected, mm.got) for mm in r.mismatches] for r in results] == [
        [("next_move_on", "2026-12-30", "2026-12-31")],
        [("next_category", "attain", "none")],
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("next_category: recapture", "next_category 'recaptur' is not a category; did you mean 'recapture'?"),
        # Too late: the fix is an earlier date, so the message gives the range, not "a later date".
        (
            "next_move_on: 2026-12-31",
            "next_move_on 2027-11-03 is not within the 366 days after as_of 2026-11-01; "
            "write a date from 2026-11-02 to 2027-11-02",
        ),
        ("next_category: none", "next_category: none expects no move, so there is no date; leave out next_move_on"),
    ],
)
def test_next_move_expectations_are_checked_with_their_location(change, message):
    bad = {
        "next_category: recapture": EMBEDDED.replace(change, "next_category: recaptur"),
        "next_move_on: 2026-12-31": EMBEDDED.replace(change, "next_move_on: 2027-11-03"),
        "next_category: none": EMBEDDED.replace(change, "next_category: none\n    next_move_on: 2026-12-01"),
    }[change]
    with pytest.raises(RuleFileError) as caught:
        load_rules_text(bad, "examples.yaml")
    text = str(caught.value)
    assert message in text and "examples.yaml:" in text


# ---- the command line ------------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from kare_rules.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def example_files(tmp_path) -> tuple[Path, Path]:
    rules = tmp_path / "examples" / "kare.yaml"
    rules.parent.mkdir()
    rules.write_text(RULES, encoding="utf-8")
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "account_id,is_customer,ever_customer,value_last_90d,employees,last_order_date\n"
        "K1,true,true,40000,,2026-10-01\n"
        "P1,false,false,,499,\n",
        encoding="utf-8",
    )
    return rules, accounts


def test_categorize_edges_writes_the_columns_and_counts_the_accounts_that_will_move(example_files, tmp_path, capsys):
    rules, accounts = example_files
    output = tmp_path / "out.parquet"
    common = ["--rules", str(rules), "--input", str(accounts), "--as-of", "2026-11-01", "--output", str(output)]
    code, out, _ = run_cli(capsys, "categorize", *common, "--edges", "--horizon", "60")
    assert code == 0
    assert "1 of them would change category within 60 days with their data unchanged (next_move_on)" in out
    got = pl.read_parquet(output).select("account_id", *EDGE_SCHEMA).rows()
    assert got == [
        ("K1", "recapture", dt.date(2026, 12, 31), "recapture", "value_last_90d", 40000.0, 35000.0, -5000.0),
        ("P1", None, None, "attain", "employees", 499.0, 500.0, 1.0),
    ]
    code, _, _ = run_cli(capsys, "categorize", *common, "--edges", "--horizon", "59")
    assert pl.read_parquet(output)["next_move_on"].to_list() == [None, None]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--edges", "--engine", "duckdb"], "--edges needs the Polars engine"),
        (["--horizon", "30"], "--horizon goes with --edges"),
        (["--edges", "--horizon", "0"], "--horizon takes a whole number of days from 1 to 3650, e.g. 30; got '0'"),
    ],
)
def test_categorize_edges_options_are_checked(example_files, tmp_path, capsys, extra, message):
    rules, accounts = example_files
    code, _, err = run_cli(capsys, "categorize", "--rules", str(rules), "--input", str(accounts), "--as-of",
                           "2026-11-01", "--output", str(tmp_path / "o.csv"), *extra)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err


def test_explain_says_the_next_move_and_the_nearest_change_in_words(example_files, capsys):
    rules, accounts = example_files
    code, out, _ = run_cli(capsys, "explain", "--rules", str(rules), "--input", str(accounts), "--as-of",
                           "2026-11-01", "--account", "K1")  # fmt: skip
    assert code == 0
    assert out.splitlines()[2] == (
        "next: keep → recapture on 2026-12-31, in 60 days, if no new order; "
        "nearest change: value_last_90d falls below 35000, now 40000 (→ recapture)"
    )
    _, out, _ = run_cli(capsys, "explain", "--rules", str(rules), "--input", str(accounts), "--as-of",
                        "2026-11-01", "--account", "P1")  # fmt: skip
    assert out.splitlines()[2] == (
        "next: unassigned: no move within 366 days with the data unchanged; "
        "nearest change: employees rises to 500, now 499 (→ attain)"
    )


@pytest.mark.parametrize(
    ("value", "shown", "change", "held"),
    [
        # rounded to 4 decimals these read 35000, the very threshold: "falls below 35000, now 35000"
        ("35000.00004", "35000.00004", "falls below 35000, now 35000.00004 (→ recapture)", "✓"),
        ("34999.99996", "34999.99996", "rises to 35000, now 34999.99996 (→ keep)", "✗"),
        # a rounding that does not cross the threshold stays as the reason shows it
        ("40000.123456", "40000.1235", "falls below 35000, now 40000.1235 (→ recapture)", "✓"),
    ],
)
def test_explain_never_rounds_a_value_onto_the_threshold_beside_it(example_files, capsys, value, shown, change, held):
    rules, accounts = example_files
    accounts.write_text(f"account_id,is_customer,ever_customer,value_last_90d,employees,last_order_date\n"
                        f"K2,true,true,{value},,2026-10-01\n", encoding="utf-8")  # fmt: skip
    code, out, _ = run_cli(capsys, "explain", "--rules", str(rules), "--input", str(accounts), "--as-of",
                           "2026-11-01", "--account", "K2")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[2].endswith(f"nearest change: value_last_90d {change}")
    assert any(line.endswith(f"{held} value_last_90d ≥ 35000   [value_last_90d = {shown}]") for line in lines)


def test_trends_are_held_over_time_and_are_quantities_of_their_own():
    import dataclasses

    from kare_rules import model as m

    base = load_rules_text(RULES, "examples.yaml")
    keep = base.categories["keep"]
    trend = m.Predicate("value_change", "gte", -1000.0)
    rules = dataclasses.replace(
        base,
        derived=(*base.derived, m.Derived("value_change", "change_of", ("value_last_90d",))),
        categories={**base.categories, "keep": dataclasses.replace(keep, when=m.All((keep.when, trend)))},
    )
    accounts = example(is_customer=True, ever_customer=True, value_last_90d=40000.0,
                       last_order_date=dt.date(2026, 10, 1))  # fmt: skip
    previous = pl.DataFrame({"account_id": ["A1"], "value_last_90d": [40500.0]})
    out = categorize(rules, accounts, AS_OF, previous=previous, edges=True).row(0, named=True)
    # the trend (-500) is held: the move is still the 91st day without an order
    assert (out["category"], out["next_category"], out["next_move_on"]) == ("keep", "recapture", dt.date(2026, 12, 31))
    # value_last_90d is 5000/40000 from its edge, the trend 500/1000: the value is nearer
    assert (out["edge_column"], out["edge_change"]) == ("value_last_90d", -5000.0)
    prepared = with_derived(rules, conform(accounts, rules), AS_OF, previous).collect()
    assert column_edges(rules, prepared, ["value_change"]).row(0) == (-500.0, "recapture")


def test_a_date_move_is_phrased_from_the_column_that_drives_it():
    from kare_rules.edges import _unchanged
    from kare_rules.loader import load_rules_text

    def phrase(column: str) -> str:
        text = (
            "format: kare/v1\norganization: words\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
            f"  {column}: {{type: date, nullable: true}}\nderived:\n  days: {{days_since: {column}}}\n"
            "profiles:\n  keep: {when: {days: {lte: 90}}}\n"
        )
        return _unchanged(load_rules_text(text, "words.yaml"))

    assert phrase("last_order_date") == "if no new order"
    assert phrase("last_payment_on") == "if no new payment"
    assert phrase("last_won") == "if last_won stays as it is"  # not "if no new won"
    assert phrase("churned_on") == "if nothing changes"


def test_the_nearest_change_in_words_shows_the_value_as_the_tree_does():
    from kare_rules.edges import describe_edges

    text = (
        "format: kare/v1\norganization: words\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        "  seats: {type: integer}\n  used: {type: integer}\nderived:\n  utilization: {ratio: [used, seats]}\n"
        "profiles:\n  expand: {when: {utilization: {gte: 0.7}}}\n"
    )
    rules = load_rules_text(text, "words.yaml")
    accounts = pl.DataFrame({"id": ["A"], "seats": [11], "used": [8]})  # 8/11 = 0.7272727272727273
    assert describe_edges(rules, accounts, AS_OF) == [
        "expand: no move within 366 days with the data unchanged; "
        "nearest change: utilization falls below 0.7, now 0.7273 (→ unassigned)"
    ]


def test_an_account_whose_compared_value_is_null_is_not_called_unmovable_in_words():
    # A prospect with an unknown headcount gets attain once it is known to be 500 or more: a null has no
    # nearest change, but "no change of one value moves it" would tell the reader to give up on it.
    from kare_rules.edges import describe_edges

    text = (
        "format: kare/v1\norganization: words\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        "  employees: {type: integer, nullable: true}\n  paying: {type: boolean}\n"
        "profiles:\n  attain: {when: {all: [{paying: false}, {employees: {gte: 500}}]}}\n"
    )
    rules = load_rules_text(text, "words.yaml")
    accounts = pl.DataFrame({"id": ["A", "B", "C"], "employees": [None, 480, 900], "paying": [False, False, True]})
    assert describe_edges(rules, accounts, AS_OF) == [
        "unassigned: no move within 366 days with the data unchanged; "
        "no change of one known value moves it; employees is null (a null has no nearest change)",
        "unassigned: no move within 366 days with the data unchanged; "
        "nearest change: employees rises to 500, now 480 (→ attain)",
        "unassigned: no move within 366 days with the data unchanged; no change of one value moves it",
    ]
