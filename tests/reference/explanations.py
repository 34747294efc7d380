"""The explanations (reason, overlaps) as the engine built them before issue 11's speed-up, kept as a slow oracle.

A frozen copy of `engine.categorize(explain=True)` and the compiler's reason text from that time: one
concat_str per category over the rows it won, put back in row order with a scatter. The property test
in tests/test_reason_text.py holds the engine's faster assembly to exactly this output.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import NO_MATCH, PolarsCompiler, reason_predicate
from kare_rules.engine import _prepared

Piece = str | pl.Expr


def categorize_explained(
    rules: m.RuleSet, accounts: pl.DataFrame | pl.LazyFrame, as_of: dt.date | str, previous: pl.DataFrame | None = None
) -> pl.DataFrame:
    compiler = PolarsCompiler(rules)
    text = _Text(compiler)
    mask = pl.col("_mask")
    fixed = {c: text.fixed_reason(c) for c in (*compiler.names, m.UNASSIGNED)}
    category, matched_rule, overlaps = compiler.lookup(mask)
    frame = _prepared(rules, accounts, as_of, compiler, previous).select(*rules.columns, "_mask").collect()
    main = frame.lazy().select(
        pl.col(rules.key), category, matched_rule, compiler.by_winner(mask, fixed).alias("reason"), overlaps
    )
    rows = frame.lazy().with_row_index("_row")
    varying = [
        rows.filter(mask.is_in(pl.Series(masks, dtype=pl.UInt8).implode())).select("_row", text.reason(c))
        for c, fixed_text in fixed.items()
        if fixed_text is None and (masks := compiler.masks_of(c))
    ]
    if not varying:
        return main.collect()
    result, built = pl.collect_all([main, pl.concat(varying)])
    return result.with_columns(result["reason"].scatter(built["_row"], built["reason"]))


class _Text:
    def __init__(self, compiler: PolarsCompiler):
        self.compiler = compiler
        self.rules = compiler.rules
        self.types = compiler.types

    def reason(self, category: str) -> pl.Expr:
        return _concat(self._reason_pieces(category)).alias("reason")

    def fixed_reason(self, category: str) -> str | None:
        pieces = self._reason_pieces(category)
        return "".join(pieces) if all(isinstance(p, str) for p in pieces) else None  # type: ignore[arg-type]

    def _reason_pieces(self, category: str) -> list[Piece]:
        if category == m.UNASSIGNED:
            return [NO_MATCH]
        return [f"{category}: ", *self.held_text(self.rules.categories[category].when)]

    def held_text(self, cond: m.Condition) -> list[Piece]:
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond, held=True)
        if isinstance(cond, m.TraitRef):
            return [f"{cond.name} (", *self.held_text(self.rules.traits[cond.name]), ")"]
        if isinstance(cond, m.All):
            return _joined([self.held_text(c) for c in cond.items], " and ")
        if isinstance(cond, m.Any_):
            if len(cond.items) == 1:
                return self.held_text(cond.items[0])
            held = [pl.when(self.compiler.raw(c)).then(_concat(self.held_text(c))) for c in cond.items]
            return [pl.coalesce([*held, pl.lit("")])]
        return ["not (", *self.full_text(cond.item), ")"]

    def full_text(self, cond: m.Condition) -> list[Piece]:
        if isinstance(cond, m.Predicate):
            return self.predicate_text(cond, held=False)
        if isinstance(cond, m.TraitRef):
            return [f"{cond.name} (", *self.full_text(self.rules.traits[cond.name]), ")"]
        if isinstance(cond, m.All | m.Any_):
            sep = " and " if isinstance(cond, m.All) else " or "
            return _joined([self.full_text(c) for c in cond.items], sep)
        return ["not (", *self.full_text(cond.item), ")"]

    def predicate_text(self, p: m.Predicate, held: bool) -> list[Piece]:
        if held and p.op in ("eq", "is_null"):
            return [reason_predicate(p)]
        quote = "'" if self.types[p.column] == "string" else ""
        if held:
            return [f"{reason_predicate(p)} [{quote}", self.value_text(p.column), f"{quote}]"]
        shown = _concat([quote, self.value_text(p.column), quote]).fill_null("null")
        return [f"{reason_predicate(p)} [", shown, "]"]

    def value_text(self, column: str) -> pl.Expr:
        col = pl.col(column)
        return (col.round(4) if self.types[column] == "float" else col).cast(pl.String)


def _joined(parts: list[list[Piece]], sep: str) -> list[Piece]:
    out: list[Piece] = []
    for i, part in enumerate(parts):
        out += [sep, *part] if i else part
    return out


def _concat(pieces: list[Piece]) -> pl.Expr:
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    exprs = [pl.lit(x) if isinstance(x, str) else x for x in merged if not isinstance(x, str) or x]
    if len(exprs) <= 1:
        return exprs[0] if exprs else pl.lit("")
    return pl.concat_str(exprs)
