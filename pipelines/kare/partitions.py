"""One partition per organization, read from the rules directory when the code location loads."""

import os
from pathlib import Path

import dagster as dg

from kare_rules import loader


def rules_dir() -> Path:
    return Path(os.environ.get("KARE_RULES_DIR", "rules"))


def organizations(directory: Path | None = None) -> list[str]:
    """Directories holding a rule file; unsafe names, symbolic links and shared files are left out
    (kare validate reports them)."""
    return loader.organizations(directory or rules_dir())


org_partitions = dg.StaticPartitionsDefinition(organizations())
