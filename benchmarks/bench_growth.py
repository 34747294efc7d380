"""Does a run cost what the whole past costs? 24 monthly `kare run`s of one organization, each its own process.

    python -m benchmarks growth
    (KARE_BENCH_GROWTH_ACCOUNTS, default 100,000; KARE_BENCH_GROWTH_RUNS, default 24)

The bench organization (benchmarks/rules/bench) with the same accounts every month and exactly one in
three changing (benchmarks/measure.py writes the snapshots), run month after month into one warehouse
with plain `kare run`. Each run is a process reaped with os.wait4: its wall time and peak resident
memory are its own. The history the warehouse holds grows with every run; what a run reads and writes
should not. Targets (issue 10): the median of the last three runs within 1.15x of the median of runs
2–4 in peak memory and within 1.3x in wall time (run 1 is the initial load: every account new).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from pathlib import Path

from benchmarks.measure import kare_run, load_average, median, no_options, require, run_process, write_snapshots

LAST = dt.date(2026, 11, 30)
TARGET_MEMORY, TARGET_WALL = 1.15, 1.3


def main(argv: list[str] | None = None) -> int:
    """Sizes come from the environment; no options (`--help` describes them)."""
    no_options("python -m benchmarks.bench_growth", __doc__, argv)
    accounts = int(os.environ.get("KARE_BENCH_GROWTH_ACCOUNTS", "100000").replace("_", ""))
    runs = int(os.environ.get("KARE_BENCH_GROWTH_RUNS", "24"))
    if runs < 7:
        raise SystemExit("KARE_BENCH_GROWTH_RUNS must be at least 7 (runs 2–4 against the last three)")
    print(f"growth: {runs} monthly `kare run`s of {accounts:,} accounts (bench rules, one in three changing each "
          "month), one process each, one warehouse")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="kare-bench-growth-") as tmp:
        folder = Path(tmp)
        dates = write_snapshots(folder, accounts, LAST, runs)
        warehouse = folder / "warehouse.duckdb"
        print(f"{'run':>4} {'as_of':>10} {'wall s':>7} {'cpu s':>6} {'peak MiB':>9} {'warehouse MiB':>14} {'moved':>8} "
              f"{'actions opened':>15} {'history rows':>13} {'load':>5}")  # fmt: skip
        seconds, cpu, mib = [], [], []
        for i, day in enumerate(dates, start=1):
            done = require(run_process(kare_run(folder / f"{day}.parquet", day, warehouse)), f"kare run as of {day}")
            seconds.append(done.seconds)
            cpu.append(done.cpu_seconds)
            mib.append(done.mib)
            moved = _figure(done.stdout, r"moves\s+([\d,]+) since")
            opened = _figure(done.stdout, r"actions\s+([\d,]+) opened")
            history, size, load = _history_rows(warehouse), warehouse.stat().st_size / 2**20, load_average()
            print(f"{i:>4} {day.isoformat():>10} {done.seconds:>7.2f} {done.cpu_seconds:>6.2f} {done.mib:>9,.0f} "
                  f"{size:>14,.1f} {moved:>8} {opened:>15} {history:>13,} {load:>5.1f}", flush=True)  # fmt: skip
    early_s, late_s = median(seconds[1:4]), median(seconds[-3:])
    early_m, late_m = median(mib[1:4]), median(mib[-3:])
    memory, wall = late_m / early_m, late_s / early_s
    cpu_ratio = median(cpu[-3:]) / median(cpu[1:4])
    print(f"peak memory: last three {late_m:,.0f} MiB / runs 2–4 {early_m:,.0f} MiB = {memory:.2f}x "
          f"(target ≤ {TARGET_MEMORY}x: {'met' if memory <= TARGET_MEMORY else 'MISSED'})")  # fmt: skip
    print(f"wall time:   last three {late_s:.2f} s / runs 2–4 {early_s:.2f} s = {wall:.2f}x "
          f"(target ≤ {TARGET_WALL}x: {'met' if wall <= TARGET_WALL else 'MISSED'}); "
          f"cpu time {cpu_ratio:.2f}x")  # fmt: skip
    return 0


def _history_rows(warehouse: Path) -> int:
    """Rows in kare.category_history, current and closed: the past a run must not pay for."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM kare.category_history").fetchone()[0])


def _figure(summary: str, pattern: str) -> str:
    found = re.search(pattern, summary)
    return found.group(1) if found else "?"


if __name__ == "__main__":
    raise SystemExit(main())
