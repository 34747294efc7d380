"""What the Dagster UI shows about each asset: row counts, schemas, Markdown tables, check results."""

from __future__ import annotations

import dagster as dg
import polars as pl

from kare_rules.model import ALL_CATEGORIES

SUMMARY_KEYS = ("input_rows", "quarantined_rows", "moved", "actions_opened", "actions_closed", *ALL_CATEGORIES)


def frame(df: pl.DataFrame) -> dict:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()])
    return {"dagster/row_count": df.height, "dagster/column_schema": schema}


def markdown(df: pl.DataFrame) -> dg.MetadataValue:
    if not df.height:
        return dg.MetadataValue.md("_none_")
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in df.iter_rows()]
    return dg.MetadataValue.md("\n".join([head, rule, *rows]))


def counts(categories: pl.DataFrame) -> pl.DataFrame:
    return shares(dict(categories.group_by("category").len().iter_rows()))


def shares(per_category: dict[str, int]) -> pl.DataFrame:
    """Accounts and share per category, every category listed in order."""
    out = pl.DataFrame({"category": list(ALL_CATEGORIES),
                        "accounts": [int(per_category.get(c) or 0) for c in ALL_CATEGORIES]})  # fmt: skip
    total = max(int(out["accounts"].sum()), 1)
    return out.select("category", "accounts", (pl.col("accounts") / total).round(4).alias("share"))


def category_table(categories: pl.DataFrame) -> dg.MetadataValue:
    return markdown(counts(categories))


def transition_matrix(moves: pl.DataFrame) -> dg.MetadataValue:
    if not moves.height:
        return markdown(moves)
    wide = moves.pivot(on="to_category", index="from_category", values="accounts").fill_null(0)
    return markdown(wide.sort("from_category"))
