"""RuleSet → Polars expressions: categories, matched rule, explanations and overlaps, all vectorized."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

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


def derived_exprs(rules: m.RuleSet, as_of: dt.date) -> list[pl.Expr]:
    """The derived columns, computed from the run's as_of date (never today)."""
    out = []
    for d in rules.derived:
        if d.kind in ("days_since", "days_until"):
            days = (pl.lit(as_of, dtype=pl.Date) - pl.col(d.args[0]).cast(pl.Date)).dt.total_days()
            expr = days if d.kind == "days_since" else -days
            out.append(expr.cast(pl.Int64).alias(d.name))
        else:
            num, den = (pl.col(a).cast(pl.Float64) for a in d.args)
            out.append(pl.when(den != 0).then(num / den).otherwise(None).alias(d.name))
    return out


def _lit(value: m.Scalar, ctype: str) -> pl.Expr:
    return pl.lit(value, dtype=POLARS_TYPES[ctype])


class PolarsCompiler:
    """Compiles the condition tree of one RuleSet; traits are inlined (Polars de-duplicates them)."""

    def __init__(self, rules: m.RuleSet):
        self.rules = rules
        self.types = rules.columns

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
        return self._chain(lambda r: pl.lit(r.name), pl.lit(m.UNASSIGNED)).alias("category")

    def matched_rule(self) -> pl.Expr:
        return self._chain(lambda r: pl.lit(rule_id(r.name)), pl.lit(None, dtype=pl.String)).alias("matched_rule")

    def _chain(self, then, otherwise: pl.Expr) -> pl.Expr:
        ordered = self.rules.ordered()
        if not ordered:
            return otherwise
        expr = pl.when(self.raw(ordered[0].when)).then(then(ordered[0]))
        for rule in ordered[1:]:
            expr = expr.when(self.raw(rule.when)).then(then(rule))
        return expr.otherwise(otherwise)

    def overlaps(self) -> pl.Expr:
        """The categories whose conditions held besides the winner, in precedence order."""
        ordered = self.rules.ordered()
        if not ordered:
            return pl.lit([], dtype=pl.List(pl.String)).alias("overlaps")
        held = pl.concat_list(
            [pl.when(self.raw(r.when)).then(pl.lit(r.name)).otherwise(pl.lit(None, dtype=pl.String)) for r in ordered]
        ).list.drop_nulls()
        return held.list.slice(1).alias("overlaps")

    # ---- explanations --------------------------------------------------------------------------

    def reason(self) -> pl.Expr:
        """Why the winning category won: the traits and predicates that held, with their values."""
        return self._chain(
            lambda r: pl.concat_str([pl.lit(f"{r.name}: "), self.held_text(r.when)]),
            pl.lit("no category's conditions held"),
        ).alias("reason")

    def held_text(self, cond: m.Condition) -> pl.Expr:
        """Text for a condition known to hold: for `any`, the first alternative that held."""
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond)
        if isinstance(cond, m.TraitRef):
            return pl.concat_str([pl.lit(f"{cond.name} ("), self.held_text(self.rules.traits[cond.name]), pl.lit(")")])
        if isinstance(cond, m.All):
            return _join([self.held_text(c) for c in cond.items], " and ")
        if isinstance(cond, m.Any_):
            expr = pl.when(self.raw(cond.items[0])).then(self.held_text(cond.items[0]))
            for c in cond.items[1:]:
                expr = expr.when(self.raw(c)).then(self.held_text(c))
            return expr.otherwise(pl.lit(""))
        return pl.concat_str([pl.lit("not ("), self.full_text(cond.item), pl.lit(")")])

    def full_text(self, cond: m.Condition) -> pl.Expr:
        """Text for a whole condition with every value, whether or not it held."""
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond)
        if isinstance(cond, m.TraitRef):
            return pl.concat_str([pl.lit(f"{cond.name} ("), self.full_text(self.rules.traits[cond.name]), pl.lit(")")])
        if isinstance(cond, m.All | m.Any_):
            sep = " and " if isinstance(cond, m.All) else " or "
            return _join([self.full_text(c) for c in cond.items], sep)
        return pl.concat_str([pl.lit("not ("), self.full_text(cond.item), pl.lit(")")])

    def predicate_text(self, p: m.Predicate) -> pl.Expr:
        return pl.concat_str(
            [pl.lit(describe_predicate(p) + " ["), pl.col(p.column).cast(pl.String).fill_null("null"), pl.lit("]")]
        )


def _join(parts: list[pl.Expr], sep: str) -> pl.Expr:
    return pl.concat_str(parts, separator=sep)


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


def columns_used(rules: m.RuleSet, conds: Iterable[m.Condition] | None = None) -> set[str]:
    """Every column a rule set's conditions read."""
    out: set[str] = set()

    def walk(c: m.Condition) -> None:
        if isinstance(c, m.Predicate):
            out.add(c.column)
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
