"""The rules digest: a hash of what the rules mean, blind to comments, key order and formatting."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kare_rules.model import RuleSet

# Prose and bookkeeping do not change a single category or action, so they do not change the digest.
_NOT_SEMANTIC = {"version", "description", "owners", "tests", "path", "digest"}
# Sections added after format v1 was first published: left out while empty, so the digest of a rule
# file that does not use them is what it always was (warehouses compare digests across versions).
_LATER = ("watches",)


def canonical(rules: RuleSet) -> dict[str, Any]:
    """The semantic content of a rule set as plain, order-stable data."""
    out = {f.name: _plain(getattr(rules, f.name)) for f in dataclasses.fields(rules) if f.name not in _NOT_SEMANTIC}
    # The order columns are declared in means nothing; the order of precedence and of actions does.
    for unordered in ("inputs", "derived"):
        out[unordered] = sorted(out[unordered], key=lambda c: c["name"])
    # Each (from, to) pair appears once, so the order transitions are listed in means nothing either.
    out["transitions"] = sorted(out["transitions"], key=lambda t: (t["from_category"], t["to_category"]))
    # Watch ids are unique and every watch is evaluated, so their order means nothing; within's does not either.
    out["watches"] = sorted(out["watches"], key=lambda w: w["id"])
    for w in out["watches"]:
        w["within"] = sorted(w["within"], key=lambda a: a["column"])
    for section in _LATER:
        if not out[section]:
            del out[section]
    return out


def rules_digest(rules: RuleSet) -> str:
    text = json.dumps(canonical(rules), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {"node": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name != "description":
                out[f.name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value
