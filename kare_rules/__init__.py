"""kare-rules: KARE account profiles as code. Rule files in, categories, explanations and actions out."""

from kare_rules.engine import categorize, categorize_lazy, category_counts
from kare_rules.errors import DataError, KareError, Problem, RuleFileError
from kare_rules.loader import check_rules, load_rules
from kare_rules.model import RuleSet

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
