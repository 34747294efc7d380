"""Early warning (issue 11): when each account's category would change with its data unchanged, and the
nearest change of one quantity that would change it. Polars engine only; the SQL engines give categories.

Two questions per account, both answered exactly, never by sampling:

- **The next move** (`next_category`, `next_move_on`): with the data unchanged only the date-derived
  values move (`days_since` grows by one a day, `days_until` shrinks; trends and ratios are held). A
  predicate on such a value can change its truth only at a few integer points that follow from its
  threshold, so the category is constant between them; the first point within the horizon where it
  differs is the move.
- **The nearest value change** (`edge_*`): the category as a function of one quantity changes only at
  that quantity's thresholds, so each threshold `c` and its representable neighbours are the only
  candidates ("at c" counts when the value is not c, "above c" when it is at most c, "below c" when it
  is at least c; the change is `c − value`).

How it stays cheap: every distinct predicate of the rules is evaluated once per account (two-valued,
null is false) and packed into an integer bit pattern; the category is a pure function of that pattern
(all/any over two-valued truths, `not` over `truth()`, exactly as PolarsCompiler evaluates it). With
`categorize(..., edges=True)` the pattern is computed in categorize's own pass over the accounts, and
the categories' mask is looked up from it instead of evaluating the conditions again. A candidate
"quantity q := v" replaces q's predicate bits by constants, so its category depends only on the
account's pattern: every answer is tabulated per distinct pattern present (usually a few hundred; the
patterns that lead to the same categories share their rows; a rule set keeps them for its next call) and
per position of the value among the thresholds, and each account pays a few gathers. The pattern also
says which quantities can move the account at all (usually one or two): the accounts are split by that
set, each part computes the nearest change of its own quantities only, and an account that can cross
one quantity only needs no ratios, just the nearer side. Tables hold no nulls where a gather reads them
per account (a gather from a table with nulls costs about three times as much); "no edge" and "no move"
are their own entries.

Ties: across quantities the smallest `|c − value| / max(|value|, |c|)` wins (0 when both are 0), and on
equal ratios the column declared first (`RuleSet.columns` order: inputs, then derived). Within a
column the smallest `|c − value|` wins; on equal distance the decrease (the threshold below the
value), and at one threshold a move onto it before a step past it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from collections.abc import Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES, PolarsCompiler, columns_used, compiled, predicates

# The columns `edge_columns` adds, in order, and their types (the account_categories contract).
EDGE_SCHEMA: dict[str, pl.DataType] = {
    "next_category": pl.String(),
    "next_move_on": pl.Date(),
    "edge_category": pl.String(),
    "edge_column": pl.String(),
    "edge_value": pl.Float64(),
    "edge_threshold": pl.Float64(),
    "edge_change": pl.Float64(),
}
EDGE_COLUMNS: tuple[str, ...] = tuple(EDGE_SCHEMA)

# Up to this many distinct predicates the category of every bit pattern is tabulated at once (2**n
# rows, evaluated by Polars); beyond it patterns are evaluated one by one in Python as they occur.
_TABLE_BITS = 20
_WORD = 63  # predicate bits per Int64 word (the sign bit is left alone)
# Plans are collected by the streaming engine: it works through the accounts in batches, so the many
# intermediate columns of an expression stay small and in cache (measured: 20–25 % less time at 1M and
# 10M accounts than the in-memory engine, whose intermediates are whole columns).
_ENGINE = "streaming"
_COMPARE_STEPS = 8  # up to this many steps a value's position among thresholds is counted, not searched


# ---- the predicate space: distinct predicates, bit patterns, the category of a pattern ----------


class _Space:
    """The distinct predicates of a rule set and the category as a function of their truths."""

    def __init__(self, rules: m.RuleSet):
        self.rules = rules
        self.compiler = PolarsCompiler.of(rules)
        self.ordered = rules.ordered()
        self.names = [r.name for r in self.ordered] + [m.UNASSIGNED]
        self.preds: list[m.Predicate] = list(dict.fromkeys(predicates(rules)))  # distinct, first seen first
        self.index: dict[m.Predicate, int] = {p: i for i, p in enumerate(self.preds)}
        self.n = len(self.preds)
        self.words = max(1, -(-self.n // _WORD))
        tests = [self._compile(r.when) for r in self.ordered]
        unassigned = len(self.ordered)

        def category(bits: int) -> int:
            return next((i for i, t in enumerate(tests) if t(bits)), unassigned)

        self._slow = lru_cache(maxsize=1 << 20)(category)
        self._rows: dict[str, _ColumnRows] = {}
        self._lock = threading.Lock()
        self._table: list[int] | None = None
        self._masks: pl.Series | None = None  # per pattern: the categories that held (`_mask`)
        if self.n <= _TABLE_BITS:
            self._table, self._masks = self._tabulate()

    @classmethod
    def of(cls, rules: m.RuleSet) -> _Space:
        """The predicate space of `rules`, made once per RuleSet object (`compile_polars.compiled`): its
        table of every pattern's category and its expressions are the same at every call."""
        return compiled(rules, cls.__qualname__, cls)

    def _compile(self, cond: m.Condition) -> Callable[[int], bool]:
        """The condition as a function of the bit pattern: two-valued, as `PolarsCompiler.truth`."""
        if isinstance(cond, m.Predicate):
            bit = 1 << self.index[cond]
            return lambda b: bool(b & bit)
        if isinstance(cond, m.TraitRef):
            return self._compile(self.rules.traits[cond.name])
        if isinstance(cond, m.All | m.Any_):
            parts = [self._compile(c) for c in cond.items]
            if isinstance(cond, m.All):
                return lambda b: all(p(b) for p in parts)
            return lambda b: any(p(b) for p in parts)
        inner = self._compile(cond.item)
        return lambda b: not inner(b)

    def _tabulate(self) -> tuple[list[int], pl.Series]:
        """The category index and the mask (`PolarsCompiler.mask`) of every pattern 0 .. 2**n - 1,
        evaluated by Polars in one pass."""
        b = pl.col("b")

        def expr(cond: m.Condition) -> pl.Expr:
            if isinstance(cond, m.Predicate):
                return (b & (1 << self.index[cond])) != 0
            if isinstance(cond, m.TraitRef):
                return expr(self.rules.traits[cond.name])
            if isinstance(cond, m.All):
                return pl.all_horizontal([expr(c) for c in cond.items])
            if isinstance(cond, m.Any_):
                return pl.any_horizontal([expr(c) for c in cond.items])
            return ~expr(cond.item)

        chain: pl.Expr = pl.lit(len(self.ordered), dtype=pl.Int32)
        for i in reversed(range(len(self.ordered))):
            chain = pl.when(expr(self.ordered[i].when)).then(pl.lit(i, dtype=pl.Int32)).otherwise(chain)
        held = [pl.lit(0, dtype=pl.UInt8)]
        held += [expr(r.when).cast(pl.UInt8) * pl.lit(1 << i, dtype=pl.UInt8) for i, r in enumerate(self.ordered)]
        frame = pl.select(pl.int_range(0, 1 << self.n, dtype=pl.Int64).alias("b")).select(
            chain.alias("c"), pl.sum_horizontal(held).cast(pl.UInt8).alias("m")
        )
        return frame["c"].to_list(), frame["m"]

    def mask_expr(self) -> pl.Expr | None:
        """`_mask` (which categories held) looked up by the bit pattern, when the patterns are
        tabulated and fit one UInt32 word; else None (the caller evaluates the conditions)."""
        if self._masks is None or self.words != 1 or self.n > 31:
            return None
        return pl.lit(self._masks).gather(pl.col("_edge_w0"))

    def category(self, bits: int) -> int:
        return self._table[bits] if self._table is not None else self._slow(bits)

    def word_exprs(self) -> list[pl.Expr]:
        """The bit pattern of every account: one UInt32 word `_edge_w0` for up to 31 predicates (the
        common case, and a native gather index), else Int64 words `_edge_w0`, `_edge_w1`, ... of
        _WORD bits."""
        return list(self._word_exprs)

    @cached_property
    def _word_exprs(self) -> tuple[pl.Expr, ...]:
        small = self.words == 1 and self.n <= 31
        dtype = pl.UInt32 if small else pl.Int64
        out = []
        for w in range(self.words):
            chunk = self.preds[w * _WORD : (w + 1) * _WORD]
            # when/then/otherwise takes a null truth as false and writes the bit in one pass (half the
            # time of fill_null, cast and multiply)
            bits = [
                pl.when(self.compiler.predicate(p)).then(pl.lit(1 << i, dtype=dtype)).otherwise(pl.lit(0, dtype=dtype))
                for i, p in enumerate(chunk)
            ]
            out.append((pl.sum_horizontal(bits) if bits else pl.lit(0)).cast(dtype).alias(f"_edge_w{w}"))
        return tuple(out)

    def bits_at(self, column: str, values: Sequence[object]) -> list[int]:
        """For each value of `column`, the bits of the predicates on it when the column holds that
        value (evaluated by the engine's own predicate expressions, so the semantics cannot drift)."""
        return self.bits_at_many({column: values})[column]

    def bits_at_many(self, wanted: dict[str, Sequence[object]]) -> dict[str, list[int]]:
        """`bits_at` of several columns in one evaluation (each column's values padded to the longest
        list with its first value; the padding's bits are not read)."""
        empty: dict[str, list[int]] = {c: [] for c, v in wanted.items() if not v}
        wanted = {c: list(v) for c, v in wanted.items() if v}
        if not wanted:
            return empty
        height = max(len(v) for v in wanted.values())
        schema = {c: POLARS_TYPES[self.rules.columns[c]] for c in wanted}
        frame = pl.DataFrame({c: v + v[:1] * (height - len(v)) for c, v in wanted.items()}, schema=schema)
        on = [(i, p) for i, p in enumerate(self.preds) if p.column in wanted]
        truths = frame.select([self.compiler.truth(p).alias(f"p{i}") for i, p in on])
        out = {c: [0] * len(v) for c, v in wanted.items()}
        for i, p in on:
            bits = out[p.column]
            for row, held in enumerate(truths[f"p{i}"].to_list()[: len(bits)]):
                if held:
                    bits[row] |= 1 << i
        return {**empty, **out}

    def mask_of(self, column: str) -> int:
        return sum(1 << i for i, p in enumerate(self.preds) if p.column == column)

    def column_rows(self, column: str) -> _ColumnRows:
        """The `_ColumnRows` of a quantity, made once."""
        with self._lock:
            if column not in self._rows:
                self._rows[column] = _ColumnRows(self, column)
            return self._rows[column]


@dataclass
class _Patterns:
    """The distinct bit patterns present, each account's dense index into them (`_edge_pat`), and how
    many accounts have each (counted only when asked for)."""

    bits: list[int]
    frame: pl.DataFrame  # the working frame, with `_edge_pat` (UInt32)
    known_counts: list[int] | None = None

    @cached_property
    def counts(self) -> list[int]:
        if self.known_counts is not None:
            return self.known_counts
        tally = self.frame.get_column("_edge_pat").value_counts()
        out = [0] * len(self.bits)
        for d, count in tally.iter_rows():
            out[d] = count
        return out


def _patterns(space: _Space, frame: pl.DataFrame) -> _Patterns:
    words = [f"_edge_w{w}" for w in range(space.words)]
    if space.words == 1 and space.n <= _TABLE_BITS:
        # Which of the 2**n patterns occur: a flag per pattern set by one scatter (a third of the time
        # of counting them); their dense index is the number of occurring patterns below them.
        word = frame.get_column(words[0])
        present = pl.zeros(1 << space.n, dtype=pl.Boolean, eager=True).scatter(word, True).arg_true()
        dense = pl.zeros(1 << space.n, dtype=pl.UInt32, eager=True)
        dense = dense.scatter(present, pl.int_range(present.len(), dtype=pl.UInt32, eager=True))
        pat = pl.lit(dense).gather(pl.col(words[0])).alias("_edge_pat")
        return _Patterns(present.to_list(), frame.with_columns(pat))
    distinct = frame.group_by(words, maintain_order=True).len("_edge_n").with_row_index("_edge_pat")
    bits = [sum(row[w] << (_WORD * w) for w in range(space.words)) for row in distinct.select(words).iter_rows()]
    joined = frame.join(distinct.drop("_edge_n"), on=words, how="left", maintain_order="left")
    return _Patterns(bits, joined, distinct["_edge_n"].to_list())


# ---- the nearest value change -------------------------------------------------------------------


def edge_quantities(rules: m.RuleSet) -> list[str]:
    """The numeric columns the rules compare with gt/gte/lt/lte/between, in declaration order: the
    quantities an edge can move (integer and float inputs and every numeric derived value)."""
    return _quantities(rules, predicates(rules))


def _quantities(rules: m.RuleSet, preds: Sequence[m.Predicate]) -> list[str]:
    ordering = {"gt", "gte", "lt", "lte", "between"}
    compared = {p.column for p in preds if p.op in ordering}
    return [c for c, t in rules.columns.items() if t in m.NUMERIC_TYPES and c in compared]


def _thresholds(space: _Space, column: str) -> list[float]:
    values: set[float] = set()
    for p in space.preds:
        if p.column != column or p.op == "is_null":
            continue
        for v in p.value if isinstance(p.value, tuple) else (p.value,):
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                values.add(float(v))
    return sorted(values)


@dataclass
class _Candidates:
    """Per threshold i: the value below (index 2i of `lower`), at (2i+1 of `lower`, 2i of `upper`) and
    above (2i+1 of `upper`) it; None where not representable (an integer column, a fractional c)."""

    thresholds: list[float]
    lower: list[float | int | None]
    upper: list[float | int | None]


def _candidates(thresholds: list[float], integer: bool) -> _Candidates:
    lower: list[float | int | None] = []
    upper: list[float | int | None] = []
    for c in thresholds:
        if integer:
            at = int(c) if c.is_integer() else None
            lower += [math.ceil(c) - 1, at]
            upper += [at, math.floor(c) + 1]
        else:
            lower += [math.nextafter(c, -math.inf), c]
            upper += [c, math.nextafter(c, math.inf)]
    return _Candidates(thresholds, lower, upper)


@dataclass
class _ColumnEdge:
    """One quantity's nearest edge, tabulated per (row set, position of the value among the thresholds):
    the nearest threshold below and above whose crossing changes the category, and the category each
    side leads to. Patterns that lead to the same categories share one row set (`memo[pattern]`), so
    the tables grow with the row sets (usually a few dozen), not with the patterns. Table index
    j = memo * positions + position; `cats[2 * j + side]` (side 0 = lower). Positions: 2i = strictly
    between thresholds i-1 and i, 2i+1 = exactly at threshold i."""

    column: str
    integer: bool
    thresholds: list[float]
    memo: list[int]  # per pattern: its row set
    lower: list[float | None] = field(default_factory=list)  # per j
    upper: list[float | None] = field(default_factory=list)  # per j
    cats: list[int | None] = field(default_factory=list)  # per 2j + side
    at: list[bool] = field(default_factory=list)  # per cats entry: the value moves onto c (not past it)
    live_memo: list[bool] = field(default_factory=list)  # per row set: some value changes its category
    # The steps of `_position` a predicate's bit already answers for a finite value (step index →
    # predicate index, negated), and per pattern memo * positions plus those steps' count.
    known: dict[int, tuple[int, bool]] = field(default_factory=dict)
    known_bases: list[int] = field(default_factory=list)

    @property
    def positions(self) -> int:
        return 2 * len(self.thresholds) + 1

    @cached_property
    def live(self) -> list[bool]:
        """Per pattern: some value of the column changes its category."""
        return [self.live_memo[r] for r in self.memo]

    @cached_property
    def bases(self) -> pl.Series:
        """Per pattern: memo * positions, the start of its rows (UInt32, a native gather index)."""
        positions = self.positions
        return pl.Series([r * positions for r in self.memo], dtype=pl.UInt32)

    @cached_property
    def sides(self) -> tuple[pl.Series, pl.Series]:
        """`lower` and `upper` as Float64 series, a missing side as ∓inf (built once, read per group)."""
        return (
            pl.Series([-math.inf if v is None else v for v in self.lower], dtype=pl.Float64),
            pl.Series([math.inf if v is None else v for v in self.upper], dtype=pl.Float64),
        )


def _candidate_values(space: _Space, column: str) -> tuple[bool, _Candidates, list[float | int]]:
    """Whether the column is an integer, its candidates, and the values they take."""
    integer = space.rules.columns[column] == "integer"
    cands = _candidates(_thresholds(space, column), integer)
    return integer, cands, [v for v in (*cands.lower, *cands.upper) if v is not None]


def _tabulate_columns(space: _Space, pats: _Patterns, columns: Sequence[str]) -> list[_ColumnEdge]:
    """`_ColumnEdge` of each column for the patterns present."""
    return [space.column_rows(c).edge(pats.bits) for c in columns]


# The most patterns a `_ColumnRows` keeps: rules with many predicates can meet a new pattern in almost every
# account, and a long-lived process must not keep them all.
_KEPT_PATTERNS = 1 << 18


class _ColumnRows:
    """One quantity's rows (`_column_rows`) of every pattern met so far, kept by its `_Space`: they
    depend on the rules and the pattern only, so each pattern is worked out once per process, not once
    per call (a call then pays a lookup per pattern present)."""

    def __init__(self, space: _Space, column: str):
        integer, cands, values = _candidate_values(space, column)
        self.space, self.column, self.integer, self.thresholds = space, column, integer, cands.thresholds
        self.keep = ~space.mask_of(column)
        at = dict(zip(values, space.bits_at(column, values), strict=True))
        lbits = [at.get(v) if v is not None else None for v in cands.lower]
        ubits = [at.get(v) if v is not None else None for v in cands.upper]
        self.cands_bits, self.split = [*lbits, *ubits], len(lbits)
        self.known = _known_steps(space, column, self.thresholds, integer)
        self.known_mask = sum(1 << i for i, _ in self.known.values())
        self.positions = 2 * len(self.thresholds) + 1
        self.lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        """Start again with no pattern known (and so no memory held for any)."""
        # The categories the candidates lead to depend on the pattern only through its other predicates'
        # bits (`rest`), shared by the patterns that differ in this column's bits only: worked out once
        # per rest (None: the candidate is not representable, it keeps the current category).
        self.leads: dict[int, tuple[int | None, ...]] = {}
        # The rows depend on the pattern only through its category and the categories its candidates
        # lead to: patterns that agree on those share them, so each is worked out and stored once.
        self.done: dict[tuple[int, tuple[int | None, ...]], int] = {}
        self.lower: list[float | None] = []
        self.upper: list[float | None] = []
        self.cats: list[int | None] = []
        self.at: list[bool] = []
        self.live_memo: list[bool] = []
        self.counted: dict[int, int] = {}  # the known steps' count per value of their predicates' bits
        self.of: dict[int, tuple[int, int]] = {}  # per pattern: its row set, and row set * positions + count

    def edge(self, bits: list[int]) -> _ColumnEdge:
        """The `_ColumnEdge` of the patterns `bits` (in their order)."""
        with self.lock:
            if len(self.of) + len(bits) > _KEPT_PATTERNS:
                self._forget()
            of = self.of
            for b in bits:
                if b not in of:
                    of[b] = self._add(b)
            found = [of[b] for b in bits]
            return _ColumnEdge(
                self.column, self.integer, self.thresholds, [r for r, _ in found], list(self.lower),
                list(self.upper), list(self.cats), list(self.at), list(self.live_memo), self.known,
                [base for _, base in found],
            )  # fmt: skip

    def _add(self, b: int) -> tuple[int, int]:
        category = self.space._table.__getitem__ if self.space._table is not None else self.space.category
        rest = b & self.keep
        lead = self.leads.get(rest)
        if lead is None:
            lead = self.leads[rest] = tuple(category(rest | x) if x is not None else None for x in self.cands_bits)
        cur = category(b)
        r = self.done.get((cur, lead))
        if r is None:
            r = self.done[(cur, lead)] = len(self.done)
            both = [cur if c is None else c for c in lead]
            rows = _column_rows(self.thresholds, cur, both[: self.split], both[self.split :])
            self.lower += rows[0]
            self.upper += rows[1]
            self.cats += rows[2]
            self.at += rows[3]
            self.live_memo.append(rows[4])
        kb = b & self.known_mask
        count = self.counted.get(kb)
        if count is None:
            count = self.counted[kb] = sum((kb >> i & 1) ^ negated for i, negated in self.known.values())
        return r, r * self.positions + count


def _steps(thresholds: list[float], integer: bool) -> list[float]:
    """What `_position` counts: x ≥ step, per threshold c the steps c and its successor."""
    return [b for c in thresholds for b in (c, _successor(c, integer))]


def _known_steps(space: _Space, column: str, thresholds: list[float], integer: bool) -> dict[int, tuple[int, bool]]:
    """The steps whose count a predicate's bit already holds for a finite value x: `gte c` is x ≥ c,
    `gt c` is x ≥ successor(c), `lt c` and `lte c` their negations (one predicate per step)."""
    steps = _steps(thresholds, integer)
    out: dict[int, tuple[int, bool]] = {}
    for i, p in enumerate(space.preds):
        if p.column != column or p.op not in ("gt", "gte", "lt", "lte") or isinstance(p.value, bool):
            continue
        if not isinstance(p.value, int | float) or not math.isfinite(p.value):
            continue
        c = float(p.value)
        step = c if p.op in ("gte", "lt") else _successor(c, integer)
        free = [k for k, s in enumerate(steps) if s == step and k not in out]
        if free:
            out[free[0]] = (i, p.op in ("lt", "lte"))
    return out


def _column_rows(
    thresholds: list[float], cur: int, lcat: list[int], ucat: list[int]
) -> tuple[list, list, list, list, bool]:
    """One pattern's rows of a `_ColumnEdge` (lower, upper, cats, at, live) from its category `cur` and
    the categories its lower and upper candidates lead to."""
    k = len(thresholds)
    lower: list[float | None] = []
    upper: list[float | None] = []
    cats: list[int | None] = []
    at: list[bool] = []
    # Candidates in axis order: lower = [below_0, at_0, below_1, at_1, ...], upper = [at_0, above_0,
    # ...]. At position p the lower side's best is the last differing candidate of lower[:p] (the
    # highest threshold below, "at" before the step below it), the upper's the first of upper[p:].
    last: list[int | None] = [None]
    for j, c in enumerate(lcat):
        last.append(j if c != cur else last[-1])
    first: list[int | None] = [None] * (2 * k + 1)
    for j in reversed(range(2 * k)):
        first[j] = j if ucat[j] != cur else first[j + 1]
    for p in range(2 * k + 1):
        jl, ju = last[p], first[p]
        lower.append(thresholds[jl // 2] if jl is not None else None)
        upper.append(thresholds[ju // 2] if ju is not None else None)
        cats += [lcat[jl] if jl is not None else None, ucat[ju] if ju is not None else None]
        at += [jl is not None and jl % 2 == 1, ju is not None and ju % 2 == 0]
    live = any(c != cur for c in lcat) or any(c != cur for c in ucat)
    return lower, upper, cats, at, live


def _successor(c: float, integer: bool) -> float:
    """The smallest value x of the column's type with c < x ⟺ x ≥ successor."""
    if integer:
        return c + 1 if c.is_integer() else c
    return math.nextafter(c, math.inf)


def _x(column: str) -> pl.Expr:
    return pl.col(f"_edge_x__{column}")


def _quantity(e: _ColumnEdge, rows: pl.Series | None = None) -> pl.Expr:
    """A quantity as Float64 (`_edge_x__<col>`), of the given rows only (all when None); a NaN or
    infinite value is null (it has no edge). Cast where it is read, so that accounts which cannot cross
    the column's edges never pay for it."""
    x = (pl.col(e.column) if rows is None else pl.col(e.column).gather(rows)).cast(pl.Float64)
    return (x if e.integer else pl.when(x.is_finite()).then(x)).alias(f"_edge_x__{e.column}")


def _position(e: _ColumnEdge, x: pl.Expr, skip: Container[int] = ()) -> pl.Expr:
    """The position of x among the column's thresholds (UInt32): #(c < x) + #(c ≤ x) in one count, as
    c ≤ x counts c and c < x counts c's successor (no value lies strictly between c and its next
    representable value). Steps in `skip` are left out (counted elsewhere)."""
    steps = [s for k, s in enumerate(_steps(e.thresholds, e.integer)) if k not in skip]
    if not steps:
        return pl.lit(0, dtype=pl.UInt32)
    if len(steps) <= _COMPARE_STEPS:  # a few comparisons cost less than a binary search per value
        return (
            pl.sum_horizontal([(x >= s).cast(pl.UInt32) for s in steps])
            if len(steps) > 1
            else (x >= steps[0]).cast(pl.UInt32)
        )
    return pl.lit(pl.Series(steps, dtype=pl.Float64)).search_sorted(x, side="right").cast(pl.UInt32)


def _edge_stages(edges: list[_ColumnEdge], known: bool = False) -> list[list[pl.Expr]]:
    """Expressions in dependent stages, each naming the previous stages' results (so nothing is
    computed twice). Per quantity: `_edge_k__<col>` = 2 * table key + side (0 lower, 1 upper) and
    `_edge_r__<col>` = the relative distance of the nearest edge (null when there is none or the value
    is null). A missing side is a threshold at ∓inf, so "none" needs no null tests until the end.
    With `known`, the steps a predicate's bit answers come from the pattern (`_ColumnEdge.known`):
    then `_edge_k__<col>` is meaningless where the value is null or not finite (`_edge_r__<col>` is
    null there, so a caller that reads k only where r is not null may ask for it)."""
    stages: list[list[pl.Expr]] = [[] for _ in range(5)]
    for e in edges:
        col, x = e.column, _x(e.column)
        name = lambda what, col=col: f"_edge_{what}__{col}"  # noqa: E731
        # UInt32 keys: Polars gathers by its native index type without converting them
        if known:
            bases = pl.Series(e.known_bases, dtype=pl.UInt32)
            key = pl.lit(bases).gather(pl.col("_edge_pat")) + _position(e, x, skip=e.known)
        else:
            key = pl.lit(e.bases).gather(pl.col("_edge_pat")) + _position(e, x)
        stages[0].append(key.alias(name("key")))
        key = pl.col(name("key"))
        lower, upper = e.sides
        stages[1] += [pl.lit(lower).gather(key).alias(name("tl")), pl.lit(upper).gather(key).alias(name("tu"))]
        tl, tu = pl.col(name("tl")), pl.col(name("tu"))
        stages[2] += [(x - tl).alias(name("dl")), (tu - x).alias(name("du"))]
        dl, du = pl.col(name("dl")), pl.col(name("du"))
        # equal distances go to the decrease (the lower side)
        stages[3].append((dl > du).alias(name("up")))
        up = pl.col(name("up"))
        # |c − x| / max(|x|, |c|), 0 when both are 0 (the smallest subnormal keeps 0/0 away); |c − x| is
        # the nearer side's distance, exactly (a difference and its negation round alike)
        c = pl.when(up).then(tu).otherwise(tl)
        scale = pl.max_horizontal(x.abs(), c.abs(), pl.lit(5e-324))
        stages[4] += [
            (pl.min_horizontal(dl, du) / scale).fill_nan(None).alias(name("r")),  # ∓inf on both sides: no edge
            (key * pl.lit(2, dtype=pl.UInt32) + up.cast(pl.UInt32)).alias(name("k")),
        ]
    return stages


def _global_tables(space: _Space, edges: list[_ColumnEdge]) -> tuple[list[int], dict[str, pl.Series]]:
    """Every column's answers in one set of tables indexed by offset + `_edge_k__<col>`: the category
    it leads to, the threshold and the column's name (null where that side has no edge). The last
    entry is null: the key of "no edge"."""
    offsets: list[int] = []
    cats: list[str | None] = []
    thresholds: list[float | None] = []
    columns: list[str | None] = []
    at: list[bool] = []
    for e in edges:
        offsets.append(len(cats))
        cats += [space.names[c] if c is not None else None for c in e.cats]
        thresholds += [t for pair in zip(e.lower, e.upper, strict=True) for t in pair]
        columns += [e.column if c is not None else None for c in e.cats]
        at += e.at
    # one more entry, null everywhere: the key of an account with no edge (no null keys to scatter)
    cats.append(None)
    thresholds.append(None)
    columns.append(None)
    at.append(False)
    return offsets, {
        "edge_category": pl.Series(cats, dtype=pl.String),
        "edge_threshold": pl.Series(thresholds, dtype=pl.Float64),
        "edge_column": pl.Series(columns, dtype=pl.String),
        "_edge_at": pl.Series(at, dtype=pl.Boolean),
    }


def _with_stages(lf: pl.LazyFrame, edges: list[_ColumnEdge], known: bool = False) -> pl.LazyFrame:
    for stage in _edge_stages(edges, known):
        lf = lf.with_columns(stage)
    return lf


# `column_edges` (one quantity at a time, for the watches): below this share of accounts that can cross
# one of a quantity's edges, the quantity is computed on those accounts only and scattered back; above
# it, on every account (measured: at a share of 0.23 the gather and scatter already cost more than the
# computation they save). The nearest edge (`_nearest`) groups the accounts instead.
_SUBSET_SHARE = 0.12


def _live(pats: _Patterns, e: _ColumnEdge) -> tuple[list[bool], float]:
    """Per pattern: can its accounts cross one of the column's edges; and the share of accounts that can."""
    share = sum(n for n, alive in zip(pats.counts, e.live, strict=True) if alive) / max(pats.frame.height, 1)
    return e.live, share


def _per_column(pats: _Patterns, e: _ColumnEdge) -> tuple[pl.Series, pl.Series]:
    """`_edge_r__<col>` (Float64: null where the value is null or has no edge) and
    `_edge_k__<col>` (UInt32) for every account. Usually only a few patterns can cross a given
    quantity's edges (a keep account's seats matter, its days since churn do not): only their
    accounts are computed."""
    frame, col = pats.frame, e.column
    names = (f"_edge_r__{col}", f"_edge_k__{col}")
    live, share = _live(pats, e)
    if share > _SUBSET_SHARE:
        out = _with_stages(frame.lazy().select("_edge_pat", _quantity(e)), [e]).select(names).collect()
        return out[names[0]], out[names[1]]
    alive = pl.lit(pl.Series(live, dtype=pl.Boolean)).gather(pl.col("_edge_pat")) & _quantity(e).is_not_null()
    rows = frame.select(pl.arg_where(alive)).to_series()
    sub = frame.select(pl.col("_edge_pat").gather(rows), _quantity(e, rows))
    done = _with_stages(sub.lazy(), [e]).select(names).collect()
    r = pl.repeat(None, frame.height, dtype=pl.Float64, eager=True).scatter(rows, done[names[0]])
    k = pl.repeat(None, frame.height, dtype=pl.UInt32, eager=True)  # null: nothing to look up
    return r.alias(names[0]), k.scatter(rows, done[names[1]]).alias(names[1])


def _nearest(space: _Space, pats: _Patterns, edges: list[_ColumnEdge], detail: bool = False) -> pl.DataFrame:
    """The nearest of the per-column edges: the smallest relative change, ties to the earlier column.

    An account's pattern decides which quantities it can cross at all (usually one or two of them):
    the accounts are split by that set, and each set's accounts compute only their own quantities.
    Each set's plan filters its rows itself (one pass over a small integer column, no gathers), all
    plans run in one `collect_all`, and the chosen key and value go back to every account's row by one
    scatter of their positions ("no edge" is the tables' last, null entry)."""
    offsets, tables = _global_tables(space, edges)
    none = len(tables["edge_category"]) - 1
    frame = pats.frame
    sets = [sum(1 << j for j, e in enumerate(edges) if e.live[d]) for d in range(len(pats.bits))]
    present = sorted(set(sets))
    index = {s: g for g, s in enumerate(present)}
    group = pl.Series([index[s] for s in sets], dtype=pl.UInt8 if len(present) < 256 else pl.UInt32)
    # only the columns the plans read: the row number (made once here, not once per plan), the pattern,
    # its set, the quantities
    base = frame.select(
        "_edge_pat", pl.lit(group).gather(pl.col("_edge_pat")).alias("_edge_set"), *[e.column for e in edges]
    ).with_row_index("_edge_row")
    plans = []
    for g, s in enumerate(present):
        chosen = [(e, o) for j, (e, o) in enumerate(zip(edges, offsets, strict=True)) if s >> j & 1]
        if not chosen:
            continue
        rows = base.lazy().filter(pl.col("_edge_set") == g)
        if len(chosen) == 1:
            e, offset = chosen[0]
            plans.append(_single(rows, e, offset))
        else:
            sub = rows.select("_edge_row", "_edge_pat", *[_quantity(e) for e, _ in chosen])
            # _choose reads a key only where its ratio is not null: the pattern's known steps may count
            lf = _choose(_with_stages(sub, [e for e, _ in chosen], known=True), chosen)
            plans.append(
                lf.select("_edge_row", pl.col("_edge_key").fill_null(none), pl.col("edge_value").fill_null(0.0))
            )
    # Back to every account's row: one scatter of each computed row's position among the results (the
    # accounts of no set point past them, at "no edge"), then the key and the value are gathered by it.
    # A scatter costs several times a gather (10M accounts: 75 ms for UInt32, 165 ms for Float64 values).
    results = pl.collect_all(plans, engine=_ENGINE) if plans else []
    nothing = pl.DataFrame(
        {"_edge_key": [none], "edge_value": [0.0]}, schema={"_edge_key": pl.UInt32, "edge_value": pl.Float64}
    )
    done = pl.concat([*(r.select("_edge_key", "edge_value") for r in results), nothing], rechunk=True)
    position = pl.repeat(done.height - 1, frame.height, dtype=pl.UInt32, eager=True)
    if results:
        rows = pl.concat([r.get_column("_edge_row") for r in results])
        position = position.scatter(rows, pl.int_range(rows.len(), dtype=pl.UInt32, eager=True))
    # Every answer is gathered from a table without nulls and nulled where the account has no edge: a
    # gather from a table with nulls costs three times as much (it writes a validity bit per row).
    k, has, threshold, x = pl.col("_edge_key"), pl.col("_edge_has"), pl.col("edge_threshold"), pl.col("_edge_value")
    has_table = tables["edge_threshold"].is_not_null().cast(pl.UInt8)
    full = {name: tables[name].fill_null(fill) for name, fill in
            (("edge_category", ""), ("edge_column", ""), ("edge_threshold", 0.0), ("_edge_at", False))}  # fmt: skip
    return (
        position.to_frame("_edge_position")
        .lazy()
        .select(
            pl.lit(done.get_column("_edge_key")).gather(pl.col("_edge_position")).alias("_edge_key"),
            pl.lit(done.get_column("edge_value")).gather(pl.col("_edge_position")).alias("_edge_value"),
        )
        .with_columns(
            (pl.lit(has_table).gather(k) != 0).alias("_edge_has"),
            pl.lit(full["edge_threshold"]).gather(k).alias("edge_threshold"),
        )
        .select(
            pl.when(has).then(pl.lit(full["edge_category"]).gather(k)).alias("edge_category"),
            pl.when(has).then(pl.lit(full["edge_column"]).gather(k)).alias("edge_column"),
            pl.when(has).then(x).alias("edge_value"),
            pl.when(has).then(threshold).alias("edge_threshold"),
            pl.when(has).then(threshold - x).alias("edge_change"),
            *(
                [
                    pl.when(has).then(pl.lit(full["_edge_at"]).gather(k)).alias("_edge_at"),
                    pl.when(has).then(k % 2 == 1).alias("_edge_up"),
                ]
                if detail
                else []
            ),
        )
        .collect(engine=_ENGINE)
    )


def _single(rows: pl.LazyFrame, e: _ColumnEdge, offset: int) -> pl.LazyFrame:
    """`_edge_row`, `_edge_key` and `edge_value` of the accounts that can cross one quantity only: the
    nearer side of its value, no ratios to compare. A side with no edge is a threshold at ∓inf and its
    table entry is null, so an account whose value has no edge needs no test of its own."""
    x = _x(e.column)
    value = pl.col(e.column)
    # a null, NaN or infinite value has no edge (is_finite is null on null: filtered out too)
    rows = rows.filter(value.is_not_null() if e.integer else value.is_finite())
    rows = rows.select("_edge_row", "_edge_pat", value.cast(pl.Float64).alias(x.meta.output_name()))
    lower, upper = e.sides
    j = pl.col("_edge_j")
    # the steps the pattern already answers (its rows here all have a finite value) are in the bases
    bases = pl.Series(e.known_bases, dtype=pl.UInt32)
    position = _position(e, x, skip=e.known)
    return rows.with_columns((pl.lit(bases).gather(pl.col("_edge_pat")) + position).alias("_edge_j")).select(
        "_edge_row",
        # equal distances go to the decrease (the lower side)
        (
            j * pl.lit(2, dtype=pl.UInt32)
            + ((x - pl.lit(lower).gather(j)) > (pl.lit(upper).gather(j) - x)).cast(pl.UInt32)
            + pl.lit(offset, dtype=pl.UInt32)
        ).alias("_edge_key"),
        x.alias("edge_value"),
    )


def _choose(lf: pl.LazyFrame, chosen: list[tuple[_ColumnEdge, int]]) -> pl.LazyFrame:
    """`_edge_row`, `_edge_key` (offset + `_edge_k__<col>` in the global tables) and `edge_value` of the column with
    the smallest relative change, the first such column on a tie; null when no column has an edge."""
    rs = [pl.col(f"_edge_r__{e.column}") for e, _ in chosen]
    lf = lf.with_columns(pl.min_horizontal(rs).alias("_edge_rel"))
    best = pl.col("_edge_rel")
    key: pl.Expr | None = None
    value: pl.Expr | None = None
    for (e, offset), r in zip(chosen, rs, strict=True):  # one when/then chain: the first test that holds wins
        k = pl.col(f"_edge_k__{e.column}") + pl.lit(offset, dtype=pl.UInt32)
        key = pl.when(r == best).then(k) if key is None else key.when(r == best).then(k)
        value = pl.when(r == best).then(_x(e.column)) if value is None else value.when(r == best).then(_x(e.column))
    assert key is not None and value is not None
    return lf.select("_edge_row", key.alias("_edge_key"), value.alias("edge_value"))


# ---- the next move ------------------------------------------------------------------------------


@dataclass
class _Clock:
    """One date-derived column as the date advances: z = sign * value grows by one a day; its
    predicates change truth only at `points` (ascending in z); state s = how many points z has passed
    (0..k), state k+1 = null (then nothing moves)."""

    column: str
    sign: int
    points: list[int]
    bits: list[int]  # per state 0..k+1: the column's predicate bits in that state


def _points(p: m.Predicate) -> list[int]:
    """Where an increasing integer quantity changes the truth of `p` (the first value of the new state)."""
    values = p.value if isinstance(p.value, tuple) else (p.value,)
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    match p.op:
        case "gt" | "lte":
            return [math.floor(nums[0]) + 1]
        case "gte" | "lt":
            return [math.ceil(nums[0])]
        case "between":
            return [math.ceil(nums[0]), math.floor(nums[1]) + 1]
        case "eq" | "ne" | "in" | "not_in":
            return [q for v in nums if v.is_integer() for q in (int(v), int(v) + 1)]
    return []


def _clocks(space: _Space) -> list[_Clock]:
    out = []
    for d in space.rules.derived:
        preds = [p for p in space.preds if p.column == d.name]
        if d.kind not in m.DATE_KINDS or not preds:
            continue
        sign = 1 if d.kind == "days_since" else -1
        raw = {q for p in preds for q in _points(p)}
        # falling values: the new state starts one lower; in z = -value the points are -(q - 1)
        points = sorted(raw) if sign == 1 else sorted(-(q - 1) for q in raw)
        reps = [sign * (points[0] - 1), *(sign * z for z in points)] if points else [0]
        bits = space.bits_at(d.name, [*reps, None])
        out.append(_Clock(d.name, sign, points, bits))
    return out


def _next_move(space: _Space, pats: _Patterns, as_of: dt.date, horizon: int) -> pl.DataFrame:
    """`next_category`, `next_move_on` for every row of the working frame."""
    frame = pats.frame
    clocks = _clocks(space)
    if not clocks or frame.height == 0:
        return pl.DataFrame(
            {"next_category": pl.repeat(None, frame.height, dtype=pl.String, eager=True),
             "next_move_on": pl.repeat(None, frame.height, dtype=pl.Date, eager=True)}
        )  # fmt: skip
    keep = ~sum(space.mask_of(c.column) for c in clocks)
    radices = [len(c.points) + 2 for c in clocks]
    combos = math.prod(radices)
    # category per (pattern, state of every clock): mixed radix, first clock most significant
    states = [[]]
    for r in radices:
        states = [[*s, i] for s in states for i in range(r)]
    category = space._table.__getitem__ if space._table is not None else space.category
    # every state's bits of the clocks' predicates, ORed together once (not once per pattern)
    state_bits = [sum(c.bits[i] for c, i in zip(clocks, s, strict=True)) for s in states]
    table: list[int] = []
    cur = [category(b) for b in pats.bits]
    # a pattern's row depends only on its other predicates' bits: patterns that differ in the clocks'
    # bits only share it
    rows: dict[int, list[int]] = {}
    for b in pats.bits:
        rest = b & keep
        row = rows.get(rest)
        if row is None:
            row = rows[rest] = [category(rest | x) for x in state_bits]
        table += row
    if len(clocks) == 1:
        return _next_move_one(space, pats, clocks[0], table, cur, as_of, horizon)
    # One lazy plan over every step, collected once by the streaming engine: the steps are few (one per
    # point), and stepping eagerly materialized a dozen whole columns per step (forge-industrial, two
    # clocks, 1M accounts: 0.22 s).
    work = (
        frame.lazy()
        .select(
            pl.col("_edge_pat").cast(pl.Int64),
            pl.lit(pl.Series(cur, dtype=pl.Int32)).gather(pl.col("_edge_pat")).alias("_cur"),
            *[(pl.col(c.column) * c.sign).alias(f"_z{i}") for i, c in enumerate(clocks)],
        )
        .with_columns(
            *[
                pl.when(pl.col(f"_z{i}").is_null())
                .then(len(c.points) + 1)
                .otherwise(
                    pl.sum_horizontal(
                        [pl.lit(0, dtype=pl.Int64), *[(pl.lit(z) <= pl.col(f"_z{i}")).cast(pl.Int64) for z in c.points]]
                    )
                )
                .cast(pl.Int64)
                .alias(f"_s{i}")
                for i, c in enumerate(clocks)
            ],
            pl.lit(None, dtype=pl.Int64).alias("_t"),
            pl.lit(None, dtype=pl.Int32).alias("_cat"),
            pl.lit(False).alias("_done"),
        )
    )
    table_s = pl.lit(pl.Series(table, dtype=pl.Int32))
    for _ in range(sum(len(c.points) for c in clocks)):
        step = [
            pl.when(pl.col(f"_s{i}") < len(c.points))
            .then(
                pl.lit(pl.Series(c.points or [0], dtype=pl.Int64)).gather(
                    pl.col(f"_s{i}").clip(0, max(len(c.points) - 1, 0))
                )
                - pl.col(f"_z{i}")
            )
            .alias(f"_step{i}")
            for i, c in enumerate(clocks)
        ]
        work = work.with_columns(step)
        tn = pl.min_horizontal([pl.col(f"_step{i}") for i in range(len(clocks))])
        work = work.with_columns(tn.alias("_tn"))
        active = ~pl.col("_done") & pl.col("_tn").is_not_null() & (pl.col("_tn") <= horizon)
        work = work.with_columns(
            [
                (
                    pl.col(f"_s{i}") + (active & (pl.col(f"_step{i}") == pl.col("_tn"))).fill_null(False).cast(pl.Int64)
                ).alias(f"_s{i}")
                for i in range(len(clocks))
            ]
        )
        index = pl.col("_edge_pat") * combos
        for i in range(len(radices)):
            index = index + pl.col(f"_s{i}") * math.prod(radices[i + 1 :])
        cat = table_s.gather(index)
        hit = active & (cat != pl.col("_cur"))
        work = work.with_columns(
            pl.when(hit).then(pl.col("_tn")).otherwise(pl.col("_t")).alias("_t"),
            pl.when(hit).then(cat).otherwise(pl.col("_cat")).alias("_cat"),
            (pl.col("_done") | ~active | hit).alias("_done"),
        )
    names = pl.lit(pl.Series(space.names, dtype=pl.String))
    return work.select(
        names.gather(pl.col("_cat")).alias("next_category"),
        (pl.lit(as_of, dtype=pl.Date) + pl.duration(days=pl.col("_t"))).cast(pl.Date).alias("next_move_on"),
    ).collect(engine=_ENGINE)


def _known_points(space: _Space, clock: _Clock) -> dict[int, tuple[int, bool]]:
    """The clock's points a predicate's bit answers (point m → predicate index, negated): its truth in
    states 0..k (a non-null value) is "passed point m", or its negation."""
    k = len(clock.points)
    out: dict[int, tuple[int, bool]] = {}
    for i, p in enumerate(space.preds):
        if p.column != clock.column:
            continue
        truth = [clock.bits[s] >> i & 1 for s in range(k + 1)]
        for point in range(k):
            passed = [int(s > point) for s in range(k + 1)]
            if point not in out and truth in (passed, [1 - x for x in passed]):
                out[point] = (i, truth != passed)
                break
    return out


def _next_move_one(
    space: _Space, pats: _Patterns, clock: _Clock, table: list[int], cur: list[int], as_of: dt.date, horizon: int
) -> pl.DataFrame:
    """The next move when one date-derived column moves: per (pattern, current state) the first later
    state with another category is looked up, so each account pays one search and two gathers."""
    k = len(clock.points)
    radix = k + 2
    first_z: list[int | None] = []
    first_cat: list[str | None] = []
    for d in range(len(pats.bits)):
        row = table[d * radix : (d + 1) * radix]
        nxt: int | None = None
        found: list[int | None] = [None] * (k + 1)
        for s in reversed(range(1, k + 1)):
            if row[s] != cur[d]:
                nxt = s
            found[s - 1] = nxt
        for s0 in range(k + 1):
            s1 = found[s0] if s0 < k else None
            first_z.append(clock.points[s1 - 1] if s1 is not None else None)
            first_cat.append(space.names[row[s1]] if s1 is not None else None)
    # Tables without nulls (a gather from a table with nulls costs three times as much): "no later
    # state moves" is a move so far away that no horizon reaches it (day numbers stay far below 2**62).
    never = 1 << 62
    z_table = pl.Series([never if q is None else q for q in first_z], dtype=pl.Int64)
    cat_table = pl.Series(["" if c is None else c for c in first_cat], dtype=pl.String)
    z = pl.col(clock.column) if clock.sign == 1 else pl.col(clock.column) * clock.sign
    # The state is the number of points z has passed. A predicate whose truth flips exactly at one
    # point (lte 730: at 731) already says whether the value passed it: those points are counted per
    # pattern, the others compared per account. (A null value has a null z and so a null time below:
    # no move, whatever its key.)
    known = _known_points(space, clock)
    base = [d * (k + 1) + sum((b >> i & 1) ^ negated for i, negated in known.values()) for d, b in enumerate(pats.bits)]
    points = [q for point, q in enumerate(clock.points) if point not in known]
    if not points:
        state: pl.Expr | int = 0
    elif len(points) <= _COMPARE_STEPS:  # a few comparisons, no search
        state = sum(((z >= q).cast(pl.UInt32) for q in points), pl.lit(0, dtype=pl.UInt32))
    else:
        state = pl.lit(pl.Series(points, dtype=pl.Int64)).search_sorted(z, side="right").cast(pl.UInt32)
    # UInt32 keys, a native gather index
    key = pl.lit(pl.Series(base, dtype=pl.UInt32)).gather(pl.col("_edge_pat")) + state
    t = pl.col("_t")
    moves = t <= min(horizon, never >> 1)
    return (
        pats.frame.lazy()
        .select(key.alias("_key"), z.alias("_z"))
        .select("_key", (pl.lit(z_table).gather(pl.col("_key")) - pl.col("_z")).alias("_t"))
        .select(
            pl.when(moves).then(pl.lit(cat_table).gather(pl.col("_key"))).alias("next_category"),
            # a date is its day number: adding days is an integer addition, no duration arithmetic
            pl.when(moves)
            .then(pl.lit((as_of - dt.date(1970, 1, 1)).days, dtype=pl.Int32) + t.cast(pl.Int32))
            .cast(pl.Date)
            .alias("next_move_on"),
        )
        .collect(engine=_ENGINE)
    )


# ---- public entry points -----------------------------------------------------------------------


def _working(
    space: _Space, frame: pl.DataFrame | pl.LazyFrame, quantities: list[str], clocks: list[str]
) -> pl.DataFrame:
    """What the edges read, materialized once: the date-derived columns, the quantities (as they are:
    each is cast to Float64 only for the accounts that can cross its edges) and the predicate bit
    pattern (taken as it is when `frame` already holds its words, as `engine.prepare` leaves them)."""
    lf = frame.lazy()
    present = set(lf.collect_schema().names())
    words = [pl.col(w.meta.output_name()) if w.meta.output_name() in present else w for w in space.word_exprs()]
    return (
        lf.select(*dict.fromkeys([*clocks, *quantities]), *words)
        .collect(engine=_ENGINE)
        .rechunk()  # a collect leaves columns in chunks; every later gather would look up the chunk
    )


def edge_columns(
    rules: m.RuleSet, frame: pl.DataFrame | pl.LazyFrame, as_of: dt.date | str, horizon: int = m.DEFAULT_HORIZON_DAYS
) -> pl.DataFrame:
    """The seven edge columns (EDGE_SCHEMA) for every row of `frame`, in its order.

    `frame` holds the accounts conformed, with their derived columns (as `engine.with_derived` gives
    them); `horizon` is how many days ahead the next move is looked for (1 .. horizon after as_of).
    """
    return _edge_columns(rules, frame, as_of, horizon)


def _edge_columns(
    rules: m.RuleSet, frame: pl.DataFrame | pl.LazyFrame, as_of: dt.date | str, horizon: int, detail: bool = False
) -> pl.DataFrame:
    """`edge_columns`; with `detail` also `_edge_at` (the value moves onto the threshold, not past it)
    and `_edge_up` (the value rises)."""
    from kare_rules.engine import as_date

    if horizon < 0:
        raise ValueError(f"horizon must be a number of days ≥ 0, got {horizon}")
    space = _Space.of(rules)
    quantities = _quantities(rules, space.preds)
    clocks = [c.column for c in _clocks(space)]
    return _edges_of(space, _working(space, frame, quantities, clocks), as_date(as_of), horizon, detail)


def _edges_of(space: _Space, work: pl.DataFrame, as_of: dt.date, horizon: int, detail: bool = False) -> pl.DataFrame:
    """`_edge_columns` of a frame that holds the bit pattern words (`_edge_w*`) with the columns."""
    quantities = _quantities(space.rules, space.preds)
    pats = _patterns(space, work)
    moves = _next_move(space, pats, as_of, horizon)
    # a quantity no account present can cross to another category costs nothing per account
    tables = [t for t in _tabulate_columns(space, pats, quantities) if any(t.live)]
    schema = {**EDGE_SCHEMA, **({"_edge_at": pl.Boolean(), "_edge_up": pl.Boolean()} if detail else {})}
    if tables:
        edges = _nearest(space, pats, tables, detail)
    else:
        edges = pl.DataFrame(
            {c: pl.repeat(None, work.height, dtype=t, eager=True) for c, t in schema.items() if c not in moves.columns}
        )
    return pl.concat([moves, edges], how="horizontal").select(list(schema)).cast(schema)


def column_edges(rules: m.RuleSet, frame: pl.DataFrame | pl.LazyFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The nearest edge of each requested quantity on its own, for every row of `frame` (conformed,
    with derived columns): `_edge_change__<col>` (Float64: threshold − value) and
    `_edge_category__<col>` (String: the category that change leads to), null when the value is null
    or no change of that column alone moves the account. A column that is not an edge quantity
    (`edge_quantities`) is a ValueError naming it."""
    space = _Space.of(rules)
    quantities = _quantities(rules, space.preds)
    unknown = [c for c in columns if c not in quantities]
    if unknown:
        raise ValueError(
            f"{', '.join(map(repr, unknown))} is not a quantity the rules compare with gt/gte/lt/lte/between; "
            f"choose from: {', '.join(quantities) or '(none)'}"
        )
    # The raw accounts fail deep inside Polars ('unable to find column "seat_util"', with its query plan).
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    absent = [c for c in rules.columns if c not in names]
    if absent:
        raise ValueError(
            f"column_edges reads accounts conformed and with their derived values, and this frame has no "
            f"{', '.join(map(repr, absent))}; pass kare_rules.engine.with_derived(rules, conform(accounts, rules), "
            f"as_of, previous)"
        )
    pats = _patterns(space, _working(space, frame, list(dict.fromkeys(columns)), []))
    tables = _tabulate_columns(space, pats, columns)
    offsets, answers = _global_tables(space, tables)
    out = []
    for c, offset in zip(columns, offsets, strict=True):
        k = pl.col(f"_edge_k__{c}") + pl.lit(offset, dtype=pl.UInt32)
        change = pl.lit(answers["edge_threshold"]).gather(k) - _x(c)
        out += [
            change.alias(f"_edge_change__{c}"),
            pl.lit(answers["edge_category"]).gather(k).alias(f"_edge_category__{c}"),
        ]
    per_column = [s for e in tables for s in _per_column(pats, e)]
    return pats.frame.with_columns(*per_column, *{e.column: _quantity(e) for e in tables}.values()).select(out)


def edges(
    rules: m.RuleSet,
    accounts: pl.DataFrame | pl.LazyFrame,
    as_of: dt.date | str,
    horizon: int = m.DEFAULT_HORIZON_DAYS,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The key column and the seven edge columns for raw accounts (conformed and derived here)."""
    from kare_rules.engine import conform, with_derived

    prepared = with_derived(rules, conform(accounts, rules), as_of, previous).select(*rules.columns).collect()
    return pl.concat([prepared.select(rules.key), edge_columns(rules, prepared, as_of, horizon)], how="horizontal")


def with_edges(
    rules: m.RuleSet,
    accounts: pl.DataFrame | pl.LazyFrame,
    as_of: dt.date | str,
    horizon: int = m.DEFAULT_HORIZON_DAYS,
    explain: bool = True,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`categorize(...)` with the seven edge columns and `watches` (the ids of the watches that hold)
    appended: what `categorize(edges=True)` returns."""
    from kare_rules.engine import Extra, as_date, categories_of, prepare
    from kare_rules.watches import with_watches

    if horizon < 0:
        raise ValueError(f"horizon must be a number of days ≥ 0, got {horizon}")
    space = _Space.of(rules)
    # Conformed and derived once, for the categories, the edges and the watches alike; the predicate
    # bit patterns are computed in the categories' own pass, and the categories' mask looked up from them.
    extra = Extra(tuple(space.word_exprs()), space.mask_expr())
    prepared = prepare(rules, accounts, as_of, explain=explain, previous=previous, extra=extra)
    # The categories and the edges both read the prepared accounts only: the edges run in a second
    # thread meanwhile (Polars releases the GIL while it works), so that each one's single-threaded
    # steps (scatters, rechunks, the tabulation in Python) overlap the other's.
    # A watch's `within_days` is judged as a run judges it, whatever `horizon` the caller shows: the next
    # moves are looked for as far as the longest such watch, and those past `horizon` hidden afterwards.
    reach = max([horizon, *(w.within_days for w in rules.watches if w.within_days is not None)])
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kare-edges") as pool:
        edges = pool.submit(_edges_of, space, prepared, as_date(as_of), reach)
        result = categories_of(rules, prepared, explain)
        found = edges.result()
    out = with_watches(rules, result.hstack(found.get_columns()), prepared.lazy(), as_date(as_of))
    if reach == horizon:
        return out
    beyond = pl.col("next_move_on") > pl.lit(as_date(as_of) + dt.timedelta(days=horizon))
    return out.with_columns(
        pl.when(beyond).then(None).otherwise(pl.col(c)).alias(c) for c in ("next_category", "next_move_on")
    )


# ---- in words (kare explain) -------------------------------------------------------------------


def describe_edges(
    rules: m.RuleSet,
    accounts: pl.DataFrame | pl.LazyFrame,
    as_of: dt.date | str,
    horizon: int = m.DEFAULT_HORIZON_DAYS,
    previous: pl.DataFrame | None = None,
) -> list[str]:
    """Per account, the next move and the nearest change in one sentence, e.g. "keep → recapture on
    2027-01-09, in 39 days, if no new order; nearest change: value_last_90d falls below 35000, now
    40000 (→ recapture)"."""
    from kare_rules.engine import as_date, categorize, conform, show_value, with_derived

    as_of = as_date(as_of)
    categories = categorize(rules, accounts, as_of, explain=False, previous=previous)["category"]
    prepared = with_derived(rules, conform(accounts, rules), as_of, previous)
    found = _edge_columns(rules, prepared, as_of, horizon, detail=True)
    unchanged = _unchanged(rules)
    # A null quantity has no edge, yet giving it a value may well move the account (a prospect whose
    # employee count is unknown): say which are null instead of "no change moves it".
    quantities = edge_quantities(rules)
    nulls = prepared.lazy().select(pl.col(c).is_null() for c in quantities).collect() if quantities else None
    out = []
    for i, (category, row) in enumerate(zip(categories, found.iter_rows(named=True), strict=True)):
        if row["next_category"] is None:
            move = f"{category}: no move within {horizon} days with the data unchanged"
        else:
            days = (row["next_move_on"] - as_of).days
            move = (
                f"{category} → {row['next_category']} on {row['next_move_on'].isoformat()}, "
                f"in {days} day{'s' if days != 1 else ''}, {unchanged}"
            )
        unknown = [c for c in quantities if nulls is not None and nulls[c][i]]
        if row["edge_column"] is None and unknown:
            edge = (
                f"no change of one known value moves it; {', '.join(unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} null (a null has no nearest change)"
            )
        elif row["edge_column"] is None:
            edge = "no change of one value moves it"
        else:
            up = row["_edge_up"]
            verb = ("rises" if up else "falls") + (" to" if row["_edge_at"] else " above" if up else " below")
            edge = (
                f"nearest change: {row['edge_column']} {verb} {_number(row['edge_threshold'])}, "
                f"now {show_value(row['edge_value'], row['edge_threshold'])} (→ {row['edge_category']})"
            )
        out.append(f"{move}; {edge}")
    return out


def _unchanged(rules: m.RuleSet) -> str:
    """The condition of a date move in words: "if no new order" when the only date-derived value the
    rules use counts the days since a `last_order_date`-like column, else "if nothing changes"."""
    used = columns_used(rules)
    clocks = [d for d in rules.derived if d.kind in m.DATE_KINDS and d.name in used]
    if len(clocks) == 1 and clocks[0].kind == "days_since":
        source = clocks[0].args[0]
        match = re.fullmatch(r"last_([a-z0-9_]+?)(?:_date|_on|_at|_time)?", source)
        # Only a noun reads well after "no new": `last_won` would give "if no new won".
        if match and match.group(1).split("_")[-1] in EVENT_NOUNS:
            return f"if no new {match.group(1).replace('_', ' ')}"
        if match:
            return f"if {source} stays as it is"
    return "if nothing changes"


# Words for an event a `last_<event>_date` column records, which read well as "if no new <event>".
EVENT_NOUNS = frozenset({"order", "purchase", "sale", "payment", "invoice", "booking", "deal", "visit", "login",
                         "contact", "meeting", "activity", "call", "renewal", "transaction"})  # fmt: skip


def _number(value: float) -> str:
    """A threshold as the rule writes it."""
    from kare_rules.compile_polars import format_value

    return format_value(value)
