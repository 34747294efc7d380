"""Deterministic synthetic accounts for any rule file: samples, demos, benchmarks and property tests.

Values are drawn around the thresholds the rules themselves use, so every category is populated
whatever the organization's attributes are. Randomness comes from hashing row numbers with a seed:
the same (rules, n, as_of, seed) always gives the same frame, and 10M rows take seconds.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES

NULL_SHARE = 0.08
OWNERS = [f"owner-{i:02d}" for i in range(1, 26)]


def _unnamed(named: list[str]) -> str:
    """A text value none of `named` is: 'other', or 'other-2', 'other-3', ... when the rules name it."""
    return next(v for v in ("other", *(f"other-{i}" for i in range(2, len(named) + 3))) if v not in named)


def _salt(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def uniform(ids: pl.Expr, seed: int, *parts: object) -> pl.Expr:
    """A deterministic uniform [0, 1) per row."""
    h = ids.hash(seed=_salt(seed, *parts))
    return (h // 2048).cast(pl.Float64) / float(2**53)


def thresholds(rules: m.RuleSet) -> dict[str, list]:
    """Literal values each column is compared with, anywhere in the rules."""
    out: dict[str, list] = defaultdict(list)

    def walk(c: m.Condition) -> None:
        if isinstance(c, m.Predicate):
            if isinstance(c.value, tuple):
                out[c.column].extend(c.value)
            elif c.value is not None and c.op != "is_null":
                out[c.column].append(c.value)
        elif isinstance(c, m.All | m.Any_):
            for i in c.items:
                walk(i)
        elif isinstance(c, m.Not):
            walk(c.item)

    for cond in [*rules.traits.values(), *(r.when for r in rules.categories.values())]:
        walk(cond)
    return out


def _numeric(col: m.InputColumn, lits: list, u1: pl.Expr, u2: pl.Expr) -> pl.Expr:
    nums = [float(v) for v in lits if isinstance(v, int | float) and not isinstance(v, bool)]
    lo = float(col.min) if col.min is not None else (min([0.0, *nums]))
    hi = float(col.max) if col.max is not None else max([lo + 100.0, *[v * 2 for v in nums]])
    spread = lo + u1 * (hi - lo)
    if not nums:
        return spread
    # Half the rows land near one of the thresholds, either side of it.
    pick = (u2 * len(nums)).floor().cast(pl.Int64).clip(0, len(nums) - 1)
    near = pl.lit(pl.Series(nums)).get(pick) * (0.8 + 0.4 * u1)
    return pl.when(u2 * 7 % 1 < 0.5).then(near).otherwise(spread).clip(lo, hi)


def synthesize(rules: m.RuleSet, n: int, as_of: dt.date, seed: int = 0, start: int = 0) -> pl.DataFrame:
    """`n` accounts typed as the rules declare, with key values `<org>-<number>` from `start` (the number
    itself for a number key)."""
    lits = thresholds(rules)
    # A date column's useful thresholds are those of the derived columns counting days from it.
    day_lits: dict[str, list] = defaultdict(list)
    for d in rules.derived:
        if d.kind in ("days_since", "days_until"):
            sign = 1 if d.kind == "days_since" else -1
            day_lits[d.args[0]].extend(sign * v for v in lits.get(d.name, []) if isinstance(v, int | float))
    ids = pl.int_range(start, start + n, dtype=pl.Int64)
    exprs = []
    for col in rules.inputs:
        u1, u2, un = (uniform(ids, seed, col.name, k) for k in ("a", "b", "null"))
        if col.key and col.type in ("integer", "float"):  # a number key: the row number itself
            e = ids
        elif col.key and col.type in ("date", "datetime"):  # unique, if odd: one day per account
            e = pl.lit(dt.date(2000, 1, 1)) + pl.duration(days=ids)
        elif col.key:
            e = pl.format("{}-{}", pl.lit(rules.organization[:3].upper()), ids.cast(pl.String).str.zfill(7))
        elif col.type == "boolean":
            e = u1 < 0.5
        elif col.type == "string":
            named = list(dict.fromkeys(v for v in lits.get(col.name, []) if isinstance(v, str)))
            # Without `allowed`, a value the rules do not name too: else `ne` and `not_in` never hold.
            choices = list(col.allowed or ([*named, _unnamed(named)] if named else OWNERS))
            e = pl.lit(pl.Series(choices, dtype=pl.String)).get((u1 * len(choices)).floor().cast(pl.Int64))
        elif col.type in ("integer", "float"):
            e = _numeric(col, lits.get(col.name, []), u1, u2)
            e = e.round(0) if col.type == "integer" else e.round(2)
        else:  # date / datetime: days before as_of, near the rules' day thresholds
            fake = m.InputColumn(col.name, "integer", min=0, max=None)
            days = _numeric(fake, day_lits.get(col.name, []) or [30, 365, 1000], u1, u2).round(0).cast(pl.Int64)
            e = pl.lit(as_of) - pl.duration(days=days)
        e = e.cast(POLARS_TYPES[col.type])
        if col.nullable:
            e = pl.when(un < NULL_SHARE).then(None).otherwise(e)
        exprs.append(e.alias(col.name))
    return pl.select(exprs)


def _trend_thresholds(rules: m.RuleSet) -> dict[str, tuple[list[float], list[float]]]:
    """For each input a trend reads: the thresholds its pct_change_of columns and its change_of columns
    are compared with (so generated changes land on either side of them)."""
    lits = thresholds(rules)
    out: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in rules.trend_columns}
    for d in rules.derived:
        if d.kind in m.TREND_KINDS:
            nums = [float(v) for v in lits.get(d.name, []) if isinstance(v, int | float) and not isinstance(v, bool)]
            out[d.args[0]][0 if d.kind == "pct_change_of" else 1].extend(nums)
    return out


def _step_back(rules: m.RuleSet, column: str, value: pl.Expr, u1: pl.Expr, u2: pl.Expr) -> pl.Expr:
    """`value` one run earlier, one step away: such that the change since then is a share or an amount
    near one of the thresholds its trends compare with (±20 %), or a 10 % drift when they name none."""
    pcts, amounts = _trend_thresholds(rules)[column]
    steps = [("pct", t) for t in pcts] + [("abs", t) for t in amounts] or [("pct", -0.1), ("pct", 0.1)]
    pick = (u2 * len(steps)).floor().cast(pl.Int64).clip(0, len(steps) - 1)
    jitter = 0.8 + 0.4 * u1
    share = pl.lit(pl.Series([t if k == "pct" else 0.0 for k, t in steps])).get(pick) * jitter
    amount = pl.lit(pl.Series([t if k == "abs" else 0.0 for k, t in steps])).get(pick) * jitter
    now = value.cast(pl.Float64)
    # A share of −100 % or less has no value before it; such a step is left out.
    moved = (now - amount) / pl.when(1 + share > 0).then(1 + share).otherwise(None)
    col = rules.input(column)
    if col.min is not None:
        moved = moved.clip(lower_bound=float(col.min))
    if col.max is not None:
        moved = moved.clip(upper_bound=float(col.max))
    moved = moved.round(0) if col.type == "integer" else moved.round(2)
    return pl.coalesce(moved, now).cast(POLARS_TYPES[col.type])


TREND_SHARE = 0.15  # of accounts whose trend columns moved since the previous run, near a threshold


def previous_values(rules: m.RuleSet, accounts: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Plausible previous-run values for `accounts`, as `categorize(previous=...)` takes them (account_id
    and the trend columns): most accounts unchanged, TREND_SHARE of them one step away near the trends'
    thresholds, and a few absent (new accounts). Deterministic."""
    ids = pl.int_range(0, accounts.height, dtype=pl.Int64)
    picks = pl.select(
        (uniform(ids, seed, "previous", "moved") < TREND_SHARE).alias("_moved"),
        (uniform(ids, seed, "previous", "new") < 0.02).alias("_new"),
    )
    frame = pl.concat([accounts.select(rules.key, *rules.trend_columns), picks], how="horizontal")
    moved = [
        pl.when(pl.col("_moved"))
        .then(_step_back(rules, c, pl.col(c), uniform(ids, seed, c, "p1"), uniform(ids, seed, c, "p2")))
        .otherwise(pl.col(c))
        .cast(pl.Float64)
        .alias(c)
        for c in rules.trend_columns
    ]
    return (
        frame.with_columns(moved)
        .filter(~pl.col("_new"))
        .select(pl.col(rules.key).cast(pl.String).alias("account_id"), *rules.trend_columns)
    )


def evolve(
    rules: m.RuleSet, prev: pl.DataFrame, prev_as_of: dt.date, as_of: dt.date, seed: int, month: int
) -> pl.DataFrame:
    """The next snapshot: some accounts change, most dates move on with the calendar (an active
    customer keeps ordering), a few accounts leave and a few arrive. Deterministic."""
    key = rules.key
    elapsed = pl.duration(days=(as_of - prev_as_of).days)
    fresh = synthesize(rules, prev.height, as_of, seed=seed + month, start=0)
    ids = pl.int_range(0, prev.height, dtype=pl.Int64)
    changes = pl.select(
        (uniform(ids, seed, month, "change") < 0.12).alias("_change"),
        (uniform(ids, seed, month, "leave") < 0.01).alias("_leave"),
        (uniform(ids, seed, month, "keeps-pace") < 0.7).alias("_pace"),
    )
    dates = [c.name for c in rules.inputs if c.type in ("date", "datetime")]
    cols = [c.name for c in rules.inputs if not c.key]
    nxt = pl.concat([prev, changes], how="horizontal").with_columns(
        pl.when(pl.col("_change")).then(fresh[c]).otherwise(pl.col(c)).alias(c) for c in cols
    )
    nxt = nxt.with_columns(
        pl.when(pl.col("_pace") & ~pl.col("_change")).then(pl.col(c) + elapsed).otherwise(pl.col(c)).alias(c)
        for c in dates
    )
    nxt = nxt.filter(~pl.col("_leave")).drop("_change", "_leave", "_pace")
    arrivals = max(1, prev.height // 50)
    start = _next_number(prev[key])
    return pl.concat([nxt, synthesize(rules, arrivals, as_of, seed=seed + 1000 + month, start=start)])


def _next_number(keys: pl.Series) -> int:
    """The row number after the highest one among the keys `synthesize` made (text, number or date)."""
    if keys.dtype == pl.String:
        return int(keys.str.extract(r"(\d+)$").cast(pl.Int64).max() or 0) + 1
    if keys.dtype.is_numeric():
        return int(keys.max() or 0) + 1
    return (keys.cast(pl.Date).max() - dt.date(2000, 1, 1)).days + 1


def month_ends(last: dt.date, count: int) -> list[dt.date]:
    """`count` month-end dates ending with the month of `last`, oldest first."""
    out = []
    y, mo = last.year, last.month
    for _ in range(count):
        nxt = dt.date(y + (mo == 12), mo % 12 + 1, 1)
        out.append(nxt - dt.timedelta(days=1))
        y, mo = (y, mo - 1) if mo > 1 else (y - 1, 12)
    return out[::-1]


def snapshots(rules: m.RuleSet, n: int, dates: list[dt.date], seed: int = 7) -> list[tuple[dt.date, pl.DataFrame]]:
    """A sequence of monthly snapshots of one organization's accounts."""
    out = []
    frame = synthesize(rules, n, dates[0], seed=seed)
    for i, day in enumerate(dates):
        if i:
            frame = evolve(rules, frame, dates[i - 1], day, seed, i)
        out.append((day, frame))
    return out
