"""What every command shares: the command registry, output, exit codes and the option types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kare_rules.errors import UsageError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def out(text: str = "") -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rule_files(paths: list[str]) -> list[Path]:
    from kare_rules.loader import find_rule_files

    if not paths and not Path("rules").is_dir():
        raise UsageError(
            "no rules/ directory in the current folder; give the rule files or directories to check "
            "(e.g. rules/acme/kare.yaml or path/to/rules), or run it from the folder that holds rules/"
        )
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such file or directory; give rule files or directories")
    files = find_rule_files(paths or ["rules"])
    if not files:
        raise UsageError(f"no rule files (*/kare.yaml) found in {', '.join(paths or ['rules'])}")
    return files


def rules_option(path: str, option: str = "--rules") -> str:
    """--rules (or diff's --before/--after) as given, once it names something to read: a missing path, or a
    directory without a rule file (such as rules/ itself), is a usage error (exit 2) that says what to give instead."""
    from kare_rules.loader import RULE_FILE_NAMES

    where = Path(path)
    if not where.exists():
        raise UsageError(f"{option} {path}: no such file or directory; give a rule file (kare.yaml) or its directory")
    if where.is_dir() and not any((where / name).exists() for name in RULE_FILE_NAMES):
        raise UsageError(
            f"{option} {path}: no kare.yaml in this directory; give one organization's directory (e.g. "
            f"{where / 'ORG'}) or its kare.yaml"
        )
    return path


# ---- option types: a value that cannot work is a usage error (exit 2) before any work is done ----

FIRST_DAY, LAST_DAY = "1900-01-01", "2999-12-31"  # run dates outside are typing mistakes (and dates past 9999 overflow)
MAX_WAIT_SECONDS = 86_400.0


def date_arg(text: str) -> str:
    """A run date (--as-of, --last) as YYYY-MM-DD text; empty, malformed or far-off dates are refused."""
    import datetime as dt

    try:
        # fromisoformat also takes 20261101 and 2026-W44-7; the value goes on as plain YYYY-MM-DD.
        day = dt.date.fromisoformat(text.strip()).isoformat() if text.strip() else None
    except ValueError:
        day = None
    if day is None:
        import re

        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a date: there is no such day on the calendar")
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-11-01")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(
            f"{day} is not a plausible run date; give one between {FIRST_DAY} and {LAST_DAY}"
        )
    return day


def _number(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def share_arg(text: str) -> float:
    """A share of rows, 0 to 1 (0.2 is 20%); nan, inf and percentages like 20 are refused."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1 (write 0.2 for 20%)")
    return value


def seconds_arg(text: str) -> float:
    """A duration in seconds, 0 up to a day; nan, inf and negative durations are refused."""
    value = _number(text)
    if not 0.0 <= value <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds between 0 and {MAX_WAIT_SECONDS:,.0f}")
    return value


def count_arg(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number within [minimum, maximum], as an argparse type."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum:,} to {maximum:,}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a whole number {bound}")
        return value

    return parse


def table(df) -> str:
    """A small frame as an aligned plain-text table."""
    cols = df.columns
    rows = [[str(v) for v in r] for r in df.iter_rows()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(cols), *(line(r) for r in rows)])
