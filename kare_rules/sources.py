"""Reading account sources (Parquet, CSV, DuckDB tables, SQL over a database URL) and writing results."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from kare_rules.errors import DataError, UsageError

DEFAULT_INPUT = "data/sample/{org}/latest.parquet"  # what `kare sample` writes; {org} and {as_of} are filled in
SOURCE_HELP = (
    "a source is a .parquet or .csv path (globs allowed), 'duckdb:PATH.duckdb:TABLE' for a DuckDB table, "
    "or 'sql:URL::QUERY' for a query against a database URL (postgresql://…, duckdb:///path)"
)


def read_source(source: str | Path) -> pl.LazyFrame:
    """Open an account source lazily. Everything is read as written; typing happens in validation."""
    text = str(source)
    if text.startswith("duckdb:"):
        return _read_duckdb_table(text.removeprefix("duckdb:"))
    if text.startswith("sql:"):
        return _read_sql(text.removeprefix("sql:"))
    path = Path(text)
    suffix = path.suffix.lower()
    if not any(ch in text for ch in "*?[") and not path.exists():
        raise DataError(f"input {text} does not exist; {SOURCE_HELP}")
    try:
        if suffix == ".parquet":
            return pl.scan_parquet(text)
        if suffix in (".csv", ".txt", ".tsv"):
            # Read every column as text: a value that does not fit its declared type is then
            # quarantined with a reason instead of failing the whole read.
            return pl.scan_csv(text, infer_schema=False, separator="\t" if suffix == ".tsv" else ",")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {text}: {exc}") from None
    raise UsageError(f"cannot tell the format of {text!r}; {SOURCE_HELP}")


def _read_duckdb_table(spec: str) -> pl.LazyFrame:
    import duckdb

    path, sep, table = spec.rpartition(":")
    if not sep or not path or not table:
        raise UsageError(f"write a DuckDB table source as duckdb:PATH.duckdb:TABLE (got duckdb:{spec})")
    if not Path(path).exists():
        raise DataError(f"DuckDB file {path} does not exist")
    parts = table.split(".")
    ident = ".".join('"' + p.replace('"', '""') + '"' for p in parts)
    try:
        with duckdb.connect(path, read_only=True) as con:
            return con.sql(f"SELECT * FROM {ident}").pl().lazy()
    except duckdb.Error as exc:
        raise DataError(f"cannot read table {table} from {path}: {exc}") from None


def _read_sql(spec: str) -> pl.LazyFrame:
    cut = spec.find("::")
    while cut >= 0 and spec[cut + 2 : cut + 3] == ":":  # duckdb:///:memory:::SELECT … keeps its colon
        cut += 1
    url, query = (spec[:cut], spec[cut + 2 :]) if cut >= 0 else (spec, "")
    if not query.strip():
        raise UsageError("write a SQL source as sql:URL::QUERY, e.g. sql:postgresql://host/db::SELECT * FROM accounts")
    if url.startswith("duckdb:///"):
        import duckdb

        database = url.removeprefix("duckdb:///") or ":memory:"
        with duckdb.connect(database, read_only=database != ":memory:") as con:
            try:
                return con.sql(query).pl().lazy()
            except duckdb.Error as exc:
                raise DataError(f"the query failed: {exc}") from None
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise UsageError("reading from PostgreSQL needs psycopg: pip install 'kare-rules[postgres]'") from None
        try:
            with psycopg.connect(url) as conn, conn.cursor() as cur:
                cur.execute(query)
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
        except psycopg.Error as exc:
            raise DataError(f"the query failed: {exc}") from None
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None).lazy()
    raise UsageError(f"unsupported database URL {url!r}; use postgresql://… or duckdb:///path")


def write_frame(df: pl.DataFrame, path: str | Path) -> None:
    """Write a result by extension: .parquet, or .csv (list columns joined with '|')."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        df.write_parquet(path)
    elif suffix == ".csv":
        lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
        df.with_columns(pl.col(c).list.join("|") for c in lists).write_csv(path)
    else:
        raise UsageError(f"cannot write {path}: the output must end in .parquet or .csv")
