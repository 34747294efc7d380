"""Rule file → RuleSet: JSON Schema first, then semantic checks; every problem collected and located."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kare_rules import model as m
from kare_rules.digest import rules_digest
from kare_rules.errors import Problem, RuleFileError, display_path
from kare_rules.schema import did_you_mean, name_matches, schema_json, schema_problems
from kare_rules.yamlsource import DocPath, Document, load_document

RULE_FILE_NAMES = ("kare.yaml", "kare.yml")
# \Z, not $: Python's $ also matches before a trailing newline, and 'acme\n' is no organization.
ORG_SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?\Z")
COMBINATORS = ("all", "any", "not")
# Bounds that keep checking and compiling a rule file cheap (docs/rule-format.md, "Limits"): how deep a
# condition may nest, counting the levels inside the traits it names, and how many nodes and listed
# values one category's or trait's condition may have with every trait written out (a trait used twice
# counts twice).
MAX_CONDITION_DEPTH = 64
MAX_CONDITION_NODES = 5_000
MAX_CONDITION_VALUES = 50_000  # in `in` / `not_in` lists: SQL writes each one out
# Names the engine gives its own columns: an input or derived column of that name would collide with
# them. The working columns all start with '_'; these are the ones every result carries.
OUTPUT_COLUMNS = ("category", "matched_rule", "reason", "overlaps",
                  # the early warning's (kare_rules.edges.EDGE_SCHEMA, and the watches that hold)
                  "next_category", "next_move_on", "edge_category", "edge_column", "edge_value", "edge_threshold",
                  "edge_change", "watches")  # fmt: skip
SUGGEST_PROBLEMS, SUGGEST_NAMES = 100, 1000
# The engines hold integers as Int64/BIGINT and floats as Float64/DOUBLE; a literal outside them cannot compile.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# An id of a key column's type, for a message that asks for one ('T1' is no integer).
_EXAMPLE_KEY = {"integer": "1", "float": "1", "date": "2026-01-01", "datetime": "2026-01-01"}
_FLOAT_MAX = 1.7976931348623157e308
# YAML (1.1, as the loader reads it) takes an exponent as a number only with a '.' and a sign: 1.0e+5.
_TEXT_EXPONENT = re.compile(r"([-+]?[0-9]+)(\.[0-9]*)?[eE]([-+]?)([0-9]+)\Z")

# These parts are left to the checks below, which can say more; the schema sees a stand-in it accepts.
_SEMANTIC_PATHS = {
    ("traits",): {}, ("exit", "when"): "t", ("profiles", "*", "when"): "t", ("precedence",): ["keep"],
    ("tests", "*", "account"): {}, ("tests", "*", "expect"): "keep", ("tests", "*", "as_of"): "2026-01-01",
    ("tests", "*", "matched_rule"): "exit", ("tests", "*", "actions"): [], ("tests", "*", "previous"): {},
    ("tests", "*", "next_category"): "keep", ("tests", "*", "next_move_on"): "2026-01-02",
    ("watch", "*", "within"): {},
}  # fmt: skip
# How SQL or JSON Logic combine conditions (and, or), and the rule file's word for each.
_COMBINATOR_WORDS = {"and": "all", "or": "any"}
# Operators as SQL, spreadsheets or MongoDB write them, which the spelling suggestion gets wrong ('nin' is
# nearest to 'in', 'not_null' to 'not_in') or cannot find ('>='): what to write instead.
_OPERATOR_WORDS = {
    ">": "gt", ">=": "gte", "=>": "gte", "<": "lt", "<=": "lte", "=<": "lte", "=": "eq", "==": "eq",
    "!=": "ne", "<>": "ne", "nin": "not_in", "not_null": "is_null", "notnull": "is_null", "is_not_null": "is_null",
}  # fmt: skip
# `within: {column: 10%}`: a share of the column's current value; a plain number is an absolute amount.
_PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*\Z")


def is_safe_org(name: str) -> bool:
    """An organization name that can safely become a directory, partition key or table value."""
    return isinstance(name, str) and ORG_SLUG.match(name) is not None


def load_rules(path: str | Path, any_folder: bool = False) -> m.RuleSet:
    """Load and validate one rule file (or an org directory holding kare.yaml); raise RuleFileError
    carrying every problem found. With `any_folder`, a kare.yaml need not sit in the folder named after its
    organization (a copy of an older version to compare with, as `kare diff --before` reads)."""
    rules, problems = check_rules(path, any_folder)
    if problems or rules is None:
        raise RuleFileError(problems)
    return rules


def check_rules(path: str | Path, any_folder: bool = False) -> tuple[m.RuleSet | None, list[Problem]]:
    """Validate a rule file; the RuleSet when it is valid, and every problem found either way (`any_folder`:
    as `load_rules`)."""
    path = rule_file_in(Path(path))
    misnamed = None
    if path.name in RULE_FILE_NAMES:
        linked = link_problem(path)
        if linked:  # before a byte is read: the file may be another organization's
            return None, [linked]
        misnamed = None if any_folder else dir_name_problem(path)
    rules, problems = _check_file(path, any_folder)
    return (None, sorted({*problems, misnamed})) if misnamed else (rules, problems)


def _check_file(path: Path, any_folder: bool = False) -> tuple[m.RuleSet | None, list[Problem]]:
    doc = load_document(path)
    if doc.data is None:
        return None, doc.problems
    # A file that parsed despite a problem (a duplicate key, a date not on the calendar) is checked on,
    # so every mistake comes out in one run; a later check's line at the same place is left out.
    parsed = list(doc.problems)
    doc.problems.clear()
    rules, problems = _check_document(doc, path, any_folder)
    if not parsed:
        return rules, problems
    seen = {(p.line, p.column) for p in parsed}
    return None, sorted(set(parsed + [p for p in problems if (p.line, p.column) not in seen]))


def _check_document(doc: Document, path: Path, any_folder: bool = False) -> tuple[m.RuleSet | None, list[Problem]]:
    if not isinstance(doc.data, dict):
        return None, [
            doc.problem((), "a rule file is a mapping (format:, organization:, inputs:, ...), not a list or value")
        ]
    checker = _Checker(doc, path, any_folder=any_folder)
    rules = checker.build()
    problems = sorted(set(schema_problems(doc, skip=_SEMANTIC_PATHS) + checker.problems))
    # Extra test files beside the rules: rules/<org>/tests/*.yaml, each holding `tests: [...]`.
    if rules is not None and not problems:
        extra: list[m.RuleTest] = []
        for test_file in sorted(path.parent.glob("tests/*.y*ml")):
            tests, test_problems = check_test_file(test_file, rules)
            extra.extend(tests)
            problems.extend(test_problems)
        if extra:
            rules = _replace_tests(rules, rules.tests + tuple(extra))
    return (None if problems else rules), problems


def load_rules_text(text: str, label: str) -> m.RuleSet:
    """Load rules from text (a stored or git version); `label` stands in for the path in messages."""
    from kare_rules.yamlsource import parse_text

    doc = parse_text(text, label)
    if doc.problems or not isinstance(doc.data, dict):
        raise RuleFileError(doc.problems or [doc.problem((), "not a rule file")])
    checker = _Checker(doc, Path(label))
    rules = checker.build()
    problems = sorted(set(schema_problems(doc, skip=_SEMANTIC_PATHS) + checker.problems))
    if problems or rules is None:
        raise RuleFileError(problems)
    return rules


def rule_file_in(path: Path) -> Path:
    if path.is_dir():
        for name in RULE_FILE_NAMES:
            if (path / name).exists():
                return path / name
        return path / RULE_FILE_NAMES[0]
    return path


def link_problem(rule_file: Path) -> Problem | None:
    """Why an organization's rule file must not even be read, or None. An organization is the directory
    its rule file is reached through, so that directory and the file must be real: through a symbolic
    link, one organization's rules would become another's."""
    rule_file = Path(os.path.abspath(rule_file))
    for link in (rule_file.parent, rule_file):
        if link.is_symlink():
            return Problem(
                display_path(rule_file), 1, 1,
                f"{display_path(link)} is a symbolic link (to {os.readlink(link)}); an organization's rules live in "
                "its own directory: copy them there instead of linking",
            )  # fmt: skip
    return None


def dir_name_problem(rule_file: Path) -> Problem | None:
    """A problem when the directory holding an organization's rule file is not named like one."""
    rule_file = Path(os.path.abspath(rule_file))
    folder = rule_file.parent.name
    if is_safe_org(folder):
        return None
    return Problem(
        display_path(rule_file), 1, 1,
        f"the directory name {folder!r} is not an organization name (lowercase letters, digits and '-', at most "
        "64): an organization is its directory's name; rename the directory",
    )  # fmt: skip


def organizations(rules_dir: str | Path) -> list[str]:
    """The organizations of a rules directory: the directories holding a rule file, each checked by
    link_problem and dir_name_problem and none sharing its rule file with another (a hard link). Those refused are left
    out; organization_problems says why."""
    return _scan_organizations(Path(rules_dir))[0]


def organization_problems(rules_dir: str | Path) -> list[Problem]:
    """Why directories under a rules directory are not organizations (see `organizations`)."""
    return _scan_organizations(Path(rules_dir))[1]


def _scan_organizations(root: Path) -> tuple[list[str], list[Problem]]:
    if not root.is_dir():
        return [], []
    found: dict[tuple[int, int], list[Path]] = {}
    problems = []
    for entry in sorted(root.iterdir()):
        rule_file = next((entry / n for n in RULE_FILE_NAMES if os.path.lexists(entry / n)), None)
        if entry.is_dir() and rule_file is None:
            # (in an organization's own folder, its tests/ is no stray)
            stray = None if any(os.path.lexists(root / n) for n in RULE_FILE_NAMES) else _stray_yaml(entry)
            if stray is not None:
                problems.append(stray)
            continue
        if not entry.is_dir():
            continue
        refused = link_problem(rule_file) or dir_name_problem(rule_file)
        if refused:
            problems.append(refused)
            continue
        try:
            info = rule_file.stat()
        except OSError as exc:
            problems.append(Problem(display_path(rule_file), 1, 1, f"cannot read the file: {exc.strerror}"))
            continue
        found.setdefault((info.st_dev, info.st_ino), []).append(rule_file)
    orgs = []
    for files in found.values():
        if len(files) == 1:
            orgs.append(files[0].parent.name)
            continue
        names = ", ".join(display_path(f) for f in files)
        same = f"{names} are one and the same file (a hard link); each organization needs its own rule file"
        problems.extend(Problem(display_path(f), 1, 1, same) for f in files)
    return sorted(orgs), sorted(problems)


def _stray_yaml(folder: Path) -> Problem | None:
    """A folder of the rules directory with YAML files but no rule file (Kare.yaml, rules.yaml, only an
    overrides.yaml): nothing reads them, so the organization would be skipped by every command in silence."""
    try:
        yaml_files = sorted(
            f for f in [*folder.iterdir(), *(folder / "tests").glob("*")] if f.suffix in (".yaml", ".yml")
        )
    except OSError:
        return None
    if not yaml_files:
        return None
    where = display_path(folder)
    return Problem(
        display_path(yaml_files[0]), 1, 1,
        f"{where} has no kare.yaml, so no command reads this file and {folder.name!r} is no organization: name "
        f"its rule file kare.yaml (or kare.yml), or move the folder out of {display_path(folder.parent)}",
    )  # fmt: skip


def find_rule_files(paths: list[str | Path]) -> list[Path]:
    """Rule files named by the user: files as given, directories searched for */kare.yaml."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            direct = [p / n for n in RULE_FILE_NAMES if (p / n).exists()]
            found.extend(direct or sorted(q for n in RULE_FILE_NAMES for q in p.glob(f"*/{n}")))
        else:
            found.append(_owning_rule_file(p) or p)
    # A file named twice (rules/acme/kare.yaml and rules/acme, or rules and rules/acme) is checked once:
    # its tests would otherwise run and count twice. Not by resolving links: a linked organization
    # (rules/evil -> cloudnine) must still be seen, and refused.
    unique: dict[str, Path] = {}
    for f in found:
        unique.setdefault(os.path.normpath(os.path.abspath(f)), f)
    return list(unique.values())


def _owning_rule_file(path: Path) -> Path | None:
    """The rule file that reads `path` when it is an organization's overrides.yaml or a file of its tests/
    folder: checked on its own it is no rule file (every top-level key 'missing'), while its rule file
    checks it whole, with the inputs and categories it refers to."""
    from kare_rules.overrides import OVERRIDES_FILE

    if path.name == OVERRIDES_FILE:
        folder = path.parent
    elif path.parent.name == "tests" and path.suffix in (".yaml", ".yml"):
        folder = path.parent.parent
    else:
        return None
    return next((folder / n for n in RULE_FILE_NAMES if (folder / n).is_file()), None)


def check_test_file(path: Path, rules: m.RuleSet) -> tuple[list[m.RuleTest], list[Problem]]:
    # Refused as a linked rule file is, before a byte is read: a link in a pull request would read a file
    # from anywhere on the machine checking it (another organization's tests, or the CI runner's files).
    linked = link_problem(path)
    if linked:
        return [], [linked]
    doc = load_document(path, empty="a test file holds one key, 'tests:', with a list of test cases")
    if doc.data is None:
        return [], doc.problems
    # As for the rule file: a file that parsed despite a problem (a date not on the calendar, a duplicate
    # key) is checked on, so every mistake comes out in one run.
    parsed = list(doc.problems)
    doc.problems.clear()
    if not isinstance(doc.data, dict):
        return [], [*parsed, doc.problem((), "a test file holds one key, 'tests:', with a list of test cases")]
    # The schema first, as for the rule file's own tests: a misspelt key gets 'did you mean', a missing one
    # its name.
    shape = schema_problems(doc, skip=_SEMANTIC_PATHS, test_file=True)
    tests: list[m.RuleTest] = []
    checked: list[Problem] = []
    if isinstance(doc.data.get("tests"), list):
        checker = _Checker(doc, path, rules=rules)
        tests = checker.tests(doc.data["tests"], ("tests",))
        checked = checker.problems
    elif not shape:
        shape = [doc.problem((), "a test file holds one key, 'tests:', with a list of test cases")]
    reported = {(p.line, p.column) for p in [*parsed, *shape]}
    problems = sorted({*parsed, *shape, *(p for p in checked if (p.line, p.column) not in reported)})
    return ([] if problems else tests), problems


def _replace_tests(rules: m.RuleSet, tests: tuple[m.RuleTest, ...]) -> m.RuleSet:
    from dataclasses import replace

    return replace(rules, tests=tests)


_IDENTIFIER = schema_json()["$defs"]["identifier"]["pattern"]


class _Checker:
    """Builds the model from a schema-shaped document, noting every semantic problem on the way.

    Malformed structure the JSON Schema already reports is skipped quietly here, so each mistake
    is reported once.
    """

    def __init__(self, doc: Document, path: Path, rules: m.RuleSet | None = None, any_folder: bool = False):
        self.doc = doc
        self.path = path
        self.any_folder = any_folder  # the folder need not be named after the organization (load_rules)
        self.problems: list[Problem] = []
        self.columns: dict[str, str] = dict(rules.columns) if rules else {}
        self.trait_names: set[str] = set(rules.traits) if rules else set()
        self.defined: set[str] = set(rules.categories) if rules else set()
        self.inputs: dict[str, m.InputColumn] = {c.name: c for c in rules.inputs} if rules else {}
        self.action_ids: set[str] = (
            _action_ids(rules.categories.values(), rules.transitions, rules.watches) if rules else set()
        )
        self.trait_size: dict[str, tuple[int, int, int]] = {}  # depth, nodes, values: traits written out
        self.allowed_sets: dict[str, tuple[set, list[str], str]] = {}
        self.traits_built: dict[str, m.Condition] = dict(rules.traits) if rules else {}
        self.categories_by_name: dict[str, m.CategoryRule] = dict(rules.categories) if rules else {}
        self.transitions_built: list[m.Transition] = list(rules.transitions) if rules else []
        self.trend_inputs: list[str] = list(rules.trend_columns) if rules else []
        self.trend_broken = False

    def err(self, where: DocPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(where, _tidy(message), key=key))

    def suggest(self, word: str, names: Any) -> str:
        """'; did you mean ...?' for a misspelt name. A suggestion compares the word with every name, so
        a file with thousands of names and thousands of mistakes would take time in proportion to their
        product: past SUGGEST_PROBLEMS problems or SUGGEST_NAMES names, no more suggestions."""
        if len(self.problems) >= SUGGEST_PROBLEMS or len(names) > SUGGEST_NAMES:
            return ""
        return did_you_mean(word, list(names))

    # ---- the whole file ------------------------------------------------------------------------

    def build(self) -> m.RuleSet | None:
        d = self.doc.data
        org = d.get("organization")
        if isinstance(org, str) and self.path.name in RULE_FILE_NAMES and is_safe_org(org) and not self.any_folder:
            folder = Path(os.path.abspath(self.path)).parent.name  # as reached, not where a link leads
            if folder != org and is_safe_org(folder):  # else dir_name_problem says so
                self.err(
                    ("organization",),
                    f"organization '{org}' must equal its directory name '{folder}'; "
                    f"write 'organization: {folder}' or move the file to rules/{org}/kare.yaml",
                )
        inputs = self.inputs_(d.get("inputs"))
        derived = self.derived_(d.get("derived"))
        self.derived_built = derived
        traits = self.traits_(d.get("traits"))
        self.traits_built = traits
        categories: dict[str, m.CategoryRule] = {}
        self.categories_by_name = categories
        if isinstance(d.get("exit"), dict):
            rule = self.category("exit", d["exit"], ("exit",))
            if rule:
                categories["exit"] = rule
        profiles = d.get("profiles")
        if isinstance(profiles, dict):
            for name, body in profiles.items():
                if name in m.PROFILES and isinstance(body, dict):
                    rule = self.category(name, body, ("profiles", name))
                    if rule:
                        categories[name] = rule
        self.defined = {"exit"} if isinstance(d.get("exit"), dict) else set()
        self.defined |= {p for p in (profiles if isinstance(profiles, dict) else {}) if p in m.PROFILES}
        precedence = self.precedence_(d.get("precedence"))
        if not self.problems:  # traits resolved, no cycles: the conditions can be compared
            self.check_reachable(precedence, categories, traits)
        transitions = self.transitions_(d.get("transitions"))
        self.transitions_built = transitions
        watches = self.watches_(d.get("watch"))
        tests = self.tests(d.get("tests") or [], ("tests",)) if isinstance(d.get("tests"), list) else []
        if self.problems or not inputs or not isinstance(org, str) or not isinstance(d.get("version"), str):
            return None
        rules = m.RuleSet(
            organization=org,
            version=d["version"],
            inputs=tuple(inputs),
            derived=tuple(derived),
            traits=traits,
            precedence=precedence,
            categories=categories,
            transitions=tuple(transitions),
            watches=tuple(watches),
            tests=tuple(tests),
            description=d["description"] if isinstance(d.get("description"), str) else None,
            owners=tuple(o for o in d["owners"] if isinstance(o, str)) if isinstance(d.get("owners"), list) else (),
            path=str(self.path),
        )
        from dataclasses import replace

        return replace(rules, digest=rules_digest(rules))

    # ---- inputs and derived --------------------------------------------------------------------

    def inputs_(self, raw: Any) -> list[m.InputColumn]:
        if not isinstance(raw, dict):
            return []
        out = []
        malformed = False
        for name, spec in raw.items():
            where = ("inputs", name)
            self.check_column_name(name, where, "input")
            if not isinstance(spec, dict) or spec.get("type") not in m.COLUMN_TYPES:
                self.columns[name] = "unknown"  # reported by the schema; do not also call it unknown
                malformed = True
                continue
            ctype = spec["type"]
            bounds = {}
            for bound in ("min", "max"):
                if bound in spec:
                    if ctype not in m.ORDERED_TYPES:
                        self.err(
                            (*where, bound),
                            f"'{bound}' only applies to number and date columns; "
                            f"'{name}' is {ctype}: remove it or use 'allowed'",
                            key=True,
                        )
                        continue
                    if spec[bound] is None:  # the schema says so ('must be number or string, not empty')
                        continue
                    bounds[bound] = self.value_for(ctype, spec[bound], (*where, bound), name)
            low, high = bounds.get("min"), bounds.get("max")
            if low is not None and high is not None and low > high:
                self.err((*where, "max"), f"max {spec['max']} is below min {spec['min']}: no value could pass")
            allowed = None
            if isinstance(spec.get("allowed"), list):
                if ctype == "boolean":
                    self.err((*where, "allowed"), "'allowed' does not apply to a boolean column; remove it", key=True)
                else:
                    typed = (  # an empty item is the schema's to report, once
                        self.value_for(ctype, v, (*where, "allowed", i), name)
                        for i, v in enumerate(spec["allowed"])
                        if v is not None
                    )
                    # A value reported as wrong is left out: no later message lists it as 'None'.
                    allowed = tuple(v for v in typed if v is not None) or None
            if spec.get("key") and spec.get("nullable"):
                self.err(
                    (*where, "nullable"),
                    f"the key column '{name}' cannot be nullable; remove 'nullable: true'",
                    key=True,
                )
            out.append(
                m.InputColumn(
                    name=name,
                    type=ctype,
                    key=bool(spec.get("key")),
                    nullable=bool(spec.get("nullable")),
                    min=bounds.get("min"),
                    max=bounds.get("max"),
                    allowed=allowed,
                    description=spec.get("description"),
                )
            )
            self.columns[name] = ctype
            self.inputs[name] = out[-1]
        keys = [c.name for c in out]
        keyed = [c.name for c in out if c.key]
        if out and not keyed and not malformed:  # the key may be the column the schema reports ({type: str})
            self.err(
                ("inputs",),
                "no input column has 'key: true'; mark the account identifier column, "
                f"e.g. '{keys[0]}: {{type: string, key: true}}'",
            )
        for extra in keyed[1:]:
            self.err(
                ("inputs", extra, "key"),
                f"only one input may have 'key: true' (already '{keyed[0]}'); remove it from '{extra}'",
                key=True,
            )
        return out

    def derived_(self, raw: Any) -> list[m.Derived]:
        if not isinstance(raw, dict):
            return []
        out = []
        for name, spec in raw.items():
            where = ("derived", name)
            self.check_column_name(name, where, "derived")
            if name in self.inputs:
                self.err(where, f"derived column '{name}' has the name of an input column; rename it", key=True)
                continue
            if not isinstance(spec, dict) or len(spec) != 1:
                self.columns[name] = "unknown"  # the schema reports the spec; a use of it is not 'unknown column'
                continue
            kind, arg = next(iter(spec.items()))
            if kind in ("days_since", "days_until") and isinstance(arg, str):
                if self.known_input(arg, (*where, kind)) and self.inputs[arg].type not in ("date", "datetime"):
                    self.err(
                        (*where, kind), f"{kind} needs a date or datetime column; '{arg}' is {self.inputs[arg].type}"
                    )
                out.append(m.Derived(name, kind, (arg,)))
            elif kind == "ratio" and isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
                for i, a in enumerate(arg):
                    if self.known_input(a, (*where, kind, i)) and self.inputs[a].type not in m.NUMERIC_TYPES:
                        self.err((*where, kind, i), f"ratio needs number columns; '{a}' is {self.inputs[a].type}")
                out.append(m.Derived(name, "ratio", tuple(arg)))
            elif kind in m.TREND_KINDS and isinstance(arg, str):
                if not self.trend_input(name, kind, arg, (*where, kind), raw):
                    self.trend_broken = True  # reported here; a test's previous values are not judged by it
                elif arg not in self.trend_inputs:
                    self.trend_inputs.append(arg)
                out.append(m.Derived(name, kind, (arg,)))
            else:
                self.columns[name] = "unknown"  # as above: the schema reports the malformed spec
                continue
            self.columns[name] = out[-1].type
        return out

    def trend_input(self, name: str, kind: str, arg: str, where: DocPath, raw: dict) -> bool:
        """A trend compares an input with its own value in the previous run, so it reads a number input:
        derived values are not kept between runs, and a text or date has no change to measure. False
        (and reported) when `arg` is not one."""
        if arg in raw and arg not in self.inputs:
            source = raw[arg]
            hint = ""
            if isinstance(source, dict) and len(source) == 1:
                inner = next(iter(source.values()))
                numbers = [a for a in (inner if isinstance(inner, list) else [inner]) if a in self.inputs]
                numbers = [a for a in numbers if self.inputs[a].type in m.NUMERIC_TYPES]
                if numbers:
                    hint = f", e.g. '{name}: {{{kind}: {numbers[0]}}}'"
            self.err(
                where,
                f"{kind} reads an input column, and '{arg}' is derived (derived values are not kept between "
                f"runs); write the number input it comes from{hint}",
            )
            return False
        if arg == "account_id" or (arg in self.inputs and self.inputs[arg].key):
            # The previous run's values are keyed by account_id (kare_rules.sources.read_previous, the
            # warehouse's account_values): a column of that name could not sit beside the key.
            self.err(
                where,
                f"{kind} cannot read '{arg}': it is the key or named like the key of the previous run's values "
                "(account_id); a trend reads a number that changes, such as a revenue or a count",
            )
            return False
        if not self.known_input(arg, where):
            return False
        if self.inputs[arg].type not in m.NUMERIC_TYPES:
            numbers = [c for c in self.inputs.values() if c.type in m.NUMERIC_TYPES and not c.key]
            hint = f", e.g. '{name}: {{{kind}: {numbers[0].name}}}'" if numbers else ""
            self.err(
                where,
                f"{kind} needs a number column (integer or float); '{arg}' is {self.inputs[arg].type}: "
                f"name a number input{hint}",
            )
            return False
        return True

    def check_column_name(self, name: str, where: DocPath, kind: str) -> None:
        """A column may not take a name the engine gives its own columns: the data would then hold two."""
        if name in OUTPUT_COLUMNS:
            self.err(
                where,
                f"the {kind} column '{name}' has the name of a result column ({', '.join(OUTPUT_COLUMNS)}); "
                f"rename it, e.g. '{kind}_{name}', and rename the data's column to match",
                key=True,
            )
        elif name.startswith("_"):
            self.err(
                where,
                f"the {kind} column '{name}' starts with '_', which is kept for the engine's own working "
                "columns (such as _kare_row); rename it without the leading '_'",
                key=True,
            )
        elif name in COMBINATORS:  # {not: ...} in a condition is always the combinator, never the column
            self.err(
                where,
                f"the {kind} column '{name}' has the name of a condition word (all, any, not), so no condition "
                f"could read it; rename it, e.g. '{kind}_{name}', and rename the data's column to match",
                key=True,
            )

    def known_input(self, name: str, where: DocPath) -> bool:
        if name in self.inputs:
            return True
        if self.columns.get(name) == "unknown":
            return False  # declared with a type the schema already reports
        self.err(where, f"unknown input column '{name}'{self.suggest(name, self.inputs)}")
        return False

    # ---- traits and conditions -----------------------------------------------------------------

    def traits_(self, raw: Any) -> dict[str, m.Condition]:
        if not isinstance(raw, dict):
            if raw is not None:
                self.err(("traits",), "traits must be a mapping of name: condition")
            return {}
        self.trait_names = set(raw)
        for name in raw:
            if not name_matches(_IDENTIFIER, name):
                self.err(
                    ("traits", name),
                    f"the trait name {name!r} is not valid; use snake_case: lowercase letters, digits and '_'",
                    key=True,
                )
            elif name in COMBINATORS:
                self.err(("traits", name), f"'{name}' is a reserved word; choose another trait name", key=True)
            elif name in self.columns:
                self.err(
                    ("traits", name),
                    f"trait '{name}' has the name of a column; rename the trait, e.g. 'has_{name}'",
                    key=True,
                )
        traits = {}
        for name, body in raw.items():
            cond = self.condition(body, ("traits", name))
            if cond is not None:
                traits[name] = cond
        over: set[str] = set()
        reported = len(self.problems)
        order = self.check_cycles(traits)
        if len(self.problems) > reported:
            return traits  # a cycle has no size; the cycle is the problem to fix
        for name in order:  # each after the traits it uses, so each is measured once
            if self.check_size(traits[name], ("traits", name), over):
                over.add(name)
        return traits

    def check_cycles(self, traits: dict[str, m.Condition]) -> list[str]:
        """Report every cycle of trait references; the traits ordered so that each comes after the
        traits it uses. Iterative: a chain of thousands of traits must not exhaust the stack."""
        deps = {name: sorted(set(trait_refs(c))) for name, c in traits.items()}
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        order: list[str] = []
        for start in deps:
            if state.get(start):
                continue
            path, todo = [start], [iter(deps[start])]
            state[start] = 1
            while todo:
                dep = next(todo[-1], None)
                if dep is None:
                    done = path.pop()
                    todo.pop()
                    state[done] = 2
                    order.append(done)
                elif state.get(dep) == 1:
                    self.err(("traits", path[-1]), f"traits refer to each other in a cycle: "
                             f"{_chain([*path[path.index(dep):], dep])}; break the cycle", key=True)  # fmt: skip
                elif dep in deps and not state.get(dep):
                    state[dep] = 1
                    path.append(dep)
                    todo.append(iter(deps[dep]))
        return order

    def check_size(self, cond: m.Condition, where: DocPath, over: set[str]) -> bool:
        """Whether a condition, with every trait it uses written out, is nested deeper than
        MAX_CONDITION_DEPTH, has more than MAX_CONDITION_NODES nodes or lists more than
        MAX_CONDITION_VALUES values in `in`/`not_in`. Every engine and explanation writes traits out, so
        this bounds their work; it is reported where it first happens, not again for each condition
        that uses an oversized trait."""
        depth, nodes, values = self.measure(cond)
        if isinstance(where[-1], str) and where[0] == "traits":
            self.trait_size[str(where[-1])] = (
                depth, min(nodes, MAX_CONDITION_NODES + 1), min(values, MAX_CONDITION_VALUES + 1),
            )  # fmt: skip
        if depth <= MAX_CONDITION_DEPTH and nodes <= MAX_CONDITION_NODES and values <= MAX_CONDITION_VALUES:
            return False
        if set(trait_refs(cond)) & over:
            return True
        written_out = "with the traits it uses written out, this condition"
        if depth > MAX_CONDITION_DEPTH:
            message = (
                f"{written_out} is nested {depth} levels deep, over the limit of {MAX_CONDITION_DEPTH}; "
                "flatten it, e.g. list traits in one 'all' instead of chaining them"
            )
        elif nodes > MAX_CONDITION_NODES:
            message = (
                f"{written_out} has more than {MAX_CONDITION_NODES:,} parts (a trait used twice counts twice); "
                "simplify it, e.g. compare with 'in: [...]' instead of listing many conditions"
            )
        else:
            message = (
                f"{written_out} lists more than {MAX_CONDITION_VALUES:,} values in 'in'/'not_in' (a trait used "
                "twice counts twice); a list this long belongs in the data, e.g. as a boolean column"
            )
        self.err(where, message, key=where[0] == "traits")
        return True

    def measure(self, cond: m.Condition) -> tuple[int, int, int]:
        """Depth, node count and listed values of a condition with its traits written out (their sizes
        already known). Recursion here follows the condition as written, which `condition` keeps shallow."""
        if isinstance(cond, m.Predicate):
            return 1, 1, len(cond.value) if cond.op in ("in", "not_in") else 0
        if isinstance(cond, m.TraitRef):
            depth, nodes, values = self.trait_size.get(cond.name, (0, 0, 0))
            return depth + 1, nodes + 1, values
        if isinstance(cond, m.Not):
            depth, nodes, values = self.measure(cond.item)
            return depth + 1, nodes + 1, values
        parts = [self.measure(c) for c in cond.items]
        return 1 + max(p[0] for p in parts), 1 + sum(p[1] for p in parts), sum(p[2] for p in parts)

    def condition(self, raw: Any, where: DocPath, depth: int = 1) -> m.Condition | None:
        if raw is None:  # `when:` left empty, as `kare init` scaffolds it
            self.err(
                where,
                "the condition is empty; fill it in: a trait name or a mapping such as {all: [...]}, {any: [...]}, "
                "{not: ...} or {column: {op: value}}",
            )
            return None
        if depth > MAX_CONDITION_DEPTH:
            self.err(
                where,
                f"conditions are nested more than {MAX_CONDITION_DEPTH} levels deep here; "
                "name an inner part as a trait and use its name",
            )
            return None
        if isinstance(raw, str):
            if raw not in self.trait_names:
                hint = self.suggest(raw, self.trait_names)
                if raw in self.columns:
                    hint = f"; '{raw}' is a column: write a predicate such as {{{raw}: true}}"
                self.err(where, f"unknown trait '{raw}'{hint}")
                return None
            return m.TraitRef(raw)
        if not isinstance(raw, dict):
            self.err(
                where,
                "a condition is a trait name or a mapping such as {all: [...]}, {any: [...]}, "
                f"{{not: ...}} or {{column: {{op: value}}}}; got {_kind(raw)}",
            )
            return None
        if not raw:
            self.err(
                where,
                "an empty condition {}; write a trait name, {all: [...]}, {any: [...]}, {not: ...} "
                "or {column: {op: value}}",
            )
            return None
        if len(raw) != 1:
            keys = ", ".join(map(str, raw))
            self.err(
                where,
                f"a condition has exactly one key, this one has {len(raw)} ({keys}); "
                "combine them with {all: [...]} or {any: [...]}",
            )
            return None
        key, body = next(iter(raw.items()))
        here = (*where, key)
        if key in ("all", "any"):
            if not isinstance(body, list) or not body:
                self.err(here, f"'{key}' takes a non-empty list of conditions, e.g. {key}: [trait_a, trait_b]")
                return None
            items = [self.condition(item, (*here, i), depth + 1) for i, item in enumerate(body)]
            if any(i is None for i in items):
                return None
            return m.All(tuple(items)) if key == "all" else m.Any_(tuple(items))
        if key == "not":
            inner = self.condition(body, here, depth + 1)
            return m.Not(inner) if inner is not None else None
        return self.predicate(key, body, where)

    def predicate(self, column: str, body: Any, where: DocPath) -> m.Predicate | None:
        here = (*where, column)
        if column not in self.columns:
            hint = self.suggest(column, self.columns)
            if column in self.trait_names:
                hint = f"; '{column}' is a trait: write it as a plain name, without a value"
            elif str(column).lower() in _COMBINATOR_WORDS:  # and/or, as SQL or JSON Logic write them
                word = _COMBINATOR_WORDS[str(column).lower()]
                hint = f"; conditions are combined with {{{word}: [...]}}: write '{word}' for '{column}'"
            elif not hint:
                hint = f"; declare it under 'inputs:' or 'derived:' (known columns: {_listed(self.columns)})"
            self.err(here, f"unknown column '{column}'{hint}", key=True)
            return None
        ctype = self.columns[column]
        if ctype == "unknown":
            return None
        if isinstance(body, dict):
            if len(body) != 1:
                self.err(
                    here,
                    f"a predicate has exactly one operator, this one has {len(body)}; "
                    "split it with {all: [...]} (for a range use {between: [low, high]})",
                )
                return None
            op, value = next(iter(body.items()))
            if op not in m.OPS:
                instead = _OPERATOR_WORDS.get(str(op).strip().lower())
                if instead == "is_null":  # 'not_null: true' is 'is_null: false'
                    value = not value if isinstance(value, bool) else False
                shown = _written(value) if isinstance(value, bool | int | float | str) else "..."
                hint = f"; write {{{column}: {{{instead}: {shown}}}}}" if instead else did_you_mean(str(op), m.OPS)
                self.err((*here, op), f"unknown operator '{op}'{hint}; operators: {', '.join(m.OPS)}", key=True)
                return None
            return self.operand(column, ctype, op, value, (*here, op))
        if isinstance(body, list):
            self.err(here, f"to test membership write {{{column}: {{in: [...]}}}}")
            return None
        if body is None:
            self.err(here, f"to test for a missing value write {{{column}: {{is_null: true}}}}")
            return None
        return self.operand(column, ctype, "eq", body, here)

    def operand(self, column: str, ctype: str, op: str, value: Any, where: DocPath) -> m.Predicate | None:
        n = len(self.problems)
        if op == "is_null":
            if not isinstance(value, bool):
                self.err(where, "is_null takes true or false")
            return m.Predicate(column, "is_null", value) if len(self.problems) == n else None
        if op in ("gt", "gte", "lt", "lte", "between") and ctype not in m.ORDERED_TYPES:
            self.err(
                where,
                f"'{op}' needs a number or date column; '{column}' is {ctype}: use eq, ne, in or not_in",
                key=True,
            )
            return None
        if op in ("in", "not_in", "between"):
            if not isinstance(value, list) or (not value and op != "between"):
                what = "a non-empty list" if isinstance(value, list) else "a list"
                self.err(where, f"'{op}' takes {what}, e.g. {column}: {{{op}: [a, b]}}")
                return None
            if op == "between" and len(value) != 2:
                self.err(where, f"'between' takes [low, high] (two values, both included); got {len(value)}")
                return None
            items = tuple(self.value_for(ctype, v, (*where, i), column) for i, v in enumerate(value))
            if len(self.problems) > n:
                return None
            if op == "between" and items[0] > items[1]:
                self.err(where, f"between [{value[0]}, {value[1]}] is empty: write the low value first")
                return None
            if op != "between":
                for i, item in enumerate(items):
                    self.check_allowed(column, item, (*where, i))
            return m.Predicate(column, op, items) if len(self.problems) == n else None
        if op in ("eq", "ne") and ctype == "boolean" and not isinstance(value, bool):
            self.err(where, f"'{column}' is boolean: compare it with true or false, not {_written(value)}")
            return None
        typed = self.value_for(ctype, value, where, column)
        if op in ("eq", "ne") and len(self.problems) == n:
            self.check_allowed(column, typed, where)
        return m.Predicate(column, op, typed) if len(self.problems) == n else None

    def check_allowed(self, column: str, value: Any, where: DocPath) -> None:
        """A value compared with a column that declares `allowed` must be one of them (else the
        condition can never hold: usually a typo)."""
        spec = self.inputs.get(column)
        if spec is None or spec.allowed is None:
            return
        if column not in self.allowed_sets:  # built once: a long `in` list against a long `allowed` stays linear
            options = [str(v) for v in spec.allowed]
            self.allowed_sets[column] = (set(spec.allowed), options, _listed(options, sort=False))
        allowed, options, listed = self.allowed_sets[column]
        if value in allowed:
            return
        hint = self.suggest(str(value), options) if isinstance(value, str) else ""
        self.err(where, f"{_written(value)} is not an allowed value of '{column}'{hint}; allowed: {listed}")

    def value_for(self, ctype: str, value: Any, where: DocPath, column: str) -> Any:
        """A rule-file literal as a typed value for a column of `ctype`, or a problem saying why not."""
        bad = None
        if value is None:
            bad = "a value is required here, not null"
        elif ctype == "string":
            if isinstance(value, bool):
                bad = (
                    f"'{column}' is a string column, but YAML reads an unquoted yes/no/on/off/true/false as "
                    f"{_plain(value)}; quote the text as you mean it, e.g. '{_plain(value)}' or 'no'"
                )
            elif not isinstance(value, str):
                bad = f"'{column}' is a string column; quote the value: '{_plain(value)}'"
        elif ctype in ("integer", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                article = "an" if ctype == "integer" else "a"
                bad = f"'{column}' is {article} {ctype} column; write a number, not {_written(value)}"
                if isinstance(value, str) and (e := _TEXT_EXPONENT.match(value)):
                    number = f"{e[1]}{e[2] if e[2] and e[2] != '.' else '.0'}e{e[3] or '+'}{e[4]}"
                    bad = f"'{column}' is {article} {ctype} column; YAML reads {value} as text: write {number}"
            elif ctype == "integer" and isinstance(value, float) and not value.is_integer():
                # is_integer is false for inf and nan too, which int() would raise on.
                bad = f"'{column}' is an integer column; write a whole number, not {value!r}"
            elif ctype == "integer" and not _INT64_MIN <= int(value) <= _INT64_MAX:
                bad = (
                    f"'{column}' is a 64-bit integer column; {value!r} is out of range: "
                    f"write a whole number from {_INT64_MIN} to {_INT64_MAX}"
                )
            elif ctype == "integer":
                return int(value)
            elif isinstance(value, int) and abs(value) > _FLOAT_MAX:
                bad = f"'{column}' is a float column; {value!r} is too large for a 64-bit float"
            elif isinstance(value, float) and not math.isfinite(value):
                # A NaN compares greater than every number in Polars and DuckDB, so it would not mean missing.
                shown = ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
                bad = (
                    f"'{column}' is a float column; {shown} is not a finite number: write a number, "
                    f"or {{{column}: {{is_null: true}}}} (a null in a test account) for a missing value"
                )
        elif ctype == "boolean":
            if not isinstance(value, bool):
                bad = f"'{column}' is a boolean column; write true or false, not {_written(value)}"
        elif ctype in ("date", "datetime"):
            parsed = _as_date(value, ctype)
            if _zoned(value):
                bad = (
                    f"{_plain(value)} carries a time zone; '{column}' compares dates as written, without one: "
                    "write a date (YYYY-MM-DD) or a date-time without an offset"
                )
            elif parsed is None and isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
                bad = f"'{value}' is not a calendar date; write YYYY-MM-DD"
            elif parsed is None:
                bad = f"'{column}' is a {ctype} column; write a date as YYYY-MM-DD, not {_written(value)}"
            else:
                return parsed
        if bad:
            self.err(where, bad)
            return None
        return float(value) if ctype == "float" else value

    # ---- categories ----------------------------------------------------------------------------

    def category(self, name: str, body: dict, where: DocPath) -> m.CategoryRule | None:
        when = self.condition(body["when"], (*where, "when")) if "when" in body else None
        actions = self.actions(body.get("actions"), (*where, "actions"), name)
        if when is None:
            return None
        oversized = {t for t, (depth, nodes, values) in self.trait_size.items()
                     if depth > MAX_CONDITION_DEPTH or nodes > MAX_CONDITION_NODES
                     or values > MAX_CONDITION_VALUES}  # fmt: skip
        if self.check_size(when, (*where, "when"), oversized):
            return None
        return m.CategoryRule(name=name, when=when, actions=tuple(actions), description=body.get("description"))

    def actions(self, raw: Any, where: DocPath, owner_of: str) -> list[m.Action]:
        if not isinstance(raw, list):
            return []
        out, seen = [], {}
        for i, a in enumerate(raw):
            if not isinstance(a, dict) or not {"id", "title", "due_in_days"} <= set(a):
                if isinstance(a, dict) and isinstance(a.get("id"), str):
                    # The schema reports the missing key; a test expecting this action is not a second error.
                    self.action_ids.add(a["id"])
                continue
            here = (*where, i)
            if _hashable(a["id"]) and a["id"] in seen:
                self.err(
                    (*here, "id"),
                    f"duplicate action id '{a['id']}' in {owner_of} (first at item "
                    f"{seen[a['id']] + 1}); give each action its own id",
                )
            if _hashable(a["id"]):
                seen.setdefault(a["id"], i)
                self.action_ids.add(str(a["id"]))  # even when its category's `when` is invalid: no second error
            owner = a.get("owner")
            if isinstance(owner, str) and owner not in self.inputs:
                self.err(
                    (*here, "owner"),
                    f"owner column '{owner}' is not an input"
                    f"{self.suggest(owner, self.inputs)}; 'owner' names the input column that holds "
                    "the owner",
                )
            due = a.get("due_in_days")
            if not isinstance(due, int) or isinstance(due, bool) or not 0 <= due <= m.MAX_DUE_IN_DAYS:
                continue  # the schema reports it, with the bounds
            out.append(
                m.Action(
                    id=str(a["id"]),
                    title=str(a["title"]),
                    due_in_days=a["due_in_days"],
                    priority=a.get("priority", "medium"),
                    owner=owner,
                )
            )
        return out

    def precedence_(self, raw: Any) -> tuple[str, ...]:
        if raw is None:
            return m.CATEGORIES
        if not isinstance(raw, list):
            self.err(("precedence",), f"precedence is a list of categories, e.g. [{', '.join(m.CATEGORIES)}]")
            return m.CATEGORIES
        seen: set[str] = set()
        for i, c in enumerate(raw):
            if c == m.UNASSIGNED:
                self.err(
                    ("precedence", i),
                    "'unassigned' is not written in precedence: it is what an account gets when no category in it "
                    "holds; remove it",
                )
            elif c not in m.CATEGORIES:
                self.err(
                    ("precedence", i),
                    f"unknown category {_written(c)} in precedence{did_you_mean(str(c), m.CATEGORIES)}"
                    f"; categories: {', '.join(m.CATEGORIES)}",
                )
            elif _hashable(c) and c in seen:
                self.err(("precedence", i), f"'{c}' appears twice in precedence; keep one")
            elif c not in self.defined:
                self.err(("precedence", i), f"'{c}' is in precedence but not defined; define it or remove it")
            if _hashable(c):
                seen.add(c)
        for c in self.defined:
            if c not in seen:
                self.err(
                    ("precedence",),
                    f"category '{c}' is defined but missing from precedence, so it could never match; add it",
                )
        return tuple(c for c in raw if isinstance(c, str))

    def check_reachable(
        self, precedence: tuple[str, ...], categories: dict[str, m.CategoryRule], traits: dict[str, m.Condition]
    ) -> None:
        """A category whose condition implies an earlier one's can never be chosen (expand after keep, when
        every expand account is a keep account; exit after keep): refused, as a category missing from
        precedence is, instead of publishing it to no account."""
        ordered = [c for c in precedence if c in categories]
        for i, later in enumerate(ordered):
            shadow = next((e for e in ordered[:i] if implies(categories[later].when, categories[e].when, traits)), None)
            if shadow:
                self.err(
                    ("exit", "when") if later == "exit" else ("profiles", later, "when"),
                    f"'{later}' can never be chosen: every account its condition holds for also meets "
                    f"'{shadow}', which comes before it in precedence; put '{later}' before '{shadow}' in "
                    "precedence (the narrower category first), or narrow the condition",
                )

    def transitions_(self, raw: Any) -> list[m.Transition]:
        if not isinstance(raw, list):
            return []
        out = []
        pairs: dict[tuple, int] = {}
        for i, t in enumerate(raw):
            if not isinstance(t, dict) or not {"from", "to", "actions"} <= set(t):
                continue
            here = ("transitions", i)
            for end in ("from", "to"):
                c = t[end]
                known = (*self.defined, m.UNASSIGNED) + (("new",) if end == "from" else ())
                if c in (*m.ALL_CATEGORIES, "new") and c not in known:
                    what = (
                        "'new' is only a from (an account not seen in the previous run)"
                        if c == "new"
                        else "a category these rules do not define"
                    )
                    listed = [
                        *(x for x in m.CATEGORIES if x in self.defined),
                        *(x for x in known if x not in self.defined),
                    ]
                    self.err((*here, end), f"transition {end} '{c}', {what}; write one of: {', '.join(listed)}")
            if t["from"] == t["to"]:
                self.err(here, f"a transition from '{t['from']}' to itself never fires; use the category's actions")
            pair = (t["from"], t["to"])
            if all(map(_hashable, pair)) and pair in pairs:
                self.err(
                    here,
                    f"a second transition {pair[0]} → {pair[1]} (first is item {pairs[pair] + 1}); merge their actions",
                )
            if all(map(_hashable, pair)):
                pairs.setdefault(pair, i)
            actions = self.actions(t["actions"], (*here, "actions"), f"transition {pair[0]} → {pair[1]}")
            self.transition_action_clash(t, actions, (*here, "actions"))
            out.append(m.Transition(str(t["from"]), str(t["to"]), tuple(actions)))
        return out

    def transition_action_clash(self, t: dict, actions: list[m.Action], where: DocPath) -> None:
        """A transition's actions open beside those of its `to` category for the same account: the same
        action id would show twice in the account's queue (two titles, two due dates), so it is refused,
        as for a watch."""
        rule = self.categories_by_name.get(t["to"]) if _hashable(t.get("to")) else None
        if rule is None:
            return
        for i, aid in _ids_among(t["actions"], actions, {a.id for a in rule.actions}):
            self.err(
                (*where, i, "id"),
                f"action id '{aid}' is already an action of {t['to']}, where the transition takes the "
                f"account; give the transition's action its own id, e.g. '{aid}-from-{_plain(t['from'])}'",
            )

    # ---- watches -------------------------------------------------------------------------------

    def watches_(self, raw: Any) -> list[m.Watch]:
        if not isinstance(raw, list):
            return []
        out = []
        ids: dict[str, int] = {}
        # A watch's action ids join self.action_ids: a test may expect them (`tests: actions:`), as a run
        # opens them for an account the watch holds for.
        for i, w in enumerate(raw):
            if not isinstance(w, dict) or not {"id", "from", "actions"} <= set(w):
                continue  # the schema reports the missing keys
            here = ("watch", i)
            wid = w["id"]
            if _hashable(wid) and wid in ids:
                self.err(
                    (*here, "id"),
                    f"a second watch '{wid}' (first is item {ids[wid] + 1}); give each watch its own id",
                )
            if _hashable(wid):
                ids.setdefault(wid, i)
            ends = {}
            for end in ("from", "to"):
                c = w.get(end)
                if c in m.ALL_CATEGORIES and c != m.UNASSIGNED and c not in self.defined:
                    self.err(
                        (*here, end),
                        f"watch {end} '{c}', a category these rules do not define; watch one of: "
                        f"{', '.join([*(x for x in m.CATEGORIES if x in self.defined), m.UNASSIGNED])}",
                    )
                ends[end] = c
            if ends["to"] is not None and ends["to"] == ends["from"]:
                self.err(
                    (*here, "to"),
                    f"a watch from '{ends['from']}' to '{ends['to']}' watches no move; name the category the "
                    "accounts would move to, or leave 'to' out for any move",
                )
            days = w.get("within_days")
            within = self.watch_within(w["within"], (*here, "within")) if "within" in w else ()
            if "within_days" not in w and "within" not in w:
                self.err(
                    here,
                    "a watch says how close a move must be: add 'within_days: 30' (the next move is at most 30 "
                    "days away), 'within: {column: amount}' (the nearest change on that column), or both",
                )
            elif "within" not in w and days is not None and not self.moves_with_dates():
                self.err(
                    (*here, "within_days"),
                    "no condition uses a day count (days_since or days_until), so with the data unchanged no "
                    "account ever moves and a watch on within_days alone could never hold; "
                    + self.within_days_instead(),
                    key=True,
                )
            actions = self.actions(w["actions"], (*here, "actions"), f"watch {wid}")
            self.watch_action_clash(w, actions, (*here, "actions"), out)
            if not all(map(_hashable, (wid, ends["from"]))) or ends["from"] not in m.ALL_CATEGORIES:
                continue
            out.append(
                m.Watch(
                    id=str(wid),
                    from_category=str(ends["from"]),
                    actions=tuple(actions),
                    to_category=ends["to"] if isinstance(ends["to"], str) else None,
                    within_days=days if isinstance(days, int) and not isinstance(days, bool) else None,
                    within=tuple(within),
                    description=w["description"] if isinstance(w.get("description"), str) else None,
                )
            )
        return out

    def watch_within(self, raw: Any, where: DocPath) -> list[m.WithinAmount]:
        """`within: {column: amount}`: each column a number the rules compare with an order (so it has
        edges), each amount a positive number or a positive share such as '10%'."""
        if not isinstance(raw, dict) or not raw:
            self.err(where, "within is a mapping of column: amount, e.g. {arr: 5000} or {arr: 10%}")
            return []
        compared = self.ordered_columns()
        out = []
        for column, amount in raw.items():
            here = (*where, column)
            ctype = self.columns.get(column)
            if ctype == "unknown":
                continue
            if ctype is None:
                hint = self.suggest(str(column), [c for c, t in self.columns.items() if t in m.NUMERIC_TYPES])
                self.err(here, f"unknown column '{column}' in within{hint}; name a number input or derived column",
                         key=True)  # fmt: skip
                continue
            if ctype not in m.NUMERIC_TYPES:
                self.err(
                    here,
                    f"'{column}' is {'a' if ctype[0] not in 'aeiou' else 'an'} {ctype} column; within measures a "
                    "change of a number (an integer or float input, or a derived value such as days_since): "
                    + self.within_instead(str(column), ctype),
                    key=True,
                )
                continue
            if column not in compared and self.conditions_complete():
                self.err(
                    here,
                    f"no condition compares '{column}' with gt, gte, lt, lte or between, so no change of it moves "
                    "an account and the watch could never hold; watch a column a threshold is set on",
                    key=True,
                )
                continue
            parsed = self.within_amount(column, amount, here)
            if parsed is not None:
                out.append(parsed)
        return out

    def within_amount(self, column: str, amount: Any, where: DocPath) -> m.WithinAmount | None:
        example = f"write a positive amount such as {{{column}: 14}} or a share of the current value such as " \
            f"{{{column}: 10%}}"  # fmt: skip
        if amount is None:
            self.err(where, f"the amount for '{column}' is empty; {example}")
            return None
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            self.err(where, f"the amount {_plain(amount)!r} for '{column}' is not a number; {example}")
            return None
        if isinstance(amount, str):
            match = _PERCENT.match(amount)
            if match is None:
                hint = " (a share is written with its sign last: 10%)" if "%" in amount else ""
                if amount.strip().startswith("-"):
                    hint = " (a watch looks both ways: the nearest change up or down counts)"
                self.err(where, f"'{amount}' is not an amount{hint}; {example}")
                return None
            share = float(match.group(1)) / 100
            if share == 0:
                self.err(where, f"within 0% never holds (a move needs some change); {example}")
                return None
            return m.WithinAmount(column, share, relative=True)
        if not math.isfinite(amount) or amount <= 0:
            why = (
                "a distance is never negative: the nearest change up or down counts"
                if amount < 0
                else ("a move needs some change, so 0 never holds" if amount == 0 else "it is not a finite number")
            )
            self.err(where, f"within {_plain(amount)} for '{column}': {why}; {example}")
            return None
        return m.WithinAmount(column, float(amount))

    def watch_action_clash(self, w: dict, actions: list[m.Action], where: DocPath, earlier: list[m.Watch]) -> None:
        """A watch's actions are open beside those of its `from` category for the same account: the same
        action id would show twice in the account's queue with different titles, so it is refused."""
        if not _hashable(w.get("from")):
            return
        frm, rule = w["from"], self.categories_by_name.get(w["from"])
        theirs = {a.id: f"{frm}, which the watched accounts are in" for a in (rule.actions if rule else ())}
        # Another watch from the same category can hold for the same account, and a transition into `from`
        # opens its actions the day the account arrives, when the watch may hold.
        siblings = {a.id: f"watch '{o.id}', which can hold for the same {frm} accounts"
                    for o in earlier if o.from_category == frm for a in o.actions}  # fmt: skip
        arriving = {a.id: f"the transition {t.from_category} → {t.to_category}, which brings accounts into {frm}"
                    for t in self.transitions_built if t.to_category == frm for a in t.actions}  # fmt: skip
        for owners in (theirs, _without(siblings, theirs), _without(arriving, theirs)):
            for i, aid in _ids_among(w["actions"], actions, set(owners)):
                self.err(
                    (*where, i, "id"),
                    f"action id '{aid}' is already an action of {owners[aid]}; give the watch's action its own "
                    f"id, e.g. '{aid}-{_plain(w['id'])}'",
                )

    def within_instead(self, column: str, ctype: str) -> str:
        """What to watch instead of a column that is not a number: a date through the day count that reads
        it (named when the file has one), anything else through the move itself."""
        if ctype not in ("date", "datetime"):
            return f"a {ctype} value has no distance to measure; watch a number column, or the move with within_days"
        raw = self.doc.data.get("derived") if isinstance(self.doc.data, dict) else None
        counts = [
            name
            for name, spec in (raw.items() if isinstance(raw, dict) else ())
            if isinstance(spec, dict) and len(spec) == 1 and spec.get("days_since", spec.get("days_until")) == column
        ]
        if counts:
            return f"watch the days it counts instead, e.g. {{{counts[0]}: 14}}"
        return (
            f"watch a date through the days it counts: derived: {{days_since_{column}: {{days_since: {column}}}}}, "
            f"then within: {{days_since_{column}: 14}}"
        )

    def conditions_complete(self) -> bool:
        """Whether every trait and category condition of the file was built: when one has a mistake (already
        reported), what it compares is unknown, so 'no condition compares this column' could be false."""
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        traits = data.get("traits") if isinstance(data.get("traits"), dict) else {}
        return set(traits) <= set(self.traits_built) and self.defined <= set(self.categories_by_name)

    def moves_with_dates(self) -> bool:
        """Whether some category's condition reads a day count, the only value that changes with as_of
        when the data does not: without one no account has a next move. True while a condition has a
        mistake (already reported), since what it reads is then unknown."""
        counts = {d.name for d in getattr(self, "derived_built", ()) if d.kind in m.DATE_KINDS}
        return not self.conditions_complete() or bool(counts & self.ordered_columns(ops=None))

    def within_days_instead(self) -> str:
        """What a within_days watch can use instead: the nearest change of a compared column, or a day count."""
        compared = sorted(c for c in self.ordered_columns() if self.columns.get(c) in m.NUMERIC_TYPES)
        if compared:
            return f"watch the nearest change instead, e.g. within: {{{compared[0]}: 10%}}"
        dates = [c for c, t in self.columns.items() if t in ("date", "datetime")]
        if not dates:  # nothing moves with time and nothing has a nearest change: the watch can only go
            return "no date input to count days from and no number compared either, so remove the watch"
        return (
            f"add a day count, e.g. derived: {{days_since_{dates[0]}: {{days_since: {dates[0]}}}}}, and use it "
            "in a condition"
        )

    def ordered_columns(self, ops: tuple[str, ...] | None = ("gt", "gte", "lt", "lte", "between")) -> set[str]:
        """The columns some category's condition (through its traits) compares with gt, gte, lt, lte or
        between: the quantities that have edges (with `ops=None`, every column a condition reads)."""
        out: set[str] = set()
        seen: set[str] = set()

        def walk(c: m.Condition) -> None:
            if isinstance(c, m.Predicate):
                if ops is None or c.op in ops:
                    out.add(c.column)
            elif isinstance(c, m.TraitRef):
                if c.name not in seen and c.name in self.traits_built:
                    seen.add(c.name)
                    walk(self.traits_built[c.name])
            elif isinstance(c, m.All | m.Any_):
                for item in c.items:
                    walk(item)
            elif isinstance(c, m.Not):
                walk(c.item)

        for rule in self.categories_by_name.values():
            walk(rule.when)
        return out

    # ---- embedded tests ------------------------------------------------------------------------

    def tests(self, raw: list, where: DocPath) -> list[m.RuleTest]:
        out = []
        names: dict[str, int] = {}
        for i, t in enumerate(raw):
            here = (*where, i)
            if not isinstance(t, dict) or not {"name", "account", "as_of", "expect"} <= set(t):
                if not isinstance(self.doc.data, dict) or "format" not in self.doc.data:
                    self.err(here, "a test has name, account, as_of and expect")
                continue
            if _hashable(t["name"]) and t["name"] in names:
                self.err((*here, "name"), f"duplicate test name '{t['name']}'; give each test its own name")
            if _hashable(t["name"]):
                names.setdefault(t["name"], i)
            expect = t["expect"]
            if expect in m.CATEGORIES and expect not in self.defined:
                self.err(
                    (*here, "expect"),
                    f"expect '{expect}', a category these rules do not define; write one of: "
                    f"{', '.join([*(c for c in m.CATEGORIES if c in self.defined), m.UNASSIGNED])}",
                )
            elif expect not in m.ALL_CATEGORIES:
                self.err(
                    (*here, "expect"),
                    f"expect {_not_one(expect, 'a category', m.ALL_CATEGORIES)}; "
                    f"write one of: {', '.join(m.ALL_CATEGORIES)}",
                )
            as_of = _as_date(t["as_of"], "date")
            if as_of is None or isinstance(as_of, dt.datetime):
                self.err((*here, "as_of"), f"as_of {_not_one(t['as_of'], 'a date')}; write YYYY-MM-DD")
            account = t["account"]
            if not isinstance(account, dict):
                self.err((*here, "account"), "account is a mapping of column: value")
                continue
            values = []
            for col, value in account.items():
                if self.columns.get(col) == "unknown":
                    continue  # an input whose declaration the schema already reports
                if col not in self.inputs:
                    hint = self.suggest(col, self.inputs)
                    if col in self.columns:
                        hint = f"; '{col}' is derived: give its input instead"
                    self.err((*here, "account", col), f"unknown column '{col}' in test account{hint}", key=True)
                    continue
                typed = (
                    None
                    if value is None
                    else self.value_for(self.inputs[col].type, value, (*here, "account", col), col)
                )
                values.append((col, typed))
            matched_rule = self.test_matched_rule(t.get("matched_rule"), here) if "matched_rule" in t else None
            actions = self.test_actions(t.get("actions"), here) if "actions" in t else None
            previous = self.test_previous(t["previous"], here, dict(values)) if "previous" in t else ()
            next_category = self.test_next_category(t["next_category"], here) if "next_category" in t else None
            if next_category is not None and next_category == expect:
                # a move goes to another category: this test could never pass
                self.err(
                    (*here, "next_category"),
                    f"next_category is the category the account moves to, so it cannot be its expected category "
                    f"'{expect}'; write the category it moves to, or 'none' for no move within "
                    f"{m.DEFAULT_HORIZON_DAYS} days",
                )
            next_move_on = (
                self.test_next_move_on(t["next_move_on"], here, as_of, next_category) if "next_move_on" in t else None
            )
            line = self.doc.where(here)[0]
            out.append(
                m.RuleTest(
                    name=str(t["name"]),
                    account=tuple(values),
                    as_of=as_of or dt.date.min,
                    expect=str(expect),
                    line=line,
                    path=self.doc.path,
                    matched_rule=matched_rule,
                    actions=actions,
                    previous=previous,
                    next_category=next_category,
                    next_move_on=next_move_on,
                )
            )
        return out

    def test_previous(self, raw: Any, here: DocPath, account: dict) -> tuple[tuple[str, m.Value], ...]:
        """`previous: {arr: 120000}`: the account's values in the previous run, read by its trends."""
        where = (*here, "previous")
        if self.trend_broken:
            return ()  # a trend's column is wrong, and said so where it is written: not again in each test
        if not self.trend_inputs:
            self.err(where, "these rules have no trend (change_of or pct_change_of), so previous values are "
                     "never read; remove 'previous'")  # fmt: skip
            return ()
        if not isinstance(raw, dict):
            self.err(where, f"previous is a mapping of column: value, e.g. {{{self.trend_inputs[0]}: 1000}}")
            return ()
        key = next((c for c, i in self.inputs.items() if i.key), None)
        if key is not None and account.get(key) is None:
            self.err(
                where,
                f"a test with previous values needs the account's key, as a run matches previous values by key; "
                f"add '{key}: {_EXAMPLE_KEY.get(self.inputs[key].type, 'T1')}' (any id) to the account",
            )
        out = []
        for col, value in raw.items():
            if col not in self.trend_inputs:
                hint = self.suggest(str(col), self.trend_inputs)
                self.err(
                    (*where, col),
                    f"'{col}' has no previous value a trend reads{hint}; previous values are given for the "
                    f"columns of change_of and pct_change_of: {', '.join(self.trend_inputs)}",
                    key=True,
                )
                continue
            typed = None if value is None else self.value_for(self.inputs[col].type, value, (*where, col), col)
            out.append((col, typed))
        return tuple(out)

    def test_next_category(self, raw: Any, here: DocPath) -> str | None:
        """`next_category:` a category the account moves to first with its data unchanged, or `none`."""
        known = [c for c in m.CATEGORIES if c in self.defined] + [m.UNASSIGNED, NO_MOVE]
        if raw not in known:
            self.err(
                (*here, "next_category"),
                f"next_category {_not_one(raw, 'a category', known)}; write one of: {', '.join(known)}",
            )
            return None
        return str(raw)

    def test_next_move_on(
        self, raw: Any, here: DocPath, as_of: dt.date | None, next_category: str | None
    ) -> dt.date | None:
        """`next_move_on:` the date of the next move: after as_of, within the default horizon."""
        where = (*here, "next_move_on")
        day = _as_date(raw, "date")
        if day is None or isinstance(day, dt.datetime):
            self.err(where, f"next_move_on {_not_one(raw, 'a date')}; write YYYY-MM-DD")
            return None
        if next_category == NO_MOVE:
            self.err(where, "next_category: none expects no move, so there is no date; leave out next_move_on")
            return None
        if as_of is not None and not 0 < (day - as_of).days <= m.DEFAULT_HORIZON_DAYS:
            self.err(
                where,
                f"next_move_on {day.isoformat()} is not within the {m.DEFAULT_HORIZON_DAYS} days after as_of "
                f"{as_of.isoformat()}; write a date from {(as_of + dt.timedelta(days=1)).isoformat()} to "
                f"{(as_of + dt.timedelta(days=m.DEFAULT_HORIZON_DAYS)).isoformat()}",
            )
            return None
        return day

    def test_matched_rule(self, raw: Any, here: DocPath) -> str | None:
        from kare_rules.compile_polars import rule_id

        known = [rule_id(c) for c in m.CATEGORIES if c in self.defined]
        if raw not in known:
            self.err(
                (*here, "matched_rule"),
                f"matched_rule {_not_one(raw, 'a rule of this file', known)}; write one of: {', '.join(known)}",
            )
            return None
        return raw

    def test_actions(self, raw: Any, here: DocPath) -> tuple[str, ...] | None:
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            self.err((*here, "actions"), "actions is a list of action ids, e.g. [renewal-check]; [] for none")
            return None
        known = sorted(self.action_ids)
        seen: set[str] = set()
        for i, a in enumerate(raw):
            if a in seen:
                self.err((*here, "actions", i), f"action '{a}' is listed twice; list it once")
            elif a not in self.action_ids:
                self.err(
                    (*here, "actions", i),
                    f"unknown action id '{a}'{did_you_mean(a, known)}; actions in these rules: "
                    f"{', '.join(known) or 'none'}",
                )
            seen.add(a)
        return tuple(raw)


NO_MOVE = "none"  # a test's `next_category: none`: no move within the horizon


def _action_ids(categories, transitions, watches=()) -> set[str]:
    """Every action id a test account could get: from a category, a transition or a watch (`tests:
    actions:`). A rule file's own watches add theirs as its `watch:` section is read."""
    return {a.id for group in (categories, transitions, watches) for x in group for a in x.actions}


def trait_refs(cond: m.Condition):
    """Every trait name a condition refers to directly."""
    if isinstance(cond, m.TraitRef):
        yield cond.name
    elif isinstance(cond, m.All | m.Any_):
        for c in cond.items:
            yield from trait_refs(c)
    elif isinstance(cond, m.Not):
        yield from trait_refs(cond.item)


def _zoned(value: Any) -> bool:
    """A date-time with a time zone or offset (2026-01-01T00:00:00Z): comparing it with the naive
    dates of the data cannot be done, so it is refused."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return False
    return isinstance(value, dt.datetime) and value.tzinfo is not None


def _listed(names: Any, limit: int = 20, sort: bool = True) -> str:
    """Names for a message, the first `limit` of them: a message stays a line, not the whole file."""
    shown = sorted(names)[:limit] if sort else list(names)[:limit]
    more = len(names) - len(shown)
    return ", ".join(map(str, shown)) + (f", … ({more} more)" if more else "")


def _chain(names: list[str]) -> str:
    """A cycle of trait names as text, shortened when it is long."""
    if len(names) > 12:
        return f"{' → '.join(names[:5])} → … ({len(names) - 1} traits) … → {' → '.join(names[-3:])}"
    return " → ".join(names)


def _as_date(value: Any, ctype: str) -> dt.date | None:
    if _zoned(value):
        return None
    if isinstance(value, dt.datetime):
        return value if ctype == "datetime" else (value.date() if value.time() == dt.time() else None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()) if ctype == "datetime" else value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if ctype == "date":
            return parsed.date() if parsed.time() == dt.time() and len(value) <= 10 else None
        return parsed
    return None


def _ids_among(raw: Any, built: list[m.Action], taken: set[str]) -> Iterator[tuple[int, str]]:
    """(position, id) of the actions written in `raw` whose id is in `taken` and that were built (a
    malformed action is reported where it is, not once more as a clash)."""
    for i, a in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(a, dict) and _hashable(a.get("id")) and a["id"] in taken and any(x.id == a["id"] for x in built):
            yield i, a["id"]


def snake_form(name: str) -> str:
    """A header as a rule file's column name would write it: lowercase, each run of other characters one
    '_' (a CRM report's 'Account ID' is account_id), a camelCase word boundary one '_' too (an API export's
    'lastLoginDate' or 'ARRValue' is last_login_date, arr_value)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")


def _without(owners: dict[str, str], taken: dict[str, str]) -> dict[str, str]:
    """`owners` less the ids already reported under `taken` (one message per clash)."""
    return {aid: whose for aid, whose in owners.items() if aid not in taken}


def implies(a: m.Condition, b: m.Condition, traits: dict[str, m.Condition]) -> bool:
    """Whether condition `a` holding means `b` holds, shown from their structure alone: sound (True is a
    proof) but not complete (False means not shown). A condition holds only when true, never on a null:
    `a` holds every condition it requires through `all` and traits, so `b` holds when each condition it
    requires is one of those, or is an `any` one of whose items is. Hash lookups, so a file of thousands
    of conditions is checked in time in proportion to its size."""
    have = _required(a, traits)
    return all(_met(x, have, traits) for x in _required(b, traits))


def _required(cond: m.Condition, traits: dict[str, m.Condition]) -> set[m.Condition]:
    """The conditions `cond` requires: itself, and through `all` and traits what those require."""
    out, todo = set(), [cond]
    while todo:
        c = todo.pop()
        if c in out:
            continue
        out.add(c)
        if isinstance(c, m.All):
            todo.extend(c.items)
        elif isinstance(c, m.TraitRef) and c.name in traits:
            todo.append(traits[c.name])
    return out


def _met(x: m.Condition, have: set[m.Condition], traits: dict[str, m.Condition]) -> bool:
    # An `all` or a known trait: what it requires is required too, and checked there.
    if x in have or isinstance(x, m.All) or (isinstance(x, m.TraitRef) and x.name in traits):
        return True
    return isinstance(x, m.Any_) and any(_required(item, traits) <= have for item in x.items)


def _hashable(value: Any) -> bool:
    """Only plain values can repeat; a list or mapping where a name belongs is the schema's to report."""
    return isinstance(value, str | int | float | bool)


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _written(value: Any) -> str:
    """A value as the rule file wrote it (true, 2026-01-01, 'text', null), not as Python shows it (True,
    datetime.date(2026, 1, 1), None)."""
    return repr(value) if isinstance(value, str) else "null" if value is None else _plain(value)


def _not_one(value: Any, what: str, known: Sequence[str] = ()) -> str:
    """'is empty' for a test field left empty (YAML null), else the value as written, 'is not WHAT' and a
    suggestion: Python's None, True or datetime.date(...) mean nothing to the author."""
    if value is None:
        return "is empty"
    hint = did_you_mean(value, known) if isinstance(value, str) and known else ""
    return f"{_written(value)} is not {what}{hint}"


def _kind(value: Any) -> str:
    return {list: "a list", int: "a number", float: "a number", bool: "true/false"}.get(type(value), repr(value))


def _tidy(message: str) -> str:
    """'did you mean 'x'?; more' reads better as 'did you mean 'x'? More'."""
    return re.sub(r"\?; ([\w'])", lambda mt: "? " + mt.group(1).upper(), message)
