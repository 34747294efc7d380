"""Organization × date partitions: organizations from the rules directory, dates at the configured cadence."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from kare_rules import loader

CADENCES = ("daily", "weekly", "monthly")
DEFAULT_START = "2026-01-01"
# When each cadence's schedule fires: shortly after a window ends (its partition is then complete). A weekly
# window is Sunday to Saturday (Dagster's default), so it closes at Sunday 00:00.
CRON = {"daily": "0 6 * * *", "weekly": "0 6 * * 0", "monthly": "0 6 1 * *"}


@contextlib.contextmanager
def chosen_dagster_features() -> Iterator[None]:
    """Dagster features marked beta or preview that this layer uses on purpose: partitioned asset checks
    (each result belongs to one organization and date), the observable rules source and its mapping onto
    the org dimension. Their warnings repeated on every load and every run; the README names them once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        yield


def rules_dir() -> Path:
    return Path(os.environ.get("KARE_RULES_DIR", "rules"))


def organizations(directory: Path | None = None) -> list[str]:
    """Directories holding a rule file; unsafe names, symbolic links and shared files are left out
    (kare validate reports them)."""
    return loader.organizations(directory or rules_dir())


def cadence() -> str:
    """KARE_CADENCE: daily (default), weekly or monthly. Read when the code location loads."""
    value = os.environ.get("KARE_CADENCE", "").strip().lower() or "daily"  # blank is unset, as in resources.py
    if value not in CADENCES:
        raise ValueError(f"KARE_CADENCE={value!r} is not a cadence; set it to one of: {', '.join(CADENCES)}")
    return value


def start_date() -> str:
    """KARE_START_DATE (YYYY-MM-DD): partitions begin with the first whole window on or after it (weekly: the
    Sunday after a Thursday); earlier dates cannot be run from Dagster."""
    value = os.environ.get("KARE_START_DATE", "").strip() or DEFAULT_START
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"KARE_START_DATE={value!r} is not a date; write YYYY-MM-DD, e.g. {DEFAULT_START}") from None


def date_partitions_for(every: str, start: str) -> dg.TimeWindowPartitionsDefinition:
    kinds = {"daily": dg.DailyPartitionsDefinition, "weekly": dg.WeeklyPartitionsDefinition,
             "monthly": dg.MonthlyPartitionsDefinition}  # fmt: skip
    return kinds[every](start_date=start, timezone="UTC")


def warn_of_skipped_folders(directory: Path | None = None) -> None:
    """A folder of the rules directory that is no organization (a bad name, a linked or shared rule file) gets no
    partitions, so it never runs and nothing in Dagster shows it: say so wherever the definitions load
    (dg check defs, dagster dev, each run), as `kare run --all-orgs` does. No organization at all (KARE_RULES_DIR
    mistyped, or `dagster dev` started away from the folder holding rules/) left every asset without partitions
    and the schedule requesting nothing, silently."""
    directory = directory or rules_dir()
    if not organizations(directory):
        what = "holds no <org>/kare.yaml" if directory.is_dir() else "does not exist"
        _warn(
            f"no organization, nothing to run: the rules directory {directory} (KARE_RULES_DIR) {what}; point "
            "KARE_RULES_DIR at the folder holding <org>/kare.yaml, then reload the definitions"
        )
    for problem in loader.organization_problems(directory):
        _warn(f"not an organization, never run: {problem}")


def _warn(message: str) -> None:
    """A UserWarning, or a warning of the dagster logger where warnings go to logging: `dg check defs` (dagster
    definitions validate) captures warnings into a logger that has only a NullHandler, so it said 'All
    definitions loaded successfully.' and nothing else when KARE_RULES_DIR held no organization."""
    if getattr(warnings.showwarning, "__module__", None) == "logging":
        logging.getLogger("dagster").warning(f"UserWarning: {message}")
    else:
        warnings.warn(message, UserWarning, stacklevel=3)


warn_of_skipped_folders()
org_partitions = dg.StaticPartitionsDefinition(organizations())
date_partitions = date_partitions_for(cadence(), start_date())
# Dimensions are ordered by name, so a key reads "2026-11-01|cloudnine": sorting keys sorts by date first.
partitions = dg.MultiPartitionsDefinition({"org": org_partitions, "date": date_partitions})


def as_of_of(date_key: str, dates: dg.TimeWindowPartitionsDefinition = date_partitions) -> dt.date:
    """The run date of a date partition: the last day of its window (daily: the day itself; monthly:
    the month's last day), so a run describes the window it closes."""
    window = dates.time_window_for_partition_key(date_key)
    return (window.end - dt.timedelta(days=1)).date()


def org_and_as_of(key: dg.MultiPartitionKey | str) -> tuple[str, dt.date]:
    keys = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _split(key)
    return keys["org"], as_of_of(keys["date"])


def _split(key: str) -> dict[str, str]:
    date, org = key.split("|", 1)
    return {"date": date, "org": org}


def partition_key(org: str, date_key: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"org": org, "date": date_key})
