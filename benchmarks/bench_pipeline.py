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
- bucketed: the same run through `Warehouse.run_bucketed` (what `kare run --buckets N` does), with
  N = ceil(accounts / 1M): compute_run and publish one slice of accounts at a time, in one transaction.
  The unbucketed pipeline is skipped where its estimated peak would not fit in this machine's memory.
- baseline: read the same input Parquet, categorize with a hand-written pl.when/then chain of the same
  rules, write one DuckDB table.
Targets: pipeline within 10x the baseline at 1M; bucketed within 8 GiB peak RSS at 10M.
"""

from __future__ import annotations

import datetime as dt
import json
import math
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
ACCOUNTS_PER_BUCKET = 1_000_000
GIB_PER_MILLION = 2.3  # measured peak of the unbucketed pipeline per million accounts


def buckets_for(n: int) -> int:
    return math.ceil(n / ACCOUNTS_PER_BUCKET)


def fits_unbucketed(n: int) -> bool:
    """Whether the unbucketed pipeline's estimated peak leaves a quarter of this machine's memory free."""
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return n / 1e6 * GIB_PER_MILLION <= 0.75 * total_gib


def prepare(n: int, folder: Path) -> None:
    """Two monthly snapshots, and a warehouse holding the first month's run (not measured; published
    bucketed, which gives the same tables as compute_run + publish, so 10M fits in memory too)."""
    import polars as pl

    from kare_rules.loader import load_rules
    from kare_rules.synth import snapshots
    from kare_rules.warehouse import Warehouse

    rules = load_rules(RULES)
    for day, frame in snapshots(rules, n, list(DATES), seed=5):
        frame.write_parquet(folder / f"{day}.parquet")
    del frame
    first = pl.read_parquet(folder / f"{DATES[0]}.parquet")
    Warehouse(folder / "warehouse.duckdb").run_bucketed(
        rules, first, DATES[0], buckets=buckets_for(n), rules_text=(RULES / "kare.yaml").read_text()
    )


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


def bucketed(folder: Path) -> dict:
    """The same monthly run as `pipeline`, computed and published ceil(n / 1M) slices of accounts at a time."""
    import shutil

    import polars as pl

    from kare_rules.loader import load_rules
    from kare_rules.warehouse import Warehouse

    target = folder / "measured.duckdb"
    shutil.copy(folder / "warehouse.duckdb", target)
    start = time.perf_counter()
    rules = load_rules(RULES)
    raw = pl.read_parquet(folder / f"{DATES[1]}.parquet")
    buckets = buckets_for(int(os.environ["KARE_BENCH_N"]))
    text = (RULES / "kare.yaml").read_text()
    run = Warehouse(target).run_bucketed(rules, raw, DATES[1], buckets=buckets, rules_text=text)
    seconds = time.perf_counter() - start
    target.unlink()
    return {"seconds": seconds, "rows": run["input_rows"], "moved": run["moved"], "buckets": buckets}


def dagster(folder: Path) -> dict:
    """The same monthly run as `kare run` does it: the Dagster asset graph in-process (`run_org`), with
    its staging Parquet files between assets and its asset checks. Imports are not timed (≈1.3 s)."""
    import shutil

    from pipelines.run import run_org

    target = folder / "measured.duckdb"
    shutil.copy(folder / "warehouse.duckdb", target)
    start = time.perf_counter()
    summary = run_org(
        RULES.name, warehouse=str(target), input=str(folder / "{as_of}.parquet"), as_of=DATES[1].isoformat(),
        rules_dir=str(RULES.parent), staging=str(folder / "staging"),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    target.unlink()
    shutil.rmtree(folder / "staging")
    return {"seconds": seconds, "rows": summary.run["input_rows"]}


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
        "bucketed": bucketed,
        "dagster": dagster,
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
    print("pipeline (previous state + compute_run + publish), bucketed (Warehouse.run_bucketed, one bucket per 1M "
          "accounts), dagster (kare run: run_org) vs baseline (read, pl.when/then, one DuckDB table)")  # fmt: skip
    head = ["accounts", "pipeline s", "bucketed s", "buckets", "dagster s", "baseline s", "ratio", "pipeline MiB",
            "bucketed MiB", "dagster MiB", "baseline MiB"]  # fmt: skip
    widths = [12, 11, 11, 8, 10, 11, 7, 13, 13, 12, 13]
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    failed = False
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="kare-bench-pipeline-") as tmp:
            folder = Path(tmp)
            measure("prepare", folder, n)
            base = measure("baseline", folder, n)
            pipe = measure("pipeline", folder, n) if fits_unbucketed(n) else None
            buck = measure("bucketed", folder, n)
            dag = measure("dagster", folder, n) if fits_unbucketed(n) else None
        ratio = pipe["seconds"] / base["seconds"] if pipe else None
        pipe_s, pipe_mib = (f"{pipe['seconds']:.2f}", f"{pipe['max_rss_mib']:,.0f}") if pipe else ("skipped",) * 2
        dag_s, dag_mib = (f"{dag['seconds']:.2f}", f"{dag['max_rss_mib']:,.0f}") if dag else ("skipped",) * 2
        print(
            f"{buck['rows']:>12,} {pipe_s:>11} {buck['seconds']:>11.2f} {buck['buckets']:>8} {dag_s:>10} "
            f"{base['seconds']:>11.2f} {f'{ratio:.1f}x' if pipe else '':>7} {pipe_mib:>13} "
            f"{buck['max_rss_mib']:>13,.0f} {dag_mib:>12} {base['max_rss_mib']:>13,.0f}",
            flush=True,
        )
        if dag:
            print(f"  kare run (Dagster) / baseline: {dag['seconds'] / base['seconds']:.1f}x")
        if pipe is None:
            print(f"  unbucketed pipeline skipped: ~{n / 1e6 * GIB_PER_MILLION:.0f} GiB estimated peak does not fit "
                  "this machine's memory")  # fmt: skip
        if n <= 1_000_000 and ratio is not None and ratio > TARGET_RATIO:
            print(f"  target missed: more than {TARGET_RATIO:.0f}x the baseline")
            failed = True
        if n >= 10_000_000 and buck["max_rss_mib"] > TARGET_GIB * 1024:
            print(f"  target missed: bucketed peak memory above {TARGET_GIB:.0f} GiB")
            failed = True
    verdict = " — MISSED" if failed else " — met"
    print("targets: 1M within 10x the baseline; 10M bucketed within 8 GiB peak RSS" + verdict)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(main())
