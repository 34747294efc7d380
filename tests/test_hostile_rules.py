"""Hostile rule, test and overrides files (issue 8): each is refused with a located message, quickly.

Cases that could hang or eat memory run the CLI in a subprocess under a time limit and a 2 GiB
address-space limit, so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kare_rules.cli import main
from kare_rules.errors import RuleFileError
from kare_rules.loader import (
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_NODES,
    MAX_CONDITION_VALUES,
    check_rules,
    load_rules,
    organization_problems,
    organizations,
)
from kare_rules.yamlsource import MAX_FILE_BYTES, MAX_NESTING

MEMORY_LIMIT = 2 * 1024**3
TIME_LIMIT = 60  # seconds: a guard against hangs, far above what each case needs


def rule_file(org: str = "acme", *, traits: str = "", keep: str = "{n: {gt: 1}}", extra: str = "") -> str:
    """A small valid rule file; `traits` and `extra` are YAML lines added as they are."""
    return (
        f"format: kare/v1\norganization: {org}\nversion: 1.0.0\n"
        "inputs:\n  account_id: {type: string, key: true}\n  n: {type: integer}\n"
        + (f"traits:\n{traits}" if traits else "")
        + f"profiles:\n  keep:\n    when: {keep}\n"
        + "    actions:\n      - {id: renew, title: Confirm renewal, due_in_days: 30}\n"
        + extra
    )


def write_org(root: Path, org: str, text: str) -> Path:
    folder = root / "rules" / org
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kare.yaml").write_text(text, encoding="utf-8")
    return folder / "kare.yaml"


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def kare(cwd: Path, *argv: str) -> tuple[int, str]:
    """`kare ARGV` in a subprocess under the time and memory limits: exit code and all output."""
    return _python(cwd, "-m", "kare_rules.cli", *argv)


def _python(cwd: Path, *argv: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        preexec_fn=_limits,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return done.returncode, output


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def validate(capsys, *paths: str) -> tuple[int, list[str]]:
    code = main(["validate", *paths])
    return code, capsys.readouterr().out.splitlines()


# ---- alias bombs ---------------------------------------------------------------------------------

BOMB = "".join(
    f"  a{i}: &a{i} {{all: [{', '.join([f'*a{i - 1}'] * 9)}]}}\n" if i else "  a0: &a0 {n: 1}\n" for i in range(10)
)


def test_an_alias_bomb_in_a_rule_file_is_refused_at_its_first_anchor(work):
    write_org(work, "acme", rule_file(traits=BOMB, keep="a9"))
    code, output = kare(work, "validate", "rules")
    assert code == 1
    assert "rules/acme/kare.yaml:8:7: YAML anchors and aliases (&a0) are not allowed in rule files" in output


def test_an_alias_bomb_in_overrides_is_refused_before_it_expands(work):
    write_org(work, "acme", rule_file())
    bomb = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" if i else "a0: &a0 [x]\n" for i in range(10))
    (work / "rules/acme/overrides.yaml").write_text("format: kare-overrides/v1\noverrides: []\n" + bomb)
    code, output = _python(
        work,
        "-c",
        "from kare_rules.loader import load_rules; from kare_rules.overrides import load_overrides\n"
        "from kare_rules.errors import RuleFileError\n"
        "try:\n    load_overrides('rules/acme/overrides.yaml', load_rules('rules/acme'))\n"
        "except RuleFileError as e:\n    print(e)",
    )
    assert code == 0
    assert "rules/acme/overrides.yaml:3:5: YAML anchors and aliases (&a0) are not allowed" in output


# ---- conditions too big or too deep ----------------------------------------------------------------

DOUBLING = "  t0: {n: {gt: 1}}\n" + "".join(f"  t{i}: {{all: [t{i - 1}, t{i - 1}]}}\n" for i in range(1, 40))


@pytest.mark.parametrize(
    "argv",
    [
        ["test", "rules"],
        ["compile", "--rules", "rules/acme", "--dialect", "duckdb", "--table", "accounts", "--as-of", "2026-11-01"],
        ["categorize", "--rules", "rules/acme", "--input", "accounts.csv", "--output", "out.csv"],
        ["explain", "--rules", "rules/acme", "--input", "accounts.csv", "--account", "A1"],
    ],
    ids=["test", "compile", "categorize", "explain"],
)
def test_a_chain_of_traits_each_used_twice_is_refused_where_it_outgrows_the_limit(work, argv):
    write_org(work, "acme", rule_file(traits=DOUBLING, keep="t39"))
    (work / "accounts.csv").write_text("account_id,n\nA1,5\n")
    code, output = kare(work, *argv)
    assert code == 1
    # t11 (line 19) is the first trait past the limit written out (2^13 - 3 nodes); it is named once,
    # not again for t12..t39.
    assert f"rules/acme/kare.yaml:19:3: with the traits it uses written out, this condition has more than " \
        f"{MAX_CONDITION_NODES:,} parts" in output  # fmt: skip
    assert output.count("parts") == 1


def test_a_condition_nested_130_levels_deep_is_refused_at_the_level_past_the_limit(work):
    deep = "{n: 1}"
    for _ in range(130):
        deep = "{not: " + deep + "}"
    write_org(work, "acme", rule_file(keep=deep))
    compile_ = ["compile", "--rules", "rules/acme", "--dialect", "postgres", "--table", "t", "--as-of", "2026-11-01"]
    for argv in (["test", "rules"], compile_):
        code, output = kare(work, *argv)
        assert code == 1
        column = 11 + 6 * MAX_CONDITION_DEPTH  # where the 65th `{not:` starts on the `when:` line
        assert f"rules/acme/kare.yaml:9:{column}: conditions are nested more than 64 levels deep here" in output


def test_yaml_nested_thousands_of_levels_is_refused_without_exhausting_the_stack(work):
    write_org(work, "acme", rule_file() + "description: " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, output = kare(work, "validate", "rules")
    assert code == 1
    assert f"rules/acme/kare.yaml:12:{13 + MAX_NESTING}: the YAML is nested more than {MAX_NESTING} levels" in output


def test_3000_chained_traits_are_refused_past_the_depth_limit_without_recursion(work):
    chain = "  t0: {n: {gt: 1}}\n" + "".join(f"  t{i}: t{i - 1}\n" for i in range(1, 3000))
    write_org(work, "acme", rule_file(traits=chain, keep="t2999"))
    code, output = kare(work, "test", "rules")
    assert code == 1
    # t64 is the first trait nested 65 levels deep written out (line 8 holds t0).
    assert "rules/acme/kare.yaml:72:3: with the traits it uses written out, this condition is nested 65 levels " \
        "deep, over the limit of 64" in output  # fmt: skip


def test_a_cycle_of_3000_traits_is_reported_once_and_shortened(work):
    cycle = "".join(f"  t{i}: t{(i + 1) % 3000}\n" for i in range(3000))
    write_org(work, "acme", rule_file(traits=cycle, keep="t0"))
    code, output = kare(work, "validate", "rules")
    assert code == 1
    assert "traits refer to each other in a cycle: t0 → t1 → t2 → t3 → t4 → … (3000 traits) … → t2998 → t2999 → t0" \
        in output  # fmt: skip
    assert "levels deep" not in output


def test_a_2_mb_rule_file_with_a_100000_item_any_is_checked_in_one_linear_pass(work):
    items = "".join(f"        - {{n: {i}}}\n" for i in range(100_000))
    write_org(work, "acme", rule_file(keep="\n      any:\n" + items))
    assert (work / "rules/acme/kare.yaml").stat().st_size > 2_000_000
    code, output = kare(work, "validate", "rules")
    assert code == 1
    assert f"rules/acme/kare.yaml:10:7: with the traits it uses written out, this condition has more than " \
        f"{MAX_CONDITION_NODES:,} parts" in output  # fmt: skip
    assert "compare with 'in: [...]'" in output


# ---- files that are not files ----------------------------------------------------------------------


def test_a_fifo_rule_test_or_overrides_file_is_refused_without_blocking(work):
    write_org(work, "acme", rule_file())
    os.mkfifo(work / "rules/acme/overrides.yaml")
    (work / "rules/acme/tests").mkdir()
    os.mkfifo(work / "rules/acme/tests/more.yaml")
    os.mkfifo(work / "rules/acme/kare.yml")
    (work / "rules/fifo").mkdir()
    os.mkfifo(work / "rules/fifo/kare.yaml")
    code, output = kare(work, "test", "rules")
    assert code == 1
    assert "rules/acme/tests/more.yaml:1:1: this is a FIFO (named pipe), not a regular file" in output
    assert "rules/fifo/kare.yaml:1:1: this is a FIFO (named pipe), not a regular file" in output
    code, output = _python(
        work,
        "-c",
        "from kare_rules.loader import load_rules; from kare_rules.overrides import load_overrides\n"
        "from kare_rules.errors import RuleFileError\n"
        "from kare_rules.yamlsource import load_document\n"
        "print(load_document('rules/acme/overrides.yaml').problems[0])",
    )
    assert "rules/acme/overrides.yaml:1:1: this is a FIFO (named pipe), not a regular file" in output


def test_dev_zero_a_directory_and_a_huge_file_are_refused_with_the_limit_in_the_message(work):
    write_org(work, "acme", rule_file())
    (work / "rules/acme/tests/big.yaml").mkdir(parents=True)
    huge = work / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no gigabytes written, and none must be read
    code, output = kare(work, "validate", "/dev/zero", str(huge), "rules")
    assert code == 1
    assert "/dev/zero:1:1: this is a device, not a regular file" in output
    assert f"huge.yaml:1:1: the file has {MAX_FILE_BYTES + 1:,} bytes, over the limit of 4 MiB" in output
    assert "rules/acme/tests/big.yaml:1:1: this is a directory, not a regular file" in output


# ---- organizations are their own directories --------------------------------------------------------


@pytest.fixture
def linked(work) -> Path:
    """rules/ with cloudnine, a symlinked directory evil -> cloudnine and a symlinked kare.yaml."""
    write_org(work, "cloudnine", rule_file("cloudnine"))
    (work / "rules/evil").symlink_to("cloudnine")
    (work / "rules/sneaky").mkdir()
    (work / "rules/sneaky/kare.yaml").symlink_to("../cloudnine/kare.yaml")
    return work


def test_a_symlinked_organization_is_not_an_organization(linked):
    assert organizations(linked / "rules") == ["cloudnine"]
    messages = [str(p) for p in organization_problems(linked / "rules")]
    assert messages == [
        "rules/evil/kare.yaml:1:1: rules/evil is a symbolic link (to cloudnine); an organization's rules live in "
        "its own directory: copy them there instead of linking",
        "rules/sneaky/kare.yaml:1:1: rules/sneaky/kare.yaml is a symbolic link (to ../cloudnine/kare.yaml); an "
        "organization's rules live in its own directory: copy them there instead of linking",
    ]


def test_the_dagster_partitions_are_the_loaders_organizations(linked):
    from pipelines.kare.partitions import organizations as partition_orgs

    assert partition_orgs(linked / "rules") == ["cloudnine"]


@pytest.mark.parametrize("org", ["evil", "sneaky"])
def test_loading_a_symlinked_organization_is_refused_before_reading(linked, org):
    with pytest.raises(RuleFileError) as caught:
        load_rules(linked / "rules" / org)
    assert "is a symbolic link" in str(caught.value)
    assert str(caught.value).startswith(f"rules/{org}/kare.yaml:1:1: ")


def test_validate_reports_symlinked_and_hard_linked_organizations(linked, capsys):
    (linked / "rules/twin").mkdir()
    os.link(linked / "rules/cloudnine/kare.yaml", linked / "rules/twin/kare.yaml")
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines[-1] == "0 valid, 4 invalid"
    same = "rules/cloudnine/kare.yaml, rules/twin/kare.yaml are one and the same file (a hard link)"
    assert f"rules/cloudnine/kare.yaml:1:1: {same}; each organization needs its own rule file" in lines
    assert "rules/twin/kare.yaml:2:15: organization 'cloudnine' must equal its directory name 'twin'; write " \
        "'organization: twin' or move the file to rules/cloudnine/kare.yaml" in lines  # fmt: skip
    assert organizations(linked / "rules") == []


def test_a_directory_named_with_a_newline_does_not_pass_validate(work, capsys):
    write_org(work, "acme\n", rule_file("acme"))
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines[0] == (
        "rules/acme\\n/kare.yaml:1:1: the directory name 'acme\\n' is not an organization name (lowercase letters, "
        "digits and '-', at most 64): an organization is its directory's name; rename the directory"
    )
    assert lines[1:] == ["0 valid, 1 invalid"]
    assert organizations(work / "rules") == []


# ---- names match their pattern completely -----------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("organization: acme", 'organization: "acme\\n"', "2:15: organization: 'acme\\n' is not valid"),
        ("version: 1.0.0", 'version: "1.0.0\\n"', "3:10: version: '1.0.0\\n' is not valid"),
        ("id: renew", 'id: "renew\\n"', "13:14: profiles.keep.actions.0.id: 'renew\\n' is not valid"),
        ("  n: {type", '  "n\\n": {type', "6:3: inputs: the name 'n\\n' is not valid"),
        ("traits:\n  big:", 'traits:\n  "big\\n":', "8:3: the trait name 'big\\n' is not valid"),
    ],
    ids=["organization", "version", "action-id", "input", "trait"],
)
def test_a_name_with_a_trailing_newline_is_refused(work, old, new, message):
    text = rule_file(traits="  big: {n: {gt: 100}}\n", keep="big").replace(old, new)
    path = write_org(work, "acme", text)
    _, problems = check_rules(path)
    assert any(str(p).startswith(f"rules/acme/kare.yaml:{message}") for p in problems), problems


# ---- due_in_days is bounded -------------------------------------------------------------------------


def test_due_in_days_over_ten_years_is_refused_in_profiles_exit_and_transitions(work):
    text = rule_file(
        extra="exit:\n  when: {n: 0}\n  actions: [{id: bye, title: Exit, due_in_days: 3651}]\n"
        "precedence: [exit, keep]\n"
        "transitions:\n  - {from: keep, to: exit, actions: [{id: why, title: Why, due_in_days: "
        + "1"
        + "0" * 30
        + "}]}\n"
    ).replace("due_in_days: 30", "due_in_days: 99999999999")
    _, problems = check_rules(write_org(work, "acme", text))
    assert [str(p) for p in problems] == [
        "rules/acme/kare.yaml:11:58: profiles.keep.actions.0.due_in_days must be at most 3,650, not 99,999,999,999",
        "rules/acme/kare.yaml:14:49: exit.actions.0.due_in_days must be at most 3,650, not 3,651",
        "rules/acme/kare.yaml:17:73: transitions.0.actions.0.due_in_days must be at most 3,650, "
        "not 1,000,000,000,000,000,000,000,000,000,000",
    ]


def test_due_in_days_of_ten_years_is_allowed(work):
    rules = load_rules(write_org(work, "acme", rule_file().replace("due_in_days: 30", "due_in_days: 3650")))
    assert rules.categories["keep"].actions[0].due_in_days == 3650


# ---- values and names that broke the engines ----------------------------------------------------------


def test_a_date_time_with_a_time_zone_is_refused_with_a_hint_to_write_a_date(work):
    text = rule_file(keep="{seen: {gte: 2026-01-01T00:00:00Z}}").replace(
        "  n: {type: integer}\n",
        "  n: {type: integer}\n  seen: {type: datetime, min: 2020-01-01, max: '2030-01-01T00:00:00+02:00'}\n",
    )
    _, problems = check_rules(write_org(work, "acme", text))
    messages = [str(p) for p in problems]
    assert any(
        m.startswith("rules/acme/kare.yaml:7:") and "2030-01-01T00:00:00+02:00 carries a time zone" in m
        for m in messages
    ), messages
    assert any(
        m.startswith("rules/acme/kare.yaml:10:") and "carries a time zone; 'seen' compares dates as written" in m
        for m in messages
    ), messages


def test_a_lone_surrogate_escape_is_a_located_error(work, capsys):
    write_org(work, "acme", rule_file().replace("title: Confirm renewal", 'title: "Confirm \\ud800 renewal"'))
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines[0].startswith("rules/acme/kare.yaml:11:")
    assert "invalid Unicode character escape" in lines[0]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("account_id: {type: string, key: true}", "category: {type: string, key: true}",
         "5:3: the input column 'category' has the name of a result column"),
        ("  n: {type: integer}", "  n: {type: integer}\n  reason: {type: string}",
         "7:3: the input column 'reason' has the name of a result column"),
        ("  n: {type: integer}", "  n: {type: integer}\n  _kare_row: {type: integer}",
         "7:3: the input column '_kare_row' starts with '_'"),
        # The previous run's values are keyed by account_id: a trend column of that name would collide.
        ("account_id: {type: string, key: true}\n  n: {type: integer}",
         "id: {type: string, key: true}\n  account_id: {type: integer}\n  n: {type: integer}\n"
         "derived:\n  grew: {change_of: account_id}",
         "9:21: change_of cannot read 'account_id': it is the key or named like the key"),
        ("account_id: {type: string, key: true}\n  n: {type: integer}",
         "account_id: {type: integer, key: true}\n  n: {type: integer}\nderived:\n  grew: {pct_change_of: account_id}",
         "8:25: pct_change_of cannot read 'account_id'"),
    ],
    ids=["key-category", "reason", "_kare_row", "trend-account_id", "trend-key"],
)  # fmt: skip
def test_a_column_named_like_an_engine_column_is_a_located_error(work, old, new, message):
    _, problems = check_rules(write_org(work, "acme", rule_file().replace(old, new)))
    assert any(str(p).startswith(f"rules/acme/kare.yaml:{message}") for p in problems), problems


def test_the_pure_python_parser_gives_the_same_documents_and_positions(monkeypatch):
    """Where libyaml is missing, PyYAML's own parser stands in: same data, same positions."""
    from kare_rules import yamlsource

    files = sorted(Path(__file__).resolve().parent.parent.glob("rules/*/kare.yaml"))
    assert files
    with_c = [yamlsource.load_document(f) for f in files]
    monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    for c_doc, f in zip(with_c, files, strict=True):
        py_doc = yamlsource.load_document(f)
        assert (py_doc.data, py_doc.value_at, py_doc.key_at, py_doc.problems) == (
            c_doc.data,
            c_doc.value_at,
            c_doc.key_at,
            [],
        )


def test_a_lone_surrogate_from_the_pure_python_parser_is_a_located_error(monkeypatch):
    """PyYAML's own parser accepts "\\ud800", which no UTF-8 digest can encode: it is refused where it is."""
    from kare_rules import yamlsource

    monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    doc = yamlsource.parse_text('a: 1\nb: "x\\ud800"\n', "rules/acme/kare.yaml")
    assert [str(p) for p in doc.problems] == [
        "rules/acme/kare.yaml:2:4: this text holds '\\ud800', a lone surrogate that is not a character; remove "
        "the \\u escape or write the character itself"
    ]


def test_thousands_of_mistakes_among_thousands_of_names_are_checked_in_linear_time(work):
    """Suggestions ('did you mean') and allowed-value checks compare a word with every name: with
    10,000 of each that would be 100 million comparisons. Each mistake is still reported, located."""
    k = 10_000
    allowed = ", ".join(f"v{i}" for i in range(k))
    unknown = "".join(f"  t{i}: u{i}\n" for i in range(k))
    not_allowed = ", ".join(f"w{i}" for i in range(k))
    text = rule_file(traits=unknown, keep=f"{{s: {{in: [{not_allowed}]}}}}").replace(
        "  n: {type: integer}\n", f"  n: {{type: integer}}\n  s: {{type: string, allowed: [{allowed}]}}\n"
    )
    write_org(work, "acme", text)
    code, output = kare(work, "validate", "rules")
    assert code == 1
    lines = output.splitlines()
    assert len(lines) == 2 * k + 1
    assert lines[0] == "rules/acme/kare.yaml:9:7: unknown trait 'u0'"  # no suggestion among 10,000 names
    assert "'w9999' is not an allowed value of 's'; allowed: v0, v1, v2" in output
    assert "… (9980 more)" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: !!python/object:os.system x\n",
            "1:4: the YAML tag 'tag:yaml.org,2002:python/object:os.system' is not used in rule files; remove it",
        ),
        ("a: !!set {x}\n", "1:4: the YAML tag 'tag:yaml.org,2002:set' is not used in rule files; remove it"),
        ("a: 1\n---\nb: 2\n", "2:1: a rule file holds one YAML document; remove the second '---'"),
        ("---\n", "1:1: the file is empty; it should start with 'format: kare/v1'"),
        ("a: " + "9" * 5000 + "\n", "1:4: '" + "9" * 40 + "…' cannot be read as a number; quote it if it is text"),
        ("a: !!binary aGk=\n", "1:4: the YAML tag 'tag:yaml.org,2002:binary' is not used in rule files; remove it"),
        (
            'a: 1\nb: ["é€", "x\x7fy"]\n',
            "2:13: this line holds the character U+007F (\\x7f), which YAML does not allow in a file; remove it, or "
            "write it as \\u007f inside double quotes",
        ),
    ],
    ids=["python-object", "set", "two-documents", "only-a-marker", "5000-digits", "binary", "control-character"],
)
@pytest.mark.parametrize("parser", ["libyaml", "python"])
def test_yaml_beyond_plain_data_is_a_located_error(text, message, parser, monkeypatch):
    # A control character (DEL pasted from a spreadsheet) was placed at 1:1 with libyaml's byte offset
    # ('position 1059'), and PyYAML's own reader raised it as a traceback; !!binary read as "b'hi'".
    from kare_rules import yamlsource

    if parser == "python":
        monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    doc = yamlsource.parse_text(text, "rules/acme/kare.yaml")
    assert [str(p) for p in doc.problems] == [f"rules/acme/kare.yaml:{message}"]


def test_an_equals_sign_reads_as_text_and_gets_the_operator_to_write(work, capsys):
    # YAML 1.1 reads a plain '=' as its 'value' type: 'the YAML tag None is not used in rule files' hid the
    # operator word a SQL habit needs ({n: {=: 5}} is {n: {eq: 5}}), and an allowed value '=' was refused.
    write_org(work, "acme", rule_file(keep="{n: {=: 5}}"))
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines[0].startswith("rules/acme/kare.yaml:9:16: unknown operator '='; write {n: {eq: 5}}"), lines
    text = rule_file(keep="{s: {in: [=, b]}}").replace(
        "  n: {type: integer}\n", "  n: {type: integer}\n  s: {type: string}\n"
    )
    write_org(work, "acme", text)
    assert validate(capsys, "rules") == (0, ["1 valid, 0 invalid"])


def test_data_columns_named_like_the_engines_own_are_refused_or_left_alone(work, capsys):
    """`_kare_row` numbers rows during validation: a data column of that name is refused, named. Other
    undeclared columns (`_row`, `_mask`) are not read at all, whatever their names."""
    write_org(work, "acme", rule_file())
    (work / "a.csv").write_text("account_id,n,_kare_row\nA1,5,x\n")
    (work / "b.csv").write_text("account_id,n,_row,_mask,_kare_n0\nA1,5,x,y,z\n")
    base = ["--rules", "rules/acme", "--as-of", "2026-11-01"]
    assert main(["categorize", *base, "--input", "a.csv", "--output", "a.out.csv"]) == 1
    assert capsys.readouterr().err.startswith(
        "kare categorize: the input has a column named '_kare_row', the name kare gives its own row numbers"
    )
    assert main(["categorize", *base, "--input", "b.csv", "--output", "b.out.csv"]) == 0
    assert (work / "b.out.csv").read_text().splitlines()[1].startswith("A1,keep,profiles.keep,keep: n > 1 [5]")
    assert main(["explain", *base, "--input", "b.csv", "--account", "A1"]) == 0
    assert "✓ n > 1   [n = 5]" in capsys.readouterr().out


def test_in_lists_past_the_value_limit_are_refused_counting_each_use_of_a_trait(work):
    """SQL writes out every listed value of every use of a trait: a 30,000-value list used twice is
    60,000 literals, past the limit; used once it is allowed."""
    values = ", ".join(str(i) for i in range(30_000))
    trait = f"  targeted: {{n: {{in: [{values}]}}}}\n"
    allowed = check_rules(write_org(work, "once", rule_file("once", traits=trait, keep="targeted")))
    assert allowed[1] == []
    twice = rule_file("twice", traits=trait, keep="{any: [targeted, {not: targeted}]}")
    _, problems = check_rules(write_org(work, "twice", twice))
    assert [str(p) for p in problems] == [
        f"rules/twice/kare.yaml:11:11: with the traits it uses written out, this condition lists more than "
        f"{MAX_CONDITION_VALUES:,} values in 'in'/'not_in' (a trait used twice counts twice); a list this long "
        "belongs in the data, e.g. as a boolean column"
    ]


def test_text_from_rule_files_and_data_is_inert_in_the_pull_request_comment():
    # A '<!--' in an action title hid the rest of the comment on GitHub (the failing test, the version
    # check); a test name could load an image from anywhere; a backtick in a value or account id closed
    # its code span and let what follows be HTML; an @team in a title notified that team.
    import polars as pl
    from markdown_it import MarkdownIt

    from kare_rules.diff import MARKER, diff_rules, render_markdown
    from kare_rules.loader import load_rules_text

    def rules(title: str, value: str) -> str:
        return (
            "format: kare/v1\norganization: acme\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
            "  plan: {type: string}\nprecedence: [exit, keep]\n"
            f"exit:\n  when: {{plan: {{in: [{value!r}]}}}}\n  actions:\n"
            f"    - {{id: a1, title: {title!r}, due_in_days: 3, priority: high}}\n"
            "profiles:\n  keep: {when: {not: {plan: {in: [zzz]}}}}\n"
            "tests:\n  - name: 't ![x](https://evil.example/p.png) <img src=x>'\n    as_of: 2026-01-01\n"
            "    account: {account_id: A, plan: zzz}\n    expect: exit\n"
        )

    before = load_rules_text(rules("Call", "b"), "before/acme/kare.yaml")
    title = "Call @acme/sales (acme/crm#12, #34) <!-- the rest is hidden"
    after = load_rules_text(rules(title, "b` <!-- x"), "after/acme/kare.yaml")
    accounts = pl.DataFrame({"account_id": ["x` <!-- y", "z"], "plan": ["b` <!-- x", "b"]})
    text = render_markdown([diff_rules(before, after, accounts, "2026-01-01")], base="origin/main")
    # shown as written, mentioning nobody and referring to no issue
    assert "Call @\u200bacme/sales (acme/crm#\u200b12, #\u200b34) \\<!-- the rest is hidden" in text, text
    assert not re.search(r"(?<!\w)@\w", text), text  # GitHub would notify @acme/sales at each comment
    assert not re.search(r"#\d", text), text  # and note a reference in issues 12 and 34 at each comment

    def kinds(tokens) -> set[str]:
        return {t.type for t in tokens} | {k for t in tokens if t.children for k in kinds(t.children)}

    marker, rest = text.split("\n", 1)
    assert marker == MARKER  # the one HTML comment of the report: CI finds its comment by it
    found = kinds(MarkdownIt("commonmark").enable("table").parse(rest))
    assert not found & {"html_inline", "html_block", "image", "link_open"}, found
    assert "Version check failed for acme" in text.splitlines()[-1]


def test_an_at_sign_written_as_an_html_entity_mentions_nobody_in_the_pull_request_comment():
    # '&#64;acme/sales' (or '&commat;') in a title or a value is shown as '@acme/sales': GitHub finds mentions
    # in the shown text, so the team would be notified each time the comment is posted.
    import polars as pl
    from markdown_it import MarkdownIt

    from kare_rules.diff import diff_rules, render_markdown
    from kare_rules.loader import load_rules_text

    def rules(title: str, value: str) -> str:
        return (
            "format: kare/v1\norganization: acme\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
            "  plan: {type: string}\nprecedence: [exit, keep]\n"
            f"exit:\n  when: {{plan: {{in: [{value!r}]}}}}\n  actions:\n"
            f"    - {{id: a1, title: {title!r}, due_in_days: 3, priority: high}}\n"
            "profiles:\n  keep: {when: {not: {plan: {in: [zzz]}}}}\n"
        )

    before = load_rules_text(rules("Call", "b"), "before/acme/kare.yaml")
    after = load_rules_text(rules("Call &#64;acme/sales", "&commat;acme/ops"), "after/acme/kare.yaml")
    accounts = pl.DataFrame({"account_id": ["&#x40;acme/cs", "z"], "plan": ["&commat;acme/ops", "b"]})
    text = render_markdown([diff_rules(before, after, accounts, "2026-01-01")], base="origin/main")
    html = MarkdownIt("commonmark").enable("table").render(text)
    shown = re.sub(r"<[^>]*>", "", html).replace("&amp;", "&")  # the text a reader sees (and GitHub scans)
    assert "Call &#\u200b64;acme/sales" in shown, shown  # the title as written (no issue 64 referred to)
    assert not re.search(r"(?<!\w)@\w", shown), shown


def test_line_breaks_and_escape_codes_from_a_rule_file_are_shown_escaped(work, capsys):
    # In the CI log a line of its own starting with '::' is a GitHub workflow command (kare-impact.yml runs
    # kare validate and kare test on a pull request's rule files); in a terminal, ESC rewrites the screen.
    hostile = "x\\n::warning::injected\\e[2J"
    test = (
        f'tests:\n  - {{name: "{hostile}", as_of: 2026-01-01, expect: keep,'
        f' account: {{account_id: "A", n: 0, s: "{hostile}"}}}}\n'
    )
    text = rule_file(keep='{s: "v\\n::error::no"}', extra=test).replace(
        "  n: {type: integer}\n", "  n: {type: integer}\n  s: {type: string}\n"
    )
    write_org(work, "acme", text)
    assert main(["test", "rules"]) == 1
    shown = capsys.readouterr().out
    dup = text.replace("tests:\n", "tests:\n" + test.removeprefix("tests:\n"))
    write_org(work, "acme", dup)
    code, lines = validate(capsys, "rules")
    assert code == 1 and "duplicate test name 'x\\n::warning::injected\\x1b[2J'" in "\n".join(lines)
    for line in [*shown.splitlines(), *lines]:
        assert not line.lstrip().startswith("::") and "\x1b" not in line, line
    assert "FAIL rules/acme/kare.yaml:14 x\\n::warning::injected\\x1b[2J" in shown, shown
    assert "s = 'v\\n::error::no'" in shown, shown


@pytest.mark.parametrize("linked", ["tests/outside.yaml", "overrides.yaml", "tests"])
def test_a_linked_test_or_overrides_file_is_refused_before_it_is_read(linked, work, capsys):
    # As a linked rule file: in a pull request the link would read a file from anywhere on the machine
    # that checks it, and its keys would be quoted back in the problems.
    write_org(work, "acme", rule_file())
    outside = work / "elsewhere"
    (outside / "tests").mkdir(parents=True)
    (outside / "tests" / "outside.yaml").write_text("secret_key_name: 1\n")
    (outside / "overrides.yaml").write_text("secret_key_name: 1\n")
    target = work / "rules" / "acme" / linked
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside / linked)
    code, lines = validate(capsys, "rules")
    shown = "\n".join(lines)
    assert code == 1 and "secret_key_name" not in shown, shown
    assert f"rules/acme/{linked} is a symbolic link (to {outside / linked})" in shown, shown


def test_a_number_with_an_exponent_yaml_reads_as_text_gets_the_spelling_it_reads(work, capsys):
    # YAML reads 1e5 as the text '1e5' (a number needs a '.' and a signed exponent: 1.0e+5); "write a
    # number, not '1e5'" left the author without a way to write one.
    text = rule_file(keep="{n: {gte: 1e5}}").replace("{type: integer}", "{type: integer, max: 2E+3}")
    write_org(work, "acme", text)
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines[:2] == [
        "rules/acme/kare.yaml:6:27: 'n' is an integer column; YAML reads 2E+3 as text: write 2.0e+3",
        "rules/acme/kare.yaml:9:21: 'n' is an integer column; YAML reads 1e5 as text: write 1.0e+5",
    ]
    write_org(work, "acme", rule_file(keep="{n: {gte: 1.0e+5}}"))
    assert validate(capsys, "rules") == (0, ["1 valid, 0 invalid"])


def test_a_long_in_list_or_value_is_cut_short_in_every_accounts_reason():
    # Every account of a category carries its reason: a 1 MB rule file with an `in` list of 50,000 values
    # gave each account a 1 MB reason (400 accounts took 1 GB), so a run of ordinary size ran out of memory.
    import polars as pl

    from kare_rules.engine import categorize
    from kare_rules.loader import load_rules_text

    values = ", ".join(f"v{i:05d}" for i in range(MAX_CONDITION_VALUES))
    text = rule_file(keep=f"{{s: {{in: [{values}]}}}}").replace(
        "  n: {type: integer}\n", "  n: {type: integer}\n  s: {type: string}\n"
    )
    text += "exit:\n  when: {s: {ne: " + "x" * 5000 + "}}\n"
    text += "  actions: [{id: bye, title: Exit review, due_in_days: 7}]\n"
    rules = load_rules_text(text.replace("profiles:", "precedence: [keep, exit]\nprofiles:"), "rules/acme/kare.yaml")
    accounts = pl.DataFrame({"account_id": ["A", "B"], "n": [1, 1], "s": ["v00007", "w"]})
    reasons = dict(categorize(rules, accounts, "2026-01-01").select("account_id", "reason").iter_rows())
    assert reasons["A"].startswith("keep: s in ['v00000', 'v00001', "), reasons["A"]
    assert reasons["A"].endswith(f"'v00016', … {MAX_CONDITION_VALUES - 17:,} more] ['v00007']"), reasons["A"]
    assert reasons["B"] == "exit: s ≠ '" + "x" * 194 + "… ['w']"
    from kare_rules.compile_polars import reason_predicate
    from kare_rules.model import Predicate

    assert reason_predicate(Predicate("f", "lt", 1e300)) == f"f < {int(1e300)}"  # a number is never cut
    assert reason_predicate(Predicate("s", "in", ("x" * 300, "y"))) == "s in [2 values]"


def test_a_megabyte_title_or_a_long_name_is_refused_with_its_length_only(work, capsys):
    # Every account of a category gets its actions' titles: a 1 MB title made a 1 MB action_queue row per
    # account, and 2,000 accounts ran the run out of memory.
    title = "T" * 1_000_000
    text = rule_file(keep="{" + "n" * 129 + ": {gt: 1}}", extra="").replace("title: Confirm renewal", f"title: {title}")
    text = text.replace("  n: {type: integer}", "  " + "n" * 129 + ": {type: integer}").replace(
        "id: renew", "id: " + "r" * 65
    )
    write_org(work, "acme", text)
    code, lines = validate(capsys, "rules")
    assert code == 1
    assert lines == [
        "rules/acme/kare.yaml:6:3: inputs: the name 'nnnnnnnnnnnnnnnnnnnn'… (129 characters) is too long; "
        "write at most 128",
        "rules/acme/kare.yaml:11:14: profiles.keep.actions.0.id has 65 characters; write at most 64",
        "rules/acme/kare.yaml:11:88: profiles.keep.actions.0.title has 1,000,000 characters; write at most 300",
        "0 valid, 1 invalid",
    ]
