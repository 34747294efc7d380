"""Shared by the run benchmarks: one measured process (wall time, peak memory) and deterministic monthly inputs.

    python -m benchmarks.measure snapshots OUT_DIR ACCOUNTS LAST_DATE MONTHS   (writes OUT_DIR/<date>.parquet)

Every measured thing runs as its own process and is reaped with os.wait4, so its peak resident memory
(ru_maxrss) and wall time are that process's alone: imports, reading, computing and writing, as a user
running `kare run` would meet them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

ROOT = Path(__file__).resolve().parent.parent
BENCH_RULES_DIR = Path(__file__).resolve().parent / "rules"
BENCH_ORG = "bench"
CHANGING_SHARE = 3  # one account in three changes each month


def no_options(prog: str, doc: str, argv: list[str] | None) -> None:
    """The options of a benchmark whose sizes come from the environment: none. `--help` shows its
    description (what it measures, the variables it reads) and exits; anything else is refused (exit 2),
    rather than starting a long run that was not asked for."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)


@dataclass(frozen=True)
class Measured:
    """One finished process: its wall time, peak resident memory and output."""

    seconds: float
    cpu_seconds: float  # user + system: less disturbed than wall time by other work on the machine
    max_rss: int  # bytes
    code: int
    stdout: str
    stderr: str

    @property
    def mib(self) -> float:
        return self.max_rss / 2**20


def run_process(argv: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `argv` to the end; time it from spawn to exit and take its ru_maxrss from os.wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Measured(seconds, cpu, usage.ru_maxrss * 1024, proc.returncode, out.read(), err.read())  # KiB on Linux


def require(done: Measured, what: str) -> Measured:
    """A failed child voids the benchmark: stop, showing what it said."""
    if done.code != 0:
        raise SystemExit(f"{what} failed (exit {done.code}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def kare(*args: str) -> list[str]:
    """The argv of the installed `kare` command (the console script beside this interpreter)."""
    script = Path(sys.executable).with_name("kare")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from kare_rules.cli import main; sys.exit(main())", *args]


def kare_run(source: Path | str, as_of: dt.date, warehouse: Path, *extra: str) -> list[str]:
    """`kare run` of the bench organization: plain, with no flags beyond where things are."""
    return kare("run", "--org", BENCH_ORG, "--rules-dir", str(BENCH_RULES_DIR), "--input", str(source),
                "--as-of", as_of.isoformat(), "--warehouse", str(warehouse), *extra)  # fmt: skip


def baseline(source: Path, as_of: dt.date, warehouse: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.baseline", str(source), str(warehouse), as_of.isoformat()]


def write_snapshots(folder: Path, accounts: int, last: dt.date, months: int, seed: int = 17) -> list[dt.date]:
    """Monthly snapshots of the bench organization, oldest first, written in a child process (the
    benchmark's own process stays small): `folder/<date>.parquet` for each month end."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.measure", "snapshots", str(folder), str(accounts), last.isoformat(),
            str(months), str(seed)]  # fmt: skip
    require(run_process(argv), f"writing {months} snapshots of {accounts:,} accounts")
    from kare_rules.synth import month_ends

    return month_ends(last, months)


def _snapshots(folder: Path, accounts: int, last: dt.date, months: int, seed: int) -> None:
    """Month 1 is synthesized from the rules; each later month redraws every attribute of exactly one
    account in three (rows whose number ≡ month mod 3, so each account changes every third month) and
    moves the dates of the other two thirds on with the calendar, so their days-since values, and with
    them their categories, stay as they were. The accounts are the same every month: what grows is only
    the warehouse's history."""
    import polars as pl

    from kare_rules.loader import load_rules
    from kare_rules.synth import month_ends, synthesize

    rules = load_rules(BENCH_RULES_DIR / BENCH_ORG)
    dates = month_ends(last, months)
    others = [c.name for c in rules.inputs if not c.key]
    day_columns = [c.name for c in rules.inputs if c.type in ("date", "datetime")]
    frame = synthesize(rules, accounts, dates[0], seed=seed)
    frame.write_parquet(folder / f"{dates[0]}.parquet")
    for month in range(1, months):
        elapsed = pl.duration(days=(dates[month] - dates[month - 1]).days)
        fresh = synthesize(rules, accounts, dates[month], seed=seed + month)
        changing = pl.int_range(0, pl.len()) % CHANGING_SHARE == month % CHANGING_SHARE
        frame = frame.with_columns(
            pl.when(changing).then(fresh[c]).otherwise(pl.col(c) + elapsed if c in day_columns else pl.col(c)).alias(c)
            for c in others
        )
        frame.write_parquet(folder / f"{dates[month]}.parquet")


def load_average() -> float:
    """The machine's one-minute load average: printed with every figure, since other work on a shared
    machine moves wall times (and, less, CPU times)."""
    return os.getloadavg()[0]


def median(values: list[float]) -> float:
    return statistics.median(values)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "snapshots":
        _, _, out, n, last_day, count, seed_text = sys.argv
        _snapshots(Path(out), int(n), dt.date.fromisoformat(last_day), int(count), int(seed_text))
    else:
        sys.exit(
            "usage: python -m benchmarks.measure snapshots OUT_DIR ACCOUNTS LAST_DATE MONTHS SEED\n"
            "(the benchmarks call it; run python -m benchmarks to measure)"
        )
