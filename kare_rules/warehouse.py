"""The embedded warehouse: a DuckDB file with schema `kare`. Each run publishes in one transaction,
so readers never see half a run and a failed run leaves the previous tables intact."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from kare_rules.errors import KareError
from kare_rules.loader import load_rules_text
from kare_rules.runner import PreviousState, RunOutputs
from kare_rules.tables import SCHEMA, TABLES, _sql_type, conformed, empty, schema_of

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
PREVIOUS_TABLES_BY_FIELD = {"categories": "account_categories", "history": "category_history", "actions": "action_queue"}
PREVIOUS_TABLES = tuple(PREVIOUS_TABLES_BY_FIELD.values())


def _q(name: str) -> str:
    """A quoted SQL identifier (our own table and column names; still quoted on principle)."""
    return '"' + name.replace('"', '""') + '"'


def _t(table: str) -> str:
    return f"{_q(SCHEMA)}.{_q(table)}"


class WarehouseBusy(KareError):
    """Another run holds the warehouse."""


@contextlib.contextmanager
def warehouse_lock(path: str | Path, timeout: float = 0.0) -> Iterator[None]:
    """Serialize runs on one warehouse file; past `timeout` seconds the second run fails clearly."""
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise WarehouseBusy(
                        f"another kare run ({holder}) is publishing to {path}; wait for it to finish and run "
                        "again, or pass --wait SECONDS to queue behind it"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


class Warehouse:
    """Reads one organization's published state and publishes a run's outputs atomically."""

    def __init__(self, path: str | Path = DEFAULT_WAREHOUSE):
        self.path = Path(path)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise KareError(f"no warehouse at {self.path} yet; run 'kare run' first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise WarehouseBusy(f"cannot open the warehouse {self.path}: {exc}. Is another process using it?") from None
        if not read_only:
            self._ensure(con)
        return con

    @staticmethod
    def _ensure(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(SCHEMA)}")
        for table, (_, _, columns) in TABLES.items():
            cols = ", ".join(f"{_q(n)} {_sql_type(t)}" for n, t, _ in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {_t(table)} ({cols})")

    def read(self, table: str, org: str | None = None) -> pl.DataFrame:
        """A published table (one organization's rows when `org` is given)."""
        if not self.path.exists():
            return empty(table)
        with self.connect(read_only=True) as con:
            if not _exists(con, table):
                return empty(table)
            where = f" WHERE {_q('org')} = $org" if org else ""
            df = _fetch(con, f"SELECT * FROM {_t(table)}{where}", {"org": org} if org else {})
        return conformed(table, df) if df.height else empty(table)

    def last_run(self, org: str) -> dict | None:
        """The organization's last published run (its `runs` row), or None."""
        runs = self.read("runs", org).filter(pl.col("status").is_in(["published", "unchanged"]))
        return runs.sort("as_of", "finished_at").row(-1, named=True) if runs.height else None

    def previous_state(self, org: str, tables: tuple[str, ...] = PREVIOUS_TABLES) -> PreviousState:
        """What this organization's last published run left behind; only `tables` are read (a step that
        needs just the history need not load a million categories with their reasons)."""
        last = self.last_run(org) if self.path.exists() else None
        if last is None:
            return PreviousState()
        versions = self.read("rule_versions", org).filter(pl.col("rules_digest") == last["rules_digest"])
        previous_rules = None
        if versions.height:
            with contextlib.suppress(KareError):
                previous_rules = load_rules_text(versions["rules_text"][0], f"{org}@{last['rules_digest']}")
        return PreviousState(
            **{field: self.read(table, org) for field, table in PREVIOUS_TABLES_BY_FIELD.items() if table in tables},
            last_as_of=last["as_of"],
            last_run_id=last["run_id"],
            last_rules_digest=last["rules_digest"],
            previous_rules=previous_rules,
        )

    def publish(
        self,
        out: RunOutputs,
        rules_text: str,
        rules_version: str,
        *,
        expected_previous_run: str | bool | None = False,
        fail_after: str | None = None,
    ) -> dict:
        """Replace the organization's tables with the run's outputs in ONE transaction; return the runs row.

        With `expected_previous_run`, refuse to publish when another run was published since this one
        read its previous state. `fail_after` names a table after which to raise (failure injection).
        """
        org = out.org
        run = dict(out.run, finished_at=dt.datetime.now(dt.UTC), status="unchanged" if out.unchanged else "published")
        replace_all = {
            "account_categories": out.account_categories,
            "category_history": out.category_history,
            "action_queue": out.action_queue,
        }
        replace_day = {"category_transitions": out.category_transitions, "quarantine": out.quarantine}
        con = self.connect()
        try:
            con.execute("BEGIN TRANSACTION")
            if expected_previous_run is not False:
                latest = _fetch(
                    con,
                    f"SELECT {_q('run_id')} FROM {_t('runs')} WHERE {_q('org')} = $org "
                    f"AND {_q('status')} IN ('published', 'unchanged') ORDER BY {_q('as_of')}, {_q('finished_at')}",
                    {"org": org},
                )
                found = latest["run_id"][-1] if latest.height else None
                if found != expected_previous_run:
                    raise WarehouseBusy(
                        f"another run ({found}) published {org} while this one was computing; nothing was "
                        "published. Run again to build on it."
                    )
            for table, df in replace_all.items():
                con.execute(f"DELETE FROM {_t(table)} WHERE {_q('org')} = $org", {"org": org})
                _insert(con, table, df)
                if fail_after == table:
                    raise RuntimeError(f"injected failure after {table}")
            for table, df in replace_day.items():
                con.execute(
                    f"DELETE FROM {_t(table)} WHERE {_q('org')} = $org AND {_q('as_of')} = $as_of",
                    {"org": org, "as_of": out.as_of},
                )
                _insert(con, table, df)
            known = _fetch(
                con,
                f"SELECT count(*) AS n FROM {_t('rule_versions')} "
                f"WHERE {_q('org')} = $org AND {_q('rules_digest')} = $d",
                {"org": org, "d": run["rules_digest"]},
            )["n"][0]
            if not known:
                _insert(con, "rule_versions", pl.DataFrame([{
                    "org": org, "rules_digest": run["rules_digest"], "rules_version": rules_version,
                    "rules_text": rules_text, "first_as_of": out.as_of,
                }]))  # fmt: skip
            _insert(con, "runs", pl.DataFrame([run], schema=schema_of("runs")))
            con.execute("COMMIT")
            return run
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def record_failure(self, run: dict, message: str) -> None:
        """Log a failed run in `runs` (status failed) without touching any other table."""
        row = {**{k: None for k in schema_of("runs")}, **run, "status": "failed", "message": message[:2000],
               "finished_at": dt.datetime.now(dt.UTC)}  # fmt: skip
        with contextlib.closing(self.connect()) as con:
            _insert(con, "runs", pl.DataFrame([row], schema=schema_of("runs")))


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = _fetch(
        con,
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $s AND table_name = $t",
        {"s": SCHEMA, "t": table},
    )
    return bool(found["n"][0])


def _fetch(con: duckdb.DuckDBPyConnection, query: str, params: dict) -> pl.DataFrame:
    """A whole query result as a frame (read before the next statement on this connection)."""
    return con.sql(query, params=params).pl()


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    if not df.height:
        return
    frame = conformed(table, df).to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    con.execute(f"INSERT INTO {_t(table)} SELECT * FROM frame")
