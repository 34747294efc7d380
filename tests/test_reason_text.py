"""Reasons and overlaps stay exactly what they were: the engine's explanations against a frozen copy of the
implementation before issue 11's speed-up (tests/reference/explanations.py), on random rule files and data.

The other tests pin reason text on a few hand-worked accounts (test_operators.py) and its first words on
random ones (test_property_engine.py); this one pins every character, on frames large enough and with
value ranges narrow or wide enough to take every path the engine has for putting values into text."""

from __future__ import annotations

import datetime as dt
import math
import random

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from kare_rules import categorize, engine
from kare_rules.loader import load_rules, load_rules_text
from kare_rules.synth import synthesize
from tests.reference.explanations import categorize_explained
from tests.rulegen import load_generated
from tests.test_property_engine import AS_OF, DATA, INPUTS, KEY, POLARS, rule_files

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@st.composite
def accounts(draw) -> pl.DataFrame:
    """Up to 600 accounts. Each column draws from a few values of its pool (a narrow range, so values
    repeat) or from the whole pool (extremes included), with or without nulls."""
    rng = draw(st.randoms(use_true_random=False))
    n = draw(st.sampled_from([1, 5, 60, 600]))
    columns: dict[str, list] = {KEY: [f"r{i}" for i in range(n)]}
    for name, ctype in INPUTS.items():
        if name == KEY:
            continue
        pool = [draw(DATA[ctype]) for _ in range(draw(st.sampled_from([1, 3, 12])))]
        nulls = draw(st.sampled_from([0.0, 0.1, 1.0]))
        columns[name] = [None if rng.random() < nulls else rng.choice(pool) for _ in range(n)]
    return pl.DataFrame(columns, schema={name: POLARS[t] for name, t in INPUTS.items()})


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=rule_files(), frame=accounts())
def test_explanations_match_the_frozen_implementation_on_random_rules_and_accounts(text, frame):
    rules = load_generated(text, "property.yaml")
    assert_frame_equal(categorize(rules, frame, AS_OF), categorize_explained(rules, frame, AS_OF))


def test_explanations_match_the_frozen_implementation_on_the_bundled_and_benchmark_rules():
    for path in ("rules/cloudnine", "rules/forge-industrial", "benchmarks/rules/bench"):
        rules = load_rules(ROOT / path)
        frame = synthesize(rules, 20_000, AS_OF, seed=3)
        expected = categorize_explained(rules, frame, AS_OF)
        assert expected["reason"].n_unique() > 1000  # values in the text, not only fixed reasons
        assert_frame_equal(categorize(rules, frame, AS_OF), expected)


def test_explanations_match_on_wide_and_extreme_integers_dates_and_floats():
    # One row each at the types' extremes beside many ordinary ones: value ranges too wide for a table.
    inputs = ", ".join(f"{n}: {{type: {t}, {'key' if n == KEY else 'nullable'}: true}}" for n, t in INPUTS.items())
    rules = load_rules_text(
        f"""\
format: kare/v1
organization: extremes
version: 1.0.0
inputs: {{{inputs}}}
derived: {{since_d1: {{days_since: d1}}}}
profiles:
  keep: {{when: {{all: [{{i1: {{gte: -9223372036854775808}}}}, {{f1: {{lt: 1.0e+300}}}}, {{since_d1: {{ne: 5}}}}]}}}}
  attain: {{when: {{not: {{any: [{{i2: {{gt: 0}}}}, {{b1: true}}, {{d1: {{lte: 2026-01-01}}}}, {{s1: x}}]}}}}}}
""",
        "extremes.yaml",
    )
    rng = random.Random(7)
    n = 500
    days = [rng.randint(0, 40) for _ in range(n - 2)]
    frame = pl.DataFrame(
        {
            KEY: [f"r{i}" for i in range(n)],
            "s1": [rng.choice(["a", "o'brien", None, "naïve"]) for _ in range(n)],
            "i1": [2**63 - 1, -(2**63)] + [rng.randint(-5, 5) for _ in range(n - 2)],
            "i2": [rng.choice([-3, 0, None, -(2**63)]) for _ in range(n)],
            "f1": [1e-7, -0.0, 1 / 3, 2.5e15] + [rng.choice([0.25, None, 100.0]) for _ in range(n - 4)],
            "f2": [None] * n,
            "b1": [rng.choice([True, False, None]) for _ in range(n)],
            "d1": [dt.date(1, 1, 1), dt.date(9999, 12, 31)] + [AS_OF - dt.timedelta(d) for d in days],
            "t1": [None] * n,
        },
        schema={name: POLARS[t] for name, t in INPUTS.items()},
    )
    expected = categorize_explained(rules, frame, AS_OF)
    assert set(expected["category"]) == {"keep", "attain", "unassigned"}
    assert_frame_equal(categorize(rules, frame, AS_OF), expected)


def test_floats_in_a_narrow_range_are_looked_up_with_the_text_each_value_would_get():
    # margin-like floats: a table of texts by key (rounded value × 10**4) when every value's text is its
    # key's text; not when one rounds to -0.0 (shown "-0.0", key 0 means "0.0"), is NaN or infinite, or is
    # too large for its key to give its text.
    rules = load_rules_text(
        """\
format: kare/v1
organization: margins
version: 1.0.0
inputs: {id: {type: string, key: true}, margin: {type: float, nullable: true}, paying: {type: boolean}}
profiles:
  keep: {when: {all: [{paying: true}, {margin: {lt: 0.5}}]}}
  attain: {when: {all: [{paying: false}, {not: {margin: {gte: 0.5}}}]}}
""",
        "margins.yaml",
    )
    rng = random.Random(11)
    n = 2_000
    clean = [round(rng.uniform(-0.2, 0.2), rng.choice([2, 4, 6, 9])) for _ in range(n)]
    frames = {
        "clean": clean,
        "negative zero": [*clean[:-1], -0.00003],
        "NaN": [*clean[:-1], float("nan")],
        "infinite": [*clean[:-1], float("-inf")],
        # from about 1e12 on, a value's key stands for a neighbouring double: shown in other last digits
        "beyond keys": [-3443394203527.4907 - i * 0.0001 for i in range(n)],
    }
    compiler = engine.PolarsCompiler(rules)
    for label, margins in frames.items():
        margins = [None if i % 17 == 0 else v for i, v in enumerate(margins)]
        paying = [i % 2 == 0 for i in range(n)]
        frame = pl.DataFrame({"id": [f"a{i}" for i in range(n)], "margin": margins, "paying": paying})
        got, want = categorize(rules, frame, AS_OF), categorize_explained(rules, frame, AS_OF)
        differ = got.join(want, on="id").filter(pl.col("reason") != pl.col("reason_right"))
        assert got.equals(want), f"{label}: {differ}"
        tabled = engine._key_ranges(engine._bounds(frame.lazy(), compiler, {"margin"}).collect(), compiler, 4096)
        assert ("margin" in tabled) == (label in ("clean", "negative zero")), label
    assert "margin < 0.5 [-0.0]" in categorize(rules, frame.with_columns(margin=pl.lit(-0.00003)), AS_OF)["reason"][0]


def test_a_float_under_the_table_bound_is_shown_as_its_key_shows_it():
    # engine.FLOAT_KEYS_BELOW: every value under it in magnitude (but -0.0, handled apart) gets from its key
    # the text formatting it gives; over it, some do not (so the bound is not loose by orders of magnitude).
    rng = random.Random(5)
    compiler = engine.PolarsCompiler(load_rules_text(
        "format: kare/v1\norganization: f\nversion: 1.0.0\ninputs: {id: {type: string, key: true}, x: {type: float}}\n"
        "profiles: {keep: {when: {x: {lt: 0}}}}\n", "f.yaml"))  # fmt: skip

    def differing(low_exp: float, high_exp: float) -> int:
        values = []
        for _ in range(200_000):
            v = rng.choice([-1, 1]) * 10 ** rng.uniform(low_exp, high_exp)
            kind = rng.random()
            if kind < 0.3:
                v = round(v, rng.randint(0, 12))
            elif kind < 0.5:
                v = float(f"{int(v * 1e4)}5e-5")  # halfway at the fifth decimal
            values.append(v)
        shown = pl.col("x").round(engine.SHOWN_DECIMALS)
        texts = pl.DataFrame({"x": values}).select(
            keyed=compiler.keyed_value("x", compiler.value_key("x")).cast(pl.String), shown=shown.cast(pl.String)
        )
        return texts.filter((pl.col("keyed") != pl.col("shown")) & (pl.col("shown") != "-0.0")).height

    bound = math.log10(engine.FLOAT_KEYS_BELOW)
    assert differing(-9, bound) == 0
    assert differing(bound + 1, bound + 4) > 1000


def test_a_rule_set_is_compiled_once_and_its_changed_copy_on_its_own():
    # PolarsCompiler.of / compile_polars.compiled: the expressions of a RuleSet object are built once and
    # reused by every call; a copy with other rules (dataclasses.replace) is another object, compiled anew.
    from dataclasses import replace

    from kare_rules import compile_polars
    from kare_rules.edges import _Space

    rules = load_rules(ROOT / "benchmarks/rules/bench")
    frame = synthesize(rules, 3_000, AS_OF, seed=4)
    first = categorize(rules, frame, AS_OF, edges=True)
    compiler = compile_polars.PolarsCompiler.of(rules)
    assert compiler is compile_polars.PolarsCompiler.of(rules) and _Space.of(rules) is _Space.of(rules)
    assert compiler.lookup() is compiler.lookup() and compiler.mask() is compiler.mask()
    assert_frame_equal(categorize(rules, frame, AS_OF, edges=True), first)
    assert_frame_equal(first.drop(*engine_extra(first)), categorize_explained(rules, frame, AS_OF))

    # keep rises to every paying account with a margin: another category mix, another compiler
    keep = rules.categories["keep"]
    stricter = replace(keep, when=rules.categories["expand"].when)
    changed = replace(rules, categories={**rules.categories, "keep": stricter})
    assert compile_polars.PolarsCompiler.of(changed) is not compiler
    assert_frame_equal(categorize(changed, frame, AS_OF), categorize_explained(changed, frame, AS_OF))
    assert not categorize(changed, frame, AS_OF)["category"].equals(first["category"])

    # bounded: after more rule sets than it keeps, the first is compiled again
    for i in range(compile_polars._COMPILED_SIZE):
        compile_polars.PolarsCompiler.of(replace(rules, version=f"9.0.{i}"))
    assert compile_polars.PolarsCompiler.of(rules) is not compiler


def engine_extra(result: pl.DataFrame) -> list[str]:
    """The columns `categorize(edges=True)` adds to the explained result."""
    from kare_rules.edges import EDGE_COLUMNS

    return [*EDGE_COLUMNS, "watches"]


def test_braces_in_rule_values_and_in_the_data_read_as_written():
    # Braces from the rule file or the data are text, never placeholders (Polars' pl.format would take them
    # so; it also panicked on inputs in many chunks, so reasons are built with concat_str).
    rules = load_rules_text(
        """\
format: kare/v1
organization: braces
version: 1.0.0
inputs: {id: {type: string, key: true}, tag: {type: string, nullable: true}, n: {type: integer, nullable: true}}
profiles:
  keep: {when: {all: [{tag: {in: ['{}', '{n}', 'a}{b', '{{x}}']}}, {n: {gte: 1}}]}}
  attain: {when: {not: {tag: {eq: '{0}'}}}}
""",
        "braces.yaml",
    )
    tags = ["{}", "{n}", "a}{b", "{{x}}", "{0}", None, "{"]
    frame = pl.DataFrame({"id": [f"a{i}" for i in range(len(tags) * 3)], "tag": tags * 3, "n": [1, 2, None] * 7})
    got = categorize(rules, frame, AS_OF)
    assert_frame_equal(got, categorize_explained(rules, frame, AS_OF))
    assert got.filter(pl.col("id") == "a1")["reason"].item() == (
        "keep: tag in ['{}', '{n}', 'a}{b', '{{x}}'] ['{n}'] and n ≥ 1 [2]"
    )
