"""Where the rules, the accounts and the warehouse are, and the limits of the checks per organization."""

import dataclasses
import datetime as dt
import os
from collections.abc import Callable

import dagster as dg

from kare_rules.errors import KareError
from kare_rules.loader import organizations
from kare_rules.run import ENGINES, Thresholds
from kare_rules.run.slicing import parse_size
from kare_rules.sources import DEFAULT_INPUT
from kare_rules.warehouse import DEFAULT_WAIT, DEFAULT_WAREHOUSE, Warehouse

_DEFAULTS = Thresholds()
THRESHOLD_NAMES = tuple(f.name for f in dataclasses.fields(Thresholds))


def _env_float(name: str, default: float) -> float:
    """The variable's number; set but blank is unset, as for the text settings (a blank KARE_WAIT stopped the
    definitions from loading)."""
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


def _env_text(name: str, default: str) -> str:
    """The variable's value; set but blank (a CI template's empty input) is unset, as `kare run` reads it."""
    return os.environ.get(name, "").strip() or default


def _env_bool(name: str) -> bool:
    """Yes or no, in any case (True, yes, 1, on / False, no, 0, off, or unset): 'True' read as no left the
    guard on while its message kept asking for the setting that had just been made."""
    value = os.environ.get(name, "").strip().lower()
    if value in {"", "0", "false", "no", "off", "n", "f"}:
        return False
    if value in {"1", "true", "yes", "on", "y", "t"}:
        return True
    raise ValueError(f"{name}={os.environ[name]!r} is not yes or no; write true or false")


class KareSettings(dg.ConfigurableResource):
    """Everything a run needs besides its partition; each field defaults from an environment variable."""

    rules_dir: str = _env_text("KARE_RULES_DIR", "rules")
    warehouse: str = _env_text("KARE_WAREHOUSE", DEFAULT_WAREHOUSE)
    input: str = _env_text("KARE_INPUT", DEFAULT_INPUT)  # {org} and {as_of} are filled in per run
    engine: str = _env_text("KARE_ENGINE", "polars")
    wait: float = _env_float("KARE_WAIT", DEFAULT_WAIT)  # seconds to wait for the warehouse (runs, readers)
    memory_budget: str | None = _env_text("KARE_MEMORY_BUDGET", "") or None  # e.g. 4GiB; default from the machine
    max_quarantine_share: float = _env_float("KARE_MAX_QUARANTINE_SHARE", _DEFAULTS.max_quarantine_share)
    max_removed_share: float = _env_float("KARE_MAX_REMOVED_SHARE", _DEFAULTS.max_removed_share)
    allow_empty_input: bool = _env_bool("KARE_ALLOW_EMPTY_INPUT")
    warn_unassigned_share: float = _env_float("KARE_WARN_UNASSIGNED_SHARE", _DEFAULTS.warn_unassigned_share)
    warn_overlap_share: float = _env_float("KARE_WARN_OVERLAP_SHARE", _DEFAULTS.warn_overlap_share)
    warn_mix_shift: float = _env_float("KARE_WARN_MIX_SHIFT", _DEFAULTS.warn_mix_shift)
    # Per organization, any Thresholds field overriding the ones above, e.g.
    # {"cloudnine": {"max_quarantine_share": 0.3, "warn_mix_shift": 0.2}}
    thresholds: dict[str, dict[str, float]] = {}  # noqa: RUF012 (pydantic copies field defaults)

    def thresholds_for(self, org: str) -> Thresholds:
        """The global limits with the organization's overrides; an unknown name is a configuration error, and so is
        an organization the rules directory does not hold (a typo such as harbor_bank left that organization on
        the global limits, silently)."""
        known = organizations(self.rules_dir)
        strangers = sorted(set(self.thresholds) - set(known))
        if strangers:
            raise dg.Failure(
                description=f"thresholds names {', '.join(strangers)}, which is not an organization of the rules "
                f"directory {self.rules_dir} (KARE_RULES_DIR); use its folder names: {', '.join(known) or 'none'}"
            )
        own = dict(self.thresholds.get(org, {}))
        unknown = sorted(set(own) - set(THRESHOLD_NAMES))
        if unknown:
            raise dg.Failure(
                description=f"thresholds.{org} names {', '.join(unknown)}, which is not a limit; "
                f"use any of: {', '.join(THRESHOLD_NAMES)}"
            )
        values = {name: getattr(self, name) for name in THRESHOLD_NAMES} | own
        values["allow_empty_input"] = bool(values["allow_empty_input"])
        for name, value in values.items():  # one at a time: the message names where the bad value was set
            try:
                Thresholds(**{name: value})
            except KareError as exc:
                where = (
                    f"thresholds.{org}.{name}" if name in own else f"the kare resource's {name} (KARE_{name.upper()})"
                )
                raise dg.Failure(description=f"{where}: {exc}") from None
        return Thresholds(**values)

    def source(self, org: str, as_of: dt.date) -> str:
        return self.input.replace("{org}", org).replace("{as_of}", as_of.isoformat())

    def budget(self) -> int | None:
        try:
            return parse_size(self.memory_budget) if self.memory_budget else None
        except KareError as exc:
            raise dg.Failure(description=f"the kare resource's memory_budget (KARE_MEMORY_BUDGET): {exc}") from None

    def checked_engine(self) -> str:
        if self.engine not in ENGINES:
            choices = ", ".join(ENGINES)
            raise dg.Failure(
                description=f"the kare resource's engine (KARE_ENGINE) is {self.engine!r}; use one of: {choices}"
            )
        return self.engine

    def open_warehouse(self, on_wait: Callable[[str], None] = lambda _: None) -> Warehouse:
        return Warehouse(self.warehouse, wait=self.wait, on_wait=on_wait)
