"""kare-rules: KARE account profiles as code. Rule files in, categories, explanations and actions out."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kare_rules.engine import categorize, categorize_lazy, category_counts
    from kare_rules.errors import DataError, KareError, Problem, RuleFileError
    from kare_rules.loader import check_rules, load_rules
    from kare_rules.model import RuleSet

# Imported when first used, not with the package: `kare` starts from kare_rules.console, whose import must
# be instant so that a Ctrl-C while Polars and the rest load is caught there (no traceback).
_EXPORTS = {
    "DataError": "kare_rules.errors",
    "KareError": "kare_rules.errors",
    "Problem": "kare_rules.errors",
    "RuleFileError": "kare_rules.errors",
    "RuleSet": "kare_rules.model",
    "categorize": "kare_rules.engine",
    "categorize_lazy": "kare_rules.engine",
    "category_counts": "kare_rules.engine",
    "check_rules": "kare_rules.loader",
    "load_rules": "kare_rules.loader",
}

__all__ = [
    "DataError",
    "KareError",
    "Problem",
    "RuleFileError",
    "RuleSet",
    "categorize",
    "categorize_lazy",
    "category_counts",
    "check_rules",
    "load_rules",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kare_rules' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
