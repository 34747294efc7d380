"""SQL push-down vs Polars: the same rules over the same Parquet file, DuckDB engine against the Polars engine.

    python -m benchmarks.bench_sql [--rows N] [--repeat R]
    (or KARE_BENCH_ROWS=N, else the largest of KARE_BENCH_SIZES=N,N; default 10,000,000)

Prints each engine's best time and the ratio DuckDB / Polars measured in the same run. Absolute times
depend on the machine; only the ratio is worth comparing between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import polars as pl

from kare_rules.compile_sql import categorize_duckdb
from kare_rules.engine import categorize_lazy
from kare_rules.loader import load_rules

RULES = Path(__file__).resolve().parent.parent / "rules" / "cloudnine"
AS_OF = dt.date(2026, 11, 1)
DEFAULT_ROWS = 10_000_000


def synthetic_accounts(rows: int, seed: int = 7) -> pl.DataFrame:
    """Cloudnine-shaped accounts, vectorized (no per-row Python), with nulls where the contract allows them."""
    i = pl.int_range(rows, dtype=pl.Int64)

    def draw(k: int, modulo: int) -> pl.Expr:  # a deterministic pseudo-random integer in [0, modulo)
        return (i.hash(seed=seed * 1000 + k) % modulo).cast(pl.Int64)

    def unit(k: int) -> pl.Expr:
        return draw(k, 1_000_000) / 1_000_000

    def pick(k: int, values: list[str]) -> pl.Expr:
        return pl.lit(pl.Series(values)).gather(draw(k, len(values)))

    def null_share(k: int, share: float, value: pl.Expr) -> pl.Expr:
        return pl.when(unit(k) < share).then(None).otherwise(value)

    seats = draw(1, 500)
    return pl.select(
        i.cast(pl.String).str.pad_start(9, "0").alias("account_id"),
        null_share(2, 0.2, pick(3, ["ana", "bo", "cy", "dee"])).alias("account_owner"),
        pick(4, ["free", "team", "business", "enterprise"]).alias("plan"),
        pick(5, ["smb", "smb", "smb", "mid_market", "mid_market", "enterprise"]).alias("segment"),
        (unit(6) < 0.6).alias("is_customer"),
        null_share(7, 0.1, (unit(8) * 400_000).round(2)).alias("arr"),
        seats.alias("seats"),
        (seats * unit(9)).floor().cast(pl.Int64).alias("seats_used"),
        null_share(10, 0.3, draw(11, 201) - 100).alias("nps"),
        null_share(12, 0.15, draw(13, 20_000) + 1).alias("employees"),
        null_share(14, 0.7, pl.lit(AS_OF) - pl.duration(days=draw(15, 1500))).cast(pl.Date).alias("churned_on"),
        draw(16, 200).alias("payment_overdue_days"),
    )


def default_rows() -> int:
    """KARE_BENCH_ROWS, else the largest of KARE_BENCH_SIZES (the size list every benchmark reads)."""
    if os.environ.get("KARE_BENCH_ROWS"):
        return int(os.environ["KARE_BENCH_ROWS"].replace("_", ""))
    sizes = [int(s.replace("_", "")) for s in os.environ.get("KARE_BENCH_SIZES", "").split(",") if s.strip()]
    return max(sizes, default=DEFAULT_ROWS)


def best_of(repeat: int, fn) -> tuple[float, pl.DataFrame]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(rows: int, repeat: int = 2) -> dict:
    """Time both engines on `rows` synthetic accounts read from one Parquet file; check they agree."""
    rules = load_rules(RULES)
    with tempfile.TemporaryDirectory(prefix="kare-bench-sql-") as tmp:
        path = Path(tmp) / "accounts.parquet"
        synthetic_accounts(rows).write_parquet(path)
        polars_s, by_polars = best_of(
            repeat, lambda: categorize_lazy(rules, pl.scan_parquet(path), AS_OF, explain=False).collect()
        )
        duckdb_s, by_duckdb = best_of(repeat, lambda: categorize_duckdb(rules, str(path), AS_OF))
    # Same categories, account by account (DuckDB does not promise row order).
    joined = by_polars.join(by_duckdb, on="account_id", how="full", suffix="_sql")
    mismatches = joined.filter(pl.col("category").ne_missing(pl.col("category_sql"))).height
    if mismatches:
        raise SystemExit(f"engines disagree on {mismatches} of {rows} accounts: the benchmark is void")
    return {"rows": rows, "polars_s": polars_s, "duckdb_s": duckdb_s, "ratio": duckdb_s / polars_s}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sql", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=default_rows())
    parser.add_argument("--repeat", type=int, default=2, help="runs per engine; the best is kept")
    args = parser.parse_args(argv)
    result = run(args.rows, args.repeat)
    print(f"SQL push-down, {result['rows']:,} accounts from Parquet (cloudnine rules), best of {args.repeat}:")
    print(f"  polars  categorize_lazy().collect()  {result['polars_s']:8.2f} s")
    print(f"  duckdb  categorize_duckdb(path)      {result['duckdb_s']:8.2f} s")
    print(f"  ratio   duckdb / polars              {result['ratio']:8.2f}x")
    return result


if __name__ == "__main__":
    main()
