"""The whole pipeline run against a bare baseline, at 1M and 10M accounts: wall time and peak memory.

    python -m benchmarks.bench_pipeline          (KARE_BENCH_SIZES=1000000,10000000 by default)

What is measured (each in its own subprocess, so peak RSS is that measurement's alone):
- pipeline: the steady-state monthly run of one organization, the library path every `kare run` takes
  without Dagster around it: read the previous state from the DuckDB warehouse, read the input Parquet,
  `compute_run` (validate, categorize with explanations, overrides, history, transitions, actions) and
  `Warehouse.publish` in one transaction. The warehouse already holds the previous month, so history is
  updated and actions superseded as in production. Dagster's own overhead (a second or two per run,
  independent of size) and the staging Parquet files between assets are left out so the figure is about
  kare_rules.
- baseline: read the same input Parquet, categorize with a hand-written pl.when/then chain of the same
  rules, write one DuckDB table.
Targets: pipeline within 10x the baseline at 1M; within 8 GiB peak RSS at 10M.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RULES = Path(__file__).resolve().parent.parent / "rules" / "cloudnine"
DATES = (dt.date(2026, 9, 30), dt.date(2026, 10, 31))
DEFAULT_SIZES = "1000000,10000000"
TARGET_RATIO, TARGET_GIB = 10.0, 8.0


def prepare(n: int, folder: Path) -> None:
    """Two monthly snapshots, and a warehouse holding the first month's run (not measured)."""
    import polars as pl

    from kare_rules.loader import load_rules
    from kare_rules.runner import PreviousState, compute_run
    from kare_rules.synth import snapshots
    from kare_rules.warehouse import Warehouse

    rules = load_rules(RULES)
    for day, frame in snapshots(rules, n, list(DATES), seed=5):
        frame.write_parquet(folder / f"{day}.parquet")
    first = compute_run(rules, pl.read_parquet(folder / f"{DATES[0]}.parquet"), DATES[0], PreviousState())
    Warehouse(folder / "warehouse.duckdb").publish(first, (RULES / "kare.yaml").read_text(), rules.version)


def pipeline(folder: Path) -> dict:
    import shutil

    import polars as pl

    from kare_rules.loader import load_rules
    from kare_rules.runner import compute_run
    from kare_rules.warehouse import Warehouse

    target = folder / "measured.duckdb"
    shutil.copy(folder / "warehouse.duckdb", target)
    start = time.perf_counter()
    rules = load_rules(RULES)
    wh = Warehouse(target)
    previous = wh.previous_state(rules.organization)
    out = compute_run(rules, pl.read_parquet(folder / f"{DATES[1]}.parquet"), DATES[1], previous)
    run = wh.publish(out, (RULES / "kare.yaml").read_text(), rules.version, expected_previous_run=previous.last_run_id)
    seconds = time.perf_counter() - start
    target.unlink()
    return {"seconds": seconds, "rows": run["input_rows"], "moved": run["moved"]}


def baseline(folder: Path) -> dict:
    """The least a run must do: read, categorize with one hand-written expression, write one table."""
    import duckdb
    import polars as pl

    start = time.perf_counter()
    df = pl.read_parquet(folder / f"{DATES[1]}.parquet")
    paying, as_of = pl.col("is_customer"), DATES[1]
    strategic = (pl.col("arr") >= 100000) | (pl.col("segment") == "enterprise")
    utilization = pl.col("seats_used") / pl.when(pl.col("seats") != 0).then(pl.col("seats"))
    healthy = (pl.col("nps") >= 30) & (utilization >= 0.8)
    since = (pl.lit(as_of) - pl.col("churned_on")).dt.total_days()
    churned = (since >= 0) & (since <= 365)
    ideal = pl.col("segment").is_in(["mid_market", "enterprise"]) & (pl.col("employees") >= 200)
    category = (
        pl.when((paying & (pl.col("payment_overdue_days") > 90) & ~strategic).fill_null(False))
        .then(pl.lit("exit"))
        .when((paying & strategic & healthy).fill_null(False))
        .then(pl.lit("expand"))
        .when(paying.fill_null(False))
        .then(pl.lit("keep"))
        .when((~paying & churned & ~(pl.col("nps") < 0).fill_null(False)).fill_null(False))
        .then(pl.lit("recapture"))
        .when((~paying & pl.col("churned_on").is_null() & ideal).fill_null(False))
        .then(pl.lit("attain"))
        .otherwise(pl.lit("unassigned"))
    )
    result = df.select("account_id", category.alias("category")).to_arrow()  # noqa: F841 (DuckDB reads it)
    con = duckdb.connect(str(folder / "baseline.duckdb"))
    con.execute("CREATE OR REPLACE TABLE account_categories AS SELECT * FROM result")
    con.close()
    seconds = time.perf_counter() - start
    (folder / "baseline.duckdb").unlink()
    return {"seconds": seconds}


def child(kind: str, folder: Path) -> None:
    result = {
        "prepare": lambda f: prepare(int(os.environ["KARE_BENCH_N"]), f) or {},
        "pipeline": pipeline,
        "baseline": baseline,
    }[kind](folder)
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


def measure(kind: str, folder: Path, n: int) -> dict:
    env = {**os.environ, "KARE_BENCH_N": str(n), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_pipeline", "--child", kind, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} at {n:,} accounts failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Every size in KARE_BENCH_SIZES; `argv` is accepted for `python -m benchmarks` and not used."""
    sizes = [int(s.replace("_", "")) for s in os.environ.get("KARE_BENCH_SIZES", DEFAULT_SIZES).split(",") if s]
    print("pipeline (previous state + compute_run + publish) vs baseline (read, pl.when/then, one DuckDB table)")
    head = ["accounts", "pipeline s", "baseline s", "ratio", "pipeline MiB", "baseline MiB"]
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, [12, 11, 11, 7, 13, 13], strict=True)))
    failed = False
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="kare-bench-pipeline-") as tmp:
            folder = Path(tmp)
            measure("prepare", folder, n)
            base = measure("baseline", folder, n)
            pipe = measure("pipeline", folder, n)
        ratio = pipe["seconds"] / base["seconds"]
        print(
            f"{pipe['rows']:>12,} {pipe['seconds']:>11.2f} {base['seconds']:>11.2f} {ratio:>6.1f}x "
            f"{pipe['max_rss_mib']:>13,.0f} {base['max_rss_mib']:>13,.0f}",
            flush=True,
        )
        if n <= 1_000_000 and ratio > TARGET_RATIO:
            print(f"  target missed: more than {TARGET_RATIO:.0f}x the baseline")
            failed = True
        if n >= 10_000_000 and pipe["max_rss_mib"] > TARGET_GIB * 1024:
            print(f"  target missed: peak memory above {TARGET_GIB:.0f} GiB")
            failed = True
    print("targets: 1M within 10x the baseline; 10M within 8 GiB peak RSS" + (" — MISSED" if failed else " — met"))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(main())
