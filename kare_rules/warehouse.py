"""The embedded warehouse: a DuckDB file with schema `kare`. Each run publishes in one transaction,
so readers never see half a run and a failed run leaves the previous tables intact."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl

from kare_rules import model as m
from kare_rules.errors import KareError, UsageError
from kare_rules.loader import load_rules_text
from kare_rules.overrides import Override
from kare_rules.runner import (
    DEFAULT_MAX_QUARANTINE_SHARE,
    NO_QUARANTINE_LIMIT,
    BucketTotals,
    PreviousState,
    RunOutputs,
    bucket_expr,
    check_forward,
    check_quarantine,
    compute_run,
    input_buckets,
    run_id_for,
)
from kare_rules.tables import SCHEMA, TABLES, _sql_type, conformed, empty, schema_of

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
PREVIOUS_TABLES_BY_FIELD = {
    "categories": "account_categories",
    "history": "category_history",
    "actions": "action_queue",
}
PREVIOUS_TABLES = tuple(PREVIOUS_TABLES_BY_FIELD.values())
ID_VIEW = "kare_account_ids"  # a registered view of account ids (a bucket's, or the held accounts')


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
            return _read(con, table, org)

    def categories_of(self, org: str, account_ids: pl.Series) -> pl.DataFrame:
        """The published account_categories rows of these accounts (none read when there are none)."""
        if not account_ids.len() or not self.path.exists():
            return empty("account_categories")
        with self.connect(read_only=True) as con:
            con.register(ID_VIEW, pl.DataFrame({"account_id": account_ids.cast(pl.String)}).to_arrow())
            return _read(con, "account_categories", org, only_ids=True)

    def last_run(self, org: str) -> dict | None:
        """The organization's last published run (its `runs` row), or None."""
        if not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            return _last_run(con, org)

    def previous_state(
        self, org: str, tables: tuple[str, ...] = PREVIOUS_TABLES, as_of: dt.date | None = None
    ) -> PreviousState:
        """What this organization's last published run left behind; only `tables` are read (a step that
        needs just the history need not load a million categories with their reasons). Given the
        run's `as_of`, the previous rules are those of the last run before that date: re-running a
        date replaces that date's run, so its rules are not the ones the change causes compare with."""
        if not self.path.exists():
            return PreviousState()
        with self.connect(read_only=True) as con:
            return _previous_state(con, org, tables, as_of=as_of)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: COMMIT when the block ends, ROLLBACK on any exception."""
        con = self.connect()
        try:
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

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
        with self._transaction() as con:
            _check_previous_run(con, out.org, expected_previous_run)
            for table in PREVIOUS_TABLES:
                _replace(con, table, getattr(out, table), out.org)
                if fail_after == table:
                    raise RuntimeError(f"injected failure after {table}")
            return _publish_run(con, out, rules_text, rules_version)

    def run_bucketed(
        self,
        rules: m.RuleSet,
        raw: pl.DataFrame,
        as_of: dt.date,
        *,
        buckets: int,
        rules_text: str,
        overrides: tuple[Override, ...] = (),
        max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
        expected_previous_run: str | bool | None = False,
        engine: str = "polars",
        report: Callable[[str], None] = lambda _: None,
        fail_after_bucket: int | None = None,
    ) -> dict:
        """Compute and publish a run `buckets` slices of accounts at a time, in ONE transaction; return
        the runs row. Peak memory follows accounts / buckets, and the tables end up exactly as
        `compute_run` + `publish` over the whole input would leave them.

        Each bucket is `compute_run` over the bucket's input rows and the bucket's previous rows, whose
        own previous rows are then replaced; the transitions, quarantine and counts are summed over the
        buckets and published last, once the whole run's quarantine share is known to be acceptable.
        `fail_after_bucket` raises after that bucket is written (failure injection).
        """
        if buckets < 1:
            raise UsageError(f"buckets must be 1 or more (got {buckets})")
        org = rules.organization
        started_at = dt.datetime.now(dt.UTC)
        run_id = run_id_for(org, as_of, rules, overrides, raw)  # the whole input's, as compute_run would give
        of_row = input_buckets(rules, raw, buckets)
        with self._transaction() as con:
            previous = _previous_state(con, org, tables=(), as_of=as_of)
            _check_previous_run(con, org, expected_previous_run)
            check_forward(org, as_of, previous.last_as_of)
            ids = _fetch(con, f"SELECT DISTINCT {_q('account_id')} FROM {_t('category_history')} WHERE "
                         f"{_q('org')} = $org", {"org": org})  # fmt: skip
            id_bucket = ids.select(bucket_expr(pl.col("account_id"), buckets)).to_series()
            totals = BucketTotals()
            for bucket in range(buckets):
                mine = of_row == bucket
                con.register(ID_VIEW, ids.filter(id_bucket == bucket).to_arrow())
                state = _previous_state(con, org, PREVIOUS_TABLES, only_ids=True, meta=previous)
                out = compute_run(
                    rules, raw.filter(mine), as_of, state, overrides=overrides, engine=engine, run_id=run_id,
                    max_quarantine_share=NO_QUARANTINE_LIMIT, started_at=started_at,
                )  # fmt: skip
                del state
                for table in PREVIOUS_TABLES:
                    _replace(con, table, getattr(out, table), org, only_ids=True)
                con.unregister(ID_VIEW)
                totals.add(out, mine.arg_true())
                del out
                report(f"  [{bucket + 1}/{buckets}] bucket {bucket}: {totals.runs[-1]['input_rows']:,} rows "
                       f"({(dt.datetime.now(dt.UTC) - started_at).total_seconds():.1f} s)")  # fmt: skip
                if fail_after_bucket == bucket:
                    raise RuntimeError(f"injected failure after bucket {bucket}")
            whole = RunOutputs(
                org=org, as_of=as_of, run_id=run_id, account_categories=empty("account_categories"),
                category_history=empty("category_history"), category_transitions=totals.transitions(),
                action_queue=empty("action_queue"), quarantine=totals.quarantine(), run=totals.run(),
                unchanged=run_id == previous.last_run_id,
            )  # fmt: skip
            check_quarantine(whole.quarantine, raw.height, max_quarantine_share)
            return _publish_run(con, whole, rules_text, rules.version)

    def record_failure(self, run: dict, message: str) -> None:
        """Log a failed run in `runs` (status failed) without touching any other table."""
        row = {**{k: None for k in schema_of("runs")}, **run, "status": "failed", "message": message[:2000],
               "finished_at": dt.datetime.now(dt.UTC)}  # fmt: skip
        with contextlib.closing(self.connect()) as con:
            _insert(con, "runs", pl.DataFrame([row], schema=schema_of("runs")))


def _read(con: duckdb.DuckDBPyConnection, table: str, org: str | None = None, only_ids: bool = False) -> pl.DataFrame:
    """A published table on an open connection; with `only_ids`, only the accounts in the id view."""
    if not _exists(con, table):
        return empty(table)
    conditions = []
    if org:
        conditions.append(f"{_q('org')} = $org")
    if only_ids:
        conditions.append(_only_ids())
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    df = _fetch(con, f"SELECT * FROM {_t(table)}{where}", {"org": org} if org else {})
    return conformed(table, df) if df.height else empty(table)


def _only_ids() -> str:
    """The semi-join that limits a statement to the accounts in the id view."""
    return f"{_q('account_id')} IN (SELECT {_q('account_id')} FROM {_q(ID_VIEW)})"


def _last_run(con: duckdb.DuckDBPyConnection, org: str, before: dt.date | None = None) -> dict | None:
    """The last published run (before the date `before`, when given)."""
    runs = _read(con, "runs", org).filter(pl.col("status").is_in(["published", "unchanged"]))
    if before is not None:
        runs = runs.filter(pl.col("as_of") < before)
    return runs.sort("as_of", "finished_at").row(-1, named=True) if runs.height else None


def _previous_state(
    con: duckdb.DuckDBPyConnection,
    org: str,
    tables: tuple[str, ...],
    *,
    only_ids: bool = False,
    meta: PreviousState | None = None,
    as_of: dt.date | None = None,
) -> PreviousState:
    """The last published run's state on an open connection: its run, its rules (those of the last run
    before `as_of` when given), and `tables` (only the id view's accounts with `only_ids`). `meta`
    is a state already read, whose tables are replaced."""
    if meta is None:
        last = _last_run(con, org)
        if last is None:
            return PreviousState()
        ruled = _last_run(con, org, before=as_of) if as_of else last
        digest = ruled["rules_digest"] if ruled else None
        versions = _read(con, "rule_versions", org).filter(pl.col("rules_digest") == digest)
        previous_rules = None
        if versions.height:
            with contextlib.suppress(KareError):
                previous_rules = load_rules_text(versions["rules_text"][0], f"{org}@{digest}")
        meta = PreviousState(last_as_of=last["as_of"], last_run_id=last["run_id"],
                             last_rules_digest=digest, previous_rules=previous_rules)  # fmt: skip
    if meta.last_run_id is None:
        return meta
    frames = {f: _read(con, t, org, only_ids) for f, t in PREVIOUS_TABLES_BY_FIELD.items() if t in tables}
    return replace(meta, **frames)


def _check_previous_run(con: duckdb.DuckDBPyConnection, org: str, expected: str | bool | None) -> None:
    """Refuse to publish on top of a run the caller did not build on (`expected` False: no check)."""
    if expected is False:
        return
    last = _last_run(con, org)
    found = last["run_id"] if last else None
    if found != expected:
        raise WarehouseBusy(
            f"another run ({found}) published {org} while this one was computing; nothing was "
            "published. Run again to build on it."
        )


def _replace(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame, org: str, only_ids: bool = False) -> None:
    """The organization's rows of a per-account table (those of the bucket view's accounts) → `df`."""
    ids = f" AND {_only_ids()}" if only_ids else ""
    con.execute(f"DELETE FROM {_t(table)} WHERE {_q('org')} = $org{ids}", {"org": org})
    _insert(con, table, df)


def _publish_run(con: duckdb.DuckDBPyConnection, out: RunOutputs, rules_text: str, rules_version: str) -> dict:
    """What every run publishes once, after its per-account tables: the day's transitions and
    quarantine, the rule text if new, and the runs row (returned)."""
    org = out.org
    run = dict(out.run, finished_at=dt.datetime.now(dt.UTC), status="unchanged" if out.unchanged else "published")
    for table, df in {"category_transitions": out.category_transitions, "quarantine": out.quarantine}.items():
        con.execute(
            f"DELETE FROM {_t(table)} WHERE {_q('org')} = $org AND {_q('as_of')} = $as_of",
            {"org": org, "as_of": out.as_of},
        )
        _insert(con, table, df)
    known = _fetch(
        con,
        f"SELECT count(*) AS n FROM {_t('rule_versions')} WHERE {_q('org')} = $org AND {_q('rules_digest')} = $d",
        {"org": org, "d": run["rules_digest"]},
    )["n"][0]
    if not known:
        _insert(con, "rule_versions", pl.DataFrame([{
            "org": org, "rules_digest": run["rules_digest"], "rules_version": rules_version,
            "rules_text": rules_text, "first_as_of": out.as_of,
        }]))  # fmt: skip
    _insert(con, "runs", pl.DataFrame([run], schema=schema_of("runs")))
    return run


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
