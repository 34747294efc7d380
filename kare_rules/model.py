"""The typed, immutable rule model: what a rule file means, independent of YAML and of any engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

# Order matters: it is the default precedence (DESIGN §3) and the order of every report.
CATEGORIES: tuple[str, ...] = ("exit", "expand", "keep", "recapture", "attain")
PROFILES: tuple[str, ...] = ("expand", "keep", "recapture", "attain")
UNASSIGNED = "unassigned"
ALL_CATEGORIES: tuple[str, ...] = (*CATEGORIES, UNASSIGNED)

ColumnType = Literal["string", "integer", "float", "boolean", "date", "datetime"]
COLUMN_TYPES: tuple[str, ...] = ("string", "integer", "float", "boolean", "date", "datetime")
NUMERIC_TYPES = frozenset({"integer", "float"})
ORDERED_TYPES = frozenset({"integer", "float", "date", "datetime"})

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "is_null"]
OPS: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "is_null")
OP_SYMBOL = {
    "eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤",
    "in": "in", "not_in": "not in", "between": "between", "is_null": "is null",
}  # fmt: skip

Scalar = str | int | float | bool | dt.date | dt.datetime
Value = Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class InputColumn:
    """One column of the account table contract (`inputs:`)."""

    name: str
    type: ColumnType
    key: bool = False
    nullable: bool = False
    min: float | dt.date | dt.datetime | None = None
    max: float | dt.date | dt.datetime | None = None
    allowed: tuple[Scalar, ...] | None = None
    description: str | None = None


DerivedKind = Literal["days_since", "days_until", "ratio", "change_of", "pct_change_of"]
DATE_KINDS = frozenset({"days_since", "days_until"})  # move by one a day with as_of, data unchanged
TREND_KINDS = frozenset({"change_of", "pct_change_of"})  # against the previous published run


@dataclass(frozen=True)
class Derived:
    """A column computed per run from inputs and the run's `as_of` (never from today).

    `change_of: COL` is COL minus its value in the account's previous published run; `pct_change_of:
    COL` is that change divided by the previous value (0.1 = +10 %). Both are null for an account with
    no previous value (new, or null then) and pct_change_of also when the previous value was 0.
    """

    name: str
    kind: DerivedKind
    args: tuple[str, ...]

    @property
    def type(self) -> ColumnType:
        return "integer" if self.kind in DATE_KINDS else "float"


# ---- conditions: the expression tree every engine compiles --------------------------------------


@dataclass(frozen=True)
class Predicate:
    """`{column: {op: value}}`; on a null column value it is false, except `is_null`."""

    column: str
    op: Op
    value: Value


@dataclass(frozen=True)
class TraitRef:
    """A named, reusable condition from `traits:`."""

    name: str


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Predicate | TraitRef | All | Any_ | Not


# An action is due at most ten years after the run that opens it; a larger number is a typo, and a
# due date past year 9999 cannot be stored at all.
MAX_DUE_IN_DAYS = 3650


@dataclass(frozen=True)
class Action:
    id: str
    title: str
    due_in_days: int
    priority: Literal["high", "medium", "low"] = "medium"
    owner: str | None = None  # an input column holding the owner


@dataclass(frozen=True)
class CategoryRule:
    """The condition and common actions of one category (a profile, or `exit`)."""

    name: str
    when: Condition
    actions: tuple[Action, ...] = ()
    description: str | None = None


@dataclass(frozen=True)
class Transition:
    """Actions fired when an account moves between two categories from one run to the next."""

    from_category: str
    to_category: str
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class WithinAmount:
    """`within: {column: 14}` (absolute) or `{column: 10%}` (share of the current value, 0.10)."""

    column: str
    amount: float
    relative: bool = False


@dataclass(frozen=True)
class Watch:
    """An early warning: accounts in `from_category` about to move (to `to_category`, or anywhere)
    get `actions`. `within_days`: the next move (data unchanged) is at most that many days after as_of.
    `within`: the nearest change of that column that moves the account is at most that amount."""

    id: str
    from_category: str
    actions: tuple[Action, ...]
    to_category: str | None = None
    within_days: int | None = None
    within: tuple[WithinAmount, ...] = ()
    description: str | None = None


DEFAULT_HORIZON_DAYS = 366  # how far ahead next_move_on looks
SOON_DAYS = 30  # "will move soon": what the run summary, the Dagster metadata and kare diff count


@dataclass(frozen=True)
class RuleTest:
    """An embedded example: this account, on this date, must get this category (and, when the test
    says so, this matched rule and exactly these actions)."""

    name: str
    account: tuple[tuple[str, Value], ...]
    as_of: dt.date
    expect: str
    line: int = 0
    path: str = ""  # the file that holds the test: the rule file or one of its tests/*.yaml
    matched_rule: str | None = None  # None: not checked
    actions: tuple[str, ...] | None = None  # action ids, in any order; None: not checked
    previous: tuple[tuple[str, Value], ...] = ()  # the account's values in the previous run (trends)
    next_category: str | None = None  # None: not checked
    next_move_on: dt.date | None = None  # None: not checked (a test expecting no move says next_category: none)


@dataclass(frozen=True)
class RuleSet:
    """One organization's rules, loaded and validated once; everything downstream reads this."""

    organization: str
    version: str
    inputs: tuple[InputColumn, ...]
    derived: tuple[Derived, ...]
    traits: dict[str, Condition]
    precedence: tuple[str, ...]
    categories: dict[str, CategoryRule]  # only those defined, keyed by name
    transitions: tuple[Transition, ...] = ()
    watches: tuple[Watch, ...] = ()
    tests: tuple[RuleTest, ...] = ()
    description: str | None = None
    owners: tuple[str, ...] = ()
    path: str = ""
    digest: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return next(c.name for c in self.inputs if c.key)

    @property
    def columns(self) -> dict[str, ColumnType]:
        """Every column a condition may name: inputs, then derived."""
        out: dict[str, ColumnType] = {c.name: c.type for c in self.inputs}
        out.update({d.name: d.type for d in self.derived})
        return out

    @property
    def trend_columns(self) -> tuple[str, ...]:
        """Input columns whose previous value a trend (`change_of`, `pct_change_of`) reads, in order."""
        out: list[str] = []
        for d in self.derived:
            if d.kind in TREND_KINDS and d.args[0] not in out:
                out.append(d.args[0])
        return tuple(out)

    def input(self, name: str) -> InputColumn:
        return next(c for c in self.inputs if c.name == name)

    @property
    def shown_categories(self) -> tuple[str, ...]:
        """The categories a summary lists: those the rules define, in precedence order, then unassigned (a
        category the rules do not define reads '0' whether or not it could ever hold)."""
        return (*(r.name for r in self.ordered()), UNASSIGNED)

    def ordered(self) -> list[CategoryRule]:
        """The defined categories in precedence order: the first whose `when` holds wins."""
        return [self.categories[c] for c in self.precedence if c in self.categories]
