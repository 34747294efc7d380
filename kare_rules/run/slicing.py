"""Slices of accounts: how many a run needs to stay within its memory budget, and which slice an account is in."""

from __future__ import annotations

import math
import os
import re
import resource
from pathlib import Path

import polars as pl

from kare_rules.errors import UsageError

DEFAULT_BUDGET_FRACTION = 0.125  # of the machine's (or the container's) memory
# A slice's working set (its input rows, validation, categories with reasons, history and action
# changes, Arrow copies for DuckDB) as a multiple of the slice's share of the input's estimated size:
# measured at 14x (10M accounts, bench rules: peak = 0.8 GiB + 8.6 GiB / slices; docs/benchmarks.md).
WORKING_SET_FACTOR = 16.0
MIN_SLICE_ROWS = 50_000  # below this, slicing costs more than it saves
MIN_DUCKDB_MEMORY = 256 * 2**20  # DuckDB's memory limit, however small the budget
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20, "g": 1e9, "gb": 1e9,
          "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}  # fmt: skip


def parse_size(text: str) -> int:
    """'4GiB', '512MB', '2g', '1073741824' → bytes."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text or "")
    unit = found and found.group(2).lower()
    if not found or unit not in _UNITS:
        raise UsageError(f"{text!r} is not a memory size; write it like 4GiB, 512MB or 2G")
    size = int(float(found.group(1)) * _UNITS[unit])
    if size < 64 * 2**20:
        raise UsageError(f"a memory budget of {text} is too small to run in; give at least 64MiB")
    return size


def machine_memory() -> int:
    """Physical memory, or the container's limit when it is lower (cgroup v2 / v1)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget() -> int:
    return int(machine_memory() * DEFAULT_BUDGET_FRACTION)


def slice_count(input_rows: int, input_bytes: int, budget: int, reserved: int | None = None) -> int:
    """How many slices keep one slice's working set within `budget`, less what stays resident throughout
    (`reserved`; by default the input itself, held whole)."""
    if input_rows <= MIN_SLICE_ROWS:
        return 1
    room = max(budget - (input_bytes if reserved is None else reserved), budget // 4)
    wanted = math.ceil(input_bytes * WORKING_SET_FACTOR / room)
    return max(1, min(wanted, math.ceil(input_rows / MIN_SLICE_ROWS)))


def unkept_budget(input_rows: int, input_bytes: int, budget: int, reserved: int) -> bool:
    """Whether `budget` is below what the run can keep to: even the most slices (of MIN_SLICE_ROWS accounts
    each) need more, on top of what stays resident."""
    if input_rows <= MIN_SLICE_ROWS:
        return False
    return reserved + math.ceil(input_bytes * WORKING_SET_FACTOR / math.ceil(input_rows / MIN_SLICE_ROWS)) > budget


def budget_note(budget: int) -> str | None:
    """When the process's peak memory went past `budget`: say so, with the figure to give instead."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    if peak <= budget:
        return None
    return (
        f"memory peaked at {peak / 2**20:,.0f} MiB, above the budget of {budget / 2**20:,.0f} MiB: slices hold at "
        f"least {MIN_SLICE_ROWS:,} accounts and DuckDB takes at least {MIN_DUCKDB_MEMORY / 2**20:,.0f} MiB, so "
        "no slicing keeps to it; give --memory-budget at least the peak"
    )


def slice_bounds(keys: pl.Series, slices: int) -> list[str]:
    """Where the slices of account ids begin: `slices - 1` ascending ids cut from (a sample of) the keys'
    text, so that each slice holds about as many accounts. Slice k is the ids from bound k-1 (inclusive)
    to bound k (exclusive); the first has no lower bound, the last no upper one, so every id, published
    or new, falls in exactly one (two equal bounds make an empty slice). Ranges rather than a hash:
    DuckDB compares strings byte by byte like Polars does, so a slice's published rows are selected in
    the warehouse by the same range, and its scans skip row groups whose ids lie outside it."""
    ordered = keys.cast(pl.String).drop_nulls().unique().sort()
    if not ordered.len():
        return [""] * (slices - 1)  # no key to cut by: every published id is in the last slice
    return [ordered[ordered.len() * k // slices] for k in range(1, slices)]


def slice_range(bounds: list[str], k: int) -> tuple[str | None, str | None]:
    """The id range (from, to) of slice k: from inclusive, to exclusive, None for no bound."""
    return (bounds[k - 1] if k > 0 else None, bounds[k] if k < len(bounds) else None)


def in_slice(key: pl.Expr, bounds: list[str], k: int) -> pl.Expr:
    """Rows of slice k, by their key's text; rows with a null key are in slice 0 (they are quarantined)."""
    text = key.cast(pl.String)
    low, high = slice_range(bounds, k)
    inside = pl.lit(True)
    if low is not None:
        inside = inside & (text >= pl.lit(low))
    if high is not None:
        inside = inside & (text < pl.lit(high))
    return (text.is_null() | inside) if k == 0 else (text.is_not_null() & inside)
