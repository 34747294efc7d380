"""The embedded warehouse: a DuckDB file with schema `kare`, read and changed one run at a time.

A run reads only current state (current history rows, open actions, held categories) and applies its
change set in ONE transaction: readers never see half a run, and a failed run leaves every table as
it was. Every statement is parameterized; identifiers are ours and quoted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from kare_rules.tables import (
    CURRENT_COLUMNS,
    FAR_FUTURE,
    SCHEMA,
    TABLES,
    _sql_type,
    conformed,
    empty,
    empty_current,
    never_null,
    schema_of,
)
from kare_rules.warehouse.lock import WarehouseBusy, refuse_other_files, retry_while_locked

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
DEFAULT_WAIT = 300.0  # seconds: long enough for a dashboard query to finish
_views = itertools.count()
IdRange = tuple[str | None, str | None]  # a slice of account ids: from (inclusive), to (exclusive); None: open


def _q(name: str) -> str:
    """A quoted SQL identifier (our own table and column names; still quoted on principle)."""
    return '"' + name.replace('"', '""') + '"'


def _t(table: str) -> str:
    return f"{_q(SCHEMA)}.{_q(table)}"


class DuckDBWarehouse:
    """One DuckDB file: the published tables of every organization."""

    def __init__(self, path: str | Path = DEFAULT_WAREHOUSE, *, wait: float = 0.0,
                 on_wait: Callable[[str], None] = lambda _: None):  # fmt: skip
        self.path = Path(path)
        self.wait = wait
        self.on_wait = on_wait
        self.migrated: list[tuple[str, str | None]] = []  # what the last connection for writing added (ensure_tables)

    def __str__(self) -> str:
        return str(self.path)

    def connect(self, read_only: bool = False, memory_limit: int | None = None) -> duckdb.DuckDBPyConnection:
        """A connection; waits (up to `wait` seconds) while another process holds DuckDB's file lock.
        `memory_limit` (bytes) caps DuckDB's buffer pool, which otherwise grows to 80% of the machine."""
        if read_only and not self.path.exists():
            raise WarehouseBusy(f"no warehouse at {self.path} yet; run 'kare run' first")
        refuse_other_files(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseBusy(f"cannot create the folder of {self.path}: {exc.strerror}") from None

        def open_() -> duckdb.DuckDBPyConnection:
            return duckdb.connect(str(self.path), read_only=read_only)

        try:
            con = retry_while_locked(open_, f"the warehouse {self.path}", self.wait, self.on_wait)
        except duckdb.Error as exc:
            raise WarehouseBusy(f"cannot open the warehouse {self.path}: {exc}{damaged_advice(exc)}") from None
        if not read_only:
            try:
                if memory_limit:
                    con.execute(f"SET memory_limit = '{int(memory_limit)}B'")
                self.migrated = ensure_tables(con)
            except WarehouseBusy as exc:
                con.close()
                raise WarehouseBusy(f"the warehouse {self.path} {exc}") from None
        return con

    def read(self, table: str, org: str | None = None) -> pl.DataFrame:
        """A whole published table (one organization's rows when `org` is given): for tests and tools,
        never on a run's path."""
        if not self.path.exists():
            return empty(table)
        with contextlib.closing(self.connect(read_only=True)) as con:
            if not _exists(con, table):
                return empty(table)
            where, params = ("WHERE org = $org", {"org": org}) if org else ("", {})
            df = _fetch(con, f"SELECT * FROM {_t(table)} {where}", params)
            return _read_back(table, df)

    def last_run(self, org: str) -> dict | None:
        """The organization's last published run (its `runs` row), or None."""
        if not self.path.exists():
            return None
        with contextlib.closing(self.connect(read_only=True)) as con:
            return Session(con).last_run(org) if _exists(con, "runs") else None

    @contextlib.contextmanager
    def transaction(self, memory_limit: int | None = None) -> Iterator[Session]:
        """One connection, one transaction: COMMIT when the block ends, ROLLBACK on any exception
        (Ctrl-C included)."""
        con = self.connect(memory_limit=memory_limit)
        try:
            con.execute("BEGIN TRANSACTION")
            session = Session(con, migrated=self.migrated)
            yield session
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            con.close()
            raise
        with _stop_signals_held():  # closing writes the checkpoint: a published run must not end as an interrupted one
            try:
                con.execute("COMMIT")
                session.committed = True
            finally:
                con.close()

    def record_failure(self, run: dict, message: str) -> None:
        """Log a failed run in `runs` (status failed) without touching any other table."""
        row = {**{k: None for k in schema_of("runs")}, **{k: v for k, v in run.items() if k in schema_of("runs")},
               "status": "failed", "message": message[:2000], "finished_at": dt.datetime.now(dt.UTC)}  # fmt: skip
        with self.transaction() as session:
            session.insert("runs", pl.DataFrame([row], schema=schema_of("runs")))


def damaged_advice(exc: BaseException) -> str:
    """What to do when DuckDB found the file cut short (a disk that filled, a copy stopped half way) or with a
    bad block, on opening it or later in a run: running again fails the same way."""
    if not isinstance(exc, duckdb.Error):
        return ""
    if not any(sign in str(exc) for sign in ("Corrupt database file", "Could not read enough bytes")):
        return ""
    return (
        "; the warehouse file is damaged (cut short or corrupt): restore it from a backup or a copy, or give "
        "--warehouse a new file (which starts a new history)"
    )


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Ctrl-C (and a SIGTERM that Python handles, as kare run's does) does not interrupt the block (a COMMIT
    and the close after it): DuckDB reports a COMMIT during which Ctrl-C came as 'Query interrupted' even
    when it went through, and the run would then say it published nothing. The signal is delivered when
    the block ends, so the run still stops after it (a published run: --all-orgs runs no further)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return
    # Only handlers set in Python: one set outside it (None) could not be put back, and the default one
    # of SIGTERM ends the process at once, which is its caller's choice.
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    came: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: came.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if came:
            signal.raise_signal(came[0])


def ensure_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None]]:
    """Create the schema, any missing table and any missing column: a warehouse of an older kare is
    migrated in place (new columns are null in its old rows), and the views BI reads are (re)defined.
    The contract's never-null columns are NOT NULL; in an older warehouse they become so unless old
    rows hold a null there. Returns what it added to an older kare's tables, as (table, column) pairs (column
    None for a whole table), empty for a new warehouse or one already up to date."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(SCHEMA)}")
    have = _fetch(
        con,
        "SELECT table_name, column_name, is_nullable, data_type FROM information_schema.columns "
        "WHERE table_schema = $s",
        {"s": SCHEMA},
    )
    existing: dict[str, dict[str, bool]] = {}
    for table, column, nullable, _ in have.iter_rows():
        existing.setdefault(table, {})[column] = nullable == "YES"
    _refuse_other_layouts(have)
    added: list[tuple[str, str | None]] = []
    for table, (_, _, columns) in TABLES.items():
        required = never_null(table)
        if table not in existing:
            cols = ", ".join(f"{_q(n)} {_sql_type(t)}{' NOT NULL' if n in required else ''}" for n, t, _ in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {_t(table)} ({cols})")
            added.append((table, None))
            continue
        for name, dtype, _ in columns:
            if name not in existing[table]:
                con.execute(f"ALTER TABLE {_t(table)} ADD COLUMN {_q(name)} {_sql_type(dtype)}")
                added.append((table, name))
        for name in required:
            if existing[table].get(name, True):
                # Autocommit, before any run's transaction: a refusal (old rows with a null; an index someone
                # made for their dashboards, as DuckDB alters no table an index depends on) changes nothing.
                with contextlib.suppress(duckdb.ConstraintException, duckdb.DependencyException):
                    if (table, name) in FILLED_FROM:
                        source = _q(FILLED_FROM[table, name])
                        con.execute(f"UPDATE {_t(table)} SET {_q(name)} = {source} WHERE {_q(name)} IS NULL")
                    con.execute(f"ALTER TABLE {_t(table)} ALTER COLUMN {_q(name)} SET NOT NULL")
    for view, (query, _) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {_t(view)} AS {query}")
    _describe(con)
    return added if existing.keys() & TABLES.keys() else []  # a new warehouse is not a migration


def _describe(con: duckdb.DuckDBPyConnection) -> None:
    """The contract's descriptions as DuckDB comments, so that a BI tool browsing the warehouse shows what
    each table, view and column means. Only those that differ are written: a run pays one query."""
    wanted = {("TABLE", t, None): text for t, (text, _, _) in TABLES.items()}
    wanted |= {("COLUMN", t, n): text for t, (_, _, columns) in TABLES.items() for n, _, text in columns}
    wanted |= {("VIEW", v, None): text for v, (_, text) in VIEWS.items()}
    have = _fetch(
        con,
        "SELECT 'TABLE' AS kind, table_name AS name, NULL AS col, comment FROM duckdb_tables() WHERE schema_name = $s "
        "UNION ALL SELECT 'VIEW', view_name, NULL, comment FROM duckdb_views() WHERE schema_name = $s "
        "UNION ALL SELECT 'COLUMN', table_name, column_name, comment FROM duckdb_columns() WHERE schema_name = $s",
        {"s": SCHEMA},
    )
    found = {(kind, name, col): comment for kind, name, col, comment in have.iter_rows()}
    for view, (source, own) in VIEW_COLUMNS.items():  # the view's columns as DuckDB lists them
        texts = {n: text for n, _, text in TABLES[source][2]} | own
        wanted |= {key: texts[key[2]] for key in found if key[:2] == ("COLUMN", view) and key[2] in texts}
    for (kind, name, col), text in wanted.items():
        if found.get((kind, name, col)) != text:
            target = _t(name) if col is None else f"{_t(name)}.{_q(col)}"
            con.execute(f"COMMENT ON {kind} {target} IS {_text(text)}")


def _text(value: str) -> str:
    """A quoted SQL string literal (our own descriptions; COMMENT ON takes no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def _refuse_other_layouts(have: pl.DataFrame) -> None:
    """Stop before a run writes into kare tables of another layout (another tool's schema `kare`, a column
    changed by hand, a newer kare-rules' columns): DuckDB's own error, at the first insert, names no table
    ('Could not convert string ...'). Every kare, older ones included, gave each column the type it has now."""
    contract = {(t, n): _sql_type(d) for t, (_, _, columns) in TABLES.items() for n, d, _ in columns}
    wrong = [
        f"kare.{table}.{column} is {found}, not {contract[table, column]}"
        for table, column, _, found in have.iter_rows()
        if (table, column) in contract and _SQL_NAMES.get(found, found) != contract[table, column]
    ]
    if wrong:
        raise WarehouseBusy(
            f"has a schema kare that kare did not make ({'; '.join(sorted(wrong))}); "
            "give --warehouse another file, or rename that schema"
        )
    # A column of a kare table that this kare does not write: a newer kare-rules made it (writing by name, this
    # one would leave it null in every row it adds, or fail on its NOT NULL with DuckDB's own words), or
    # someone added it by hand.
    unknown = [f"kare.{t}.{c}" for t, c, _, _ in have.iter_rows() if t in TABLES and (t, c) not in contract]
    if unknown:
        raise WarehouseBusy(
            f"has columns this kare-rules does not know ({', '.join(sorted(unknown))}): a newer kare-rules wrote "
            "it, or they were added by hand; upgrade kare-rules to run into it (pip install -U kare-rules), or "
            "give --warehouse another file"
        )


_SQL_NAMES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}  # information_schema's name of a type kare writes

# Never-null columns an older kare left null, and the column that holds their best value: the pipeline
# (before the one run engine, kare_rules/run) logged a failed run without its start, which is part of the
# runs key; the run started no later than the failure was logged.
FILLED_FROM = {("runs", "started_at"): "finished_at"}

# Views over the published tables, for BI (docs/bi.md). Defined by every writer, so they follow the tables.
VIEWS = {  # name -> (query, description)
    "upcoming_moves": (
        "SELECT org, account_id, category, next_category, next_move_on, "
        "date_diff('day', as_of, next_move_on) AS days_to_move, edge_category, edge_column, edge_value, "
        f"edge_threshold, edge_change, reason, as_of, run_id FROM {_t('account_categories')} "
        "WHERE next_move_on IS NOT NULL",
        "The accounts of account_categories that will change category with their data unchanged, and when: "
        "days_to_move counts from the row's as_of.",
    ),
}
# The views' columns are described too (a BI tool browsing a view showed none): each comes from the
# table the view reads, but for those the view computes. CREATE OR REPLACE VIEW drops them; _describe
# puts them back.
VIEW_COLUMNS = {  # view -> (the table it reads, {computed column: description})
    "upcoming_moves": (
        "account_categories",
        {"days_to_move": "Days from as_of to next_move_on (a held account's row keeps its older as_of)."},
    ),
}


class Session:
    """The statements of one run inside its transaction: reads of current state, writes of changes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, migrated: list[tuple[str, str | None]] | None = None):
        self.con = con
        self.committed = False  # set once its transaction's COMMIT went through
        self.migrated = migrated or []  # what opening the warehouse added to an older kare's tables

    # ---- reads: current state only -------------------------------------------------------------

    def last_run(self, org: str, before: dt.date | None = None) -> dict | None:
        """The last published run (before the date `before`, when given)."""
        cond, params = "", {"org": org}
        if before is not None:
            cond, params = " AND as_of < $before", {"org": org, "before": before}
        runs = _fetch(
            self.con,
            f"SELECT * FROM {_t('runs')} WHERE org = $org AND status IN ('published', 'unchanged'){cond} "
            "ORDER BY as_of DESC, finished_at DESC LIMIT 1",
            params,
        )
        return _read_back("runs", runs).row(0, named=True) if runs.height else None

    def rules_text(self, org: str, digest: str) -> str | None:
        found = _fetch(
            self.con,
            f"SELECT rules_text FROM {_t('rule_versions')} WHERE org = $org AND rules_digest = $d LIMIT 1",
            {"org": org, "d": digest},
        )
        return found["rules_text"][0] if found.height else None

    def current_rows(self, org: str, within: IdRange | None = None) -> pl.DataFrame:
        """The current history rows (CURRENT_COLUMNS) of the organization's accounts, of the ids `within` a
        slice's range when given."""
        cols = ", ".join(_q(c) for c in CURRENT_COLUMNS)
        cond, params = _within(within)
        df = _fetch(self.con, f"SELECT {cols} FROM {_t('category_history')} WHERE org = $org AND is_current{cond}",
                    {"org": org, **params})  # fmt: skip
        return df.cast(empty_current().schema) if df.height else empty_current()

    def open_actions(self, org: str, within: IdRange | None = None, columns: tuple[str, ...] | None = None
                     ) -> pl.DataFrame:  # fmt: skip
        """The open action_queue rows of the organization's accounts (`within` a slice's id range when
        given); only `columns` of them when given (fetching all thirteen took 2.5x as long at 1M accounts)."""
        cond, params = _within(within)
        names = columns or tuple(schema_of("action_queue"))
        df = _fetch(self.con, f"SELECT {', '.join(_q(c) for c in names)} FROM {_t('action_queue')} "
                    f"WHERE org = $org AND status = 'open'{cond}", {"org": org, **params})  # fmt: skip
        types = schema_of("action_queue")
        return df.select(pl.col(c).cast(types[c]) for c in names) if df.height else empty("action_queue").select(names)

    def categories_of(self, org: str, ids: pl.Series) -> pl.DataFrame:
        """The published account_categories rows of these accounts."""
        if not ids.len():
            return empty("account_categories")
        with self._only(ids) as only:
            df = _fetch(self.con, f"SELECT * FROM {_t('account_categories')} WHERE org = $org{only}", {"org": org})
        return conformed("account_categories", df) if df.height else empty("account_categories")

    def evaluated_apart(self, org: str, runs: tuple[str, ...], within: IdRange | None = None) -> pl.DataFrame:
        """account_id and rules_digest of the account_categories rows not made by `runs`: the accounts held
        (quarantined) since an earlier run, whose row is that run's."""
        cond, params = _within(within)
        marks = ", ".join(f"$r{i}" for i in range(len(runs)))
        params |= {"org": org, **{f"r{i}": r for i, r in enumerate(runs)}}
        df = _fetch(self.con, f"SELECT account_id, rules_digest FROM {_t('account_categories')} WHERE org = $org "
                    f"AND run_id NOT IN ({marks}){cond}", params)  # fmt: skip
        schema = {"account_id": pl.String, "rules_digest": pl.String}
        return df.cast(schema) if df.height else pl.DataFrame(schema=schema)

    def last_categorized(self, org: str, ids: pl.Series, before: dt.date) -> pl.DataFrame:
        """For accounts held (quarantined) by a re-run of `before`: the published run before that date that
        last categorized each (its as_of, run_id, rules_version, rules_digest). A run held an account when
        its quarantine has the account's rows; the run that opened the current history row categorized it."""
        schema = {"account_id": pl.String, "as_of": pl.Date, "run_id": pl.String, "rules_version": pl.String,
                  "rules_digest": pl.String}  # fmt: skip
        if not ids.len():
            return pl.DataFrame(schema=schema)
        with self._only(ids) as only:
            df = _fetch(
                self.con,
                f"WITH r AS (SELECT as_of, run_id, rules_version, rules_digest FROM {_t('runs')} WHERE org = $org "
                "AND status IN ('published', 'unchanged') AND as_of < $d "
                "QUALIFY row_number() OVER (PARTITION BY as_of ORDER BY finished_at DESC) = 1) "
                "SELECT account_id, r.as_of, r.run_id, r.rules_version, r.rules_digest "
                f"FROM {_t('category_history')} h JOIN r ON r.as_of >= h.valid_from "
                f"WHERE org = $org AND is_current{only} AND NOT EXISTS (SELECT 1 FROM {_t('quarantine')} q "
                "WHERE q.org = $org AND q.as_of = r.as_of AND q.account_id = h.account_id) "
                "QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY r.as_of DESC) = 1",
                {"org": org, "d": before},
            )
        return df.cast(schema) if df.height else pl.DataFrame(schema=schema)

    def known_action_keys(self, org: str, keys: pl.Series) -> pl.Series:
        """Which of these action keys the queue holds, in any status."""
        with self._only(keys.alias("action_key"), column="action_key") as only:
            return _fetch(self.con, f"SELECT action_key FROM {_t('action_queue')} WHERE org = $org{only}",
                          {"org": org})["action_key"]  # fmt: skip

    def previous_values(
        self, org: str, as_of: dt.date, columns: tuple[str, ...], within: IdRange | None = None
    ) -> pl.DataFrame:
        """Each account's values of `columns` in the run of `as_of` (the previous one), of the accounts
        `within` a slice's id range (all when None): `account_id` and one column per name. Column names
        go in as parameters, never into the SQL text."""
        picks = ", ".join(f"max(value) FILTER (WHERE column_name = $c{i}) AS v{i}" for i in range(len(columns)))
        cond, bounds = _within(within)
        params = {"org": org, "d": as_of, **bounds, **{f"c{i}": c for i, c in enumerate(columns)}}
        df = _fetch(self.con, f"SELECT account_id, {picks} FROM {_t('account_values')} "
                    f"WHERE org = $org AND as_of = $d{cond} GROUP BY account_id", params)  # fmt: skip
        names = {f"v{i}": c for i, c in enumerate(columns)}
        schema = {"account_id": pl.String, **{c: pl.Float64 for c in columns}}
        return df.rename(names).cast(schema) if df.height else pl.DataFrame(schema=schema)

    def kept_columns(self, org: str, as_of: dt.date) -> set[str]:
        """The columns whose values the run of `as_of` kept for trends."""
        df = _fetch(self.con, f"SELECT DISTINCT column_name FROM {_t('account_values')} "
                    "WHERE org = $org AND as_of = $d", {"org": org, "d": as_of})  # fmt: skip
        return set(df["column_name"]) if df.height else set()

    def forget_values(self, org: str, before: dt.date) -> None:
        """Drop trend values older than the run `before` (state holds the last two run dates only)."""
        self.con.execute(f"DELETE FROM {_t('account_values')} WHERE org = $org AND as_of < $d",
                         {"org": org, "d": before})  # fmt: skip

    def upcoming(self, org: str, as_of: dt.date, days: int) -> pl.DataFrame:
        """Accounts whose next move (data unchanged) falls after `as_of` and at most `days` later, by from → to.
        A held (quarantined) account keeps its older row, whose move may already be past `as_of`."""
        df = _fetch(
            self.con,
            "SELECT category AS from_category, next_category AS to_category, count(*) AS accounts "
            f"FROM {_t('account_categories')} WHERE org = $org AND next_move_on > $as_of "
            "AND next_move_on <= $until GROUP BY ALL ORDER BY accounts DESC, from_category, to_category",
            {"org": org, "as_of": as_of, "until": as_of + dt.timedelta(days=days)},
        )
        schema = {"from_category": pl.String, "to_category": pl.String, "accounts": pl.Int64}
        return df.cast(schema) if df.height else pl.DataFrame(schema=schema)

    def day_rows(self, table: str, org: str, as_of: dt.date) -> pl.DataFrame:
        """A per-run table's rows for (org, as_of)."""
        df = _fetch(self.con, f"SELECT * FROM {_t(table)} WHERE org = $org AND as_of = $d", {"org": org, "d": as_of})
        return conformed(table, df) if df.height else empty(table)

    # ---- writes: the run's change set ------------------------------------------------------------

    def rewind(self, org: str, as_of: dt.date) -> None:
        """Undo what the run already published for `as_of` did (a re-run of the last date replaces it);
        every statement touches only rows opened or closed on that date, and leaves the actions of that
        date that people marked done."""
        p = {"org": org, "d": as_of}
        h, a = _t("category_history"), _t("action_queue")
        self.con.execute(f"DELETE FROM {h} WHERE org = $org AND valid_from = $d", p)
        self.con.execute(f"UPDATE {h} SET valid_to = $far, is_current = true WHERE org = $org AND valid_to = $d",
                         {**p, "far": FAR_FUTURE})  # fmt: skip
        # Actions people marked done stay done (docs/bi.md: never reopened); the re-run finds their keys.
        self.con.execute(f"DELETE FROM {a} WHERE org = $org AND created_on = $d AND status <> 'done'", p)
        self.con.execute(f"UPDATE {a} SET status = 'open', closed_on = NULL WHERE org = $org "
                         "AND status = 'superseded' AND closed_on = $d", p)  # fmt: skip
        self.con.execute(f"DELETE FROM {_t('account_values')} WHERE org = $org AND as_of = $d", p)

    def close_history(self, org: str, ids: pl.Series, as_of: dt.date, within: IdRange | None = None) -> int:
        """End the current rows of these accounts on `as_of`; the number of rows ended. `within` (the
        slice's id range, which holds every id) lets the scan skip row groups outside it."""
        if not ids.len():
            return 0
        cond, params = _within(within)
        with self._only(ids) as only:
            return self._count(f"UPDATE {_t('category_history')} SET valid_to = $d, is_current = false "
                               f"WHERE org = $org AND is_current{cond}{only}",
                               {"org": org, "d": as_of, **params})  # fmt: skip

    def supersede(self, org: str, keys: pl.Series, as_of: dt.date, within: IdRange | None = None) -> int:
        if not keys.len():
            return 0
        cond, params = _within(within)
        with self._only(keys.alias("action_key"), column="action_key") as only:
            return self._count(f"UPDATE {_t('action_queue')} SET status = 'superseded', closed_on = $d "
                               f"WHERE org = $org AND status = 'open'{cond}{only}",
                               {"org": org, "d": as_of, **params})  # fmt: skip

    def delete_categories(self, org: str, keep: pl.Series, within: IdRange | None = None) -> None:
        """Delete the organization's account_categories rows (those `within` a slice's id range when given),
        except those of the accounts `keep`."""
        cond, params = _within(within)
        with self._only(keep, negate=True) as except_kept:
            self.con.execute(f"DELETE FROM {_t('account_categories')} WHERE org = $org{cond}{except_kept}",
                             {"org": org, **params})  # fmt: skip

    def replace_day(self, table: str, org: str, as_of: dt.date, df: pl.DataFrame) -> None:
        """A per-run table's rows for (org, as_of) → `df`."""
        self.con.execute(f"DELETE FROM {_t(table)} WHERE org = $org AND as_of = $d", {"org": org, "d": as_of})
        self.insert(table, df)

    def remember_rules(self, org: str, digest: str, version: str, text: str, as_of: dt.date) -> None:
        """Keep the text of every rule version a run used (later runs compare causes with it)."""
        if self.rules_text(org, digest) is None:
            self.insert("rule_versions", pl.DataFrame([{"org": org, "rules_digest": digest, "rules_version": version,
                                                        "rules_text": text, "first_as_of": as_of}]))  # fmt: skip

    def insert(self, table: str, df: pl.DataFrame) -> None:
        if not df.height:
            return
        # Arrow's newest layout keeps Polars' string views as they are: the default copies every string
        # into the old layout (0.15 s of a 1M-row account_categories insert; DuckDB reads both).
        rows = conformed(table, df).to_arrow(compat_level=pl.CompatLevel.newest())
        # Registered under a name of ours: a bare Python variable would lose to any table of that name
        # in the database (DuckDB looks in the catalog first). As a stream of batches: a registered table
        # took 0.7 GB more at the peak of a 3M-account run than the variable did (a stream, 0.04 GB). By
        # name: a migrated table has its newer columns last, whatever their place in TABLES.
        batches = pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())
        with self._registered(batches, "kare_rows") as name:
            self.con.execute(f"INSERT INTO {_t(table)} BY NAME SELECT * FROM {_q(name)}")

    # ---- helpers ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _only(self, ids: pl.Series | None, column: str = "account_id", negate: bool = False) -> Iterator[str]:
        """A condition limiting a statement to `ids` (registered as a view while the block runs)."""
        if ids is None:
            yield ""
            return
        with self._registered(pl.DataFrame({column: ids.cast(pl.String)}).to_arrow(), "kare_ids") as view:
            yield f" AND {_q(column)} {'NOT ' if negate else ''}IN (SELECT {_q(column)} FROM {_q(view)})"

    @contextlib.contextmanager
    def _registered(self, rows: object, prefix: str) -> Iterator[str]:
        """`rows` (an Arrow table) readable under a fresh name while the block runs."""
        view = f"{prefix}_{next(_views)}"
        self.con.register(view, rows)
        try:
            yield view
        except BaseException:
            # A statement stopped midway (Ctrl-C) aborts the transaction, which then refuses even this: the
            # error to report is the first one, not 'Current transaction is aborted'.
            with contextlib.suppress(duckdb.Error):
                self.con.unregister(view)
            raise
        self.con.unregister(view)

    def _count(self, statement: str, params: dict) -> int:
        result = self.con.execute(statement, params).fetchall()
        return int(result[0][0]) if result else 0


def _read_back(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Rows read back as the table's contract; a column a not yet migrated warehouse lacks is null."""
    if not df.height:
        return empty(table)
    missing = [pl.lit(None, dtype=t).alias(n) for n, t in schema_of(table).items() if n not in df.columns]
    return conformed(table, df.with_columns(missing) if missing else df)


def _within(within: IdRange | None) -> tuple[str, dict]:
    """The condition (and its parameters) for account ids in a slice's range: from inclusive, to exclusive."""
    if within is None:
        return "", {}
    low, high = within
    cond, params = "", {}
    if low is not None:
        cond, params = " AND account_id >= $id_from", {"id_from": low}
    if high is not None:
        cond, params = cond + " AND account_id < $id_to", {**params, "id_to": high}
    return cond, params


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
