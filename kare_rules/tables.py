"""The output tables: the BI contract (DESIGN §4). Names, column types and meanings live here once;
schemas/tables/*.json are generated from this module and a test keeps them in sync."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

FAR_FUTURE = dt.date(9999, 12, 31)
SCHEMA = "kare"

S, D, INT, B, F = pl.String, pl.Date, pl.Int64, pl.Boolean, pl.Float64
LS = pl.List(pl.String)
TS = pl.Datetime("us", "UTC")

# table -> (description, key columns, [(column, dtype, description)])
TABLES: dict[str, tuple[str, list[str], list[tuple[str, pl.DataType, str]]]] = {
    "account_categories": (
        "The current category of every account, with the rule that matched and why.",
        ["org", "account_id"],
        [
            ("org", S, "Organization slug (the rules/<org>/ directory)."),
            ("account_id", S, "The account key, as text."),
            ("category", S, "exit, expand, keep, recapture, attain or unassigned."),
            (
                "matched_rule",
                S,
                "The rule that decided: 'exit', 'profiles.<category>' or 'override'; null if unassigned.",
            ),
            ("reason", S, "Human-readable: the traits and predicates that held, with the values."),
            ("overlaps", LS, "Other categories whose conditions also held (lower in precedence)."),
            ("rules_version", S, "The rule file's version that made this category."),
            ("rules_digest", S, "Digest of the rules' semantic content (ignores comments and formatting)."),
            ("as_of", D, "The run date the category was computed for."),
            ("run_id", S, "The run that computed it (deterministic: same inputs, same id)."),
            # Early warning (issue 11). Added after the first release: older warehouses gain them in place.
            ("next_category", S, "The category the account will get with its data unchanged (dates move on)."),
            ("next_move_on", D, "The first date after as_of it gets next_category; null: no move within the horizon."),
            ("edge_category", S, "The category the nearest single-value change would give."),
            ("edge_column", S, "The quantity whose change is nearest (relative to its value); null: none."),
            ("edge_value", F, "That quantity's value now."),
            ("edge_threshold", F, "The rule's boundary the change crosses (or reaches, for gte/lte/between)."),
            ("edge_change", F, "edge_threshold - edge_value: how far the quantity is from the move."),
            ("watches", LS, "Ids of the rule file's watches that hold for the account (it is about to move)."),
        ],
    ),
    "category_history": (
        "SCD type 2 history of categories: one row per account and validity interval [valid_from, valid_to).",
        ["org", "account_id", "valid_from"],
        [
            ("org", S, "Organization slug."),
            ("account_id", S, "The account key, as text."),
            ("category", S, "The category in this interval; null after the account left the input (removed)."),
            ("previous_category", S, "The category of the interval before; null for a new account."),
            ("valid_from", D, "First as_of date of this interval (inclusive)."),
            ("valid_to", D, "End of the interval (exclusive); 9999-12-31 while current."),
            ("is_current", B, "True for the one current row of each account."),
            ("change_cause", S, "new, data, rules, both, override or removed."),
            ("rules_version", S, "Rule file version that made this row."),
            ("rules_digest", S, "Digest of those rules."),
            ("matched_rule", S, "The rule that matched when the interval started."),
            ("run_id", S, "The run that opened this interval."),
        ],
    ),
    "category_transitions": (
        "Per run: how many accounts went from each category to each category ('new' for first seen, "
        "'removed' for accounts that left the input).",
        ["org", "as_of", "from_category", "to_category"],
        [
            ("org", S, "Organization slug."),
            ("as_of", D, "The run date."),
            ("run_id", S, "The run."),
            ("from_category", S, "Category at the previous run, or 'new'."),
            ("to_category", S, "Category at this run, or 'removed'."),
            ("accounts", INT, "Number of accounts."),
        ],
    ),
    "action_queue": (
        "Actions that follow from categories and transitions. At most one open row per (org, account, action).",
        ["action_key"],
        [
            ("action_key", S, "Stable key: org|account|category, from>to or watch:<id>|action id|start date."),
            ("org", S, "Organization slug."),
            ("account_id", S, "The account key, as text."),
            ("category", S, "The category (for a transition action: the category moved to)."),
            ("source", S, "'category', 'transition:<from>><to>' or 'watch:<watch id>'."),
            ("action_id", S, "The action's id in the rule file."),
            ("title", S, "What to do."),
            ("owner", S, "Who should do it (from the column the action's 'owner' names)."),
            ("priority", S, "high, medium or low."),
            ("created_on", D, "The as_of date of the run that opened it."),
            ("due_on", D, "created_on + due_in_days."),
            ("status", S, "open, done or superseded (the account left the category)."),
            ("closed_on", D, "When it was done or superseded."),
        ],
    ),
    "quarantine": (
        "Input rows that failed validation, with every reason. Input rows = valid rows + quarantined rows.",
        ["org", "as_of", "row_number"],
        [
            ("org", S, "Organization slug."),
            ("as_of", D, "The run date."),
            ("run_id", S, "The run."),
            ("row_number", INT, "1-based row number in the input."),
            ("account_id", S, "The key value as read (may be null)."),
            ("reasons", LS, "Every validation failure of the row, in words."),
            ("record", S, "The whole input row as JSON."),
        ],
    ),
    "runs": (
        "One row per run attempt: what went in, what came out, and whether it was published.",
        ["org", "started_at"],  # not run_id: a repeated run repeats it, a run failing before its input has none
        [
            ("org", S, "Organization slug."),
            (
                "run_id",
                S,
                "The run (deterministic from org, as_of, rules, overrides and input); null when the run failed "
                "before its input was read.",
            ),
            ("as_of", D, "The run date."),
            ("rules_version", S, "Rule file version."),
            ("rules_digest", S, "Rule digest."),
            ("input_rows", INT, "Rows read."),
            ("valid_rows", INT, "Rows that passed validation."),
            ("quarantined_rows", INT, "Rows set aside (input_rows = valid_rows + quarantined_rows)."),
            ("exit", INT, "Accounts in exit."),
            ("expand", INT, "Accounts in expand."),
            ("keep", INT, "Accounts in keep."),
            ("recapture", INT, "Accounts in recapture."),
            ("attain", INT, "Accounts in attain."),
            ("unassigned", INT, "Accounts that matched nothing."),
            ("moved", INT, "Accounts whose category changed since the last run (new, returned, removed excluded)."),
            ("actions_opened", INT, "Actions opened by this run."),
            ("actions_closed", INT, "Actions superseded by this run."),
            ("started_at", TS, "When the run started (UTC)."),
            ("finished_at", TS, "When it finished (UTC)."),
            ("status", S, "published, unchanged (same inputs as the last published run) or failed."),
            ("message", S, "Why it failed, when it did."),
        ],
    ),
    "account_values": (
        "Run state, not for BI: the values trends (change_of, pct_change_of) compare with, for the "
        "organization's last two run dates only.",
        ["org", "account_id", "column_name", "as_of"],
        [
            ("org", S, "Organization slug."),
            ("account_id", S, "The account key, as text."),
            ("column_name", S, "The input column a trend reads."),
            ("value", F, "Its value in that run (null when the input was null)."),
            ("as_of", D, "The run date."),
        ],
    ),
    "rule_versions": (
        "The rule file text behind every digest, so any past category can be traced to its exact rules.",
        ["org", "rules_digest"],
        [
            ("org", S, "Organization slug."),
            ("rules_digest", S, "Digest of the rules' semantic content."),
            ("rules_version", S, "The version the file declared."),
            ("rules_text", S, "The rule file as it was."),
            ("first_as_of", D, "First run date that used it."),
        ],
    ),
}


# The columns no published row leaves null (besides the key): the contract's non-null types, and NOT NULL in
# the warehouse. Left out on purpose: what an engine or a failed run may not know (reason, the early-warning
# columns with --engine duckdb, a failed run's counts and rules), and what is null by meaning (a removed
# account's category, an unassigned account's matched_rule, an action's owner or closed_on).
NOT_NULL: dict[str, tuple[str, ...]] = {
    "account_categories": ("category", "rules_version", "rules_digest", "as_of", "run_id"),
    "category_history": ("valid_to", "is_current", "change_cause", "rules_version", "rules_digest", "run_id"),
    "category_transitions": ("run_id", "accounts"),
    "action_queue": (
        "org",
        "account_id",
        "category",
        "source",
        "action_id",
        "title",
        "priority",
        "created_on",
        "due_on",
        "status",
    ),
    "quarantine": ("run_id", "reasons", "record"),
    "runs": ("finished_at", "status"),
    "account_values": (),
    "rule_versions": ("rules_version", "rules_text", "first_as_of"),
}


def never_null(table: str) -> list[str]:
    """The table's key and the columns no published row leaves null, in column order."""
    _, key, columns = TABLES[table]
    return [n for n, _, _ in columns if n in key or n in NOT_NULL[table]]


# The early-warning columns of account_categories (kare_rules.edges computes them).
EDGE_COLUMNS = ("next_category", "next_move_on", "edge_category", "edge_column", "edge_value", "edge_threshold",
                "edge_change", "watches")  # fmt: skip


def schema_of(table: str) -> dict[str, pl.DataType]:
    return {name: dtype for name, dtype, _ in TABLES[table][2]}


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=schema_of(table))


# The columns of a current history row a run reads (the rest of the row is never read).
CURRENT_COLUMNS = ("account_id", "category", "matched_rule", "rules_version", "rules_digest", "valid_from")


def empty_current() -> pl.DataFrame:
    return empty("category_history").select(CURRENT_COLUMNS)


def conformed(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Exactly the table's columns, in order and type: what gets published."""
    return df.select([pl.col(n).cast(t) for n, t in schema_of(table).items()])


_JSON_TYPES = {pl.String: "string", pl.Date: "string", pl.Int64: "integer", pl.Boolean: "boolean", pl.Float64: "number"}


def json_contract(table: str) -> dict:
    """A table's contract as a JSON Schema of one row."""
    description, key, columns = TABLES[table]
    required = never_null(table)
    props = {}
    for name, dtype, text in columns:
        if isinstance(dtype, pl.List):
            spec: dict = {"type": "array", "items": {"type": "string"}}
        elif dtype == pl.Date:
            spec = {"type": "string", "format": "date"}
        elif isinstance(dtype, pl.Datetime):
            spec = {"type": "string", "format": "date-time"}
        else:
            spec = {"type": _JSON_TYPES[dtype]}
        if name not in required:
            spec["type"] = [spec["type"], "null"]
        props[name] = {**spec, "description": text, "x-sql-type": _sql_type(dtype)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{SCHEMA}.{table}",
        "description": description,
        "x-key": key,
        "x-not-null": required,
        "type": "object",
        "additionalProperties": False,
        "required": [n for n, _, _ in columns],
        "properties": props,
    }


def _sql_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return "VARCHAR[]"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ"
    return {pl.String: "VARCHAR", pl.Date: "DATE", pl.Int64: "BIGINT", pl.Boolean: "BOOLEAN", pl.Float64: "DOUBLE"}[
        dtype
    ]


def write_contracts(directory: str | Path) -> list[Path]:
    """Write schemas/tables/<table>.json for every table; return the files written.

    Regenerate after changing TABLES with:
    python -c "from kare_rules.tables import write_contracts; write_contracts('schemas/tables')"
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in TABLES:
        path = out / f"{table}.json"
        path.write_text(json.dumps(json_contract(table), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Whether two frames hold the same rows, in any order (published tables have no row order)."""
    if a.schema != b.schema or a.height != b.height:
        return False
    by = [c for c, t in a.schema.items() if not isinstance(t, pl.List)]
    return a.sort(by, nulls_last=True).equals(b.sort(by, nulls_last=True))
