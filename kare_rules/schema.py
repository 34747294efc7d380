"""The rule file's JSON Schema: where it lives, and its errors turned into located, helpful problems."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from kare_rules.errors import Problem
from kare_rules.yamlsource import Document


def schema_path(name: str) -> Traversable:
    """A file of schemas/ (`kare-rules.v1.schema.json`, `tables/runs.json`), wherever kare-rules is installed.

    The one place that knows where the schemas are: every reader goes through here. A built wheel carries
    them inside the package (kare_rules/schemas, see pyproject.toml); an editable install from a checkout
    has no such folder, and reads the top-level schemas/ that editors point at, so there is one copy to edit.
    """
    package = files("kare_rules")
    shipped = package / "schemas"
    if not shipped.is_dir() and isinstance(package, Path):
        checkout = package.parent / "schemas"
        if checkout.is_dir():
            shipped = checkout
    target = shipped
    for part in name.split("/"):
        target = target / part
    return target


RULES_SCHEMA = schema_path("kare-rules.v1.schema.json")
OVERRIDES_SCHEMA = schema_path("kare-overrides.v1.schema.json")


@cache
def schema_json(path: Traversable = RULES_SCHEMA) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """A schema `pattern` with its ECMA-262 meaning: there `$` (without the m flag) matches only at the
    very end, while Python's `$` also matches before a final newline, so 'acme\\n' would pass
    `^[a-z]+$`. An unescaped trailing `$` becomes `\\Z`."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Any:
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def _validator(path: Traversable) -> Any:
    return _Validator(schema_json(path), format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _test_file_validator() -> Any:
    """The schema of a test file beside the rules (`rules/<org>/tests/*.yaml`): one key, `tests:`, whose
    items are the rule file's own `tests:` items, so a misspelt key there gets the same message."""
    rules = schema_json(RULES_SCHEMA)
    schema = {
        "$schema": rules["$schema"],
        "$defs": rules["$defs"],
        "type": "object",
        "additionalProperties": False,
        "required": ["tests"],
        "properties": {"tests": rules["properties"]["tests"]},
    }
    return _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def name_matches(pattern: str, name: Any) -> bool:
    """Whether a name matches a schema pattern completely (ECMA `$`: no trailing newline slips through)."""
    return isinstance(name, str) and _ecma(pattern).search(name) is not None


def jsonable(value: Any) -> Any:
    """YAML gives dates; JSON Schema knows strings. Convert so the schema sees what the user wrote."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    if len(str(word)) > 100:  # difflib's cost grows with the square of the length; no name is this long
        return ""
    names = [str(c) for c in choices]
    # A name whose words are among the word's, or the other way round (`account_owner` for an input `owner`):
    # letter by letter, `account_id` is closer, but it is not what was meant. Only when one name is.
    within = [c for c in names if c and (_words_within(c, str(word)) or _words_within(str(word), c))]
    if len(within) == 1:
        return f"; did you mean '{within[0]}'?"
    match = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _words_within(part: str, whole: str) -> bool:
    """Whether the `_`-separated words of `part` come one after another in `whole`'s, as a proper part."""
    a, b = part.lower().split("_"), whole.lower().split("_")
    return len(a) < len(b) and all(a) and any(b[i : i + len(a)] == a for i in range(len(b) - len(a) + 1))


def _where(path: tuple) -> str:
    return ".".join(str(p) for p in path) if path else "the top level"


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", type(None): "empty (null)"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _message(err: ValidationError) -> tuple[str, bool]:
    """A sentence for one schema error, and whether it points at a key rather than a value."""
    path = tuple(err.absolute_path)
    hint = err.schema.get("x-hint") if isinstance(err.schema, dict) else None
    v = err.validator
    if v == "additionalProperties":
        return "; ".join(message for _, message in _unknown_keys(err)), True
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"missing required key '{missing}' in {_where(path)}; add it", False
    if v in ("enum", "const"):
        options = err.validator_value if v == "enum" else [err.validator_value]
        tip = did_you_mean(err.instance, options) if isinstance(err.instance, str) else ""
        # As the file has it: a key left empty is not 'None', nor yes/true 'True'.
        given = (
            " is empty" if err.instance is None
            else f": {str(err.instance).lower()} is not allowed" if isinstance(err.instance, bool)
            else f": {err.instance!r} is not allowed{tip}"
        )  # fmt: skip
        return f"{_where(path)}{given}; write one of: {', '.join(map(str, options))}", False
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        want = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number"}.get(want, want)
        extra = f"; {hint}" if hint else ""
        return f"{_where(path)} must be {want}, not {_type_name(err.instance)}{extra}", False
    if v == "pattern":
        return f"{_where(path)}: {err.instance!r} is not valid; {hint or 'it must match ' + err.validator_value}", False
    if v == "minimum":
        return f"{_where(path)} must be at least {err.validator_value}, not {err.instance}", False
    if v == "maximum":
        return f"{_where(path)} must be at most {err.validator_value:,}, not {err.instance:,}", False
    if v in ("minItems", "minProperties", "maxItems", "maxProperties"):
        count = len(err.instance) if isinstance(err.instance, list | dict) else 0
        if not count and v.startswith("min"):
            return f"{_where(path)} must not be empty", False
        if v == "maxProperties" and err.validator_value == 1:
            # Only a derived column has this bound: one kind per column (conditions are checked elsewhere).
            keys = ", ".join(map(str, err.instance))
            return (
                f"{_where(path)} has {count} kinds ({keys}); a derived column has one: give each its own column",
                False,
            )
        bound = "at least" if v.startswith("min") else "at most"
        noun = "items" if v.endswith("Items") else "keys"
        return f"{_where(path)} needs {bound} {err.validator_value} {noun}, not {count}", False
    if v == "format":
        return f"{_where(path)}: {err.instance!r} is not a valid {err.validator_value}; write YYYY-MM-DD", False
    if v == "propertyNames":
        return f"{_where(path)}: the name {err.instance!r} is not valid; {hint or err.message}", True
    if v == "maxLength":  # the text itself may be a megabyte: its length only
        return f"{_where(path)} has {len(err.instance):,} characters; write at most {err.validator_value}", False
    if v == "minLength":
        if isinstance(err.instance, str) and err.instance.strip():  # present, but shorter than the minimum
            return f"{_where(path)} needs at least {err.validator_value} characters, not {err.instance!r}", False
        return f"{_where(path)} must not be empty", False
    return f"{_where(path)}: {err.message}", False


def _unknown_keys(err: ValidationError, root: dict | None = None) -> list[tuple[str, str]]:
    """Each key an `additionalProperties: false` mapping does not allow, with its message. A key that
    belongs to the mapping just above it (an `actions:` indented two spaces too little, under `exit:`)
    says so, rather than suggesting a look-alike key of the wrong level ('transitions')."""
    path = tuple(err.absolute_path)
    properties = err.schema.get("properties", {})
    allowed = list(properties)
    keys = list(err.instance)
    out = []
    for extra in (k for k in keys if k not in allowed):
        above = keys[keys.index(extra) - 1] if keys.index(extra) else None
        if above in properties and extra in _resolved(properties[above], root).get("properties", {}):
            where = f"unknown key '{extra}' in {_where(path)}"
            out.append((extra, f"{where}; it is a key of '{above}' above it: indent it under '{above}'"))
            continue
        tip = did_you_mean(extra, allowed) or (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        out.append((extra, f"unknown key '{extra}' in {_where(path)}{tip}"))
    return out


def _resolved(sub: Any, root: dict | None) -> dict:
    """A sub-schema with its local `$ref` (`#/$defs/categoryRule`) followed, or {} when it cannot be."""
    for _ in range(8):
        if not isinstance(sub, dict):
            return {}
        ref = sub.get("$ref")
        if not (isinstance(ref, str) and ref.startswith("#/") and root):
            return sub
        sub = root
        for part in ref[2:].split("/"):
            sub = sub.get(part, {}) if isinstance(sub, dict) else {}
    return {}


def schema_problems(
    doc: Document,
    *,
    skip: dict[tuple, Any] | None = None,
    schema: Traversable = RULES_SCHEMA,
    test_file: bool = False,
) -> list[Problem]:
    """Every JSON Schema error of a document, located; the parts under a `skip` path prefix are left
    to the semantic checker, which explains them better. `test_file`: the document is a test file beside
    the rules, checked against the rule file's `tests:`.

    A skipped part is not even shown to the schema: it is replaced by its stand-in (a value the schema
    accepts), so a 100,000-item condition is checked once, by the checker, and the schema validator
    never recurses into a deep one."""
    skip = skip or {}
    data = doc.data
    for prefix, stand_in in skip.items():
        data = _replaced(data, prefix, stand_in)
    problems = []
    seen = set()
    validator = _test_file_validator() if test_file else _validator(schema)
    for err in validator.iter_errors(jsonable(data)):
        path = tuple(err.absolute_path)
        name_rule = "propertyNames" in err.relative_schema_path
        if name_rule:
            # jsonschema reports the mapping (and the rule inside propertyNames that failed); point at
            # the offending name itself.
            path = (*path, err.instance)
        if any(_under(path, prefix) for prefix in skip):
            continue
        if err.validator in ("anyOf", "oneOf") and err.context:
            err = min(err.context, key=lambda e: len(list(e.absolute_path)))
        if name_rule:
            hint = err.schema.get("x-hint") if isinstance(err.schema, dict) else None
            message = f"{_where(path[:-1])}: the name {err.instance!r} is not valid; {hint or err.message}"
            if err.validator == "maxLength":
                name = f"{err.instance[:20]!r}… ({len(err.instance):,} characters)"
                message = f"{_where(path[:-1])}: the name {name} is too long; write at most {err.validator_value}"
            located = [doc.problem(path, _tidy(message), key=True)]
        elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
            # One problem per unknown key, located at the key itself rather than its mapping.
            unknown = _unknown_keys(err, validator.schema)
            located = [doc.problem((*path, k), _tidy(msg), key=True) for k, msg in unknown]
        else:
            message, at_key = _message(err)
            located = [doc.problem(path, _tidy(message), key=at_key)]
        for p in located:
            if (p.line, p.column, p.message) not in seen:
                seen.add((p.line, p.column, p.message))
                problems.append(p)
    return problems


def _replaced(node: Any, prefix: tuple, stand_in: Any) -> Any:
    """`node` with the value at `prefix` ('*' matches any key or index) replaced; copies only that path."""
    if not prefix:
        return stand_in
    head, rest = prefix[0], prefix[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        return {**node, **{k: _replaced(node[k], rest, stand_in) for k in keys}} if keys else node
    if isinstance(node, list) and head == "*":
        return [_replaced(item, rest, stand_in) for item in node]
    return node


def _under(path: tuple, prefix: tuple) -> bool:
    if len(path) < len(prefix):
        return False
    return all(q == "*" or p == q for p, q in zip(path, prefix, strict=False))


def _tidy(message: str) -> str:
    """'did you mean 'x'?; more' reads better as 'did you mean 'x'? More'."""
    return re.sub(r"\?; (\w)", lambda mt: "? " + mt.group(1).upper(), message)
