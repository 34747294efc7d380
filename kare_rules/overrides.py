"""rules/<org>/overrides.yaml: accounts pinned to a category by a person, with reason and expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from kare_rules import model as m
from kare_rules.errors import RuleFileError
from kare_rules.loader import RULE_FILE_NAMES, link_problem
from kare_rules.schema import OVERRIDES_SCHEMA, schema_problems
from kare_rules.yamlsource import load_document

OVERRIDES_FILE = "overrides.yaml"


@dataclass(frozen=True)
class Override:
    account: str
    category: str
    reason: str
    author: str
    expires: dt.date


def load_overrides(path: str | Path, rules: m.RuleSet) -> tuple[Override, ...]:
    """Validated overrides; a missing file means none. Problems are raised together, located."""
    path = Path(path)
    if os.path.lexists(path) and (linked := link_problem(path)):  # as a linked rule file: another's pins
        raise RuleFileError([linked])
    if not path.exists():
        return ()
    doc = load_document(path, empty="it should start with 'format: kare-overrides/v1'")
    parsed = list(doc.problems)
    if not parsed and not isinstance(doc.data, dict):
        parsed.append(doc.problem((), "an overrides file is a mapping with 'format:' and 'overrides:'"))
    if parsed and not isinstance(doc.data, dict):
        raise RuleFileError(parsed)
    # A file that parsed despite a problem (a date not on the calendar, a duplicate key) is checked on, as a
    # rule file is, so every mistake comes out in one run; a later check's line at the same place is left out.
    located = {(p.line, p.column) for p in parsed}
    problems = parsed + [p for p in schema_problems(doc, schema=OVERRIDES_SCHEMA) if (p.line, p.column) not in located]
    out: list[Override] = []
    seen: dict[str, int] = {}
    text = doc.text.splitlines()  # the values as written, for ids YAML reads as numbers
    for i, o in enumerate(doc.data.get("overrides") or []):
        if not isinstance(o, dict) or not {"account", "category", "reason", "author", "expires"} <= set(o):
            continue
        where = ("overrides", i)
        if isinstance(o["account"], bool) or (isinstance(o["account"], float) and not o["account"].is_integer()):
            continue  # the schema reports it (yes, no, true, 5.5: not an account)
        account, problem = _account_id(o["account"], rules, _written(text, doc.where((*where, "account"))))
        if problem:
            problems.append(doc.problem((*where, "account"), problem))
            continue
        if account in seen:
            problems.append(doc.problem((*where, "account"), f"account {account} is overridden twice (first at item "
                                        f"{seen[account] + 1}); keep one"))  # fmt: skip
        seen.setdefault(account, i)
        category = o["category"]
        if category in m.CATEGORIES and category not in rules.categories:
            pinnable = ", ".join([*(r.name for r in rules.ordered()), m.UNASSIGNED])
            problems.append(doc.problem((*where, "category"), f"category '{category}' is not defined in the rules; "
                                        f"pin one they define: {pinnable}"))  # fmt: skip
        expires = o["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                continue  # the schema reports it
        if not isinstance(expires, dt.date):
            continue
        out.append(Override(account, str(category), str(o["reason"]), str(o["author"]), expires))
    if problems:
        raise RuleFileError(problems)
    return tuple(out)


def _written(lines: list[str], at: tuple[int, int]) -> str:
    """The plain scalar as written at (line, column) in the file: up to a comma, bracket or comment."""
    line, col = at
    found = re.match(r"[^,}\]#\s]+", lines[line - 1][col - 1 :]) if 0 < line <= len(lines) else None
    return found.group(0) if found else ""


def _account_id(value: object, rules: m.RuleSet, written: str) -> tuple[str, str | None]:
    """An override's account as the key is published (text), or why it cannot be one. YAML reads some
    unquoted ids as something else (00123 as the number 83, 1_000 as 1000): for a text key
    such a value is refused rather than pinning an account that is not the one meant; for an integer key
    '05' is account 5."""
    key = rules.input(rules.key)
    if key.type == "integer":
        number = str(value).strip()
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", number):
            return "", f"account {value!r} is not an integer, as the key '{key.name}' is; write the account's number"
        if not -(2**63) <= int(number) < 2**63:
            # No account of a 64-bit key has it: the pin could never apply.
            return (
                "",
                f"account {number} is out of the range of the 64-bit integer key '{key.name}'; "
                "write the account's number",
            )
        return str(int(number)), None
    if not isinstance(value, str) and written != str(value):
        return "", (
            f"account {written} is read by YAML as {value!r}, not as the text '{written}' the key '{key.name}' "
            f"holds: put it in quotes (account: '{written}')"
        )
    return str(value), None


def overrides_digest(overrides: tuple[Override, ...]) -> str:
    text = "\n".join(f"{o.account}|{o.category}|{o.reason}|{o.author}|{o.expires}" for o in overrides)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def overrides_beside(rules_path: str | Path, rules: m.RuleSet) -> tuple[Override, ...]:
    """The overrides of the organization whose rule file is `rules_path` (ORG/kare.yaml, or ORG/ itself),
    as `kare run` reads them; none for a rule file under another name, which has no organization
    directory. Problems are a RuleFileError, as for `load_overrides`."""
    where = Path(rules_path)
    folder = where if where.is_dir() else where.parent if where.name in RULE_FILE_NAMES else None
    return load_overrides(folder / OVERRIDES_FILE, rules) if folder is not None else ()


def apply_overrides(
    categorized: pl.DataFrame, key: str, overrides: tuple[Override, ...], as_of: dt.date
) -> pl.DataFrame:
    """Replace the category of accounts with an override in force on `as_of` (expires inclusive)."""
    active = [o for o in overrides if as_of <= o.expires]
    if not active:
        return categorized
    pins = pl.DataFrame(
        {
            "_account": [o.account for o in active],
            "_category": [o.category for o in active],
            "_reason": [f"override by {o.author} until {o.expires}: {o.reason}" for o in active],
        }
    )
    joined = categorized.join(pins, left_on=pl.col(key).cast(pl.String), right_on="_account", how="left")
    pinned = pl.col("_category").is_not_null()
    return joined.with_columns(
        pl.when(pinned).then(pl.col("_category")).otherwise(pl.col("category")).alias("category"),
        pl.when(pinned).then(pl.lit("override")).otherwise(pl.col("matched_rule")).alias("matched_rule"),
        pl.when(pinned)
        .then(pl.concat_str([pl.col("_reason"), pl.lit(" (rules said: "), pl.col("category"), pl.lit(")")]))
        .otherwise(pl.col("reason"))
        .alias("reason"),
    ).drop("_category", "_reason", *(["_account"] if "_account" in joined.columns else []))
