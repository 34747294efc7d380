"""Run the embedded `tests:` of a rule file: each example account must get its expected category."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from kare_rules import model as m
from kare_rules.compile_polars import POLARS_TYPES
from kare_rules.engine import categorize


@dataclass(frozen=True)
class RuleTestResult:
    test: m.RuleTest
    got: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.got == self.test.expect


def account_frame(rules: m.RuleSet, account: dict) -> pl.DataFrame:
    """One account as a typed frame; columns the test leaves out are null."""
    return pl.DataFrame(
        {c.name: [account.get(c.name)] for c in rules.inputs},
        schema={c.name: POLARS_TYPES[c.type] for c in rules.inputs},
    )


def run_rule_tests(rules: m.RuleSet) -> list[RuleTestResult]:
    results = []
    for t in rules.tests:
        out = categorize(rules, account_frame(rules, dict(t.account)), t.as_of, explain=True)
        results.append(RuleTestResult(t, out["category"][0], out["reason"][0]))
    return results
