"""One partition per organization, read from the rules directory when the code location loads."""

import os
from pathlib import Path

import dagster as dg

from kare_rules.loader import RULE_FILE_NAMES, is_safe_org


def rules_dir() -> Path:
    return Path(os.environ.get("KARE_RULES_DIR", "rules"))


def organizations(directory: Path | None = None) -> list[str]:
    """Directories holding a rule file; names that are not safe slugs are ignored (validate reports them)."""
    root = directory or rules_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_safe_org(p.name)]
    return sorted(p.name for p in found if any((p / n).exists() for n in RULE_FILE_NAMES))


org_partitions = dg.StaticPartitionsDefinition(organizations())
