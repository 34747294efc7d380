"""RuleSet → Polars expressions: categories, matched rule, explanations and overlaps, all vectorized."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import polars as pl

from kare_rules import model as m

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


def previous_column(column: str) -> str:
    """The internal column holding an input's value in the previous run (read by trends)."""
    return f"_kare_prev_{column}"


def derived_exprs(rules: m.RuleSet, as_of: dt.date) -> list[pl.Expr]:
    """The derived columns, computed from the run's as_of date (never today). Trends read the
    `previous_column` of their input, which the caller joins in (null for an account seen first)."""
    out = []
    for d in rules.derived:
        if d.kind in m.DATE_KINDS:
            days = (pl.lit(as_of, dtype=pl.Date) - pl.col(d.args[0]).cast(pl.Date)).dt.total_days()
            expr = days if d.kind == "days_since" else -days
            out.append(expr.cast(pl.Int64).alias(d.name))
        elif d.kind in m.TREND_KINDS:
            now, before = pl.col(d.args[0]).cast(pl.Float64), pl.col(previous_column(d.args[0])).cast(pl.Float64)
            change = now - before
            if d.kind == "pct_change_of":
                change = pl.when(before != 0).then(change / before.abs()).otherwise(None)
            out.append(change.alias(d.name))
        else:
            num, den = (pl.col(a).cast(pl.Float64) for a in d.args)
            out.append(pl.when(den != 0).then(num / den).otherwise(None).alias(d.name))
    return out


def _lit(value: m.Scalar, ctype: str) -> pl.Expr:
    return pl.lit(value, dtype=POLARS_TYPES[ctype])


T = TypeVar("T")

# The compiled forms of the most recent rule sets, by object identity (a RuleSet holds dicts, so it is
# not hashable): the RuleSet is kept with them, so an id is not reused while its entry lives.
_COMPILED: OrderedDict[tuple[int, str], tuple[m.RuleSet, object]] = OrderedDict()
_COMPILED_SIZE = 16
_COMPILED_LOCK = threading.Lock()


def compiled(rules: m.RuleSet, kind: str, make: Callable[[m.RuleSet], T]) -> T:
    """`make(rules)`, made once per RuleSet object and kind (the Polars compiler, the edges' predicate
    space) and kept for the most recent rule sets. A RuleSet is immutable, so what is compiled from it
    holds as long as it does."""
    key = (id(rules), kind)
    with _COMPILED_LOCK:
        hit = _COMPILED.get(key)
        if hit is not None and hit[0] is rules:
            _COMPILED.move_to_end(key)
            return hit[1]  # type: ignore[return-value]
    made = make(rules)
    with _COMPILED_LOCK:
        _COMPILED[key] = (rules, made)
        while len(_COMPILED) > _COMPILED_SIZE:
            _COMPILED.popitem(last=False)
    return made


class PolarsCompiler:
    """Compiles the condition tree of one RuleSet; traits are inlined (Polars de-duplicates them)."""

    def __init__(self, rules: m.RuleSet):
        self.rules = rules
        self.types = rules.columns
        self._memo: dict[tuple, object] = {}

    @classmethod
    def of(cls, rules: m.RuleSet) -> PolarsCompiler:
        """The compiler of `rules`, made once per RuleSet object: the expressions it builds (the mask,
        the lookups, the reasons' pieces) are the same at every call, and building them costs more than
        categorizing a thousand accounts."""
        return compiled(rules, cls.__qualname__, cls)

    def _once(self, key: tuple, make: Callable[[], T]) -> T:
        """`make()`, computed once per key for this compiler."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]  # type: ignore[return-value]

    # ---- truth ---------------------------------------------------------------------------------

    def raw(self, cond: m.Condition) -> pl.Expr:
        """Kleene-logic expression whose null means false. Without `not`, null and false behave the
        same through and/or, so nulls are only folded to false where a negation needs it."""
        if isinstance(cond, m.Predicate):
            return self.predicate(cond)
        if isinstance(cond, m.TraitRef):
            return self.raw(self.rules.traits[cond.name])
        if isinstance(cond, m.All):
            return (
                pl.all_horizontal([self.raw(c) for c in cond.items]) if len(cond.items) > 1 else self.raw(cond.items[0])
            )
        if isinstance(cond, m.Any_):
            return (
                pl.any_horizontal([self.raw(c) for c in cond.items]) if len(cond.items) > 1 else self.raw(cond.items[0])
            )
        return ~self.truth(cond.item)

    def truth(self, cond: m.Condition) -> pl.Expr:
        """Two-valued: true or false, never null (DESIGN §3)."""
        return self.raw(cond).fill_null(False)

    def predicate(self, p: m.Predicate) -> pl.Expr:
        col = pl.col(p.column)
        ctype = self.types[p.column]
        v = p.value
        match p.op:
            case "is_null":
                return col.is_null() if v else col.is_not_null()
            case "eq":
                return col == _lit(v, ctype)
            case "ne":
                return col != _lit(v, ctype)
            case "gt":
                return col > _lit(v, ctype)
            case "gte":
                return col >= _lit(v, ctype)
            case "lt":
                return col < _lit(v, ctype)
            case "lte":
                return col <= _lit(v, ctype)
            case "between":
                return col.is_between(_lit(v[0], ctype), _lit(v[1], ctype), closed="both")
            case "in" | "not_in":
                # is_in gives null on a null value, so not_in stays null (false) there too.
                member = col.is_in(pl.Series(list(v), dtype=POLARS_TYPES[ctype]).implode())
                return member if p.op == "in" else ~member
        raise AssertionError(p.op)

    # ---- categories ----------------------------------------------------------------------------

    def category(self) -> pl.Expr:
        """First category in precedence whose condition holds, else 'unassigned'."""
        return self.by_winner(self.mask(), {c: c for c in (*self.names, m.UNASSIGNED)}).alias("category")

    @cached_property
    def names(self) -> list[str]:
        """The defined categories in precedence order; bit i of the mask is names[i]."""
        return [r.name for r in self.rules.ordered()]

    def mask(self) -> pl.Expr:
        """Which categories' conditions held, one bit per category in precedence order (bit 0 first).

        Everything per account derives from this one small integer by table lookup, so each condition
        is evaluated once, however many outputs (category, rule, overlaps) are asked for."""
        return self._once(("mask",), self._mask)

    def _mask(self) -> pl.Expr:
        ordered = self.rules.ordered()
        if not ordered:
            return pl.lit(0, dtype=pl.UInt8).alias("_mask")
        bits = [self.truth(r.when).cast(pl.UInt8) * (1 << i) for i, r in enumerate(ordered)]
        return pl.sum_horizontal(bits).cast(pl.UInt8).alias("_mask")

    def masks_of(self, category: str) -> list[int]:
        """Every mask value whose winner is `category`."""
        return self._once(("masks_of", category), lambda: [mk for mk, w in enumerate(self._winners) if w == category])

    @cached_property
    def _winners(self) -> list[str]:
        return [held[0] if held else m.UNASSIGNED for held in _held_lists(self.names)]

    def by_winner(self, mask: pl.Expr, values: dict[str, str | None]) -> pl.Expr:
        """A per-category value looked up through the mask's winner (null for categories not in `values`)."""
        table = [values.get(winner) for winner in self._winners]
        nulls = [i for i, value in enumerate(table) if value is None]
        if not nulls:
            return pl.lit(pl.Series(table, dtype=pl.String)).gather(mask)
        # Gathering from a table that holds a null takes Polars' null-aware path, 3.5x as slow at 10M
        # rows (52 against 15 ms for `matched_rule`): gather from one without, then null those rows.
        filled = pl.lit(pl.Series([value or "" for value in table], dtype=pl.String)).gather(mask)
        return pl.when(mask.is_in(pl.Series(nulls, dtype=pl.UInt32).implode())).then(None).otherwise(filled)

    def by_winner_position(self, mask: pl.Expr, positions: dict[str, int]) -> pl.Expr:
        """A per-category position (UInt32) looked up through the mask's winner (0 for categories not in
        `positions`)."""
        table = [positions.get(winner, 0) for winner in self._winners]
        return pl.lit(pl.Series(table, dtype=pl.UInt32)).gather(mask)

    def lookup(self, mask: pl.Expr | None = None) -> list[pl.Expr]:
        """category, matched_rule and overlaps (the other categories that held, in precedence order), of
        `mask` (by default the column `_mask`)."""
        if mask is None:
            return self._once(("lookup",), lambda: self.lookup(pl.col("_mask")))
        overlaps = pl.Series([h[1:] for h in _held_lists(self.names)], dtype=pl.List(pl.String))
        return [
            self.by_winner(mask, {c: c for c in (*self.names, m.UNASSIGNED)}).alias("category"),
            self.by_winner(mask, {c: rule_id(c) for c in self.names}).alias("matched_rule"),
            pl.lit(overlaps).gather(mask).alias("overlaps"),
        ]

    # ---- explanations --------------------------------------------------------------------------

    def reason(self, category: str) -> pl.Expr:
        """Why `category` won, for rows where it did: the traits and predicates that held, with the
        values that decided it. Built as one flat concat of literal text and value columns."""
        return self._concat(self._reason_pieces(category)).alias("reason")

    def reason_variants(self, category: str) -> list[tuple[pl.Expr | None, list[Piece]]]:
        """`category`'s reason as variants (guard, pieces): the rows of the category where `guard` holds
        (every row when None) get the text of `pieces` (`reason_text`). An `any` that held says which
        alternative held first; a variant per alternative keeps each text one flat concat over the rows
        it is for, instead of building every alternative's text for every row and keeping one
        (`held_text`). Up to MAX_VARIANTS variants; beyond that, one variant built with `held_text`."""
        return self._once(("reason_variants", category), lambda: self._reason_variants(category))

    def _reason_variants(self, category: str) -> list[tuple[pl.Expr | None, list[Piece]]]:
        when = self.rules.categories[category].when if category != m.UNASSIGNED else None
        if when is None or self._variant_count(when) > MAX_VARIANTS:
            return [(None, self._reason_pieces(category))]
        return [
            (pl.all_horizontal(guards) if guards else None, [f"{category}: ", *pieces])
            for guards, pieces in self._held_variants(when)
        ]

    def reason_text(
        self, pieces: list[Piece], ranges: dict[str, KeyRange] | None = None, table_limit: int = 0
    ) -> pl.Expr:
        """The text of a reason's pieces as one expression named `reason`. `ranges` holds the range of
        the keys (`value_key`) of integer, date, boolean or float columns over the rows it is for: their
        values are looked up in a table of texts instead of formatted row by row (`_concat`);
        neighbouring lookups share one table while it has at most `table_limit` entries."""
        return self._concat(pieces, ranges or {}, table_limit).alias("reason")

    def fixed_reason(self, category: str) -> str | None:
        """The reason text when it is the same for every account of `category` (no values in it)."""
        pieces = self._once(("pieces", category), lambda: self._reason_pieces(category))
        return "".join(pieces) if all(isinstance(p, str) for p in pieces) else None  # type: ignore[arg-type]

    def _reason_pieces(self, category: str) -> list[Piece]:
        if category == m.UNASSIGNED:
            return [NO_MATCH]
        return [f"{category}: ", *self.held_text(self.rules.categories[category].when)]

    def held_text(self, cond: m.Condition) -> list[Piece]:
        """Text for a condition known to hold: for `any`, the first alternative that held."""
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond, held=True)
        if isinstance(cond, m.TraitRef):
            return [f"{cond.name} (", *self.held_text(self.rules.traits[cond.name]), ")"]
        if isinstance(cond, m.All):
            return _joined([self.held_text(c) for c in cond.items], " and ")
        if isinstance(cond, m.Any_):
            if len(cond.items) == 1:
                return self.held_text(cond.items[0])
            # One flat coalesce, not a when/then chain: a chain nests one level per alternative, and
            # Polars' planning time grows with the square of that depth.
            held = [pl.when(self.raw(c)).then(self._concat(self.held_text(c))) for c in cond.items]
            return [pl.coalesce([*held, pl.lit("")])]
        return ["not (", *self.full_text(cond.item), ")"]

    def _held_variants(self, cond: m.Condition) -> list[tuple[list[pl.Expr], list[Piece]]]:
        """`held_text` with each `any` split into one (guards, pieces) per alternative: the guards say
        that this alternative is the first that held. Together the variants cover every row where
        `cond` holds, once."""
        if isinstance(cond, m.TraitRef):
            return [(g, [f"{cond.name} (", *p, ")"]) for g, p in self._held_variants(self.rules.traits[cond.name])]
        if isinstance(cond, m.All):
            out: list[tuple[list[pl.Expr], list[Piece]]] = [([], [])]
            for i, item in enumerate(cond.items):
                sep = [" and "] if i else []
                out = [(g + g2, [*p, *sep, *p2]) for g, p in out for g2, p2 in self._held_variants(item)]
            return out
        if isinstance(cond, m.Any_) and len(cond.items) > 1:
            out = []
            for i, item in enumerate(cond.items):
                first = [self.truth(item), *[~self.truth(c) for c in cond.items[:i]]]
                out += [([*first, *g], p) for g, p in self._held_variants(item)]
            return out
        if isinstance(cond, m.Any_):
            return self._held_variants(cond.items[0])
        return [([], self.held_text(cond))]  # a predicate, or `not` (its text shows everything)

    def _variant_count(self, cond: m.Condition) -> int:
        """How many variants `_held_variants` gives, without building them."""
        if isinstance(cond, m.TraitRef):
            return self._variant_count(self.rules.traits[cond.name])
        if isinstance(cond, m.All):
            return math.prod(self._variant_count(c) for c in cond.items)
        if isinstance(cond, m.Any_):
            return sum(self._variant_count(c) for c in cond.items)
        return 1

    def full_text(self, cond: m.Condition) -> list[Piece]:
        """Text for a whole condition with every value, whether or not it held."""
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond, held=False)
        if isinstance(cond, m.TraitRef):
            return [f"{cond.name} (", *self.full_text(self.rules.traits[cond.name]), ")"]
        if isinstance(cond, m.All | m.Any_):
            sep = " and " if isinstance(cond, m.All) else " or "
            return _joined([self.full_text(c) for c in cond.items], sep)
        return ["not (", *self.full_text(cond.item), ")"]

    def predicate_text(self, p: m.Predicate, held: bool) -> list[Piece]:
        """`arr ≥ 100000 [250000.0]`; a predicate that held by equality or nullness already says its
        value, so it carries none. Any other predicate that held saw a value, never a null (a
        comparison with null is false), so only text under `not` needs the null case."""
        if held and p.op in ("eq", "is_null"):
            return [reason_predicate(p)]
        quote = "'" if self.types[p.column] == "string" else ""
        if held:
            return [f"{reason_predicate(p)} [{quote}", Shown(p.column), f"{quote}]"]
        return [f"{reason_predicate(p)} [", Shown(p.column, quote, "null"), "]"]

    def value_text(self, column: str) -> pl.Expr:
        """A value as text (null stays null); a float rounded to SHOWN_DECIMALS."""
        col = pl.col(column)
        return (col.round(SHOWN_DECIMALS) if self.types[column] == "float" else col).cast(pl.String)

    def value_key(self, column: str, value: pl.Expr | None = None) -> pl.Expr:
        """The Int64 by which a value's text is looked up in a table of texts (`_table`): the physical
        value of an integer, date or boolean column; for a float, its value as shown (rounded to
        SHOWN_DECIMALS) times 10**SHOWN_DECIMALS, null for NaN and infinities (see engine._key_ranges).
        Of the column's values, or of `value` (an expression of them, such as their smallest)."""
        col = pl.col(column) if value is None else value
        if self.types[column] == "float":
            return (col.round(SHOWN_DECIMALS) * 10**SHOWN_DECIMALS).round().cast(pl.Int64, strict=False)
        return col.to_physical().cast(pl.Int64)

    def keyed_value(self, column: str, key: pl.Expr) -> pl.Expr:
        """The value (of the column's type) whose text a `value_key` stands for."""
        ctype = self.types[column]
        if ctype == "float":
            return (key.cast(pl.Float64) / 10**SHOWN_DECIMALS).round(SHOWN_DECIMALS)
        if ctype == "date":
            return key.cast(pl.Int32).cast(pl.Date)
        return key.cast(POLARS_TYPES[ctype])

    def _concat(self, pieces: list[Piece], ranges: dict[str, KeyRange] | None = None, limit: int = 0) -> pl.Expr:
        """One concat_str over the pieces, with neighbouring literal text merged first.

        A value whose column has a known narrow range (`ranges`) is looked up in a table of the
        texts of every value in the range, with the literal text on either side written into each
        entry, and neighbouring lookups share one table of every combination while it stays small:
        the same text as formatting every row's value, for the cost of copying it, in fewer pieces
        (concat_str pays per row for every piece, on top of the bytes)."""
        merged: list[Piece] = []
        for piece in pieces:
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            else:
                merged.append(piece)
        out: list[str | pl.Expr | _Table] = []
        skip = False
        for i, piece in enumerate(merged):
            if skip:
                skip = False
            elif isinstance(piece, Shown) and ranges and piece.column in ranges:
                before = out.pop() if out and isinstance(out[-1], str) else ""
                after = merged[i + 1] if i + 1 < len(merged) and isinstance(merged[i + 1], str) else ""
                table = self._table(piece, ranges[piece.column], before, after)  # type: ignore[arg-type]
                if out and isinstance(out[-1], _Table) and len(out[-1].texts) * len(table.texts) <= limit:
                    table = out.pop().then(table)  # type: ignore[union-attr]
                out.append(table)
                skip = bool(after)
            else:
                out.append(self._shown(piece) if isinstance(piece, Shown) else piece)
        exprs = [
            pl.lit(x) if isinstance(x, str) else x.lookup() if isinstance(x, _Table) else x
            for x in out
            if not isinstance(x, str) or x
        ]
        if len(exprs) <= 1:
            return exprs[0] if exprs else pl.lit("")
        return pl.concat_str(exprs)

    def _shown(self, shown: Shown) -> pl.Expr:
        value = self.value_text(shown.column)
        if shown.quote:
            value = pl.concat_str([pl.lit(shown.quote), value, pl.lit(shown.quote)])
        return value if shown.null is None else value.fill_null(shown.null)

    def _table(self, shown: Shown, keys: KeyRange, before: str, after: str) -> _Table:
        """`before`, the value's text and `after`, for every key in `keys` (and null, and -0.0 when the
        range says some value is shown so)."""
        # from low, not to high + 1: high may be the largest Int64
        key_range = pl.int_range(0, keys.high - keys.low + 1, dtype=pl.Int64) + keys.low
        value = self.keyed_value(shown.column, key_range).cast(pl.String)
        extra = []  # entries after the range's: -0.0, then null
        key = self.value_key(shown.column)
        index = (key - keys.low if keys.low else key).cast(pl.UInt32)
        size = keys.high - keys.low + 1
        if keys.negative_zero:
            extra.append(f"{before}{shown.quote}-0.0{shown.quote}{after}")
            shown_zero = negative_zero(pl.col(shown.column).round(SHOWN_DECIMALS))
            index = pl.when(shown_zero).then(pl.lit(size, dtype=pl.UInt32)).otherwise(index)
        if shown.null is not None:
            extra.append(before + shown.null + after)
            index = index.fill_null(pl.lit(size + len(extra) - 1, dtype=pl.UInt32))
        # One query builds the whole table: a fixed cost per table, whatever its size.
        text = pl.concat_str([pl.lit(before + shown.quote), value, pl.lit(shown.quote + after)])
        if extra:
            text = text.append(pl.lit(pl.Series(extra, dtype=pl.String)))
        texts = pl.select(text.alias("")).to_series()
        return _Table(texts, index)


NO_MATCH = "no category's conditions held"

# A float in a reason is shown rounded to this many decimals (`PolarsCompiler.value_text`).
SHOWN_DECIMALS = 4

# Characters of one predicate in a reason, which every account of its category carries: a 1 MB rule file
# holding an `in` list of 50,000 values (or one long text) made a 1 MB reason per account, and a run of
# ordinary size ran out of memory. Longer text is cut; the account's own value is still shown after it.
MAX_REASON_PREDICATE = 200

# More variants than this and a category's reason is one concat with a coalesce per `any`: each variant
# is a pass over the accounts to find its rows.
MAX_VARIANTS = 8


@dataclass(frozen=True)
class Shown:
    """A column's value in a reason's text: quoted when it is a string; `null` is the text for a missing
    value (None where the value shown cannot be missing)."""

    column: str
    quote: str = ""
    null: str | None = None


Piece = str | pl.Expr | Shown


@dataclass(frozen=True)
class KeyRange:
    """The keys (`PolarsCompiler.value_key`) a column's values take over some rows, from `low` to `high`;
    `negative_zero`: a float value among them is shown as -0.0 (key 0 stands for 0.0)."""

    low: int
    high: int
    negative_zero: bool = False


# The most entries a table of value texts may have, however many rows it serves (`PolarsCompiler._concat`).
MAX_TABLE = 1 << 20


@dataclass(frozen=True)
class _Table:
    """A piece of text looked up per row: `texts` indexed by `index` (a UInt32 expression)."""

    texts: pl.Series
    index: pl.Expr

    def then(self, other: _Table) -> _Table:
        """This piece followed by `other`, as one table of every pair of their texts."""
        n = len(other.texts)
        pair = pl.int_range(len(self.texts) * n, dtype=pl.UInt32)
        texts = pl.select(pl.lit(self.texts).gather(pair // n) + pl.lit(other.texts).gather(pair % n)).to_series()
        return _Table(texts, self.index * pl.lit(n, dtype=pl.UInt32) + other.index)

    def lookup(self) -> pl.Expr:
        # One chunk: gathering from a literal of several chunks costs several times as much.
        return pl.lit(self.texts.rechunk()).gather(self.index)


def negative_zero(value: pl.Expr) -> pl.Expr:
    """-0.0 (equal to 0, but its reciprocal is -inf): shown as "-0.0"."""
    return (value == 0) & (1.0 / value < 0)


def piece_columns(pieces: list[Piece]) -> set[str]:
    """The columns a reason's pieces read: the values shown, and the conditions an `any` tests."""
    out: set[str] = set()
    for piece in pieces:
        if isinstance(piece, Shown):
            out.add(piece.column)
        elif isinstance(piece, pl.Expr):
            out.update(piece.meta.root_names())
    return out


def _joined(parts: list[list[Piece]], sep: str) -> list[Piece]:
    out: list[Piece] = []
    for i, part in enumerate(parts):
        out += [sep, *part] if i else part
    return out


def _held_lists(names: list[str]) -> list[list[str]]:
    """For every mask value, the categories it says held, in precedence order."""
    return [[n for i, n in enumerate(names) if mk >> i & 1] for mk in range(1 << len(names))]


def rule_id(category: str) -> str:
    """The rule that matched, as a path into the rule file: 'exit' or 'profiles.keep'."""
    return category if category == "exit" else f"profiles.{category}"


def format_value(value: m.Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def describe_predicate(p: m.Predicate) -> str:
    """The predicate as a person reads it: `lifetime_value ≥ 250000`."""
    if p.op == "is_null":
        return f"{p.column} is {'' if p.value else 'not '}null"
    if p.op == "between":
        return f"{p.column} between {format_value(p.value[0])} and {format_value(p.value[1])}"
    return f"{p.column} {m.OP_SYMBOL[p.op]} {format_value(p.value)}"


def reason_predicate(p: m.Predicate) -> str:
    """`describe_predicate` in at most MAX_REASON_PREDICATE characters: an `in` list shows the values that
    fit and how many more there are; a long text value is cut with '…'. A number is never cut (1e300 is
    301 digits, not a memory problem, and cut it would read as another number)."""
    text = describe_predicate(p)
    if len(text) <= MAX_REASON_PREDICATE:
        return text
    if p.op in ("in", "not_in"):
        head, shown = f"{p.column} {m.OP_SYMBOL[p.op]} [", []
        size = len(head) + 20  # room for the count of the rest
        for v in p.value:
            size += len(t := format_value(v)) + 2
            if size > MAX_REASON_PREDICATE:
                break
            shown.append(t)
        rest = len(p.value) - len(shown)
        return head + ", ".join([*shown, f"… {rest:,} more" if shown else f"{rest:,} values"]) + "]"
    if any(isinstance(v, str) for v in (p.value if isinstance(p.value, tuple) else (p.value,))):
        return text[: MAX_REASON_PREDICATE - 1] + "…"
    return text


def describe(cond: m.Condition) -> str:
    """A whole condition as one line of text (no values)."""
    if isinstance(cond, m.Predicate):
        return describe_predicate(cond)
    if isinstance(cond, m.TraitRef):
        return cond.name
    if isinstance(cond, m.Not):
        return f"not ({describe(cond.item)})"
    sep = " and " if isinstance(cond, m.All) else " or "
    inner = sep.join(describe(c) for c in cond.items)
    return f"({inner})" if len(cond.items) > 1 else inner


def predicates(rules: m.RuleSet, conds: Iterable[m.Condition] | None = None) -> list[m.Predicate]:
    """Every predicate of these conditions (by default, of every category's), traits inlined, in order."""
    out: list[m.Predicate] = []

    def walk(c: m.Condition) -> None:
        if isinstance(c, m.Predicate):
            out.append(c)
        elif isinstance(c, m.TraitRef):
            walk(rules.traits[c.name])
        elif isinstance(c, m.All | m.Any_):
            for i in c.items:
                walk(i)
        else:
            walk(c.item)

    for c in conds if conds is not None else [r.when for r in rules.ordered()]:
        walk(c)
    return out


def columns_used(rules: m.RuleSet, conds: Iterable[m.Condition] | None = None) -> set[str]:
    """Every column a rule set's conditions read."""
    return {p.column for p in predicates(rules, conds)}
