"""Every rule-file mistake is reported as one line `PATH:LINE:COL: message` that points at the mistake
and says what to write instead; all mistakes of a file come out in one run, and no file, however
broken, produces a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kare_rules.errors import RuleFileError
from kare_rules.loader import check_rules, load_rules
from kare_rules.schema import did_you_mean

# A valid rule file. The mutations below replace one snippet of it; the expected location is the
# position (line:column, 1-based) of a marker in the mutated text, so each case states what it points at.
VALID = """\
format: kare/v1
organization: acme
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  account_owner: {type: string, nullable: true}
  sector: {type: string}
  revenue_musd: {type: float, nullable: true}
  seats: {type: integer}
  is_customer: {type: boolean}
  churned_on: {type: date, nullable: true}
derived:
  days_since_churn: {days_since: churned_on}
traits:
  paying: {is_customer: true}
  big: {revenue_musd: {gte: 10}}
  churned_lately: {days_since_churn: {lte: 365}}
precedence: [exit, keep, recapture, attain]
exit:
  when: {all: [paying, {sector: other}]}
  actions:
    - {id: exit-review, title: Review the account, due_in_days: 14, priority: high, owner: account_owner}
profiles:
  keep:
    when: {all: [paying, big]}
    actions:
      - {id: renew, title: Confirm renewal, due_in_days: 30}
  recapture:
    when: {all: [{not: paying}, churned_lately]}
  attain:
    when: {all: [{not: paying}, {seats: {gte: 5}}]}
tests:
  - name: big paying is keep
    account: {account_id: T1, is_customer: true, revenue_musd: 20, sector: retail, seats: 3}
    as_of: 2026-11-01
    expect: keep
  - name: prospect with seats is attain
    account: {account_id: T2, is_customer: false, seats: 10}
    as_of: 2026-11-01
    expect: attain
"""

ACTION = "      - {id: renew, title: Confirm renewal, due_in_days: 30}\n"
SHOWN = "rules/acme/kare.yaml"  # how the file is named in messages when run from tmp_path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Messages name files relative to the working directory, as a person typed them.
    monkeypatch.chdir(tmp_path)


def write_rules(root: Path, text: str | bytes, org: str = "acme") -> Path:
    path = root / "rules" / org / "kare.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def mutate(*replacements: tuple[str, str]) -> str:
    text = VALID
    for old, new in replacements:
        assert text.count(old) == 1, f"the snippet {old!r} must occur exactly once in VALID"
        text = text.replace(old, new)
    return text


def at(text: str, marker: str, nth: int = 1) -> str:
    """'LINE:COL' of the nth occurrence of `marker` in `text`."""
    pos = -1
    for _ in range(nth):
        pos = text.index(marker, pos + 1)
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{col}"


def problem_lines(root: Path, text: str | bytes, org: str = "acme") -> list[str]:
    rules, problems = check_rules(write_rules(root, text, org))
    if problems:
        assert rules is None
    return [str(p) for p in problems]


def only_problem(root: Path, text: str | bytes) -> str:
    lines = problem_lines(root, text)
    assert len(lines) == 1, lines
    return lines[0]


def test_the_base_file_is_valid(tmp_path):
    rules = load_rules(write_rules(tmp_path, VALID))
    assert rules.organization == "acme"
    assert set(rules.categories) == {"exit", "keep", "recapture", "attain"}


# ---- semantic checks, one mistake each ---------------------------------------------------------

SEMANTIC_CASES = [
    pytest.param(
        [("big: {revenue_musd: {gte: 10}}", "big: {revenue_usd: {gte: 10}}")],
        "revenue_usd",
        ["unknown column 'revenue_usd'; did you mean 'revenue_musd'?"],
        id="unknown-column-did-you-mean",
    ),
    pytest.param(
        [("{all: [{not: paying}, {seats: {gte: 5}}]}", "{all: [{not: paying}, {employees: {gte: 5}}]}")],
        "employees",
        ["unknown column 'employees'", "declare it under 'inputs:' or 'derived:'", "known columns:", "seats"],
        id="unknown-column-without-close-match-lists-known-columns",
    ),
    pytest.param(
        [("when: {all: [paying, big]}", "when: {all: [paying, bigg]}")],
        "bigg",
        ["unknown trait 'bigg'; did you mean 'big'?"],
        id="unknown-trait-did-you-mean",
    ),
    pytest.param(
        [("when: {all: [paying, big]}", "when: {all: [paying, seats]}")],
        "seats]",
        ["unknown trait 'seats'", "'seats' is a column: write a predicate such as {seats: true}"],
        id="column-used-as-trait",
    ),
    pytest.param(
        [("{sector: other}", "{sector: {gte: 5}}")],
        "gte: 5",
        ["'gte' needs a number or date column", "'sector' is string", "use eq, ne, in or not_in"],
        id="ordering-operator-on-string-column",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {gte: five}}")],
        "five",
        ["'seats' is an integer column; write a number, not 'five'"],
        id="string-for-integer",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {gte: 2026-01-01}}")],
        "2026-01-01",
        ["'seats' is an integer column; write a number, not 2026-01-01"],
        id="date-for-integer-shown-as-written",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{churned_on: {gte: true}}")],
        "true}}",
        ["'churned_on' is a date column; write a date as YYYY-MM-DD, not true"],
        id="boolean-for-date-shown-as-written",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {gte: 5.5}}")],
        "5.5",
        ["'seats' is an integer column; write a whole number, not 5.5"],
        id="fraction-for-integer",
    ),
    pytest.param(
        [("{sector: other}", "{sector: 5}")],
        "5}]}",
        ["'sector' is a string column; quote the value: '5'"],
        id="number-for-string",
    ),
    pytest.param(
        [("paying: {is_customer: true}", "paying: {is_customer: 'yes'}")],
        "'yes'",
        ["'is_customer' is boolean: compare it with true or false, not 'yes'"],
        id="text-for-boolean",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{churned_on: {gte: soon}}")],
        "soon",
        ["'churned_on' is a date column; write a date as YYYY-MM-DD, not 'soon'"],
        id="text-for-date",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {in: 5}}")],
        "5}}]}",
        ["'in' takes a list", "{in: [a, b]}"],
        id="in-without-a-list",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {not_in: []}}")],
        "[]}}",
        ["'not_in' takes a non-empty list, e.g. seats: {not_in: [a, b]}"],
        id="in-with-an-empty-list",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {between: []}}")],
        "[]}}",
        ["'between' takes [low, high] (two values, both included); got 0"],
        id="between-with-an-empty-list",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {between: [9, 1]}}")],
        "[9, 1]",
        ["between [9, 1] is empty: write the low value first"],
        id="between-reversed",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {gtee: 5}}")],
        "gtee",
        ["unknown operator 'gtee'; did you mean 'gte'?", "Operators: eq, ne"],
        id="unknown-operator",
    ),
    pytest.param(
        [
            ("paying: {is_customer: true}", "paying: {all: [big, {is_customer: true}]}"),
            ("big: {revenue_musd: {gte: 10}}", "big: {all: [paying, {revenue_musd: {gte: 10}}]}"),
        ],
        "big: {all",
        ["traits refer to each other in a cycle: paying → big → paying; break the cycle"],
        id="trait-cycle-of-two",
    ),
    pytest.param(
        [("paying: {is_customer: true}", "paying: {any: [paying, {is_customer: true}]}")],
        "paying: {any",
        ["traits refer to each other in a cycle: paying → paying"],
        id="trait-refers-to-itself",
    ),
    pytest.param(
        [
            (
                "      - {id: renew, title: Confirm renewal, due_in_days: 30}\n",
                "      - {id: renew, title: Confirm renewal, due_in_days: 30}\n"
                "      - {id: renew, title: Renew again, due_in_days: 5}\n",
            )
        ],
        "renew, title: Renew again",
        ["duplicate action id 'renew' in keep (first at item 1); give each action its own id"],
        id="duplicate-action-id",
    ),
    pytest.param(
        [("paying: {is_customer: true}", "paying: {is_customer: true, seats: 3}")],
        "{is_customer: true, seats",
        ["a condition has exactly one key, this one has 2 (is_customer, seats)", "{all: [...]} or {any: [...]}"],
        id="condition-with-two-keys",
    ),
    pytest.param(
        [("paying: {is_customer: true}", "paying: {}")],
        "{}",
        ["an empty condition {}", "write a trait name"],
        id="condition-with-no-key",
    ),
    pytest.param(
        [("{seats: {gte: 5}}", "{seats: {gte: 5, lte: 9}}")],
        "{gte: 5, lte",
        ["a predicate has exactly one operator, this one has 2", "{between: [low, high]}"],
        id="predicate-with-two-operators",
    ),
    pytest.param(
        [("owner: account_owner", "owner: acount_owner")],
        "acount_owner",
        ["owner column 'acount_owner' is not an input; did you mean 'account_owner'? 'owner' names the input column"],
        id="owner-column-does-not-exist",
    ),
    pytest.param(
        [("organization: acme", "organization: acme-corp")],
        "acme-corp",
        [
            "organization 'acme-corp' must equal its directory name 'acme'",
            "write 'organization: acme' or move the file to rules/acme-corp/kare.yaml",
        ],
        id="organization-not-its-directory",
    ),
    pytest.param(
        [("organization: acme", "organization: Acme_Corp")],
        "Acme_Corp",
        ["organization: 'Acme_Corp' is not valid", "lowercase letters, digits and '-'"],
        id="organization-not-a-safe-slug",
    ),
    pytest.param(
        [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, recapture, attain, kepe]")],
        "kepe",
        ["unknown category 'kepe' in precedence; did you mean 'keep'?", "Categories: exit, expand, keep"],
        id="precedence-unknown-category",
    ),
    pytest.param(
        [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, recapture, attain, keep]")],
        "keep]",
        ["'keep' appears twice in precedence; keep one"],
        id="precedence-repeated-category",
    ),
    pytest.param(
        [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, recapture, attain, unassigned]")],
        "unassigned]",
        ["'unassigned' is not written in precedence: it is what an account gets when no category", "remove it"],
        id="precedence-names-unassigned",
    ),
    pytest.param(
        [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, expand, keep, recapture, attain]")],
        "expand",
        ["'expand' is in precedence but not defined; define it or remove it"],
        id="precedence-names-undefined-category",
    ),
    pytest.param(
        [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, attain]")],
        "[exit, keep, attain]",
        ["category 'recapture' is defined but missing from precedence, so it could never match; add it"],
        id="precedence-misses-a-defined-category",
    ),
    pytest.param(
        [("expect: attain", "expect: atain")],
        "atain",
        ["expect 'atain' is not a category; did you mean 'attain'?", "Write one of: exit, expand, keep"],
        id="test-expect-not-a-category",
    ),
    pytest.param(
        [("expect: attain", "expect: expand")],
        "expand",
        [
            "expect 'expand', a category these rules do not define; "
            "write one of: exit, keep, recapture, attain, unassigned"
        ],
        id="test-expect-undefined-category",
    ),
    pytest.param(
        [
            (
                "tests:\n",
                "transitions:\n  - {from: expand, to: keep, actions: [{id: t, title: T, due_in_days: 1}]}\ntests:\n",
            )
        ],
        "expand",
        [
            "transition from 'expand', a category these rules do not define; "
            "write one of: exit, keep, recapture, attain, unassigned, new"
        ],
        id="transition-from-undefined-category",
    ),
    pytest.param(
        [
            (
                "tests:\n",
                "transitions:\n  - {from: keep, to: new, actions: [{id: t, title: T, due_in_days: 1}]}\ntests:\n",
            )
        ],
        "new, actions",
        [
            "transition to 'new', 'new' is only a from (an account not seen in the previous run); "
            "write one of: exit, keep, recapture, attain, unassigned"
        ],
        id="transition-to-new",
    ),
    pytest.param(
        [
            (
                "tests:\n",
                "transitions:\n  - {from: new, to: keep, actions: [{id: renew, title: Welcome, due_in_days: 5}]}\n"
                "tests:\n",
            )
        ],
        "renew, title: Welcome",
        ["action id 'renew' is already an action of keep", "e.g. 'renew-from-new'"],
        id="transition-action-id-clashes-with-its-to-category",
    ),
    pytest.param(
        [("{account_id: T2, is_customer: false, seats: 10}", "{account_id: T2, is_customer: false, seets: 10}")],
        "seets",
        ["unknown column 'seets' in test account; did you mean 'seats'?"],
        id="test-account-unknown-column",
    ),
    pytest.param(
        [("{account_id: T2, is_customer: false, seats: 10}", "{account_id: T2, is_customer: false, seats: ten}")],
        "ten",
        ["'seats' is an integer column; write a number, not 'ten'"],
        id="test-account-value-of-wrong-type",
    ),
    pytest.param(
        [("{account_id: T2, is_customer: false, seats: 10}", "{account_id: T2, days_since_churn: 3}")],
        "days_since_churn: 3",
        ["unknown column 'days_since_churn' in test account; 'days_since_churn' is derived: give its input instead"],
        id="test-account-names-derived-column",
    ),
]


@pytest.mark.parametrize(("replacements", "marker", "fragments"), SEMANTIC_CASES)
def test_semantic_mistake_is_one_located_line_with_a_fix(tmp_path, replacements, marker, fragments):
    text = mutate(*replacements)
    line = only_problem(tmp_path, text)
    assert line.startswith(f"{SHOWN}:{at(text, marker)}: "), line
    for fragment in fragments:
        assert fragment in line
    assert "\n" not in line


def test_the_issue_example_message_is_exact(tmp_path):
    text = mutate(("big: {revenue_musd: {gte: 10}}", "big: {revenue_usd: {gte: 10}}"))
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:16:9: unknown column 'revenue_usd'; did you mean 'revenue_musd'?"
    ]


def test_an_input_of_unknown_type_is_reported_once_not_again_in_every_test_account(tmp_path):
    # `seats` has a type the schema rejects; the test accounts that name it must not add
    # a second, misleading "unknown column ... is derived" problem.
    text = mutate(("seats: {type: integer}", "seats: {type: int}"))
    lines = problem_lines(tmp_path, text)
    assert lines == [
        f"{SHOWN}:{at(text, 'int}')}: inputs.seats.type: 'int' is not allowed; did you mean 'integer'? "
        "Write one of: string, integer, float, boolean, date, datetime"
    ]


def test_a_key_column_of_unknown_type_is_not_also_a_missing_key_pointing_at_another_column(tmp_path):
    # `{type: str, key: true}`: the schema names the type; 'no input column has key: true; e.g.
    # account_owner: {type: string, key: true}' told the author to make another column the key.
    text = mutate(("account_id: {type: string, key: true}", "account_id: {type: str, key: true}"))
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:{at(text, 'str,')}: inputs.account_id.type: 'str' is not allowed; did you mean 'string'? "
        "Write one of: string, integer, float, boolean, date, datetime"
    ]
    # With every column well formed, a missing key is still said.
    text = mutate(("account_id: {type: string, key: true}", "account_id: {type: string}"))
    assert any("no input column has 'key: true'" in line for line in problem_lines(tmp_path, text))


# ---- JSON Schema errors -------------------------------------------------------------------------

SCHEMA_CASES = [
    pytest.param(
        [("version: 1.0.0\n", "version: 1.0.0\ndescripton: Acme profiles\n")],
        "descripton",
        ["unknown key 'descripton' in the top level; did you mean 'description'?"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        [("revenue_musd: {type: float, nullable: true}", "revenue_musd: {type: float, nulable: true}")],
        "nulable",
        ["unknown key 'nulable' in inputs.revenue_musd; did you mean 'nullable'?"],
        id="unknown-key-in-an-input",
    ),
    pytest.param(
        [("  recapture:\n", "  recaptur:\n"), ("[exit, keep, recapture, attain]", "[exit, keep, attain]")],
        "recaptur:",
        ["unknown key 'recaptur' in profiles; did you mean 'recapture'?"],
        id="unknown-profile",
    ),
    pytest.param(
        [("seats: {type: integer}", "seats: {type: int}")],
        "int}",
        ["inputs.seats.type: 'int' is not allowed; did you mean 'integer'?", "string, integer, float"],
        id="wrong-enum-column-type",
    ),
    pytest.param(
        [("format: kare/v1", "format: kare/v2")],
        "kare/v2",
        ["format: 'kare/v2' is not allowed; did you mean 'kare/v1'?"],
        id="wrong-format",
    ),
    pytest.param(
        [("version: 1.0.0", "version: '1.0'")],
        "'1.0'",
        ["version: '1.0' is not valid", "write a semantic version such as '1.4.0'"],
        id="version-not-semver",
    ),
    pytest.param(
        [("version: 1.0.0", "version: 1.0")],
        "1.0\n",
        ["version must be text, not a number", "quote it so YAML keeps it a string"],
        id="version-read-as-a-number",
    ),
    pytest.param(
        [("due_in_days: 30}", "due_in_days: -1}")],
        "-1",
        ["profiles.keep.actions.0.due_in_days must be at least 0, not -1"],
        id="due-in-days-negative",
    ),
    pytest.param(
        [("priority: high", "priority: urgent")],
        "urgent",
        ["exit.actions.0.priority: 'urgent' is not allowed; write one of: high, medium, low"],
        id="priority-not-in-enum",
    ),
    pytest.param(
        [("format: kare/v1\n", "")],
        "organization",
        ["missing required key 'format' in the top level; add it"],
        id="missing-required-key",
    ),
]


@pytest.mark.parametrize(("replacements", "marker", "fragments"), SCHEMA_CASES)
def test_schema_error_is_one_located_line_with_a_fix(tmp_path, replacements, marker, fragments):
    text = mutate(*replacements)
    line = only_problem(tmp_path, text)
    assert line.startswith(f"{SHOWN}:{at(text, marker)}: "), line
    for fragment in fragments:
        assert fragment in line


def test_each_unknown_key_gets_its_own_line_at_the_key(tmp_path):
    text = mutate(("version: 1.0.0\n", "version: 1.0.0\ndescripton: x\nownrs: [a]\n"))
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:4:1: unknown key 'descripton' in the top level; did you mean 'description'?",
        f"{SHOWN}:5:1: unknown key 'ownrs' in the top level; did you mean 'owners'?",
    ]


@pytest.mark.parametrize(
    ("old", "new", "nth", "message"),
    [
        # exit's actions written at the top level: not 'did you mean transitions?'
        (
            "  actions:\n    - {id: exit-review",
            "actions:\n    - {id: exit-review",
            1,
            "unknown key 'actions' in the top level; it is a key of 'exit' above it: indent it under 'exit'",
        ),
        # keep's actions two spaces short: not 'did you mean attain?'
        (
            "    actions:\n      - {id: renew",
            "  actions:\n      - {id: renew",
            2,
            "unknown key 'actions' in profiles; it is a key of 'keep' above it: indent it under 'keep'",
        ),
    ],
)
def test_a_key_indented_too_little_says_which_mapping_it_belongs_to(tmp_path, old, new, nth, message):
    text = mutate((old, new))
    line = next(p for p in problem_lines(tmp_path, text) if "unknown key" in p)
    assert line == f"{SHOWN}:{at(text, 'actions:', nth)}: {message}"  # exit's actions come first


def test_an_unknown_key_in_an_action_points_at_the_key(tmp_path):
    text = mutate(("{id: renew, title: Confirm renewal,", "{id: renew, titel: Confirm renewal,"))
    lines = problem_lines(tmp_path, text)
    assert f"{SHOWN}:{at(text, 'titel')}: unknown key 'titel' in profiles.keep.actions.0; did you mean 'title'?" in (
        lines
    )
    assert f"{SHOWN}:{at(text, '{id: renew')}: missing required key 'title' in profiles.keep.actions.0; add it" in (
        lines
    )


# ---- many mistakes, one run ---------------------------------------------------------------------


def test_several_mistakes_in_one_file_are_all_reported_in_one_run_in_file_order(tmp_path):
    text = mutate(
        ("version: 1.0.0", "version: '1.0'"),
        ("big: {revenue_musd: {gte: 10}}", "big: {revenue_usd: {gte: 10}}"),
        ("{sector: other}", "{sector: {gte: 5}}"),
        ("priority: high", "priority: urgent"),
        (ACTION, ACTION + "      - {id: renew, title: Again, due_in_days: 1}\n"),
        ("expect: attain", "expect: atain"),
    )  # fmt: skip
    lines = problem_lines(tmp_path, text)
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{SHOWN}:{at(text, chr(39) + '1.0' + chr(39))}",
        f"{SHOWN}:{at(text, 'revenue_usd')}",
        f"{SHOWN}:{at(text, 'gte: 5')}",
        f"{SHOWN}:{at(text, 'urgent')}",
        f"{SHOWN}:{at(text, 'renew, title: Again')}",
        f"{SHOWN}:{at(text, 'atain')}",
    ]
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path / "rules" / "acme" / "kare.yaml")
    assert [str(p) for p in info.value.problems] == lines
    assert str(info.value) == "\n".join(lines)


# ---- files that are not rule files at all -------------------------------------------------------

BROKEN_FILES = [
    pytest.param(b"", "1:1", "the file is empty; it should start with 'format: kare/v1'", id="empty"),
    pytest.param(b"# only a comment\n\n", "1:1", "the file is empty", id="only-comments"),
    pytest.param(
        b"format: kare/v1\norganization: [acme\n",
        "3:1",
        "YAML syntax error: did not find expected ',' or ']'",
        id="unclosed-bracket",
    ),
    pytest.param(
        b"format: kare/v1\n\torganization: acme\n",
        "2:1",
        "YAML syntax error: found a tab character that violates indentation; YAML indents with spaces, not tabs",
        id="tab-indentation",
    ),
    pytest.param(
        # inside a mapping PyYAML does not name the tab; the hint must, not "check ... colons and quotes"
        b"format: kare/v1\ninputs:\n  a: {type: string}\n\tb: {type: string}\n",
        "4:1",
        "YAML syntax error: found character that cannot start any token; YAML indents with spaces, not tabs: "
        "replace the tab with spaces",
        id="tab-indentation-inside-a-mapping",
    ),
    pytest.param(
        b"- format: kare/v1\n- organization: acme\n",
        "1:1",
        "a rule file is a mapping (format:, organization:, inputs:, ...), not a list or value",
        id="a-list",
    ),
    pytest.param(b"just some words\n", "1:1", "a rule file is a mapping", id="a-plain-value"),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "1:1",
        "this is a binary file, not YAML text",
        id="binary",
    ),
    pytest.param(
        b"format: kare/v1\norganization: caf\xe9\n",
        "2:1",
        "the file is not UTF-8 text; save it as UTF-8",
        id="latin-1",
    ),
]


@pytest.mark.parametrize(("content", "where", "message"), BROKEN_FILES)
def test_a_broken_file_gives_one_clear_line_and_no_exception(tmp_path, content, where, message):
    line = only_problem(tmp_path, content)
    assert line.startswith(f"{SHOWN}:{where}: "), line
    assert message in line
    assert "\n" not in line
    assert "Traceback" not in line


def test_a_missing_path_is_one_clear_line(tmp_path):
    rules, problems = check_rules(tmp_path / "rules" / "nowhere" / "kare.yaml")
    assert rules is None
    assert [str(p) for p in problems] == [
        "rules/nowhere/kare.yaml:1:1: cannot read the file: No such file or directory"
    ]


def test_a_directory_without_a_rule_file_names_the_file_it_looked_for(tmp_path):
    (tmp_path / "rules" / "empty-org").mkdir(parents=True)
    _, problems = check_rules(tmp_path / "rules" / "empty-org")
    assert [str(p) for p in problems] == [
        "rules/empty-org/kare.yaml:1:1: cannot read the file: No such file or directory"
    ]


def test_load_rules_raises_a_rule_file_error_not_a_yaml_error(tmp_path):
    path = write_rules(tmp_path, b"format: [kare\n")
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    assert len(info.value.problems) == 1
    assert str(info.value).startswith(f"{SHOWN}:2:1: YAML syntax error")


def test_a_brace_left_open_is_named_where_it_was_opened_not_only_where_the_parser_stopped(tmp_path):
    # The parser stops at the next line that cannot continue the {...}, a line with nothing wrong: the
    # author must be told which '{' lacks its '}'.
    text = mutate(("  big: {revenue_musd: {gte: 10}}\n", "  big: {revenue_musd: {gte: 10}\n\n"))
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:18:3: YAML syntax error: did not find expected ',' or '}}'; the '{{' at line 16, column 8 is not "
        "closed before here: add its '}', or quote text holding ': ' or ','"
    )


@pytest.mark.parametrize(
    ("old", "new", "where", "columns"),
    [
        # keep's `when:` one space too deep: the parser stops at `actions:`, which is right
        ("    when: {all: [paying, big]}\n", "     when: {all: [paying, big]}\n", "26:5", (5, 25, 6)),
        # keep's `when:` two spaces too shallow: the parser stops at the line after it
        ("    when: {all: [paying, big]}\n", "  when: {all: [paying, big]}\n", "26:5", (5, 25, 3)),
        # a test's key one space short
        ("    as_of: 2026-11-01\n    expect: attain", "    as_of: 2026-11-01\n   expect: attain", "40:4", (4, 39, 5)),
    ],
)
def test_a_line_indented_unlike_the_line_above_names_both_columns(tmp_path, old, new, where, columns):
    # 'did not find expected key; check indentation, colons and quotes here' pointed at a line that may be
    # right, without saying against what it is misaligned.
    here, above, there = columns
    assert only_problem(tmp_path, mutate((old, new))).startswith(f"{SHOWN}:{where}: YAML syntax error: ")
    assert only_problem(tmp_path, mutate((old, new))).endswith(
        f"; this line starts in column {here} and line {above} above it in column {there}: the keys of one mapping "
        "(and the '-' of one list) start in the same column; indent the one that is off with spaces"
    )


def test_a_syntax_error_inside_one_line_keeps_the_plain_hint(tmp_path):
    text = mutate(("{id: renew, title: Confirm renewal,", "{id: renew, title: Confirm: renewal,"))
    assert only_problem(tmp_path, text).endswith(
        "YAML syntax error: did not find expected ',' or '}'; check indentation, colons and quotes here"
    )


def test_a_duplicate_yaml_key_is_located_at_the_second_key(tmp_path):
    text = mutate(("version: 1.0.0\n", "version: 1.0.0\nversion: 1.1.0\n"))
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:4:1: duplicate key 'version'; each key may appear once in a mapping"
    ]


def test_a_null_or_date_key_is_named_as_written_not_called_a_list_or_mapping(tmp_path):
    # YAML reads `~:` as a null and `2026-01-01:` as a date; neither is a list or a mapping.
    text = mutate(
        ("version: 1.0.0\n", "version: 1.0.0\n~: 1\n"),
        ("sector: retail, seats: 3}", "sector: retail, seats: 3, 2026-01-01: 3}"),
    )
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:4:1: unknown key '~' in the top level; allowed keys: format, organization, version, description, "
        "owners, inputs, derived, traits, precedence, exit, profiles, transitions, watch, tests",
        f"{SHOWN}:{at(text, '2026-01-01: 3')}: unknown column '2026-01-01' in test account",
    ]


# ---- findings of a review, each once a traceback or a misleading line -----------------------------


def test_a_date_that_is_not_on_the_calendar_is_located_not_a_traceback(tmp_path):
    text = mutate(("as_of: 2026-11-01\n    expect: keep", "as_of: 2026-02-30\n    expect: keep"))
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, '2026-02-30')}: '2026-02-30' is not a calendar date; write YYYY-MM-DD"
    )


def test_a_quoted_test_date_that_is_not_a_date_is_reported_once(tmp_path):
    text = mutate(("as_of: 2026-11-01\n    expect: keep", "as_of: '2026-11-31'\n    expect: keep"))
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, chr(39) + '2026-11-31')}: as_of '2026-11-31' is not a date; write YYYY-MM-DD"
    )


def test_a_ratio_with_one_column_says_it_needs_two(tmp_path):
    text = mutate(("days_since_churn: {days_since: churned_on}", "days_since_churn: {ratio: [seats]}"))
    lines = problem_lines(tmp_path, text)
    assert f"{SHOWN}:{at(text, '[seats]')}: derived.days_since_churn.ratio needs at least 2 items, not 1" in lines


def test_an_action_missing_a_key_is_one_problem_not_also_an_unknown_id_in_a_test(tmp_path):
    # A misspelt due_in_days drops the action from the rules; a test expecting it by id is not wrong too.
    text = mutate(
        (
            "{id: renew, title: Confirm renewal, due_in_days: 30}",
            "{id: renew, title: Confirm renewal, due_in_dayz: 30}",
        ),
        ("expect: keep\n", "expect: keep\n    actions: [renew]\n"),
    )
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:{at(text, '{id: renew')}: missing required key 'due_in_days' in profiles.keep.actions.0; add it",
        f"{SHOWN}:{at(text, 'due_in_dayz')}: unknown key 'due_in_dayz' in profiles.keep.actions.0; "
        "did you mean 'due_in_days'?",
    ]


def test_a_wrong_allowed_value_is_not_listed_as_none_in_a_later_message(tmp_path):
    text = mutate(
        ("  sector: {type: string}", "  sector: {type: string, allowed: [retail, 5]}"),
        ("{sector: other}", "{sector: othr}"),
    )
    assert problem_lines(tmp_path, text) == [
        f"{SHOWN}:{at(text, '5]')}: 'sector' is a string column; quote the value: '5'",
        f"{SHOWN}:{at(text, 'othr')}: 'othr' is not an allowed value of 'sector'; allowed: retail",
    ]


def test_a_derived_column_with_two_kinds_says_to_split_it(tmp_path):
    text = mutate(
        (
            "days_since_churn: {days_since: churned_on}",
            "days_since_churn: {days_since: churned_on, days_until: churned_on}",
        )
    )
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, '{days_since: churned_on, ')}: derived.days_since_churn has 2 kinds "
        "(days_since, days_until); a derived column has one: give each its own column"
    )


def test_an_unquoted_no_for_a_string_column_explains_yaml_booleans(tmp_path):
    text = mutate(("{sector: other}", "{sector: no}"))
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, 'no}')}: 'sector' is a string column, but YAML reads an unquoted "
        "yes/no/on/off/true/false as false; quote the text as you mean it, e.g. 'false' or 'no'"
    )


def test_a_value_outside_the_columns_allowed_list_is_a_typo_to_fix(tmp_path):
    text = mutate(
        ("sector: {type: string}", "sector: {type: string, allowed: [retail, other]}"),
        ("{sector: other}", "{sector: {in: [retail, othr]}}"),
    )
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, 'othr')}: 'othr' is not an allowed value of 'sector'; did you mean 'other'? "
        "Allowed: retail, other"
    )


def test_min_above_max_is_reported_at_max(tmp_path):
    text = mutate(("seats: {type: integer}", "seats: {type: integer, min: 10, max: 5}"))
    assert only_problem(tmp_path, text) == f"{SHOWN}:{at(text, '5}')}: max 5 is below min 10: no value could pass"


def test_a_bad_calendar_date_does_not_hide_the_other_problems(tmp_path):
    text = mutate(
        ("as_of: 2026-11-01\n    expect: keep", "as_of: 2026-13-01\n    expect: keep"),
        ("seats: {type: integer}", "seats: {type: int}"),
        ("priority: high", "priority: urgent"),
    )
    lines = problem_lines(tmp_path, text)
    assert lines == [
        f"{SHOWN}:{at(text, 'int}')}: inputs.seats.type: 'int' is not allowed; did you mean 'integer'? "
        "Write one of: string, integer, float, boolean, date, datetime",
        f"{SHOWN}:{at(text, 'urgent')}: exit.actions.0.priority: 'urgent' is not allowed; "
        "write one of: high, medium, low",
        f"{SHOWN}:{at(text, '2026-13-01')}: '2026-13-01' is not a calendar date; write YYYY-MM-DD",
    ]


def test_a_quoted_date_that_is_not_on_the_calendar_says_so(tmp_path):
    text = mutate(
        ("churned_lately: {days_since_churn: {lte: 365}}", "churned_lately: {churned_on: {gte: '2026-02-30'}}")
    )
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, chr(39) + '2026-02-30')}: '2026-02-30' is not a calendar date; write YYYY-MM-DD"
    )


def test_a_test_account_or_bound_with_nan_or_inf_is_a_located_error_not_a_number(tmp_path):
    # NaN compares greater than every number in Polars and DuckDB: a test account with .nan passed as 'big'.
    text = VALID.replace("revenue_musd: 20, sector", "revenue_musd: .nan, sector").replace(
        "revenue_musd: {type: float, nullable: true}", "revenue_musd: {type: float, nullable: true, max: .inf}"
    )
    lines = problem_lines(tmp_path, text)
    assert [line.split(": ", 1)[0] for line in lines] == [f"{SHOWN}:8:52", f"{SHOWN}:34:64"]
    assert all("is not a finite number: write a number" in line for line in lines)


@pytest.mark.parametrize("word", ["all", "any", "not"])
def test_an_input_named_like_a_condition_word_is_a_located_error(tmp_path, word):
    # {not: true} is always the combinator: a column named 'not' could never be read by a condition.
    text = VALID.replace("  sector: {type: string}\n", f"  sector: {{type: string}}\n  {word}: {{type: boolean}}\n")
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:8:3: the input column '{word}' has the name of a condition word (all, any, not), so no condition "
        f"could read it; rename it, e.g. 'input_{word}', and rename the data's column to match"
    )


@pytest.mark.parametrize(
    ("field", "written", "message"),
    [
        ("expect", "expect:", "expect is empty; write one of: exit, expand, keep, recapture, attain, unassigned"),
        ("expect", "expect: true", "expect true is not a category; write one of: exit, expand, keep"),
        ("next_category", "next_category: null", "next_category is empty; write one of: exit, keep, recapture"),
        ("matched_rule", "matched_rule:", "matched_rule is empty; write one of: exit, profiles.keep"),
        ("next_move_on", "next_move_on: 2026-11-05T10:00:00", "next_move_on 2026-11-05 10:00:00 is not a date;"),
        ("next_move_on", "next_move_on: ~", "next_move_on is empty; write YYYY-MM-DD"),
        ("as_of", "as_of:", "as_of is empty; write YYYY-MM-DD"),
    ],
)
def test_a_test_field_left_empty_or_of_the_wrong_kind_is_named_as_written_not_as_python_shows_it(
    tmp_path, field, written, message
):
    # An author who left `expect:` or `next_category:` empty read "expect None is not a category",
    # and a date-time next_move_on came out as datetime.datetime(2026, 11, 5, 10, 0).
    line = {"expect": "    expect: keep\n", "as_of": "    as_of: 2026-11-01\n    expect: keep\n"}.get(
        field, "    expect: keep\n"
    )
    new = {
        "expect": f"    {written}\n",
        "as_of": f"    {written}\n    expect: keep\n",
    }.get(field, f"    expect: keep\n    {written}\n")
    text = mutate((line, new))
    problem = only_problem(tmp_path, text)
    where, said = problem.split(": ", 1)
    assert where.startswith(f"{SHOWN}:{at(text, written).split(':')[0]}:")  # located on its line
    assert said.startswith(message) and "None" not in said and "datetime" not in said, problem


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        (
            "priority: high, owner",
            "priority: , owner",
            "priority: ,",
            "exit.actions.0.priority is empty; write one of: high",
        ),
        (
            "priority: high, owner",
            "priority: yes, owner",
            "yes",
            "exit.actions.0.priority: true is not allowed; write one",
        ),
        ("is_customer: {type: boolean}", "is_customer: {type: }", "type: }", "inputs.is_customer.type is empty; write"),
        ("[exit, keep, recapture, attain]", "[exit, keep, recapture, attain, ~]", "~", "unknown category null in"),
    ],
)
def test_a_value_left_empty_is_called_empty_or_null_not_none(tmp_path, old, new, marker, message):
    # A key left empty read 'None is not allowed' (the schema's enums) and 'unknown category None'.
    text = mutate((old, new))
    problem = only_problem(tmp_path, text)
    where, said = problem.split(": ", 1)
    assert where.split(":")[1] == at(text, marker).split(":")[0]
    assert said.startswith(message) and "None" not in said and "True" not in said, problem


def test_a_watch_amount_left_empty_says_so(tmp_path):
    text = mutate(
        (
            "tests:",
            "watch:\n  - {id: w, from: attain, within: {seats: }, actions: [{id: a, title: A, due_in_days: 1}]}\n"
            "tests:",
        )
    )
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, '}, actions')}: the amount for 'seats' is empty; write a positive amount such as "
        "{seats: 14} or a share of the current value such as {seats: 10%}"
    )


def test_a_date_outside_a_date_column_s_allowed_list_is_written_as_a_date(tmp_path):
    # It read "datetime.date(2026, 3, 1) is not an allowed value of 'renewal'".
    text = mutate(
        ("  churned_on: {type: date, nullable: true}\n", "  churned_on: {type: date, allowed: [2026-01-01]}\n"),
        ("{sector: other}", "{churned_on: 2026-03-01}"),
    )
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, '2026-03-01')}: 2026-03-01 is not an allowed value of 'churned_on'; allowed: 2026-01-01"
    )


def test_a_hash_in_an_unquoted_title_is_named_as_the_comment_that_cut_the_line(tmp_path):
    # 'title: Confirm renewal #2' makes ' #2, ...}' a comment: the message blamed a '{' left open and said
    # to quote text holding ': ' or ',', neither of which the line has.
    text = mutate(("title: Confirm renewal,", "title: Don't forget renewal #2,"))
    line, col = at(text, "#2").split(":")
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{int(line) + 1}:3: YAML syntax error: did not find expected ',' or '}}'; the '#' at line {line}, "
        f"column {col} starts a comment, so the rest of that line, with its '}}', is not read and the '{{' at "
        f"line {line}, column {at(text, '{id: renew').split(':')[1]} is not closed: quote the text holding '#', "
        'e.g. title: "Call #2"'
    )
    # A comment ending a line inside a {...} is allowed; a brace left open after it is still named as before.
    text = mutate(("  big: {revenue_musd: {gte: 10}}\n", "  big: {revenue_musd:   # in millions\n    {gte: 10}\n\n"))
    assert "is not closed before here: add its '}'" in only_problem(tmp_path, text)


@pytest.mark.parametrize(("word", "instead"), [("and", "all"), ("OR", "any")])
def test_and_or_as_sql_writes_them_point_to_all_and_any(tmp_path, word, instead):
    # {and: [...]} read "unknown column 'and'; declare it under 'inputs:' or 'derived:' (known columns: ...)".
    text = mutate(("when: {all: [paying, big]}", f"when: {{{word}: [paying, big]}}"))
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, word + ':')}: unknown column '{word}'; conditions are combined with "
        f"{{{instead}: [...]}}: write '{instead}' for '{word}'"
    )


@pytest.mark.parametrize(
    ("written", "instead"),
    [
        ("{seats: {'>=': 5}}", "{seats: {gte: 5}}"),
        ("{seats: {'<>': 5}}", "{seats: {ne: 5}}"),
        ("{seats: {nin: [5]}}", "{seats: {not_in: ...}}"),  # the spelling suggestion said 'in'
        ("{seats: {not_null: true}}", "{seats: {is_null: false}}"),  # ... and 'not_in'
    ],
)
def test_an_operator_as_sql_or_mongodb_writes_it_gets_the_rule_file_s_own(tmp_path, written, instead):
    text = mutate(("{seats: {gte: 5}}", written))
    key = written.split("{")[2].split(":")[0]  # the operator as written, quotes included
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, key + ':')}: unknown operator '{key.strip(chr(39))}'; write {instead}; operators: "
        "eq, ne, gt, gte, lt, lte, in, not_in, between, is_null"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("seats: {type: integer}", "seats: {type: integer, min: }", "inputs.seats.min must be number or string"),
        ("sector: {type: string}", "sector: {type: string, allowed: [other, ~]}", "inputs.sector.allowed.1 must be"),
    ],
)
def test_a_bound_or_allowed_value_left_empty_is_one_message_not_two(tmp_path, old, new, message):
    # Each gave the schema's line and a second one at the same place, 'a value is required here, not null'.
    lines = problem_lines(tmp_path, mutate((old, new)))
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize(
    ("replacements", "later", "earlier", "marker"),
    [
        # exit after a keep that every paying account meets: no account could ever be exit
        (
            [("precedence: [exit, keep, recapture, attain]", "precedence: [keep, exit, recapture, attain]"),
             ("    when: {all: [paying, big]}", "    when: paying")],
            "exit", "keep", "{all: [paying, {sector: other}]}",
        ),
        # expand written after keep, its `all` holding keep's whole condition and one more
        (
            [("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, expand, recapture, attain]"),
             ("  recapture:\n", "  expand:\n    when: {all: [big, {seats: {gte: 100}}, paying]}\n  recapture:\n")],
            "expand", "keep", "{all: [big, {seats: {gte: 100}}, paying]}",
        ),
        # the same through a trait that names the earlier condition
        (
            [("  churned_lately:", "  paying_big: {all: [paying, big]}\n  churned_lately:"),
             ("precedence: [exit, keep, recapture, attain]", "precedence: [exit, keep, expand, recapture, attain]"),
             ("  recapture:\n", "  expand:\n    when: {all: [paying_big, {seats: {gte: 100}}]}\n  recapture:\n")],
            "expand", "keep", "{all: [paying_big, {seats: {gte: 100}}]}",
        ),
    ],
)  # fmt: skip
def test_a_category_whose_condition_implies_an_earlier_ones_can_never_be_chosen(
    tmp_path, replacements, later, earlier, marker
):
    text = mutate(*replacements)
    assert only_problem(tmp_path, text) == (
        f"{SHOWN}:{at(text, marker)}: '{later}' can never be chosen: every account its condition holds for also "
        f"meets '{earlier}', which comes before it in precedence; put '{later}' before '{earlier}' in precedence "
        "(the narrower category first), or narrow the condition"
    )


def test_categories_that_only_overlap_or_come_narrow_first_are_valid(tmp_path):
    """Overlapping is not shadowing: expand before keep, and keep beside recapture, stay valid."""
    text = mutate(
        ("precedence: [exit, keep, recapture, attain]", "precedence: [exit, expand, keep, recapture, attain]"),
        ("  recapture:\n", "  expand:\n    when: {all: [paying, big, {seats: {gte: 100}}]}\n  recapture:\n"),
        ("    when: {all: [{not: paying}, {seats: {gte: 5}}]}", "    when: {any: [{not: paying}, big]}"),
    )
    assert problem_lines(tmp_path, text) == []


@pytest.mark.parametrize(
    ("word", "names", "suggested"),
    [
        ("account_owner", ["account_id", "owner", "arr"], "owner"),  # letter by letter, account_id is closer
        ("arr_usd", ["arr", "seats"], "arr"),
        ("last_login", ["last_login_date", "churned_on"], "last_login_date"),
        ("account", ["account_id", "account_owner"], "account_id"),  # two such names: the closest letter by letter
        ("wen", ["when", "id"], "when"),
    ],
)
def test_a_name_made_of_another_name_s_words_is_suggested_before_one_closer_letter_by_letter(word, names, suggested):
    # An action's `owner: account_owner` beside an input `owner` said "did you mean 'account_id'?".
    assert did_you_mean(word, names) == f"; did you mean '{suggested}'?"
