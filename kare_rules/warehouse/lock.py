"""One run at a time per warehouse: a file lock beside it, and patience with DuckDB's own file lock."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import filelock

from kare_rules.errors import KareError

T = TypeVar("T")
POLL_SECONDS = 0.2


class WarehouseBusy(KareError):
    """Another run, or a reader, holds the warehouse for longer than this run may wait."""


def lock_path(warehouse: str | Path) -> Path:
    return Path(str(warehouse) + ".lock")


@contextlib.contextmanager
def warehouse_lock(
    warehouse: str | Path, timeout: float = 0.0, on_wait: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Serialize kare runs on one warehouse; past `timeout` seconds the second run fails clearly."""
    refuse_other_files(Path(warehouse))  # before a lock file is made beside something that is no warehouse
    path = lock_path(warehouse)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KareError(f"cannot create the folder of the warehouse {warehouse}: {exc.strerror}") from None
    if path.is_dir():
        raise KareError(f"the lock file {path} is a directory; remove it (kare creates the file itself)")
    try:  # filelock reads a lock file it cannot create as one held by another run, and waits for nothing
        path.touch(exist_ok=True)
    except OSError as exc:
        raise KareError(
            f"cannot lock the warehouse {warehouse} ({path}: {exc.strerror or exc}); make its folder writable "
            "or choose another --warehouse"
        ) from None
    lock = filelock.FileLock(str(path), is_singleton=False)
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            on_wait(f"waiting up to {timeout:g} s for another kare run on {warehouse} to finish")
            lock.acquire(timeout=timeout)
    except filelock.Timeout:
        waited = f" (waited {timeout:g} s)" if timeout else ""  # told to wait, the operator needs a longer --wait
        raise WarehouseBusy(
            f"another kare run is publishing to {warehouse}{waited}; wait for it to finish and run again, or pass "
            f"{'a longer ' if timeout else ''}--wait SECONDS to queue behind it"
        ) from None
    except OSError as exc:
        raise KareError(
            f"cannot lock the warehouse {warehouse} ({path}: {exc.strerror or exc}); make its folder writable "
            "or choose another --warehouse"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _lock_conflict(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def retry_while_locked(
    open_: Callable[[], T], what: str, timeout: float, on_wait: Callable[[str], None] = lambda _: None
) -> T:
    """Call `open_` until DuckDB's file lock is free (a reader or another writer holds it), at most
    `timeout` seconds; say once what the run is waiting for."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            return open_()
        except Exception as exc:  # duckdb raises IOException; keep this module free of the duckdb import
            if not _lock_conflict(exc):
                raise
            holder = _holder(str(exc))
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"{what} is held by another process{holder} (waited {timeout:g} s); nothing was published. "
                    "Close that connection (BI tools should read with short-lived read-only connections, see "
                    "docs/bi.md) or pass --wait SECONDS to wait longer"
                ) from None
            if not told:
                on_wait(f"waiting up to {timeout:g} s for {what}: another process{holder} has it open")
                told = True
            time.sleep(POLL_SECONDS)


def _holder(message: str) -> str:
    """DuckDB names the process holding its lock ('... (PID 1234) ...'); pass it on when it does."""
    marker = "PID "
    if marker in message:
        pid = message.split(marker, 1)[1].split(")")[0].split()[0]
        if pid.isdigit() and int(pid) != os.getpid():
            return f" (PID {pid})"
    return ""


def refuse_other_files(path: Path) -> None:
    """A warehouse is a DuckDB database file, new or existing. DuckDB opens some other files (a CSV, a
    Parquet file) or ':memory:' as a database held in memory: a run would say 'published' and keep nothing."""
    if str(path) == ":memory:":
        raise WarehouseBusy(
            "the warehouse ':memory:' would keep nothing after the run; give a file, e.g. data/warehouse.duckdb"
        )
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(path)):  # a URL (its '//' is one '/' in a Path)
        raise WarehouseBusy(
            f"the warehouse {str(path).replace(':/', '://', 1)} is a URL; kare run publishes to a DuckDB file (a "
            "database server as the warehouse is not supported yet): give a path, e.g. data/warehouse.duckdb"
        )
    # (a file kare cannot read is left to DuckDB, whose error says so)
    if path.is_file() and path.stat().st_size and os.access(path, os.R_OK) and not holds_duckdb(path):
        raise WarehouseBusy(
            f"{path} is not a DuckDB database (it holds other data, perhaps accounts); give --warehouse a new or "
            "an existing .duckdb file"
        )


def holds_duckdb(path: Path) -> bool:
    """Whether `path` is a DuckDB database file (the magic bytes of its header); not when it cannot be read."""
    try:
        with path.open("rb") as f:
            return f.read(12)[8:12] == b"DUCK"
    except OSError:  # missing, a directory, or not readable
        return False
