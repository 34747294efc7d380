"""kare diff: rule changes read as trees, their impact on accounts, the version rule, and the CI around it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from kare_rules.cli import main
from kare_rules.diff import (
    MARKER,
    QUARANTINED,
    check_version,
    diff_rules,
    render_markdown,
    render_org_markdown,
    rule_changes,
    version_key,
)
from kare_rules.loader import load_rules

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 1)

BASE = """\
# yaml-language-server: $schema=../../schemas/kare-rules.v1.schema.json
format: kare/v1
organization: acme
version: 1.4.0
description: Acme test rules
owners: [revops@acme.example]

inputs:
  account_id:     {type: string, key: true}
  owner:          {type: string, nullable: true}
  is_customer:    {type: boolean}
  value_last_90d: {type: float, min: 0}
  segment:        {type: string, allowed: [smb, enterprise]}
  churned_on:     {type: date, nullable: true}

derived:
  days_since_churn: {days_since: churned_on}

traits:
  paying:           {is_customer: true}
  recently_churned: {days_since_churn: {lte: 365}}

precedence: [exit, expand, keep, recapture]

exit:
  when: {all: [paying, {value_last_90d: {lt: 100}}]}
  actions:
    - {id: exit-review, title: Decide exit, due_in_days: 14, priority: high}

profiles:
  expand:
    description: The big ones
    when: {all: [paying, {value_last_90d: {gte: 35000}}]}
    actions:
      - {id: exec-qbr, title: Quarterly review, due_in_days: 30, priority: high, owner: owner}
  keep:
    when: paying
    actions:
      - {id: renewal-check, title: Confirm renewal, due_in_days: 60}
  recapture:
    when: {all: [{not: paying}, recently_churned]}
    actions:
      - {id: win-back, title: Win-back call, due_in_days: 21}

transitions:
  - {from: keep, to: recapture, actions: [{id: churn-review, title: Churn review, due_in_days: 7}]}
  - {from: expand, to: keep, actions: [{id: health-dip, title: Health dip, due_in_days: 14}]}

tests:
  - name: big paying account is expand
    account: {account_id: T1, is_customer: true, value_last_90d: 50000}
    as_of: 2026-11-01
    expect: expand
  - name: paying account of 32000 is keep
    account: {account_id: T2, is_customer: true, value_last_90d: 32000}
    as_of: 2026-11-01
    expect: keep
"""


def edit(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def write_rules(root: Path, text: str, org: str = "acme"):
    path = root / org / "kare.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("organization: acme", f"organization: {org}"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, name: str = "x"):
    return load_rules(write_rules(tmp_path / name, text))


def accounts(n: int = 40) -> pl.DataFrame:
    """Account i: value i*2000, a customer unless i is a multiple of 4; non-customers churned i*20 days ago."""
    return pl.DataFrame(
        {
            "account_id": [f"A{i:03d}" for i in range(n)],
            "owner": [f"rep-{i % 3}" for i in range(n)],
            "is_customer": [i % 4 != 0 for i in range(n)],
            "value_last_90d": [float(i * 2000) for i in range(n)],
            "segment": ["enterprise" if i % 5 == 0 else "smb" for i in range(n)],
            "churned_on": [AS_OF - dt.timedelta(days=i * 20) if i % 4 == 0 else None for i in range(n)],
        }
    )


THRESHOLD = ("{value_last_90d: {gte: 35000}}", "{value_last_90d: {gte: 30000}}")


# ---- rule changes in plain words ----------------------------------------------------------------


def test_a_changed_threshold_reads_as_old_and_new_value(tmp_path):
    changes = rule_changes(load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, THRESHOLD), "b"))
    assert [(c.kind, c.target, c.name, c.text) for c in changes] == [
        ("threshold_changed", "category", "expand", "expand: value_last_90d ≥ 35000 → ≥ 30000")
    ]
    assert changes[0].before == "(paying and value_last_90d ≥ 35000)"
    assert changes[0].after == "(paying and value_last_90d ≥ 30000)"


def test_traits_added_removed_and_changed_show_before_and_after(tmp_path):
    after = edit(
        BASE,
        ("  recently_churned: {days_since_churn: {lte: 365}}", "  recently_churned: {days_since_churn: {lte: 180}}"),
        (
            "  paying:           {is_customer: true}",
            "  paying:           {is_customer: true}\n  vip: {segment: enterprise}",
        ),
        ("when: paying\n", "when: {all: [paying, {not: vip}]}\n"),
    )
    changes = rule_changes(load(tmp_path, BASE, "a"), load(tmp_path, after, "b"))
    texts = [c.text for c in changes]
    assert "trait recently_churned: days_since_churn ≤ 365 → ≤ 180 (used by recapture)" in texts
    assert "trait vip added: segment = 'enterprise' (used by keep)" in texts
    assert "keep: added condition not (vip)" in texts
    changed = next(c for c in changes if c.name == "recently_churned")
    assert (changed.before, changed.after) == ("days_since_churn ≤ 365", "days_since_churn ≤ 180")

    removed = rule_changes(load(tmp_path, after, "c"), load(tmp_path, BASE, "d"))
    assert any(
        c.kind == "trait_removed" and c.text == "trait vip removed (was segment = 'enterprise')" for c in removed
    )
    # A trait no condition names changes nothing: usually the author forgot to use it, which the reviewer sees.
    unused = edit(
        BASE, ("  paying:           {is_customer: true}", "  paying: {is_customer: true}\n  vip: {segment: smb}")
    )
    texts = [c.text for c in rule_changes(load(tmp_path, BASE, "e"), load(tmp_path, unused, "f"))]
    assert texts == [
        "trait vip added: segment = 'smb' (used by no category yet: it moves no account until a condition names it)"
    ]


def test_actions_added_removed_and_changed(tmp_path):
    after = edit(
        BASE,
        (
            "{id: exec-qbr, title: Quarterly review, due_in_days: 30, priority: high, owner: owner}",
            "{id: exec-qbr, title: Executive review, due_in_days: 21, priority: medium}",
        ),
        (
            "      - {id: renewal-check, title: Confirm renewal, due_in_days: 60}\n",
            "      - {id: nps, title: Ask NPS, due_in_days: 9}\n",
        ),
        (
            "actions: [{id: churn-review, title: Churn review, due_in_days: 7}]",
            "actions: [{id: churn-review, title: Churn review, due_in_days: 7}, "
            "{id: call, title: Call, due_in_days: 2}]",
        ),
    )
    by_name = {(c.kind, c.name): c.text for c in rule_changes(load(tmp_path, BASE, "a"), load(tmp_path, after, "b"))}
    assert by_name == {
        ("action_changed", "expand/exec-qbr"): "expand: action exec-qbr: title 'Quarterly review' → "
        "'Executive review', due_in_days 30 → 21, priority high → medium, owner owner → none",
        ("action_added", "keep/nps"): "keep: action nps added: 'Ask NPS', due in 9 days, medium priority",
        ("action_removed", "keep/renewal-check"): "keep: action renewal-check removed",
        ("action_added", "keep → recapture"): "transition keep → recapture: action call added: 'Call', due in 2 days, "
        "medium priority",
    }


def test_precedence_inputs_derived_and_transitions(tmp_path):
    after = edit(
        BASE,
        ("precedence: [exit, expand, keep, recapture]", "precedence: [expand, exit, keep, recapture]"),
        (
            "  churned_on:     {type: date, nullable: true}",
            "  churned_on:     {type: date, nullable: true}\n  region: {type: string, nullable: true}",
        ),
        (
            "segment:        {type: string, allowed: [smb, enterprise]}",
            "segment:        {type: string, nullable: true, allowed: [smb, enterprise, mid]}",
        ),
        ("days_since_churn: {days_since: churned_on}", "days_since_churn: {days_until: churned_on}"),
        ("  - {from: expand, to: keep, actions: [{id: health-dip, title: Health dip, due_in_days: 14}]}\n", ""),
    )
    texts = [(c.kind, c.text) for c in rule_changes(load(tmp_path, BASE, "a"), load(tmp_path, after, "b"))]
    assert texts == [
        ("input_added", "input region added (string, nullable)"),
        ("input_changed", "input segment: nullable false → true, allowed +'mid'"),
        ("derived_changed", "derived days_since_churn: days_since(churned_on) → days_until(churned_on)"),
        (
            "precedence_changed",
            "precedence exit → expand → keep → recapture became expand → exit → keep → recapture (first match wins)",
        ),
        ("transition_removed", "transition expand → keep removed"),
    ]


def test_removing_an_input_or_a_category_is_breaking_and_needs_a_major_bump(tmp_path):
    no_segment = edit(BASE, ("  segment:        {type: string, allowed: [smb, enterprise]}\n", ""))
    no_recapture = edit(
        BASE,
        ("precedence: [exit, expand, keep, recapture]", "precedence: [exit, expand, keep]"),
        (
            "  recapture:\n    when: {all: [{not: paying}, recently_churned]}\n    actions:\n"
            "      - {id: win-back, title: Win-back call, due_in_days: 21}\n",
            "",
        ),
        ("  - {from: keep, to: recapture, actions: [{id: churn-review, title: Churn review, due_in_days: 7}]}\n", ""),
    )
    before = load(tmp_path, BASE, "a")
    for i, (text, kind) in enumerate([(no_segment, "input_removed"), (no_recapture, "category_removed")]):
        minor = load(tmp_path, edit(text, ("version: 1.4.0", "version: 1.5.0")), f"m{i}")
        changes = rule_changes(before, minor)
        assert [c.kind for c in changes if c.breaking] == [kind]
        check = check_version(before, minor, changes)
        assert (check.ok, check.required, check.suggested_version) == (False, "major", "2.0.0")
        assert "write version: 2.0.0" in check.message
        major = load(tmp_path, edit(text, ("version: 1.4.0", "version: 2.0.0")), f"M{i}")
        assert check_version(before, major, rule_changes(before, major)).ok


# ---- the digest ---------------------------------------------------------------------------------


def test_the_digest_ignores_formatting_key_order_comments_prose_owners_and_tests(tmp_path):
    reformatted = edit(
        BASE,
        ("  is_customer:    {type: boolean}\n", ""),
        (
            "  churned_on:     {type: date, nullable: true}",
            "  churned_on:\n    nullable: true   # a comment\n    type: date\n  is_customer:\n    type: boolean",
        ),
        (
            "  paying:           {is_customer: true}\n  recently_churned: {days_since_churn: {lte: 365}}",
            "  recently_churned: {days_since_churn: {lte: 365}}\n  paying: {is_customer: {eq: true}}",
        ),
        ("description: Acme test rules", "description: Something else entirely"),
        ("owners: [revops@acme.example]", "owners: [someone@acme.example, other@acme.example]"),
        ("    description: The big ones\n", "    description: Changed prose\n"),
        ("format: kare/v1\n", "# a new comment\nformat: kare/v1\n"),
        (
            "    expect: keep\n",
            "    expect: keep\n  - name: extra\n    account: {account_id: T3, is_customer: false, "
            "value_last_90d: 0}\n    as_of: 2026-11-01\n    expect: unassigned\n",
        ),
        (
            "  - {from: keep, to: recapture, actions: [{id: churn-review, title: Churn review, due_in_days: 7}]}\n"
            "  - {from: expand, to: keep, actions: [{id: health-dip, title: Health dip, due_in_days: 14}]}\n",
            "  - {from: expand, to: keep, actions: [{id: health-dip, title: Health dip, due_in_days: 14}]}\n"
            "  - {to: recapture, from: keep, actions: [{due_in_days: 7, id: churn-review, title: Churn review}]}\n",
        ),
        ("version: 1.4.0", "version: 1.4.1"),
    )
    a, b = load(tmp_path, BASE, "a"), load(tmp_path, reformatted, "b")
    assert a.digest.startswith("sha256:")
    assert a.digest == b.digest
    assert rule_changes(a, b) == []
    assert diff_rules(a, b).status == "unchanged"


@pytest.mark.parametrize(
    "change",
    [
        THRESHOLD,
        ("precedence: [exit, expand, keep, recapture]", "precedence: [expand, exit, keep, recapture]"),
        ("due_in_days: 60}", "due_in_days: 61}"),
        ("priority: high, owner: owner}", "priority: low, owner: owner}"),
        ("priority: high, owner: owner}", "priority: high}"),
        ("title: Confirm renewal,", "title: Confirm the renewal,"),
        ("allowed: [smb, enterprise]", "allowed: [smb, enterprise, mid]"),
        ("{type: float, min: 0}", "{type: float, min: 1}"),
        ("{days_since_churn: {lte: 365}}", "{days_since_churn: {lt: 365}}"),
        ("{not: paying}", "{is_customer: false}"),
        ("  - {from: expand, to: keep, actions: [{id: health-dip, title: Health dip, due_in_days: 14}]}\n", ""),
    ],
)
def test_every_semantic_change_changes_the_digest(tmp_path, change):
    a, b = load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, change), "b")
    assert a.digest != b.digest
    assert rule_changes(a, b), "a digest change must come with a readable rule change"


# ---- the version rule ---------------------------------------------------------------------------


def test_versions_compare_as_semver_not_as_text():
    assert version_key("1.10.0") > version_key("1.9.0")
    assert version_key("1.2.0-rc.1") < version_key("1.2.0") < version_key("1.2.1")
    assert version_key("1.2.0-rc.2") < version_key("1.2.0-rc.10")


def test_a_change_without_a_bump_fails_with_the_version_to_write(tmp_path):
    before, after = load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, THRESHOLD), "b")
    check = check_version(before, after, rule_changes(before, after))
    assert (check.ok, check.required, check.suggested_version) == (False, "bump", "1.5.0")
    assert check.message.endswith("write version: 1.5.0")
    patch = load(tmp_path, edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.4.1")), "c")
    assert check_version(before, patch, rule_changes(before, patch)).ok
    # The report tells the author which file to edit: the --after file, wherever it is.
    report = "\n".join(render_org_markdown(diff_rules(before, after)))
    assert f"> Set `version: 1.5.0` in {after.path} line 4 and push again." in report
    assert after.path.endswith("kare.yaml") and "/b/" in after.path


def test_a_failed_version_check_is_located_at_the_version_line(tmp_path, capsys):
    # Every problem of a rule file names PATH:LINE:COL (editors and CI logs jump to it); the version check's
    # named only the organization.
    before, after = write_rules(tmp_path / "a", BASE), write_rules(tmp_path / "b", edit(BASE, THRESHOLD))
    assert main(["diff", "--before", str(before), "--after", str(after)]) == 1
    err = capsys.readouterr().err
    assert f"kare diff: {after}:4:10: the rules changed" in err
    assert err.rstrip().endswith("write version: 1.5.0")


def test_before_may_be_a_copy_of_the_old_version_in_any_folder(tmp_path, capsys):
    # `git show main:rules/acme/kare.yaml > old/kare.yaml`, then --before old/kare.yaml: it was refused with
    # "organization 'acme' must equal its directory name 'old'", a rule for the rules directory's layout.
    old = tmp_path / "old" / "kare.yaml"
    old.parent.mkdir()
    old.write_text(BASE, encoding="utf-8")
    after = write_rules(tmp_path / "rules", edit(BASE, THRESHOLD))
    assert main(["diff", "--before", str(old), "--after", str(after.parent)]) == 1  # not bumped
    err = capsys.readouterr().err
    assert "must equal its directory name" not in err and "the rules changed" in err
    assert main(["validate", str(old)]) == 1  # the layout still holds where rules are validated
    assert "organization 'acme' must equal its directory name 'old'" in capsys.readouterr().out


def test_no_semantic_change_needs_no_bump_but_a_version_never_goes_down(tmp_path):
    before = load(tmp_path, BASE, "a")
    same = load(tmp_path, edit(BASE, ("description: Acme test rules", "description: new words")), "b")
    assert check_version(before, same, []).ok
    lower = load(tmp_path, edit(BASE, ("version: 1.4.0", "version: 1.3.9")), "c")
    check = check_version(before, lower, [])
    assert not check.ok and "write version: 1.4.0" in check.message


# ---- impact on accounts -------------------------------------------------------------------------


def test_impact_counts_every_category_and_lists_the_moved_accounts_with_reasons(tmp_path):
    before, after = load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, THRESHOLD), "b")
    report = diff_rules(before, after, accounts(), AS_OF)
    imp = report.impact
    # value 30000..34000 and paying: A015 (30000) and A017 (34000); A016 is not a customer.
    assert imp.accounts == 40
    # 30 customers: 17 with value ≥ 35000; 10 non-customers, 5 of them churned within 365 days.
    assert imp.counts_before == {"exit": 0, "expand": 17, "keep": 13, "recapture": 5, "unassigned": 5}
    assert imp.counts_after == {"exit": 0, "expand": 19, "keep": 11, "recapture": 5, "unassigned": 5}
    assert imp.transitions == [{"from": "keep", "to": "expand", "accounts": 2}]
    assert imp.moved_total == 2
    assert [(x["account_id"], x["from"], x["to"]) for x in imp.moved] == [
        ("A015", "keep", "expand"),
        ("A017", "keep", "expand"),
    ]
    assert imp.moved[0]["reason_before"] == "keep: paying (is_customer = true)"
    assert imp.moved[0]["reason_after"] == ("expand: paying (is_customer = true) and value_last_90d ≥ 30000 [30000.0]")
    assert report.tests_before == {"passed": 2, "failed": 0, "failures": []}
    assert report.tests_after["failed"] == 1
    assert report.tests_after["failures"][0]["name"] == "paying account of 32000 is keep"
    assert report.tests_after["failures"][0]["got"] == "expand"


def test_impact_counts_the_categories_either_version_defines_not_the_others(tmp_path):
    # attain, defined by neither version, read 'attain 0 → 0' as if it could hold; kare run's summary and
    # kare categorize list the categories the rules define, then unassigned. A category added counts in both.
    five = ("precedence: [exit, expand, keep, recapture]", "precedence: [exit, expand, keep, recapture, attain]")
    added = edit(BASE, five, ("transitions:", "  attain:\n    when: {segment: enterprise}\n\ntransitions:"))
    imp = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, added, "b"), accounts(), AS_OF).impact
    five_names = ["exit", "expand", "keep", "recapture", "attain", "unassigned"]
    assert list(imp.counts_before) == list(imp.counts_after) == five_names
    assert (imp.counts_before["attain"], imp.counts_after["attain"]) == (0, 1)  # A020: enterprise, churned 400 days ago
    recapture = "  recapture:\n    when: {all: [{not: paying}, recently_churned]}\n    actions:\n"
    recapture += "      - {id: win-back, title: Win-back call, due_in_days: 21}\n"
    churn = "  - {from: keep, to: recapture, actions: [{id: churn-review, title: Churn review, due_in_days: 7}]}\n"
    three = ("precedence: [exit, expand, keep, recapture]", "precedence: [exit, expand, keep]")
    only = edit(BASE, three, (recapture, ""), (churn, ""))
    imp = diff_rules(load(tmp_path, only, "c"), load(tmp_path, edit(only, THRESHOLD), "d"), accounts(), AS_OF).impact
    assert list(imp.counts_after) == ["exit", "expand", "keep", "unassigned"]
    markdown = "\n".join(
        render_org_markdown(
            diff_rules(load(tmp_path, only, "e"), load(tmp_path, edit(only, THRESHOLD), "f"), accounts(), AS_OF)
        )
    )
    assert (
        "| `recapture` |" not in markdown
        and "| `attain` |" not in markdown
        and "| `unassigned` | 10 | 10 | 0 |" in markdown
    )


def test_moved_accounts_are_limited_but_the_total_is_kept(tmp_path):
    lower = edit(BASE, ("{value_last_90d: {gte: 35000}}", "{value_last_90d: {gte: 0}}"))
    imp = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, lower, "b"), accounts(), AS_OF, limit=3).impact
    assert imp.moved_total == 13 and len(imp.moved) == 3


def test_a_stricter_contract_shows_rows_moving_to_quarantined(tmp_path):
    stricter = edit(BASE, ("{type: float, min: 0}", "{type: float, min: 5000}"))
    imp = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, stricter, "b"), accounts(), AS_OF).impact
    # A000 (0, recapture) and A002 (4000, keep) fall below the new minimum; A001 (2000) is keep too.
    assert imp.counts_after[QUARANTINED] == 3 and imp.counts_before[QUARANTINED] == 0
    assert sum(imp.counts_after.values()) == sum(imp.counts_before.values()) == 40
    assert {(t["from"], t["to"], t["accounts"]) for t in imp.transitions} == {
        ("keep", QUARANTINED, 2),
        ("recapture", QUARANTINED, 1),
    }
    assert imp.moved[0]["reason_after"].startswith("quarantined: value_last_90d: 0.0 is below the minimum 5000")


def test_a_contract_that_quarantines_more_than_a_run_accepts_says_runs_would_be_blocked(tmp_path):
    # The Accounts table showed the quarantined rows, but not that a run refuses to publish anything past
    # max_quarantine_share (20%): a reviewer approved a change that stops the organization's runs.
    before = load(tmp_path, BASE, "a")
    at_limit = load(tmp_path, edit(BASE, ("{type: float, min: 0}", "{type: float, min: 16000}")), "b")
    imp = diff_rules(before, at_limit, accounts(), AS_OF).impact
    assert imp.counts_after[QUARANTINED] == 8 and imp.quarantine_note is None  # 20% exactly: a run passes
    past = load(tmp_path, edit(BASE, ("{type: float, min: 0}", "{type: float, min: 18000}")), "c")
    report = diff_rules(before, past, accounts(), AS_OF)
    assert report.impact.quarantine_note.startswith(
        "9 of 40 input rows (22.5%; before: 0.0%) fail this version's input contract, above a run's default "
        "limit of 20% (--max-quarantine-share): kare run and the pipeline would publish nothing"
    )
    text = "\n".join(render_org_markdown(report))
    assert "· ⚠️ runs would be blocked (quarantine) ·" in text
    assert "⚠️ **Runs would be blocked**: 9 of 40 input rows (22.5%; before: 0.0%)" in text
    assert report.to_json()["quarantine_note"] == report.impact.quarantine_note


# ---- the command --------------------------------------------------------------------------------


def _files(tmp_path: Path, after_text: str) -> tuple[Path, Path, Path]:
    before = write_rules(tmp_path / "old", BASE)
    after = write_rules(tmp_path / "new", after_text)
    data = tmp_path / "accounts.parquet"
    accounts().write_parquet(data)
    return before, after, data


def test_kare_diff_json_has_every_field_and_exits_1_without_a_bump(tmp_path, capsys):
    before, after, data = _files(tmp_path, edit(BASE, THRESHOLD))
    out_file = tmp_path / "diff.json"
    argv = ["diff", "--before", str(before), "--after", str(after), "--input", str(data), "--as-of", "2026-11-01"]
    rc = main([*argv, "--format", "json", "--output", str(out_file)])
    assert rc == 1
    assert "write version: 1.5.0" in capsys.readouterr().err
    report = json.loads(out_file.read_text())
    for key in (
        "organization",
        "version_before",
        "version_after",
        "digest_before",
        "digest_after",
        "rule_changes",
        "counts_before",
        "counts_after",
        "transitions",
        "moved_total",
        "moved",
        "tests_before",
        "tests_after",
        "version_check",
    ):
        assert key in report, key
    assert report["organization"] == "acme"
    assert report["rule_changes"] == [
        {
            "kind": "threshold_changed",
            "category": "expand",
            "text": "expand: value_last_90d ≥ 35000 → ≥ 30000",
            "before": "(paying and value_last_90d ≥ 35000)",
            "after": "(paying and value_last_90d ≥ 30000)",
        }
    ]
    assert report["transitions"] == [{"from": "keep", "to": "expand", "accounts": 2}]
    assert report["version_check"] == {
        "ok": False,
        "required": "bump",
        "message": report["version_check"]["message"],
        "suggested_version": "1.5.0",
    }
    assert report["digest_before"] != report["digest_after"]

    bumped = write_rules(tmp_path / "bumped", edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.5.0")))
    rc = main(["diff", "--before", str(before), "--after", str(bumped), "--input", str(data), "--as-of", "2026-11-01"])
    assert rc == 0


def test_kare_diff_markdown_reads_as_a_pull_request_comment(tmp_path, capsys):
    before, after, _ = _files(tmp_path, edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.5.0")))
    csv = tmp_path / "accounts.csv"
    accounts().write_csv(csv)  # CSV too: every column read as text, typed by validation
    rc = main(["diff", "--before", str(before), "--after", str(after), "--input", str(csv), "--as-of", "2026-11-01"])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.startswith(MARKER)
    assert "**acme 1.4.0 → 1.5.0** · 1 rule change · 2 of 40 accounts move · version check ✅" in text
    assert "- expand: value_last_90d ≥ 35000 → ≥ 30000" in text
    assert "| category | before | after | Δ |" in text
    assert "| `keep` | 13 | 11 | −2 |" in text
    assert "| `unassigned` | 5 | 5 | 0 |" in text
    assert "| before ↓ / after → | expand |" in text and "| `keep` | 2 |" in text
    assert "**Moved accounts** (2)" in text and "| `A015` | keep | expand |" in text
    assert "- after: 1 passed, 1 failed ❌" in text
    assert "**Version check** ✅" in text


def test_kare_diff_help_gives_the_as_of_default_with_base_and_what_limit_limits(capsys):
    # --help said --as-of was required with --before/--after and --input, and not that --base takes today
    # without it; --limit also limits the accounts brought within 30 days of a move.
    with pytest.raises(SystemExit):
        main(["diff", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(required with --before/--after and --input; with --base, default: today)" in text
    assert "moved accounts listed, and accounts brought within 30 days of a move (default 20" in text


def test_kare_diff_usage_errors_exit_2(tmp_path, capsys):
    before, after, data = _files(tmp_path, BASE)
    assert main(["diff", "--before", str(before)]) == 2
    assert main(["diff", "--before", str(before), "--after", str(after), "--input", str(data)]) == 2
    assert "--as-of" in capsys.readouterr().err
    assert main(["diff", "--base", "no-such-ref", "--rules-dir", str(tmp_path / "old")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_kare_diff_base_compares_every_changed_org_against_a_git_ref(tmp_path, capsys):
    repo = tmp_path / "repo"
    rules = repo / "rules"
    write_rules(rules, BASE, "acme")
    write_rules(rules, BASE, "gone")
    write_rules(rules, BASE, "same")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    write_rules(rules, edit(BASE, THRESHOLD), "acme")
    write_rules(rules, edit(BASE, ("version: 1.4.0", "version: 0.1.0")), "newco")
    (rules / "gone" / "kare.yaml").unlink()
    (rules / "gone").rmdir()
    accounts().write_parquet(tmp_path / "acme.parquet")

    argv = ["diff", "--base", "HEAD", "--rules-dir", str(rules), "--input", str(tmp_path / "{org}.parquet")]
    rc = main([*argv, "--as-of", "2026-11-01", "--format", "json"])
    captured = capsys.readouterr()
    assert rc == 1  # acme changed without a bump
    report = json.loads(captured.out)
    assert report["base"] == "HEAD" and report["ok"] is False
    orgs = {o["organization"]: o for o in report["organizations"]}
    assert sorted(orgs) == ["acme", "gone", "newco"]  # 'same' did not change
    assert orgs["acme"]["status"] == "changed" and orgs["acme"]["moved_total"] == 2
    assert orgs["acme"]["version_check"]["suggested_version"] == "1.5.0"
    assert orgs["newco"]["status"] == "added" and orgs["newco"]["version_check"]["ok"]
    assert orgs["gone"]["status"] == "removed" and orgs["gone"]["version_after"] is None
    assert "does not exist" in orgs["newco"]["impact_note"]

    md = tmp_path / "diff.md"
    assert main([*argv, "--as-of", "2026-11-01", "--output", str(md)]) == 1
    text = md.read_text()
    assert text.startswith(MARKER) and "## KARE rule changes against `HEAD`" in text
    assert "**gone 1.4.0 (removed)**" in text and "**newco 0.1.0 (new)**" in text

    write_rules(rules, edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.5.0")), "acme")
    assert main([*argv, "--as-of", "2026-11-01", "--format", "json"]) == 0


def test_markdown_with_nothing_changed_says_so():
    text = render_markdown([], base="origin/main")
    assert text.startswith(MARKER) and "No rule, test or overrides file differs from `origin/main`." in text


PIN = "- {account: A001, category: expand, reason: CEO friend, author: ana@acme.example, expires: 2027-01-31}\n"


def write_overrides(org_dir: Path, *items: str) -> None:
    text = "format: kare-overrides/v1\noverrides:\n" + "".join(f"  {i}" for i in items)
    (org_dir / "overrides.yaml").write_text(text if items else "format: kare-overrides/v1\noverrides: []\n")


def test_a_change_of_overrides_yaml_alone_is_reported_and_its_impact_applies_the_pins(tmp_path, capsys):
    # A001 (value 2000, a customer) is keep by the rules; the new overrides.yaml pins it to expand, A002
    # (keep) moves its pin from exit to recapture, and A005's pin (expand, an enterprise of 10000) is removed.
    repo = tmp_path / "repo"
    rules = repo / "rules"
    write_rules(rules, BASE, "acme")
    write_overrides(
        rules / "acme",
        "- {account: A002, category: exit, reason: No margin, author: bo@acme.example, expires: 2027-01-31}\n",
        "- {account: A005, category: expand, reason: Strategic, author: bo@acme.example, expires: 2027-01-31}\n",
    )
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    write_overrides(
        rules / "acme",
        PIN,
        "- {account: A002, category: recapture, reason: Lost to a rival, author: bo@acme.example, "
        "expires: 2027-02-28}\n",
    )
    accounts().write_parquet(tmp_path / "acme.parquet")
    argv = ["diff", "--base", "HEAD", "--rules-dir", str(rules), "--input", str(tmp_path / "{org}.parquet")]

    assert main([*argv, "--as-of", "2026-11-01", "--format", "json"]) == 0  # no version bump needed
    org = json.loads(capsys.readouterr().out)["organizations"][0]
    assert org["status"] == "unchanged" and org["rule_changes"] == []
    assert [c["text"] for c in org["override_changes"]] == [
        "A002 pin: category exit → recapture, expires 2027-01-31 → 2027-02-28, reason 'No margin' → 'Lost to a rival'",
        "A005 unpinned (was expand until 2027-01-31 (bo@acme.example: Strategic))",
        "A001 pinned to expand until 2027-01-31 (ana@acme.example: CEO friend)",
    ]
    assert {k: v for k, v in org["override_changes"][2].items() if k != "text"} == {
        "kind": "override_added",
        "override": "A001",
    }
    flows = {(t["from"], t["to"]): t["accounts"] for t in org["transitions"]}
    assert flows == {("keep", "expand"): 1, ("exit", "recapture"): 1, ("expand", "keep"): 1}
    moved = {x["account_id"]: x for x in org["moved"]}
    assert moved["A001"]["reason_after"] == (
        "override by ana@acme.example until 2027-01-31: CEO friend (rules said: keep)"
    )
    assert moved["A005"]["reason_before"].startswith("override by bo@acme.example")

    assert main([*argv, "--as-of", "2026-11-01"]) == 0
    text = capsys.readouterr().out
    assert "0 rule changes · 3 override changes · 3 of 40 accounts move · version check ✅" in text
    assert "(unchanged: the rules did not change; overrides.yaml did)" in text
    assert "- A001 pinned to expand until 2027-01-31 (ana@acme.example: CEO friend)" in text

    # an override in force on neither date moves nobody, but the change is still listed
    assert main([*argv, "--as-of", "2027-03-01", "--format", "json"]) == 0
    org = json.loads(capsys.readouterr().out)["organizations"][0]
    assert org["moved_total"] == 0 and len(org["override_changes"]) == 3


def test_kare_diff_before_after_reads_the_overrides_beside_each_rule_file(tmp_path, capsys):
    before, after, data = _files(tmp_path, BASE)
    write_overrides(after.parent, PIN)
    argv = ["diff", "--before", str(before), "--after", str(after), "--input", str(data), "--as-of", "2026-11-01"]
    assert main([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["kind"] for c in report["override_changes"]] == ["override_added"]
    assert report["transitions"] == [{"from": "keep", "to": "expand", "accounts": 1}]
    # the same pin on both sides is no change and moves nobody
    write_overrides(before.parent, PIN)
    assert main([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["override_changes"] == [] and report["moved_total"] == 0
    assert report["counts_before"]["expand"] == report["counts_after"]["expand"] == 18


def test_an_ending_override_is_an_upcoming_move_in_kare_diff(tmp_path):
    # As in a run: the day after a pin expires the rules decide again, so A001's pin to expand ending on
    # 2026-11-10 is a move expand → keep within 30 days.
    from kare_rules.overrides import Override

    rules = load(tmp_path, BASE)
    pin = Override("A001", "expand", "trial", "ana@acme.example", dt.date(2026, 11, 10))
    imp = diff_rules(rules, rules, accounts(), AS_OF, overrides_after=(pin,)).impact
    assert {"from": "expand", "to": "keep", "before": 0, "after": 1} in imp.upcoming


# ---- CI wiring ----------------------------------------------------------------------------------


def test_the_rules_pr_workflow_runs_validate_test_and_diff_and_comments_once():
    flow = yaml.safe_load((ROOT / ".github/workflows/rules-pr.yml").read_text())
    trigger = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "rules/**" in trigger["pull_request"]["paths"]
    assert flow["permissions"]["pull-requests"] == "write"
    # The steps live in the reusable workflow that rules-only repositories call too (tests/test_install.py
    # runs them); this repository calls it with its snapshot variable.
    assert flow["jobs"]["impact"]["uses"] == "./.github/workflows/kare-impact.yml"
    assert "vars.KARE_DIFF_SNAPSHOT" in flow["jobs"]["impact"]["with"]["snapshot"]
    called = yaml.safe_load((ROOT / ".github/workflows/kare-impact.yml").read_text())
    steps = [s for job in called["jobs"].values() for s in job["steps"]]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "${{ inputs.python-version }}"
    assert called[True]["workflow_call"]["inputs"]["python-version"]["default"] == "3.11"
    runs = "\n".join(s.get("run", "") for s in steps)
    for needed in (
        'kare validate "$RULES_DIR"',
        'kare test "$RULES_DIR"',
        'diff --base "${BASE:-origin/$PR_BASE}"',
        "--format markdown --output",
    ):
        assert needed in runs, needed
    script = next(s for s in steps if s.get("uses", "").startswith("actions/github-script@"))
    assert MARKER in script["with"]["script"] and "updateComment" in script["with"]["script"]
    assert any("exit 1" in s.get("run", "") and "steps.diff" in str(s.get("if", "")) for s in steps)


def test_pre_commit_hooks_and_codeowners_exist():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"kare-validate", "kare-test"}
    assert all(h["language"] == "python" and h["files"].startswith("^rules/") for h in hooks.values())
    assert "/rules/cloudnine/" in (ROOT / ".github/CODEOWNERS").read_text()


def test_impact_shows_accounts_a_change_brings_within_30_days_of_a_move(tmp_path):
    # Non-customers churned 0, 80, 160, 240 and 320 days ago are recapture; the one at 320 days leaves
    # recapture on day 366 (46 days away) before the change, on day 341 (21 days away) after it.
    window = ("{days_since_churn: {lte: 365}}", "{days_since_churn: {lte: 340}}")
    before, after = load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, window), "b")
    report = diff_rules(before, after, accounts(), AS_OF)
    imp = report.impact
    assert imp.moved_total == 0
    assert imp.upcoming == [{"from": "recapture", "to": "unassigned", "before": 0, "after": 1}]
    assert (imp.came_near, imp.left_near) == (1, 0)
    text = "\n".join(render_org_markdown(report))
    assert "**Upcoming moves** (within 30 days of 2026-11-01, data unchanged)" in text
    assert "| `recapture` → `unassigned` | 0 | 1 | +1 |" in text
    assert "Accounts coming within 30 days of a move: 1; no longer within: 0." in text
    assert report.to_json()["came_within_30_days"] == 1


def test_impact_names_the_accounts_a_change_brings_within_30_days_of_a_move(tmp_path):
    # A count alone leaves the reviewer asking "which one?": A016, churned 320 days ago, left recapture on
    # 2026-12-17 (day 366, 46 days away) before the change and on 2026-11-22 (day 341, in 21 days) after.
    window = ("{days_since_churn: {lte: 365}}", "{days_since_churn: {lte: 340}}")
    report = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, window), "b"), accounts(), AS_OF)
    came = {
        "account_id": "A016",
        "category": "recapture",
        "next_category": "unassigned",
        "next_move_on": "2026-11-22",
        "before": "recapture → unassigned on 2026-12-17",
    }
    assert report.impact.came_within == [came]
    assert report.to_json()["came_within"] == [came]
    text = "\n".join(render_org_markdown(report))
    row = "| `A016` | recapture → unassigned on 2026-11-22, in 21 days | recapture → unassigned on 2026-12-17 |"
    assert row in text
    # --limit 0 keeps the count and lists no account.
    quiet = diff_rules(load(tmp_path, BASE, "c"), load(tmp_path, edit(BASE, window), "d"), accounts(), AS_OF, limit=0)
    assert (quiet.impact.came_near, quiet.impact.came_within) == (1, [])


def test_a_diff_of_rules_with_trends_says_the_trends_are_null_in_its_comparison(tmp_path):
    # kare diff reads one input, no previous run: a trend is null for every account, so tightening
    # "shrinking" moves nobody in the report while the next run would move the accounts that shrank.
    trend = (
        "  days_since_churn: {days_since: churned_on}\n",
        "  days_since_churn: {days_since: churned_on}\n  value_change: {pct_change_of: value_last_90d}\n",
    )
    shrink = ("{all: [paying, {value_last_90d: {gte: 35000}}]}", "{all: [paying, {value_last_90d: {gte: 35000}}, "
              "{not: {value_change: {lte: -0.2}}}]}")  # fmt: skip
    before = load(tmp_path, edit(BASE, trend, shrink), "a")
    after = load(tmp_path, edit(BASE, trend, shrink, ("lte: -0.2", "lte: -0.1")), "b")
    report = diff_rules(before, after, accounts(), AS_OF)
    assert report.impact.moved_total == 0
    assert report.impact.null_trends == ["value_change"]
    assert report.to_json()["null_trends"] == ["value_change"]
    text = "\n".join(render_org_markdown(report))
    assert "_The trends (value_change) are null for every account here, as for new accounts" in text
    # Rules without a trend in a condition get no such line.
    plain = diff_rules(load(tmp_path, BASE, "c"), load(tmp_path, edit(BASE, THRESHOLD), "d"), accounts(), AS_OF)
    assert plain.impact.null_trends == []
    assert "are null for every account here" not in "\n".join(render_org_markdown(plain))


WATCHES = """
watch:
  - id: recapture-fading
    from: recapture
    within_days: 30
    actions: [{id: last-call, title: Last call before they go, due_in_days: 7}]
  - id: expand-slipping
    from: expand
    within: {value_last_90d: 10%}
    actions: [{id: spend-review, title: Review the spend, due_in_days: 14}]
"""


def test_impact_counts_the_accounts_each_watch_flags_before_and_after(tmp_path, capsys):
    # recapture-fading: the account churned 320 days ago leaves recapture in 46 days, so within_days 30
    # flags nobody and 60 flags it. expand-slipping (A018 at 36000, A019 at 38000 are within 10% of the
    # 35000 edge) is removed; keep-thin is new: keep accounts within 2000 of another category's edge, A017 at
    # 34000 (expand from 35000) and A001 at 2000 (exit below 100).
    after_text = edit(
        BASE + WATCHES,
        ("within_days: 30", "within_days: 60"),
        (
            "  - id: expand-slipping\n    from: expand\n    within: {value_last_90d: 10%}\n",
            "  - id: keep-thin\n    from: keep\n    within: {value_last_90d: 2000}\n",
        ),
        ("version: 1.4.0", "version: 1.5.0"),
    )
    before, after, data = _files(tmp_path, after_text)
    write_rules(tmp_path / "old", BASE + WATCHES)
    argv = ["diff", "--before", str(before), "--after", str(after), "--input", str(data), "--as-of", "2026-11-01"]
    assert main([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["watches"] == [
        {"watch": "recapture-fading", "before": 0, "after": 1},
        {"watch": "expand-slipping", "before": 2, "after": None},
        {"watch": "keep-thin", "before": None, "after": 2},
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "**Watches** (accounts each watch flags as of 2026-11-01; a run opens their actions)" in text
    assert "| `recapture-fading` | 0 | 1 | +1 |" in text
    assert "| `expand-slipping` | 2 | – | – |" in text
    assert "| `keep-thin` | – | 2 | – |" in text


def test_a_pinned_account_counts_for_no_watch_as_in_a_run(tmp_path):
    from kare_rules.overrides import Override

    rules = load(tmp_path, BASE + WATCHES)
    pin = Override("A018", "expand", "key account", "ana@acme.example", dt.date(2027, 1, 31))
    imp = diff_rules(rules, rules, accounts(), AS_OF, overrides_after=(pin,)).impact
    assert {"watch": "expand-slipping", "before": 2, "after": 1} in imp.watches


def test_rules_without_watches_have_no_watch_section(tmp_path):
    report = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, THRESHOLD), "b"), accounts(), AS_OF)
    assert report.impact.watches == [] and report.to_json()["watches"] == []
    assert "**Watches**" not in "\n".join(render_org_markdown(report))


def test_limit_zero_gives_the_moved_count_without_an_empty_table(tmp_path):
    report = diff_rules(load(tmp_path, BASE, "a"), load(tmp_path, edit(BASE, THRESHOLD), "b"), accounts(), AS_OF, 0)
    text = "\n".join(render_org_markdown(report))
    assert "**Moved accounts**: 2 (none listed: --limit 0)" in text
    assert "| account | before | after |" not in text


def test_a_missing_input_column_names_the_data_columns_not_kares_own_row_numbers(tmp_path, capsys):
    # With --base, an org whose input lacks a column still gets its report, with the reason; the list of the
    # columns present must not show the row number kare diff adds to the data.
    repo = tmp_path / "repo"
    rules = repo / "rules"
    write_rules(rules, BASE, "acme")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    write_rules(rules, edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.5.0")), "acme")
    accounts().drop("segment").write_parquet(tmp_path / "acme.parquet")
    argv = ["diff", "--base", "HEAD", "--rules-dir", str(rules), "--input", str(tmp_path / "{org}.parquet")]
    assert main([*argv, "--as-of", "2026-11-01", "--format", "json"]) == 0
    captured = capsys.readouterr()
    (org,) = json.loads(captured.out)["organizations"]
    assert org["impact_note"].startswith("not computed: the input has no column 'segment'")
    assert "present: account_id, owner, is_customer, value_last_90d, churned_on." in org["impact_note"]
    assert "_kare" not in org["impact_note"] and "_kare" not in captured.err
    assert "kare diff: acme: impact not computed: the input has no column 'segment'" in captured.err


def test_a_failing_test_is_named_by_the_file_that_holds_it(tmp_path):
    # A failure in rules/<org>/tests/*.yaml must not read as a line of kare.yaml.
    path = write_rules(tmp_path / "b", edit(BASE, THRESHOLD))
    (path.parent / "tests").mkdir()
    (path.parent / "tests" / "more.yaml").write_text(
        "tests:\n"
        "  - name: big one is keep\n"
        "    account: {account_id: X1, is_customer: true, value_last_90d: 90000}\n"
        "    as_of: 2026-11-01\n"
        "    expect: keep\n"
    )
    report = diff_rules(load(tmp_path, BASE, "a"), load_rules(path), None, AS_OF)
    text = "\n".join(render_org_markdown(report))
    assert "  - FAIL tests/more.yaml line 2 _big one is keep_: expected `keep`, got `expand`" in text
    assert "FAIL kare.yaml line 54 _paying account of 32000 is keep_" in text
    assert {f["file"] for f in report.to_json()["tests_after"]["failures"]} == {"kare.yaml", "tests/more.yaml"}


def test_a_pin_on_an_account_the_input_does_not_hold_is_flagged(tmp_path):
    # A mistyped id in overrides.yaml pins nothing; the reviewer is told instead of seeing a normal pin.
    rules = load(tmp_path, BASE, "a")
    pins = load_overrides_text(
        tmp_path,
        rules,
        "- {account: A001, category: expand, reason: CEO friend, author: ana@acme.example, expires: 2027-01-31}\n",
        "- {account: A0O2, category: exit, reason: No margin, author: ana@acme.example, expires: 2027-01-31}\n",
    )
    report = diff_rules(rules, rules, accounts(), AS_OF, overrides_after=pins)
    texts = {c.name: c.text for c in report.override_changes}
    assert texts["A001"] == "A001 pinned to expand until 2027-01-31 (ana@acme.example: CEO friend)"
    assert texts["A0O2"].endswith(
        "(ana@acme.example: No margin) — ⚠️ not in the input: check the account id (a mistyped id pins nothing)"
    )
    assert report.impact.moved_total == 1  # only A001 moves


def test_a_pin_that_expired_before_the_as_of_date_says_it_pins_nothing(tmp_path):
    # It read "⚠️ not in the input" when the sample (synthesized for as_of) did not hold the id, as if mistyped.
    rules = load(tmp_path, BASE, "a")
    pins = load_overrides_text(
        tmp_path,
        rules,
        "- {account: A001, category: expand, reason: CEO friend, author: ana@acme.example, expires: 2026-10-31}\n",
        "- {account: Z999, category: exit, reason: Gone, author: ana@acme.example, expires: 2026-10-31}\n",
    )
    report = diff_rules(rules, rules, accounts(), AS_OF, overrides_after=pins)
    texts = {c.name: c.text for c in report.override_changes}
    assert texts == {
        account: f"{account} pinned to {category} until 2026-10-31 (ana@acme.example: {why}) — expired on "
        f"2026-10-31, before {AS_OF}: it pins nothing"
        for account, category, why in (("A001", "expand", "CEO friend"), ("Z999", "exit", "Gone"))
    }
    assert report.impact.moved_total == 0


def load_overrides_text(tmp_path: Path, rules, *items: str):
    from kare_rules.overrides import load_overrides

    folder = tmp_path / "pins"
    folder.mkdir()
    write_overrides(folder, *items)
    return load_overrides(folder / "overrides.yaml", rules)


def test_a_test_failing_on_its_next_move_says_so_in_the_report_not_expected_x_got_x(tmp_path, capsys):
    # The category still matches after the change; only the date of the next move differs. The report
    # used to read "expected `recapture`, got `recapture`", which gives a reviewer nothing to act on.
    moving = edit(BASE, ("    expect: keep\n", "    expect: keep\n" + (
        "  - name: churned a month ago leaves recapture after a year\n"
        "    account: {account_id: T3, is_customer: false, value_last_90d: 0, churned_on: 2026-10-01}\n"
        "    as_of: 2026-11-01\n"
        "    expect: recapture\n"
        "    next_category: unassigned\n"
        "    next_move_on: 2027-10-02\n"
    )))  # fmt: skip
    shorter = edit(moving, ("{days_since_churn: {lte: 365}}", "{days_since_churn: {lte: 300}}"),
                   ("version: 1.4.0", "version: 1.5.0"))  # fmt: skip
    before, after = write_rules(tmp_path / "old", moving), write_rules(tmp_path / "new", shorter)
    accounts().write_parquet(data := tmp_path / "accounts.parquet")
    args = ["diff", "--before", str(before), "--after", str(after), "--input", str(data), "--as-of", "2026-11-01"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "- after: 2 passed, 1 failed ❌" in text
    line = next(x for x in text.splitlines() if "FAIL" in x)
    assert line == (
        "  - FAIL kare.yaml line 58 _churned a month ago leaves recapture after a year_: "
        "next_move_on expected `2027-10-02`, got `2027-07-29`"
    )
    assert main([*args, "--format", "json"]) == 0
    failure = json.loads(capsys.readouterr().out)["tests_after"]["failures"][0]
    assert failure["mismatches"] == [{"what": "next_move_on", "expected": "2027-10-02", "got": "2027-07-29"}]


def test_the_input_template_takes_the_date_as_kare_run_s_does(tmp_path, capsys):
    # One source template for kare run and kare diff: data/{org}/{as_of}.parquet reads the --as-of snapshot.
    repo = tmp_path / "repo"
    rules = repo / "rules"
    write_rules(rules, BASE, "acme")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    write_rules(rules, edit(BASE, THRESHOLD, ("version: 1.4.0", "version: 1.5.0")), "acme")
    (tmp_path / "acme").mkdir()
    accounts().write_parquet(tmp_path / "acme" / "2026-11-01.parquet")
    argv = ["diff", "--base", "HEAD", "--rules-dir", str(rules), "--input", str(tmp_path / "{org}" / "{as_of}.parquet")]
    assert main([*argv, "--as-of", "2026-11-01", "--format", "json"]) == 0
    (org,) = json.loads(capsys.readouterr().out)["organizations"]
    assert org["accounts"] == accounts().height and org["as_of"] == "2026-11-01"


def test_a_branch_that_repairs_an_invalid_rule_file_at_the_base_gets_its_report(tmp_path, capsys):
    # A rule file merged while valid can become invalid at the base (a newer kare-rules checks more, a merge
    # without CI). The pull request that repairs it must get a report and pass, not fail on the old file.
    repo = tmp_path / "repo"
    rules = repo / "rules"
    write_rules(rules, edit(BASE, ("{value_last_90d: {lt: 100}}", "{value_last_90: {lt: 100}}")), "acme")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    accounts().write_parquet(tmp_path / "acme.parquet")
    argv = ["diff", "--base", "HEAD", "--rules-dir", str(rules), "--input", str(tmp_path / "{org}.parquet")]

    write_rules(rules, edit(BASE, ("version: 1.4.0", "version: 1.4.1")), "acme")
    assert main([*argv, "--as-of", "2026-11-01", "--format", "json"]) == 0
    (org,) = json.loads(capsys.readouterr().out)["organizations"]
    assert org["status"] == "repaired" and org["version_before"] == "1.4.0"
    assert org["base_problem"].startswith("HEAD:rules/acme/kare.yaml:26:25: ")
    assert "unknown column 'value_last_90'" in org["base_problem"]
    assert org["counts_before"] == {} and sum(org["counts_after"].values()) == 40
    assert org["version_check"]["ok"] is True

    md = tmp_path / "diff.md"
    assert main([*argv, "--as-of", "2026-11-01", "--output", str(md)]) == 0
    text = md.read_text(encoding="utf-8")
    assert "**acme 1.4.0 (not valid) → 1.4.1** · version check ✅" in text
    assert "⚠️ **The rule files at the base are not valid**, so there is nothing to compare with" in text

    # A valid file means something the invalid one did not: the version must still pass the one stated there.
    write_rules(rules, BASE, "acme")
    assert main([*argv, "--as-of", "2026-11-01"]) == 1
    assert "did not increase (1.4.0 → 1.4.0); write version: 1.5.0" in capsys.readouterr().err


def test_a_renamed_trait_action_or_watch_reads_as_one_rename(tmp_path):
    # A new name for the same thing read as one item removed and an unrelated one added; the reviewer had to
    # compare the two texts to see nothing else changed. A rename that also changes the thing stays two.
    before = load(tmp_path, BASE + WATCHES, "a")
    renamed = edit(
        BASE + WATCHES,
        ("  paying:           {is_customer: true}", "  customer:         {is_customer: true}"),
        ("[paying,", "[customer,"),
        ("when: paying", "when: customer"),
        ("{not: paying}", "{not: customer}"),
        ("id: renewal-check", "id: renewal-review"),
        ("id: expand-slipping\n", "id: expand-at-risk\n    description: new words\n"),
    )
    changes = rule_changes(before, load(tmp_path, renamed, "b"))
    texts = [c.text for c in changes]
    assert (
        "trait paying renamed to customer (same condition: is_customer = true; used by exit, expand, keep, "
        "recapture)" in texts
    )
    assert (
        "keep: action renewal-check renamed to renewal-review (same action: 'Confirm renewal', due in 60 days, "
        "medium priority); the next run supersedes the open renewal-check actions and opens them again under "
        "renewal-review, even where marked done" in texts
    )
    assert (
        "watch expand-slipping renamed to expand-at-risk (same watch: accounts in expand about to move to any "
        "category: nearest change of value_last_90d within 10%); the next run supersedes the watch's open actions "
        "and opens them again under expand-at-risk, even where marked done" in texts
    )
    kinds = {c.kind for c in changes}
    assert kinds & {f"{x}_{y}" for x in ("trait", "action", "watch") for y in ("added", "removed")} == set(), texts
    changed = edit(renamed, ("id: renewal-review, title: Confirm renewal,", "id: renewal-review, title: Renew,"))
    texts = [c.text for c in rule_changes(before, load(tmp_path, changed, "c"))]
    assert "keep: action renewal-check removed" in texts
    assert any(t.startswith("keep: action renewal-review added: 'Renew'") for t in texts)


def test_accounts_leaving_the_30_day_window_because_they_move_now_are_told_apart(tmp_path):
    # "no longer within: N" read as N accounts grown safer, while most had simply moved with the change.
    days = {"C340": 340, "C350": 350, "C100": 100}
    data = pl.DataFrame(
        {
            "account_id": list(days),
            "owner": ["rep"] * 3,
            "is_customer": [False] * 3,
            "value_last_90d": [0.0] * 3,
            "segment": ["smb"] * 3,
            "churned_on": [AS_OF - dt.timedelta(days=d) for d in days.values()],
        }
    )
    before = load(tmp_path, BASE, "a")
    # lte 345: C350 leaves recapture now; C340 still leaves within 30 days (on day 346 instead of 366).
    sooner = diff_rules(before, load(tmp_path, edit(BASE, ("{lte: 365}", "{lte: 345}")), "b"), data, AS_OF)
    assert (sooner.impact.moved_total, sooner.impact.left_near, sooner.impact.left_near_moved) == (1, 1, 1)
    text = "\n".join(render_org_markdown(sooner))
    assert "no longer within: 1 (1 of them because the change moves them now)." in text
    assert sooner.to_json()["left_within_30_days_moved"] == 1
    # lte 400: both stay recapture, and their move is now more than 30 days away: grown safer, not moved.
    later = diff_rules(before, load(tmp_path, edit(BASE, ("{lte: 365}", "{lte: 400}")), "c"), data, AS_OF)
    assert (later.impact.moved_total, later.impact.left_near, later.impact.left_near_moved) == (0, 2, 0)
    assert "no longer within: 2.\n" in "\n".join(render_org_markdown(later))


def test_a_rule_file_added_or_removed_shows_its_own_upcoming_moves(tmp_path):
    # A new organization's first pull request is where its early warning is reviewed first: the
    # account churned 320 days ago leaves recapture on day 341, 21 days away. The report showed watches
    # but no upcoming moves for a file added or removed.
    rules = load(tmp_path, edit(BASE, ("{days_since_churn: {lte: 365}}", "{days_since_churn: {lte: 340}}")))
    added = diff_rules(None, rules, accounts(), AS_OF)
    assert added.impact.upcoming == [{"from": "recapture", "to": "unassigned", "before": None, "after": 1}]
    text = "\n".join(render_org_markdown(added))
    assert "| `recapture` → `unassigned` | – | 1 | – |" in text
    assert "Accounts coming within" not in text  # nothing to compare with
    assert added.to_json()["upcoming"][0]["before"] is None
    removed = diff_rules(rules, None, accounts(), AS_OF)
    assert removed.impact.upcoming == [{"from": "recapture", "to": "unassigned", "before": 1, "after": None}]
    assert "| `recapture` → `unassigned` | 1 | – | – |" in "\n".join(render_org_markdown(removed))


def test_kare_diff_refuses_an_output_that_is_a_file_it_reads(tmp_path, capsys):
    # `--output accounts.csv` replaced the accounts with the Markdown report (and a rule file, the rules).
    before, after = write_rules(tmp_path / "a", BASE), write_rules(tmp_path / "b", edit(BASE, THRESHOLD))
    data = tmp_path / "acme.csv"
    accounts().write_csv(data)
    db = tmp_path / "accounts.duckdb"
    with duckdb.connect(str(db)) as con:
        con.sql(f"CREATE TABLE accounts_acme AS SELECT * FROM read_csv('{data}')")
    kept = {p: p.read_bytes() for p in (data, db, before, after)}
    args = ["diff", "--before", str(before), "--after", str(after), "--as-of", "2026-11-01"]
    for source, output, option in (
        (str(data), data, "--input"),
        (str(tmp_path / "{org}.csv"), data, "--input"),
        (f"duckdb:{tmp_path / 'accounts.duckdb'}:accounts_{{org}}", db, "--input"),
        (str(data), before, "--before"),
        (str(data), after, "--after"),
    ):
        assert main([*args, "--input", source, "--output", str(output)]) == 2
        assert f"which {option} reads; write the report to another file" in capsys.readouterr().err
    assert all(p.read_bytes() == content for p, content in kept.items())
    assert main([*args, "--input", str(data), "--output", str(tmp_path / "diff.md")]) == 1  # not bumped: exit 1
    assert (tmp_path / "diff.md").read_text().startswith(MARKER)


def test_kare_diff_base_refuses_an_organization_s_folder_as_the_rules_directory(tmp_path, capsys):
    # --rules-dir rules/acme (a CI input set to the folder of the one organization): its organizations would
    # be its subfolders, none, so the report said 'No rule, test or overrides file differs' of a changed rule
    # file and the job passed.
    repo = tmp_path / "repo"
    write_rules(repo / "rules", BASE)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "rules")
    write_rules(repo / "rules", edit(BASE, THRESHOLD))
    org_dir = repo / "rules" / "acme"
    assert main(["diff", "--base", "HEAD", "--rules-dir", str(org_dir), "--as-of", "2026-11-01"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kare diff: {org_dir} holds kare.yaml: it is one organization's folder, not the rules directory; pass "
        f"the folder that holds the organizations' folders, --rules-dir {repo / 'rules'}"
    )
    assert main(["diff", "--base", "HEAD", "--rules-dir", str(repo / "rules"), "--as-of", "2026-11-01"]) == 1
    # a file given as the rules directory (the accounts, say) is named as a file, not as missing
    accounts = repo / "accounts.csv"
    accounts.write_text("account_id\nA1\n")
    capsys.readouterr()
    assert main(["diff", "--base", "HEAD", "--rules-dir", str(accounts), "--as-of", "2026-11-01"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kare diff: rules directory {accounts} is a file, not a folder; pass --rules-dir DIR, the folder of "
        "<org>/kare.yaml"
    )
