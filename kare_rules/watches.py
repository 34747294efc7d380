"""Watches (`watch:` in a rule file): which accounts are about to move, as a list of watch ids per account.

A watch holds for an account in its `from` category when ANY of its conditions holds:
- `within_days: N` — the next move (data unchanged, dates moving on) is at most N days after as_of
  (and leads to `to`, when the watch names one);
- `within: {column: amount}` — the nearest change of that one column that moves the account is at
  most `amount` away (`N%`: at most N % of the column's current value), and leads to `to` when named.

The frame it reads is a categorized one with the early-warning columns (`kare_rules.edges`): category,
next_category, next_move_on, the watched columns' values and their per-column edges
(`_edge_change__<col>`, `_edge_category__<col>`).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from kare_rules import model as m


def within_columns(rules: m.RuleSet) -> list[str]:
    """The columns any watch measures with `within:`, in declared order (each needs its own edge)."""
    wanted = {w.column for watch in rules.watches for w in watch.within}
    return [c for c in rules.columns if c in wanted]


def _leads_to(column: str, to: str | None) -> pl.Expr:
    return pl.lit(True) if to is None else pl.col(column).eq_missing(pl.lit(to))


_ULPS = 4 * 2.0**-52  # four units in the last place of a double, relative


def holds(watch: m.Watch, as_of: dt.date) -> pl.Expr:
    """Whether `watch` holds for each account (never null)."""
    reasons = []
    if watch.within_days is not None:
        soon = pl.col("next_move_on") <= pl.lit(as_of + dt.timedelta(days=watch.within_days))
        reasons.append(soon & _leads_to("next_category", watch.to_category))
    for w in watch.within:
        change = pl.col(f"_edge_change__{w.column}").abs()
        value = pl.col(w.column).cast(pl.Float64).abs()
        limit = pl.lit(w.amount) * value if w.relative else pl.lit(w.amount)
        # The change is threshold - value in floating point: 0.05 - 0.02 is 0.030000000000000002, which a
        # limit of 0.03 must take. A few units in the last place of the operands are forgiven.
        slack = (value * 2 + change) * _ULPS
        reasons.append((change <= limit + slack) & _leads_to(f"_edge_category__{w.column}", watch.to_category))
    return (pl.col("category") == watch.from_category) & pl.any_horizontal(reasons).fill_null(False)


def with_watches(rules: m.RuleSet, result: pl.DataFrame, prepared: pl.LazyFrame, as_of: dt.date) -> pl.DataFrame:
    """`result` (categorized with the early-warning columns, in `prepared`'s row order) with `watches`.

    `prepared` holds the same accounts conformed and with derived columns: the watched columns'
    values and their own nearest edges come from it."""
    from kare_rules.edges import column_edges  # edges builds on the engine, which imports nothing of ours

    columns = within_columns(rules)
    if not rules.watches:
        # hstack, not with_columns: the result's columns come in differently chunked, and aligning
        # them would copy the whole frame (0.27 s at 10M accounts) to add a column of empty lists.
        return result.hstack([empty_lists("watches", result.height)])
    frame = result
    if columns:  # `within:` watches need each column's own nearest edge; `within_days` ones do not
        # every column (an edge depends on all predicates) and the predicate bit pattern already computed
        values = prepared.select(*rules.columns, pl.col("^_edge_w[0-9]+$")).collect()
        frame = pl.concat([result, values.select([c for c in columns if c not in result.columns]),
                           column_edges(rules, values, columns)], how="horizontal")  # fmt: skip
    return result.hstack([frame.select(watch_expr(rules, as_of)).to_series()])


# Up to this many watches, the list of ids of every combination that can hold is tabulated.
_TABLE_WATCHES = 12


def watch_expr(rules: m.RuleSet, as_of: dt.date) -> pl.Expr:
    """`watches`: the ids of the watches that hold for each account, in file order (empty: none).

    The watches that hold form a bit mask per account, and its list of ids is gathered from a table
    of every combination. Building each account's list from its watches (`concat_list`, then dropping
    the nulls) took 1.0 s for two watches at 1M accounts; the gather takes a few milliseconds."""
    watches = rules.watches
    if len(watches) > _TABLE_WATCHES:
        ids = [pl.when(holds(w, as_of)).then(pl.lit(w.id)) for w in watches]
        return pl.concat_list(ids).list.drop_nulls().alias("watches")
    bit = [pl.when(holds(w, as_of)).then(pl.lit(1 << i, dtype=pl.UInt32)).otherwise(pl.lit(0, dtype=pl.UInt32))
           for i, w in enumerate(watches)]  # fmt: skip
    combos = [[w.id for i, w in enumerate(watches) if b >> i & 1] for b in range(1 << len(watches))]
    table = pl.Series(combos, dtype=pl.List(pl.String))
    return pl.lit(table).gather(pl.sum_horizontal(bit) if bit else pl.lit(0, dtype=pl.UInt32)).alias("watches")


def empty_lists(name: str, n: int) -> pl.Series:
    """A List(String) column of `n` empty lists, built on offsets that come zeroed from the system:
    nothing is written per row (repeating an empty list writes every offset: 9 ms at 1M accounts,
    100 ms at 10M; reading either costs the same)."""
    import pyarrow as pa  # a dependency of ours; imported here, where it is needed

    offsets = pl.zeros(n + 1, dtype=pl.Int64, eager=True).to_arrow()
    return pl.Series(name, pa.LargeListArray.from_arrays(offsets, pa.array([], pa.large_string())))
